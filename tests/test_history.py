"""Contract section 6: UndoManager and TimeTraveller."""

from __future__ import annotations

import contextlib
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings

from mst_llm import (
    MSTError,
    PatchError,
    TimeTraveller,
    UndoManager,
    action,
    apply_patch,
    flow,
    get_snapshot,
    model,
    on_patch,
    unprotect,
)
from mst_llm import types as t
from tests.schema import EXPECTED_ERRORS, Op, op_sequences, run_op
from tests.schema import Store as SchemaStore


@model
class Item:
    id: t.Identifier
    title: str = ""
    done: bool = False

    @action
    def toggle(self) -> None:
        self.done = not self.done

    @action
    def rename(self, title: str) -> None:
        self.title = title


@model
class Box:
    items: list[Item]
    count: int = 0

    @action
    def add(self, item_id: str) -> None:
        self.items.append({"id": item_id})

    @action
    def bump(self) -> None:
        self.count += 1

    @action
    def bump_twice_then_fail(self) -> None:
        self.count += 2
        raise RuntimeError("boom")

    @flow
    async def slow_bump(self) -> None:
        self.count += 1
        await anyio.sleep(0)
        self.count += 10


def make_box() -> Box:
    return Box.create({"items": [{"id": "a"}, {"id": "b"}]})


# --- UndoManager --------------------------------------------------------------------------------------------


def test_one_entry_per_transaction_with_patches_and_inverses() -> None:
    box = make_box()
    undo = UndoManager(box)
    box.items[0].toggle()
    box.add("c")
    assert len(undo.history) == 2
    first = undo.history[0]
    assert first.patches == [{"op": "replace", "path": "/items/0/done", "value": True}]
    assert first.inverse_patches == [{"op": "replace", "path": "/items/0/done", "value": False}]
    assert first.actions == ({"name": "toggle", "path": "/items/0", "args": []},)
    assert undo.history[1].patches[0]["op"] == "add"
    assert undo.can_undo and not undo.can_redo


def test_undo_and_redo_restore_states() -> None:
    box = make_box()
    s0 = get_snapshot(box)
    undo = UndoManager(box)
    box.bump()
    s1 = get_snapshot(box)
    box.add("c")
    s2 = get_snapshot(box)
    undo.undo()
    assert get_snapshot(box) == s1
    undo.undo()
    assert get_snapshot(box) == s0
    assert not undo.can_undo and undo.can_redo
    undo.redo()
    assert get_snapshot(box) == s1
    undo.redo()
    assert get_snapshot(box) == s2
    assert not undo.can_redo
    assert len(undo.history) == 2


def test_undo_redo_emit_patches_but_are_not_recorded() -> None:
    box = make_box()
    undo = UndoManager(box)
    seen: list[dict[str, Any]] = []
    on_patch(box, lambda patch, inverse: seen.append(patch))
    box.bump()
    undo.undo()
    undo.redo()
    assert [p["value"] for p in seen] == [1, 0, 1]
    assert len(undo.history) == 1 and undo.undo_index == 1


def test_failed_action_leaves_no_entry() -> None:
    box = make_box()
    undo = UndoManager(box)
    with pytest.raises(RuntimeError):
        box.bump_twice_then_fail()
    assert undo.history == () and not undo.can_undo


def test_new_change_after_undo_discards_redo() -> None:
    box = make_box()
    undo = UndoManager(box)
    box.bump()
    box.bump()
    undo.undo()
    box.add("c")
    assert not undo.can_redo
    assert [e.actions[0]["name"] for e in undo.history] == ["bump", "add"]


def test_with_group_merges_into_one_entry() -> None:
    box = make_box()
    s0 = get_snapshot(box)
    undo = UndoManager(box)
    with undo.with_group():
        box.bump()
        with undo.with_group():  # nested groups are flat
            box.items[1].rename("x")
        box.add("c")
    assert len(undo.history) == 1
    entry = undo.history[0]
    assert len(entry.patches) == 3 and len(entry.actions) == 3
    undo.undo()
    assert get_snapshot(box) == s0


def test_empty_group_adds_nothing() -> None:
    box = make_box()
    undo = UndoManager(box)
    with undo.with_group():
        pass
    assert undo.history == ()


def test_group_keeps_changes_committed_before_an_exception() -> None:
    box = make_box()
    undo = UndoManager(box)
    with contextlib.suppress(RuntimeError), undo.with_group():
        box.bump()
        box.bump_twice_then_fail()
    assert len(undo.history) == 1 and get_snapshot(box)["count"] == 1


def test_without_undo_skips_recording_and_keeps_redo() -> None:
    box = make_box()
    undo = UndoManager(box)
    box.bump()
    undo.undo()
    with undo.without_undo():
        box.items[0].rename("quiet")
    assert undo.history and undo.can_redo
    undo.redo()
    assert get_snapshot(box)["count"] == 1
    assert get_snapshot(box)["items"][0]["title"] == "quiet"


def test_max_history_drops_oldest() -> None:
    box = make_box()
    undo = UndoManager(box, max_history=2)
    for _ in range(5):
        box.bump()
    assert len(undo.history) == 2
    undo.undo()
    undo.undo()
    assert get_snapshot(box)["count"] == 3 and not undo.can_undo
    with pytest.raises(ValueError):
        UndoManager(box, max_history=0)


def test_clear_parts() -> None:
    box = make_box()
    undo = UndoManager(box)
    for _ in range(3):
        box.bump()
    undo.undo()
    undo.clear(undo=False)
    assert len(undo.history) == 2 and not undo.can_redo
    undo.clear()
    assert undo.history == () and not undo.can_undo


def test_nothing_to_undo_or_redo_raises() -> None:
    undo = UndoManager(make_box())
    with pytest.raises(MSTError, match="nothing to undo"):
        undo.undo()
    with pytest.raises(MSTError, match="nothing to redo"):
        undo.redo()


def test_undo_that_no_longer_applies_changes_nothing() -> None:
    box = make_box()
    undo = UndoManager(box)
    box.items[1].toggle()
    with undo.without_undo():
        apply_patch(box, {"op": "remove", "path": "/items/1"})  # the entry's path is gone
    before = get_snapshot(box)
    with pytest.raises(PatchError):
        undo.undo()
    assert get_snapshot(box) == before and undo.can_undo


def test_bare_mutations_of_unprotected_tree_are_entries_without_action() -> None:
    box = make_box()
    unprotect(box)
    undo = UndoManager(box)
    box.count = 7
    assert undo.history[0].actions == ()
    undo.undo()
    assert box.count == 0


def test_subtree_target_has_relative_paths_and_stop() -> None:
    box = make_box()
    undo = UndoManager(box.items[0])
    box.items[0].rename("t")
    box.bump()  # outside the target's subtree
    assert len(undo.history) == 1
    assert undo.history[0].patches == [{"op": "replace", "path": "/title", "value": "t"}]
    undo.stop()
    box.items[0].toggle()
    assert len(undo.history) == 1
    undo.undo()
    assert get_snapshot(box.items[0])["title"] == ""


def test_flow_segments_are_separate_entries_unless_grouped() -> None:
    box = make_box()
    undo = UndoManager(box)
    anyio.run(box.slow_bump)
    assert len(undo.history) == 2

    async def grouped() -> None:
        with undo.with_group():
            await box.slow_bump()

    anyio.run(grouped)
    assert len(undo.history) == 3
    undo.undo()
    assert get_snapshot(box)["count"] == 11


PROPS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
INITIAL = {
    "todos": [{"id": "t1", "title": "a", "tags": ["x/y"]}, {"id": "t2"}],
    "users": {"u1": {"id": "u1", "address": {}}},
    "settings": {},
}


def run_all(store: Any, ops: list[Op]) -> list[Any]:
    """Run ``ops``; return the snapshot after each committed transaction (failed ones commit nothing).

    A transaction can emit patches yet leave the snapshot equal (moving an item onto itself): it still counts.
    """
    emitted: list[Any] = []
    on_patch(store, lambda patch, inverse: emitted.append(patch))
    states = [get_snapshot(store)]
    for op in ops:
        before = len(emitted)
        with contextlib.suppress(*EXPECTED_ERRORS):
            run_op(store, op)
        if len(emitted) > before:
            states.append(get_snapshot(store))
    return states


@PROPS
@given(op_sequences())
def test_undo_all_then_redo_all_walks_every_state(ops: list[Op]) -> None:
    store = SchemaStore.create(INITIAL)
    undo = UndoManager(store)
    states = run_all(store, ops)
    assert len(undo.history) == len(states) - 1
    for state in reversed(states[:-1]):
        undo.undo()
        assert get_snapshot(store) == state
    for state in states[1:]:
        undo.redo()
        assert get_snapshot(store) == state


# --- TimeTraveller ------------------------------------------------------------------------------------------


def test_time_traveller_keeps_a_snapshot_per_transaction() -> None:
    box = make_box()
    traveller = TimeTraveller(box)
    box.bump()
    box.add("c")
    history = traveller.history
    assert len(history) == 3 and traveller.index == 2
    assert history[0]["count"] == 0 and history[1]["count"] == 1 and len(history[2]["items"]) == 3
    traveller.go_to(0)
    assert get_snapshot(box) == history[0] and traveller.index == 0
    assert len(traveller.history) == 3  # moving is not recorded
    traveller.redo()
    assert get_snapshot(box) == history[1]
    traveller.go_to(-1)
    assert get_snapshot(box) == history[2]
    traveller.undo()
    assert get_snapshot(box) == history[1] and traveller.can_redo


def test_time_traveller_new_change_discards_future_and_bounds() -> None:
    box = make_box()
    traveller = TimeTraveller(box)
    box.bump()
    box.bump()
    traveller.go_to(0)
    box.add("z")
    assert len(traveller.history) == 2 and not traveller.can_redo
    with pytest.raises(IndexError):
        traveller.go_to(5)
    traveller.undo()
    with pytest.raises(MSTError):
        traveller.undo()
    traveller.stop()
    box.bump()
    assert len(traveller.history) == 2
    traveller.redo()
    with pytest.raises(MSTError):
        traveller.redo()


def test_time_traveller_keeps_node_identity() -> None:
    box = make_box()
    first = box.items[0]
    traveller = TimeTraveller(box)
    first.rename("changed")
    traveller.undo()
    assert box.items[0] is first and first.title == ""
