"""Identifier uniqueness is a property of committed states (issue 17).

A transaction may pass through a state where two nodes hold one identifier (a node moving from a dict to a
list is added before the old one is removed); the commit refuses a state that still has a duplicate, with a
ValidationError that names both paths, and the tree stays as it was. So ``apply_snapshot`` reaches every
state that ``Type.create`` accepts, whatever the current state.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mst_llm import (
    TimeTraveller,
    ValidationError,
    action,
    apply_patch,
    apply_snapshot,
    get_snapshot,
    model,
    on_patch,
    record_patches,
)
from mst_llm import types as t


@model
class Todo:
    id: t.Identifier
    title: str = ""


@model
class Box:
    inner: Todo | None = None
    items: list[Todo]


@model
class Store:
    todos: list[Todo]
    by_key: dict[str, Todo]
    box: Box
    pick: t.SafeReference[Todo] | None = None

    @action
    def move_to_list(self, key: str) -> None:
        self.todos.append({"id": key})  # the new node exists while by_key still holds the old one
        del self.by_key[key]

    @action
    def add_twice(self, key: str) -> None:
        self.todos.append({"id": key})


PLACES = ("todos", "by_key", "inner", "items", None)


@st.composite
def store_snapshots(draw: st.DrawFn) -> dict[str, Any]:
    """A valid Store snapshot: each of a few identifiers lives in at most one place."""
    snapshot: dict[str, Any] = {"todos": [], "by_key": {}, "box": {"inner": None, "items": []}}
    for ident in draw(st.permutations(["a", "b", "c", "d", "e"])):
        todo = {"id": ident, "title": draw(st.sampled_from(["", "x", "y"]))}
        place = draw(st.sampled_from(PLACES))
        if place == "todos":
            snapshot["todos"].append(todo)
        elif place == "by_key":
            snapshot["by_key"][ident] = todo
        elif place == "items":
            snapshot["box"]["items"].append(todo)
        elif place == "inner" and snapshot["box"]["inner"] is None:
            snapshot["box"]["inner"] = todo
    snapshot["pick"] = draw(st.sampled_from([None, "a", "b", "c"]))  # may dangle: create() clears it
    return snapshot


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(store_snapshots(), store_snapshots())
def test_apply_snapshot_reaches_every_state_create_accepts(start: dict[str, Any], target: dict[str, Any]) -> None:
    expected = get_snapshot(Store.create(target))
    store = Store.create(start)
    apply_snapshot(store, target)
    assert get_snapshot(store) == expected


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(store_snapshots(), min_size=2, max_size=6))
def test_recorded_states_stay_reachable(states: list[dict[str, Any]]) -> None:
    """Time travel and patch replay go through the same reconciliation."""
    store = Store.create(states[0])
    initial = get_snapshot(store)
    traveller = TimeTraveller(store)
    recorder = record_patches(store)
    for state in states[1:]:
        apply_snapshot(store, state)
    final = get_snapshot(store)
    replica = Store.create(initial)
    recorder.replay(replica)
    assert get_snapshot(replica) == final
    for index, snapshot in enumerate(traveller.history):
        traveller.go_to(index)
        assert get_snapshot(store) == snapshot


def test_the_example_from_the_issue() -> None:
    store = Store.create({"todos": [], "by_key": {"a": {"id": "a"}}, "box": {}})
    target = {"todos": [{"id": "a"}], "by_key": {}, "box": {"inner": None, "items": []}}
    Store.create(target)
    apply_snapshot(store, target)
    assert get_snapshot(store) == get_snapshot(Store.create(target))


def test_an_action_may_add_the_new_node_before_removing_the_old_one() -> None:
    store = Store.create({"todos": [], "by_key": {"a": {"id": "a", "title": "kept"}}, "box": {}})
    store.move_to_list("a")
    assert get_snapshot(store)["todos"] == [{"id": "a", "title": ""}]
    assert get_snapshot(store)["by_key"] == {}


def _assert_refused_naming_both(error: ValidationError, first: str, second: str) -> None:
    assert "duplicate identifier 'a'" in str(error)
    assert first in str(error) and second in str(error)


def test_a_duplicate_left_at_commit_is_refused_and_changes_nothing() -> None:
    store = Store.create({"todos": [], "by_key": {"a": {"id": "a"}}, "box": {}, "pick": "a"})
    before = get_snapshot(store)
    old = store.by_key["a"]
    patches: list[Any] = []
    on_patch(store, lambda patch, _inverse: patches.append(patch))
    with pytest.raises(ValidationError) as refused:
        store.add_twice("a")
    _assert_refused_naming_both(refused.value, "/todos/0", "/by_key/a")
    assert get_snapshot(store) == before
    assert store.by_key["a"] is old and store.pick is old
    assert patches == []


@pytest.mark.parametrize(
    "change",
    [
        lambda s: apply_snapshot(s, {"todos": [{"id": "a"}], "by_key": {"a": {"id": "a"}}, "box": {}}),
        lambda s: apply_patch(s, {"op": "add", "path": "/box/items/0", "value": {"id": "a"}}),
        lambda s: apply_patch(s, {"op": "replace", "path": "/box/inner", "value": {"id": "a"}}),
    ],
)
def test_apply_snapshot_and_apply_patch_follow_the_same_rule(change: Any) -> None:
    store = Store.create({"todos": [], "by_key": {"a": {"id": "a"}}, "box": {}})
    before = get_snapshot(store)
    with pytest.raises(ValidationError) as refused:
        change(store)
    assert "duplicate identifier 'a'" in str(refused.value)
    assert "/by_key/a" in str(refused.value)
    assert get_snapshot(store) == before


def test_create_refuses_a_duplicate_across_collections_naming_both_paths() -> None:
    with pytest.raises(ValidationError) as refused:
        Store.create({"todos": [{"id": "a"}], "by_key": {"a": {"id": "a"}}, "box": {}})
    _assert_refused_naming_both(refused.value, "/todos/0", "/by_key/a")


def test_a_reference_is_ambiguous_while_two_nodes_hold_its_identifier() -> None:
    seen: list[str] = []

    @model
    class Holder:
        todos: list[Todo]
        by_key: dict[str, Todo]
        pick: t.Reference[Todo] | None = None

        @action
        def peek_in_between(self) -> None:
            self.todos.append({"id": "a"})
            try:
                self.pick  # noqa: B018
            except Exception as error:
                seen.append(type(error).__name__)
            del self.by_key["a"]

    holder = Holder.create({"todos": [], "by_key": {"a": {"id": "a"}}, "pick": "a"})
    holder.peek_in_between()
    assert seen == ["InvalidReferenceError"]
    assert holder.pick is holder.todos[0]
