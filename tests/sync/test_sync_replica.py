"""Replicas in one process against the real redis-server: joining, following, conflicts, bad entries."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import threading
import time
from typing import Any

import orjson
import pytest

from mst_llm import (
    Commit,
    ModelNode,
    SessionLog,
    SessionLogError,
    action,
    apply_patch,
    get_snapshot,
    model,
    on_commit,
    on_patch,
    on_snapshot,
)
from mst_llm import types as t
from mst_llm.sync import BadEntryError, Conflict, ConflictError, Replica, SyncError, replicate

from .broker import Broker
from .helpers import append_foreign, replay, settle
from .sync_models import Board, Tally


def test_a_second_replica_joins_with_the_state_and_follows(broker: Broker, stream: str) -> None:
    async def run() -> None:
        first, second = Tally.create(), Tally.create()
        async with replicate(first, broker.url, stream) as a:
            first.increment()
            first.record("x")
            await a.sync()
            async with replicate(second, broker.url, stream) as b:
                assert get_snapshot(second) == get_snapshot(first)  # handed over in sync
                assert b.seq == a.seq == 2
                second.increment()
                await settle(a, b)
                assert first.count == second.count == 3
                assert a.status == b.status == "live"
                assert b.lag == 0
        assert a.status == "closed"

    asyncio.run(run())
    assert replay(broker, stream)["count"] == 3


def test_a_lost_race_is_rebased_and_reruns_the_action(broker: Broker, stream: str) -> None:
    async def run() -> tuple[Any, Any, list[Conflict]]:
        first, second = Tally.create(), Tally.create()
        conflicts: list[Conflict] = []
        async with replicate(first, broker.url, stream) as a, replicate(second, broker.url, stream) as b:
            a.on_conflict(conflicts.append)
            b.on_conflict(conflicts.append)
            for _ in range(20):  # both write on the same base before either publishes: one of them loses
                first.increment()
                second.increment()
                first.record(f"a{_}")
                second.record(f"b{_}")
            await settle(a, b)
            return get_snapshot(first), get_snapshot(second), conflicts

    one, two, conflicts = asyncio.run(run())
    assert one == two == replay(broker, stream)
    assert one["count"] == 80
    assert sorted(one["seen"]) == sorted([f"a{i}" for i in range(20)] + [f"b{i}" for i in range(20)])
    assert conflicts == []


def test_what_cannot_be_rerun_is_reported_not_lost(broker: Broker, stream: str) -> None:
    async def run() -> tuple[list[Conflict], Any, Any]:
        first, second = Board.create(), Board.create()
        conflicts: list[Conflict] = []
        async with replicate(first, broker.url, stream) as a, replicate(second, broker.url, stream) as b:
            a.on_conflict(conflicts.append)
            b.on_conflict(conflicts.append)
            first.put("k", 1)
            await settle(a, b)
            # both change k before either publishes: the loser's patch and its bump cannot both survive
            apply_patch(first, {"op": "replace", "path": "/cells/k", "value": 10})
            first.remove("k")
            apply_patch(second, {"op": "replace", "path": "/cells/k", "value": 20})
            second.bump("k")
            await settle(a, b)
            return conflicts, get_snapshot(first), get_snapshot(second)

    conflicts, one, two = asyncio.run(run())
    assert one == two == replay(broker, stream)
    kinds = sorted(conflict.kind for conflict in conflicts)
    # whoever lost: its apply_patch is not re-run; if second lost, bump("k") fails on the removed key
    assert kinds in (["not_rerunnable"], ["not_rerunnable", "rerun_failed"])
    patch_conflict = next(c for c in conflicts if c.kind == "not_rerunnable")
    assert isinstance(patch_conflict.error, ConflictError)
    assert patch_conflict.action is not None and patch_conflict.action["name"] == "@APPLY_PATCHES"
    # first won: second's bump fails on the removed key; second won: first's remove runs on k=21
    assert one == {"cells": {}}


@model
class Card(ModelNode):
    id: t.Identifier


@model
class Deck(ModelNode):
    cards: list[Card]
    gone: list[str]

    @action
    def add(self, card: Card, before: Card) -> None:
        self.cards.insert(self.cards.index(before), card)

    @action
    def discard(self, card: Card) -> None:
        self.gone.append(card.id)
        self.cards.remove(card)


def test_a_rerun_action_finds_its_node_arguments_by_identifier(broker: Broker, stream: str) -> None:
    """A lost race re-runs the loser's action on the winner's state, where the node it was given may have moved:
    the recorded identifier finds it (by path alone, ``discard`` would drop the card that took its place)."""

    async def run() -> tuple[Any, Any, list[Conflict]]:
        first = Deck.create({"cards": [{"id": "a"}, {"id": "b"}, {"id": "c"}]})
        second = Deck.create(get_snapshot(first))
        conflicts: list[Conflict] = []
        async with replicate(first, broker.url, stream) as a, replicate(second, broker.url, stream) as b:
            a.on_conflict(conflicts.append)
            b.on_conflict(conflicts.append)
            # both before either publishes, so one re-runs its action on the other's state (in practice first's:
            # by path alone its discard would drop "a", which second's insert moved to /cards/1)
            first.discard(first.cards[1])
            second.add(Card.create({"id": "x"}), second.cards[0])
            await settle(a, b)
            return get_snapshot(first), get_snapshot(second), conflicts

    one, two, conflicts = asyncio.run(run())
    assert one == two == replay(broker, stream)
    assert [card["id"] for card in one["cards"]] == ["x", "a", "c"] and one["gone"] == ["b"]
    assert conflicts == []


def test_a_garbage_entry_is_reported_and_skipped(broker: Broker, stream: str) -> None:
    async def run() -> tuple[list[Conflict], Any, int]:
        tally = Tally.create()
        conflicts: list[Conflict] = []
        async with replicate(tally, broker.url, stream) as replica:
            replica.on_conflict(conflicts.append)
            tally.increment()
            await replica.sync()
            with broker.client() as client:
                client.xadd(stream, {"e": b"not json", "o": "x"}, id="2-0")
                bad = {"seq": 3, "ts": 0, "action": None, "patches": [{"op": "replace", "path": "/nope", "value": 1}]}
                client.xadd(stream, {"e": orjson.dumps(bad), "o": "x"}, id="3-0")
            await replica.sync()
            tally.increment()
            await replica.sync()
            return conflicts, get_snapshot(tally), replica.seq

    conflicts, snapshot, seq = asyncio.run(run())
    assert [c.kind for c in conflicts] == ["bad_entry", "bad_entry"]
    assert all(isinstance(c.error, BadEntryError) for c in conflicts)
    assert [c.seq for c in conflicts] == [2, 3]
    assert snapshot["count"] == 2 and seq == 4


def test_entries_that_arrive_together_apply_one_by_one_but_the_one_that_does_not(broker: Broker, stream: str) -> None:
    async def run() -> tuple[list[Conflict], Any, int, int]:
        tally = Tally.create()
        conflicts: list[Conflict] = []
        commits: list[Commit] = []
        async with replicate(tally, broker.url, stream) as replica:
            replica.on_conflict(conflicts.append)
            on_commit(tally, commits.append)
            append_foreign(
                broker,
                stream,
                [
                    {"op": "replace", "path": "/count", "value": 5},
                    {"op": "replace", "path": "/nope", "value": 1},
                    {"op": "add", "path": "/seen/a", "value": 1},
                ],
            )
            await replica.sync()
            return conflicts, get_snapshot(tally), replica.seq, len(commits)

    conflicts, snapshot, seq, commits = asyncio.run(run())
    assert [(c.kind, c.seq) for c in conflicts] == [("bad_entry", 2)]
    assert "its patches do not apply" in str(conflicts[0].error)
    assert snapshot == {"count": 5, "seen": {"a": 1}, "stamp": 0.0} and seq == 3
    assert commits == 2  # 1 and 3, one transaction each


def test_a_listener_that_raises_does_not_make_entries_apply_twice_or_count_as_bad(
    broker: Broker, stream: str, caplog: pytest.LogCaptureFixture
) -> None:
    def fail(patch: dict[str, Any], _inverse: dict[str, Any]) -> None:
        raise RuntimeError("a listener's own bug")

    async def run() -> tuple[list[Conflict], int, int, int]:
        tally = Tally.create()
        conflicts: list[Conflict] = []
        commits: list[Commit] = []
        async with replicate(tally, broker.url, stream) as replica:
            replica.on_conflict(conflicts.append)
            on_commit(tally, commits.append)
            on_patch(tally, fail)  # apply_patch raises after its commit
            append_foreign(broker, stream, [{"op": "replace", "path": "/count", "value": value} for value in (1, 2)])
            await replica.sync()
            return conflicts, tally.count, replica.seq, len(commits)

    conflicts, count, seq, commits = asyncio.run(run())
    assert conflicts == [] and (count, seq) == (2, 2)
    assert commits == 2  # each entry once, in its own transaction; not again
    assert "a listener raised on" in caplog.text and "entry 2: a listener's own bug" in caplog.text


WATCHED: list[Replica] = []  # the replica that Gate.hold watches (once: a rebase re-runs hold, which then just counts)
HELD = threading.Event()
LAGS: list[int] = []


@model
class Gate(ModelNode):
    count: int = 0
    holds: int = 0

    @action
    def hold(self, lag: int) -> None:
        """Keep the tree's lock (from another thread) until the watched replica has seen ``lag`` entries that it
        cannot apply meanwhile."""
        HELD.set()
        deadline = time.monotonic() + 20
        while WATCHED and WATCHED[0].lag < lag and time.monotonic() < deadline:
            time.sleep(0.005)
        if WATCHED:
            LAGS.append(WATCHED.pop().lag)
        self.holds += 1


def test_lag_counts_entries_seen_and_not_applied_yet(broker: Broker, stream: str) -> None:
    async def run() -> tuple[Any, int, int]:
        gate = Gate.create()
        async with replicate(gate, broker.url, stream) as replica:
            WATCHED.append(replica)
            holder = threading.Thread(target=gate.hold, args=(2,))
            holder.start()  # an action in another thread holds the tree's lock: the replica cannot apply
            assert await asyncio.to_thread(HELD.wait, 10)
            append_foreign(broker, stream, [{"op": "replace", "path": "/count", "value": value} for value in (1, 2)])
            await replica.sync()  # the loop waits for the tree's lock in the meantime
            await asyncio.to_thread(holder.join, 10)
            return get_snapshot(gate), replica.seq, replica.lag

    snapshot, seq, lag = asyncio.run(run())
    assert LAGS == [2]  # seen by the reader, waiting for the lock
    # the other thread's commit landed while the replica applied the entries: it is published (entry 3), not lost
    assert snapshot == {"count": 2, "holds": 1} and seq == 3 and lag == 0
    assert replay(broker, stream) == snapshot


def test_checkpoints_trim_and_a_late_joiner_starts_from_one(broker: Broker, stream: str) -> None:
    async def run() -> tuple[Any, Any, int]:
        first, late = Tally.create(), Tally.create()
        async with replicate(first, broker.url, stream, checkpoint_every=10, retain=0) as a:
            for index in range(35):
                first.record(str(index))
                await asyncio.sleep(0)
            await a.sync()
            with broker.client() as client:
                assert client.xlen(stream) < 35  # trimmed
                stored = int(client.hget(f"{stream}:checkpoint", "seq") or 0)
            async with replicate(late, broker.url, stream) as b:
                assert b.seq == a.seq == 35
                return get_snapshot(first), get_snapshot(late), stored

    one, two, stored = asyncio.run(run())
    assert one == two and one["count"] == 35
    assert stored >= 30
    with pytest.raises(SessionLogError, match="trimmed"):
        SessionLog.open(f"{broker.url}#{stream}")


def test_status_is_observable(broker: Broker, stream: str) -> None:
    async def run() -> list[str]:
        seen: list[str] = []
        replica = replicate(Tally.create(), broker.url, stream)
        on_snapshot(replica.state, lambda snapshot: seen.append(snapshot["status"]))
        async with replica:
            pass
        return seen

    assert asyncio.run(run()) == ["live", "closed"]


def test_a_stream_of_another_type_is_refused(broker: Broker, stream: str) -> None:
    async def run() -> None:
        async with replicate(Tally.create(), broker.url, stream):
            pass
        async with replicate(Board.create(), broker.url, stream):
            pass  # pragma: no cover

    with pytest.raises(SyncError, match="replicates a Tally, not a Board"):
        asyncio.run(run())


def test_an_unreachable_broker_is_a_sync_error() -> None:
    async def run() -> None:
        async with replicate(Tally.create(), "redis://127.0.0.1:1/0", "s", connect_timeout=0.3):
            pass  # pragma: no cover

    with pytest.raises(SyncError, match=re.escape("cannot reach the broker at redis://127.0.0.1:1/0")):
        asyncio.run(run())


def test_without_redis_the_import_names_the_extra() -> None:
    hide = "import sys; sys.modules['redis'] = None; import mst_llm.sync"
    result = subprocess.run([sys.executable, "-c", hide], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "pip install 'mst-llm[redis]'" in result.stderr
