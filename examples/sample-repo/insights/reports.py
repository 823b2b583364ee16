"""Build the weekly report shown on the dashboard."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    customer: str
    orders: int
    revenue: float


def summarize(rows: list[Row]) -> dict[str, float]:
    """Totals for the report header."""
    return {
        "customers": len({r.customer for r in rows}),
        "orders": sum(r.orders for r in rows),
        "revenue": round(sum(r.revenue for r in rows), 2),
    }
