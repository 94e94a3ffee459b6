"""Contract section 5 (tree utilities) plus identifiers, references, lifecycle hooks and views
(sections 1 and 8)."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mst_llm import (
    DeadNodeError,
    InvalidReferenceError,
    MSTError,
    PathNotFoundError,
    ProtectionError,
    ValidationError,
    action,
    apply_snapshot,
    clone,
    destroy,
    detach,
    escape_json_path,
    get_env,
    get_identifier,
    get_parent,
    get_parent_of_type,
    get_path,
    get_path_parts,
    get_root,
    get_snapshot,
    get_type,
    has_parent,
    is_alive,
    is_protected,
    is_root,
    is_state_tree_node,
    json_patch_path,
    model,
    on_patch,
    protect,
    resolve_identifier,
    resolve_path,
    try_resolve,
    unescape_json_path,
    unprotect,
    view,
    walk,
)
from mst_llm import types as t

EVENTS: list[str] = []
CALLS: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def _reset_logs() -> Iterator[None]:
    EVENTS.clear()
    CALLS.clear()
    yield
    EVENTS.clear()
    CALLS.clear()


@model
class Todo:
    id: t.Identifier
    title: str = ""
    done: bool = False


@model
class Num:
    id: t.IdentifierNumber
    label: str = ""


@model
class Other:
    id: t.Identifier


@model
class Leaf:
    value: str = ""


@model
class Store:
    name: str = ""
    todos: list[Todo]
    by_key: dict[str, Todo]
    nums: list[Num]
    selected: t.Reference[Todo] | None = None
    num_ref: t.Reference[Num] | None = None
    fav: t.SafeReference[Todo] | None = None
    favs: list[t.SafeReference[Todo]]
    refs: list[t.Reference[Todo]]

    @action
    def run(self, fn: Callable[[Store], Any]) -> Any:
        return fn(self)


INITIAL: dict[str, Any] = {
    "name": "s",
    "todos": [{"id": "a", "title": "A"}, {"id": "b", "title": "B"}, {"id": "c", "title": "C"}],
    "by_key": {"k": {"id": "k", "title": "K"}},
    "nums": [{"id": 3, "label": "three"}, {"id": 7}],
}


@model
class Paths:
    leaves: dict[str, Leaf]


@model
class Mixed:
    todos: list[Todo]
    others: list[Other]


@model
class FreshInDict:
    value: str = ""


@model
class FreshInList:
    value: str = ""


@model
class HoldsFresh:
    in_dict: dict[str, FreshInDict]
    in_list: list[FreshInList]


def make_paths() -> Paths:
    return Paths.create({"leaves": {"": {"value": "empty"}, "/": {"value": "slash"}, "~": {"value": "tilde"}, "x": {}}})


def make_store(env: Any = None, **overrides: Any) -> Store:
    snap = copy.deepcopy(INITIAL)
    snap.update(overrides)
    return Store.create(snap, env=env)


# --------------------------------------------------------------------------- parents and roots


def test_get_parent_of_list_item_is_list_node() -> None:
    store = make_store()
    todo = store.todos[0]
    assert get_parent(todo) is store.todos
    assert isinstance(get_parent(todo), list)


def test_get_parent_depth_two_is_store() -> None:
    store = make_store()
    assert get_parent(store.todos[1], 2) is store


def test_get_parent_of_list_node_is_store() -> None:
    store = make_store()
    assert get_parent(store.todos) is store
    assert get_parent(store.by_key) is store


def test_get_parent_of_dict_value() -> None:
    store = make_store()
    assert get_parent(store.by_key["k"]) is store.by_key
    assert get_parent(store.by_key["k"], 2) is store


def test_get_parent_of_root_raises() -> None:
    store = make_store()
    with pytest.raises(MSTError):
        get_parent(store)


def test_get_parent_too_deep_raises() -> None:
    store = make_store()
    with pytest.raises(MSTError):
        get_parent(store.todos[0], 3)


def test_has_parent() -> None:
    store = make_store()
    todo = store.todos[0]
    assert not has_parent(store)
    assert has_parent(todo)
    assert has_parent(todo, 2)
    assert not has_parent(todo, 3)
    assert has_parent(store.todos)


def test_get_parent_of_type() -> None:
    store = make_store()
    assert get_parent_of_type(store.todos[0], Store) is store
    paths = make_paths()
    assert get_parent_of_type(paths.leaves["x"], Paths) is paths


def test_get_parent_of_type_missing_raises() -> None:
    store = make_store()
    with pytest.raises(MSTError):
        get_parent_of_type(store.todos[0], Todo)


def test_get_root_and_is_root() -> None:
    store = make_store()
    assert get_root(store.todos[2]) is store
    assert get_root(store.todos) is store
    assert get_root(store) is store
    assert is_root(store)
    assert not is_root(store.todos)
    assert not is_root(store.todos[0])


def test_standalone_node_is_root() -> None:
    todo = Todo.create({"id": "x"})
    assert is_root(todo)
    assert not has_parent(todo)
    assert get_root(todo) is todo


def test_class_call_creates_root_like_create() -> None:
    todo = Todo(id="a", title="x")
    assert is_root(todo)
    assert get_snapshot(todo) == get_snapshot(Todo.create({"id": "a", "title": "x"}))


# --------------------------------------------------------------------------- paths


def test_get_path_root_is_empty() -> None:
    assert get_path(make_store()) == ""


def test_get_path_of_children() -> None:
    store = make_store()
    assert get_path(store.todos) == "/todos"
    assert get_path(store.todos[2]) == "/todos/2"
    assert get_path(store.by_key["k"]) == "/by_key/k"


def test_get_path_escapes_keys() -> None:
    paths = make_paths()
    assert get_path(paths.leaves[""]) == "/leaves/"
    assert get_path(paths.leaves["/"]) == "/leaves/~1"
    assert get_path(paths.leaves["~"]) == "/leaves/~0"


def test_get_path_updates_when_items_shift() -> None:
    store = make_store()
    unprotect(store)
    b = store.todos[1]
    store.todos.insert(0, {"id": "first"})
    assert get_path(b) == "/todos/2"
    store.todos.pop(0)
    store.todos.pop(0)
    assert get_path(b) == "/todos/0"
    assert [get_path(x) for x in store.todos] == ["/todos/0", "/todos/1"]


def test_get_path_parts() -> None:
    store = make_store()
    assert list(get_path_parts(store)) == []
    assert list(get_path_parts(store.todos[1])) == ["todos", "1"]
    assert list(get_path_parts(make_paths().leaves["/"])) == ["leaves", "/"]


def test_resolve_path_to_nodes() -> None:
    store = make_store()
    assert resolve_path(store, "") is store
    assert resolve_path(store, "/todos") is store.todos
    assert resolve_path(store, "/todos/1") is store.todos[1]
    assert resolve_path(store, "/by_key/k") is store.by_key["k"]


def test_resolve_path_to_primitive() -> None:
    store = make_store()
    assert resolve_path(store, "/todos/0/title") == "A"
    assert resolve_path(store, "/name") == "s"


def test_resolve_path_relative_to_given_node() -> None:
    store = make_store()
    assert resolve_path(store.todos, "/2") is store.todos[2]
    assert resolve_path(store.todos[0], "/title") == "A"


def test_resolve_path_roundtrips_get_path_with_weird_keys() -> None:
    paths = make_paths()
    for key in ["", "/", "~", "x"]:
        node = paths.leaves[key]
        assert resolve_path(paths, get_path(node)) is node


def test_resolve_path_missing_raises_mst_error() -> None:
    store = make_store()
    for path in ["/nope", "/todos/9", "/by_key/missing", "/todos/0/nope", "/name/deeper"]:
        with pytest.raises(MSTError):
            resolve_path(store, path)


def test_resolve_path_missing_raises_path_not_found() -> None:
    store = make_store()
    with pytest.raises(PathNotFoundError):
        resolve_path(store, "/todos/9")
    assert issubclass(PathNotFoundError, MSTError)


def test_try_resolve() -> None:
    store = make_store()
    assert try_resolve(store, "/todos/0") is store.todos[0]
    assert try_resolve(store, "/todos/9") is None
    assert try_resolve(store, "/nope/deeper") is None
    assert try_resolve(store, "/by_key/missing") is None


# --------------------------------------------------------------------------- identifiers


def test_get_identifier_string() -> None:
    store = make_store()
    assert get_identifier(store.todos[0]) == "a"


def test_get_identifier_number_is_str() -> None:
    store = make_store()
    ident = get_identifier(store.nums[0])
    assert ident == "3"
    assert isinstance(ident, str)
    assert store.nums[0].id == 3


def test_get_identifier_none_without_identifier() -> None:
    assert get_identifier(make_paths().leaves["x"]) is None


def test_resolve_identifier() -> None:
    store = make_store()
    assert resolve_identifier(Todo, store, "b") is store.todos[1]
    assert resolve_identifier(Todo, store, "k") is store.by_key["k"]


def test_resolve_identifier_accepts_int_or_str() -> None:
    store = make_store()
    assert resolve_identifier(Num, store, 3) is store.nums[0]
    assert resolve_identifier(Num, store, "3") is store.nums[0]
    assert resolve_identifier(Num, store, 7) is store.nums[1]


def test_resolve_identifier_missing_is_none() -> None:
    store = make_store()
    assert resolve_identifier(Todo, store, "zzz") is None
    assert resolve_identifier(Other, store, "a") is None


def test_resolve_identifier_sees_new_nodes() -> None:
    store = make_store()
    store.run(lambda s: s.todos.append({"id": "new"}))
    assert resolve_identifier(Todo, store, "new") is store.todos[3]


def test_duplicate_identifier_on_create_raises() -> None:
    with pytest.raises(ValidationError):
        Store.create({"todos": [{"id": "a"}, {"id": "a"}]})


def test_duplicate_identifier_across_list_and_dict_raises() -> None:
    with pytest.raises(ValidationError):
        Store.create({"todos": [{"id": "k"}], "by_key": {"k": {"id": "k"}}})


def test_duplicate_identifier_on_append_raises_and_changes_nothing() -> None:
    store = make_store()
    before = get_snapshot(store)
    with pytest.raises(ValidationError):
        store.run(lambda s: s.todos.append({"id": "b"}))
    assert get_snapshot(store) == before


def test_dict_of_model_type_never_created_before() -> None:
    holder = HoldsFresh.create({"in_dict": {"k": {"value": "v"}}})
    assert holder.in_dict["k"].value == "v"


def test_empty_list_of_model_type_never_created_before() -> None:
    holder = HoldsFresh.create({})
    assert list(holder.in_list) == []


def test_same_identifier_in_different_types_is_allowed() -> None:
    store = Mixed.create({"todos": [{"id": "a"}], "others": [{"id": "a"}]})
    assert resolve_identifier(Other, store, "a") is store.others[0]
    assert resolve_identifier(Todo, store, "a") is store.todos[0]


def test_identifier_reusable_after_removal() -> None:
    store = make_store()
    unprotect(store)
    store.todos.pop(0)
    store.todos.append({"id": "a", "title": "again"})
    assert resolve_identifier(Todo, store, "a").title == "again"


def test_dict_key_must_equal_identifier_on_create() -> None:
    with pytest.raises(ValidationError):
        Store.create({"by_key": {"x": {"id": "y"}}})


def test_dict_key_must_equal_identifier_on_set() -> None:
    store = make_store()
    unprotect(store)
    with pytest.raises(ValidationError):
        store.by_key["x"] = {"id": "y"}
    assert "x" not in store.by_key


def test_dict_key_must_equal_identifier_on_apply_snapshot() -> None:
    store = make_store()
    with pytest.raises(ValidationError):
        apply_snapshot(store.by_key, {"k": {"id": "other"}})
    assert store.by_key["k"].id == "k"


def test_changing_identifier_raises() -> None:
    store = make_store()
    unprotect(store)
    with pytest.raises(ValidationError):
        store.todos[0].id = "z"
    assert store.todos[0].id == "a"


def test_inserting_node_already_in_same_tree_raises() -> None:
    store = make_store()
    before = get_snapshot(store)
    with pytest.raises(ValidationError):
        store.run(lambda s: s.todos.append(s.by_key["k"]))
    assert get_snapshot(store) == before
    assert get_parent(store.by_key["k"]) is store.by_key


def test_inserting_same_node_twice_raises() -> None:
    store = make_store()
    unprotect(store)
    with pytest.raises(ValidationError):
        store.todos.append(store.todos[0])
    assert len(store.todos) == 3


def test_inserting_node_from_another_tree_raises() -> None:
    store = make_store()
    other = Store.create({"todos": [{"id": "z"}]})
    unprotect(store)
    with pytest.raises(ValidationError):
        store.todos.append(other.todos[0])
    assert len(store.todos) == 3
    assert get_root(other.todos[0]) is other


def test_detached_node_can_be_inserted_elsewhere() -> None:
    store = make_store()
    other = Store.create({})
    unprotect(store)
    unprotect(other)
    moved = detach(store.todos[0])
    other.todos.append(moved)
    assert other.todos[0] is moved
    assert get_root(moved) is other
    assert [x.id for x in store.todos] == ["b", "c"]


# --------------------------------------------------------------------------- env, type, node checks


def test_get_env_on_root_and_children() -> None:
    env = {"clock": object()}
    store = make_store(env=env)
    assert get_env(store) is env
    assert get_env(store.todos[0]) is env
    assert get_env(store.todos) is env


def test_get_type() -> None:
    store = make_store()
    assert get_type(store) is Store
    assert get_type(store.todos[0]) is Todo
    assert get_type(store.nums[0]) is Num


def test_is_state_tree_node() -> None:
    store = make_store()
    assert is_state_tree_node(store)
    assert is_state_tree_node(store.todos)
    assert is_state_tree_node(store.by_key)
    assert is_state_tree_node(store.todos[0])
    assert not is_state_tree_node(get_snapshot(store))
    assert not is_state_tree_node({"id": "a"})
    assert not is_state_tree_node([])
    assert not is_state_tree_node("a")
    assert not is_state_tree_node(None)


def test_list_and_dict_nodes_are_stable_and_real_containers() -> None:
    store = make_store()
    assert store.todos is store.todos
    assert store.by_key is store.by_key
    assert isinstance(store.todos, list)
    assert isinstance(store.by_key, dict)


# --------------------------------------------------------------------------- detach / destroy / clone / walk


def test_detach_returns_node_as_new_root() -> None:
    store = make_store()
    unprotect(store)
    todo = store.todos[0]
    result = detach(todo)
    assert result is todo
    assert is_root(todo)
    assert not has_parent(todo)
    assert is_alive(todo)
    assert get_path(todo) == ""
    assert todo.title == "A"
    assert [x.id for x in store.todos] == ["b", "c"]


def test_detach_emits_remove_patch() -> None:
    store = make_store()
    unprotect(store)
    patches: list[Any] = []
    on_patch(store, lambda p, inv: patches.append((p, inv)))
    detach(store.todos[1])
    assert patches == [
        (
            {"op": "remove", "path": "/todos/1"},
            {"op": "add", "path": "/todos/1", "value": {"id": "b", "title": "B", "done": False}},
        )
    ]


def test_detach_from_dict_emits_remove_patch() -> None:
    store = make_store()
    unprotect(store)
    patches: list[Any] = []
    on_patch(store, lambda p, inv: patches.append(p))
    k = store.by_key["k"]
    detach(k)
    assert patches == [{"op": "remove", "path": "/by_key/k"}]
    assert "k" not in store.by_key
    assert is_alive(k)


def test_detached_subtree_keeps_its_snapshot_object() -> None:
    store = make_store()
    unprotect(store)
    before = get_snapshot(store)
    todo = detach(store.todos[0])
    assert get_snapshot(todo) is before["todos"][0]
    assert get_snapshot(store)["todos"][0] is before["todos"][1]


def test_detached_node_changes_no_longer_reach_old_root() -> None:
    store = make_store()
    unprotect(store)
    todo = detach(store.todos[0])
    patches: list[Any] = []
    on_patch(store, lambda p, inv: patches.append(p))
    own: list[Any] = []
    on_patch(todo, lambda p, inv: own.append(p))
    unprotect(todo)
    todo.title = "elsewhere"
    assert patches == []
    assert own == [{"op": "replace", "path": "/title", "value": "elsewhere"}]


def test_detach_inside_action() -> None:
    store = make_store()
    moved = store.run(lambda s: detach(s.todos[2]))
    assert is_root(moved)
    assert len(store.todos) == 2


def test_detached_node_keeps_its_subtree() -> None:
    store = make_store()
    unprotect(store)
    todos = detach(store.todos)
    assert is_root(todos)
    assert [x.id for x in todos] == ["a", "b", "c"]
    assert get_parent(todos[0]) is todos
    assert len(store.todos) == 0


def test_destroy_removes_and_kills() -> None:
    store = make_store()
    unprotect(store)
    todo = store.todos[0]
    destroy(todo)
    assert not is_alive(todo)
    assert [x.id for x in store.todos] == ["b", "c"]


def test_destroy_emits_patch() -> None:
    store = make_store()
    unprotect(store)
    patches: list[Any] = []
    on_patch(store, lambda p, inv: patches.append(p))
    destroy(store.todos[0])
    assert patches == [{"op": "remove", "path": "/todos/0"}]


def test_reading_destroyed_node_raises_dead_node_error() -> None:
    store = make_store()
    unprotect(store)
    todo = store.todos[0]
    destroy(todo)
    with pytest.raises(DeadNodeError):
        _ = todo.title
    assert issubclass(DeadNodeError, MSTError)


def test_destroyed_node_snapshot_is_last_state() -> None:
    store = make_store()
    unprotect(store)
    todo = store.todos[0]
    todo.title = "final"
    destroy(todo)
    assert get_snapshot(todo) == {"id": "a", "title": "final", "done": False}


def test_destroy_root_kills_descendants() -> None:
    store = make_store()
    todo = store.todos[0]
    destroy(store)
    assert not is_alive(store)
    assert not is_alive(todo)


def test_removed_node_is_dead() -> None:
    store = make_store()
    popped = store.run(lambda s: s.todos.pop())
    assert not is_alive(popped)
    assert get_snapshot(popped) == {"id": "c", "title": "C", "done": False}


def test_clone_of_child_is_new_root() -> None:
    store = make_store(env={"e": 1})
    copy_ = clone(store.todos[0])
    assert copy_ is not store.todos[0]
    assert is_root(copy_)
    assert get_snapshot(copy_) == get_snapshot(store.todos[0])
    assert get_env(copy_) is get_env(store)
    assert len(store.todos) == 3


def test_walk_visits_every_node_once() -> None:
    store = make_store()
    seen: list[Any] = []
    walk(store, seen.append)
    ids = [id(x) for x in seen]
    assert len(ids) == len(set(ids))
    for node in [store, store.todos, store.by_key, *store.todos, store.by_key["k"], *store.nums]:
        assert any(x is node for x in seen)
    assert all(is_state_tree_node(x) for x in seen)


def test_walk_on_subtree_only_visits_subtree() -> None:
    store = make_store()
    seen: list[Any] = []
    walk(store.todos, seen.append)
    assert not any(x is store for x in seen)
    assert not any(x is store.by_key["k"] for x in seen)
    for todo in store.todos:
        assert any(x is todo for x in seen)


# --------------------------------------------------------------------------- protection


def test_tree_protected_by_default() -> None:
    store = make_store()
    assert is_protected(store)
    assert is_protected(store.todos[0])


def test_assignment_outside_action_raises_protection_error() -> None:
    store = make_store()
    with pytest.raises(ProtectionError):
        store.name = "x"
    with pytest.raises(ProtectionError):
        store.todos[0].title = "x"
    assert store.name == "s"
    assert issubclass(ProtectionError, MSTError)


def test_list_and_dict_mutation_outside_action_raise() -> None:
    store = make_store()
    with pytest.raises(ProtectionError):
        store.todos.append({"id": "x"})
    with pytest.raises(ProtectionError):
        store.by_key["q"] = {"id": "q"}
    with pytest.raises(ProtectionError):
        store.todos.pop()
    assert len(store.todos) == 3
    assert "q" not in store.by_key


def test_reading_is_always_allowed() -> None:
    store = make_store()
    assert store.todos[0].title == "A"
    assert len(store.todos) == 3
    assert "k" in store.by_key


def test_unprotect_and_protect() -> None:
    store = make_store()
    unprotect(store)
    assert not is_protected(store)
    assert not is_protected(store.todos[0])
    store.name = "free"
    store.todos[0].title = "free too"
    protect(store)
    assert is_protected(store)
    with pytest.raises(ProtectionError):
        store.name = "locked"
    assert store.name == "free"


# --------------------------------------------------------------------------- json path helpers


def test_escape_json_path() -> None:
    assert escape_json_path("a/b~c") == "a~1b~0c"
    assert escape_json_path("http://example.com") == "http:~1~1example.com"
    assert escape_json_path("plain") == "plain"
    assert escape_json_path("~1") == "~01"


def test_unescape_json_path() -> None:
    assert unescape_json_path("a~1b~0c") == "a/b~c"
    assert unescape_json_path("~01") == "~1"
    assert unescape_json_path("http:~1~1example.com") == "http://example.com"


@pytest.mark.parametrize("raw", ["", "/", "~", "~0", "~1", "a/b/c", "~~//", "x~01y"])
def test_escape_unescape_roundtrip(raw: str) -> None:
    assert unescape_json_path(escape_json_path(raw)) == raw


def test_json_patch_path() -> None:
    assert json_patch_path([]) == ""
    assert json_patch_path(["todos", "0"]) == "/todos/0"
    assert json_patch_path(["a/b", "c~"]) == "/a~1b/c~0"
    assert json_patch_path([""]) == "/"


def test_json_patch_path_matches_get_path() -> None:
    node = make_paths().leaves["/"]
    assert json_patch_path(list(get_path_parts(node))) == get_path(node)


# --------------------------------------------------------------------------- references


def test_reference_resolves_to_node() -> None:
    store = make_store(selected="b")
    assert store.selected is store.todos[1]


def test_reference_snapshot_holds_identifier() -> None:
    store = make_store(selected="b")
    assert get_snapshot(store)["selected"] == "b"


def test_assign_node_to_reference() -> None:
    store = make_store()
    unprotect(store)
    patches: list[Any] = []
    on_patch(store, lambda p, inv: patches.append(p))
    store.selected = store.todos[2]
    assert store.selected is store.todos[2]
    assert get_snapshot(store)["selected"] == "c"
    assert patches == [{"op": "replace", "path": "/selected", "value": "c"}]


def test_assign_identifier_to_reference() -> None:
    store = make_store()
    unprotect(store)
    store.selected = "k"
    assert store.selected is store.by_key["k"]


def test_reference_is_lazy() -> None:
    store = make_store(selected="later")
    assert get_snapshot(store)["selected"] == "later"
    store.run(lambda s: s.todos.append({"id": "later"}))
    assert store.selected is store.todos[3]


def test_dangling_reference_raises_on_read() -> None:
    store = make_store(selected="ghost")
    with pytest.raises(InvalidReferenceError):
        _ = store.selected
    assert issubclass(InvalidReferenceError, MSTError)


def test_reference_becomes_dangling_after_removal() -> None:
    store = make_store(selected="a")
    store.run(lambda s: s.todos.pop(0))
    with pytest.raises(InvalidReferenceError):
        _ = store.selected
    assert get_snapshot(store)["selected"] == "a"


def test_reference_follows_reconciled_node() -> None:
    store = make_store(selected="a")
    a = store.todos[0]
    snap = copy.deepcopy(INITIAL)
    snap["todos"] = [{"id": "c"}, {"id": "a", "title": "moved"}]
    snap["selected"] = "a"
    apply_snapshot(store, snap)
    assert store.selected is a
    assert store.selected.title == "moved"


def test_reference_with_identifier_number() -> None:
    store = make_store(num_ref=7)
    assert store.num_ref is store.nums[1]
    unprotect(store)
    store.num_ref = store.nums[0]
    assert store.num_ref is store.nums[0]
    assert get_snapshot(store)["num_ref"] in (3, "3")


def test_reference_set_to_none() -> None:
    store = make_store(selected="a")
    unprotect(store)
    store.selected = None
    assert store.selected is None
    assert get_snapshot(store)["selected"] is None


def test_list_of_references_resolves_to_nodes() -> None:
    store = make_store(refs=["c", "a"])
    assert store.refs[0] is store.todos[2]
    assert store.refs[1] is store.todos[0]
    assert [x.title for x in store.refs] == ["C", "A"]
    assert get_snapshot(store)["refs"] == ["c", "a"]


def test_append_node_to_list_of_references_stores_identifier() -> None:
    store = make_store()
    unprotect(store)
    patches: list[Any] = []
    on_patch(store, lambda p, inv: patches.append(p))
    store.refs.append(store.todos[1])
    assert store.refs[0] is store.todos[1]
    assert get_snapshot(store)["refs"] == ["b"]
    assert patches == [{"op": "add", "path": "/refs/0", "value": "b"}]


def test_reference_resolves_to_replacing_node_with_same_identifier() -> None:
    store = make_store(selected="a")
    unprotect(store)
    old = store.todos[0]
    store.todos[0] = Todo.create({"id": "a", "title": "replacement"})
    assert store.todos[0] is not old
    assert store.selected is store.todos[0]
    assert store.selected.title == "replacement"


def test_reference_to_node_in_dict() -> None:
    store = make_store(selected="k")
    assert store.selected is store.by_key["k"]


def test_assign_wrong_node_type_to_reference_raises() -> None:
    store = make_store(selected="a")
    unprotect(store)
    with pytest.raises(ValidationError):
        store.selected = store.nums[0]
    assert get_snapshot(store)["selected"] == "a"


def test_safe_reference_resolves() -> None:
    store = make_store(fav="b")
    assert store.fav is store.todos[1]


def test_safe_reference_becomes_none_when_target_removed() -> None:
    store = make_store(fav="b")
    store.run(lambda s: s.todos.pop(1))
    assert store.fav is None
    assert get_snapshot(store)["fav"] is None


def test_safe_reference_becomes_none_when_target_destroyed() -> None:
    store = make_store(fav="k")
    unprotect(store)
    destroy(store.by_key["k"])
    assert store.fav is None


def test_safe_reference_cleared_by_apply_snapshot_removal() -> None:
    store = make_store(fav="a")
    apply_snapshot(store.todos, [{"id": "b"}])
    assert store.fav is None
    assert get_snapshot(store)["fav"] is None


def test_list_of_safe_references_drops_removed_target() -> None:
    store = make_store(favs=["a", "b", "c"])
    assert [x.id for x in store.favs] == ["a", "b", "c"]
    store.run(lambda s: s.todos.pop(1))
    assert [x.id for x in store.favs] == ["a", "c"]
    assert get_snapshot(store)["favs"] == ["a", "c"]


def test_safe_reference_removal_is_visible_as_patch() -> None:
    store = make_store(fav="a")
    patches: list[Any] = []
    on_patch(store, lambda p, inv: patches.append(p))
    store.run(lambda s: s.todos.pop(0))
    assert {"op": "remove", "path": "/todos/0"} in patches
    assert {"op": "replace", "path": "/fav", "value": None} in patches


# --------------------------------------------------------------------------- lifecycle hooks


@model
class HookChild:
    title: str = ""

    def after_create(self) -> None:
        EVENTS.append(f"create {self.title}")

    def after_attach(self) -> None:
        EVENTS.append(f"attach {self.title} parent={has_parent(self)}")

    def before_detach(self) -> None:
        EVENTS.append(f"detach {self.title}")

    def before_destroy(self) -> None:
        EVENTS.append(f"destroy {self.title}")


@model
class HookParent:
    children: list[HookChild]

    def after_create(self) -> None:
        EVENTS.append(f"create parent {len(self.children)}")

    def before_destroy(self) -> None:
        EVENTS.append(f"destroy parent {len(self.children)}")

    @action
    def run(self, fn: Callable[[HookParent], Any]) -> Any:
        return fn(self)


def test_after_create_on_standalone_node_no_attach() -> None:
    HookChild.create({"title": "solo"})
    assert EVENTS == ["create solo"]


def test_after_create_children_before_parent_then_attach() -> None:
    HookParent.create({"children": [{"title": "a"}]})
    assert EVENTS == ["create a", "create parent 1", "attach a parent=True"]


def test_after_attach_when_pushed() -> None:
    parent = HookParent.create({})
    child = HookChild.create({"title": "new"})
    EVENTS.clear()
    parent.run(lambda p: p.children.append(child))
    assert EVENTS == ["attach new parent=True"]


def test_create_and_attach_when_snapshot_pushed() -> None:
    parent = HookParent.create({})
    EVENTS.clear()
    parent.run(lambda p: p.children.append({"title": "snap"}))
    assert EVENTS == ["create snap", "attach snap parent=True"]


def test_before_detach_on_detach() -> None:
    parent = HookParent.create({"children": [{"title": "a"}, {"title": "b"}]})
    EVENTS.clear()
    node = parent.run(lambda p: detach(p.children[0]))
    assert EVENTS == ["detach a"]
    assert is_alive(node)


def test_before_destroy_on_destroy_of_detached() -> None:
    parent = HookParent.create({"children": [{"title": "a"}]})
    node = parent.run(lambda p: detach(p.children[0]))
    EVENTS.clear()
    destroy(node)
    assert EVENTS == ["destroy a"]


def test_removal_from_list_fires_before_destroy_only() -> None:
    parent = HookParent.create({"children": [{"title": "a"}, {"title": "b"}]})
    EVENTS.clear()
    parent.run(lambda p: p.children.pop())
    assert EVENTS == ["destroy b"]


def test_destroy_parent_destroys_children_first() -> None:
    parent = HookParent.create({"children": [{"title": "a"}, {"title": "b"}]})
    EVENTS.clear()
    destroy(parent)
    assert sorted(EVENTS[:2]) == ["destroy a", "destroy b"]
    assert EVENTS[2:] == ["destroy parent 2"]


def test_full_hook_sequence() -> None:
    parent = HookParent.create({})
    child = HookChild.create({"title": "x"})
    unprotect(parent)
    parent.children.append(child)
    detach(child)
    destroy(child)
    assert EVENTS == ["create parent 0", "create x", "attach x parent=True", "detach x", "destroy x"]


# --------------------------------------------------------------------------- views


@model
class VTodo:
    title: str = ""
    done: bool = False

    @view
    def upper(self) -> str:
        CALLS["upper"] += 1
        return self.title.upper()


@model
class VStore:
    name: str = ""
    todos: list[VTodo]

    @view
    def done_count(self) -> int:
        CALLS["done_count"] += 1
        return sum(1 for todo in self.todos if todo.done)

    @view
    def size(self) -> int:
        CALLS["size"] += 1
        return len(self.todos)

    @view
    def summary(self) -> str:
        CALLS["summary"] += 1
        return f"{self.done_count}/{self.size}"

    def plain_count(self) -> int:
        CALLS["plain"] += 1
        return len(self.todos)

    @action
    def run(self, fn: Callable[[VStore], Any]) -> Any:
        return fn(self)


def make_vstore() -> VStore:
    return VStore.create({"name": "v", "todos": [{"title": "a"}, {"title": "b", "done": True}]})


def test_view_read_as_attribute() -> None:
    store = make_vstore()
    assert store.todos[0].upper == "A"
    assert store.done_count == 1
    assert store.summary == "1/2"


def test_view_cached_between_reads() -> None:
    store = make_vstore()
    todo = store.todos[0]
    assert todo.upper == "A"
    assert todo.upper == "A"
    assert todo.upper == "A"
    assert CALLS["upper"] == 1


def test_view_recomputes_after_dependency_changes() -> None:
    store = make_vstore()
    unprotect(store)
    todo = store.todos[0]
    assert todo.upper == "A"
    todo.title = "changed"
    assert todo.upper == "CHANGED"
    assert todo.upper == "CHANGED"
    assert CALLS["upper"] == 2


def test_view_not_recomputed_when_other_field_of_same_node_changes() -> None:
    store = make_vstore()
    unprotect(store)
    todo = store.todos[0]
    assert todo.upper == "A"
    todo.done = True
    assert todo.upper == "A"
    assert CALLS["upper"] == 1


def test_view_not_recomputed_when_unrelated_node_changes() -> None:
    store = make_vstore()
    unprotect(store)
    assert store.todos[0].upper == "A"
    assert store.done_count == 1
    store.name = "other"
    store.todos[1].title = "bb"
    assert store.todos[0].upper == "A"
    assert CALLS["upper"] == 1
    assert store.done_count == 1
    assert CALLS["done_count"] == 1


def test_view_over_list_recomputes_on_append() -> None:
    store = make_vstore()
    unprotect(store)
    assert store.size == 2
    store.todos.append({"title": "c"})
    assert store.size == 3
    assert CALLS["size"] == 2


def test_view_over_list_recomputes_on_removal() -> None:
    store = make_vstore()
    unprotect(store)
    assert store.done_count == 1
    store.todos.pop()
    assert store.done_count == 0
    assert CALLS["done_count"] == 2


def test_view_recomputes_when_item_field_it_read_changes() -> None:
    store = make_vstore()
    unprotect(store)
    assert store.done_count == 1
    store.todos[0].done = True
    assert store.done_count == 2
    assert CALLS["done_count"] == 2


def test_view_not_recomputed_when_item_field_it_did_not_read_changes() -> None:
    store = make_vstore()
    unprotect(store)
    assert store.done_count == 1
    store.todos[0].title = "renamed"
    assert store.done_count == 1
    assert CALLS["done_count"] == 1


def test_view_of_views_cached() -> None:
    store = make_vstore()
    assert store.summary == "1/2"
    assert store.summary == "1/2"
    assert CALLS["summary"] == 1
    assert CALLS["done_count"] == 1
    assert CALLS["size"] == 1


def test_view_of_views_not_recomputed_for_unrelated_change() -> None:
    store = make_vstore()
    unprotect(store)
    assert store.summary == "1/2"
    store.name = "unrelated"
    assert store.summary == "1/2"
    assert CALLS["summary"] == 1


def test_view_of_views_recomputes_through_inner_view() -> None:
    store = make_vstore()
    unprotect(store)
    assert store.summary == "1/2"
    store.todos[0].done = True
    assert store.summary == "2/2"
    assert CALLS["summary"] == 2
    assert CALLS["done_count"] == 2
    assert CALLS["size"] == 1


def test_view_of_views_after_append() -> None:
    store = make_vstore()
    unprotect(store)
    assert store.summary == "1/2"
    store.todos.append({"title": "c", "done": True})
    assert store.summary == "2/3"
    assert CALLS["summary"] == 2


def test_view_sees_changes_inside_action() -> None:
    store = make_vstore()
    assert store.size == 2
    seen: list[int] = []

    def body(s: VStore) -> None:
        s.todos.append({"title": "c"})
        seen.append(s.size)

    store.run(body)
    assert seen == [3]
    assert store.size == 3


def test_view_value_after_rolled_back_action() -> None:
    store = make_vstore()
    assert store.size == 2

    def body(s: VStore) -> None:
        s.todos.append({"title": "c"})
        assert s.size == 3
        raise RuntimeError("rollback")

    with pytest.raises(RuntimeError):
        store.run(body)
    assert store.size == 2


def test_plain_method_is_uncached_view() -> None:
    store = make_vstore()
    assert store.plain_count() == 2
    assert store.plain_count() == 2
    assert CALLS["plain"] == 2


def test_view_after_apply_snapshot() -> None:
    store = make_vstore()
    assert store.done_count == 1
    apply_snapshot(store, {"todos": [{"done": True}, {"done": True}, {"done": True}]})
    assert store.done_count == 3
