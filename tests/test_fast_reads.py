"""Views that read one field of many nodes: the field becomes one dependency ("``done`` of any Todo") and is read
at C speed while the view is computed again. These tests check that such a view is never stale, whatever road a
change takes and whichever thread computes what, and that the swapped field reader never outlives the view."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mst_llm import UndoManager, action, autorun, get_snapshot, model, unprotect, view
from mst_llm import types as t
from mst_llm.core.state import reactivity
from mst_llm.errors import ProtectionError
from tests.test_view_invalidation import INITIAL, MUTATIONS, ROADS, State, _apply, _check_views


@contextmanager
def grouping_every_field() -> Iterator[None]:
    """Group from the first repeated read, so that small trees take the fast road too."""
    saved = reactivity._FastReads.MIN_DEPS, reactivity._FastReads.MIN_NODES
    reactivity._FastReads.MIN_DEPS, reactivity._FastReads.MIN_NODES = 1, 1
    try:
        yield
    finally:
        reactivity._FastReads.MIN_DEPS, reactivity._FastReads.MIN_NODES = saved


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(MUTATIONS, ROADS), max_size=25))
def test_grouped_views_equal_the_same_function_of_the_snapshot(steps: list[tuple[Callable[[Any], None], str]]) -> None:
    with grouping_every_field():
        state = State.create(INITIAL)
        undo = UndoManager(state)
        _check_views(state)
        _check_views(state)  # computed again: now with the grouped fields read fast
        for mutation, road in steps:
            _apply(state, undo, mutation, road)
            _check_views(state)


@model
class Todo:
    id: t.Identifier
    done: bool = False
    urgent: bool = False

    @view
    def pressing(self) -> bool:
        return self.done and self.urgent

    @action
    def toggle(self) -> None:
        self.done = not self.done


COMPUTED: list[str] = []


@model
class Board:
    todos: list[Todo]
    fail: bool = False

    @view
    def done_count(self) -> int:
        COMPUTED.append("done_count")
        if self.fail:
            raise RuntimeError("view failed on purpose")
        return sum(1 for todo in self.todos if todo.done)

    @view
    def pressing_count(self) -> int:
        # reads ``done`` on every todo and, through a nested view, ``done`` again
        return sum(1 for todo in self.todos if todo.done and todo.pressing)

    @action
    def set_fail(self, fail: bool) -> None:
        self.fail = fail


N = 300


def _board(n: int = N) -> Board:
    return Board.create({"todos": [{"id": str(i), "done": i % 2 == 0, "urgent": i % 3 == 0} for i in range(n)]})


def _expected_done(board: Board) -> int:
    return sum(1 for todo in get_snapshot(board)["todos"] if todo["done"])


def test_a_view_over_many_nodes_groups_the_field_and_stays_true() -> None:
    board = _board()
    assert board.done_count == N // 2
    computed = board._views["done_count"]  # type: ignore[index]
    assert [(field.cls, field.name) for field in computed.fast] == [(Todo, "done")]
    assert len(computed.deps) < 5  # the list, the field as a whole, not 300 (node, key) pairs
    for i in (0, 1, 7, 299, 0):
        board.todos[i].toggle()
        assert board.done_count == _expected_done(board)
    assert type(Todo.__dict__["done"]).__name__ == "_Field"  # the fast reader was swapped out again


def test_the_fast_reader_is_swapped_out_when_the_view_raises() -> None:
    board = _board()
    assert board.done_count == N // 2
    board.set_fail(True)
    with pytest.raises(RuntimeError, match="on purpose"):
        _ = board.done_count
    assert type(Todo.__dict__["done"]).__name__ == "_Field"
    board.set_fail(False)
    assert board.done_count == N // 2


def test_the_fast_reader_writes_through_the_field() -> None:
    """A write that meets the swapped-in property (another thread's, while the view runs) takes the field's
    own road: outside an action the tree stays protected."""
    board = _board()
    readers = Todo._mst_fast_reader("done")
    assert readers is not None
    slow, fast = readers
    assert slow is Todo.__dict__["done"]
    assert fast.__get__(board.todos[0]) is True
    with pytest.raises(ProtectionError):
        fast.__set__(board.todos[0], False)
    assert get_snapshot(board)["todos"][0]["done"] is True


def test_a_nested_view_read_during_the_fast_computation_stays_true() -> None:
    board = _board()
    for _ in range(2):
        assert board.pressing_count == sum(1 for i in range(N) if i % 2 == 0 and i % 3 == 0)
    board.todos[6].toggle()  # 6: done and urgent -> not done
    assert board.todos[6].pressing is False
    assert board.pressing_count == sum(1 for i in range(N) if i % 2 == 0 and i % 3 == 0) - 1
    board.todos[6].toggle()
    assert board.todos[6].pressing is True


def test_a_change_in_another_tree_recomputes_but_never_corrupts() -> None:
    board, other = _board(), _board()
    assert board.done_count == other.done_count == N // 2
    assert board.done_count == N // 2
    COMPUTED.clear()
    other.todos[1].toggle()  # the grouped dependency is the field of every Todo: board's view recomputes
    assert board.done_count == N // 2
    assert other.done_count == N // 2 + 1


def test_an_autorun_over_a_grouped_view_sees_each_distinct_value_once() -> None:
    board = _board()
    assert board.done_count == N // 2  # grouped: the autorun's first run computes it again, fast
    board.todos[N - 1].toggle()
    seen: list[int] = []
    dispose = autorun(lambda: seen.append(board.done_count))
    try:
        for i in range(10):
            board.todos[i].toggle()
        unprotected = _board(10)
        unprotect(unprotected)
        unprotected.todos[1].done = True  # another tree: board's view recomputes to the same value, no run
    finally:
        dispose()
    expected = [N // 2 + 1]
    for i in range(10):
        expected.append(expected[-1] + (-1 if i % 2 == 0 else 1))
    assert seen == expected


HOOK: list[Callable[[], None]] = []


@model
class HookedBoard:
    todos: list[Todo]

    @view
    def done_count(self) -> int:
        for hook in HOOK:
            hook()
        return sum(1 for todo in self.todos if todo.done)


def test_a_reaction_started_while_a_field_is_fast_depends_on_it() -> None:
    """A reaction that runs while the field is read fast (here: started by the view itself; in an app: on another
    thread) could not see its reads of that field: it depends on the field as a whole and reruns when it changes."""
    board = HookedBoard.create({"todos": [{"id": str(i), "done": False} for i in range(N)]})
    assert board.done_count == 0  # grouped from now on
    board.todos[0].toggle()
    other = _board(4)
    seen: list[bool] = []
    disposers = []
    HOOK.append(lambda: disposers.append(autorun(lambda: seen.append(other.todos[1].done))))
    try:
        assert board.done_count == 1
    finally:
        HOOK.clear()
    try:
        other.todos[1].toggle()
        assert seen == [False, True]
    finally:
        for dispose in disposers:
            dispose()


def test_threads_computing_views_over_one_class_are_never_stale() -> None:
    """One thread recomputes a grouped view (swapping the reader in and out) while others toggle todos of
    their own trees and read a small view over them: no thread ever sees a stale count."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    errors: list[str] = []
    stop = threading.Event()
    big = _board()

    def recompute() -> None:
        try:
            while not stop.is_set():
                big.todos[0].toggle()
                if big.done_count != _expected_done(big):
                    errors.append("big board stale")
        except Exception as error:  # (the test reports every thread's error)
            errors.append(f"big board: {error!r}")

    def small_reader(seed: int) -> None:
        small = _board(8)
        try:
            for step in range(300):
                small.todos[(seed + step) % 8].toggle()
                if small.done_count != _expected_done(small):
                    errors.append(f"small board {seed} stale at step {step}")
                if small.todos[3].pressing != (small.todos[3].done and small.todos[3].urgent):
                    errors.append(f"small board {seed}: pressing stale at step {step}")
        except Exception as error:
            errors.append(f"small board {seed}: {error!r}")

    try:
        worker = threading.Thread(target=recompute)
        worker.start()
        readers = [threading.Thread(target=small_reader, args=(seed,)) for seed in range(3)]
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join()
        stop.set()
        worker.join()
    finally:
        sys.setswitchinterval(old)
    assert errors == []
    assert type(Todo.__dict__["done"]).__name__ == "_Field"
