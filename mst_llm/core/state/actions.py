"""Action calls as middleware and listeners see them: the call record, the middleware chain, the flow a call
belongs to, and the JSON form of a call (for on_action, session logs and replay)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple, TypeAlias

from mst_llm.core.base.frozen import FrozenDict, FrozenList
from mst_llm.core.base.pointer import relative_pointer
from mst_llm.core.base.values import is_value_annotation, value_converter
from mst_llm.core.state.change import relative_path
from mst_llm.core.state.node import is_node, keys_up, path_parts_of, root_of, snapshot_of

# the JSON form of a node argument in the call's tree: {NODE_PATH: its path}, and "id": its identifier if it has one
NODE_PATH = "$MST_NODE_PATH"

_call_ids = itertools.count(1)


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


NodePlaces: TypeAlias = dict[int, tuple[list[Any] | None, Any]]
"""The node arguments of a call where they were when it started: id(node) -> (path parts, identifier) for a node in
the call's tree, (None, snapshot) for a node of another tree (see ``pin_call``)."""

ListenedCall: TypeAlias = tuple[str, Any, tuple[Any, ...], dict[str, Any], list[Any], NodePlaces]
"""An outermost call as its listeners see it, taken when it started: ``(name, node, args, kwargs, keys, places)``,
``keys`` running from the node up to the root (innermost first). Its JSON form (``serialise_call``) names the node
and the node arguments where they were then, whenever it is read: an action that moves or removes them still
replays. A plain tuple: an ``ActionCall`` costs ~2,400 instructions more to build (callgrind), once per action
that someone listens to, and the listeners of a call without middleware need nothing else."""


class FlowSegment(NamedTuple):
    """Which flow run a transaction belongs to: the flow's name, a per-process run id, the segment number (1 runs
    up to the first ``await``), and the flow's call as it started (its node, arguments and keys), so that every
    segment's record names the whole call, not only the first one's."""

    name: str
    id: int
    segment: int
    call: ListenedCall


def run_middleware(
    chain: list[tuple[Any, tuple[Callable[..., Any], ...]]], call: ActionCall, base: Callable[[ActionCall], Any]
) -> Any:
    # ancestors' middleware runs before descendants'; on one node, in the order it was added
    handlers = [handler for _, group in reversed(chain) for handler in group]

    def step(index: int, current: ActionCall) -> Any:
        if index == len(handlers):
            return base(current)
        return handlers[index](current, lambda next_call=current: step(index + 1, next_call))

    return step(0, call)


# arguments written as they are (``PLAIN_ARGUMENTS.issuperset(map(type, args))`` is the C-speed test for a call)
PLAIN_ARGUMENTS = frozenset({str, int, float, bool, type(None)})


def pin_call(name: str, node: Any, root: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ListenedCall:
    """Before an outermost call runs, note where its node and the nodes among its arguments are, so that its JSON
    form names them as they were when it started: a node in the call's tree by its path, any other node by its
    snapshot. (``run_action`` takes the keys itself for a call whose arguments are all PLAIN_ARGUMENTS.)"""
    places: NodePlaces = {}
    for argument in _nodes_in((*args, *kwargs.values())):
        places[id(argument)] = _node_place(argument, root)
    return name, node, args, kwargs, keys_up(node), places


def _nodes_in(values: Iterable[Any]) -> Iterator[Any]:
    for value in values:
        if is_node(value):
            yield value
        elif isinstance(value, dict) and not isinstance(value, FrozenDict):
            yield from _nodes_in(value.values())
        elif isinstance(value, (list, tuple)) and not isinstance(value, FrozenList):
            yield from _nodes_in(value)


def serialise_call(call: ListenedCall, depth: int) -> dict[str, Any]:
    """The JSON form of an action call, its path relative to the node ``depth`` levels above the call's node.

    Reads nothing but the call record for a call whose arguments are all PLAIN_ARGUMENTS, so such a call may be
    serialised later, in another thread (``record_session(flush="batch")``)."""
    name, node, args, kwargs, keys, places = call
    if has_plain_arguments(call):
        return {"name": name, "path": relative_path(keys, depth), "args": list(args)}
    node_form = _node_form(node, keys, places, depth)
    result: dict[str, Any] = {"name": name, "path": relative_path(keys, depth)}
    result["args"] = [to_json_value(arg, node_form) for arg in args]
    if kwargs:
        result["kwargs"] = {key: to_json_value(value, node_form) for key, value in kwargs.items()}
    return result


def has_plain_arguments(call: ListenedCall) -> bool:
    """Whether ``serialise_call`` writes the call's arguments as they are (it then reads nothing else)."""
    return not call[3] and (not call[2] or PLAIN_ARGUMENTS.issuperset(map(type, call[2])))


def _node_form(node: Any, keys: list[Any], places: NodePlaces, depth: int) -> Callable[[Any], Any]:
    """How ``serialise_call`` writes a node argument: ``{NODE_PATH: path, "id": identifier}``, the path relative to
    the listener's node (``depth`` levels above the call's) and the identifier if it has one, when it is in the
    call's tree, else its snapshot; as ``pin_call`` noted them when the call started (a flow's node arguments
    are named as they are when its segment's commit is read)."""
    context_parts = keys[::-1]
    base = context_parts[: len(context_parts) - depth]
    root = root_of(node)

    def node_form(argument: Any) -> Any:
        parts, detail = places.get(id(argument)) or _node_place(argument, root)
        if parts is None:
            return detail  # the snapshot of a node of another tree
        form = {NODE_PATH: relative_pointer(base, parts)}
        if detail is not None:
            form["id"] = detail
        return form

    return node_form


NO_NODE_ARGUMENTS: NodePlaces = {}  # the pinned node arguments of a call without any


def _node_place(node: Any, root: Any) -> tuple[list[Any] | None, Any]:
    """(path parts, identifier or None) of a node in ``root``'s tree; (None, its snapshot) of any other node."""
    if root_of(node) is root:
        return path_parts_of(node), node._mst_identifier()
    return None, snapshot_of(node)


def to_json_value(value: Any, node_form: Callable[[Any], Any]) -> Any:
    """A JSON-ready form of an action argument: nodes as ``node_form`` writes them, values (datetimes, enums,
    frozen dataclasses, ...) their ``value_converter`` JSON form, which ``apply_action`` structures back."""
    if is_node(value):
        return node_form(value)
    if type(value) in PLAIN_ARGUMENTS or isinstance(value, (FrozenDict, FrozenList)):
        return value
    if isinstance(value, dict):
        return {str(key): to_json_value(item, node_form) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_value(item, node_form) for item in value]
    if is_value_annotation(type(value)):
        return value_converter.unstructure(value)
    if isinstance(value, (str, int, float)):
        return value  # a subclass of a JSON scalar is written as one
    return {"$MST_UNSERIALIZABLE": True, "type": type(value).__name__}
