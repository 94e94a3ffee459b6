"""Cached, structurally shared, immutable snapshots and ``apply_snapshot`` reconciliation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mst_llm.core.state.node import add_listener, is_node, path_of, root_of, snapshot_of
from mst_llm.core.state.transaction import run_action
from mst_llm.errors import MSTError, ValidationError


def get_snapshot(node: Any) -> Any:
    """The node's value as immutable JSON data; unchanged subtrees return the identical object."""
    kind = getattr(type(node), "_mst_kind", None)
    if kind is None:
        raise MSTError(f"get_snapshot expects a tree node, got {type(node).__name__}")
    tree = (node if node._parent is None else root_of(node))._tree
    if tree is None:
        return snapshot_of(node)
    with tree.lock:  # a committed state, never half of another thread's transaction
        # (snapshot_of, inlined: a program that snapshots after every action calls this as often as actions)
        snap = node._snap
        if snap is not None and kind == "model":
            return snap
        return node._mst_snapshot()


def node_type(node: Any) -> Any:
    """The mst type of ``node`` (its model class's type, or its list/dict type)."""
    cls = type(node)
    if getattr(cls, "_mst_dead", False):
        cls = cls.__mro__[1]
    if cls._mst_kind == "model":
        return cls._mst_type
    return node._type


def apply_snapshot(node: Any, snapshot: Any) -> None:
    """Make ``node``'s subtree equal to ``snapshot`` in one transaction, reconciling children in place."""
    if snapshot is node._snap and node._mst_kind == "model":
        return
    run_action(node, "@APPLY_SNAPSHOT", _apply_snapshot, (snapshot,), {})


def _apply_snapshot(node: Any, snapshot: Any) -> None:
    base = path_of(node)
    errors: list[tuple[str, str]] = []
    node_type(node).validate(snapshot, "", errors)
    if errors:
        raise ValidationError([(base + path, message) for path, message in errors])
    if is_node(snapshot):
        snapshot = get_snapshot(snapshot)
    if node._mst_kind == "model":
        id_field = type(node)._mst_id_field
        ident = snapshot.get(id_field) if id_field is not None else None
        if ident is not None and str(ident) != node._mst_identifier():
            message = f"identifiers are immutable (is {node._mst_identifier()!r})"
            raise ValidationError([(f"{base}/{id_field}", message)])
    node._mst_reconcile(snapshot)


def on_snapshot(node: Any, listener: Callable[[Any], None]) -> Callable[[], None]:
    """Call ``listener(snapshot)`` after each outermost transaction that changed ``node``'s subtree."""
    return add_listener(node, "snapshot", listener)
