"""Reporting helpers for the analytics dashboard."""

from .reports import Row, summarize

__all__ = ["Row", "summarize"]
