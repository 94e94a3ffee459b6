"""Node bookkeeping shared by model, list and dict nodes: parent and key, the tree a root owns (identifier
index, environment, protection), listener hooks, liveness and subtree walks.

Every node class carries the same slots: ``_parent``, ``_key`` (field name, list index or dict key),
``_snap`` (cached snapshot), ``_dirty`` (containers: keys whose item snapshot is stale), ``_obs`` (view
observers by key), ``_hooks`` (listeners, or None) and ``_tree`` (the Tree, on roots only).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from mst_llm.core.base.pointer import json_patch_path
from mst_llm.errors import DeadNodeError, ValidationError

NODE_SLOTS = ("_parent", "_key", "_snap", "_dirty", "_obs", "_hooks", "_tree")


class Tree:
    """State shared by every node of one tree; owned by the root node."""

    __slots__ = ("dupes", "env", "ids", "lock", "protected", "safe_refs", "seq")

    def __init__(self, env: Any = None) -> None:
        self.env = env
        # held by every transaction from its first read to its commit and delivery, and while a view computes
        self.lock = threading.RLock()
        self.seq = 0  # committed transactions that changed the tree
        self.ids: dict[Any, dict[str, Any]] = {}
        # (family, identifier) -> the nodes that hold an identifier ``ids`` already gives to another node; only a
        # transaction in progress may leave any here (see register_subtree)
        self.dupes: dict[tuple[Any, str], list[Any]] = {}
        self.protected = True
        # (family, identifier) -> {(id(holder), key): (holder, key)} for safe references; verified when used
        self.safe_refs: dict[tuple[Any, str], dict[tuple[int, Any], tuple[Any, Any]]] = {}


class Hooks:
    """Listeners attached to one node. Allocated only for nodes that have any."""

    __slots__ = ("action", "commit", "disposers", "middleware", "patch", "snapshot")

    def __init__(self) -> None:
        self.disposers: list[Callable[[], Any]] = []  # add_disposer: run once the node is destroyed or detached
        self.patch: list[Callable[..., Any]] = []
        self.commit: list[Callable[..., Any]] = []
        self.snapshot: list[Callable[..., Any]] = []
        self.action: list[Callable[..., Any]] = []
        self.middleware: list[Callable[..., Any]] = []

    def empty(self) -> bool:
        return not (self.patch or self.commit or self.snapshot or self.action or self.middleware or self.disposers)


class NodeSlots:
    """Declares the bookkeeping slots for the type checker; each node class lays them out itself."""

    __slots__ = ()

    _parent: Any
    _key: Any
    _snap: Any
    _dirty: set[Any] | None
    _obs: dict[Any, set[Any]] | None
    _hooks: Hooks | None
    _tree: Tree | None


class ModelNodeBase(NodeSlots):
    """Base class of every @model class; holds the node bookkeeping slots."""

    __slots__ = (*NODE_SLOTS, "_views", "__weakref__")

    _views: dict[str, Any] | None
    _mst_class_reads: Any = None  # views that read a field of many nodes of this class (see reactivity)


def is_node(value: Any) -> bool:
    return hasattr(type(value), "_mst_kind")


def root_of(node: Any) -> Any:
    parent = node._parent
    while parent is not None:
        node = parent
        parent = node._parent
    return node


def tree_of(node: Any) -> Tree:
    return root_of(node)._tree  # type: ignore[no-any-return]


def hooks_of(node: Any) -> Hooks:
    hooks = node._hooks
    if hooks is None:
        hooks = node._hooks = Hooks()
    return hooks  # type: ignore[no-any-return]


def add_listener(node: Any, kind: str, listener: Callable[..., Any]) -> Callable[[], None]:
    """Attach ``listener`` to the ``kind`` list of node's hooks; return its disposer."""
    check_alive(node)
    hooks = hooks_of(node)
    listeners: list[Callable[..., Any]] = getattr(hooks, kind)
    listeners.append(listener)

    def dispose() -> None:
        if listener in listeners:
            listeners.remove(listener)
        if node._hooks is hooks and hooks.empty():
            node._hooks = None

    return dispose


def is_alive(node: Any) -> bool:
    """False once the node was destroyed or removed from its tree."""
    return not getattr(type(node), "_mst_dead", False)


def check_alive(node: Any) -> None:
    if getattr(type(node), "_mst_dead", False):
        raise DeadNodeError(f"{describe(node)} is dead (it was removed from its tree or destroyed)")


def describe(node: Any) -> str:
    cls = type(node)
    if getattr(cls, "_mst_dead", False):
        cls = cls.__mro__[1]
    return f"{cls.__name__} node"


def walk_nodes(node: Any) -> Iterator[Any]:
    """``node`` and every node below it, parents before children."""
    stack = [node]
    pop, extend = stack.pop, stack.extend
    while stack:
        current = pop()
        yield current
        kids = current._mst_children()
        if kids:
            extend(reversed(kids))


# --- identifiers and safe references --------------------------------------------------------------------


def register_subtree(tree: Tree, node: Any) -> None:
    """Enter the identifiers and safe references of ``node``'s subtree into ``tree``.

    An identifier that another node of the tree already holds is noted in ``tree.dupes`` instead of refused:
    a transaction may pass through such a state (a node moving from a dict to a list is added before the old
    one is removed), so uniqueness is a property of committed states, checked by :func:`check_unique_ids`.
    """
    for current in walk_nodes(node):
        family = current._mst_id_family
        if family is not None:
            ident = current._mst_identifier()
            if ident is not None:
                index = tree.ids.get(family)
                if index is None:
                    index = tree.ids[family] = {}
                other = index.get(ident)
                if other is None:
                    index[ident] = current
                elif other is not current:
                    tree.dupes.setdefault((family, ident), []).append(current)
        current._mst_register_refs(tree)


def unregister_subtree(tree: Tree, node: Any) -> list[tuple[Any, str]]:
    """Remove the identifiers of ``node``'s subtree from ``tree``; return the (family, identifier) pairs that
    no node of the tree holds any more."""
    removed: list[tuple[Any, str]] = []
    dupes = tree.dupes
    for current in walk_nodes(node):
        family = current._mst_id_family
        if family is None:
            continue
        ident = current._mst_identifier()
        index = tree.ids.get(family)
        if index is None:
            continue
        others = dupes.get((family, ident)) if dupes else None
        if index.get(ident) is current:
            if others:
                index[ident] = others.pop(0)  # another holder takes the identifier over
            else:
                del index[ident]
                removed.append((family, ident))
        elif others:
            for position, other in enumerate(others):
                if other is current:
                    del others[position]
                    break
        if others is not None and not others:
            del dupes[(family, ident)]
    return removed


def check_unique_ids(tree: Tree) -> None:
    """Raise ValidationError naming both paths of each identifier that two nodes of ``tree`` hold."""
    if not tree.dupes:
        return
    errors = []
    for (family, ident), others in tree.dupes.items():
        first = path_of(tree.ids[family][ident])
        for other in others:
            errors.append(
                (path_of(other), f"duplicate identifier {ident!r} for type {family.__name__} (also at {first!r})")
            )
    raise ValidationError(errors)


def keys_up(node: Any) -> list[Any]:
    """The keys from ``node`` up to its root, innermost first (``relative_path`` takes them so)."""
    keys = []
    parent = node._parent
    while parent is not None:
        keys.append(node._key)
        node = parent
        parent = node._parent
    return keys


def path_parts_of(node: Any) -> list[Any]:
    parts = keys_up(node)
    parts.reverse()
    return parts


def path_of(node: Any) -> str:
    return json_patch_path(path_parts_of(node))


def snapshot_of(node: Any) -> Any:
    """The node's snapshot: its cache, rebuilt first where it went stale."""
    snap = node._snap
    if snap is not None and node._mst_kind == "model":
        return snap
    return node._mst_snapshot()
