"""Contract section 9: reactions (autorun, reaction, when) with MobX semantics."""

from __future__ import annotations

import logging
import time
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from mst_llm import (
    Disposer,
    ReactionLoopError,
    UndoManager,
    action,
    add_disposer,
    apply_patch,
    autorun,
    detach,
    get_snapshot,
    model,
    on_patch,
    on_snapshot,
    reaction,
    view,
    when,
)
from mst_llm import types as t


@model
class Item:
    id: t.Identifier
    title: str = ""
    done: bool = False


@model
class Board:
    items: list[Item]
    tags: dict[str, str]
    count: int = 0
    flag: bool = False
    other: int = 0
    selected: t.Reference[Item] | None = None

    @view
    def done_count(self) -> int:
        return sum(1 for item in self.items if item.done)

    @action
    def set_count(self, value: int) -> None:
        self.count = value

    @action
    def set_both(self, value: int) -> None:
        self.count = value
        self.other = value

    @action
    def set_flag(self, value: bool) -> None:
        self.flag = value

    @action
    def set_other(self, value: int) -> None:
        self.other = value

    @action
    def add(self, ident: str) -> None:
        self.items.append({"id": ident})

    @action
    def toggle(self, index: int) -> None:
        self.items[index].done = not self.items[index].done

    @action
    def tag(self, key: str, value: str) -> None:
        self.tags[key] = value

    @action
    def select(self, ident: str | None) -> None:
        self.selected = ident

    @action
    def retitle(self, index: int, title: str) -> None:
        self.items[index].title = title

    @action
    def drop(self, index: int) -> None:
        del self.items[index]

    @action
    def drop_and_fail(self, index: int) -> None:
        del self.items[index]
        raise RuntimeError("rolled back")

    @action
    def detach_first(self) -> Item:
        return detach(self.items[0])  # type: ignore[no-any-return]

    @action
    def fail_after(self, value: int) -> None:
        self.count = value
        raise RuntimeError("rolled back")


def board() -> Board:
    return Board.create({"items": [{"id": "a"}, {"id": "b"}], "tags": {}})


def test_autorun_runs_at_once_and_after_each_commit_that_changed_what_it_read() -> None:
    b = board()
    seen: list[int] = []
    dispose = autorun(lambda: seen.append(b.count))
    b.set_count(1)
    b.set_other(5)  # not read
    b.set_count(1)  # an equal write changes nothing
    b.set_count(2)
    assert seen == [0, 1, 2]
    dispose()
    b.set_count(3)
    assert seen == [0, 1, 2]


def test_dependencies_are_dynamic() -> None:
    b = board()
    seen: list[Any] = []
    autorun(lambda: seen.append(b.count if b.flag else "off"))
    b.set_count(1)  # the branch reading count was not taken
    b.set_flag(True)
    b.set_count(2)
    b.set_flag(False)
    b.set_count(3)  # not read any more
    assert seen == ["off", 1, 2, "off"]


def test_one_run_per_commit_after_patch_and_snapshot_listeners_on_a_consistent_state() -> None:
    b = board()
    order: list[Any] = []
    on_patch(b, lambda patch, inverse: order.append("patch"))
    on_snapshot(b, lambda snapshot: order.append("snapshot"))
    autorun(lambda: order.append(("run", b.count, b.other)))
    order.clear()
    b.set_both(7)
    assert order == ["patch", "patch", "snapshot", ("run", 7, 7)]


def test_a_rolled_back_transaction_runs_nothing() -> None:
    b = board()
    seen: list[int] = []
    autorun(lambda: seen.append(b.count))
    with pytest.raises(RuntimeError):
        b.fail_after(9)
    assert seen == [0]
    b.set_count(1)  # still subscribed after the rollback
    assert seen == [0, 1]


def test_items_length_keys_values_and_references_are_dependencies() -> None:
    b = board()
    seen: list[Any] = []
    autorun(lambda: seen.append((len(b.items), b.items[0].title, dict(b.tags), b.selected and b.selected.id)))
    b.add("c")
    b.retitle(0, "x")
    b.tag("k", "v")
    b.select("b")
    assert seen == [
        (2, "", {}, None),
        (3, "", {}, None),
        (3, "x", {}, None),
        (3, "x", {"k": "v"}, None),
        (3, "x", {"k": "v"}, "b"),
    ]


def test_a_reaction_reading_a_view_runs_only_when_the_view_value_changes() -> None:
    b = board()
    seen: list[int] = []
    autorun(lambda: seen.append(b.done_count))
    b.retitle(0, "x")  # the view reads done, not title
    b.toggle(0)
    b.toggle(1)
    b.set_count(4)
    assert seen == [0, 1, 2]


def test_reaction_calls_the_effect_with_new_and_old_untracked() -> None:
    b = board()
    calls: list[Any] = []
    dispose = reaction(lambda: b.count, lambda new, old: calls.append((new, old, b.other)))
    b.set_count(1)
    b.set_other(3)  # read by the effect only: not tracked
    b.set_count(2)
    assert calls == [(1, 0, 0), (2, 1, 3)]
    dispose()


def test_reaction_fire_immediately_and_equals() -> None:
    b = board()
    calls: list[Any] = []
    reaction(
        lambda: b.count,
        lambda new, old: calls.append((new, old)),
        fire_immediately=True,
        equals=lambda a, c: a // 10 == c // 10,
    )
    b.set_count(5)  # equal by the comparer
    b.set_count(12)
    assert calls == [(0, None), (12, 0)]


def test_when_with_an_effect_runs_once_the_first_time_the_predicate_holds() -> None:
    b = board()
    calls: list[int] = []
    disposer = when(lambda: b.count > 1, lambda: calls.append(b.count))
    b.set_count(1)
    b.set_count(2)
    b.set_count(3)
    assert calls == [2]
    assert disposer.disposed
    when(lambda: b.count == 3, lambda: calls.append(-1))  # already true: at once
    assert calls == [2, -1]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_when_is_awaitable_with_a_timeout(backend: str) -> None:
    b = board()

    async def main() -> None:
        async def later() -> None:
            await anyio.sleep(0.01)
            b.set_count(5)

        async with anyio.create_task_group() as group:
            group.start_soon(later)
            await when(lambda: b.count == 5, timeout=5)
        assert b.count == 5
        with pytest.raises(TimeoutError):
            await when(lambda: b.count == 6, timeout=0.05)

    anyio.run(main, backend=backend)


def test_awaiting_when_from_another_thread_commit() -> None:
    b = board()

    def in_a_thread() -> None:
        time.sleep(0.02)
        b.set_count(8)

    async def main() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(anyio.to_thread.run_sync, in_a_thread)
            await when(lambda: b.count == 8, timeout=5)

    anyio.run(main)
    assert b.count == 8


def test_cancelling_an_awaited_when_disposes_it() -> None:
    b = board()
    waiter = when(lambda: b.count == 99)

    async def main() -> None:
        with anyio.move_on_after(0.02):
            await waiter
        assert waiter.disposer is not None and waiter.disposer.disposed

    anyio.run(main)


def test_errors_go_to_on_error_and_never_roll_back_the_action() -> None:
    b = board()
    errors: list[BaseException] = []

    def boom() -> None:
        if b.count == 1:
            raise ValueError("reaction failed")

    autorun(boom, on_error=errors.append)
    b.set_count(1)
    assert b.count == 1
    assert [str(error) for error in errors] == ["reaction failed"]
    b.set_count(2)  # keeps running after it raised
    assert len(errors) == 1


def test_an_error_without_on_error_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    b = board()
    autorun(lambda: 1 / b.count if b.flag else None, name="divide-by-count")
    with caplog.at_level(logging.ERROR, logger="mst_llm"):
        b.set_flag(True)
    assert b.flag is True
    assert "divide-by-count" in caplog.text and "ZeroDivisionError" in caplog.text


def test_reactions_that_keep_triggering_each_other_raise_reaction_loop_error() -> None:
    b = board()
    autorun(lambda: b.set_count(b.other + 1), name="ping")
    autorun(lambda: b.set_other(b.count + 1), name="pong")
    with pytest.raises(ReactionLoopError, match="ping") as raised:
        b.set_count(100)
    assert "pong" in str(raised.value)
    assert b.count > 100  # what was committed stays committed


def test_a_reaction_calling_an_action_settles_in_the_next_round() -> None:
    b = board()
    autorun(lambda: b.set_other(b.count * 2))
    b.set_count(4)
    assert b.other == 8


def test_disposer_is_idempotent_and_a_context_manager() -> None:
    b = board()
    seen: list[int] = []
    with autorun(lambda: seen.append(b.count)) as disposer:
        assert isinstance(disposer, Disposer)
        b.set_count(1)
    b.set_count(2)
    disposer()
    disposer()
    assert seen == [0, 1]


def test_add_disposer_runs_after_the_commit_that_destroys_or_detaches_the_node() -> None:
    b = board()
    ran: list[str] = []
    add_disposer(b.items[0], lambda: ran.append("a"))
    add_disposer(b.items[1], lambda: ran.append("b"))
    with pytest.raises(RuntimeError):
        b.drop_and_fail(0)
    assert ran == []  # the removal was rolled back
    b.drop(0)
    assert ran == ["a"]
    b.detach_first()
    assert ran == ["a", "b"]


def test_a_reaction_stops_by_itself_when_every_node_it_watched_died() -> None:
    b = board()
    item = b.items[0]
    seen: list[str] = []
    errors: list[BaseException] = []
    autorun(lambda: seen.append(item.title), on_error=errors.append)
    b.drop(0)  # would raise DeadNodeError in the reaction if it ran again
    b.retitle(0, "new")  # the survivor at index 0 is another node
    assert seen == [""]
    assert errors == []


# --- properties -----------------------------------------------------------------------------------------------

STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("toggle"), st.integers(0, 3)),
        st.tuples(st.just("add"), st.sampled_from(["c", "d", "e"])),
        st.tuples(st.just("retitle"), st.integers(0, 3)),
        st.tuples(st.just("fail"), st.integers(0, 3)),
    ),
    max_size=30,
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(STEPS)
def test_an_autorun_sees_exactly_the_distinct_consecutive_view_values(steps: list[tuple[str, Any]]) -> None:
    b = board()
    seen: list[int] = []
    autorun(lambda: seen.append(b.done_count))
    expected = [sum(1 for item in get_snapshot(b)["items"] if item["done"])]
    for kind, arg in steps:
        try:
            if kind == "toggle":
                b.toggle(arg % len(b.items))
            elif kind == "add":
                b.add(arg)
            elif kind == "retitle":
                b.retitle(arg % len(b.items), "t")
            else:
                b.fail_after(arg)
        except Exception:
            pass
        value = sum(1 for item in get_snapshot(b)["items"] if item["done"])
        if value != expected[-1]:
            expected.append(value)
    assert seen == expected


class ReactionMachine(RuleBasedStateMachine):
    """Actions, rollbacks, undo, apply_patch and dispose in any order: every live reaction has seen the
    current state, each run saw a committed state, and a disposed one never runs again."""

    def __init__(self) -> None:
        super().__init__()
        self.board = board()
        self.undo = UndoManager(self.board)
        self.runs: list[tuple[int, int]] = []
        self.disposer = autorun(lambda: self.runs.append((self.board.count, self.board.other)))
        self.disposed_at: int | None = None

    @rule(value=st.integers(0, 5))
    def set_both(self, value: int) -> None:
        self.board.set_both(value)

    @rule(value=st.integers(0, 5))
    def set_count(self, value: int) -> None:
        self.board.set_count(value)

    @rule(value=st.integers(0, 5))
    def fail(self, value: int) -> None:
        with pytest.raises(RuntimeError):
            self.board.fail_after(value)

    @rule()
    def undo_last(self) -> None:
        if self.undo.can_undo:
            self.undo.undo()

    @rule(value=st.integers(0, 5))
    def patch(self, value: int) -> None:
        apply_patch(self.board, [{"op": "replace", "path": "/other", "value": value}])

    @rule()
    def dispose(self) -> None:
        self.disposer()
        if self.disposed_at is None:
            self.disposed_at = len(self.runs)

    @invariant()
    def reaction_is_current_or_stopped(self) -> None:
        current = (self.board.count, self.board.other)
        if self.disposed_at is None:
            assert self.runs[-1] == current
        else:
            assert len(self.runs) == self.disposed_at
        assert all(a != b for a, b in zip(self.runs, self.runs[1:], strict=False))


TestReactionMachine = ReactionMachine.TestCase
TestReactionMachine.settings = settings(max_examples=50, stateful_step_count=30, deadline=None)
