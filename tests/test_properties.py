"""Property tests of the core invariants (api.md sections 2-4) on the shared schema in tests/schema.py.

Random initial snapshots and random action sequences (some actions fail on purpose), then:

(a) the patches recorded at the root (on_patch and record_patches), replayed onto
    ``Store.create(initial)``, reproduce the live snapshot;
(b) the inverse patches applied in reverse order restore the initial snapshot;
(c) every node whose subtree received no patch keeps its snapshot object (``is``), and a node's on_snapshot
    fires exactly when its snapshot object changed;
(d) exactly one root on_snapshot call per action that changed the state, none otherwise; a failing action
    leaves the tree exactly as it was (equal snapshot, same node objects, all alive) and delivers nothing.

Plus: apply_snapshot of a random valid snapshot gives back that snapshot (reconciling nodes by identifier),
omitted optional fields reset to defaults, ``Model.create(get_snapshot(x))`` and ``clone`` round-trip, and
recorded actions replay onto a fresh tree.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mst_llm import (
    apply_patch,
    apply_snapshot,
    clone,
    get_path,
    get_snapshot,
    is_alive,
    on_action,
    on_patch,
    on_snapshot,
    record_actions,
    record_patches,
)
from tests.schema import (
    EXPECTED_ERRORS,
    Op,
    Settings,
    Store,
    Todo,
    User,
    iter_nodes,
    op_sequences,
    run_op,
    store_snapshots,
)

PROPS = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def run_quietly(store: Store, op: Op) -> BaseException | None:
    try:
        run_op(store, op)
    except EXPECTED_ERRORS as exc:
        return exc
    return None


def check_patch_shape(patch: dict[str, Any]) -> None:
    assert isinstance(patch, dict), patch
    assert patch["op"] in ("add", "remove", "replace"), patch
    assert isinstance(patch["path"], str), patch
    assert patch["path"] == "" or patch["path"].startswith("/"), patch
    if patch["op"] == "remove":
        assert "value" not in patch, patch
    else:
        assert "value" in patch, patch
    assert json.loads(json.dumps(patch)) == patch


class RootLog:
    """Patches (with inverses) and snapshots delivered to root listeners."""

    def __init__(self, store: Store) -> None:
        self.patches: list[dict[str, Any]] = []
        self.inverses: list[dict[str, Any]] = []
        self.snapshots: list[Any] = []
        self._disposers = [
            on_patch(store, self._on_patch),
            on_snapshot(store, self.snapshots.append),
        ]

    def _on_patch(self, patch: dict[str, Any], inverse: dict[str, Any]) -> None:
        self.patches.append(patch)
        self.inverses.append(inverse)

    def stop(self) -> None:
        for dispose in self._disposers:
            dispose()


# ------------------------------------------------------------------------------------------------ (a), (b)


@PROPS
@given(initial=store_snapshots(), seq=op_sequences())
def test_replaying_recorded_patches_reproduces_snapshot(initial: dict[str, Any], seq: list[Op]) -> None:
    store = Store.create(initial)
    assert get_snapshot(store) == initial
    recorder = record_patches(store)
    log = RootLog(store)
    for op in seq:
        run_quietly(store, op)
    recorder.stop()
    log.stop()
    live = get_snapshot(store)

    for patch, inverse in zip(log.patches, log.inverses, strict=True):
        check_patch_shape(patch)
        check_patch_shape(inverse)
    assert list(recorder.patches) == log.patches
    assert list(recorder.inverse_patches) == log.inverses

    fresh = Store.create(initial)
    apply_patch(fresh, log.patches)
    assert get_snapshot(fresh) == live

    replayed = Store.create(initial)
    recorder.replay(replayed)
    assert get_snapshot(replayed) == live

    # the patch log itself is JSON: replaying its JSON round trip gives the same result
    from_json = Store.create(initial)
    apply_patch(from_json, json.loads(json.dumps(log.patches)))
    assert get_snapshot(from_json) == live


@PROPS
@given(initial=store_snapshots(), seq=op_sequences())
def test_inverse_patches_in_reverse_restore_initial(initial: dict[str, Any], seq: list[Op]) -> None:
    store = Store.create(initial)
    log = RootLog(store)
    for op in seq:
        run_quietly(store, op)
    log.stop()
    final = get_snapshot(store)

    apply_patch(store, list(reversed(log.inverses)))
    assert get_snapshot(store) == initial

    # and forward again
    apply_patch(store, log.patches)
    assert get_snapshot(store) == final


@PROPS
@given(initial=store_snapshots(), seq=op_sequences())
def test_inverse_patches_of_each_action_undo_it(initial: dict[str, Any], seq: list[Op]) -> None:
    store = Store.create(initial)
    for op in seq:
        before = get_snapshot(store)
        log = RootLog(store)
        failed = run_quietly(store, op)
        log.stop()
        if failed is not None:
            assert log.patches == []
            continue
        after = get_snapshot(store)
        copy = Store.create(after)
        apply_patch(copy, list(reversed(log.inverses)))
        assert get_snapshot(copy) == before, op
        redo = Store.create(before)
        apply_patch(redo, log.patches)
        assert get_snapshot(redo) == after, op


# ------------------------------------------------------------------------------------------------ (c), (d)


def checked_step(store: Store, op: Op) -> BaseException | None:
    """Runs one action with listeners on every node and checks sharing, listeners and atomicity."""
    nodes_before = iter_nodes(store)
    for path, node in nodes_before:
        assert get_path(node) == path
    root_before = get_snapshot(store)
    snaps_before = {id(node): get_snapshot(node) for _, node in nodes_before}
    patches: dict[int, list[Any]] = {}
    snap_calls: dict[int, list[Any]] = {}
    disposers = []
    for _, node in nodes_before:
        p: list[Any] = []
        s: list[Any] = []
        patches[id(node)] = p
        snap_calls[id(node)] = s
        disposers.append(on_patch(node, lambda patch, inverse, p=p: p.append(patch)))
        disposers.append(on_snapshot(node, s.append))
    calls: list[dict[str, Any]] = []
    disposers.append(on_action(store, calls.append))
    try:
        error = run_quietly(store, op)
    finally:
        for dispose in disposers:
            dispose()

    root_after = get_snapshot(store)
    if error is not None:
        # atomic: nothing delivered, the very same nodes, equal snapshots
        assert calls == []
        for _, node in nodes_before:
            assert patches[id(node)] == [], (op, error)
            assert snap_calls[id(node)] == [], (op, error)
        assert root_after == root_before
        nodes_after = iter_nodes(store)
        assert [(path, id(node)) for path, node in nodes_after] == [(path, id(node)) for path, node in nodes_before]
        for _, node in nodes_before:
            assert is_alive(node)
            assert get_snapshot(node) == snaps_before[id(node)]
        return error

    assert get_snapshot(store) is root_after  # no change, no new snapshot
    root_patches = patches[id(store)]
    # (d) one on_snapshot call per changing transaction, with the new snapshot; none otherwise
    if root_after != root_before:
        assert root_patches, op
    if not root_patches:
        assert root_after is root_before, op
    assert len(snap_calls[id(store)]) == (0 if root_after is root_before else 1), op
    if snap_calls[id(store)]:
        assert snap_calls[id(store)][0] == root_after
        assert snap_calls[id(store)][0] is root_after

    # (c) untouched subtrees keep their snapshot object; per-node on_snapshot follows identity
    for path, node in nodes_before:
        if not is_alive(node):
            continue
        snap = get_snapshot(node)
        if not patches[id(node)]:
            assert snap is snaps_before[id(node)], (op, path)
        expected_calls = 0 if snap is snaps_before[id(node)] else 1
        assert len(snap_calls[id(node)]) == expected_calls, (op, path)
        if expected_calls:
            assert snap_calls[id(node)][0] == snap

    # on_action: the outermost call, JSON-serialisable, reported once
    assert len(calls) == 1, (op, calls)
    assert calls[0]["name"] == op.name
    assert calls[0]["path"] == ""
    assert json.loads(json.dumps(calls[0]["args"])) == list(op.args)
    return None


@PROPS
@given(initial=store_snapshots(), seq=op_sequences())
def test_sharing_listeners_and_atomicity(initial: dict[str, Any], seq: list[Op]) -> None:
    store = Store.create(initial)
    for op in seq:
        checked_step(store, op)
        # paths of surviving nodes stay consistent after every action
        for path, node in iter_nodes(store):
            assert get_path(node) == path


@PROPS
@given(initial=store_snapshots(), seq=op_sequences())
def test_snapshot_identity_of_unchanged_children_after_action(initial: dict[str, Any], seq: list[Op]) -> None:
    """Compares snapshots directly: a child snapshot equal in value and reached by an untouched node is
    the same object, and a list snapshot on the changed path is rebuilt reusing unchanged items."""
    store = Store.create(initial)
    for op in seq:
        before_items = {id(todo): (todo, get_snapshot(todo)) for todo in store.todos}
        before_users = {key: get_snapshot(user) for key, user in store.users.items()}
        log = RootLog(store)
        failed = run_quietly(store, op)
        log.stop()
        if failed is not None:  # a rolled-back action only promises equal snapshots (checked elsewhere)
            continue
        touched = {p["path"] for p in log.patches}
        for todo in store.todos:
            # a todo that existed before and whose own subtree received no patch
            if (
                id(todo) in before_items
                and before_items[id(todo)][0] is todo
                and not any(path.startswith(get_path(todo) + "/") or path == get_path(todo) for path in touched)
            ):
                old = before_items[id(todo)][1]
                if get_snapshot(todo) == old:
                    assert get_snapshot(todo) is old, (op, get_path(todo))
        snap = get_snapshot(store)
        for key in store.users:
            if key in before_users and snap["users"][key] == before_users[key]:
                assert snap["users"][key] is before_users[key], (op, key)


# ------------------------------------------------------------------------------------------------ snapshots


def optional_field_drops(snapshot: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """The snapshot with some optional fields left out (they must reset to their defaults)."""
    optional_store = ["todos", "users", "selected", "status", "score"]

    def drop_fields(drop: list[str]) -> dict[str, Any]:
        if "todos" in drop:  # keep the safe reference valid: no todos, nothing selected
            drop = [*drop, "selected"]
        return {k: v for k, v in snapshot.items() if k not in drop}

    return st.lists(st.sampled_from(optional_store), unique=True).map(drop_fields)


@PROPS
@given(initial=store_snapshots(), target=store_snapshots())
def test_apply_snapshot_then_get_snapshot_equals_it(initial: dict[str, Any], target: dict[str, Any]) -> None:
    store = Store.create(initial)
    todos_before = {todo.id: todo for todo in store.todos}
    users_before = dict(store.users.items())
    settings_node = store.settings
    todos_node, users_node = store.todos, store.users
    log = RootLog(store)

    apply_snapshot(store, target)
    log.stop()
    assert get_snapshot(store) == target
    assert json.loads(json.dumps(get_snapshot(store))) == target

    # reconciliation keeps node objects: same container nodes, todos/users matched by identifier
    assert store.todos is todos_node
    assert store.users is users_node
    assert store.settings is settings_node
    for todo in store.todos:
        if todo.id in todos_before:
            assert todo is todos_before[todo.id]
    for key, user in store.users.items():
        if key in users_before:
            assert user is users_before[key]
    for todo_id, todo in todos_before.items():
        assert is_alive(todo) == (todo_id in {td["id"] for td in target["todos"]})

    # one transaction: at most one snapshot notification, none when nothing changed
    if target == initial:
        assert log.patches == []
        assert log.snapshots == []
    else:
        assert len(log.snapshots) == 1
        assert log.snapshots[0] == target

    # its patches replay, and its inverses undo
    fresh = Store.create(initial)
    apply_patch(fresh, log.patches)
    assert get_snapshot(fresh) == target
    apply_patch(store, list(reversed(log.inverses)))
    assert get_snapshot(store) == initial


@PROPS
@given(initial=store_snapshots(), data=st.data())
def test_apply_snapshot_with_omitted_fields_resets_defaults(initial: dict[str, Any], data: st.DataObject) -> None:
    target = data.draw(store_snapshots().flatmap(optional_field_drops))
    store = Store.create(initial)
    apply_snapshot(store, target)
    assert get_snapshot(store) == get_snapshot(Store.create(target))


@PROPS
@given(initial=store_snapshots())
def test_apply_own_snapshot_is_a_no_op(initial: dict[str, Any]) -> None:
    store = Store.create(initial)
    log = RootLog(store)
    snap = get_snapshot(store)
    apply_snapshot(store, snap)
    apply_snapshot(store, initial)  # equal but not identical
    log.stop()
    assert log.patches == []
    assert log.snapshots == []
    assert get_snapshot(store) is snap


@PROPS
@given(initial=store_snapshots(), seq=op_sequences(max_size=8))
def test_create_from_snapshot_round_trips(initial: dict[str, Any], seq: list[Op]) -> None:
    store = Store.create(initial)
    for op in seq:
        run_quietly(store, op)
    snap = get_snapshot(store)
    assert json.loads(json.dumps(snap)) == snap
    again = Store.create(snap)
    assert get_snapshot(again) == snap
    assert get_snapshot(Store.create(json.loads(json.dumps(snap)))) == snap
    assert get_snapshot(clone(store)) == snap

    assert get_snapshot(Settings.create(get_snapshot(store.settings))) == snap["settings"]
    for user in store.users.values():
        assert get_snapshot(User.create(get_snapshot(user))) == get_snapshot(user)
    for todo in store.todos:
        if get_snapshot(todo)["owner"] is None:
            assert get_snapshot(Todo.create(get_snapshot(todo))) == get_snapshot(todo)


@PROPS
@given(initial=store_snapshots(), seq=op_sequences())
def test_recorded_actions_replay_onto_fresh_tree(initial: dict[str, Any], seq: list[Op]) -> None:
    store = Store.create(initial)
    recorder = record_actions(store)
    succeeded = []
    for op in seq:
        if run_quietly(store, op) is None:
            succeeded.append(op.name)
    recorder.stop()
    assert [call["name"] for call in recorder.actions] == succeeded
    calls = json.loads(json.dumps(list(recorder.actions)))
    target = Store.create(initial)
    recorder.replay(target)
    assert get_snapshot(target) == get_snapshot(store)
    assert calls == list(recorder.actions)
