"""Faults in one process against the real redis-server: dropped connections, lost entries, closing while the
broker is down. (A broker killed with -9 and restarted: test_sync_processes.py.)"""

from __future__ import annotations

import asyncio
from typing import Any

from mst_llm import SessionLog, get_snapshot
from mst_llm.sync import Conflict, SyncError, replicate

from .broker import Broker
from .helpers import append_foreign, settle
from .sync_models import Tally


def test_dropped_connections_lose_and_duplicate_nothing(broker: Broker, stream: str) -> None:
    async def run() -> tuple[Any, Any, list[Conflict]]:
        one, two = Tally.create(), Tally.create()
        conflicts: list[Conflict] = []
        async with replicate(one, broker.url, stream) as a, replicate(two, broker.url, stream) as b:
            a.on_conflict(conflicts.append)
            b.on_conflict(conflicts.append)
            with broker.client() as admin:
                for round_ in range(5):
                    for index in range(20):
                        one.record(f"a{round_}-{index}")
                        two.record(f"b{round_}-{index}")
                        await asyncio.sleep(0)
                    # every client but this one loses its connection: appends in flight, blocked XREADs, ...
                    admin.client_kill_filter(_type="normal", skipme=True)
                    await settle(a, b)
                    assert admin.client_kill_filter(_type="normal", skipme=True) >= 2  # ... and once more when idle
            return get_snapshot(one), get_snapshot(two), conflicts

    one, two, conflicts = asyncio.run(run())
    log = SessionLog.open(f"{broker.url}#{stream}")
    assert one == two == log.snapshot_at(len(log))
    assert len(log) == one["count"] == 200 and conflicts == []
    assert sorted(one["seen"].values()) == list(range(1, 201))  # each token once, in one unbroken sequence


def test_entries_the_broker_lost_are_reported_and_the_rest_applied(broker: Broker, stream: str) -> None:
    async def run() -> tuple[list[Conflict], int, int]:
        tally = Tally.create()
        conflicts: list[Conflict] = []
        async with replicate(tally, broker.url, stream) as replica:
            replica.on_conflict(conflicts.append)
            patches = [{"op": "replace", "path": "/count", "value": 10 * seq} for seq in (1, 2, 3)]
            append_foreign(broker, stream, patches, lose=(1, 2))  # what a broker without AOF loses in a crash
            await replica.sync()
            return conflicts, tally.count, replica.seq

    conflicts, count, seq = asyncio.run(run())
    assert [(c.kind, c.seq) for c in conflicts] == [("missing_entries", 1)]
    assert isinstance(conflicts[0].error, SyncError) and "lost entries 1..2" in str(conflicts[0].error)
    assert (count, seq) == (30, 3)


def test_commits_still_pending_when_the_broker_is_gone_are_reported(own_broker: Broker, stream: str) -> None:
    async def run() -> list[Conflict]:
        tally = Tally.create()
        conflicts: list[Conflict] = []
        async with replicate(tally, own_broker.url, stream, close_timeout=0.5) as replica:
            replica.on_conflict(conflicts.append)
            own_broker.kill()
            tally.record("x")
            tally.increment()
        assert replica.status == "closed"
        return conflicts

    conflicts = asyncio.run(run())
    assert [c.kind for c in conflicts] == ["unpublished", "unpublished"]
    assert [c.action["name"] if c.action else None for c in conflicts] == ["record", "increment"]
    assert all(isinstance(c.error, SyncError) for c in conflicts)
