"""Garbage in, ValidationError/PatchError out (api.md sections 1, 3, 4).

Random garbage snapshots (recursive JSON-like values, and random mutations of valid snapshots) go to
``Store.create`` and ``apply_snapshot``: each is either valid, or raises ``ValidationError`` leaving the tree
exactly as it was -- never another exception. Random garbage patches (random ops, paths with bad escapes,
indices, "-", unknown fields, wrong value types) go to ``apply_patch``: each is either applied, or raises
``PatchError`` leaving the tree exactly as it was and delivering nothing -- never another exception. When
garbage is accepted, the result is a valid tree whose emitted patches replay and invert like any other change.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mst_llm import (
    PatchError,
    ValidationError,
    apply_patch,
    apply_snapshot,
    escape_json_path,
    get_snapshot,
    on_action,
    on_patch,
    on_snapshot,
)
from tests.schema import (
    TAGS,
    TODO_IDS,
    USER_IDS,
    Store,
    address_snapshots,
    assert_unchanged,
    capture,
    json_value,
    note_snapshots,
    settings_snapshots,
    store_snapshots,
    todo_snapshot,
    user_snapshot,
)

PROPS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

FIELD_NAMES = [
    "todos", "users", "selected", "status", "settings", "score",  # Store
    "id", "title", "done", "priority", "tags", "note", "owner",  # Todo
    "text", "pinned", "name", "age", "address", "emails", "city", "zip",  # Note, User, Address
    "theme", "page_size", "ratio", "extra",  # Settings
]  # fmt: skip
JUNK_KEYS = ["", "bogus", "__class__", "_snap", "~", "/", "0", "-"]

# ------------------------------------------------------------------------------------------------ listeners


class Delivered:
    def __init__(self, store: Store) -> None:
        self.patches: list[Any] = []
        self.inverses: list[Any] = []
        self.snapshots: list[Any] = []
        self.actions: list[Any] = []
        self._disposers = [
            on_patch(store, self._on_patch),
            on_snapshot(store, self.snapshots.append),
            on_action(store, self.actions.append),
        ]

    def _on_patch(self, patch: Any, inverse: Any) -> None:
        self.patches.append(patch)
        self.inverses.append(inverse)

    def stop(self) -> None:
        for dispose in self._disposers:
            dispose()

    def nothing(self) -> bool:
        return not (self.patches or self.snapshots or self.actions)


def assert_valid_tree(store: Store) -> None:
    snap = get_snapshot(store)
    assert json.loads(json.dumps(snap)) == snap
    assert get_snapshot(Store.create(snap)) == snap


# ------------------------------------------------------------------------------------------------ snapshots

garbage_key = st.one_of(st.sampled_from(FIELD_NAMES + JUNK_KEYS), st.text(max_size=3))
garbage_json = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=False),  # inf included (nan != nan would make equality checks meaningless)
        st.text(max_size=4),
        st.sampled_from(TODO_IDS + USER_IDS + TAGS + ["light", "idle", "busy"]),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(garbage_key, inner, max_size=5),
    ),
    max_leaves=25,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            out += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            out += _paths(child, (*prefix, i))
    return out


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        value = value[part]
    return value


@st.composite
def mutated_snapshots(draw: st.DrawFn) -> Any:
    """A valid Store snapshot with 1-3 random local mutations (most make it invalid, some do not)."""
    snap: Any = copy.deepcopy(draw(store_snapshots()))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(snap)))
        target = _get(snap, path)
        kind = draw(
            st.sampled_from(
                ["replace", "delete", "add_key", "wrap", "retype", "duplicate", "dangling", "rekey", "valid"]
            )
        )
        if kind == "valid":
            replacement: Any = draw(
                st.one_of(
                    todo_snapshot(draw(st.sampled_from(TODO_IDS))),
                    user_snapshot(draw(st.sampled_from(USER_IDS))),
                    address_snapshots(),
                    note_snapshots(),
                    settings_snapshots(),
                    st.lists(st.sampled_from(TAGS)),
                )
            )
        elif kind == "replace":
            replacement = draw(garbage_json)
        elif kind == "wrap":
            replacement = [target]
        elif kind == "retype":
            retypes = {str: lambda v: len(v), bool: lambda v: int(v), int: str, float: str, type(None): str}
            replacement = retypes.get(type(target), lambda v: None)(target)
        else:
            replacement = target
        if kind == "delete" and path:
            parent = _get(snap, path[:-1])
            del parent[path[-1]]
            continue
        if kind == "add_key" and isinstance(target, dict):
            target[draw(garbage_key)] = draw(garbage_json)
            continue
        if kind == "duplicate" and isinstance(target, list) and target:
            target.append(copy.deepcopy(target[draw(st.integers(0, len(target) - 1))]))
            continue
        if kind == "dangling" and isinstance(target, dict):
            for ref in ("selected", "owner"):
                if ref in target:
                    target[ref] = draw(st.sampled_from(["nope", "t9", "u9", *TODO_IDS, *USER_IDS]))
            continue
        if kind == "rekey" and isinstance(target, dict) and target:
            old = draw(st.sampled_from(list(target)))
            target[draw(st.sampled_from([*USER_IDS, "x"]))] = target.pop(old)
            continue
        if not path:
            snap = replacement
        else:
            _get(snap, path[:-1])[path[-1]] = replacement
    return snap


snapshot_garbage = st.one_of(garbage_json, mutated_snapshots(), mutated_snapshots())


@PROPS
@given(garbage=snapshot_garbage)
def test_create_from_garbage_is_valid_or_validation_error(garbage: Any) -> None:
    try:
        store = Store.create(garbage)
    except ValidationError as exc:
        assert exc.errors, "ValidationError.errors must name the bad paths"
        for path, message in exc.errors:
            assert isinstance(path, str)
            assert isinstance(message, str)
        return
    assert_valid_tree(store)


@PROPS
@given(initial=store_snapshots(), garbage=snapshot_garbage)
def test_apply_garbage_snapshot_is_valid_or_validation_error(initial: dict[str, Any], garbage: Any) -> None:
    store = Store.create(initial)
    before = capture(store)
    delivered = Delivered(store)
    try:
        apply_snapshot(store, garbage)
    except ValidationError:
        delivered.stop()
        assert delivered.nothing()
        assert_unchanged(store, before)
        if garbage is not None:
            # the same snapshot is just as invalid for create
            try:
                Store.create(garbage)
            except ValidationError:
                pass
            else:
                raise AssertionError("apply_snapshot rejected a snapshot that Store.create accepts") from None
        return
    delivered.stop()
    assert_valid_tree(store)
    assert len(delivered.snapshots) <= 1
    if garbage is not None:
        assert get_snapshot(store) == get_snapshot(Store.create(garbage))
    fresh = Store.create(initial)
    apply_patch(fresh, delivered.patches)
    assert get_snapshot(fresh) == get_snapshot(store)
    apply_patch(store, list(reversed(delivered.inverses)))
    assert get_snapshot(store) == initial


# ------------------------------------------------------------------------------------------------ patches

BAD_SEGMENTS = ["-", "-1", "01", "1.5", " 1", "99", "1e0", "~", "~2", "~a", "bogus", "", "\u00e9", "0x1"]


def _pointer(parts: tuple[Any, ...]) -> str:
    return "".join("/" + escape_json_path(str(part)) for part in parts)


@st.composite
def garbage_paths(draw: st.DrawFn, snapshot: dict[str, Any]) -> str:
    kind = draw(st.sampled_from(["real", "real", "real_plus", "real_bad_tail", "random", "raw", "root"]))
    real = draw(st.sampled_from(_paths(snapshot)))
    if kind == "root":
        return draw(st.sampled_from(["", "/", "//", "#", "#/todos"]))
    if kind == "real":
        return _pointer(real)
    if kind == "real_plus":  # one step below a real path: "-", an index, a field
        extra = draw(st.sampled_from(["-", "0", "1", "2", *FIELD_NAMES[:8]]))
        return _pointer(real) + "/" + extra
    if kind == "real_bad_tail":
        return _pointer(real) + "/" + draw(st.sampled_from(BAD_SEGMENTS))
    if kind == "raw":  # unescaped keys, missing leading slash, stray escapes
        raw = "/".join(str(part) for part in real)
        return draw(st.sampled_from([raw, "/" + raw.replace("~", "~~"), "/" + raw + "/", raw + "~"]))
    segments = st.one_of(
        st.sampled_from(FIELD_NAMES + BAD_SEGMENTS + ["0", "1", "u1", "u~14", "u~15", "t~17", "t~08"]),
        st.text(max_size=3),
    )
    return "".join("/" + segment for segment in draw(st.lists(segments, max_size=4)))


@st.composite
def garbage_patch(draw: st.DrawFn, snapshot: dict[str, Any]) -> Any:
    patch: dict[str, Any] = {
        "op": draw(
            st.one_of(
                st.sampled_from(["add", "remove", "replace", "add", "replace", "remove"]),
                st.sampled_from(["move", "copy", "test", "", "ADD", "Replace"]),
                st.sampled_from([None, 1]),
            )
        ),
        "path": draw(st.one_of(garbage_paths(snapshot), garbage_paths(snapshot), st.sampled_from([None, 3]))),
    }
    if draw(st.integers(0, 9)):  # usually with a value, which is usually plausible
        patch["value"] = draw(
            st.one_of(
                json_value,
                garbage_json,
                st.sampled_from([0, 1, -1, 2.5, True, "", "x", None, "light", "busy", [], {}]),
                st.sampled_from([*TODO_IDS, *USER_IDS, *TAGS]),
                todo_snapshot(draw(st.sampled_from(TODO_IDS))),
                user_snapshot(draw(st.sampled_from(USER_IDS))),
                address_snapshots(),
                note_snapshots(),
                settings_snapshots(),
                store_snapshots(),
            )
        )
    if not draw(st.integers(0, 15)):
        patch["from"] = "/todos/0"
    if not draw(st.integers(0, 20)):
        del patch["op"]
    return patch


@PROPS
@given(initial=store_snapshots(), data=st.data())
def test_apply_garbage_patch_is_applied_or_patch_error(initial: dict[str, Any], data: st.DataObject) -> None:
    store = Store.create(initial)
    patches = data.draw(
        st.one_of(garbage_patch(initial), st.lists(garbage_patch(initial), min_size=0, max_size=3)),
        label="patches",
    )
    before = capture(store)
    delivered = Delivered(store)
    try:
        apply_patch(store, patches)
    except PatchError:
        delivered.stop()
        assert delivered.nothing()
        assert_unchanged(store, before)
        return
    delivered.stop()
    assert_valid_tree(store)
    after = get_snapshot(store)
    # accepted patches are ordinary changes: delivered patches replay, inverses undo
    fresh = Store.create(initial)
    apply_patch(fresh, delivered.patches)
    assert get_snapshot(fresh) == after
    apply_patch(store, list(reversed(delivered.inverses)))
    assert get_snapshot(store) == initial
    # and re-applying the input itself on a fresh tree gives the same result
    again = Store.create(initial)
    apply_patch(again, patches)
    assert get_snapshot(again) == after


@PROPS
@given(initial=store_snapshots(), data=st.data())
def test_patch_sequence_with_one_bad_patch_changes_nothing(initial: dict[str, Any], data: st.DataObject) -> None:
    """All or nothing: valid patches followed by an invalid one leave the tree untouched."""
    store = Store.create(initial)
    good = data.draw(
        st.lists(
            st.one_of(
                st.builds(lambda s: {"op": "replace", "path": "/status", "value": s}, st.sampled_from(["busy"])),
                st.builds(lambda n: {"op": "replace", "path": "/settings/page_size", "value": n}, st.integers()),
                st.just({"op": "add", "path": "/todos/-", "value": {"id": "zz", "title": "new"}}),
                st.just({"op": "replace", "path": "/todos", "value": []}),
                st.just({"op": "replace", "path": "/users", "value": {}}),
            ),
            min_size=1,
            max_size=3,
        ),
        label="good",
    )
    bad = data.draw(
        st.sampled_from(
            [
                {"op": "remove", "path": "/status"},
                {"op": "replace", "path": "/status", "value": "bogus"},
                {"op": "replace", "path": "/nope", "value": 1},
                {"op": "add", "path": "/todos/99", "value": {"id": "zy"}},
                {"op": "replace", "path": "/settings/page_size", "value": "x"},
                {"op": "remove", "path": "/users/nobody"},
                {"op": "move", "path": "/todos/0", "from": "/todos/1"},
                {"op": "replace", "path": "/todos/0/tags/~2", "value": "x"},
            ]
        ),
        label="bad",
    )
    before = capture(store)
    delivered = Delivered(store)
    try:
        apply_patch(store, [*good, bad])
    except PatchError:
        pass
    else:
        raise AssertionError("an invalid patch was accepted")
    finally:
        delivered.stop()
    assert delivered.nothing()
    assert_unchanged(store, before)
