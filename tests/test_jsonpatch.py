"""The plain-value patch applier of session logs (``core.jsonpatch``) against RFC 6902, and against the tree.

Both flavours (in place and persistent) must give the same document, refuse the same patches with a
PatchError, and leave the document as it was when they refuse.
"""

from __future__ import annotations

import contextlib
import copy
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mst_llm import PatchError, SessionLog, apply_patch, get_snapshot, on_patch, record_session
from mst_llm.core.base.frozen import FrozenDict, FrozenList, freeze
from mst_llm.core.ops.jsonpatch import apply_in_place, apply_persistent, resolve_pointer
from tests.schema import EXPECTED_ERRORS, Op, Store, op_sequences, run_op, store_snapshots
from tests.test_properties import PROPS


def apply_both(doc: Any, patches: list[dict[str, Any]]) -> Any:
    """``patches`` applied by both flavours, which must agree; the persistent one must not touch its input."""
    in_place = copy.deepcopy(doc)
    for patch in patches:
        in_place = apply_in_place(in_place, patch)
    frozen = before = freeze(copy.deepcopy(doc))
    for patch in patches:
        frozen = apply_persistent(frozen, patch)
    assert frozen == in_place
    assert before == doc
    return in_place


def refused_by_both(doc: Any, patch: dict[str, Any], match: str = "") -> None:
    """Both flavours raise a PatchError for ``patch`` and leave ``doc`` as it was."""
    mutable = copy.deepcopy(doc)
    with pytest.raises(PatchError, match=match):
        apply_in_place(mutable, patch)
    assert mutable == doc
    with pytest.raises(PatchError, match=match):
        apply_persistent(freeze(doc), patch)


# --------------------------------------------------------------------------- RFC 6902 appendix A

APPENDIX_A = [
    ("A.1", {"foo": "bar"}, [{"op": "add", "path": "/baz", "value": "qux"}], {"baz": "qux", "foo": "bar"}),
    (
        "A.2",
        {"foo": ["bar", "baz"]},
        [{"op": "add", "path": "/foo/1", "value": "qux"}],
        {"foo": ["bar", "qux", "baz"]},
    ),
    ("A.3", {"baz": "qux", "foo": "bar"}, [{"op": "remove", "path": "/baz"}], {"foo": "bar"}),
    ("A.4", {"foo": ["bar", "qux", "baz"]}, [{"op": "remove", "path": "/foo/1"}], {"foo": ["bar", "baz"]}),
    (
        "A.5",
        {"baz": "qux", "foo": "bar"},
        [{"op": "replace", "path": "/baz", "value": "boo"}],
        {"baz": "boo", "foo": "bar"},
    ),
    (
        "A.6",
        {"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
        [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
        {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}},
    ),
    (
        "A.7",
        {"foo": ["all", "grass", "cows", "eat"]},
        [{"op": "move", "from": "/foo/1", "path": "/foo/3"}],
        {"foo": ["all", "cows", "eat", "grass"]},
    ),
    (
        "A.8",
        {"baz": "qux", "foo": ["a", 2, "c"]},
        [{"op": "test", "path": "/baz", "value": "qux"}, {"op": "test", "path": "/foo/1", "value": 2}],
        {"baz": "qux", "foo": ["a", 2, "c"]},
    ),
    (
        "A.10",
        {"foo": "bar"},
        [{"op": "add", "path": "/child", "value": {"grandchild": {}}}],
        {"foo": "bar", "child": {"grandchild": {}}},
    ),
    ("A.11", {"foo": "bar"}, [{"op": "add", "path": "/baz", "value": "qux", "xyz": 123}], {"foo": "bar", "baz": "qux"}),
    ("A.14", {"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": 10}], {"/": 9, "~1": 10}),
    (
        "A.16",
        {"foo": ["bar"]},
        [{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}],
        {"foo": ["bar", ["abc", "def"]]},
    ),
]


@pytest.mark.parametrize(
    ("doc", "patches", "expected"), [case[1:] for case in APPENDIX_A], ids=[c[0] for c in APPENDIX_A]
)
def test_rfc_6902_appendix_a(doc: Any, patches: list[dict[str, Any]], expected: Any) -> None:
    assert apply_both(doc, patches) == expected


@pytest.mark.parametrize(
    ("doc", "patch", "match"),
    [
        ({"baz": "qux"}, {"op": "test", "path": "/baz", "value": "bar"}, "test failed"),
        ({"foo": "bar"}, {"op": "add", "path": "/baz/bat", "value": "qux"}, "no key 'baz'"),
        ({"/": 9, "~1": 10}, {"op": "test", "path": "/~01", "value": "10"}, "test failed"),
    ],
    ids=["A.9", "A.12", "A.15"],
)
def test_rfc_6902_appendix_a_errors(doc: Any, patch: dict[str, Any], match: str) -> None:
    # A.13 (a duplicate "op" member) cannot be written as a Python dict
    refused_by_both(doc, patch, match)


# --------------------------------------------------------------------------- each op of RFC 6902 section 4

DOC: dict[str, Any] = {"a": {"b": 1, "c": [1, 2, 3]}, "l": [10, 11, 12], "t": True, "n": None}


def test_add_inserts_into_lists_sets_members_and_replaces_the_root() -> None:
    assert apply_both(DOC, [{"op": "add", "path": "/l/0", "value": 9}])["l"] == [9, 10, 11, 12]
    assert apply_both(DOC, [{"op": "add", "path": "/l/3", "value": 13}])["l"] == [10, 11, 12, 13]
    assert apply_both(DOC, [{"op": "add", "path": "/a/b", "value": 2}])["a"]["b"] == 2  # an existing member
    assert apply_both(DOC, [{"op": "add", "path": "", "value": [1]}]) == [1]
    refused_by_both(DOC, {"op": "add", "path": "/l/4", "value": 0}, "out of range")
    refused_by_both(DOC, {"op": "add", "path": "/missing/x", "value": 0}, "no key 'missing'")
    refused_by_both(DOC, {"op": "add", "path": "/t/x", "value": 0}, "bool")


def test_remove_needs_the_target() -> None:
    assert apply_both(DOC, [{"op": "remove", "path": "/l/1"}])["l"] == [10, 12]
    assert "n" not in apply_both(DOC, [{"op": "remove", "path": "/n"}])
    refused_by_both(DOC, {"op": "remove", "path": "/l/3"}, "out of range")
    refused_by_both(DOC, {"op": "remove", "path": "/nope"}, "no key 'nope' to remove")
    refused_by_both(DOC, {"op": "remove", "path": ""}, "whole document")


def test_replace_needs_the_target() -> None:
    assert apply_both(DOC, [{"op": "replace", "path": "/l/2", "value": 0}])["l"] == [10, 11, 0]
    assert apply_both(DOC, [{"op": "replace", "path": "/a/c", "value": "x"}])["a"] == {"b": 1, "c": "x"}
    assert apply_both(DOC, [{"op": "replace", "path": "", "value": 5}]) == 5
    refused_by_both(DOC, {"op": "replace", "path": "/l/3", "value": 0}, "out of range")
    refused_by_both(DOC, {"op": "replace", "path": "/nope", "value": 0}, "no key 'nope' to replace")


def test_move_is_remove_then_add() -> None:
    assert apply_both(DOC, [{"op": "move", "from": "/l/0", "path": "/l/2"}])["l"] == [11, 12, 10]
    moved = apply_both(DOC, [{"op": "move", "from": "/a/c", "path": "/l/0"}])
    assert moved["a"] == {"b": 1} and moved["l"] == [[1, 2, 3], 10, 11, 12]
    assert apply_both(DOC, [{"op": "move", "from": "/a", "path": "/a"}]) == DOC
    assert apply_both(DOC, [{"op": "move", "from": "/a", "path": ""}]) == DOC["a"]
    # the path is read after the removal: /l/3 is past the end of a list of 2
    refused_by_both(DOC, {"op": "move", "from": "/l/0", "path": "/l/3"}, "out of range")
    refused_by_both(DOC, {"op": "move", "from": "/a", "path": "/a/c/0"}, "into itself")
    refused_by_both(DOC, {"op": "move", "from": "/nope", "path": "/x"}, "no key 'nope'")
    # the removal half succeeds, the add half fails: the caller's document is untouched all the same
    refused_by_both(DOC, {"op": "move", "from": "/a/b", "path": "/missing/x"}, "no key 'missing'")


def test_copy_is_a_deep_copy() -> None:
    doc = apply_both(DOC, [{"op": "copy", "from": "/a", "path": "/l/-"}])
    assert doc["l"][3] == DOC["a"] and doc["a"] == DOC["a"]
    doc = apply_in_place(doc, {"op": "add", "path": "/l/3/c/-", "value": 4})
    assert doc["a"]["c"] == [1, 2, 3]  # the original is not shared with the copy
    refused_by_both(DOC, {"op": "copy", "from": "/a/x", "path": "/y"}, "no key 'x'")


def test_test_compares_json_values_strictly_and_changes_nothing() -> None:
    ok = [
        {"op": "test", "path": "/a", "value": {"c": [1, 2, 3], "b": 1}},
        {"op": "test", "path": "/a/b", "value": 1.0},  # numbers compare by value
        {"op": "test", "path": "/t", "value": True},
        {"op": "test", "path": "/n", "value": None},
        {"op": "test", "path": "", "value": DOC},
    ]
    assert apply_both(DOC, ok) == DOC
    for path, value in [("/t", 1), ("/a/b", True), ("/a/c", [1, 2]), ("/a", {"b": 1}), ("/n", 0), ("/l", {})]:
        refused_by_both(DOC, {"op": "test", "path": path, "value": value}, "test failed")
    refused_by_both(DOC, {"op": "test", "path": "/nope", "value": None}, "no key 'nope'")


def test_a_failing_test_op_stops_a_log_entry_with_the_document_unchanged() -> None:
    doc = copy.deepcopy(DOC)
    with pytest.raises(PatchError, match="test failed"):
        apply_in_place(doc, {"op": "test", "path": "/l/0", "value": 11})
    assert doc == DOC  # a test op on a list element used to delete it


@pytest.mark.parametrize(
    ("patch", "match"),
    [
        ({"op": "bogus", "path": "/a"}, "unknown patch op 'bogus'"),
        ({"op": "ADD", "path": "/a", "value": 1}, "unknown patch op 'ADD'"),
        ({"path": "/a", "value": 1}, "unknown patch op None"),
        ({"op": "add", "path": "/x"}, "needs a value"),
        ({"op": "replace", "path": "/a"}, "needs a value"),
        ({"op": "test", "path": "/a"}, "needs a value"),
        ({"op": "move", "path": "/x"}, "needs a 'from'"),
        ({"op": "copy", "path": "/x", "from": 3}, "needs a 'from'"),
        ({"op": "add", "path": 3, "value": 1}, "path must be a string"),
        ({"op": "add", "path": "a", "value": 1}, "must be empty or start with '/'"),
        ({"op": "move", "path": "/x", "from": "a"}, "must be empty or start with '/'"),
    ],
)
def test_malformed_patches_are_refused(patch: dict[str, Any], match: str) -> None:
    refused_by_both(DOC, patch, match)


def test_in_place_changes_neither_the_patch_nor_frozen_containers() -> None:
    patch = {"op": "add", "path": "/x", "value": {"tags": []}}
    doc = apply_in_place({"f": freeze({"k": [1]})}, patch)
    doc = apply_in_place(doc, {"op": "add", "path": "/x/tags/-", "value": "a"})
    doc = apply_in_place(doc, {"op": "add", "path": "/f/k/-", "value": 2})
    assert doc == {"x": {"tags": ["a"]}, "f": {"k": [1, 2]}}
    assert patch["value"] == {"tags": []}


def test_persistent_shares_what_it_did_not_touch() -> None:
    doc = freeze(copy.deepcopy(DOC))
    new = apply_persistent(doc, {"op": "move", "from": "/l/0", "path": "/l/-"})
    assert isinstance(new, FrozenDict) and isinstance(new["l"], FrozenList)
    assert new["a"] is doc["a"] and new["l"] is not doc["l"] and doc["l"] == [10, 11, 12]


def test_resolve_pointer_rfc_6901_section_5() -> None:
    doc = {"foo": ["bar", "baz"], "": 0, "a/b": 1, "c%d": 2, "e^f": 3, "g|h": 4, "i\\j": 5, 'k"l': 6, " ": 7, "m~n": 8}
    expected = {"": doc, "/foo": ["bar", "baz"], "/foo/0": "bar", "/": 0, "/a~1b": 1, "/c%d": 2, "/e^f": 3}
    expected |= {"/g|h": 4, "/i\\j": 5, '/k"l': 6, "/ ": 7, "/m~0n": 8}
    assert {path: resolve_pointer(doc, path) for path in expected} == expected
    for missing in ("/foo/2", "/foo/01", "/nope", "/foo/0/x"):
        with pytest.raises(KeyError):
            resolve_pointer(doc, missing)


# --------------------------------------------------------------------------- against the tree


@PROPS
@given(initial=store_snapshots(), seq=op_sequences())
def test_recorded_patches_give_the_same_state_on_plain_values_as_on_a_tree(
    initial: dict[str, Any], seq: list[Op]
) -> None:
    store = Store.create(initial)
    recorded: list[tuple[dict[str, Any], dict[str, Any]]] = []
    on_patch(store, lambda patch, inverse: recorded.append((patch, inverse)))
    for op in seq:
        with contextlib.suppress(*EXPECTED_ERRORS):
            run_op(store, op)
    live = get_snapshot(store)
    fresh = Store.create(initial)
    apply_patch(fresh, [patch for patch, _ in recorded])
    assert apply_both(initial, [patch for patch, _ in recorded]) == get_snapshot(fresh) == live
    assert apply_both(live, [inverse for _, inverse in reversed(recorded)]) == initial


@PROPS
@given(initial=store_snapshots(), seq=op_sequences(), checkpoint_every=st.sampled_from([None, 1, 3]))
def test_session_log_states_agree_with_replay(
    initial: dict[str, Any], seq: list[Op], checkpoint_every: int | None
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "log.jsonl"
        store = Store.create(initial)
        live = [get_snapshot(store)]
        with record_session(store, path, checkpoint_every=checkpoint_every):
            for op in seq:
                with contextlib.suppress(*EXPECTED_ERRORS):
                    run_op(store, op)
                if get_snapshot(store) is not live[-1]:
                    live.append(get_snapshot(store))
        log = SessionLog.open(path)
        assert [log.snapshot_at(seq) for seq in range(len(log) + 1)] == live
        assert [state for _, state in log.states()] == live[1:]
        replayed = Store.create(initial)
        log.replay(replayed)
        assert get_snapshot(replayed) == live[-1]
