"""The one place where changes are recorded, rolled back or committed.

An action runs as a transaction (:func:`run_action`; the outermost call on a tree owns it). Every mutation asks
:func:`write_tx` for the transaction that may change the node (raising ProtectionError when none may), records how
to undo itself, and calls :func:`touch`, which invalidates cached snapshots on the way to the root and tells
whether anyone consumes patches, then :func:`record` notes the Change. When the outermost transaction commits,
:func:`deliver` turns the changes into patches for on_patch, snapshots for on_snapshot, a :class:`Commit` for
on_commit and the call for on_action; if it raises instead, :func:`rollback_to` replays the undo log and nothing is
delivered.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from operator import attrgetter
from typing import TYPE_CHECKING, Any, TypeVar

from mst_llm.core.base import context
from mst_llm.core.state.actions import (
    NO_NODE_ARGUMENTS,
    PLAIN_ARGUMENTS,
    ActionCall,
    FlowSegment,
    ListenedCall,
    has_plain_arguments,
    pin_call,
    run_middleware,
    serialise_call,
)
from mst_llm.core.state.change import Change, make_patch_pair, relative_path
from mst_llm.core.state.node import (
    Tree,
    check_alive,
    check_unique_ids,
    describe,
    path_of,
    root_of,
    snapshot_of,
)
from mst_llm.core.state.reactions import Reaction, discard, run_reactions
from mst_llm.errors import ProtectionError, ValidationError

F = TypeVar("F", bound=Callable[..., Any])
Mark = tuple[int, int, int, int, int]

_local = context.local  # bound once: write_tx and run_action read it on every change
_now = time.time


def current_tx() -> Transaction | None:
    return _local.tx  # type: ignore[no-any-return]


class Transaction:
    """The changes made to one tree by one outermost action (or bare mutation of an unprotected tree)."""

    __slots__ = (
        "call_stack",
        "calls",
        "changes",
        "contexts",
        "disposers",
        "flow",
        "outer",
        "reactions",
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
        self.started_at = _now()
        self.contexts: list[Any] = []
        self.undo: list[tuple[Any, ...]] = []
        self.changes: list[Change] = []  # the changes that someone consumes as patches, in mutation order
        self.reactions: list[Reaction] | None = None  # reactions made stale: they run after the commit
        self.disposers: list[Callable[[], Any]] | None = None  # add_disposer functions of nodes it removed
        self.snapshot_nodes: dict[Any, None] = {}
        # id(node) -> (node, cached snapshot, stale keys) as they were when the node was first touched,
        # so that a rollback also restores snapshot identity
        self.saved: dict[int, tuple[Any, Any, Any]] = {}
        # (holder, key) of safe references to check before commit: a safe reference never dangles
        self.safe_checks: list[tuple[Any, Any]] = []
        # (outermost call, listener nodes on its path with the depth of the call's node below each)
        self.calls: list[tuple[ListenedCall, list[tuple[Any, int]]]] = []
        # running action frames, innermost last: (name, node, args, kwargs) tuples or ActionCall objects
        self.call_stack: list[Any] = []

    def mark(self) -> Mark:
        return (len(self.undo), len(self.changes), len(self.snapshot_nodes), len(self.calls), len(self.saved))

    def savepoint(self) -> Savepoint:
        """``with tx.savepoint():`` undoes what the block changed when it raises (the transaction goes on)."""
        return Savepoint(self)


class Savepoint:
    """A point to roll a transaction back to when the block it guards raises; see ``Transaction.savepoint``."""

    __slots__ = ("mark", "tx")

    def __init__(self, tx: Transaction) -> None:
        self.tx = tx
        self.mark = tx.mark()

    def __enter__(self) -> Savepoint:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, traceback: Any) -> None:
        if kind is not None:
            rollback_to(self.tx, self.mark)


def write_tx(node: Any) -> Transaction | None:
    """The transaction allowed to change ``node``; None when the tree is unprotected and idle.

    Raises ProtectionError when the change happens outside an action, or outside the running action's subtree.
    """
    tx: Transaction | None = _local.tx
    if tx is not None:
        scope = tx.contexts[-1] if tx.contexts else tx.root
        current = node
        while current is not None:
            if current is scope:
                return tx
            last = current
            current = current._parent
        if last is tx.root:
            if not last._tree.protected:
                return tx
            raise ProtectionError(
                f"cannot change {describe(node)} at {path_of(node)!r}: the running action "
                f"{path_of(scope)!r} may only change its own node and its descendants"
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
    record_kwargs: dict[str, Any] | None = None,
) -> Any:
    """Run ``fn(node, *args, **kwargs)`` as an action: one transaction if outermost, atomic either way.

    The call is recorded with ``record_args``/``record_kwargs`` where given (a flow's own arguments, not its
    segment's); ``flow`` names the flow run a segment belongs to; its commit carries it."""
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
    tx: Transaction | None = _local.tx
    lock = None
    outermost = tx is None or tx.root is not root
    if outermost:
        tree = root._tree
        if tree is not None:  # (a node being built has no tree yet: no other thread can see it)
            lock = tree.lock
            lock.acquire()  # from the first read to the end of delivery: transactions on one tree are serialized
        tx = Transaction(root, tx, flow)
        _local.tx = tx
    assert tx is not None
    try:
        call_args = args if record_args is None else record_args
        call_kwargs = kwargs if record_kwargs is None else record_kwargs
        listened = -1  # where the call's record is in tx.calls when it is an outermost call someone listens to
        if listeners is not None and not tx.call_stack:
            listened = len(tx.calls)
            # (has_plain_arguments, inlined: every action a listener sees takes this path)
            if call_kwargs or (call_args and not PLAIN_ARGUMENTS.issuperset(map(type, call_args))):
                tx.calls.append((pin_call(name or "", node, root, call_args, call_kwargs), listeners))
            else:  # its JSON form names the node where it was when the call started, whenever it is read
                keys = []  # (keys_up, inlined: every action a listener sees takes this path)
                child, parent = node, node._parent
                while parent is not None:
                    keys.append(child._key)
                    child, parent = parent, parent._parent
                tx.calls.append(((name or "", node, call_args, call_kwargs, keys, NO_NODE_ARGUMENTS), listeners))
        call: ActionCall | None = None
        if middleware is not None:
            call = ActionCall(name or "", node, root, call_args, call_kwargs, _running_call(tx))
            tx.call_stack.append(call)
        else:  # a frame becomes an ActionCall only when someone asks for the running call (_running_call)
            tx.call_stack.append((name, node, call_args, call_kwargs))
        # the explicit mark/rollback instead of ``with tx.savepoint()``: this is every action's path, and the
        # context manager costs ~400 ns more per call (measured), ~5 % of a one-field action
        mark = tx.mark()
        tx.contexts.append(node)
        try:
            if middleware is not None:
                assert call is not None
                if record_args is None:  # middleware may rewrite the arguments it passes on
                    result = run_middleware(middleware, call, lambda c: fn(node, *c.args, **c.kwargs))
                else:  # the call shows record_args (a flow's own arguments); the segment runs with its own
                    result = run_middleware(middleware, call, lambda c: fn(node, *args, **kwargs))
                if listened >= 0:
                    _adopt_arguments(tx, listened, call)
            else:
                result = fn(node, *args, **kwargs)
        except BaseException:
            tx.contexts.pop()
            tx.call_stack.pop()
            rollback_to(tx, mark)
            if outermost:
                _local.tx = tx.outer
                if tx.reactions:
                    discard(tx.reactions)
            raise
        tx.contexts.pop()
        tx.call_stack.pop()
        if not outermost:
            return result
        # commit (inline: every action takes this path): settle identifiers and safe references (either may still
        # roll it all back), then deliver, then run what the commit made stale
        tree = root._tree
        try:
            if tree is not None and tree.dupes:
                refuse_duplicates(tx)
            if tx.safe_checks:
                drop_dangling_references(tx)
        except BaseException:
            if tx.reactions:
                discard(tx.reactions)  # rolled back after all
            raise
        finally:
            _local.tx = tx.outer
        # committed: drop what only a rollback needed, so cached snapshots can be updated in place again
        if tx.undo:
            if tree is not None:
                tree.seq += 1
            tx.undo.clear()
        tx.saved.clear()
        try:
            deliver(tx)
        finally:
            if tx.reactions or tx.disposers:
                after_commit(tx)
        return result
    finally:
        if lock is not None:
            lock.release()


def action(fn: F) -> F:
    """Make a method an action: the only way to change a protected tree; atomic; one transaction."""
    name = fn.__name__

    @functools.wraps(fn)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        return run_action(self, name, fn, args, kwargs)

    run._mst_action = True  # type: ignore[attr-defined]
    return run  # type: ignore[return-value]


def _adopt_arguments(tx: Transaction, index: int, call: ActionCall) -> None:
    """Middleware may have replaced the call's arguments: its listeners see the ones that ran, so that a replay
    repeats what really happened."""
    record, listeners = tx.calls[index]
    if call.args is not record[2] or call.kwargs is not record[3]:
        name, node, _, _, keys, places = record
        tx.calls[index] = ((name, node, call.args, call.kwargs, keys, places), listeners)


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


def record(tx: Transaction, where: tuple[list[Any], list[tuple[Any, int]]], op: str, value: Any, old: Any) -> None:
    """Note a change that ``touch`` found consumers for (``where``); it becomes patches at commit."""
    tx.changes.append((where[0], where[1], op, value, old))


def rollback_to(tx: Transaction, mark: Mark) -> None:
    """Undo every change recorded after ``mark`` (newest first) and forget its patches and calls."""
    undo_len, change_len, snap_len, call_len, saved_len = mark
    undo = tx.undo
    while len(undo) > undo_len:
        entry = undo.pop()
        entry[0](*entry[1:])
    del tx.changes[change_len:]
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


def after_commit(tx: Transaction) -> None:
    """Run the reactions the commit made stale and the disposers of the nodes it removed; inside another tree's
    transaction, leave them to that one (it may still roll back, and reactions see committed states only)."""
    if tx.disposers is None and tx.outer is None:  # the usual case
        run_reactions(tx.reactions or [])
        return
    reactions, disposers = tx.reactions or [], tx.disposers or []
    outer = tx.outer
    if outer is not None:
        outer.reactions = (outer.reactions or []) + reactions
        outer.disposers = (outer.disposers or []) + disposers
        return
    error = call_each(disposers)
    run_reactions(reactions)
    if error is not None:
        raise error


def call_each(functions: list[Callable[[], Any]]) -> Exception | None:
    """Call every function even when some raise (each is a separate observer); return the first error."""
    first: Exception | None = None
    for function in functions:
        try:
            function()
        except Exception as error:
            first = first or error
    return first


def deliver(tx: Transaction) -> None:
    """Tell listeners about a committed transaction: patches, snapshots, commit entries, action calls."""
    errors: list[BaseException] = []
    batches: dict[Any, tuple[list[dict[str, Any]], list[dict[str, Any]]]] | None = None
    for keys, consumers, op, value, old in tx.changes:
        for consumer, depth in consumers:
            hooks = consumer._hooks
            if hooks is None:
                continue
            patch, inverse = make_patch_pair(op, relative_path(keys, depth), value, old)
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
        for node in tx.snapshot_nodes:
            hooks = node._hooks
            if hooks is None or not hooks.snapshot or getattr(type(node), "_mst_dead", False):
                continue
            snapshot = snapshot_of(node)
            for listener in tuple(hooks.snapshot):
                try:
                    listener(snapshot)
                except Exception as error:
                    errors.append(error)
    if batches is not None:
        tree = tx.root._tree
        seq = 0 if tree is None else tree.seq
        committed = _now()
        started = tx.started_at
        flow = tx.flow
        for consumer, (patches, inverses) in batches.items():
            hooks = consumer._hooks
            if hooks is None:
                continue
            call, depth = _call_seen_from(consumer, tx)
            if call is None and flow is not None:  # a later segment: the flow's own call is the one it names
                depth = _depth_below(consumer, flow.call[1])
            commit = Commit(seq, tuple(patches), tuple(inverses), call, depth, flow, started, committed)
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


def _call_seen_from(consumer: Any, tx: Transaction) -> tuple[ListenedCall | None, int]:
    """The outermost call that ``consumer``'s listeners see, with the depth of its node below ``consumer``.

    (A loop over the transaction's listened calls, of which there is at most one: a dict of them built per commit
    cost ~1,700 instructions more, measured with callgrind.)"""
    for call, listener_nodes in tx.calls:
        for node, depth in listener_nodes:
            if node is consumer:
                return call, depth
    return None, 0


def _depth_below(ancestor: Any, node: Any) -> int:
    """How many levels ``node`` lies below ``ancestor`` (0: the same node), or -1 when it is not in its subtree."""
    depth = 0
    while node is not None:
        if node is ancestor:
            return depth
        node = node._parent
        depth += 1
    return -1


class Commit:
    """One committed transaction as seen from the node an ``on_commit`` listener is on. Immutable.

    ``seq`` counts the committed transactions that changed the tree (per tree, from 1); ``action`` is the
    outermost action call (``{"name", "path", "args"}``, the path relative to the listener's node) or None for a
    change without an action (an unprotected tree, or a flow segment after the first ``await``); ``flow`` is
    ``{"name", "id", "segment", "path", "args"}`` (and ``"kwargs"`` when there are any) in every commit a flow
    made, ``path`` and ``args`` being the flow's call (absent when the flow's node is outside the listener's
    subtree); ``patches`` and ``inverse_patches`` are RFC 6902
    dicts relative to the listener's node, in mutation order; ``started_at`` and ``committed_at`` are
    ``time.time()`` values.

    The public attributes are read-only properties over private slots: the slots are set by plain assignment (a
    ``__setattr__`` that refuses writes made nine ``object.__setattr__`` calls cost ~3,500 instructions per commit
    and listener, measured with callgrind), the plain ones read through C-level getters (``attrgetter``: ~200
    instructions less per read than a Python property), and the action is serialised once, on first read.
    """

    __slots__ = ("_action", "_call", "_committed_at", "_depth", "_flow", "_inverse", "_patches", "_seq", "_started_at")

    def __init__(
        self,
        seq: int,
        patches: tuple[dict[str, Any], ...],
        inverse_patches: tuple[dict[str, Any], ...],
        call: ListenedCall | None,
        depth: int,
        flow: FlowSegment | None,
        started_at: float,
        committed_at: float,
    ) -> None:
        self._seq = seq
        self._patches = patches
        self._inverse = inverse_patches
        self._call = call
        self._depth = depth
        self._flow = flow
        self._started_at = started_at
        self._committed_at = committed_at
        self._action: dict[str, Any] | None = None

    if TYPE_CHECKING:  # what type checkers see; at run time, the same properties with C-level getters (below)

        @property
        def seq(self) -> int: ...
        @property
        def patches(self) -> tuple[dict[str, Any], ...]: ...
        @property
        def inverse_patches(self) -> tuple[dict[str, Any], ...]: ...
        @property
        def started_at(self) -> float: ...
        @property
        def committed_at(self) -> float: ...

    else:
        seq = property(attrgetter("_seq"))
        patches = property(attrgetter("_patches"))
        inverse_patches = property(attrgetter("_inverse"))
        started_at = property(attrgetter("_started_at"))
        committed_at = property(attrgetter("_committed_at"))

    @property
    def action(self) -> dict[str, Any] | None:
        # serialised on first read: most observers of a commit never read the call, some read it twice
        if self._action is None and self._call is not None:
            self._action = serialise_call(self._call, self._depth)
        return self._action

    @property
    def flow(self) -> dict[str, Any] | None:
        flow = self._flow
        if flow is None:
            return None
        record = {"name": flow.name, "id": flow.id, "segment": flow.segment}
        if self._depth >= 0:  # the flow's node is in the listener's subtree: name its call
            record.update(serialise_call(flow.call, self._depth))
        return record

    def __repr__(self) -> str:
        return f"Commit(seq={self.seq}, action={self.action!r}, flow={self.flow!r}, patches={list(self.patches)!r})"


def self_contained(commit: Commit) -> bool:
    """Whether reading the commit's ``action`` and ``flow`` reads nothing but the commit (their arguments are all
    plain values), so that another thread may serialise them later while the tree goes on changing."""
    call, flow = commit._call, commit._flow
    return (call is None or has_plain_arguments(call)) and (flow is None or has_plain_arguments(flow.call))
