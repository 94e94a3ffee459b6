"""Views over lists and dicts stay true (issue 16).

A cached ``@view`` that reads a list item, a slice, a dict value, a key, the length or the items of a list or
dict must be recomputed after every change of that list or dict, whichever road the change takes (a mutator
in an action, ``apply_patch``, ``apply_snapshot``, undo, a rolled-back action), and never when nothing it read
changed.

The property: random mutation sequences on lists and dicts of scalars and of models, and after each step
every view equals the same function computed on the snapshot.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mst_llm import (
    UndoManager,
    action,
    apply_patch,
    apply_snapshot,
    get_parent,
    get_snapshot,
    model,
    on_patch,
    resolve_path,
    view,
)
from mst_llm import types as t
from mst_llm.errors import ValidationError


@model
class Item:
    id: t.Identifier
    title: str = ""
    done: bool = False


def _first(values: Any) -> Any:
    return values[0] if len(values) else None


# Each view as a function of the state; the model's views run it on the node, the check runs it on the snapshot.
# Items are read by field, so one function serves nodes (attributes) and snapshots (keys).
def _field(item: Any, name: str) -> Any:
    return item[name] if isinstance(item, dict) else getattr(item, name)


VIEWS: dict[str, Callable[[Any], Any]] = {
    "first_tag": lambda s: _first(s["tags"]),
    "last_tag": lambda s: s["tags"][-1] if len(s["tags"]) else None,
    "tag_slice": lambda s: list(s["tags"][1:3]),
    "tag_count": lambda s: len(s["tags"]),
    "has_red": lambda s: "red" in s["tags"],
    "joined": lambda s: ",".join(tag for tag in s["tags"]),
    "note_x": lambda s: s["notes"].get("x"),
    "note_y": lambda s: s["notes"]["y"] if "y" in s["notes"] else None,  # noqa: SIM401 (membership, then item)
    "note_keys": lambda s: sorted(s["notes"].keys()),
    "note_values": lambda s: sorted(s["notes"].values()),
    "note_items": lambda s: sorted(s["notes"].items()),
    "note_len": lambda s: len(s["notes"]),
    "first_item_title": lambda s: _field(s["items"][0], "title") if len(s["items"]) else None,
    "item_ids": lambda s: [_field(item, "id") for item in s["items"]],
    "done_count": lambda s: sum(1 for item in s["items"] if _field(item, "done")),
    "by_key_a": lambda s: _field(s["by_key"]["a"], "title") if "a" in s["by_key"] else None,
    "by_key_titles": lambda s: sorted(_field(item, "title") for item in s["by_key"].values()),
    "grid_corner": lambda s: s["grid"][0][0] if len(s["grid"]) and len(s["grid"][0]) else None,
    "grid_sum": lambda s: sum(sum(row) for row in s["grid"]),
    "table_cell": lambda s: s["table"]["r"][0] if "r" in s["table"] and len(s["table"]["r"]) else None,
}


def _view_of(name: str) -> Any:
    fn = VIEWS[name]

    def compute(self: Any) -> Any:
        RECOMPUTED.append(name)
        return fn(_NodeAsMapping(self))

    compute.__name__ = name
    return view(compute)


class _NodeAsMapping:
    """Lets one view function read a node like a snapshot (``s["tags"]``)."""

    __slots__ = ("node",)

    def __init__(self, node: Any) -> None:
        self.node = node

    def __getitem__(self, name: str) -> Any:
        return getattr(self.node, name)


RECOMPUTED: list[str] = []


@model
class State:
    tags: list[str]
    notes: dict[str, str]
    items: list[Item]
    by_key: dict[str, Item]
    grid: list[list[int]]
    table: dict[str, list[int]]
    other: int = 0

    locals().update({name: _view_of(name) for name in VIEWS})

    @action
    def run(self, op: Callable[[Any], None]) -> None:
        op(self)

    @action
    def run_and_fail(self, op: Callable[[Any], None]) -> None:
        op(self)
        raise RuntimeError("rolled back on purpose")


WORDS = st.sampled_from(["red", "blue", "green", "x"])
KEYS = st.sampled_from(["a", "b", "x", "y"])
IDS = st.sampled_from(["a", "b", "c", "d"])


def _item(ident: str, title: str, done: bool) -> dict[str, Any]:
    return {"id": ident, "title": title, "done": done}


ITEMS = st.builds(_item, IDS, WORDS, st.booleans())


def _list_ops(field: str, values: st.SearchStrategy[Any]) -> st.SearchStrategy[Callable[[Any], None]]:
    """Every list mutator, on ``self.<field>``; out-of-range positions are clamped by the op itself."""

    def lst(s: Any) -> Any:
        return getattr(s, field)

    def setitem(i: int, v: Any) -> Callable[[Any], None]:
        def op(s: Any) -> None:
            if len(lst(s)):
                lst(s)[i % len(lst(s))] = v

        return op

    def set_slice(i: int, j: int, vs: list[Any]) -> Callable[[Any], None]:
        def op(s: Any) -> None:
            lst(s)[i:j] = vs

        return op

    def del_item(i: int) -> Callable[[Any], None]:
        def op(s: Any) -> None:
            if len(lst(s)):
                del lst(s)[i % len(lst(s))]

        return op

    def pop(i: int) -> Callable[[Any], None]:
        def op(s: Any) -> None:
            if len(lst(s)):
                lst(s).pop(i % len(lst(s)))

        return op

    def remove_first(s: Any) -> None:
        if len(lst(s)):
            lst(s).remove(lst(s)[0])

    def sort(reverse: bool) -> Callable[[Any], None]:
        def op(s: Any) -> None:
            lst(s).sort(
                key=lambda value: str(get_snapshot(value) if hasattr(value, "_mst_kind") else value), reverse=reverse
            )

        return op

    return st.one_of(
        st.builds(setitem, st.integers(0, 5), values),
        st.builds(set_slice, st.integers(0, 3), st.integers(0, 4), st.lists(values, max_size=3)),
        st.builds(lambda v: lambda s: lst(s).append(v), values),
        st.builds(lambda i, v: lambda s: lst(s).insert(i, v), st.integers(-2, 4), values),
        st.builds(lambda vs: lambda s: lst(s).extend(vs), st.lists(values, max_size=2)),
        st.builds(del_item, st.integers(0, 5)),
        st.builds(pop, st.integers(0, 5)),
        st.just(remove_first),
        st.builds(sort, st.booleans()),
        st.just(lambda s: lst(s).reverse()),
        st.just(lambda s: lst(s).clear()),
    )


def _dict_ops(field: str, values: st.SearchStrategy[Any]) -> st.SearchStrategy[Callable[[Any], None]]:
    """Every dict mutator, on ``self.<field>``."""

    def dct(s: Any) -> Any:
        return getattr(s, field)

    def delete(k: str) -> Callable[[Any], None]:
        def op(s: Any) -> None:
            if k in dct(s):
                del dct(s)[k]

        return op

    def popitem(s: Any) -> None:
        if len(dct(s)):
            dct(s).popitem()

    return st.one_of(
        st.builds(lambda k, v: lambda s: dct(s).__setitem__(k, v), KEYS, values),
        st.builds(delete, KEYS),
        st.builds(lambda k: lambda s: dct(s).pop(k, None), KEYS),
        st.just(popitem),
        st.builds(lambda k, v: lambda s: dct(s).setdefault(k, v), KEYS, values),
        st.builds(lambda kv: lambda s: dct(s).update(kv), st.dictionaries(KEYS, values, max_size=2)),
        st.just(lambda s: dct(s).clear()),
    )


def _keyed_items(key: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(_item, st.just(key), WORDS, st.booleans())


def _by_key_ops() -> st.SearchStrategy[Callable[[Any], None]]:
    # a dict of identified models: the key must match the identifier
    def put(k: str, title: str) -> Callable[[Any], None]:
        def op(s: Any) -> None:
            s.by_key[k] = _item(k, title, False)

        return op

    def retitle(k: str, title: str) -> Callable[[Any], None]:
        def op(s: Any) -> None:
            if k in s.by_key:
                s.by_key[k].title = title

        return op

    def delete(k: str) -> Callable[[Any], None]:
        def op(s: Any) -> None:
            if k in s.by_key:
                del s.by_key[k]

        return op

    return st.one_of(st.builds(put, IDS, WORDS), st.builds(retitle, IDS, WORDS), st.builds(delete, IDS))


def _items_ops() -> st.SearchStrategy[Callable[[Any], None]]:
    def toggle(i: int) -> Callable[[Any], None]:
        def op(s: Any) -> None:
            if len(s.items):
                item = s.items[i % len(s.items)]
                item.done = not item.done

        return op

    return st.one_of(_list_ops("items", ITEMS), st.builds(toggle, st.integers(0, 5)))


def _grid_ops() -> st.SearchStrategy[Callable[[Any], None]]:
    def set_cell(i: int, j: int, v: int) -> Callable[[Any], None]:
        def op(s: Any) -> None:
            if len(s.grid) and len(s.grid[i % len(s.grid)]):
                row = s.grid[i % len(s.grid)]
                row[j % len(row)] = v

        return op

    def set_table(k: str, v: int) -> Callable[[Any], None]:
        def op(s: Any) -> None:
            if k in s.table and len(s.table[k]):
                s.table[k][0] = v
            else:
                s.table[k] = [v]

        return op

    return st.one_of(
        st.builds(set_cell, st.integers(0, 3), st.integers(0, 3), st.integers(0, 9)),
        _list_ops("grid", st.lists(st.integers(0, 9), max_size=3)),
        st.builds(set_table, st.sampled_from(["r", "s"]), st.integers(0, 9)),
        st.builds(lambda v: lambda s: setattr(s, "other", v), st.integers(0, 3)),
    )


MUTATIONS = st.one_of(_list_ops("tags", WORDS), _dict_ops("notes", WORDS), _items_ops(), _by_key_ops(), _grid_ops())

# How a mutation reaches the tree: an action, an action that is rolled back, or a patch / snapshot / undo.
ROADS = st.sampled_from(["action", "rollback", "apply_patch", "apply_snapshot", "undo"])

INITIAL = {
    "tags": ["red", "blue", "x"],
    "notes": {"x": "1", "y": "2"},
    "items": [_item("a", "red", False), _item("b", "blue", True)],
    "by_key": {"c": _item("c", "green", False)},
    "grid": [[1, 2], [3]],
    "table": {"r": [4]},
}


def _check_views(state: State) -> None:
    snapshot = get_snapshot(state)
    for name, fn in VIEWS.items():
        assert getattr(state, name) == fn(snapshot), name


def _apply(state: State, undo: UndoManager, mutation: Callable[[Any], None], road: str) -> None:
    """Make the change by ``road``; a change that would leave an identifier twice in the tree is refused with
    ValidationError and leaves the tree as it was (the views are checked all the same)."""
    before = get_snapshot(state)
    try:
        _make(state, undo, mutation, road)
    except ValidationError:
        assert get_snapshot(state) == before


def _make(state: State, undo: UndoManager, mutation: Callable[[Any], None], road: str) -> None:
    if road == "action":
        state.run(mutation)
    elif road == "rollback":
        with pytest.raises(RuntimeError):
            state.run_and_fail(mutation)
    elif road == "undo":
        state.run(mutation)
        if undo.can_undo:
            undo.undo()
    else:
        # the same change made on a copy, carried over as patches or as a snapshot
        copy = State.create(get_snapshot(state))
        patches: list[dict[str, Any]] = []
        dispose = on_patch(copy, lambda patch, _inverse: patches.append(patch))
        copy.run(mutation)
        dispose()
        if road == "apply_patch":
            apply_patch(state, patches)
        else:
            apply_snapshot(state, get_snapshot(copy))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(MUTATIONS, ROADS), max_size=25))
def test_views_equal_the_same_function_of_the_snapshot(steps: list[tuple[Callable[[Any], None], str]]) -> None:
    state = State.create(INITIAL)
    undo = UndoManager(state)
    _check_views(state)  # every view is now cached
    for mutation, road in steps:
        _apply(state, undo, mutation, road)
        _check_views(state)


# --- no recomputation when nothing a view read changed -----------------------------------------------------


def _recomputed_by(state: State, change: Callable[[Any], None]) -> set[str]:
    for name in VIEWS:
        getattr(state, name)
    RECOMPUTED.clear()
    state.run(change)
    for name in VIEWS:
        getattr(state, name)
    return set(RECOMPUTED)


TAG_VIEWS = {"first_tag", "last_tag", "tag_slice", "tag_count", "has_red", "joined"}
NOTE_VIEWS = {"note_x", "note_y", "note_keys", "note_values", "note_items", "note_len"}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda s: setattr(s, "other", 5), set()),
        (lambda s: s.tags.__setitem__(0, "red"), set()),  # an equal write changes nothing
        (lambda s: s.notes.__setitem__("x", "1"), set()),
        (lambda s: s.tags.sort(key=lambda tag: 0), set()),  # the order stays
        (lambda s: s.tags.__setitem__(0, "green"), TAG_VIEWS),
        (lambda s: s.notes.__setitem__("z", "3"), NOTE_VIEWS),
        (lambda s: setattr(s.items[1], "title", "new"), set()),  # no view reads the second title
        (lambda s: setattr(s.items[0], "done", True), {"done_count"}),
        (lambda s: setattr(s.items[0], "title", "new"), {"first_item_title"}),
        (lambda s: s.grid[1].append(7), {"grid_sum", "grid_corner"}),
        (lambda s: s.table["r"].append(7), {"table_cell"}),
    ],
)
def test_a_view_recomputes_only_when_what_it_read_changed(change: Callable[[Any], None], expected: set[str]) -> None:
    state = State.create(INITIAL)
    assert _recomputed_by(state, change) == expected


def test_the_example_from_the_issue() -> None:
    @model
    class S:
        tags: list[str]
        notes: dict[str, str]

        @view
        def first(self) -> str:
            return self.tags[0]  # type: ignore[no-any-return]

        @view
        def x(self) -> str | None:
            return self.notes.get("x")  # type: ignore[no-any-return]

        @action
        def change(self) -> None:
            self.tags[0] = "blue"
            self.notes["x"] = "2"

    s = S.create({"tags": ["red"], "notes": {"x": "1"}})
    assert (s.first, s.x) == ("red", "1")
    s.change()
    assert (s.first, s.x) == ("blue", "2")


def test_a_container_reached_through_the_tree_functions_is_a_dependency() -> None:
    @model
    class Leaf:
        name: str = ""

        @view
        def siblings(self) -> int:
            return len(get_parent(self))

        @view
        def first_tag(self) -> str | None:
            tags = resolve_path(self, "/../../tags")
            return tags[0] if len(tags) else None

    @model
    class Root:
        tags: list[str]
        leaves: list[Leaf]

        @action
        def grow(self) -> None:
            self.leaves.append({"name": "b"})
            self.tags.insert(0, "new")

    root = Root.create({"tags": ["old"], "leaves": [{"name": "a"}]})
    leaf = root.leaves[0]
    assert (leaf.siblings, leaf.first_tag) == (1, "old")
    root.grow()
    assert (leaf.siblings, leaf.first_tag) == (2, "new")
