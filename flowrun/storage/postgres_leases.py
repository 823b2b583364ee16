"""Leases and live engine processes on PostgreSQL (see `Store.claim_runs` and friends).

A claim is one statement: the runnable rows are picked `FOR UPDATE SKIP LOCKED` (two workers
claiming at once never wait for each other, and a row another transaction holds is skipped, to
be claimed on the next try); PostgreSQL re-checks the picked rows' conditions after locking
them, so a lease another worker took meanwhile is never taken twice. Times come from the
database's clock, so machines with skewed clocks agree on when a lease expires. New work is
announced on the `flowrun_work` channel (one per schema, see `postgres_writer.channel`), which
wakes every listening store's `wait_for_work`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from ..flows.enums import RunStatus
from ..flows.errors import NotFound
from ..flows.run import Run
from .base import LeaseRow, WorkerRow
from .common import RunRow, check_lease

NOW = "extract(epoch from clock_timestamp())"
_RUNNABLE = "status IN ('pending', 'running')"


class PostgresLeases:
    """Mixed into `PostgresStore`: the lease half of the `Store` protocol."""

    _work: anyio.Event | None
    _work_flag: bool
    _work_channel: str

    async def _rows(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = (), *, lease: bool = False) -> list[Any]:
        raise NotImplementedError

    if TYPE_CHECKING:  # StoreCore's, after this mixin in the store's bases
        def _decode_runs(self, rows: Sequence[RunRow]) -> list[Run]: ...

        async def get_run(self, run_id: str) -> Run: ...

    async def _claim_runs(self, owner: str, lease_s: float, limit: int, run_ids: Sequence[str] | None,
                          dead_owners: Sequence[str]) -> list[str]:
        """`Store.claim_runs`, its arguments checked (see `StoreCore.claim_runs`)."""
        # named runs also when `owner` holds them already (claiming again renews); among all
        # runs, never one `owner` holds (it renews those: an expired lease of a run it still
        # drives is for another process to take over, not for it to claim back)
        only = "AND id = ANY(%(ids)s)" if run_ids is not None else ""
        own = "OR lease_owner = %(owner)s" if run_ids is not None else "AND lease_owner IS DISTINCT FROM %(owner)s"
        rows = await self._rows(
            f"UPDATE runs SET lease_owner = %(owner)s, lease_expires = {NOW} + %(lease)s WHERE id IN ("
            f"  SELECT id FROM runs WHERE {_RUNNABLE} {only} AND ((lease_owner IS NULL OR lease_expires < {NOW}"
            f"    OR lease_owner = ANY(%(dead)s)) {own})"
            f"  ORDER BY created_at, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED"
            f") RETURNING id",
            {"owner": owner, "lease": lease_s, "ids": list(run_ids or []), "dead": list(dead_owners),
             "limit": limit},
        )
        return sorted(row[0] for row in rows)

    async def claim_and_read_runs(self, owner: str, *, lease_s: float, limit: int = 1,
                                  dead_owners: Sequence[str] = ()) -> list[Run]:
        """Claim and read in one statement (one round trip where a claim and a read took two).
        The claimed rows come back as updated (their latest version); the steps are read in the
        statement's snapshot, which may be older when a run changed between the snapshot and
        the row lock: every write of a run's steps moves its version, so the snapshot's version
        (`seen`) tells, and such a run is read again."""
        check_lease(lease_s)
        if limit < 1:
            return []
        rows = await self._rows(
            f"WITH claimed AS (UPDATE runs SET lease_owner = %(owner)s, lease_expires = {NOW} + %(lease)s WHERE id IN ("
            f"  SELECT id FROM runs WHERE {_RUNNABLE} AND (lease_owner IS NULL OR lease_expires < {NOW}"
            f"    OR lease_owner = ANY(%(dead)s)) AND lease_owner IS DISTINCT FROM %(owner)s"
            f"  ORDER BY created_at, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED"
            f") RETURNING id, version, last_seq, json, flow) "
            "SELECT c.id, c.version, c.last_seq, c.json, c.flow, "
            "ARRAY(SELECT idx FROM steps WHERE run_id = c.id ORDER BY idx), "
            "ARRAY(SELECT json FROM steps WHERE run_id = c.id ORDER BY idx), "
            "(SELECT version FROM runs AS seen WHERE seen.id = c.id) FROM claimed AS c ORDER BY c.id",
            {"owner": owner, "lease": lease_s, "dead": list(dead_owners), "limit": limit},
        )
        current = [(*row[:5], list(zip(row[5], row[6], strict=True))) for row in rows if row[7] == row[1]]
        runs = self._decode_runs(current)
        for row in rows:
            if row[7] != row[1]:  # changed after the snapshot: its steps may be older than its row
                runs.append(await self.get_run(row[0]))
        return runs

    async def renew_leases(self, owner: str, run_ids: Sequence[str], *, lease_s: float) -> list[str]:
        check_lease(lease_s)
        if not run_ids:
            return []
        rows = await self._rows(
            f"UPDATE runs SET lease_expires = {NOW} + %s WHERE lease_owner = %s AND id = ANY(%s) RETURNING id",
            (lease_s, owner, list(run_ids)), lease=True,
        )
        return sorted(row[0] for row in rows)

    async def release_leases(self, owner: str, run_ids: Sequence[str]) -> None:
        if run_ids:
            await self._rows(
                "UPDATE runs SET lease_owner = NULL, lease_expires = NULL WHERE lease_owner = %s AND id = ANY(%s) "
                "RETURNING id", (owner, list(run_ids)),
            )

    async def leases(self) -> list[LeaseRow]:
        rows = await self._rows(
            f"SELECT id, status, lease_owner, lease_expires FROM runs WHERE {_RUNNABLE} ORDER BY created_at, id"
        )
        return [LeaseRow(run_id=r[0], status=RunStatus(r[1]), owner=r[2], expires=r[3]) for r in rows]

    async def lease(self, run_id: str) -> LeaseRow:
        rows = await self._rows("SELECT id, status, lease_owner, lease_expires FROM runs WHERE id = %s", (run_id,))
        if not rows:
            raise NotFound(f"run {run_id} not found", run_id=run_id)
        r = rows[0]
        return LeaseRow(run_id=r[0], status=RunStatus(r[1]), owner=r[2], expires=r[3])

    async def _host_chat(self, chat_id: str, owner: str, lease_s: float, dead_owners: Sequence[str]) -> bool:
        return bool(await self._rows(
            f"UPDATE chats SET host = %(owner)s, host_expires = {NOW} + %(lease)s WHERE id = %(id)s AND "
            f"(host IS NULL OR host_expires < {NOW} OR host = %(owner)s OR host = ANY(%(dead)s)) RETURNING id",
            {"owner": owner, "lease": lease_s, "id": chat_id, "dead": list(dead_owners)}, lease=True,
        ))

    async def _renew_chat_hosts(self, owner: str, chat_ids: Sequence[str], lease_s: float) -> list[str]:
        rows = await self._rows(
            f"UPDATE chats SET host_expires = {NOW} + %s WHERE host = %s AND id = ANY(%s) RETURNING id",
            (lease_s, owner, list(chat_ids)), lease=True,
        )
        return sorted(row[0] for row in rows)

    async def release_chat_hosts(self, owner: str, chat_ids: Sequence[str]) -> None:
        if chat_ids:
            # on the lease connection, like `host_chat`: a chat let go and hosted again at once
            # by this process is let go, then hosted, in that order
            await self._rows("UPDATE chats SET host = NULL, host_expires = NULL WHERE host = %s AND id = ANY(%s) "
                             "RETURNING id", (owner, list(chat_ids)), lease=True)

    async def store_time(self) -> float:
        rows = await self._rows(f"SELECT {NOW}")
        return float(rows[0][0])

    async def heartbeat(self, worker: WorkerRow, *, ttl_s: float) -> None:
        check_lease(ttl_s)
        await self._rows(
            f"INSERT INTO workers (id, kind, drives, started_at, expires) VALUES (%s, %s, %s, %s, {NOW} + %s) "
            "ON CONFLICT (id) DO UPDATE SET expires = excluded.expires, drives = excluded.drives RETURNING id",
            (worker.id, worker.kind, worker.drives, worker.started_at, ttl_s), lease=True,
        )

    async def remove_worker(self, worker_id: str) -> None:
        await self._rows(f"DELETE FROM workers WHERE id = %s OR expires < {NOW} - 3600 RETURNING id", (worker_id,))

    async def live_workers(self) -> list[WorkerRow]:
        rows = await self._rows(
            f"SELECT id, kind, drives, started_at, expires FROM workers WHERE expires >= {NOW} ORDER BY id"
        )
        return [WorkerRow(id=r[0], kind=r[1], drives=bool(r[2]), started_at=r[3], expires=r[4]) for r in rows]

    def _announced(self, run_id: str) -> bool:
        raise NotImplementedError

    async def announce_work(self, run_id: str) -> None:
        if not self._announced(run_id):  # the commit that made it runnable announced it already
            await self._rows("SELECT pg_notify(%s, %s)", (self._work_channel, run_id))

    async def wait_for_work(self, timeout_s: float) -> bool:
        if self._work_flag:  # announced while nobody was waiting
            self._work_flag = False
            return True
        self._work = event = anyio.Event()
        try:
            with anyio.move_on_after(timeout_s):
                await event.wait()
        finally:
            self._work = None
        self._work_flag = False
        return event.is_set()



