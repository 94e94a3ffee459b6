"""RFC 6901 JSON pointers: one parser and one list-index rule, so every walker agrees on what a pointer names.

The three walkers are ``apply_patch`` (trees), ``resolve_path``/``try_resolve`` (trees) and the plain-value
patch applier of session logs (``core.jsonpatch``).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mst_llm import (
    ModelNode,
    PatchError,
    PathNotFoundError,
    apply_patch,
    escape_json_path,
    get_snapshot,
    json_patch_path,
    model,
    resolve_path,
    try_resolve,
    unescape_json_path,
    unprotect,
)
from mst_llm.core.base.frozen import freeze
from mst_llm.core.base.pointer import list_index, split_json_path
from mst_llm.core.ops.jsonpatch import apply_in_place, apply_persistent, resolve_pointer


@model
class Box(ModelNode):
    nums: list[int]
    tags: dict[str, int]


INITIAL: dict[str, Any] = {"nums": [10, 11, 12], "tags": {"x": 1, "~1": 2, "/": 3}}

# RFC 6901 section 4: no leading zeros, ASCII digits only; "-" only where the caller allows the end
NOT_INDEXES = ["01", "00", "-0", "+1", "-1", " 1", "1 ", "1.0", "1e0", "0x1", "", "\u0661", "\u00b2", "a"]


def box() -> Box:
    store = Box.create(copy.deepcopy(INITIAL))
    unprotect(store)
    return store


# --------------------------------------------------------------------------- parsing and escaping


def test_split_unescapes_1_before_0_so_tilde_01_is_tilde_1() -> None:
    assert split_json_path("") == []
    assert split_json_path("/") == [""]
    assert split_json_path("/a~1b/c~0d//~01/~10") == ["a/b", "c~d", "", "~1", "/0"]


@pytest.mark.parametrize("bad", ["a", "#/a", "nums/0", "/a~2", "/a~", "/~a", "/x/~"])
def test_split_rejects_what_is_not_a_pointer(bad: str) -> None:
    with pytest.raises(PatchError):
        split_json_path(bad)


@given(st.lists(st.text(alphabet="ab~/01", max_size=5), max_size=4))
def test_join_then_split_round_trips(parts: list[str]) -> None:
    assert split_json_path(json_patch_path(parts)) == parts
    assert [unescape_json_path(escape_json_path(part)) for part in parts] == parts


def test_list_index_rule() -> None:
    assert [list_index(part, 11) for part in ("0", "1", "10")] == [0, 1, 10]
    assert list_index("11", 11, end=True) == 11
    assert list_index("-", 11, end=True) == 11
    for part, size, end in [("11", 11, False), ("12", 11, True), ("-", 11, False), ("0", 0, False)]:
        with pytest.raises(PathNotFoundError):
            list_index(part, size, end=end)


@pytest.mark.parametrize("part", NOT_INDEXES)
def test_list_index_refuses_non_rfc_6901_indexes(part: str) -> None:
    with pytest.raises(PathNotFoundError, match="not a list index"):
        list_index(part, 20, end=True)


# --------------------------------------------------------------------------- the three walkers agree


@pytest.mark.parametrize("part", NOT_INDEXES)
def test_every_walker_refuses_a_non_rfc_index(part: str) -> None:
    path = "/nums/" + part
    store = box()
    with pytest.raises(PathNotFoundError):
        resolve_path(store, path)
    assert try_resolve(store, path) is None
    for op in ("add", "replace", "remove"):
        with pytest.raises(PatchError):
            apply_patch(store, {"op": op, "path": path, "value": 1})
        for apply in (apply_in_place, apply_persistent):
            doc = freeze(INITIAL) if apply is apply_persistent else copy.deepcopy(INITIAL)
            with pytest.raises(PatchError):
                apply(doc, {"op": op, "path": path, "value": 1})
            assert doc == INITIAL
    with pytest.raises(KeyError):
        resolve_pointer(INITIAL, path)
    assert get_snapshot(store) == INITIAL


def test_leading_zero_index_names_nothing_but_zero_does() -> None:
    store = box()
    assert resolve_path(store, "/nums/0") == 10
    assert resolve_pointer(INITIAL, "/nums/0") == 10
    with pytest.raises(PathNotFoundError, match="'01'"):
        resolve_path(store, "/nums/01")


def test_dash_is_the_end_only_for_add() -> None:
    store = box()
    apply_patch(store, {"op": "add", "path": "/nums/-", "value": 13})
    assert list(store.nums) == [10, 11, 12, 13]
    doc = apply_in_place(copy.deepcopy(INITIAL), {"op": "add", "path": "/nums/-", "value": 13})
    assert doc["nums"] == [10, 11, 12, 13]
    for op in ("replace", "remove"):
        with pytest.raises(PatchError):
            apply_patch(store, {"op": op, "path": "/nums/-", "value": 0})
        with pytest.raises(PatchError):
            apply_in_place(copy.deepcopy(INITIAL), {"op": op, "path": "/nums/-", "value": 0})
    with pytest.raises(PathNotFoundError):
        resolve_path(store, "/nums/-")
    with pytest.raises(KeyError):
        resolve_pointer(INITIAL, "/nums/-")
    # in an object "-" is an ordinary key
    apply_patch(store, {"op": "add", "path": "/tags/-", "value": 4})
    assert resolve_path(store, "/tags/-") == 4
    assert apply_in_place({"a": {}}, {"op": "add", "path": "/a/-", "value": 4}) == {"a": {"-": 4}}


def test_escaped_keys_name_the_same_entry_everywhere() -> None:
    store = box()
    assert resolve_path(store, "/tags/~01") == 2
    assert resolve_path(store, "/tags/~1") == 3
    assert resolve_pointer(INITIAL, "/tags/~01") == 2
    apply_patch(store, {"op": "replace", "path": "/tags/~01", "value": 20})
    doc = apply_in_place(copy.deepcopy(INITIAL), {"op": "replace", "path": "/tags/~01", "value": 20})
    assert get_snapshot(store)["tags"] == doc["tags"] == {"x": 1, "~1": 20, "/": 3}


def test_bad_escapes_are_refused_by_every_walker() -> None:
    store = box()
    with pytest.raises(PatchError):
        resolve_path(store, "/tags/~2")
    with pytest.raises(PatchError):
        apply_patch(store, {"op": "add", "path": "/tags/~2", "value": 1})
    with pytest.raises(PatchError):
        apply_in_place(copy.deepcopy(INITIAL), {"op": "add", "path": "/tags/~2", "value": 1})
    assert get_snapshot(store) == INITIAL


def test_resolve_path_still_goes_up_with_dot_dot() -> None:
    store = box()
    assert resolve_path(store.nums, "/../tags/x") == 1
    with pytest.raises(PathNotFoundError, match="no parent"):
        resolve_path(store, "/..")


def test_replace_or_remove_of_a_missing_key_is_a_patch_error_on_trees_too() -> None:
    store = box()
    for patch in ({"op": "replace", "path": "/tags/nope", "value": 1}, {"op": "remove", "path": "/tags/nope"}):
        with pytest.raises(PatchError, match="no key 'nope'"):
            apply_patch(store, patch)
    assert get_snapshot(store) == INITIAL


@pytest.mark.parametrize("op", ["test", "move", "copy"])
def test_apply_patch_on_a_tree_refuses_test_move_copy_by_name(op: str) -> None:
    store = box()
    with pytest.raises(PatchError, match=f"'{op}' is not applied to trees"):
        apply_patch(store, {"op": op, "path": "/nums/0", "from": "/nums/1", "value": 10})
    assert get_snapshot(store) == INITIAL


def test_apply_patch_names_an_unknown_op() -> None:
    with pytest.raises(PatchError, match="'bogus' is unknown"):
        apply_patch(box(), {"op": "bogus", "path": "/nums/0", "value": 1})
