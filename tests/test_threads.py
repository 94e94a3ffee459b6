"""Contract section 10: one tree used from several threads.

The interpreter switches threads every microsecond here (``sys.setswitchinterval(1e-6)``), so an unprotected
read-modify-write would lose updates within a few hundred actions.
"""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mst_llm import (
    SessionLog,
    UndoManager,
    action,
    apply_patch,
    autorun,
    get_snapshot,
    model,
    on_patch,
    record_session,
    view,
)

THREADS = 8
PER_THREAD = 300


@model
class Counter:
    value: int = 0
    items: list[int]
    a: int = 0
    b: int = 0

    @view
    def total(self) -> int:
        return sum(self.items)

    @action
    def increment(self) -> None:
        current = self.value
        self.items.append(current)  # a switch here would let another thread read the same value
        self.value = current + 1

    @action
    def set_pair(self, value: int) -> None:
        self.a = value
        self.b = value


@pytest.fixture(autouse=True)
def fast_switching() -> Iterator[None]:
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def run_threads(target: Callable[[int], Any], count: int = THREADS) -> None:
    errors: list[BaseException] = []

    def guarded(index: int) -> None:
        try:
            target(index)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=guarded, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert not any(thread.is_alive() for thread in threads)


def test_no_update_is_lost_and_the_patch_stream_replays_to_the_final_state(tmp_path: Path) -> None:
    counter = Counter.create({"items": []})
    initial = get_snapshot(counter)
    patches: list[dict[str, Any]] = []
    on_patch(counter, lambda patch, inverse: patches.append(patch))
    undo = UndoManager(counter)
    with record_session(counter, tmp_path / "session.jsonl"):
        run_threads(lambda _: [counter.increment() for _ in range(PER_THREAD)])
    total = THREADS * PER_THREAD
    assert counter.value == total
    assert list(counter.items) == list(range(total))  # every action saw the one before it
    assert counter.total == sum(range(total))

    replica = Counter.create(initial)
    apply_patch(replica, patches)
    assert get_snapshot(replica) == get_snapshot(counter)

    log = SessionLog.open(tmp_path / "session.jsonl")
    assert len(log) == total
    assert log.snapshot_at(total) == get_snapshot(counter)
    replayed = Counter.create(initial)
    log.replay(replayed)
    assert get_snapshot(replayed) == get_snapshot(counter)

    while undo.can_undo:
        undo.undo()
    assert get_snapshot(counter) == initial


def test_get_snapshot_from_another_thread_is_always_a_committed_state() -> None:
    counter = Counter.create({"items": []})
    stop = threading.Event()
    torn: list[dict[str, Any]] = []

    def read(_: int) -> None:
        while not stop.is_set():
            snapshot = get_snapshot(counter)
            if snapshot["a"] != snapshot["b"]:
                torn.append(dict(snapshot))

    readers = [threading.Thread(target=read, args=(index,)) for index in range(3)]
    for reader in readers:
        reader.start()
    try:
        run_threads(lambda index: [counter.set_pair(index * 1000 + step) for step in range(200)], count=4)
    finally:
        stop.set()
        for reader in readers:
            reader.join(timeout=60)
    assert torn == []


def test_listeners_and_reactions_see_commits_in_order_on_the_committing_thread() -> None:
    counter = Counter.create({"items": []})
    seen_by_patch: list[int] = []
    seen_by_reaction: list[int] = []
    mismatched_threads: list[str] = []
    committing: dict[int, int] = {}

    def on_value(patch: dict[str, Any], inverse: dict[str, Any]) -> None:
        if patch["path"] == "/value":
            seen_by_patch.append(patch["value"])
            committing[patch["value"]] = threading.get_ident()

    on_patch(counter, on_value)

    def react() -> None:
        value = counter.value
        seen_by_reaction.append(value)
        if value and committing.get(value) != threading.get_ident():
            mismatched_threads.append(threading.current_thread().name)

    autorun(react)
    run_threads(lambda _: [counter.increment() for _ in range(100)], count=4)
    assert seen_by_patch == list(range(1, 401))
    assert seen_by_reaction == list(range(401))
    assert mismatched_threads == []


def test_views_read_from_many_threads_stay_true() -> None:
    counter = Counter.create({"items": []})
    wrong: list[tuple[int, int]] = []

    def work(_: int) -> None:
        for _ in range(150):
            counter.increment()
            total = counter.total  # the sum of items 0..k-1 for some committed k
            length = len(get_snapshot(counter)["items"])  # read after it: k <= length
            k = round((1 + math.sqrt(1 + 8 * total)) / 2)
            if k * (k - 1) // 2 != total or k > length:
                wrong.append((total, length))

    run_threads(work, count=4)
    assert wrong == []
    assert counter.total == sum(range(600))
