"""Leases and live engine processes on SQLite (see `Store.claim_runs` and friends).

SQLite has one machine and one write lock: a claim is an `UPDATE ... RETURNING` run in the group
writer's transaction, after that transaction's other writes (so a claim queued behind the decision
that made the run runnable sees it), and the clock is this machine's. Other processes learn of new
work by polling (`wait_for_work` waits at most `work_poll_s`); this process's own announcements
wake it at once.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

import aiosqlite
import anyio

from ..flows.enums import RunStatus
from ..flows.errors import NotFound
from .base import LeaseRow, WorkerRow
from .common import check_lease
from .transaction import Connection, Op, Planned, Transaction
from .writer import GroupWriter

_RUNNABLE_SQL = "status IN ('pending', 'running')"


def _claim_where(owner: str, now: float, ids: Sequence[str] | None, dead: Sequence[str]) -> tuple[str, list[Any]]:
    """Runnable, and free, expired or held by a dead process; named runs also when held by
    `owner` itself (claiming again renews); among all runs, never one `owner` holds (it renews
    those: an expired lease of a run it still drives is for another process to take over)."""
    marks = ",".join("?" * len(dead))
    dead_sql = f" OR lease_owner IN ({marks})" if dead else ""
    own = " OR lease_owner = ?" if ids is not None else ""
    sql = f"{_RUNNABLE_SQL} AND (lease_owner IS NULL OR lease_expires < ?{own}{dead_sql})"
    params: list[Any] = [now, *([owner] if ids is not None else []), *dead]
    if ids is None:
        sql += " AND lease_owner IS NOT ?"
        params.append(owner)
    if ids is not None:
        sql += f" AND id IN ({','.join('?' * len(ids))})"
        params += list(ids)
    return sql, params


@dataclass(slots=True)
class ClaimRuns(Op[list[str]]):
    owner: str
    lease_s: float
    limit: int
    only: Sequence[str] | None
    dead: Sequence[str]
    claimed: list[str] = field(default_factory=list)

    def plan(self, tx: Transaction) -> Planned[list[str]]:
        def claim(conn: Connection) -> None:
            now = time.time()
            where, params = _claim_where(self.owner, now, self.only, self.dead)
            rows = conn.execute(
                f"UPDATE runs SET lease_owner = ?, lease_expires = ? WHERE id IN "
                f"(SELECT id FROM runs WHERE {where} ORDER BY created_at, id LIMIT ?) RETURNING id",
                [self.owner, now + self.lease_s, *params, self.limit],
            ).fetchall()
            self.claimed.extend(sorted(row[0] for row in rows))

        tx.after_flush.append(claim)
        return Planned(self.claimed, [])


@dataclass(slots=True)
class LeaseStatement(Op[list[str]]):
    """A lease or worker statement run after the transaction's other writes."""

    sql: str
    params: list[Any]
    returning: bool = False
    rows: list[str] = field(default_factory=list)

    def plan(self, tx: Transaction) -> Planned[list[str]]:
        def run(conn: Connection) -> None:
            found = conn.execute(self.sql, self.params).fetchall()
            if self.returning:
                self.rows.extend(sorted(row[0] for row in found))

        tx.after_flush.append(run)
        return Planned(self.rows, [])


class SQLiteLeases:
    """Mixed into `SQLiteStore`: the lease half of the `Store` protocol."""

    work_poll_s: float = 0.1
    _work: anyio.Event | None = None

    def _open_writer(self) -> GroupWriter:
        raise NotImplementedError

    def _reading(self, snapshot: bool = False) -> AbstractAsyncContextManager[aiosqlite.Connection]:
        raise NotImplementedError

    async def _write(self, op: Op[list[str]]) -> list[str]:
        return await self._open_writer().submit(op)

    async def _claim_runs(self, owner: str, lease_s: float, limit: int, run_ids: Sequence[str] | None,
                          dead_owners: Sequence[str]) -> list[str]:
        """`Store.claim_runs`, its arguments checked (see `StoreCore.claim_runs`)."""
        # a read first: an idle poll costs no write transaction
        where, params = _claim_where(owner, time.time(), run_ids, list(dead_owners))
        async with self._reading() as conn:
            rows = list(await conn.execute_fetchall(f"SELECT 1 FROM runs WHERE {where} LIMIT 1", params))
        if not rows:
            return []
        return await self._write(ClaimRuns(owner, lease_s, limit, run_ids, list(dead_owners)))

    async def renew_leases(self, owner: str, run_ids: Sequence[str], *, lease_s: float) -> list[str]:
        check_lease(lease_s)
        if not run_ids:
            return []
        marks = ",".join("?" * len(run_ids))
        return await self._write(LeaseStatement(
            f"UPDATE runs SET lease_expires = ? WHERE lease_owner = ? AND id IN ({marks}) RETURNING id",
            [time.time() + lease_s, owner, *run_ids], returning=True,
        ))

    async def release_leases(self, owner: str, run_ids: Sequence[str]) -> None:
        if run_ids:
            marks = ",".join("?" * len(run_ids))
            await self._write(LeaseStatement(
                f"UPDATE runs SET lease_owner = NULL, lease_expires = NULL WHERE lease_owner = ? AND id IN ({marks})",
                [owner, *run_ids],
            ))

    async def leases(self) -> list[LeaseRow]:
        async with self._reading() as conn:
            rows = await conn.execute_fetchall(
                f"SELECT id, status, lease_owner, lease_expires FROM runs WHERE {_RUNNABLE_SQL} ORDER BY created_at, id"
            )
        return [LeaseRow(run_id=r[0], status=RunStatus(r[1]), owner=r[2], expires=r[3]) for r in rows]

    async def lease(self, run_id: str) -> LeaseRow:
        async with self._reading() as conn:
            rows = list(await conn.execute_fetchall(
                "SELECT id, status, lease_owner, lease_expires FROM runs WHERE id = ?", (run_id,)))
        if not rows:
            raise NotFound(f"run {run_id} not found", run_id=run_id)
        r = rows[0]
        return LeaseRow(run_id=r[0], status=RunStatus(r[1]), owner=r[2], expires=r[3])

    async def store_time(self) -> float:
        return time.time()

    async def _host_chat(self, chat_id: str, owner: str, lease_s: float, dead_owners: Sequence[str]) -> bool:
        now, dead = time.time(), list(dead_owners)
        dead_sql = f" OR host IN ({','.join('?' * len(dead))})" if dead else ""
        return bool(await self._write(LeaseStatement(
            "UPDATE chats SET host = ?, host_expires = ? WHERE id = ? AND "
            f"(host IS NULL OR host_expires < ? OR host = ?{dead_sql}) RETURNING id",
            [owner, now + lease_s, chat_id, now, owner, *dead], returning=True,
        )))

    async def _renew_chat_hosts(self, owner: str, chat_ids: Sequence[str], lease_s: float) -> list[str]:
        return await self._write(LeaseStatement(
            f"UPDATE chats SET host_expires = ? WHERE host = ? AND id IN ({','.join('?' * len(chat_ids))}) RETURNING id",
            [time.time() + lease_s, owner, *chat_ids], returning=True,
        ))

    async def release_chat_hosts(self, owner: str, chat_ids: Sequence[str]) -> None:
        if chat_ids:
            await self._write(LeaseStatement(
                f"UPDATE chats SET host = NULL, host_expires = NULL WHERE host = ? AND id IN "
                f"({','.join('?' * len(chat_ids))})", [owner, *chat_ids],
            ))

    async def heartbeat(self, worker: WorkerRow, *, ttl_s: float) -> None:
        check_lease(ttl_s)
        now = time.time()
        await self._write(LeaseStatement(
            "INSERT INTO workers (id, kind, drives, started_at, expires) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET expires = excluded.expires, drives = excluded.drives",
            [worker.id, worker.kind, int(worker.drives), worker.started_at, now + ttl_s],
        ))

    async def remove_worker(self, worker_id: str) -> None:
        await self._write(LeaseStatement("DELETE FROM workers WHERE id = ? OR expires < ?",
                                         [worker_id, time.time() - 3600]))

    async def live_workers(self) -> list[WorkerRow]:
        async with self._reading() as conn:
            rows = await conn.execute_fetchall(
                "SELECT id, kind, drives, started_at, expires FROM workers WHERE expires >= ? ORDER BY id",
                (time.time(),),
            )
        return [WorkerRow(id=r[0], kind=r[1], drives=bool(r[2]), started_at=r[3], expires=r[4]) for r in rows]

    async def announce_work(self, run_id: str) -> None:
        if self._work is not None:
            self._work.set()

    async def wait_for_work(self, timeout_s: float) -> bool:
        """Other processes' work is found by polling: this waits at most `work_poll_s`."""
        self._work = event = anyio.Event()
        with anyio.move_on_after(min(timeout_s, self.work_poll_s)):
            await event.wait()
        return event.is_set()


