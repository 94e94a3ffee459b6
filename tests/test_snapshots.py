"""Contract section 3 (snapshots) and the snapshot-related clarifications of section 8."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mst_llm import (
    DeadNodeError,
    ValidationError,
    action,
    apply_patch,
    apply_snapshot,
    clone,
    get_env,
    get_snapshot,
    is_alive,
    is_state_tree_node,
    model,
    on_patch,
    on_snapshot,
    unprotect,
)
from mst_llm import types as t


@model
class Todo:
    id: t.Identifier
    title: str = ""
    done: bool = False
    tags: list[str]

    @action
    def set_title(self, title: str) -> None:
        self.title = title


@model
class Point:
    x: int = 0
    y: int = 0


@model
class Store:
    name: str = ""
    todos: list[Todo]
    by_key: dict[str, Todo]
    counts: dict[str, int]
    points: list[Point]
    origin: Point | None = None
    note: str | None = None
    meta: t.Frozen[dict] = None

    @action
    def run(self, fn: Callable[[Store], Any]) -> Any:
        return fn(self)

    @action
    def set_name(self, name: str) -> None:
        self.name = name

    @action
    def rename_twice(self, a: str, b: str) -> None:
        self.name = a
        self.name = b

    @action
    def outer(self) -> None:
        self.set_name("outer")
        self.todos[0].set_title("changed by outer")

    @action
    def failing(self) -> None:
        self.name = "doomed"
        raise RuntimeError("boom")


INITIAL: dict[str, Any] = {
    "name": "s",
    "todos": [
        {"id": "a", "title": "A", "tags": ["x"]},
        {"id": "b", "title": "B"},
        {"id": "c", "title": "C", "done": True},
    ],
    "by_key": {"k1": {"id": "k1", "title": "K1"}, "k2": {"id": "k2"}},
    "counts": {"z": 1, "y": 2},
    "points": [{"x": 1, "y": 2}, {"x": 3}],
    "origin": {"x": 0, "y": 0},
}


def make_store(env: Any = None) -> Store:
    return Store.create(copy.deepcopy(INITIAL), env=env)


def full_snapshot() -> dict[str, Any]:
    return {
        "name": "s",
        "todos": [
            {"id": "a", "title": "A", "done": False, "tags": ["x"]},
            {"id": "b", "title": "B", "done": False, "tags": []},
            {"id": "c", "title": "C", "done": True, "tags": []},
        ],
        "by_key": {
            "k1": {"id": "k1", "title": "K1", "done": False, "tags": []},
            "k2": {"id": "k2", "title": "", "done": False, "tags": []},
        },
        "counts": {"z": 1, "y": 2},
        "points": [{"x": 1, "y": 2}, {"x": 3, "y": 0}],
        "origin": {"x": 0, "y": 0},
        "note": None,
        "meta": None,
    }


# --------------------------------------------------------------------------- plain JSON data


def test_snapshot_equals_plain_json_with_defaults_filled_in() -> None:
    assert get_snapshot(make_store()) == full_snapshot()


def test_plain_data_compares_equal_to_snapshot_both_ways() -> None:
    snap = get_snapshot(make_store())
    assert full_snapshot() == snap
    assert snap == full_snapshot()
    assert snap["todos"] == full_snapshot()["todos"]
    assert full_snapshot()["todos"] == snap["todos"]


def test_snapshot_is_dict_and_list_instances() -> None:
    snap = get_snapshot(make_store())
    assert isinstance(snap, dict)
    assert isinstance(snap["todos"], list)
    assert isinstance(snap["todos"][0], dict)
    assert isinstance(snap["by_key"], dict)
    assert isinstance(snap["todos"][0]["tags"], list)


def test_snapshot_is_not_a_state_tree_node() -> None:
    snap = get_snapshot(make_store())
    assert not is_state_tree_node(snap)
    assert not is_state_tree_node(snap["todos"])
    assert not is_state_tree_node(snap["todos"][0])


def test_json_dumps_accepts_snapshot_directly() -> None:
    snap = get_snapshot(make_store())
    text = json.dumps(snap)
    assert json.loads(text) == full_snapshot()


def test_json_dumps_accepts_sub_snapshots() -> None:
    store = make_store()
    assert json.loads(json.dumps(get_snapshot(store.todos))) == full_snapshot()["todos"]
    assert json.loads(json.dumps(get_snapshot(store.by_key))) == full_snapshot()["by_key"]
    assert json.loads(json.dumps(get_snapshot(store.todos[0]))) == full_snapshot()["todos"][0]


def test_snapshot_contains_only_json_scalar_types() -> None:
    def check(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                assert type(key) is str
                check(item)
        elif isinstance(value, list):
            for item in value:
                check(item)
        else:
            assert value is None or type(value) in (str, int, float, bool)

    check(get_snapshot(make_store()))


def test_model_snapshot_fields_in_declaration_order() -> None:
    store = make_store()
    assert list(get_snapshot(store).keys()) == [
        "name",
        "todos",
        "by_key",
        "counts",
        "points",
        "origin",
        "note",
        "meta",
    ]
    assert list(get_snapshot(store.todos[0]).keys()) == ["id", "title", "done", "tags"]


def test_model_snapshot_order_does_not_follow_input_order() -> None:
    todo = Todo.create({"tags": [], "done": True, "title": "t", "id": "q"})
    assert list(get_snapshot(todo).keys()) == ["id", "title", "done", "tags"]


def test_dict_snapshot_keeps_insertion_order() -> None:
    store = make_store()
    assert list(get_snapshot(store.counts).keys()) == ["z", "y"]
    unprotect(store)
    store.counts["a"] = 3
    assert list(get_snapshot(store.counts).keys()) == ["z", "y", "a"]
    assert list(get_snapshot(store)["counts"].keys()) == ["z", "y", "a"]


def test_nullable_field_always_present_in_snapshot() -> None:
    store = Store.create({})
    snap = get_snapshot(store)
    assert "note" in snap
    assert snap["note"] is None
    assert snap["origin"] is None


def test_missing_collections_default_to_empty() -> None:
    snap = get_snapshot(Store.create({}))
    assert snap["todos"] == []
    assert snap["by_key"] == {}
    assert snap["counts"] == {}


# --------------------------------------------------------------------------- immutability

DICT_MUTATIONS: list[tuple[str, Callable[[Any], Any]]] = [
    ("setitem", lambda d: d.__setitem__("name", "x")),
    ("setitem_new", lambda d: d.__setitem__("new", 1)),
    ("delitem", lambda d: d.__delitem__("name")),
    ("update", lambda d: d.update({"name": "x"})),
    ("update_kwargs", lambda d: d.update(name="x")),
    ("pop", lambda d: d.pop("name")),
    ("popitem", lambda d: d.popitem()),
    ("clear", lambda d: d.clear()),
    ("setdefault", lambda d: d.setdefault("new", 1)),
    ("ior", lambda d: d.__ior__({"name": "x"})),
]

LIST_MUTATIONS: list[tuple[str, Callable[[Any], Any]]] = [
    ("append", lambda lst: lst.append({})),
    ("extend", lambda lst: lst.extend([{}])),
    ("insert", lambda lst: lst.insert(0, {})),
    ("pop", lambda lst: lst.pop()),
    ("remove", lambda lst: lst.remove(lst[0])),
    ("clear", lambda lst: lst.clear()),
    ("sort", lambda lst: lst.sort(key=id)),
    ("reverse", lambda lst: lst.reverse()),
    ("setitem", lambda lst: lst.__setitem__(0, {})),
    ("setslice", lambda lst: lst.__setitem__(slice(0, 1), [])),
    ("delitem", lambda lst: lst.__delitem__(0)),
    ("delslice", lambda lst: lst.__delitem__(slice(0, 2))),
    ("iadd", lambda lst: lst.__iadd__([{}])),
    ("imul", lambda lst: lst.__imul__(2)),
]


@pytest.mark.parametrize(("name", "mutate"), DICT_MUTATIONS, ids=[n for n, _ in DICT_MUTATIONS])
def test_root_snapshot_dict_mutation_raises_type_error(name: str, mutate: Callable[[Any], Any]) -> None:
    snap = get_snapshot(make_store())
    with pytest.raises(TypeError):
        mutate(snap)
    assert snap == full_snapshot()


@pytest.mark.parametrize(("name", "mutate"), LIST_MUTATIONS, ids=[n for n, _ in LIST_MUTATIONS])
def test_nested_snapshot_list_mutation_raises_type_error(name: str, mutate: Callable[[Any], Any]) -> None:
    snap = get_snapshot(make_store())
    with pytest.raises(TypeError):
        mutate(snap["todos"])
    assert snap == full_snapshot()


def test_augmented_assignment_on_snapshot_dict_raises() -> None:
    snap = get_snapshot(make_store())
    counts = snap["counts"]
    with pytest.raises(TypeError):
        counts |= {"q": 1}
    assert snap["counts"] == {"z": 1, "y": 2}


def test_augmented_assignment_on_snapshot_list_raises() -> None:
    snap = get_snapshot(make_store())
    tags = snap["todos"][0]["tags"]
    with pytest.raises(TypeError):
        tags += ["more"]
    assert snap["todos"][0]["tags"] == ["x"]


def test_deeply_nested_snapshot_items_are_immutable() -> None:
    snap = get_snapshot(make_store())
    with pytest.raises(TypeError):
        snap["todos"][0]["title"] = "hacked"
    with pytest.raises(TypeError):
        snap["todos"][0]["tags"].append("y")
    with pytest.raises(TypeError):
        snap["by_key"]["k1"]["done"] = True
    with pytest.raises(TypeError):
        snap["points"][1]["x"] = 99
    with pytest.raises(TypeError):
        del snap["counts"]["z"]
    assert snap == full_snapshot()


def test_snapshot_of_subtree_is_immutable() -> None:
    store = make_store()
    with pytest.raises(TypeError):
        get_snapshot(store.todos).append({"id": "q"})
    with pytest.raises(TypeError):
        get_snapshot(store.todos[0])["title"] = "x"
    with pytest.raises(TypeError):
        get_snapshot(store.counts)["z"] = 5


def test_failed_snapshot_mutation_leaves_tree_untouched() -> None:
    store = make_store()
    with pytest.raises(TypeError):
        get_snapshot(store)["name"] = "x"
    assert store.name == "s"


def test_snapshot_does_not_change_after_tree_changes() -> None:
    store = make_store()
    before = get_snapshot(store)
    store.set_name("renamed")
    store.todos[0].set_title("new title")
    assert before == full_snapshot()
    assert get_snapshot(store)["name"] == "renamed"


def test_frozen_field_snapshot_holds_same_frozen_object() -> None:
    store = Store.create({"meta": {"a": [1, 2], "b": {"c": None}}})
    assert store.meta == {"a": [1, 2], "b": {"c": None}}
    assert get_snapshot(store)["meta"] is store.meta


def test_frozen_value_mutation_raises_type_error() -> None:
    store = Store.create({"meta": {"a": [1, 2]}})
    with pytest.raises(TypeError):
        store.meta["a"] = 3
    with pytest.raises(TypeError):
        store.meta["a"].append(3)


def test_frozen_field_replaced_whole() -> None:
    store = Store.create({"meta": {"a": 1}})
    unprotect(store)
    patches: list[Any] = []
    on_patch(store, lambda p, inv: patches.append((p, inv)))
    store.meta = {"b": [2]}
    assert store.meta == {"b": [2]}
    assert patches == [
        (
            {"op": "replace", "path": "/meta", "value": {"b": [2]}},
            {"op": "replace", "path": "/meta", "value": {"a": 1}},
        )
    ]
    with pytest.raises(TypeError):
        store.meta["b"].append(3)


def test_frozen_field_accepts_none() -> None:
    store = Store.create({"meta": None})
    assert store.meta is None
    assert get_snapshot(store)["meta"] is None


# --------------------------------------------------------------------------- structural sharing


def test_repeated_get_snapshot_without_change_is_identical() -> None:
    store = make_store()
    assert get_snapshot(store) is get_snapshot(store)
    assert get_snapshot(store.todos) is get_snapshot(store.todos)


def test_child_snapshot_is_the_object_inside_parent_snapshot() -> None:
    store = make_store()
    root = get_snapshot(store)
    assert get_snapshot(store.todos) is root["todos"]
    assert get_snapshot(store.todos[1]) is root["todos"][1]
    assert get_snapshot(store.by_key) is root["by_key"]


def test_untouched_subtrees_identical_after_change() -> None:
    store = make_store()
    before = get_snapshot(store)
    store.todos[0].set_title("changed")
    after = get_snapshot(store)
    assert after is not before
    assert after["by_key"] is before["by_key"]
    assert after["counts"] is before["counts"]
    assert after["points"] is before["points"]
    assert after["origin"] is before["origin"]


def test_path_to_changed_node_is_rebuilt() -> None:
    store = make_store()
    before = get_snapshot(store)
    store.todos[0].set_title("changed")
    after = get_snapshot(store)
    assert after["todos"] is not before["todos"]
    assert after["todos"][0] is not before["todos"][0]
    assert after["todos"][0]["title"] == "changed"


def test_siblings_of_changed_list_item_keep_identity() -> None:
    store = make_store()
    before = get_snapshot(store)
    store.todos[1].set_title("changed")
    after = get_snapshot(store)
    assert after["todos"][0] is before["todos"][0]
    assert after["todos"][2] is before["todos"][2]


def test_unchanged_fields_inside_changed_item_keep_identity() -> None:
    store = make_store()
    before = get_snapshot(store)
    store.todos[0].set_title("changed")
    after = get_snapshot(store)
    assert after["todos"][0]["tags"] is before["todos"][0]["tags"]


def test_list_append_keeps_existing_item_snapshots() -> None:
    store = make_store()
    before = get_snapshot(store)
    store.run(lambda s: s.todos.append({"id": "d"}))
    after = get_snapshot(store)
    assert len(after["todos"]) == 4
    for i in range(3):
        assert after["todos"][i] is before["todos"][i]


def test_list_removal_keeps_remaining_item_snapshots() -> None:
    store = make_store()
    before = get_snapshot(store)
    store.run(lambda s: s.todos.pop(0))
    after = get_snapshot(store)
    assert after["todos"][0] is before["todos"][1]
    assert after["todos"][1] is before["todos"][2]


def test_list_insert_keeps_existing_item_snapshots() -> None:
    store = make_store()
    before = get_snapshot(store)
    store.run(lambda s: s.todos.insert(0, {"id": "first"}))
    after = get_snapshot(store)
    assert [x["id"] for x in after["todos"]] == ["first", "a", "b", "c"]
    assert after["todos"][1] is before["todos"][0]
    assert after["todos"][3] is before["todos"][2]


def test_dict_change_keeps_other_value_snapshots() -> None:
    store = make_store()
    before = get_snapshot(store)
    store.by_key["k1"].set_title("changed")
    after = get_snapshot(store)
    assert after["by_key"]["k2"] is before["by_key"]["k2"]
    assert after["todos"] is before["todos"]


def test_subtree_snapshot_not_rebuilt_by_change_elsewhere() -> None:
    store = make_store()
    todos_before = get_snapshot(store.todos)
    store.set_name("other")
    assert get_snapshot(store.todos) is todos_before


def test_apply_snapshot_keeps_snapshot_identity_of_unchanged_items() -> None:
    store = make_store()
    before = get_snapshot(store)
    target = full_snapshot()
    target["todos"][0]["title"] = "only this"
    apply_snapshot(store, target)
    after = get_snapshot(store)
    assert after["todos"][1] is before["todos"][1]
    assert after["todos"][2] is before["todos"][2]
    assert after["by_key"] is before["by_key"]


def test_failed_action_keeps_node_objects_and_snapshot() -> None:
    store = make_store()
    before = get_snapshot(store)
    nodes = list(store.todos)

    def body(s: Store) -> None:
        s.todos.pop(0)
        s.todos[0].title = "changed"
        raise RuntimeError("rollback")

    with pytest.raises(RuntimeError):
        store.run(body)
    assert get_snapshot(store) == before
    assert all(x is y for x, y in zip(store.todos, nodes, strict=True))
    assert all(is_alive(x) for x in nodes)


# --------------------------------------------------------------------------- apply_snapshot


def test_apply_snapshot_makes_tree_equal() -> None:
    store = make_store()
    target = full_snapshot()
    target["name"] = "new"
    target["todos"] = [{"id": "z", "title": "Z", "done": True, "tags": ["q"]}]
    target["counts"] = {"m": 9}
    apply_snapshot(store, target)
    assert get_snapshot(store) == target


def test_apply_snapshot_allowed_on_protected_tree() -> None:
    store = make_store()
    apply_snapshot(store, {"name": "protected is fine"})
    assert store.name == "protected is fine"


def test_apply_snapshot_keeps_node_with_same_identifier() -> None:
    store = make_store()
    a, b = store.todos[0], store.todos[1]
    snap = full_snapshot()
    snap["todos"] = [{"id": "a", "title": "A2"}, {"id": "b", "title": "B2"}]
    apply_snapshot(store, snap)
    assert store.todos[0] is a
    assert store.todos[1] is b
    assert a.title == "A2"
    assert b.title == "B2"


def test_apply_snapshot_list_reorder_keeps_nodes() -> None:
    store = make_store()
    a, b, c = store.todos
    snap = full_snapshot()
    snap["todos"] = [snap["todos"][2], snap["todos"][0], snap["todos"][1]]
    apply_snapshot(store, snap)
    assert store.todos[0] is c
    assert store.todos[1] is a
    assert store.todos[2] is b
    assert [todo.id for todo in store.todos] == ["c", "a", "b"]


def test_apply_snapshot_mst_keyed_reconciliation_example() -> None:
    store = make_store()
    a, b, c = store.todos
    apply_snapshot(
        store.todos,
        [
            {"id": "b", "title": "Tee", "done": True},
            {"id": "a", "title": "coffee", "done": True},
            {"id": "d", "title": "biscuit"},
            {"id": "e", "title": "stuffz"},
        ],
    )
    assert [x.title for x in store.todos] == ["Tee", "coffee", "biscuit", "stuffz"]
    assert [x.done for x in store.todos] == [True, True, False, False]
    assert store.todos[0] is b
    assert store.todos[1] is a
    assert store.todos[2] is not c
    assert not is_alive(c)


def test_apply_snapshot_dropped_identifier_node_dies() -> None:
    store = make_store()
    c = store.todos[2]
    snap = full_snapshot()
    snap["todos"] = snap["todos"][:2]
    apply_snapshot(store, snap)
    assert not is_alive(c)
    assert is_alive(store.todos[0])


def test_apply_snapshot_list_items_without_identifier_are_replaced() -> None:
    store = make_store()
    _p0, p1 = store.points
    snap = full_snapshot()
    snap["points"] = [{"x": 1, "y": 2}, {"x": 5, "y": 5}]
    apply_snapshot(store, snap)
    assert store.points[1] is not p1
    assert not is_alive(p1)
    assert get_snapshot(store.points) == [{"x": 1, "y": 2}, {"x": 5, "y": 5}]


def test_apply_snapshot_model_field_reconciled_in_place() -> None:
    store = make_store()
    origin = store.origin
    snap = full_snapshot()
    snap["origin"] = {"x": 7, "y": 8}
    apply_snapshot(store, snap)
    assert store.origin is origin
    assert (origin.x, origin.y) == (7, 8)


def test_apply_snapshot_dict_values_reconciled_in_place() -> None:
    store = make_store()
    k1 = store.by_key["k1"]
    snap = full_snapshot()
    snap["by_key"] = {"k1": {"id": "k1", "title": "K1 new"}, "k3": {"id": "k3"}}
    apply_snapshot(store, snap)
    assert store.by_key["k1"] is k1
    assert k1.title == "K1 new"
    assert "k2" not in store.by_key
    assert list(store.by_key.keys()) == ["k1", "k3"]


def test_apply_snapshot_list_node_itself_kept() -> None:
    store = make_store()
    todos = store.todos
    by_key = store.by_key
    apply_snapshot(store, {"todos": [{"id": "x"}], "by_key": {}})
    assert store.todos is todos
    assert store.by_key is by_key


def test_apply_snapshot_on_child_node() -> None:
    store = make_store()
    todo = store.todos[0]
    apply_snapshot(todo, {"id": "a", "title": "via child", "done": True, "tags": ["t"]})
    assert store.todos[0] is todo
    assert get_snapshot(store)["todos"][0] == {"id": "a", "title": "via child", "done": True, "tags": ["t"]}


def test_apply_snapshot_on_list_node() -> None:
    store = make_store()
    apply_snapshot(store.counts, {"new": 1})
    assert get_snapshot(store)["counts"] == {"new": 1}


def test_apply_snapshot_omitted_optional_fields_reset_to_defaults() -> None:
    store = make_store()
    todo = store.todos[0]
    apply_snapshot(todo, {"id": "a"})
    assert todo.title == ""
    assert todo.done is False
    assert list(todo.tags) == []
    assert get_snapshot(todo) == {"id": "a", "title": "", "done": False, "tags": []}


def test_apply_snapshot_omitted_nullable_field_resets_to_none() -> None:
    store = make_store()
    unprotect(store)
    store.note = "something"
    apply_snapshot(store, {})
    assert store.note is None
    assert store.origin is None
    assert get_snapshot(store) == get_snapshot(Store.create({}))


def test_apply_same_snapshot_object_does_nothing() -> None:
    store = make_store()
    patches: list[Any] = []
    snaps: list[Any] = []
    on_patch(store, lambda p, inv: patches.append(p))
    on_snapshot(store, snaps.append)
    before = get_snapshot(store)
    nodes = list(store.todos)
    apply_snapshot(store, before)
    assert patches == []
    assert snaps == []
    assert get_snapshot(store) is before
    assert list(store.todos) == nodes
    assert all(x is y for x, y in zip(store.todos, nodes, strict=True))


def test_apply_equal_copy_emits_no_patches() -> None:
    # no identifier-less list items here: those are replaced by new nodes even when equal
    store = make_store()
    unprotect(store)
    store.points.clear()
    patches: list[Any] = []
    snaps: list[Any] = []
    on_patch(store, lambda p, inv: patches.append(p))
    on_snapshot(store, snaps.append)
    nodes = list(store.todos)
    apply_snapshot(store, {**full_snapshot(), "points": []})
    assert all(x is y for x, y in zip(store.todos, nodes, strict=True))
    assert patches == []
    assert snaps == []


def test_apply_snapshot_is_one_transaction_for_on_snapshot() -> None:
    store = make_store()
    snaps: list[Any] = []
    on_snapshot(store, snaps.append)
    target = full_snapshot()
    target["name"] = "n"
    target["todos"][0]["title"] = "t"
    target["counts"] = {}
    apply_snapshot(store, target)
    assert len(snaps) == 1
    assert snaps[0] == target


def test_apply_invalid_snapshot_raises_validation_error() -> None:
    store = make_store()
    with pytest.raises(ValidationError):
        apply_snapshot(store, {"name": 42})


def test_apply_invalid_snapshot_changes_nothing() -> None:
    store = make_store()
    before = get_snapshot(store)
    nodes = list(store.todos)
    patches: list[Any] = []
    on_patch(store, lambda p, inv: patches.append(p))
    bad = full_snapshot()
    bad["name"] = "would change"
    bad["todos"][0]["title"] = "would change too"
    bad["todos"][2]["done"] = "not a bool"
    with pytest.raises(ValidationError):
        apply_snapshot(store, bad)
    assert get_snapshot(store) == before
    assert store.name == "s"
    assert all(x is y for x, y in zip(store.todos, nodes, strict=True))
    assert patches == []


def test_apply_invalid_snapshot_error_names_bad_path() -> None:
    store = make_store()
    bad = full_snapshot()
    bad["todos"][1]["done"] = "nope"
    with pytest.raises(ValidationError) as info:
        apply_snapshot(store, bad)
    paths = [p for p, _ in info.value.errors]
    assert any("todos/1/done" in p for p in paths)


def test_apply_snapshot_wrong_container_type_raises() -> None:
    store = make_store()
    with pytest.raises(ValidationError):
        apply_snapshot(store.todos, {"not": "a list"})
    with pytest.raises(ValidationError):
        apply_snapshot(store.counts, [1, 2])
    assert get_snapshot(store) == full_snapshot()


def test_apply_snapshot_with_duplicate_identifiers_changes_nothing() -> None:
    store = make_store()
    with pytest.raises(ValidationError):
        apply_snapshot(store.todos, [{"id": "a"}, {"id": "a"}])
    assert get_snapshot(store) == full_snapshot()


def test_apply_snapshot_changing_identifier_of_model_raises() -> None:
    store = make_store()
    with pytest.raises(ValidationError):
        apply_snapshot(store.todos[0], {"id": "other"})
    assert store.todos[0].id == "a"


# --------------------------------------------------------------------------- on_snapshot


def test_on_snapshot_called_with_new_snapshot() -> None:
    store = make_store()
    snaps: list[Any] = []
    on_snapshot(store, snaps.append)
    store.set_name("x")
    assert len(snaps) == 1
    assert snaps[0]["name"] == "x"
    assert snaps[0] == get_snapshot(store)


def test_on_snapshot_once_per_action_with_many_changes() -> None:
    store = make_store()
    snaps: list[Any] = []
    on_snapshot(store, snaps.append)
    store.rename_twice("a", "b")
    assert len(snaps) == 1
    assert snaps[0]["name"] == "b"


def test_on_snapshot_once_for_nested_actions() -> None:
    store = make_store()
    snaps: list[Any] = []
    on_snapshot(store, snaps.append)
    store.outer()
    assert len(snaps) == 1
    assert snaps[0]["name"] == "outer"
    assert snaps[0]["todos"][0]["title"] == "changed by outer"


def test_on_snapshot_once_per_bare_mutation_when_unprotected() -> None:
    store = make_store()
    unprotect(store)
    snaps: list[Any] = []
    on_snapshot(store, snaps.append)
    store.name = "one"
    store.name = "two"
    assert [s["name"] for s in snaps] == ["one", "two"]


def test_on_snapshot_not_called_when_nothing_changed() -> None:
    store = make_store()
    snaps: list[Any] = []
    on_snapshot(store, snaps.append)
    store.set_name("s")
    store.run(lambda s: None)
    assert snaps == []


def test_on_snapshot_not_called_for_failed_action() -> None:
    store = make_store()
    snaps: list[Any] = []
    on_snapshot(store, snaps.append)
    with pytest.raises(RuntimeError):
        store.failing()
    assert snaps == []
    assert store.name == "s"


def test_on_snapshot_on_subtree_ignores_changes_elsewhere() -> None:
    store = make_store()
    snaps: list[Any] = []
    on_snapshot(store.todos[1], snaps.append)
    store.set_name("x")
    store.todos[0].set_title("y")
    assert snaps == []
    store.todos[1].set_title("z")
    assert len(snaps) == 1
    assert snaps[0] == {"id": "b", "title": "z", "done": False, "tags": []}


def test_on_snapshot_on_list_node() -> None:
    store = make_store()
    snaps: list[Any] = []
    on_snapshot(store.todos, snaps.append)
    store.run(lambda s: s.todos.append({"id": "d"}))
    assert len(snaps) == 1
    assert [x["id"] for x in snaps[0]] == ["a", "b", "c", "d"]


def test_on_snapshot_receives_the_shared_snapshot_object() -> None:
    store = make_store()
    snaps: list[Any] = []
    on_snapshot(store, snaps.append)
    before = get_snapshot(store)
    store.todos[0].set_title("x")
    assert snaps[0] is get_snapshot(store)
    assert snaps[0]["todos"][1] is before["todos"][1]


def test_on_snapshot_after_apply_snapshot_on_child() -> None:
    store = make_store()
    snaps: list[Any] = []
    on_snapshot(store, snaps.append)
    apply_snapshot(store.todos[0], {"id": "a", "title": "new"})
    assert len(snaps) == 1
    assert snaps[0]["todos"][0]["title"] == "new"


def test_on_snapshot_disposer_stops_notifications() -> None:
    store = make_store()
    snaps: list[Any] = []
    dispose = on_snapshot(store, snaps.append)
    store.set_name("x")
    dispose()
    store.set_name("y")
    assert len(snaps) == 1


def test_on_snapshot_snapshot_is_immutable() -> None:
    store = make_store()
    snaps: list[Any] = []
    on_snapshot(store, snaps.append)
    store.set_name("x")
    with pytest.raises(TypeError):
        snaps[0]["name"] = "hack"


def test_on_snapshot_multiple_listeners_each_called_once() -> None:
    store = make_store()
    first: list[Any] = []
    second: list[Any] = []
    on_snapshot(store, first.append)
    on_snapshot(store, second.append)
    store.set_name("x")
    assert len(first) == 1
    assert len(second) == 1


# --------------------------------------------------------------------------- create / clone


def test_create_from_snapshot_builds_equal_tree() -> None:
    store = make_store()
    store.todos[0].set_title("edited")
    again = Store.create(get_snapshot(store))
    assert again is not store
    assert get_snapshot(again) == get_snapshot(store)


def test_create_from_child_snapshot_builds_equal_tree() -> None:
    store = make_store()
    todo = Todo.create(get_snapshot(store.todos[0]))
    assert get_snapshot(todo) == get_snapshot(store.todos[0])
    assert todo is not store.todos[0]


def test_created_tree_is_independent_of_source() -> None:
    store = make_store()
    again = Store.create(get_snapshot(store))
    again.set_name("changed")
    assert store.name == "s"


def test_clone_equal_snapshot_new_nodes() -> None:
    store = make_store()
    copy_ = clone(store)
    assert copy_ is not store
    assert get_snapshot(copy_) == get_snapshot(store)
    assert copy_.todos[0] is not store.todos[0]


def test_clone_keeps_env() -> None:
    env = {"clock": object()}
    store = make_store(env=env)
    assert get_env(clone(store)) is env


def test_clone_of_child_keeps_env_and_is_root() -> None:
    env = {"service": "x"}
    store = make_store(env=env)
    todo_copy = clone(store.todos[0])
    assert get_env(todo_copy) is env
    assert get_snapshot(todo_copy) == get_snapshot(store.todos[0])
    assert len(store.todos) == 3


def test_clone_is_independent() -> None:
    store = make_store()
    copy_ = clone(store)
    copy_.todos[0].set_title("only in copy")
    assert store.todos[0].title == "A"


# --------------------------------------------------------------------------- dead nodes


def test_popped_node_is_dead_but_snapshot_returns_last_state() -> None:
    store = make_store()
    removed = store.run(lambda s: s.todos.pop(0))
    assert not is_alive(removed)
    assert get_snapshot(removed) == {"id": "a", "title": "A", "done": False, "tags": ["x"]}


def test_clone_of_dead_node_returns_last_state() -> None:
    store = make_store()
    store.todos[1].set_title("last words")
    removed = store.run(lambda s: s.todos.pop(1))
    revived = clone(removed)
    assert is_alive(revived)
    assert get_snapshot(revived) == {"id": "b", "title": "last words", "done": False, "tags": []}


def test_attribute_read_on_dead_node_raises() -> None:
    store = make_store()
    removed = store.run(lambda s: s.todos.pop(0))
    with pytest.raises(DeadNodeError):
        _ = removed.title


def test_snapshot_of_node_replaced_by_apply_snapshot_is_last_state() -> None:
    store = make_store()
    c = store.todos[2]
    apply_snapshot(store.todos, [{"id": "a"}])
    assert not is_alive(c)
    assert get_snapshot(c) == {"id": "c", "title": "C", "done": True, "tags": []}


# --------------------------------------------------------------------------- apply_snapshot, property based

SMALL = st.integers(0, 3)
TODO_SNAPS = st.lists(
    st.fixed_dictionaries(
        {"id": st.sampled_from(["a", "b", "c", "d", "e"])},
        optional={
            "title": st.text(max_size=2),
            "done": st.booleans(),
            "tags": st.lists(st.text(max_size=1), max_size=2),
        },
    ),
    max_size=5,
    unique_by=lambda d: d["id"],
)
STORE_SNAPS = st.fixed_dictionaries(
    {},
    optional={
        "name": st.text(max_size=3),
        "todos": TODO_SNAPS,
        "counts": st.dictionaries(st.sampled_from(["z", "y", "x", "a/b"]), st.integers(-3, 3), max_size=3),
        "points": st.lists(st.fixed_dictionaries({}, optional={"x": st.integers(0, 3)}), max_size=3),
        "origin": st.one_of(st.none(), st.fixed_dictionaries({"x": st.integers(0, 3), "y": st.integers(0, 3)})),
        "note": st.one_of(st.none(), st.text(max_size=2)),
    },
)


@settings(max_examples=100, deadline=None)
@given(target=STORE_SNAPS)
def test_apply_snapshot_property(target: dict[str, Any]) -> None:
    store = make_store()
    by_id = {todo.id: todo for todo in store.todos}
    origin = store.origin
    patches: list[Any] = []
    inverses: list[Any] = []
    snaps: list[Any] = []
    on_patch(store, lambda p, inv: (patches.append(p), inverses.append(inv)))
    on_snapshot(store, snaps.append)
    before = get_snapshot(store)

    apply_snapshot(store, target)

    expected = get_snapshot(Store.create(copy.deepcopy(target)))
    assert get_snapshot(store) == expected
    # nodes with a surviving identifier are kept
    for todo in store.todos:
        if todo.id in by_id:
            assert todo is by_id[todo.id]
    for ident, node in by_id.items():
        assert is_alive(node) == any(t_["id"] == ident for t_ in target.get("todos", []))
    if target.get("origin") is not None:
        assert store.origin is origin
    # one notification at most, and only if something changed
    assert len(snaps) == (0 if expected == before else 1)
    assert (patches == []) == (expected == before)
    # the emitted patches replay and undo exactly
    fresh = make_store()
    apply_patch(fresh, patches)
    assert get_snapshot(fresh) == expected
    apply_patch(fresh, list(reversed(inverses)))
    assert get_snapshot(fresh) == before
