"""Contract section 2 (actions, transactions, middleware) plus protection from section 1.

No ``from __future__ import annotations`` here on purpose: these models hand real (not string)
annotations to ``@model``.
"""

import contextlib
import json
from typing import Any, Literal

import pytest

from mst_llm import (
    ProtectionError,
    SessionLog,
    ValidationError,
    action,
    add_middleware,
    apply_action,
    apply_patch,
    apply_snapshot,
    clone,
    detach,
    get_parent,
    get_snapshot,
    is_alive,
    is_protected,
    model,
    on_action,
    on_commit,
    on_patch,
    on_snapshot,
    protect,
    record_actions,
    record_session,
    unprotect,
)
from mst_llm import types as t


class Boom(Exception):
    pass


@model
class Todo:
    id: t.Identifier
    title: str = ""
    done: bool = False

    @action
    def toggle(self) -> None:
        self.done = not self.done

    @action
    def rename(self, title: str) -> str:
        self.title = title
        return title.upper()

    @action
    def rename_then_fail(self, title: str) -> None:
        self.title = title
        raise Boom("inner")

    @action
    def touch_parent(self) -> None:
        store = get_parent(self, 2)
        store.status = "busy"

    @action
    def touch_list(self) -> None:
        get_parent(self).append({"id": "intruder"})

    @action
    def touch_sibling(self, other: "Todo") -> None:
        other.title = "hacked"

    @action
    def run(self, fn: Any) -> Any:
        return fn(self)


@model
class Store:
    todos: list[Todo]
    by_key: dict[str, Todo]
    status: Literal["idle", "busy"] = "idle"
    counter: int = 0

    @action
    def add_todo(self, id: str, title: str = "") -> None:
        self.todos.append({"id": id, "title": title})

    @action
    def set_status(self, status: str) -> None:
        self.status = status

    @action
    def bump(self, by: int = 1) -> int:
        self.counter += by
        return self.counter

    @action
    def toggle_all(self) -> None:
        for todo in self.todos:
            todo.toggle()

    @action
    def rename_all(self, title: str) -> None:
        for todo in self.todos:
            todo.rename(title)

    @action
    def busy_then_inner_fail(self) -> None:
        self.status = "busy"
        with contextlib.suppress(Boom):
            self.todos[0].rename_then_fail("inner")
        self.counter = 5

    @action
    def put(self, key: str, title: str) -> None:
        self.by_key[key] = {"id": key, "title": title}

    @action
    def run(self, fn: Any) -> Any:
        return fn(self)


def make_store() -> Store:
    return Store.create(
        {
            "todos": [{"id": "a", "title": "A"}, {"id": "b", "title": "B"}, {"id": "c", "title": "C"}],
            "by_key": {"x": {"id": "x", "title": "X"}, "y": {"id": "y", "title": "Y"}},
        }
    )


def fail(fn: Any) -> Any:
    """An action body that applies fn and then raises Boom."""

    def body(node: Any) -> None:
        fn(node)
        raise Boom("outer")

    return body


class Listeners:
    def __init__(self, node: Any) -> None:
        self.patches: list[Any] = []
        self.snapshots: list[Any] = []
        self.actions: list[Any] = []
        on_patch(node, lambda p, _inv: self.patches.append(p))
        on_snapshot(node, self.snapshots.append)
        on_action(node, self.actions.append)

    def silent(self) -> bool:
        return not self.patches and not self.snapshots and not self.actions


# --------------------------------------------------------------------------------------------------
# protection


def test_trees_are_protected_by_default() -> None:
    assert is_protected(make_store())


def test_assignment_outside_action_raises_protection_error() -> None:
    store = make_store()
    with pytest.raises(ProtectionError):
        store.status = "busy"
    assert store.status == "idle"


def test_nested_assignment_outside_action_raises() -> None:
    store = make_store()
    with pytest.raises(ProtectionError):
        store.todos[0].title = "nope"
    assert store.todos[0].title == "A"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda s: s.todos.append({"id": "z"}),
        lambda s: s.todos.insert(0, {"id": "z"}),
        lambda s: s.todos.pop(),
        lambda s: s.todos.remove(s.todos[0]),
        lambda s: s.todos.clear(),
        lambda s: s.todos.reverse(),
        lambda s: s.todos.extend([{"id": "z"}]),
        lambda s: s.todos.__setitem__(0, {"id": "z"}),
        lambda s: s.todos.__delitem__(0),
        lambda s: s.by_key.__setitem__("z", {"id": "z"}),
        lambda s: s.by_key.__delitem__("x"),
        lambda s: s.by_key.pop("x"),
        lambda s: s.by_key.clear(),
        lambda s: s.by_key.update({"z": {"id": "z"}}),
    ],
    ids=[
        "append",
        "insert",
        "pop",
        "remove",
        "clear",
        "reverse",
        "extend",
        "setitem",
        "delitem",
        "dict_setitem",
        "dict_delitem",
        "dict_pop",
        "dict_clear",
        "dict_update",
    ],
)
def test_container_mutation_outside_action_raises(mutate: Any) -> None:
    store = make_store()
    before = get_snapshot(store)
    with pytest.raises(ProtectionError):
        mutate(store)
    assert get_snapshot(store) == before


def test_reading_is_always_allowed() -> None:
    store = make_store()
    assert store.status == "idle"
    assert [todo.title for todo in store.todos] == ["A", "B", "C"]
    assert store.by_key["x"].title == "X"
    assert len(store.todos) == 3


def test_action_may_change_own_node_and_descendants() -> None:
    store = make_store()
    store.run(lambda s: (setattr(s, "status", "busy"), setattr(s.todos[0], "title", "changed")))
    assert store.status == "busy"
    assert store.todos[0].title == "changed"


def test_action_may_not_change_parent() -> None:
    store = make_store()
    with pytest.raises(ProtectionError):
        store.todos[0].touch_parent()
    assert store.status == "idle"


def test_action_may_not_change_parent_list() -> None:
    store = make_store()
    with pytest.raises(ProtectionError):
        store.todos[0].touch_list()
    assert len(store.todos) == 3


def test_action_may_not_change_sibling() -> None:
    store = make_store()
    with pytest.raises(ProtectionError):
        store.todos[0].touch_sibling(store.todos[1])
    assert store.todos[1].title == "B"


def test_forbidden_change_rolls_back_earlier_changes_of_action() -> None:
    store = make_store()

    def body(todo: Todo) -> None:
        todo.title = "mine"
        get_parent(todo, 2).counter = 99

    with pytest.raises(ProtectionError):
        store.todos[0].run(body)
    assert store.todos[0].title == "A"
    assert store.counter == 0


def test_action_returns_value() -> None:
    store = make_store()
    assert store.bump(3) == 3
    assert store.todos[0].rename("hey") == "HEY"


def test_unprotect_allows_bare_assignment() -> None:
    store = make_store()
    unprotect(store)
    assert not is_protected(store)
    store.status = "busy"
    store.todos[0].title = "free"
    store.todos.append({"id": "d"})
    store.by_key["z"] = {"id": "z"}
    assert store.status == "busy"
    assert store.todos[0].title == "free"
    assert [todo.id for todo in store.todos] == ["a", "b", "c", "d"]
    assert "z" in store.by_key


def test_unprotected_bare_mutations_are_each_a_transaction() -> None:
    store = make_store()
    unprotect(store)
    seen = Listeners(store)
    store.status = "busy"
    assert len(seen.snapshots) == 1
    assert seen.patches == [{"op": "replace", "path": "/status", "value": "busy"}]
    store.counter = 1
    assert len(seen.snapshots) == 2
    store.todos.append({"id": "d"})
    assert len(seen.snapshots) == 3
    assert seen.snapshots[-1] == get_snapshot(store)


def test_unprotected_single_list_call_is_one_transaction() -> None:
    store = make_store()
    unprotect(store)
    seen = Listeners(store)
    store.todos.extend([{"id": "d"}, {"id": "e"}])
    assert len(seen.snapshots) == 1
    assert [p["path"] for p in seen.patches] == ["/todos/3", "/todos/4"]


def test_protection_error_delivers_nothing() -> None:
    store = make_store()
    seen = Listeners(store)
    with pytest.raises(ProtectionError):
        store.counter = 3
    with pytest.raises(ProtectionError):
        store.todos[0].touch_parent()
    assert seen.silent()


def test_unprotected_wrong_type_still_raises() -> None:
    store = make_store()
    unprotect(store)
    with pytest.raises(ValidationError):
        store.status = "weird"
    assert store.status == "idle"


def test_protect_restores_protection() -> None:
    store = make_store()
    unprotect(store)
    store.status = "busy"
    protect(store)
    assert is_protected(store)
    with pytest.raises(ProtectionError):
        store.status = "idle"
    assert store.status == "busy"


def test_actions_still_work_on_unprotected_tree() -> None:
    store = make_store()
    unprotect(store)
    store.toggle_all()
    assert all(todo.done for todo in store.todos)


# --------------------------------------------------------------------------------------------------
# transactions


def test_nested_actions_form_one_transaction() -> None:
    store = make_store()
    seen = Listeners(store)
    store.toggle_all()
    assert len(seen.snapshots) == 1
    assert seen.snapshots[0] == get_snapshot(store)
    assert len(seen.patches) == 3


def test_patches_delivered_only_when_outermost_action_ends() -> None:
    store = make_store()
    seen = Listeners(store)
    during: list[int] = []

    def body(s: Store) -> None:
        s.todos[0].toggle()
        during.append(len(seen.patches))
        s.todos[1].toggle()
        during.append(len(seen.patches))
        during.append(len(seen.snapshots))

    store.run(body)
    assert during == [0, 0, 0]
    assert seen.patches == [
        {"op": "replace", "path": "/todos/0/done", "value": True},
        {"op": "replace", "path": "/todos/1/done", "value": True},
    ]
    assert len(seen.snapshots) == 1


def test_child_listener_gets_one_snapshot_for_nested_changes() -> None:
    store = make_store()
    snaps: list[Any] = []
    on_snapshot(store.todos[0], snaps.append)

    def body(s: Store) -> None:
        s.todos[0].rename("one")
        s.todos[0].rename("two")
        s.todos[0].toggle()

    store.run(body)
    assert snaps == [{"id": "a", "title": "two", "done": True}]


def test_action_without_change_emits_nothing() -> None:
    store = make_store()
    seen = Listeners(store)
    store.set_status("idle")
    assert seen.patches == []
    assert seen.snapshots == []


def test_separate_actions_are_separate_transactions() -> None:
    store = make_store()
    seen = Listeners(store)
    store.bump()
    store.bump()
    assert len(seen.snapshots) == 2
    assert [s["counter"] for s in seen.snapshots] == [1, 2]


# --------------------------------------------------------------------------------------------------
# atomic rollback


def test_failing_action_propagates_the_same_exception() -> None:
    store = make_store()
    err = Boom("mine")

    def body(s: Store) -> None:
        s.status = "busy"
        raise err

    with pytest.raises(Boom) as info:
        store.run(body)
    assert info.value is err


def test_failing_action_rolls_back_field_changes() -> None:
    store = make_store()
    before = get_snapshot(store)
    with pytest.raises(Boom):
        store.run(fail(lambda s: (setattr(s, "status", "busy"), setattr(s, "counter", 7))))
    assert store.status == "idle"
    assert store.counter == 0
    assert get_snapshot(store) == before


def test_failing_action_delivers_no_patch_snapshot_or_action() -> None:
    store = make_store()
    seen = Listeners(store)
    child_seen = Listeners(store.todos[0])
    with pytest.raises(Boom):
        store.run(fail(lambda s: (s.todos[0].toggle(), s.todos.append({"id": "z"}))))
    assert seen.silent()
    assert child_seen.silent()


@pytest.mark.parametrize(
    "splice",
    [
        lambda s: s.todos.append({"id": "z"}),
        lambda s: s.todos.insert(1, {"id": "z"}),
        lambda s: s.todos.extend([{"id": "y1"}, {"id": "y2"}]),
        lambda s: s.todos.pop(),
        lambda s: s.todos.pop(0),
        lambda s: s.todos.remove(s.todos[1]),
        lambda s: s.todos.__delitem__(1),
        lambda s: s.todos.__delitem__(slice(0, 2)),
        lambda s: s.todos.__setitem__(slice(0, 2), [{"id": "n1"}]),
        lambda s: s.todos.__setitem__(1, {"id": "n"}),
        lambda s: s.todos.clear(),
        lambda s: s.todos.reverse(),
        lambda s: s.todos.sort(key=lambda todo: todo.title, reverse=True),
        lambda s: (s.todos.pop(0), s.todos.append({"id": "q"}), s.todos.insert(0, {"id": "r"})),
    ],
    ids=[
        "append",
        "insert",
        "extend",
        "pop_last",
        "pop_first",
        "remove",
        "delitem",
        "del_slice",
        "set_slice",
        "setitem",
        "clear",
        "reverse",
        "sort",
        "mixed",
    ],
)
def test_rollback_restores_list_splices_with_same_nodes(splice: Any) -> None:
    store = make_store()
    before = get_snapshot(store)
    list_node = store.todos
    nodes = list(store.todos)
    with pytest.raises(Boom):
        store.run(fail(splice))
    assert get_snapshot(store) == before
    assert store.todos is list_node
    assert len(store.todos) == len(nodes)
    for now, then in zip(store.todos, nodes, strict=True):
        assert now is then
        assert is_alive(then)
        assert get_parent(then) is list_node


def test_popped_node_is_dead_then_alive_again_after_rollback() -> None:
    store = make_store()
    first = store.todos[0]
    observed: list[bool] = []

    def body(s: Store) -> None:
        removed = s.todos.pop(0)
        observed.append(removed is first)
        observed.append(is_alive(removed))
        raise Boom

    with pytest.raises(Boom):
        store.run(body)
    assert observed == [True, False]
    assert is_alive(first)
    assert store.todos[0] is first
    assert first.title == "A"


@pytest.mark.parametrize(
    "edit",
    [
        lambda s: s.by_key.__setitem__("z", {"id": "z"}),
        lambda s: s.by_key.__setitem__("x", {"id": "x", "title": "other"}),
        lambda s: s.by_key.__delitem__("x"),
        lambda s: s.by_key.pop("y"),
        lambda s: s.by_key.clear(),
        lambda s: s.by_key.update({"z": {"id": "z"}, "x": {"id": "x", "title": "u"}}),
        lambda s: s.by_key.setdefault("w", {"id": "w"}),
        lambda s: s.by_key.popitem(),
        lambda s: setattr(s.by_key["x"], "title", "edited"),
    ],
    ids=[
        "add_key",
        "replace_key",
        "del_key",
        "pop_key",
        "clear",
        "update",
        "setdefault",
        "popitem",
        "edit_child",
    ],
)
def test_rollback_restores_dict_edits_with_same_nodes(edit: Any) -> None:
    store = make_store()
    before = get_snapshot(store)
    dict_node = store.by_key
    nodes = dict(store.by_key)
    with pytest.raises(Boom):
        store.run(fail(edit))
    assert get_snapshot(store) == before
    assert store.by_key is dict_node
    assert list(store.by_key) == list(nodes)
    for key, node in nodes.items():
        assert store.by_key[key] is node
        assert is_alive(node)
        assert get_parent(node) is dict_node


def test_rollback_restores_replaced_list_item_node() -> None:
    store = make_store()
    original = store.todos[0]

    def body(s: Store) -> None:
        s.todos[0] = {"id": "new", "title": "N"}

    with pytest.raises(Boom):
        store.run(fail(body))
    assert store.todos[0] is original
    assert is_alive(original)
    assert original.title == "A"


def test_rollback_restores_whole_list_replacement() -> None:
    store = make_store()
    before = get_snapshot(store)
    nodes = list(store.todos)

    with pytest.raises(Boom):
        store.run(fail(lambda s: setattr(s, "todos", [{"id": "fresh"}])))
    assert get_snapshot(store) == before
    for now, then in zip(store.todos, nodes, strict=True):
        assert now is then
        assert is_alive(then)


def test_rollback_restores_detached_node() -> None:
    store = make_store()
    second = store.todos[1]
    with pytest.raises(Boom):
        store.run(fail(lambda s: detach(s.todos[1])))
    assert store.todos[1] is second
    assert get_parent(second) is store.todos
    assert is_alive(second)


def test_rollback_after_nested_actions() -> None:
    store = make_store()
    before = get_snapshot(store)
    with pytest.raises(Boom):
        store.run(fail(lambda s: (s.toggle_all(), s.rename_all("zzz"), s.bump(10))))
    assert get_snapshot(store) == before


def test_validation_error_rolls_back_earlier_changes() -> None:
    store = make_store()
    before = get_snapshot(store)

    def body(s: Store) -> None:
        s.counter = 3
        s.todos.append({"id": "ok"})
        s.status = "not-a-status"

    with pytest.raises(ValidationError):
        store.run(body)
    assert get_snapshot(store) == before


def test_store_usable_after_rollback() -> None:
    store = make_store()
    seen = Listeners(store)
    with pytest.raises(Boom):
        store.run(fail(lambda s: s.todos.pop(0)))
    store.todos[0].toggle()
    assert store.todos[0].done is True
    assert len(seen.snapshots) == 1
    assert seen.patches == [{"op": "replace", "path": "/todos/0/done", "value": True}]


def test_nested_failing_action_rolled_back_even_if_caught() -> None:
    store = make_store()
    seen = Listeners(store)
    store.busy_then_inner_fail()
    assert store.status == "busy"
    assert store.counter == 5
    assert store.todos[0].title == "A"
    assert seen.patches == [
        {"op": "replace", "path": "/status", "value": "busy"},
        {"op": "replace", "path": "/counter", "value": 5},
    ]
    assert len(seen.snapshots) == 1


def test_nested_failing_action_restores_removed_nodes() -> None:
    store = make_store()
    first = store.todos[0]

    def inner(s: Store) -> None:
        s.todos.pop(0)
        raise Boom

    def outer(s: Store) -> None:
        s.counter = 1
        with contextlib.suppress(Boom):
            s.run(inner)

    store.run(outer)
    assert store.counter == 1
    assert store.todos[0] is first
    assert is_alive(first)


# --------------------------------------------------------------------------------------------------
# on_action / apply_action / record_actions


def test_on_action_reports_json_dict() -> None:
    store = make_store()
    calls: list[Any] = []
    on_action(store, calls.append)
    store.add_todo("d", "D")
    assert len(calls) == 1
    call = calls[0]
    assert isinstance(call, dict)
    assert call["name"] == "add_todo"
    assert call["path"] == ""
    assert call["args"] == ["d", "D"]
    assert isinstance(call["args"], list)
    assert json.loads(json.dumps(call)) == call


def test_on_action_path_is_relative_to_listener() -> None:
    store = make_store()
    at_root: list[Any] = []
    at_list: list[Any] = []
    at_todo: list[Any] = []
    on_action(store, at_root.append)
    on_action(store.todos, at_list.append)
    on_action(store.todos[1], at_todo.append)
    store.todos[1].rename("bee")
    assert at_root == [{"name": "rename", "path": "/todos/1", "args": ["bee"]}]
    assert at_list == [{"name": "rename", "path": "/1", "args": ["bee"]}]
    assert at_todo == [{"name": "rename", "path": "", "args": ["bee"]}]


def test_on_action_path_escapes_dict_keys() -> None:
    store = make_store()
    store.put("a/b~c", "weird")
    calls: list[Any] = []
    on_action(store, calls.append)
    store.by_key["a/b~c"].toggle()
    assert calls == [{"name": "toggle", "path": "/by_key/a~1b~0c", "args": []}]


def test_on_action_reports_only_outermost_call() -> None:
    store = make_store()
    calls: list[Any] = []
    on_action(store, calls.append)
    store.toggle_all()
    assert calls == [{"name": "toggle_all", "path": "", "args": []}]


def test_on_action_on_child_ignores_parent_actions() -> None:
    store = make_store()
    calls: list[Any] = []
    on_action(store.todos[0], calls.append)
    store.toggle_all()
    store.bump()
    assert calls == []


def test_on_action_does_not_report_failed_actions() -> None:
    store = make_store()
    calls: list[Any] = []
    on_action(store, calls.append)
    with pytest.raises(Boom):
        store.todos[0].rename_then_fail("x")
    assert calls == []


def test_on_action_called_after_commit() -> None:
    store = make_store()
    seen: list[Any] = []
    on_action(store, lambda call: seen.append(get_snapshot(store)["counter"]))
    store.bump(4)
    assert seen == [4]


def test_on_action_disposer_stops_reporting() -> None:
    store = make_store()
    calls: list[Any] = []
    dispose = on_action(store, calls.append)
    store.bump()
    dispose()
    store.bump()
    assert len(calls) == 1


def test_on_action_reports_positional_args() -> None:
    store = make_store()
    calls: list[Any] = []
    on_action(store, calls.append)
    store.bump(2)
    store.set_status("busy")
    assert calls == [
        {"name": "bump", "path": "", "args": [2]},
        {"name": "set_status", "path": "", "args": ["busy"]},
    ]


def test_apply_action_replays_on_clone() -> None:
    store = make_store()
    twin = clone(store)
    calls: list[Any] = []
    on_action(store, calls.append)
    store.add_todo("d", "D")
    store.todos[0].rename("first")
    store.toggle_all()
    for call in calls:
        apply_action(twin, call)
    assert get_snapshot(twin) == get_snapshot(store)


def test_apply_action_accepts_json_round_tripped_call() -> None:
    store = make_store()
    twin = clone(store)
    calls: list[Any] = []
    on_action(store, calls.append)
    store.by_key["x"].rename("ex")
    wire = json.loads(json.dumps(calls[0]))
    apply_action(twin, wire)
    assert twin.by_key["x"].title == "ex"


def test_apply_action_with_relative_path_on_subtree() -> None:
    store = make_store()
    twin = clone(store)
    calls: list[Any] = []
    on_action(store.todos, calls.append)
    store.todos[2].toggle()
    assert calls == [{"name": "toggle", "path": "/2", "args": []}]
    apply_action(twin.todos, calls[0])
    assert twin.todos[2].done is True


def test_apply_action_is_reported_like_a_call() -> None:
    store = make_store()
    calls: list[Any] = []
    on_action(store, calls.append)
    apply_action(store, {"name": "bump", "path": "", "args": [5]})
    assert store.counter == 5
    assert calls == [{"name": "bump", "path": "", "args": [5]}]


def test_record_actions_records_stops_and_replays() -> None:
    store = make_store()
    twin = clone(store)
    rec = record_actions(store)
    store.add_todo("d")
    store.todos[3].rename("dee")
    rec.stop()
    store.bump()
    assert len(rec.actions) == 2
    assert rec.actions[0]["name"] == "add_todo"
    assert rec.actions[0]["path"] == ""
    assert rec.actions[0]["args"][0] == "d"
    assert rec.actions[1] == {"name": "rename", "path": "/todos/3", "args": ["dee"]}
    rec.replay(twin)
    assert [todo.id for todo in twin.todos] == ["a", "b", "c", "d"]
    assert twin.todos[3].title == "dee"
    assert twin.counter == 0


def test_record_actions_is_json_serialisable() -> None:
    store = make_store()
    rec = record_actions(store)
    store.toggle_all()
    store.put("k", "K")
    assert json.loads(json.dumps(rec.actions)) == rec.actions


def test_apply_patch_reported_as_apply_patches() -> None:
    store = make_store()
    calls: list[Any] = []
    on_action(store, calls.append)
    patches = [
        {"op": "replace", "path": "/status", "value": "busy"},
        {"op": "add", "path": "/todos/-", "value": {"id": "p", "title": "P", "done": False}},
    ]
    apply_patch(store, patches)
    assert calls == [{"name": "@APPLY_PATCHES", "path": "", "args": [patches]}]
    assert json.loads(json.dumps(calls[0])) == calls[0]


def test_apply_patch_on_child_reported_with_path() -> None:
    store = make_store()
    calls: list[Any] = []
    on_action(store, calls.append)
    patches = [{"op": "replace", "path": "/title", "value": "T"}]
    apply_patch(store.todos[1], patches)
    assert calls == [{"name": "@APPLY_PATCHES", "path": "/todos/1", "args": [patches]}]


def test_apply_snapshot_reported_as_apply_snapshot() -> None:
    store = make_store()
    calls: list[Any] = []
    on_action(store, calls.append)
    snap = {"id": "c", "title": "see", "done": True}
    apply_snapshot(store.todos[2], snap)
    assert calls == [{"name": "@APPLY_SNAPSHOT", "path": "/todos/2", "args": [snap]}]


def test_apply_patches_and_snapshot_calls_replay_with_apply_action() -> None:
    store = make_store()
    twin = clone(store)
    rec = record_actions(store)
    apply_patch(store, [{"op": "remove", "path": "/todos/0"}, {"op": "replace", "path": "/counter", "value": 9}])
    apply_snapshot(store.by_key, {"q": {"id": "q", "title": "Q", "done": False}})
    store.todos[0].toggle()
    rec.stop()
    assert [c["name"] for c in rec.actions] == ["@APPLY_PATCHES", "@APPLY_SNAPSHOT", "toggle"]
    for call in rec.actions:
        apply_action(twin, json.loads(json.dumps(call)))
    assert get_snapshot(twin) == get_snapshot(store)


def test_apply_snapshot_at_root_reported_and_replayable() -> None:
    store = make_store()
    twin = clone(store)
    calls: list[Any] = []
    on_action(store, calls.append)
    target = {"todos": [{"id": "only"}], "by_key": {}, "status": "busy", "counter": 2}
    apply_snapshot(store, target)
    assert calls[0]["name"] == "@APPLY_SNAPSHOT"
    assert calls[0]["path"] == ""
    apply_action(twin, calls[0])
    assert get_snapshot(twin) == get_snapshot(store)


def test_failed_apply_patch_not_reported() -> None:
    store = make_store()
    calls: list[Any] = []
    on_action(store, calls.append)
    with pytest.raises(ValidationError):
        apply_patch(store, [{"op": "replace", "path": "/nope", "value": 1}])
    assert calls == []


# --------------------------------------------------------------------------------------------------
# middleware


def test_middleware_sees_call_attributes() -> None:
    store = make_store()
    seen: list[Any] = []

    def mw(call: Any, next_: Any) -> Any:
        seen.append((call.name, list(call.args), call.context, call.tree, call.parent_call))
        return next_(call)

    add_middleware(store, mw)
    store.bump(2)
    assert len(seen) == 1
    name, args, context, tree, parent_call = seen[0]
    assert (name, args, parent_call) == ("bump", [2], None)
    assert context is store
    assert tree is store
    assert store.counter == 2


@pytest.mark.parametrize("flush", ["line", "batch"])
def test_arguments_a_middleware_rewrote_are_the_ones_listeners_record(
    tmp_path: Any, flush: Literal["line", "batch"]
) -> None:
    store = make_store()
    todo = store.todos[0]

    def rewrite(call: Any, next_: Any) -> Any:
        if call.name == "rename":
            call.args = (call.args[0].strip(),)  # a new tuple
        return next_(call)

    add_middleware(store, rewrite)
    reported: list[Any] = []
    on_action(store, reported.append)
    committed: list[Any] = []
    on_commit(store, committed.append)
    with record_session(store, tmp_path / "s.jsonl", flush=flush):
        todo.rename("  padded  ")
        store.bump(3)  # (left as it was)
    expected = [
        {"name": "rename", "path": "/todos/0", "args": ["padded"]},
        {"name": "bump", "path": "", "args": [3]},
    ]
    assert reported == expected
    assert [commit.action for commit in committed] == expected
    assert [entry.action for entry in SessionLog.open(tmp_path / "s.jsonl")] == expected


def test_middleware_context_and_tree_for_child_action() -> None:
    store = make_store()
    seen: list[Any] = []

    def mw(call: Any, next_: Any) -> Any:
        seen.append((call.name, call.context, call.tree))
        return next_(call)

    add_middleware(store, mw)
    store.todos[1].rename("b2")
    assert len(seen) == 1
    assert seen[0][0] == "rename"
    assert seen[0][1] is store.todos[1]
    assert seen[0][2] is store


def test_middleware_parent_call_for_nested_actions() -> None:
    store = make_store()
    calls: list[Any] = []

    def mw(call: Any, next_: Any) -> Any:
        calls.append(call)
        return next_(call)

    add_middleware(store, mw)
    store.toggle_all()
    assert [c.name for c in calls] == ["toggle_all", "toggle", "toggle", "toggle"]
    outer = calls[0]
    assert outer.parent_call is None
    for inner in calls[1:]:
        assert inner.parent_call is not None
        assert inner.parent_call.id == outer.id
        assert inner.parent_call.name == "toggle_all"
    assert all(c.context is todo for c, todo in zip(calls[1:], store.todos, strict=True))
    assert all(c.tree is store for c in calls)


def test_middleware_call_ids_are_distinct() -> None:
    store = make_store()
    ids: list[Any] = []

    def mw(call: Any, next_: Any) -> Any:
        ids.append(call.id)
        return next_(call)

    add_middleware(store, mw)
    store.toggle_all()
    store.bump()
    assert len(ids) == 5
    assert len(set(ids)) == 5


def test_middleware_passes_return_value_through() -> None:
    store = make_store()
    add_middleware(store, lambda call, next_: next_(call))
    assert store.bump(7) == 7
    assert store.todos[0].rename("x") == "X"


def test_middleware_can_wrap_return_value() -> None:
    store = make_store()
    add_middleware(store, lambda call, next_: ("wrapped", next_(call)))
    assert store.bump(1) == ("wrapped", 1)


def test_middleware_short_circuit_skips_action() -> None:
    store = make_store()
    seen = Listeners(store)

    def mw(call: Any, next_: Any) -> Any:
        if call.name == "bump":
            return "blocked"
        return next_(call)

    add_middleware(store, mw)
    assert store.bump(5) == "blocked"
    assert store.counter == 0
    assert seen.patches == []
    assert seen.snapshots == []
    store.set_status("busy")
    assert store.status == "busy"


def test_middleware_short_circuit_nested_call_only() -> None:
    store = make_store()

    def mw(call: Any, next_: Any) -> Any:
        if call.name == "toggle" and call.context.id == "b":
            return None
        return next_(call)

    add_middleware(store, mw)
    store.toggle_all()
    assert [todo.done for todo in store.todos] == [True, False, True]


def test_middleware_disposer_removes_it() -> None:
    store = make_store()
    names: list[str] = []

    def mw(call: Any, next_: Any) -> Any:
        names.append(call.name)
        return next_(call)

    dispose = add_middleware(store, mw)
    store.bump()
    dispose()
    store.bump()
    assert names == ["bump"]
    assert store.counter == 2


def test_middleware_order_with_nested_calls() -> None:
    store = make_store()
    log: list[str] = []

    def mw(call: Any, next_: Any) -> Any:
        label = f"{call.name}:{getattr(call.context, 'id', 'store')}"
        log.append(f"enter {label}")
        result = next_(call)
        log.append(f"exit {label}")
        return result

    add_middleware(store, mw)
    store.rename_all("z")
    assert log == [
        "enter rename_all:store",
        "enter rename:a",
        "exit rename:a",
        "enter rename:b",
        "exit rename:b",
        "enter rename:c",
        "exit rename:c",
        "exit rename_all:store",
    ]


def test_two_middlewares_both_run() -> None:
    store = make_store()
    log: list[str] = []

    def make(tag: str) -> Any:
        def mw(call: Any, next_: Any) -> Any:
            log.append(tag)
            return next_(call)

        return mw

    add_middleware(store, make("one"))
    add_middleware(store, make("two"))
    store.bump()
    assert sorted(log) == ["one", "two"]
    assert store.counter == 1


def test_middleware_on_child_sees_nested_child_calls_only() -> None:
    store = make_store()
    seen: list[Any] = []

    def mw(call: Any, next_: Any) -> Any:
        seen.append((call.name, call.parent_call.name if call.parent_call else None))
        return next_(call)

    add_middleware(store.todos[0], mw)
    store.bump()
    store.toggle_all()
    store.todos[1].toggle()
    assert seen == [("toggle", "toggle_all")]


def test_middleware_exception_rolls_back_action() -> None:
    store = make_store()
    seen = Listeners(store)

    def mw(call: Any, next_: Any) -> Any:
        next_(call)
        raise Boom("after")

    add_middleware(store, mw)
    with pytest.raises(Boom):
        store.bump(3)
    assert store.counter == 0
    assert seen.silent()
