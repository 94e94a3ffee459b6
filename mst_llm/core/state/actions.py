"""Action calls as middleware and listeners see them: the call record, the middleware chain, the flow a call
belongs to, and the JSON form of a call (for on_action, session logs and replay)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

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

    __slots__ = ("args", "context", "id", "kwargs", "name", "parent_call", "pinned", "tree")

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
        # where the call started, noted by run_action/``pin_nodes`` for a call that listeners see: (the keys from
        # its node up to the root, innermost first; id(node) -> (path parts, identifier) or (None, snapshot) for
        # node arguments)
        self.pinned: tuple[list[Any], dict[int, tuple[list[Any] | None, Any]]] | None = None

    def __repr__(self) -> str:
        return f"ActionCall({self.name!r}, id={self.id})"


class FlowSegment(NamedTuple):
    """Which flow run a transaction belongs to: the flow's name, a per-process run id, the segment number (1 runs
    up to the first ``await``), and the flow's call (its node and arguments), so that every segment's record names
    the whole call, not only the first one's. ``serialise_call`` takes it as it takes an ActionCall."""

    name: str
    id: int
    segment: int
    context: Any
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    keys: list[Any]  # from the flow's node up to the root when the flow started, innermost first (keys_up)


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


def pin_nodes(call: ActionCall) -> None:
    """Before an outermost call runs, note where the nodes among its arguments are, so that its JSON form names
    them as they were when it started (an action that removes the node it was given still replays): a node in the
    call's tree by its path, any other node by its snapshot. (``run_action`` calls it only when the arguments are
    not all PLAIN_ARGUMENTS.)"""
    forms: dict[int, tuple[list[Any] | None, Any]] = {}
    for node in _nodes_in((*call.args, *call.kwargs.values())):
        forms[id(node)] = _node_place(node, call.tree)
    call.pinned = (keys_up(call.context), forms)


def _nodes_in(values: Iterable[Any]) -> Iterator[Any]:
    for value in values:
        if is_node(value):
            yield value
        elif isinstance(value, dict) and not isinstance(value, FrozenDict):
            yield from _nodes_in(value.values())
        elif isinstance(value, (list, tuple)) and not isinstance(value, FrozenList):
            yield from _nodes_in(value)


def serialise_call(call: ActionCall | FlowSegment, depth: int) -> dict[str, Any]:
    """The JSON form of an action call, its path relative to the node ``depth`` levels above its context."""
    keys = _started_at(call)[0]
    args = call.args
    result: dict[str, Any] = {"name": call.name, "path": relative_path(keys, depth), "args": list(args)}
    if call.kwargs or not PLAIN_ARGUMENTS.issuperset(map(type, args)):
        node_form = _node_form(call, depth)
        result["args"] = [to_json_value(arg, node_form) for arg in args]
        if call.kwargs:
            result["kwargs"] = {key: to_json_value(value, node_form) for key, value in call.kwargs.items()}
    return result


def _node_form(call: ActionCall | FlowSegment, depth: int) -> Callable[[Any], Any]:
    """How ``serialise_call`` writes a node argument: ``{NODE_PATH: path, "id": identifier}``, the path relative to
    the listener's node (``depth`` levels above the call's) and the identifier if it has one, when it is in the
    call's tree, else its snapshot; as ``pin_nodes`` noted them when the call started (a flow's node arguments
    are named as they are when its segment's commit is read)."""
    keys, forms = _started_at(call)
    context_parts = keys[::-1]
    base = context_parts[: len(context_parts) - depth]
    root = root_of(call.context)

    def node_form(node: Any) -> Any:
        parts, detail = forms.get(id(node)) or _node_place(node, root)
        if parts is None:
            return detail  # the snapshot of a node of another tree
        form = {NODE_PATH: relative_pointer(base, parts)}
        if detail is not None:
            form["id"] = detail
        return form

    return node_form


def _started_at(call: ActionCall | FlowSegment) -> tuple[list[Any], dict[int, tuple[list[Any] | None, Any]]]:
    """Where the call's node was when the call started (it may have moved since: its JSON form is built when first
    read) and its pinned node arguments; where the node is now for a call nobody listened to."""
    if isinstance(call, FlowSegment):
        return call.keys, NO_NODE_ARGUMENTS
    if call.pinned is not None:
        return call.pinned
    return keys_up(call.context), NO_NODE_ARGUMENTS


NO_NODE_ARGUMENTS: dict[int, tuple[list[Any] | None, Any]] = {}  # the pinned node arguments of a call without any


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
