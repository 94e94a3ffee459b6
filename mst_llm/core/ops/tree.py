"""The tree functions users call: navigation, identity, liveness, protection, action listeners, middleware."""

from __future__ import annotations

import inspect
import typing
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from mst_llm.core.base.pointer import list_index, relative_pointer, split_relative_path
from mst_llm.core.base.values import is_value_hint, value_converter
from mst_llm.core.kinds.annotations import to_type
from mst_llm.core.kinds.base import _unwrap
from mst_llm.core.kinds.dict import DictType
from mst_llm.core.kinds.list import ListType
from mst_llm.core.ops.patches import apply_patch
from mst_llm.core.ops.snapshots import apply_snapshot, get_snapshot, node_type
from mst_llm.core.state import lifecycle, reactivity
from mst_llm.core.state.actions import NODE_PATH, ActionCall
from mst_llm.core.state.node import (
    Tree,
    add_listener,
    check_alive,
    is_alive,
    is_node,
    path_of,
    path_parts_of,
    register_subtree,
    root_of,
    tree_of,
)
from mst_llm.core.state.transaction import Commit, _running_call, current_tx, run_action, write_tx
from mst_llm.core.state.write import write
from mst_llm.errors import InvalidReferenceError, MSTError, PathNotFoundError

T = TypeVar("T")

__all__ = [
    "ActionCall",
    "add_middleware",
    "apply_action",
    "clone",
    "destroy",
    "detach",
    "get_env",
    "get_identifier",
    "get_members",
    "get_parent",
    "get_parent_of_type",
    "get_path",
    "get_path_parts",
    "get_relative_path",
    "get_root",
    "get_running_action_context",
    "get_type",
    "has_parent",
    "is_alive",
    "is_protected",
    "is_root",
    "is_state_tree_node",
    "is_valid_reference",
    "on_action",
    "protect",
    "record_actions",
    "resolve_identifier",
    "resolve_path",
    "try_reference",
    "try_resolve",
    "typecheck",
    "unprotect",
    "walk",
]


def _node(value: Any) -> Any:
    if not is_node(value):
        raise MSTError(f"expected a tree node, got {type(value).__name__}")
    return value


def is_state_tree_node(value: Any) -> bool:
    """Whether ``value`` is a tree node (a model, list or dict node), alive or dead."""
    return is_node(value)


def get_parent(node: Any, depth: int = 1) -> Any:
    """The ancestor ``depth`` levels up (MSTError if there is none)."""
    current = _node(node)
    for _ in range(depth):
        current = current._parent
        if current is None:
            raise MSTError(f"{type(node).__name__} node has no parent {depth} level(s) up")
    reactivity.track_contents(current)
    return current


def has_parent(node: Any, depth: int = 1) -> bool:
    """Whether ``node`` has an ancestor ``depth`` levels up."""
    current = _node(node)
    for _ in range(depth):
        current = current._parent
        if current is None:
            return False
    return True


def get_parent_of_type(node: Any, cls: type[T]) -> T:
    """The nearest ancestor that is an instance of ``cls`` (MSTError if there is none)."""
    current = _node(node)._parent
    while current is not None:
        if isinstance(current, cls):
            reactivity.track_contents(current)
            return current
        current = current._parent
    raise MSTError(f"{type(node).__name__} node has no ancestor of type {cls.__name__}")


def get_root(node: Any) -> Any:
    """The root node of ``node``'s tree."""
    return root_of(_node(node))


def is_root(node: Any) -> bool:
    """Whether ``node`` has no parent."""
    return _node(node)._parent is None


def get_path(node: Any) -> str:
    """``node``'s JSON pointer from the root (RFC 6901; ``""`` for the root)."""
    return path_of(_node(node))


def get_path_parts(node: Any) -> list[str]:
    """``node``'s path from the root as unescaped parts (``[]`` for the root)."""
    return [str(part) for part in path_parts_of(_node(node))]


def resolve_path(node: Any, path: str) -> Any:
    """The value at a path relative to ``node`` (PathNotFoundError when absent): a JSON pointer ("/a/0", ".."
    parts go up) or, as in MST, a path starting with "." ("./a", "../b/c")."""
    current: Any = _node(node)
    parts = split_relative_path(path)
    for part in parts:
        kind = getattr(type(current), "_mst_kind", None)
        if part == "..":
            current = current._parent if kind is not None else None
            if current is None:
                raise PathNotFoundError(f"{path!r}: no parent to go up to")
            continue
        if kind == "model":
            fields = type(current)._mst_fields
            if part not in fields:
                raise PathNotFoundError(f"{path!r}: {type(current).__name__} has no field {part!r}")
            current = getattr(current, part)
        elif kind == "list":
            reactivity.track_contents(current)
            try:
                current = current[list_index(part, len(current))]
            except PathNotFoundError as error:
                raise PathNotFoundError(f"{path!r}: {error}") from None
        elif kind == "dict":
            reactivity.track_contents(current)
            if part not in current:
                raise PathNotFoundError(f"{path!r}: no key {part!r}")
            current = current[part]
        else:
            raise PathNotFoundError(f"{path!r}: cannot descend into {type(current).__name__} at {part!r}")
    reactivity.track_contents(current)
    return current


def try_resolve(node: Any, path: str) -> Any:
    """Like ``resolve_path``, but None instead of an error when the path leads nowhere."""
    try:
        return resolve_path(node, path)
    except (PathNotFoundError, MSTError):
        return None


def get_identifier(node: Any) -> str | None:
    """The node's identifier as a string (``"3"`` for ``IdentifierNumber`` 3), or None."""
    return _node(node)._mst_identifier()  # type: ignore[no-any-return]


def resolve_identifier(cls: type[T], node: Any, identifier: str | int) -> T | None:
    """The node of type ``cls`` with ``identifier`` in ``node``'s tree, or None."""
    cls._mst_prepare()  # type: ignore[attr-defined]
    family = cls._mst_id_family  # type: ignore[attr-defined]
    if family is None:
        raise MSTError(f"{cls.__name__} has no identifier field")
    found = tree_of(_node(node)).ids.get(family, {}).get(str(identifier))
    return found if found is not None and isinstance(found, cls) else None


def get_env(node: Any) -> Any:
    """The environment passed to ``create`` for ``node``'s tree (None when there is none)."""
    return tree_of(_node(node)).env


def get_type(node: Any) -> Any:
    """The model class for model nodes; the list/dict type object for containers."""
    node = _node(node)
    cls = type(node)
    if getattr(cls, "_mst_dead", False):
        cls = cls.__mro__[1]
    return cls if cls._mst_kind == "model" else node._type


def walk(node: Any, fn: Callable[[Any], Any]) -> None:
    """Call ``fn`` on every node of the subtree, children before parents (as MST does)."""
    for current in lifecycle.post_order(_node(node)):
        fn(current)


def protect(node: Any) -> None:
    """Protect ``node``'s tree again: changes only through actions."""
    tree_of(_node(node)).protected = True


def unprotect(node: Any) -> None:
    """Allow changes outside actions on the whole tree (each one its own transaction); takes the root."""
    root = root_of(_node(node))
    if root is not node:
        raise MSTError("unprotect() works on the root of a tree")
    root._tree.protected = False


def is_protected(node: Any) -> bool:
    """Whether ``node``'s tree accepts changes only through actions."""
    return bool(tree_of(_node(node)).protected)


def detach(node: Any) -> Any:
    """Take ``node`` out of its parent, alive, as the root of a new tree (emits the removal patch)."""
    _node(node)
    check_alive(node)
    if node._parent is None:
        return node
    _remove_from_parent(node, detach=True)
    return node


def destroy(node: Any) -> None:
    """Remove ``node`` from its tree and kill it; later use raises DeadNodeError."""
    _node(node)
    if not is_alive(node):
        return
    if node._parent is None:
        lifecycle.kill_root(node)
        return
    _remove_from_parent(node, detach=False)


def _remove_from_parent(node: Any, detach: bool) -> None:
    parent = node._parent
    key = node._key

    def remove(parent: Any) -> None:
        if detach:
            lifecycle.detach_child(current_tx(), node)  # type: ignore[arg-type]
        kind = parent._mst_kind
        if kind == "list":
            parent._mst_splice(key, 1, [])
        elif kind == "dict":
            del parent[key]
        else:
            spec = type(parent)._mst_fields[key]
            empty = _empty_container(spec.type) if detach else None
            if empty is None:
                setattr(parent, key, None)
            else:  # MST: a detached list/dict field is left holding a new empty one
                write(current_tx(), parent, key, spec.type, node, empty)  # type: ignore[arg-type]

    write_tx(parent)  # raises ProtectionError where the change is not allowed
    run_action(parent, None, remove, (), {})


def _empty_container(type_: Any) -> Any:
    base = _unwrap(type_)
    if isinstance(base, (ListType, DictType)):
        return base.create([] if isinstance(base, ListType) else {})
    return None


def clone(node: Any, keep_env: bool = True) -> Any:
    """A new tree equal to ``node``'s subtree (with the same env unless ``keep_env`` is False)."""
    node = _node(node)
    snapshot = get_snapshot(node)
    type_ = node_type(node)
    cls = get_type(node)
    env = tree_of(node).env if keep_env and is_alive(node) else None
    if isinstance(cls, type):
        return cls.create(snapshot, env=env)  # type: ignore[attr-defined]
    copy = type_.create(snapshot)
    copy._tree = Tree(env)
    register_subtree(copy._tree, copy)
    return copy


# --- action listeners and middleware ---------------------------------------------------------------------


def add_disposer(node: Any, disposer: Callable[[], Any]) -> Callable[[], None]:
    """Run ``disposer()`` once ``node`` is destroyed or detached (after that commit); returns a function that
    takes it back. Use it to stop reactions and release resources a node owns (MST ``addDisposer``)."""
    return add_listener(_node(node), "disposers", disposer)


def on_commit(node: Any, listener: Callable[[Commit], None]) -> Callable[[], None]:
    """Call ``listener(commit)`` once per committed transaction that changed ``node``'s subtree, after its patch
    and snapshot listeners; returns the disposer. The seam every observer of the tree builds on (undo, time
    travel, session logs, persistence)."""
    return add_listener(_node(node), "commit", listener)


def on_action(node: Any, listener: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
    """Call ``listener({"name", "path", "args"})`` after each outermost action on ``node``'s subtree."""
    return add_listener(_node(node), "action", listener)


def add_middleware(node: Any, handler: Callable[[ActionCall, Callable[..., Any]], Any]) -> Callable[[], None]:
    """Intercept every action call on ``node``'s subtree: ``handler(call, next_)`` returns ``next_(call)``."""
    return add_listener(_node(node), "middleware", handler)


def apply_action(node: Any, call: dict[str, Any] | list[dict[str, Any]]) -> Any:
    """Replay a serialised action call (or a list of them) on ``node``'s subtree."""
    calls = call if isinstance(call, list) else [call]
    result = None
    for one in calls:
        target = resolve_path(node, one.get("path", ""))
        name = one["name"]
        args = one.get("args", [])
        kwargs = one.get("kwargs", {})
        if name == "@APPLY_PATCHES":
            apply_patch(target, args[0])
            result = None
        elif name == "@APPLY_SNAPSHOT":
            apply_snapshot(target, args[0])
            result = None
        else:
            method = getattr(type(target), name, None)
            if method is None or not getattr(method, "_mst_action", False):
                raise MSTError(f"{type(target).__name__} has no action {name!r}")
            args, kwargs = _structure_arguments(method, target, _with_nodes(node, args), _with_nodes(node, kwargs))
            result = getattr(target, name)(*args, **kwargs)
    return result


def _with_nodes(base: Any, value: Any) -> Any:
    """A recorded argument with each ``{"$MST_NODE_PATH": path}`` (and ``"id"``) replaced by the node it names,
    from ``base`` (the node the call was recorded on)."""
    if isinstance(value, list):
        return [_with_nodes(base, item) for item in value]
    if isinstance(value, dict):
        path = value.get(NODE_PATH)
        if isinstance(path, str) and value.keys() <= {NODE_PATH, "id"}:
            return _recorded_node(base, path, value.get("id"))
        return {key: _with_nodes(base, item) for key, item in value.items()}
    return value


def _recorded_node(base: Any, path: str, identifier: str | None) -> Any:
    """The node at ``path`` from ``base``; for a node recorded with its identifier, the node in the tree that has
    it when the one at ``path`` does not (the tree changed since the call, as when a replica re-runs it on a newer
    state): by identifier, a call never acts on another node than the one it was given."""
    if identifier is None:
        return resolve_path(base, path)
    found = try_resolve(base, path)
    if is_state_tree_node(found) and found._mst_identifier() == identifier:
        return found
    holders = [nodes[identifier] for nodes in tree_of(_node(base)).ids.values() if identifier in nodes]
    if is_state_tree_node(found) and len(holders) > 1:
        holders = [holder for holder in holders if type(holder) is type(found)]
    if len(holders) != 1:
        raise MSTError(f"the call names the node with identifier {identifier!r} (then at {path!r}): not in the tree")
    return holders[0]


_hints: weakref.WeakKeyDictionary[Callable[..., Any], dict[str, Any]] = weakref.WeakKeyDictionary()


def _value_hints(method: Callable[..., Any]) -> dict[str, Any]:
    """The parameters of an action whose JSON form ``value_converter`` structures back, with their hints
    (none when the hints cannot be resolved: the JSON form is then passed as it is)."""
    found = _hints.get(method)
    if found is None:
        try:
            hints = typing.get_type_hints(method)
        except (NameError, TypeError):
            hints = {}
        found = _hints[method] = {key: hint for key, hint in hints.items() if key != "return" and is_value_hint(hint)}
    return found


def _structure_arguments(
    method: Callable[..., Any], target: Any, args: list[Any], kwargs: dict[str, Any]
) -> tuple[list[Any], dict[str, Any]]:
    """A recorded call's arguments with their JSON forms turned back into the values the action's hints name."""
    hints = _value_hints(method)
    if not hints:
        return args, kwargs
    try:
        bound = inspect.signature(method).bind(target, *args, **kwargs)
    except TypeError:
        return args, kwargs  # the call itself reports the mismatch
    for key, hint in hints.items():
        if key in bound.arguments:
            bound.arguments[key] = value_converter.structure(bound.arguments[key], hint)
    return list(bound.args[1:]), bound.kwargs


class ActionRecorder:
    """Records the serialised action calls on a subtree."""

    def __init__(self, node: Any) -> None:
        self.actions: list[dict[str, Any]] = []
        self._dispose: Callable[[], None] | None = on_action(node, self.actions.append)

    def stop(self) -> None:
        if self._dispose is not None:
            self._dispose()
            self._dispose = None

    def replay(self, target: Any) -> None:
        apply_action(target, list(self.actions))


def record_actions(node: Any) -> ActionRecorder:
    """Record the outermost action calls on ``node``'s subtree: ``.actions``, ``.stop()``, ``.replay(target)``."""
    return ActionRecorder(node)


# --- MST parity: members, relative paths, references, the running action, typecheck -----------------------


def get_relative_path(base: Any, target: Any) -> str:
    """The shortest path from ``base`` to ``target`` in the same tree (MST ``getRelativePath``), one that
    ``resolve_path(base, ...)`` follows: "../b/c" goes up then down, "/todos/1" down, ".." up, "" stays."""
    if root_of(_node(base)) is not root_of(_node(target)):
        raise MSTError(f"{type(base).__name__} and {type(target).__name__} nodes are not in the same tree")
    return relative_pointer(path_parts_of(base), path_parts_of(target))


def get_members(node: Any) -> dict[str, Any]:
    """What ``node``'s type declares (MST ``getMembers``): ``name``, ``properties`` (field -> type),
    ``actions``, ``views`` and ``volatile`` (field names); lists and dicts declare only their name."""
    type_ = get_type(node)
    if not isinstance(type_, type):
        return {"name": type_.name, "properties": {}, "actions": [], "views": [], "volatile": []}
    fields = type_._mst_fields  # type: ignore[attr-defined]
    members = {name: getattr(type_, name, None) for name in dir(type_) if not name.startswith("__")}
    return {
        "name": type_.__name__,
        "properties": {name: spec.type for name, spec in fields.items() if spec.volatile is None},
        "actions": sorted(name for name, member in members.items() if getattr(member, "_mst_action", False)),
        "views": sorted(name for name, member in members.items() if isinstance(member, reactivity._View)),
        "volatile": [name for name, spec in fields.items() if spec.volatile is not None],
    }


def try_reference(getter: Callable[[], T], check_if_alive: bool = True) -> T | None:
    """``getter()`` (which reads a reference), or None when the reference does not resolve or, with
    ``check_if_alive``, resolves to a dead node (MST ``tryReference``)."""
    try:
        found = getter()
    except InvalidReferenceError:
        return None
    if check_if_alive and is_node(found) and not is_alive(found):
        return None
    return found


def is_valid_reference(getter: Callable[[], Any], check_if_alive: bool = True) -> bool:
    """Whether ``getter()`` reads a reference that resolves (MST ``isValidReference``)."""
    return try_reference(getter, check_if_alive) is not None


def get_running_action_context() -> ActionCall | None:
    """The innermost action running on this thread (``name``, ``context``, ``args``, ``parent_call``), or None
    outside actions (MST ``getRunningActionContext``)."""
    tx = current_tx()
    call = None if tx is None else _running_call(tx)
    return call if call is not None and call.name else None


def typecheck(annotation: Any, value: Any) -> None:
    """Raise ValidationError when ``value`` (a snapshot or a value) is not valid for ``annotation`` (a model
    class, any field annotation or an mst_llm type) (MST ``typecheck``)."""
    to_type(annotation).check(value)
