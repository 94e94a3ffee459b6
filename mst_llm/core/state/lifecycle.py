"""Attaching, removing and destroying nodes inside a transaction, with their lifecycle hooks.

A removed node dies at once (its class is swapped for a dead twin whose attribute access raises
DeadNodeError, so live nodes pay nothing for the check); a rollback revives the very same objects.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, NoReturn

from mst_llm.core.base import context
from mst_llm.core.state import reactivity
from mst_llm.core.state.node import (
    Tree,
    check_unique_ids,
    register_subtree,
    snapshot_of,
    tree_of,
    unregister_subtree,
    walk_nodes,
)
from mst_llm.core.state.transaction import Transaction, call_each, current_tx, run_action
from mst_llm.errors import DeadNodeError, ValidationError

if TYPE_CHECKING:
    from mst_llm.core.kinds.base import Type

HOOK_NAMES = ("after_create", "after_attach", "before_detach", "before_destroy")

# Set to True by @model as soon as any model class defines a lifecycle hook; lets hook-free schemas skip walks.
hooks_in_use = False


def attach(tx: Transaction, child: Any, parent: Any, key: Any) -> None:
    """Make the root ``child`` a child of ``parent`` at ``key`` and enter its identifiers into the tree."""
    if child._parent is not None:
        raise ValidationError([("", f"{type(child).__name__} node is already in a tree; detach() it first")])
    tree = tree_of(parent)
    old_tree = child._tree
    child._parent = parent
    child._key = key
    register_subtree(tree, child)
    child._tree = None
    tx.undo.append((_unattach, child, tree, old_tree))
    if hooks_in_use:
        fire_created(child, attached=True)


def _unattach(child: Any, tree: Tree, old_tree: Tree | None) -> None:
    unregister_subtree(tree, child)
    child._parent = None
    child._tree = old_tree


def remove(tx: Transaction, node: Any) -> None:
    """Take ``node`` out of its parent for good: run before_destroy hooks, unregister and kill its subtree."""
    tree = tree_of(node)
    nodes = _kill_subtree(node)
    removed = unregister_subtree(tree, node)
    parent, key = node._parent, node._key
    node._parent = None
    tx.undo.append((_revive, node, parent, key, nodes, tree))
    if removed and tree.safe_refs:
        check_safe_references(tx, tree, removed)


def _revive(node: Any, parent: Any, key: Any, nodes: list[Any], tree: Tree) -> None:
    for current in nodes:
        current.__class__ = current.__class__.__mro__[1]
        if current._obs:
            reactivity.notify_all(current)
    node._parent = parent
    node._key = key
    register_subtree(tree, node)


def _kill(node: Any) -> None:
    views = getattr(node, "_views", None)
    if views:
        for computed in views.values():
            computed.dispose()
        node._views = None
    if node._obs:
        reactivity.notify_all(node)
    _schedule_disposers(node)
    node.__class__ = dead_class(type(node))


def _schedule_disposers(node: Any) -> None:
    """The node's add_disposer functions run after the commit that destroys or detaches it (not if it rolls
    back), or at once outside a transaction."""
    hooks = node._hooks
    if hooks is None or not hooks.disposers:
        return
    tx = current_tx()
    if tx is None:
        run_disposers(node)
    else:
        disposer = functools.partial(run_disposers, node)
        if tx.disposers is None:
            tx.disposers = [disposer]
        else:
            tx.disposers.append(disposer)


def run_disposers(node: Any) -> None:
    hooks = node._hooks
    disposers, hooks.disposers = hooks.disposers, []
    error = call_each(disposers)
    if error is not None:
        raise error


def kill_root(node: Any) -> None:
    """Destroy a whole tree (outside any transaction)."""
    _kill_subtree(node)


def _kill_subtree(node: Any) -> list[Any]:
    """Run before_destroy hooks (children first), keep the last snapshot, kill every node; return the nodes."""
    if hooks_in_use:
        for current in post_order(node):
            hook = getattr(type(current), "before_destroy", None)
            if hook is not None:
                run_action(current, "before_destroy", hook, (), {})
    snapshot_of(node)  # computed now: a dead node answers get_snapshot with its last state
    nodes = list(walk_nodes(node))
    for current in nodes:
        _kill(current)
    return nodes


def detach_child(tx: Transaction, node: Any) -> Tree:
    """Take ``node`` out of its tree alive, as the root of a new tree; returns the new tree."""
    if hooks_in_use:
        hook = getattr(type(node), "before_detach", None)
        if hook is not None:
            run_action(node, "before_detach", hook, (), {})
    old_tree = tree_of(node)
    removed = unregister_subtree(old_tree, node)
    _schedule_disposers(node)
    new_tree = Tree(old_tree.env)
    new_tree.protected = old_tree.protected
    parent, key = node._parent, node._key
    node._parent = None
    node._tree = new_tree
    register_subtree(new_tree, node)
    tx.undo.append((_undetach, node, parent, key, old_tree))
    check_unique_ids(new_tree)  # the new tree has no later commit that could resolve a duplicate
    if removed and old_tree.safe_refs:
        check_safe_references(tx, old_tree, removed)
    return new_tree


def check_safe_references(tx: Transaction, tree: Tree, removed: list[tuple[Any, str]]) -> None:
    """Queue the safe references to identifiers that left ``tree`` for the check before commit."""
    for family_id in removed:
        holders = tree.safe_refs.get(family_id)
        if holders:
            tx.safe_checks.extend(holders.values())


def register_safe_ref(tree: Tree | None, type_: Type, ident: Any, holder: Any, key: Any) -> None:
    """Remember that ``holder[key]`` safely refers to ``ident`` (so removing the target can clear it), and
    have the running transaction check it before commit."""
    if tree is None:
        tree = tree_of(holder)
    for family in type_.reference().families():
        tree.safe_refs.setdefault((family, str(ident)), {})[(id(holder), key)] = (holder, key)
    tx = current_tx()
    if tx is not None:
        tx.safe_checks.append((holder, key))


def unregister_safe_ref(tree: Tree, type_: Type, ident: Any, holder: Any, key: Any) -> None:
    for family in type_.reference().families():
        holders = tree.safe_refs.get((family, str(ident)))
        if holders is not None:
            holders.pop((id(holder), key), None)


def _undetach(node: Any, parent: Any, key: Any, old_tree: Tree) -> None:
    node._parent = parent
    node._key = key
    node._tree = None
    register_subtree(old_tree, node)


def fire_created(node: Any, attached: bool) -> None:
    """Run after_create (children first) for the nodes built for this subtree, then after_attach (parents
    first) for the built nodes below a parent and for ``node`` itself when it was attached."""
    fresh, context.pending = context.pending, []
    for current in fresh:
        hook = getattr(type(current), "after_create", None)
        if hook is not None:
            run_action(current, "after_create", hook, (), {})
    if attached and not any(current is node for current in fresh):
        fresh.append(node)
    for current in reversed(fresh):
        hook = getattr(type(current), "after_attach", None)
        if hook is not None and current._parent is not None:
            run_action(current, "after_attach", hook, (), {})


def post_order(node: Any) -> list[Any]:
    """Children (in order) before their parent."""
    order: list[Any] = []
    stack: list[tuple[Any, bool]] = [(node, False)]
    while stack:
        current, expanded = stack.pop()
        if expanded:
            order.append(current)
            continue
        stack.append((current, True))
        stack.extend((child, False) for child in reversed(list(current._mst_children())))
    return order


_dead_classes: dict[type, type] = {}


def dead_class(cls: type) -> type:
    """The dead twin of a node class: same layout, every public use raises DeadNodeError."""
    dead = _dead_classes.get(cls)
    if dead is None:
        dead = _dead_classes[cls] = _make_dead_class(cls)
    return dead


def _dead(self: Any, *args: Any, **kwargs: Any) -> NoReturn:
    raise DeadNodeError(
        f"{type(self).__mro__[1].__name__} node is dead (it was removed from its tree or destroyed); "
        "use get_snapshot() for its last state"
    )


def _make_dead_class(cls: type) -> type:
    def __getattribute__(self: Any, name: str) -> Any:
        if name[0] == "_":
            return object.__getattribute__(self, name)
        _dead(self)

    def __setattr__(self: Any, name: str, value: Any) -> None:
        if name[0] == "_" and name not in type(self).__mro__[1].__dict__.get("_mst_field_names", ()):
            object.__setattr__(self, name, value)
            return
        _dead(self)

    def __repr__(self: Any) -> str:
        return f"<dead {cls.__name__} node>"

    namespace: dict[str, Any] = {
        "__slots__": (),
        "_mst_dead": True,
        "__getattribute__": __getattribute__,
        "__setattr__": __setattr__,
        "__repr__": __repr__,
    }
    if issubclass(cls, (list, dict)):
        for name in (
            "__len__",
            "__iter__",
            "__getitem__",
            "__contains__",
            "__setitem__",
            "__delitem__",
            "__eq__",
            "__iadd__",
            "__reversed__",
            "__bool__",
        ):
            namespace[name] = _dead
        namespace["__hash__"] = None
    return type(f"Dead{cls.__name__}", (cls,), namespace)
