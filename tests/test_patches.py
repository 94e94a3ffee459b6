"""Contract section 4 (patches) and the patch-related clarifications of section 8.

Patch granularity follows MST 7.4; several tests are translations of MST's own jsonpatch/array/map tests.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mst_llm import (
    MSTError,
    PatchError,
    ValidationError,
    action,
    apply_patch,
    apply_snapshot,
    get_snapshot,
    is_alive,
    is_state_tree_node,
    model,
    on_commit,
    on_patch,
    on_snapshot,
    record_patches,
    unprotect,
)
from mst_llm import types as t


@model
class Item:
    id: t.Identifier
    text: str = ""

    @action
    def set_text(self, text: str) -> None:
        self.text = text


@model
class Plain:
    x: int = 0


@model
class Store:
    name: str = ""
    count: int = 0
    note: str | None = None
    nums: list[int]
    one: list[int]
    empty: list[int]
    items: list[Item]
    tags: dict[str, int]
    by_id: dict[str, Item]
    item: Item | None = None
    plain: Plain | None = None

    @action
    def run(self, fn: Callable[[Store], Any]) -> Any:
        return fn(self)


INITIAL: dict[str, Any] = {
    "name": "s",
    "count": 1,
    "nums": [1, 2, 3],
    "one": [5],
    "items": [{"id": "a", "text": "A"}, {"id": "b", "text": "B"}, {"id": "c", "text": "C"}],
    "tags": {"x": 1, "y": 2},
    "by_id": {"p": {"id": "p", "text": "P"}, "q": {"id": "q", "text": "Q"}},
    "item": {"id": "i", "text": "I"},
    "plain": {"x": 1},
}


def make_store() -> Store:
    return Store.create(copy.deepcopy(INITIAL))


def listen(node: Any) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    calls: list[tuple[dict[str, Any], dict[str, Any]]] = []
    on_patch(node, lambda patch, inverse: calls.append((patch, inverse)))
    return calls


def patches(calls: list[tuple[dict[str, Any], dict[str, Any]]]) -> list[dict[str, Any]]:
    return [p for p, _ in calls]


def inverses(calls: list[tuple[dict[str, Any], dict[str, Any]]]) -> list[dict[str, Any]]:
    return [inv for _, inv in calls]


def I(id_: str, text: str = "") -> dict[str, Any]:  # noqa: E743
    return {"id": id_, "text": text}


def add(path: str, value: Any) -> dict[str, Any]:
    return {"op": "add", "path": path, "value": value}


def rep(path: str, value: Any) -> dict[str, Any]:
    return {"op": "replace", "path": path, "value": value}


def rem(path: str) -> dict[str, Any]:
    return {"op": "remove", "path": path}


def _setslice(lst: Any, sl: slice, value: list[Any]) -> None:
    lst[sl] = value


def _delitem(lst: Any, key: Any) -> None:
    del lst[key]


def _setattr(obj: Any, name: str, value: Any) -> None:
    setattr(obj, name, value)


# (name, mutation on an unprotected Store, exact patches expected at the root)
CASES: list[tuple[str, Callable[[Store], Any], list[dict[str, Any]]]] = [
    # --- model fields
    ("field_replace", lambda s: _setattr(s, "name", "n"), [rep("/name", "n")]),
    ("field_int_replace", lambda s: _setattr(s, "count", 7), [rep("/count", 7)]),
    ("field_same_value", lambda s: _setattr(s, "name", "s"), []),
    ("field_none_to_value", lambda s: _setattr(s, "note", "hello"), [rep("/note", "hello")]),
    ("model_field_to_none", lambda s: _setattr(s, "item", None), [rep("/item", None)]),
    ("model_field_reconcile", lambda s: _setattr(s, "item", I("i", "I2")), [rep("/item/text", "I2")]),
    ("model_field_reconcile_same", lambda s: _setattr(s, "item", I("i", "I")), []),
    ("model_field_other_id", lambda s: _setattr(s, "item", I("j", "J")), [rep("/item", I("j", "J"))]),
    (
        "model_field_instance",
        lambda s: _setattr(s, "item", Item.create(I("i", "new"))),
        [rep("/item", I("i", "new"))],
    ),
    ("plain_model_reconcile", lambda s: _setattr(s, "plain", {"x": 2}), [rep("/plain/x", 2)]),
    ("deep_field", lambda s: _setattr(s.items[1], "text", "B2"), [rep("/items/1/text", "B2")]),
    # --- lists of primitives
    ("append", lambda s: s.nums.append(4), [add("/nums/3", 4)]),
    ("extend", lambda s: s.nums.extend([4, 5]), [add("/nums/3", 4), add("/nums/4", 5)]),
    ("extend_empty", lambda s: s.nums.extend([]), []),
    ("insert_front", lambda s: s.nums.insert(0, 0), [add("/nums/0", 0)]),
    ("insert_middle", lambda s: s.nums.insert(1, 9), [add("/nums/1", 9)]),
    ("insert_past_end", lambda s: s.nums.insert(10, 9), [add("/nums/3", 9)]),
    ("insert_negative", lambda s: s.nums.insert(-1, 9), [add("/nums/2", 9)]),
    ("pop_last", lambda s: s.nums.pop(), [rem("/nums/2")]),
    ("pop_first", lambda s: s.nums.pop(0), [rem("/nums/0")]),
    ("pop_negative", lambda s: s.nums.pop(-2), [rem("/nums/1")]),
    ("remove_value", lambda s: s.nums.remove(2), [rem("/nums/1")]),
    ("del_index", lambda s: _delitem(s.nums, 0), [rem("/nums/0")]),
    ("del_negative", lambda s: _delitem(s.nums, -1), [rem("/nums/2")]),
    ("del_slice_descending", lambda s: _delitem(s.nums, slice(0, 2)), [rem("/nums/1"), rem("/nums/0")]),
    ("del_whole_slice", lambda s: _delitem(s.nums, slice(None)), [rep("/nums", [])]),
    (
        "slice_assign_grow",
        lambda s: _setslice(s.nums, slice(1, 2), [7, 8]),
        [rem("/nums/1"), add("/nums/1", 7), add("/nums/2", 8)],
    ),
    ("slice_assign_insert", lambda s: _setslice(s.nums, slice(1, 1), [7]), [add("/nums/1", 7)]),
    (
        "slice_assign_shrink",
        lambda s: _setslice(s.nums, slice(0, 2), [9]),
        [rem("/nums/1"), rem("/nums/0"), add("/nums/0", 9)],
    ),
    (
        "slice_assign_tail",
        lambda s: _setslice(s.nums, slice(1, None), [8, 9]),
        [rem("/nums/2"), rem("/nums/1"), add("/nums/1", 8), add("/nums/2", 9)],
    ),
    ("slice_replace_all", lambda s: _setslice(s.nums, slice(None), [7, 8]), [rep("/nums", [7, 8])]),
    (
        "slice_replace_all_longer",
        lambda s: _setslice(s.nums, slice(0, 3), [7, 8, 9, 10]),
        [rep("/nums", [7, 8, 9, 10])],
    ),
    ("clear", lambda s: s.nums.clear(), [rep("/nums", [])]),
    ("iadd", lambda s: s.nums.__iadd__([4]), [add("/nums/3", 4)]),
    ("imul", lambda s: s.nums.__imul__(2), [add("/nums/3", 1), add("/nums/4", 2), add("/nums/5", 3)]),
    ("insert_very_negative", lambda s: s.nums.insert(-10, 0), [add("/nums/0", 0)]),
    (
        "del_extended_slice",
        lambda s: _delitem(s.nums, slice(None, None, 2)),
        [rem("/nums/2"), rem("/nums/0")],
    ),
    ("setitem", lambda s: s.nums.__setitem__(1, 20), [rep("/nums/1", 20)]),
    ("setitem_negative", lambda s: s.nums.__setitem__(-1, 30), [rep("/nums/2", 30)]),
    ("sort_changes_order", lambda s: s.nums.sort(reverse=True), [rep("/nums", [3, 2, 1])]),
    ("sort_with_key", lambda s: s.nums.sort(key=lambda v: -v), [rep("/nums", [3, 2, 1])]),
    ("sort_unchanged", lambda s: s.nums.sort(), []),
    ("reverse", lambda s: s.nums.reverse(), [rep("/nums", [3, 2, 1])]),
    # --- single-item and empty lists
    ("only_item_pop", lambda s: s.one.pop(), [rep("/one", [])]),
    ("only_item_remove", lambda s: s.one.remove(5), [rep("/one", [])]),
    ("only_item_del", lambda s: _delitem(s.one, 0), [rep("/one", [])]),
    ("only_item_setitem", lambda s: s.one.__setitem__(0, 6), [rep("/one/0", 6)]),
    ("only_item_reverse", lambda s: s.one.reverse(), []),
    ("only_item_clear", lambda s: s.one.clear(), [rep("/one", [])]),
    ("empty_clear", lambda s: s.empty.clear(), []),
    ("empty_append", lambda s: s.empty.append(1), [add("/empty/0", 1)]),
    (
        "empty_slice_assign",
        lambda s: _setslice(s.empty, slice(None), [1, 2]),
        [add("/empty/0", 1), add("/empty/1", 2)],
    ),
    # --- lists of models
    ("models_append_snapshot", lambda s: s.items.append({"id": "d"}), [add("/items/3", I("d"))]),
    (
        "models_append_node",
        lambda s: s.items.append(Item.create(I("d", "D"))),
        [add("/items/3", I("d", "D"))],
    ),
    ("models_setitem_same_id", lambda s: s.items.__setitem__(0, I("a", "A2")), [rep("/items/0/text", "A2")]),
    (
        "models_setitem_other_id",
        lambda s: s.items.__setitem__(0, I("z", "Z")),
        [rep("/items/0", I("z", "Z"))],
    ),
    ("models_remove_node", lambda s: s.items.remove(s.items[1]), [rem("/items/1")]),
    ("models_pop", lambda s: s.items.pop(), [rem("/items/2")]),
    ("models_insert", lambda s: s.items.insert(1, I("n")), [add("/items/1", I("n"))]),
    ("models_reverse", lambda s: s.items.reverse(), [rep("/items", [I("c", "C"), I("b", "B"), I("a", "A")])]),
    (
        "models_sort",
        lambda s: s.items.sort(key=lambda it: it.text, reverse=True),
        [rep("/items", [I("c", "C"), I("b", "B"), I("a", "A")])],
    ),
    # --- dicts
    ("dict_add", lambda s: s.tags.__setitem__("z", 3), [add("/tags/z", 3)]),
    ("dict_replace", lambda s: s.tags.__setitem__("x", 10), [rep("/tags/x", 10)]),
    ("dict_del", lambda s: _delitem(s.tags, "x"), [rem("/tags/x")]),
    ("dict_pop", lambda s: s.tags.pop("y"), [rem("/tags/y")]),
    ("dict_pop_missing_default", lambda s: s.tags.pop("missing", None), []),
    ("dict_update", lambda s: s.tags.update({"x": 5, "new": 6}), [rep("/tags/x", 5), add("/tags/new", 6)]),
    ("dict_update_kwargs", lambda s: s.tags.update(w=1), [add("/tags/w", 1)]),
    ("dict_clear", lambda s: s.tags.clear(), [rem("/tags/x"), rem("/tags/y")]),
    ("dict_setdefault_new", lambda s: s.tags.setdefault("w", 7), [add("/tags/w", 7)]),
    ("dict_setdefault_existing", lambda s: s.tags.setdefault("x", 7), []),
    ("dict_popitem", lambda s: s.tags.popitem(), [rem("/tags/y")]),
    ("dict_ior", lambda s: s.tags.__ior__({"x": 0, "z": 1}), [rep("/tags/x", 0), add("/tags/z", 1)]),
    ("dict_escape_slash_tilde", lambda s: s.tags.__setitem__("a/b~c", 1), [add("/tags/a~1b~0c", 1)]),
    ("dict_escape_tilde_one", lambda s: s.tags.__setitem__("~1", 2), [add("/tags/~01", 2)]),
    ("dict_empty_key", lambda s: s.tags.__setitem__("", 4), [add("/tags/", 4)]),
    ("dict_models_reconcile", lambda s: s.by_id.__setitem__("p", I("p", "P2")), [rep("/by_id/p/text", "P2")]),
    ("dict_models_add", lambda s: s.by_id.__setitem__("r", I("r")), [add("/by_id/r", I("r"))]),
    ("dict_models_del", lambda s: _delitem(s.by_id, "p"), [rem("/by_id/p")]),
]

CASE_IDS = [c[0] for c in CASES]


@pytest.mark.parametrize(("name", "mutate", "expected"), CASES, ids=CASE_IDS)
def test_granularity(name: str, mutate: Callable[[Store], Any], expected: list[dict[str, Any]]) -> None:
    store = make_store()
    unprotect(store)
    calls = listen(store)
    mutate(store)
    assert patches(calls) == expected


@pytest.mark.parametrize(("name", "mutate", "expected"), CASES, ids=CASE_IDS)
def test_granularity_inside_action(name: str, mutate: Callable[[Store], Any], expected: list[dict[str, Any]]) -> None:
    store = make_store()
    calls = listen(store)
    store.run(mutate)
    assert patches(calls) == expected


@pytest.mark.parametrize(("name", "mutate", "expected"), CASES, ids=CASE_IDS)
def test_replaying_patches_reproduces_state(
    name: str, mutate: Callable[[Store], Any], expected: list[dict[str, Any]]
) -> None:
    store = make_store()
    unprotect(store)
    calls = listen(store)
    mutate(store)
    target = Store.create(copy.deepcopy(INITIAL))
    apply_patch(target, patches(calls))
    assert get_snapshot(target) == get_snapshot(store)


@pytest.mark.parametrize(("name", "mutate", "expected"), CASES, ids=CASE_IDS)
def test_inverse_patches_in_reverse_undo(
    name: str, mutate: Callable[[Store], Any], expected: list[dict[str, Any]]
) -> None:
    store = make_store()
    before = get_snapshot(store)
    unprotect(store)
    calls = listen(store)
    mutate(store)
    apply_patch(store, list(reversed(inverses(calls))))
    assert get_snapshot(store) == before


def test_assigning_list_snapshot_to_list_field_replaces_whole_list() -> None:
    store = make_store()
    unprotect(store)
    calls = listen(store)
    store.nums = [7, 8]
    assert patches(calls) == [rep("/nums", [7, 8])]
    assert list(store.nums) == [7, 8]


def test_assigning_list_snapshot_keeps_list_node() -> None:
    store = make_store()
    unprotect(store)
    nums = store.nums
    store.nums = [7, 8]
    assert store.nums is nums


def test_assigning_equal_list_snapshot_emits_nothing() -> None:
    store = make_store()
    unprotect(store)
    calls = listen(store)
    store.nums = [1, 2, 3]
    assert calls == []


def test_assigning_dict_snapshot_to_dict_field_emits_per_key_patches() -> None:
    store = make_store()
    unprotect(store)
    calls = listen(store)
    store.tags = {"y": 5, "z": 1}
    key = lambda p: p["path"]  # noqa: E731
    assert sorted(patches(calls), key=key) == sorted([rem("/tags/x"), rep("/tags/y", 5), add("/tags/z", 1)], key=key)
    assert dict(store.tags) == {"y": 5, "z": 1}


def test_assigning_list_of_models_with_same_ids_reconciles_deeply() -> None:
    store = make_store()
    unprotect(store)
    a = store.items[0]
    calls = listen(store)
    store.items = [I("a", "A"), I("b", "B2"), I("c", "C")]
    assert patches(calls) == [rep("/items/1/text", "B2")]
    assert store.items[0] is a


@pytest.mark.parametrize(
    ("mutate", "error"),
    [
        (lambda s: s.empty.pop(), IndexError),
        (lambda s: s.nums.remove(99), ValueError),
        (lambda s: _delitem(s.nums, 10), IndexError),
        (lambda s: s.nums.__setitem__(10, 1), IndexError),
        (lambda s: _delitem(s.tags, "missing"), KeyError),
        (lambda s: s.tags.pop("missing"), KeyError),
        (lambda s: s.empty.append("not an int"), ValidationError),
        (lambda s: _setattr(s, "count", "not an int"), ValidationError),
        (lambda s: s.tags.__setitem__("k", "not an int"), ValidationError),
    ],
    ids=[
        "pop_empty",
        "remove_missing",
        "del_out_of_range",
        "set_out_of_range",
        "del_key",
        "pop_key",
        "bad_item",
        "bad_field",
        "bad_value",
    ],
)
def test_failed_mutation_emits_nothing_and_changes_nothing(mutate: Callable[[Store], Any], error: type) -> None:
    store = make_store()
    before = get_snapshot(store)
    unprotect(store)
    calls = listen(store)
    with pytest.raises(error):
        mutate(store)
    assert calls == []
    assert get_snapshot(store) == before


# --------------------------------------------------------------------------- patch shape and inverses


def test_remove_patch_has_no_value_key() -> None:
    store = make_store()
    unprotect(store)
    calls = listen(store)
    store.nums.pop()
    del store.tags["x"]
    # equality with dicts that have no "value" key fails if one is there (or if nothing was delivered)
    assert patches(calls) == [{"op": "remove", "path": "/nums/2"}, {"op": "remove", "path": "/tags/x"}]


def test_patches_are_json_serialisable() -> None:
    store = make_store()
    unprotect(store)
    calls = listen(store)
    store.items.append({"id": "d", "text": "D"})
    store.item = {"id": "j"}
    assert patches(calls) == [add("/items/3", I("d", "D")), rep("/item", I("j"))]
    assert json.loads(json.dumps(calls)) == [[patch, inverse] for patch, inverse in calls]


def test_patch_value_is_snapshot_not_node() -> None:
    store = make_store()
    unprotect(store)
    calls = listen(store)
    node = Item.create({"id": "d", "text": "D"})
    store.items.append(node)
    value = calls[0][0]["value"]
    assert not is_state_tree_node(value)
    assert value == get_snapshot(node)


def test_replaced_model_value_and_inverse_are_snapshots() -> None:
    store = make_store()
    unprotect(store)
    calls = listen(store)
    store.item = {"id": "j"}
    patch, inverse = calls[0]
    assert not is_state_tree_node(patch["value"])
    assert not is_state_tree_node(inverse["value"])
    assert inverse == rep("/item", I("i", "I"))


def test_inverse_of_field_replace() -> None:
    store = make_store()
    unprotect(store)
    calls = listen(store)
    store.name = "n"
    assert calls == [(rep("/name", "n"), rep("/name", "s"))]


def test_inverse_of_value_to_none() -> None:
    store = make_store()
    unprotect(store)
    store.note = "x"
    calls = listen(store)
    store.note = None
    assert calls == [(rep("/note", None), rep("/note", "x"))]


def test_inverse_of_list_add_is_remove() -> None:
    store = make_store()
    unprotect(store)
    calls = listen(store)
    store.nums.append(4)
    assert calls == [(add("/nums/3", 4), rem("/nums/3"))]


def test_inverse_of_list_remove_is_add_with_old_value() -> None:
    store = make_store()
    unprotect(store)
    calls = listen(store)
    store.nums.pop(0)
    assert calls == [(rem("/nums/0"), add("/nums/0", 1))]


def test_inverse_of_list_item_replace() -> None:
    store = make_store()
    unprotect(store)
    calls = listen(store)
    store.nums[1] = 20
    assert calls == [(rep("/nums/1", 20), rep("/nums/1", 2))]


def test_inverse_of_whole_list_replace() -> None:
    store = make_store()
    unprotect(store)
    calls = listen(store)
    store.nums.clear()
    assert calls == [(rep("/nums", []), rep("/nums", [1, 2, 3]))]


def test_inverse_of_model_removal_carries_snapshot() -> None:
    store = make_store()
    unprotect(store)
    calls = listen(store)
    store.items.pop(1)
    assert calls == [(rem("/items/1"), add("/items/1", I("b", "B")))]


def test_inverse_of_dict_ops() -> None:
    store = make_store()
    unprotect(store)
    calls = listen(store)
    store.tags["z"] = 3
    store.tags["x"] = 10
    del store.tags["y"]
    assert calls == [
        (add("/tags/z", 3), rem("/tags/z")),
        (rep("/tags/x", 10), rep("/tags/x", 1)),
        (rem("/tags/y"), add("/tags/y", 2)),
    ]


@model
class Nested:
    value: dict[str, dict[str, dict[str, int]]]

    @action
    def remove(self, key: str) -> None:
        del self.value[key]


def test_mst_nested_map_remove_reverse_patch_has_value() -> None:
    store = Nested.create({"value": {"a": {"b": {"c": 10}}}})
    calls = listen(store)
    store.remove("a")
    assert calls == [(rem("/value/a"), add("/value/a", {"b": {"c": 10}}))]


# --------------------------------------------------------------------------- delivery


def test_patches_delivered_in_mutation_order() -> None:
    store = make_store()
    calls = listen(store)

    def body(s: Store) -> None:
        s.nums.append(4)
        s.name = "n"
        s.tags["z"] = 1
        s.items[0].text = "A2"
        s.name = "m"

    store.run(body)
    assert patches(calls) == [
        add("/nums/3", 4),
        rep("/name", "n"),
        add("/tags/z", 1),
        rep("/items/0/text", "A2"),
        rep("/name", "m"),
    ]


def test_patches_delivered_only_at_commit() -> None:
    store = make_store()
    calls = listen(store)
    seen_during: list[int] = []

    def body(s: Store) -> None:
        s.name = "n"
        s.nums.append(4)
        seen_during.append(len(calls))

    store.run(body)
    assert seen_during == [0]
    assert len(calls) == 2


def test_nested_action_patches_delivered_at_outermost_commit() -> None:
    store = make_store()
    calls = listen(store)
    seen_during: list[int] = []

    def body(s: Store) -> None:
        s.items[0].set_text("nested")
        seen_during.append(len(calls))

    store.run(body)
    assert seen_during == [0]
    assert patches(calls) == [rep("/items/0/text", "nested")]


def test_failed_action_delivers_no_patches() -> None:
    store = make_store()
    calls = listen(store)

    def body(s: Store) -> None:
        s.name = "n"
        s.nums.append(4)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        store.run(body)
    assert calls == []
    assert get_snapshot(store) == get_snapshot(make_store())


def test_listener_paths_relative_to_list_node() -> None:
    store = make_store()
    unprotect(store)
    calls = listen(store.items)
    store.items[0].text = "A2"
    store.items.append({"id": "d"})
    store.items.clear()
    assert patches(calls) == [rep("/0/text", "A2"), add("/3", I("d")), rep("", [])]


def test_listener_paths_relative_to_model_node() -> None:
    store = make_store()
    unprotect(store)
    calls = listen(store.items[1])
    store.items[1].text = "B2"
    assert patches(calls) == [rep("/text", "B2")]


def test_listener_paths_relative_to_dict_node() -> None:
    store = make_store()
    unprotect(store)
    calls = listen(store.by_id)
    store.by_id["p"].text = "P2"
    store.by_id["r"] = {"id": "r"}
    assert patches(calls) == [rep("/p/text", "P2"), add("/r", I("r"))]


def test_subtree_listener_not_called_for_changes_elsewhere() -> None:
    store = make_store()
    unprotect(store)
    calls = listen(store.items[0])
    store.items[1].text = "B2"
    store.name = "n"
    store.nums.append(1)
    assert calls == []


def test_listeners_called_deepest_first() -> None:
    store = make_store()
    unprotect(store)
    order: list[str] = []
    on_patch(store, lambda p, inv: order.append("root"))
    on_patch(store.items, lambda p, inv: order.append("list"))
    on_patch(store.items[0], lambda p, inv: order.append("item"))
    store.items[0].text = "A2"
    assert order == ["item", "list", "root"]


def test_listeners_deepest_first_per_mutation() -> None:
    store = make_store()
    order: list[str] = []
    on_patch(store, lambda p, inv: order.append("root:" + p["path"]))
    on_patch(store.items[0], lambda p, inv: order.append("item:" + p["path"]))

    def body(s: Store) -> None:
        s.items[0].text = "one"
        s.items[0].text = "two"

    store.run(body)
    assert order == ["item:/text", "root:/items/0/text", "item:/text", "root:/items/0/text"]


def test_on_patch_disposer() -> None:
    store = make_store()
    unprotect(store)
    calls: list[Any] = []
    dispose = on_patch(store, lambda p, inv: calls.append(p))
    store.name = "n"
    dispose()
    store.name = "m"
    assert calls == [rep("/name", "n")]


# --------------------------------------------------------------------------- MST's documented examples


@model
class Node:
    id: t.IdentifierNumber
    text: str = "Hi"
    children: list[Node]


@model
class NodeMap:
    id: t.IdentifierNumber
    text: str = "Hi"
    children: dict[str, NodeMap]


@model
class NodeObject:
    id: t.IdentifierNumber
    text: str = "Hi"
    child: NodeObject | None = None


def check_patches(
    type_: Any, snapshot: dict[str, Any], fn: Callable[[Any], Any], expected: list[dict[str, Any]]
) -> None:
    """MST's testPatches helper: record, compare, replay onto a fresh instance, undo."""
    instance = type_.create(copy.deepcopy(snapshot))
    base = get_snapshot(instance)
    recorder = record_patches(instance)
    unprotect(instance)
    fn(instance)
    recorder.stop()
    assert recorder.patches == expected
    fresh = type_.create(copy.deepcopy(snapshot))
    recorder.replay(fresh)
    assert get_snapshot(fresh) == get_snapshot(instance)
    recorder.undo(instance)
    assert get_snapshot(instance) == base


def test_mst_simple_patch() -> None:
    check_patches(Node, {"id": 1}, lambda n: _setattr(n, "text", "test"), [rep("/text", "test")])


def test_mst_deep_patches_to_arrays() -> None:
    def fn(n: Node) -> None:
        n.children[0].text = "test"  # update
        n.children[0] = {"id": 2, "text": "world"}  # reconciles: just an update
        n.children[0] = {"id": 4, "text": "coffee"}  # new object
        n.children.append({"id": 3, "text": "world"})  # addition
        del n.children[0]  # removal

    check_patches(
        Node,
        {"id": 1, "children": [{"id": 2}]},
        fn,
        [
            rep("/children/0/text", "test"),
            rep("/children/0/text", "world"),
            rep("/children/0", {"id": 4, "text": "coffee", "children": []}),
            add("/children/1", {"id": 3, "text": "world", "children": []}),
            rem("/children/0"),
        ],
    )


def test_mst_deep_patches_to_arrays_with_object_instances() -> None:
    def fn(n: Node) -> None:
        n.children[0].text = "test"
        n.children[0] = Node.create({"id": 2, "text": "world"})  # instance: no reconciliation
        n.children[0] = Node.create({"id": 4, "text": "coffee"})

    check_patches(
        Node,
        {"id": 1, "children": [{"id": 2}]},
        fn,
        [
            rep("/children/0/text", "test"),
            rep("/children/0", {"id": 2, "text": "world", "children": []}),
            rep("/children/0", {"id": 4, "text": "coffee", "children": []}),
        ],
    )


def test_mst_non_flat_patches() -> None:
    check_patches(
        Node,
        {"id": 1},
        lambda n: n.children.append({"id": 2, "children": [{"id": 4}, {"id": 5, "text": "Tea"}]}),
        [
            add(
                "/children/0",
                {
                    "id": 2,
                    "text": "Hi",
                    "children": [
                        {"id": 4, "text": "Hi", "children": []},
                        {"id": 5, "text": "Tea", "children": []},
                    ],
                },
            )
        ],
    )


def test_mst_non_flat_patches_with_object_instances() -> None:
    check_patches(
        Node,
        {"id": 1},
        lambda n: n.children.append(Node.create({"id": 2, "children": [{"id": 5, "text": "Tea"}]})),
        [add("/children/0", {"id": 2, "text": "Hi", "children": [{"id": 5, "text": "Tea", "children": []}]})],
    )


def test_mst_deep_patches_to_maps() -> None:
    def fn(n: NodeMap) -> None:
        n.children["2"].text = "test"  # update
        n.children["2"] = {"id": 2, "text": "world"}  # reconciles: just an update
        n.children["4"] = NodeMap.create({"id": 4, "text": "coffee", "children": {"23": {"id": 23}}})
        n.children["3"] = {"id": 3, "text": "world", "children": {"7": {"id": 7}}}  # addition
        del n.children["2"]  # removal

    check_patches(
        NodeMap,
        {"id": 1, "children": {"2": {"id": 2}}},
        fn,
        [
            rep("/children/2/text", "test"),
            rep("/children/2/text", "world"),
            add(
                "/children/4",
                {"id": 4, "text": "coffee", "children": {"23": {"id": 23, "text": "Hi", "children": {}}}},
            ),
            add(
                "/children/3",
                {"id": 3, "text": "world", "children": {"7": {"id": 7, "text": "Hi", "children": {}}}},
            ),
            rem("/children/2"),
        ],
    )


def test_mst_deep_patches_to_objects() -> None:
    def fn(n: NodeObject) -> None:
        n.child.text = "test"  # update
        n.child = {"id": 2, "text": "world"}  # reconciles: just an update
        n.child = NodeObject.create({"id": 2, "text": "coffee", "child": {"id": 23}})  # instance: replaced
        n.child = {"id": 3, "text": "world", "child": {"id": 7}}  # other identifier: replaced
        n.child = None  # removal

    check_patches(
        NodeObject,
        {"id": 1, "child": {"id": 2}},
        fn,
        [
            rep("/child/text", "test"),
            rep("/child/text", "world"),
            rep("/child", {"id": 2, "text": "coffee", "child": {"id": 23, "text": "Hi", "child": None}}),
            rep("/child", {"id": 3, "text": "world", "child": {"id": 7, "text": "Hi", "child": None}}),
            rep("/child", None),
        ],
    )


def test_mst_escaping_in_map_keys() -> None:
    check_patches(
        Store,
        {},
        lambda s: s.tags.__setitem__("with/slash~tilde", 1),
        [add("/tags/with~1slash~0tilde", 1)],
    )


def test_mst_array_splice_all_emits_whole_replace() -> None:
    store = make_store()
    unprotect(store)
    calls = listen(store.nums)
    del store.nums[0:]
    assert patches(calls) == [rep("", [])]


def test_mst_apply_add_then_replace_on_array() -> None:
    store = make_store()
    apply_patch(store.empty, [add("/0", 1), rep("/0", 2)])
    assert list(store.empty) == [2]


def test_mst_apply_add_then_replace_on_map() -> None:
    store = make_store()
    apply_patch(store.by_id, [add("/h", I("h", "mars")), rep("/h", I("h", "universe"))])
    assert get_snapshot(store.by_id)["h"] == I("h", "universe")


# --------------------------------------------------------------------------- apply_patch


def test_apply_patch_single_dict() -> None:
    store = make_store()
    apply_patch(store, rep("/name", "patched"))
    assert store.name == "patched"


def test_apply_patch_list_in_order() -> None:
    store = make_store()
    apply_patch(store, [rep("/name", "first"), rep("/name", "second"), add("/nums/0", 0)])
    assert store.name == "second"
    assert list(store.nums) == [0, 1, 2, 3]


def test_apply_patch_works_on_protected_tree() -> None:
    store = make_store()
    apply_patch(store, rep("/items/0/text", "ok"))
    assert store.items[0].text == "ok"


def test_apply_patch_listeners_receive_resulting_patches() -> None:
    store = make_store()
    calls = listen(store)
    apply_patch(store, [rep("/name", "n"), rem("/tags/x")])
    assert patches(calls) == [rep("/name", "n"), rem("/tags/x")]
    assert inverses(calls) == [rep("/name", "s"), add("/tags/x", 1)]


def test_apply_patch_list_is_one_transaction() -> None:
    store = make_store()
    snaps: list[Any] = []
    on_snapshot(store, snaps.append)
    apply_patch(store, [rep("/name", "a"), rep("/count", 5), add("/nums/-", 4)])
    assert len(snaps) == 1


def test_apply_patch_empty_path_is_apply_snapshot() -> None:
    store = make_store()
    a = store.items[0]
    target = copy.deepcopy(INITIAL)
    target["name"] = "whole"
    target["items"] = [I("a", "A!"), I("z")]
    apply_patch(store, rep("", target))
    assert get_snapshot(store) == get_snapshot(Store.create(copy.deepcopy(target)))
    assert store.items[0] is a
    assert a.text == "A!"


def test_apply_patch_empty_path_on_child() -> None:
    store = make_store()
    apply_patch(store.items[0], rep("", I("a", "child snap")))
    assert store.items[0].text == "child snap"


def test_apply_patch_model_field_add_assigns_and_emits_replace() -> None:
    store = make_store()
    calls = listen(store)
    apply_patch(store, add("/name", "z"))
    assert store.name == "z"
    assert patches(calls) == [rep("/name", "z")]


def test_apply_patch_model_field_remove_is_patch_error() -> None:
    store = make_store()
    with pytest.raises(PatchError):
        apply_patch(store, rem("/name"))
    assert store.name == "s"


def test_apply_patch_nullable_model_field_remove_is_patch_error() -> None:
    store = make_store()
    with pytest.raises(PatchError):
        apply_patch(store, rem("/note"))


def test_apply_patch_list_add_inserts() -> None:
    store = make_store()
    apply_patch(store, add("/nums/1", 9))
    assert list(store.nums) == [1, 9, 2, 3]


def test_apply_patch_list_add_at_length_appends() -> None:
    store = make_store()
    apply_patch(store, add("/nums/3", 4))
    assert list(store.nums) == [1, 2, 3, 4]


def test_apply_patch_dash_appends_and_emits_concrete_index() -> None:
    store = make_store()
    calls = listen(store)
    apply_patch(store, add("/nums/-", 4))
    assert list(store.nums) == [1, 2, 3, 4]
    assert patches(calls) == [add("/nums/3", 4)]
    assert inverses(calls) == [rem("/nums/3")]


def test_apply_patch_dash_appends_models() -> None:
    store = make_store()
    calls = listen(store)
    apply_patch(store, add("/items/-", I("d", "D")))
    assert store.items[3].id == "d"
    assert patches(calls) == [add("/items/3", I("d", "D"))]


def test_apply_patch_add_past_end_is_patch_error() -> None:
    store = make_store()
    with pytest.raises(PatchError):
        apply_patch(store, add("/nums/5", 9))
    assert list(store.nums) == [1, 2, 3]


def test_apply_patch_list_replace_assigns() -> None:
    store = make_store()
    apply_patch(store, rep("/nums/0", 100))
    assert list(store.nums) == [100, 2, 3]


def test_apply_patch_list_remove_deletes() -> None:
    store = make_store()
    apply_patch(store, rem("/nums/0"))
    assert list(store.nums) == [2, 3]


def test_apply_patch_list_remove_out_of_range_is_patch_error() -> None:
    store = make_store()
    with pytest.raises(PatchError):
        apply_patch(store, rem("/nums/3"))
    assert list(store.nums) == [1, 2, 3]


def test_apply_patch_list_replace_same_id_reconciles() -> None:
    store = make_store()
    a = store.items[0]
    apply_patch(store, rep("/items/0", I("a", "new")))
    assert store.items[0] is a
    assert a.text == "new"


def test_apply_patch_dict_add_replace_remove() -> None:
    store = make_store()
    apply_patch(store, [add("/tags/z", 3), rep("/tags/x", 10), rem("/tags/y")])
    assert dict(store.tags) == {"x": 10, "z": 3}


def test_apply_patch_dict_add_on_existing_key_sets() -> None:
    store = make_store()
    apply_patch(store, add("/tags/x", 42))
    assert store.tags["x"] == 42


def test_apply_patch_unescapes_keys() -> None:
    store = make_store()
    apply_patch(store, add("/tags/a~1b~0c", 1))
    assert store.tags["a/b~c"] == 1


def test_apply_patch_dict_remove_missing_key_is_patch_error() -> None:
    store = make_store()
    with pytest.raises(PatchError):
        apply_patch(store, rem("/tags/missing"))


def test_apply_patch_unknown_field_names_path() -> None:
    store = make_store()
    with pytest.raises(PatchError) as info:
        apply_patch(store, rep("/nope", 1))
    assert _names_path(info.value, "/nope")


def test_apply_patch_bad_path_through_primitive() -> None:
    store = make_store()
    with pytest.raises(PatchError) as info:
        apply_patch(store, rep("/name/deeper", 1))
    assert _names_path(info.value, "/name/deeper")


def test_apply_patch_bad_list_index_path() -> None:
    store = make_store()
    with pytest.raises(PatchError) as info:
        apply_patch(store, rep("/items/9/text", "x"))
    assert _names_path(info.value, "/items/9/text")


def test_apply_patch_non_numeric_list_index() -> None:
    store = make_store()
    with pytest.raises(PatchError):
        apply_patch(store, rep("/nums/abc", 1))


def test_apply_patch_wrong_type_names_path() -> None:
    store = make_store()
    with pytest.raises(PatchError) as info:
        apply_patch(store, rep("/count", "not an int"))
    assert _names_path(info.value, "/count")
    assert store.count == 1


def test_apply_patch_wrong_type_in_list() -> None:
    store = make_store()
    with pytest.raises(PatchError):
        apply_patch(store, add("/nums/0", "x"))
    assert list(store.nums) == [1, 2, 3]


def test_apply_patch_unknown_op_is_patch_error() -> None:
    store = make_store()
    with pytest.raises(PatchError):
        apply_patch(store, {"op": "move", "from": "/name", "path": "/note"})


def test_patch_error_is_validation_error_and_mst_error() -> None:
    assert issubclass(PatchError, ValidationError)
    assert issubclass(ValidationError, MSTError)


def test_apply_patch_all_or_nothing() -> None:
    store = make_store()
    before = get_snapshot(store)
    nodes = list(store.items)
    calls = listen(store)
    with pytest.raises(PatchError):
        apply_patch(
            store,
            [rep("/name", "changed"), rem("/items/0"), add("/nums/-", 4), rep("/nope", 1)],
        )
    assert get_snapshot(store) == before
    assert calls == []
    assert all(x is y for x, y in zip(store.items, nodes, strict=True))
    assert all(is_alive(x) for x in nodes)


def test_apply_patch_all_or_nothing_on_wrong_type() -> None:
    store = make_store()
    before = get_snapshot(store)
    with pytest.raises(ValidationError):
        apply_patch(store, [rep("/name", "changed"), rep("/items/0/text", 5)])
    assert get_snapshot(store) == before


def test_apply_patch_relative_to_subtree() -> None:
    store = make_store()
    apply_patch(store.items, rep("/1/text", "via list"))
    apply_patch(store.by_id["p"], rep("/text", "via item"))
    assert store.items[1].text == "via list"
    assert store.by_id["p"].text == "via item"


# --------------------------------------------------------------------------- record_patches


def test_record_patches_collects_patches_and_inverses() -> None:
    store = make_store()
    rec = record_patches(store)
    unprotect(store)
    store.name = "n"
    store.nums.append(4)
    assert rec.patches == [rep("/name", "n"), add("/nums/3", 4)]
    assert rec.inverse_patches == [rep("/name", "s"), rem("/nums/3")]


def test_record_patches_stop_and_resume() -> None:
    store = make_store()
    rec = record_patches(store)
    unprotect(store)
    store.name = "one"
    rec.stop()
    store.name = "ignored"
    rec.resume()
    store.name = "three"
    assert rec.patches == [rep("/name", "one"), rep("/name", "three")]


def test_record_patches_replay_onto_target() -> None:
    store = make_store()
    rec = record_patches(store)

    def body(s: Store) -> None:
        s.items.append({"id": "d"})
        s.items[0].text = "A2"
        del s.tags["x"]

    store.run(body)
    target = make_store()
    rec.replay(target)
    assert get_snapshot(target) == get_snapshot(store)


def test_record_patches_undo_target() -> None:
    store = make_store()
    before = get_snapshot(store)
    rec = record_patches(store)

    def body(s: Store) -> None:
        s.nums.reverse()
        s.items.pop(0)
        s.tags["new"] = 1
        s.item = None

    store.run(body)
    rec.undo(store)
    assert get_snapshot(store) == before


def test_record_patches_on_subtree_relative_paths() -> None:
    store = make_store()
    rec = record_patches(store.items)
    unprotect(store)
    store.items[2].text = "C2"
    store.name = "unrelated"
    assert rec.patches == [rep("/2/text", "C2")]


def test_record_patches_failed_action_not_recorded() -> None:
    store = make_store()
    rec = record_patches(store)

    def body(s: Store) -> None:
        s.name = "x"
        raise ValueError("nope")

    with pytest.raises(ValueError):
        store.run(body)
    assert rec.patches == []
    assert rec.inverse_patches == []


def test_record_patches_of_apply_patch() -> None:
    store = make_store()
    rec = record_patches(store)
    apply_patch(store, add("/nums/-", 7))
    assert rec.patches == [add("/nums/3", 7)]


def test_apply_snapshot_emits_patches_that_replay() -> None:
    store = make_store()
    rec = record_patches(store)
    target = copy.deepcopy(INITIAL)
    target["items"] = [I("c", "C"), I("a", "A+"), I("new")]
    target["tags"] = {"y": 3}
    target["item"] = None
    apply_snapshot(store, target)
    fresh = make_store()
    rec.replay(fresh)
    assert get_snapshot(fresh) == get_snapshot(store)
    rec.undo(store)
    assert get_snapshot(store) == get_snapshot(make_store())


# ------------------------------------------------ the core invariant (property based)

KEYS = ["a", "b", "c/d", "e~f", ""]
IDS = ["a", "b", "c", "d", "e"]

OPS = st.one_of(
    st.tuples(st.just("name"), st.text(max_size=3)),
    st.tuples(st.just("note"), st.one_of(st.none(), st.text(max_size=3))),
    st.tuples(st.just("append"), st.integers(0, 9)),
    st.tuples(st.just("insert"), st.integers(-4, 6), st.integers(0, 9)),
    st.tuples(st.just("pop"), st.integers(0, 6)),
    st.tuples(st.just("set"), st.integers(0, 6), st.integers(0, 9)),
    st.tuples(st.just("delslice"), st.integers(0, 5), st.integers(0, 5)),
    st.tuples(st.just("setslice"), st.integers(0, 5), st.integers(0, 5), st.lists(st.integers(0, 9), max_size=3)),
    st.tuples(st.just("clear")),
    st.tuples(st.just("sort")),
    st.tuples(st.just("reverse")),
    st.tuples(st.just("dset"), st.sampled_from(KEYS), st.integers(0, 9)),
    st.tuples(st.just("ddel"), st.sampled_from(KEYS)),
    st.tuples(st.just("dupdate"), st.dictionaries(st.sampled_from(KEYS), st.integers(0, 9), max_size=3)),
    st.tuples(st.just("item_add"), st.sampled_from(IDS), st.integers(0, 3)),
    st.tuples(st.just("item_del"), st.integers(0, 4)),
    st.tuples(st.just("item_text"), st.integers(0, 4), st.text(max_size=2)),
    st.tuples(st.just("item_snap"), st.integers(0, 4), st.text(max_size=2)),
    st.tuples(st.just("item_reverse")),
    st.tuples(st.just("field_item"), st.one_of(st.none(), st.sampled_from(["i", "j"])), st.text(max_size=2)),
    st.tuples(st.just("apply_items"), st.lists(st.sampled_from(IDS), unique=True, max_size=4), st.text(max_size=1)),
    st.tuples(st.just("apply_nums"), st.lists(st.integers(0, 9), max_size=4)),
    st.tuples(st.just("apply_tags"), st.dictionaries(st.sampled_from(KEYS), st.integers(0, 9), max_size=3)),
    st.tuples(st.just("patch_nums"), st.integers(0, 9)),
)


def run_op(s: Store, op: tuple[Any, ...]) -> None:
    kind = op[0]
    nums = s.nums
    if kind == "name":
        s.name = op[1]
    elif kind == "note":
        s.note = op[1]
    elif kind == "append":
        nums.append(op[1])
    elif kind == "insert":
        nums.insert(op[1], op[2])
    elif kind == "pop" and op[1] < len(nums):
        nums.pop(op[1])
    elif kind == "set" and op[1] < len(nums):
        nums[op[1]] = op[2]
    elif kind == "delslice":
        del nums[op[1] : op[2]]
    elif kind == "setslice":
        nums[op[1] : op[2]] = op[3]
    elif kind == "clear":
        nums.clear()
    elif kind == "sort":
        nums.sort()
    elif kind == "reverse":
        nums.reverse()
    elif kind == "dset":
        s.tags[op[1]] = op[2]
    elif kind == "ddel" and op[1] in s.tags:
        del s.tags[op[1]]
    elif kind == "dupdate":
        s.tags.update(op[1])
    elif kind == "item_add" and all(it.id != op[1] for it in s.items):
        s.items.insert(min(op[2], len(s.items)), {"id": op[1], "text": op[1]})
    elif kind == "item_del" and op[1] < len(s.items):
        del s.items[op[1]]
    elif kind == "item_text" and op[1] < len(s.items):
        s.items[op[1]].text = op[2]
    elif kind == "item_snap" and op[1] < len(s.items):
        s.items[op[1]] = {"id": s.items[op[1]].id, "text": op[2]}
    elif kind == "item_reverse":
        s.items.reverse()
    elif kind == "field_item":
        s.item = None if op[1] is None else {"id": op[1], "text": op[2]}
    elif kind == "apply_items":
        apply_snapshot(s.items, [{"id": i, "text": op[2]} for i in op[1]])
    elif kind == "apply_nums":
        apply_snapshot(s.nums, op[1])
    elif kind == "apply_tags":
        apply_snapshot(s.tags, op[1])
    elif kind == "patch_nums":
        apply_patch(s.nums, {"op": "add", "path": "/-", "value": op[1]})


@settings(max_examples=120, deadline=None)
@given(ops=st.lists(OPS, max_size=12), grouped=st.booleans())
def test_replaying_recorded_patches_equals_live_snapshot(ops: list[tuple[Any, ...]], grouped: bool) -> None:
    initial = copy.deepcopy(INITIAL)
    store = Store.create(copy.deepcopy(initial))
    rec = record_patches(store)
    listened = listen(store)
    if grouped:
        store.run(lambda s: [run_op(s, op) for op in ops])
    else:
        unprotect(store)
        for op in ops:
            run_op(store, op)
    live = get_snapshot(store)
    json.dumps(rec.patches)

    replayed = Store.create(copy.deepcopy(initial))
    rec.replay(replayed)
    assert get_snapshot(replayed) == live

    replayed_by_hand = Store.create(copy.deepcopy(initial))
    apply_patch(replayed_by_hand, patches(listened))
    assert get_snapshot(replayed_by_hand) == live

    apply_patch(replayed_by_hand, list(reversed(inverses(listened))))
    assert get_snapshot(replayed_by_hand) == get_snapshot(Store.create(copy.deepcopy(initial)))

    rec.undo(store)
    assert get_snapshot(store) == get_snapshot(Store.create(copy.deepcopy(initial)))


# --------------------------------------------------------------------------- helpers


def _names_path(error: BaseException, path: str) -> bool:
    if path in str(error):
        return True
    errors = getattr(error, "errors", None) or []
    return any(path in str(p) or path.lstrip("/") in str(p) for p, _ in errors)


@model
class _Row:
    id: t.Identifier
    text: str = ""


@model
class _Rows:
    rows: list[_Row]

    @action
    def splice(self, start: int, count: int, snapshots: list[dict[str, Any]]) -> None:
        self.rows[start : start + count] = snapshots


def test_a_splice_replacing_nodes_by_equal_ones_emits_patches_that_replay_it() -> None:
    """The action replaces the nodes (the old ones die) with equal snapshots: a whole-list ``replace`` by an equal
    list would reconcile to nothing when applied, so the patches name the items and the copy changes too."""
    rows = _Rows.create({"rows": [{"id": "a", "text": "x"}, {"id": "b"}]})
    replica = _Rows.create(get_snapshot(rows))
    replica_first = replica.rows[0]
    patches: list[dict[str, Any]] = []
    on_patch(rows, lambda patch, _inverse: patches.append(patch))
    rows.splice(0, 2, [{"id": "a", "text": "x"}, {"id": "b"}])
    assert patches == [
        {"op": "remove", "path": "/rows/1"},
        {"op": "remove", "path": "/rows/0"},
        {"op": "add", "path": "/rows/0", "value": {"id": "a", "text": "x"}},
        {"op": "add", "path": "/rows/1", "value": {"id": "b", "text": ""}},
    ]
    commits: list[Any] = []
    on_commit(replica, commits.append)
    apply_patch(replica, patches)
    assert len(commits) == 1
    assert get_snapshot(replica) == get_snapshot(rows)
    assert replica.rows[0] is not replica_first  # replaced there too, as in the original
