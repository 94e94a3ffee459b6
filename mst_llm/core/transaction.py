"""The one place where changes are recorded, rolled back or committed.

Every mutation asks :func:`write_tx` for the transaction that may change the node (raising ProtectionError
when none may), records how to undo itself, and calls :func:`touch` which invalidates cached snapshots on the
way to the root and tells whether anyone consumes patches. Patches are delivered when the outermost
transaction commits; if it raises instead, :func:`rollback_to` replays the undo log and nothing is delivered.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from mst_llm.core.node import Tree, check_alive, check_unique_ids, describe, path_of, root_of
from mst_llm.core.patch import escape_json_path
from mst_llm.errors import ProtectionError, ValidationError

_local = threading.local()
_call_ids = itertools.count(1)


def current_tx() -> Transaction | None:
    return getattr(_local, "tx", None)


class ActionCall:
    """One action invocation as middleware sees it."""

    __slots__ = ("args", "context", "id", "kwargs", "name", "parent_call", "tree")

    def __init__(
        self, name: str, context: Any, tree: Any, args: tuple[Any, ...], kwargs: dict[str, Any], parent: Any
    ) -> None:
        self.name = name
        self.context = context
        self.tree = tree
        self.args = args
        self.kwargs = kwargs
        self.parent_call: ActionCall | None = parent
        self.id = next(_call_ids)

    def __repr__(self) -> str:
        return f"ActionCall({self.name!r}, id={self.id})"


class Transaction:
    """The changes made to one tree by one outermost action (or bare mutation of an unprotected tree)."""

    __slots__ = (
        "call_stack",
        "calls",
        "contexts",
        "flow",
        "outer",
        "patches",
        "root",
        "safe_checks",
        "saved",
        "snapshot_nodes",
        "started_at",
        "undo",
    )

    def __init__(self, root: Any, outer: Transaction | None, flow: FlowSegment | None = None) -> None:
        self.root = root
        self.outer = outer
        self.flow = flow
        self.started_at = time.time()
        self.contexts: list[Any] = []
        self.undo: list[tuple[Any, ...]] = []
        # (keys from the changed node up, consumers [(node, depth)], op, value, old value)
        self.patches: list[tuple[list[Any], list[tuple[Any, int]], str, Any, Any]] = []
        self.snapshot_nodes: dict[Any, None] = {}
        # id(node) -> (node, cached snapshot, stale keys) as they were when the node was first touched,
        # so that a rollback also restores snapshot identity
        self.saved: dict[int, tuple[Any, Any, Any]] = {}
        # (holder, key) of safe references to check before commit: a safe reference never dangles
        self.safe_checks: list[tuple[Any, Any]] = []
        # (outermost call, listener nodes on its path with the depth of the call's node below each)
        self.calls: list[tuple[ActionCall, list[tuple[Any, int]]]] = []
        # running action frames, innermost last: (name, node, args, kwargs) tuples or ActionCall objects
        self.call_stack: list[Any] = []

    def mark(self) -> tuple[int, int, int, int, int]:
        return (len(self.undo), len(self.patches), len(self.snapshot_nodes), len(self.calls), len(self.saved))


# --- entering a transaction ------------------------------------------------------------------------------


def write_tx(node: Any) -> Transaction | None:
    """The transaction allowed to change ``node``; None when the tree is unprotected and idle.

    Raises ProtectionError when the change happens outside an action, or outside the running action's subtree.
    """
    tx: Transaction | None = getattr(_local, "tx", None)
    if tx is not None:
        context = tx.contexts[-1] if tx.contexts else tx.root
        current = node
        while current is not None:
            if current is context:
                return tx
            last = current
            current = current._parent
        if last is tx.root:
            if not last._tree.protected:
                return tx
            raise ProtectionError(
                f"cannot change {describe(node)} at {path_of(node)!r}: the running action "
                f"{path_of(context)!r} may only change its own node and its descendants"
            )
        root = last
    else:
        root = root_of(node)
    tree: Tree | None = root._tree
    if tree is None or not tree.protected:
        return None
    raise ProtectionError(
        f"cannot change {describe(node)} at {path_of(node)!r} outside an action "
        "(wrap the change in an @action, or unprotect() the tree)"
    )


def run_bare(node: Any, fn: Callable[..., Any], *args: Any) -> Any:
    """Run one mutation of an unprotected tree as its own transaction."""
    return run_action(node, None, fn, args, {})


def run_action(
    node: Any,
    name: str | None,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    record_args: tuple[Any, ...] | None = None,
    flow: FlowSegment | None = None,
) -> Any:
    """Run ``fn(node, *args, **kwargs)`` as an action: one transaction if outermost, atomic either way.

    ``flow`` names the flow run a segment belongs to; its commit carries it."""
    check_alive(node)
    middleware: list[tuple[Any, tuple[Callable[..., Any], ...]]] | None = None
    listeners: list[tuple[Any, int]] | None = None
    current = node
    depth = 0
    while True:
        hooks = current._hooks
        if hooks is not None and name is not None:
            if hooks.middleware:
                if middleware is None:
                    middleware = []
                middleware.append((current, tuple(hooks.middleware)))
            if hooks.action or hooks.commit:
                if listeners is None:
                    listeners = []
                listeners.append((current, depth))
        parent = current._parent
        if parent is None:
            break
        current = parent
        depth += 1
    root = current
    tx: Transaction | None = getattr(_local, "tx", None)
    outermost = tx is None or tx.root is not root
    if outermost:
        tx = Transaction(root, tx, flow)
        _local.tx = tx
    assert tx is not None
    call_args = args if record_args is None else record_args
    call: ActionCall | None = None
    if middleware is not None or (listeners is not None and not tx.call_stack):
        call = ActionCall(name or "", node, root, call_args, kwargs, _running_call(tx))
        if listeners is not None and not tx.call_stack:
            tx.calls.append((call, listeners))
        tx.call_stack.append(call)
    else:
        tx.call_stack.append((name, node, call_args, kwargs))
    mark = tx.mark()
    tx.contexts.append(node)
    try:
        if middleware is not None:
            assert call is not None
            if record_args is None:  # middleware may rewrite the arguments it passes on
                result = _run_middleware(middleware, call, lambda c: fn(node, *c.args, **c.kwargs))
            else:  # the call shows record_args (a flow's own arguments); the segment runs with its own
                result = _run_middleware(middleware, call, lambda c: fn(node, *args, **kwargs))
        else:
            result = fn(node, *args, **kwargs)
    except BaseException:
        tx.contexts.pop()
        tx.call_stack.pop()
        rollback_to(tx, mark)
        if outermost:
            _local.tx = tx.outer
        raise
    tx.contexts.pop()
    tx.call_stack.pop()
    if outermost:
        tree = root._tree
        try:
            if tree is not None and tree.dupes:
                refuse_duplicates(tx)
            if tx.safe_checks:
                drop_dangling_references(tx)
        finally:
            _local.tx = tx.outer
        # committed: drop what only a rollback needed, so cached snapshots can be updated in place again
        if tx.undo:
            if tree is not None:
                tree.seq += 1
            tx.undo.clear()
        tx.saved.clear()
        deliver(tx)
    return result


def _running_call(tx: Transaction, position: int = -1) -> ActionCall | None:
    """The innermost running call as an ActionCall (frames are kept as cheap tuples until someone asks)."""
    stack = tx.call_stack
    if not stack or -position > len(stack):
        return None
    frame = stack[position]
    if isinstance(frame, ActionCall):
        return frame
    name, node, args, kwargs = frame
    call = ActionCall(name or "", node, tx.root, args, kwargs, _running_call(tx, position - 1))
    stack[position] = call
    return call


def _run_middleware(
    chain: list[tuple[Any, tuple[Callable[..., Any], ...]]], call: ActionCall, base: Callable[[ActionCall], Any]
) -> Any:
    # ancestors' middleware runs before descendants'; on one node, in the order it was added
    handlers = [handler for _, group in reversed(chain) for handler in group]

    def step(index: int, current: ActionCall) -> Any:
        if index == len(handlers):
            return base(current)
        return handlers[index](current, lambda next_call=current: step(index + 1, next_call))

    return step(0, call)


# --- recording -------------------------------------------------------------------------------------------


def touch(
    tx: Transaction, node: Any, dirty_key: Any, keys: list[Any]
) -> tuple[list[Any], list[tuple[Any, int]]] | None:
    """Invalidate snapshots from ``node`` (changed at ``dirty_key``) up to the root; note on_snapshot listeners.

    ``keys`` is the patch path below ``node`` (innermost first) and is extended upward. Returns (keys, patch
    consumers as (node, number of keys below it)) when anyone consumes patches, else None.
    """
    saved = tx.saved
    if id(node) not in saved:
        _save(saved, node)
    node._mst_dirty(dirty_key)
    consumers: list[tuple[Any, int]] | None = None
    current = node
    while True:
        hooks = current._hooks
        if hooks is not None:
            if hooks.patch or hooks.commit:
                if consumers is None:
                    consumers = []
                consumers.append((current, len(keys)))
            if hooks.snapshot:
                tx.snapshot_nodes[current] = None
        parent = current._parent
        if parent is None:
            break
        child_key = current._key
        if id(parent) not in saved:
            _save(saved, parent)
        parent._mst_dirty(child_key)
        keys.append(child_key)
        current = parent
    if consumers is None:
        return None
    return keys, consumers


def _save(saved: dict[int, tuple[Any, Any, Any]], node: Any) -> None:
    # The stale-key set is kept by reference: it only ever grows or is replaced, and restoring a superset of
    # stale keys is harmless (their item snapshots are re-read from the children's caches).
    saved[id(node)] = (node, node._snap, node._dirty)


def invalidate_up(node: Any, dirty_key: Any) -> None:
    """Invalidate cached snapshots from ``node`` to the root (used when undoing a change)."""
    node._mst_dirty(dirty_key)
    parent = node._parent
    while parent is not None:
        parent._mst_dirty(node._key)
        node = parent
        parent = node._parent


def record_patch(
    tx: Transaction, where: tuple[list[Any], list[tuple[Any, int]]], op: str, value: Any, old: Any
) -> None:
    tx.patches.append((where[0], where[1], op, value, old))


def rollback_to(tx: Transaction, mark: tuple[int, int, int, int, int]) -> None:
    """Undo every change recorded after ``mark`` (newest first) and forget its patches and calls."""
    undo_len, patch_len, snap_len, call_len, saved_len = mark
    undo = tx.undo
    while len(undo) > undo_len:
        entry = undo.pop()
        entry[0](*entry[1:])
    del tx.patches[patch_len:]
    if len(tx.snapshot_nodes) > snap_len:
        for extra in list(tx.snapshot_nodes)[snap_len:]:
            del tx.snapshot_nodes[extra]
    del tx.calls[call_len:]
    if len(tx.saved) > saved_len:
        for key, (node, snap, dirty) in list(tx.saved.items())[saved_len:]:
            node._snap = snap
            node._dirty = dirty
            del tx.saved[key]


# --- commit ----------------------------------------------------------------------------------------------


def refuse_duplicates(tx: Transaction) -> None:
    """Before commit: an identifier two nodes hold rolls the whole transaction back (ValidationError)."""
    try:
        check_unique_ids(tx.root._tree)
    except ValidationError:
        rollback_to(tx, (0, 0, 0, 0, 0))
        raise


def drop_dangling_references(tx: Transaction) -> None:
    """Before commit: safe references whose target is not in the tree become None (or leave their list)."""
    tx.contexts.append(tx.root)
    try:
        while tx.safe_checks:
            holder, key = tx.safe_checks.pop()
            if not getattr(type(holder), "_mst_dead", False) and root_of(holder) is tx.root:
                holder._mst_drop_dangling(key)
    except BaseException:
        tx.contexts.pop()
        rollback_to(tx, (0, 0, 0, 0, 0))
        raise
    tx.contexts.pop()


def deliver(tx: Transaction) -> None:
    """Tell listeners about a committed transaction: patches, snapshots, commit entries, action calls."""
    errors: list[BaseException] = []
    batches: dict[Any, tuple[list[dict[str, Any]], list[dict[str, Any]]]] | None = None
    for keys, consumers, op, value, old in tx.patches:
        for consumer, depth in consumers:
            hooks = consumer._hooks
            if hooks is None:
                continue
            path = _relative_path(keys, depth)
            patch, inverse = make_patch_pair(op, path, value, old)
            for listener in tuple(hooks.patch):
                try:
                    listener(patch, inverse)
                except Exception as error:
                    errors.append(error)
            if hooks.commit:
                if batches is None:
                    batches = {}
                batch = batches.get(consumer)
                if batch is None:
                    batch = batches[consumer] = ([], [])
                batch[0].append(patch)
                batch[1].append(inverse)
    if tx.snapshot_nodes:
        from mst_llm.core.snapshot import get_snapshot

        for node in tx.snapshot_nodes:
            hooks = node._hooks
            if hooks is None or not hooks.snapshot or getattr(type(node), "_mst_dead", False):
                continue
            snapshot = get_snapshot(node)
            for listener in tuple(hooks.snapshot):
                try:
                    listener(snapshot)
                except Exception as error:
                    errors.append(error)
    if batches is not None:
        calls_by_node = {node: (call, depth) for call, listener_nodes in tx.calls for node, depth in listener_nodes}
        tree = tx.root._tree
        seq = 0 if tree is None else tree.seq
        committed_at = time.time()
        flow = tx.flow
        for consumer, (patches, inverses) in batches.items():
            hooks = consumer._hooks
            if hooks is None:
                continue
            call, depth = calls_by_node.get(consumer, (None, 0))
            commit = Commit(seq, tuple(patches), tuple(inverses), call, depth, flow, tx.started_at, committed_at)
            for listener in tuple(hooks.commit):
                try:
                    listener(commit)
                except Exception as error:
                    errors.append(error)
    for call, listener_nodes in tx.calls:
        for listener_node, depth in listener_nodes:
            hooks = listener_node._hooks
            if hooks is None or not hooks.action:
                continue
            serialised = serialise_call(call, depth)
            for listener in tuple(hooks.action):
                try:
                    listener(serialised)
                except Exception as error:
                    errors.append(error)
    if errors:
        raise errors[0]


class FlowSegment(NamedTuple):
    """Which flow run a transaction belongs to: the flow's name, a per-process run id, and the segment number
    (1 runs up to the first ``await``)."""

    name: str
    id: int
    segment: int


class Commit:
    """One committed transaction as seen from the node an ``on_commit`` listener is on. Immutable.

    ``seq`` counts the committed transactions that changed the tree (per tree, from 1); ``action`` is the
    outermost action call (``{"name", "path", "args"}``, the path relative to the listener's node) or None for a
    change without an action (an unprotected tree, or a flow segment after the first ``await``); ``flow`` is
    ``{"name", "id", "segment"}`` when a flow made the change; ``patches`` and ``inverse_patches`` are RFC 6902
    dicts relative to the listener's node, in mutation order; ``started_at`` and ``committed_at`` are
    ``time.time()`` values.
    """

    __slots__ = (
        "_action",
        "_call",
        "_depth",
        "_flow",
        "committed_at",
        "inverse_patches",
        "patches",
        "seq",
        "started_at",
    )

    seq: int
    patches: tuple[dict[str, Any], ...]
    inverse_patches: tuple[dict[str, Any], ...]
    started_at: float
    committed_at: float
    _action: dict[str, Any] | None
    _call: ActionCall | None
    _depth: int
    _flow: FlowSegment | None

    def __init__(
        self,
        seq: int,
        patches: tuple[dict[str, Any], ...],
        inverse_patches: tuple[dict[str, Any], ...],
        call: ActionCall | None,
        depth: int,
        flow: FlowSegment | None,
        started_at: float,
        committed_at: float,
    ) -> None:
        setattr_ = object.__setattr__
        setattr_(self, "seq", seq)
        setattr_(self, "patches", patches)
        setattr_(self, "inverse_patches", inverse_patches)
        setattr_(self, "_call", call)
        setattr_(self, "_depth", depth)
        setattr_(self, "_flow", flow)
        setattr_(self, "_action", None)
        setattr_(self, "started_at", started_at)
        setattr_(self, "committed_at", committed_at)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Commit is immutable (cannot set {name!r})")

    @property
    def action(self) -> dict[str, Any] | None:
        # serialised on first use: most observers of a commit never read the call
        if self._action is None and self._call is not None:
            object.__setattr__(self, "_action", serialise_call(self._call, self._depth))
        return self._action

    @property
    def flow(self) -> dict[str, Any] | None:
        flow = self._flow
        return None if flow is None else {"name": flow.name, "id": flow.id, "segment": flow.segment}

    def __repr__(self) -> str:
        return f"Commit(seq={self.seq}, action={self.action!r}, flow={self.flow!r}, patches={list(self.patches)!r})"


_PLAIN_ARGUMENTS = frozenset({str, int, float, bool, type(None)})


def serialise_call(call: ActionCall, depth: int) -> dict[str, Any]:
    """The JSON form of an action call, its path relative to the node ``depth`` levels above its context."""
    keys: list[Any] = []
    node = call.context
    for _ in range(depth):
        keys.append(node._key)
        node = node._parent
    args = call.args
    if not all(type(arg) in _PLAIN_ARGUMENTS for arg in args):
        args = tuple(_to_json(arg) for arg in args)
    result: dict[str, Any] = {"name": call.name, "path": _relative_path(keys, depth), "args": list(args)}
    if call.kwargs:
        result["kwargs"] = {key: _to_json(value) for key, value in call.kwargs.items()}
    return result


def _to_json(value: Any) -> Any:
    from mst_llm.core.snapshot import to_json_value

    return to_json_value(value)


def _relative_path(keys: list[Any], depth: int) -> str:
    if depth == 0:
        return ""
    parts = []
    for index in range(depth - 1, -1, -1):
        key = keys[index]
        if type(key) is int:
            parts.append(str(key))
        elif "~" in key or "/" in key:
            parts.append(escape_json_path(key))
        else:
            parts.append(key)
    return "/" + "/".join(parts)


_INVERSE_OP = {"replace": "replace", "add": "remove", "remove": "add"}


def make_patch_pair(op: str, path: str, value: Any, old: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    if op == "replace":
        return {"op": "replace", "path": path, "value": value}, {"op": "replace", "path": path, "value": old}
    if op == "add":
        return {"op": "add", "path": path, "value": value}, {"op": "remove", "path": path}
    return {"op": "remove", "path": path}, {"op": "add", "path": path, "value": old}
