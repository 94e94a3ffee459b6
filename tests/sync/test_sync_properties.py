"""Hypothesis: random actions on random replicas converge, and every action lands once or is reported."""

from __future__ import annotations

import asyncio
from itertools import count
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mst_llm import SessionLog, get_snapshot
from mst_llm.sync import Conflict, replicate

from .broker import Broker
from .sync_models import Board

KEYS = st.sampled_from(["a", "b", "c"])
OPS = st.lists(
    st.tuples(
        st.integers(0, 2),  # which replica
        st.sampled_from(["put", "bump", "remove"]),
        KEYS,
        st.booleans(),  # yield to the event loop after it (publish now) or not (batch, race)
    ),
    max_size=40,
)
_runs = count()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_random_actions_on_random_replicas_converge(broker: Broker, ops: list[tuple[int, str, str, bool]]) -> None:
    stream = f"hypothesis-{next(_runs)}-{id(ops)}"

    async def run() -> tuple[list[Any], int, list[Conflict]]:
        boards = [Board.create() for _ in range(3)]
        conflicts: list[Conflict] = []
        committed = 0
        values = count()
        async with (
            replicate(boards[0], broker.url, stream) as r0,
            replicate(boards[1], broker.url, stream) as r1,
            replicate(boards[2], broker.url, stream) as r2,
        ):
            replicas = [r0, r1, r2]
            for replica in replicas:
                replica.on_conflict(conflicts.append)
            for which, name, key, pause in ops:
                board = boards[which]
                try:
                    if name == "put":
                        # a multiple of 1,000 no other put uses, and bumps (at most 40, +1 each) never reach one: so
                        # a put is a change even when a rebase re-runs it after other replicas' puts and bumps
                        # (put a=-3 pending; another replica's put a=-4 and bump a made -3: the re-run was a no-op)
                        board.put(key, -1000 * next(values))
                    elif name == "bump":
                        board.bump(key)
                    else:
                        board.remove(key)
                    committed += 1
                except KeyError:
                    pass  # refused locally: never committed, nothing to replicate
                if pause:
                    await asyncio.sleep(0)
            for _ in range(2):
                for replica in replicas:
                    await replica.sync(timeout=20)
            return [get_snapshot(board) for board in boards], committed, conflicts

    snapshots, committed, conflicts = asyncio.run(run())
    log = SessionLog.open(f"{broker.url}#{stream}")
    assert snapshots[0] == snapshots[1] == snapshots[2] == log.snapshot_at(len(log))
    assert all(conflict.kind == "rerun_failed" for conflict in conflicts)
    # each committed action is in the stream once (perhaps re-run) or was reported as not re-runnable
    assert len(log) == committed - len(conflicts)
