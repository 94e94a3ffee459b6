"""Action calls as middleware and listeners see them: the call record, the middleware chain, the flow a call
belongs to, and the JSON form of a call (for on_action, session logs and replay)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, NamedTuple

from mst_llm.core.base.frozen import FrozenDict, FrozenList
from mst_llm.core.base.values import is_value_annotation, value_converter
from mst_llm.core.state.change import relative_path
from mst_llm.core.state.node import is_node, snapshot_of

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


class FlowSegment(NamedTuple):
    """Which flow run a transaction belongs to: the flow's name, a per-process run id, and the segment number
    (1 runs up to the first ``await``)."""

    name: str
    id: int
    segment: int


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
        args = tuple(to_json_value(arg) for arg in args)
    result: dict[str, Any] = {"name": call.name, "path": relative_path(keys, depth), "args": list(args)}
    if call.kwargs:
        result["kwargs"] = {key: to_json_value(value) for key, value in call.kwargs.items()}
    return result


def to_json_value(value: Any) -> Any:
    """A JSON-ready form of an action argument: nodes become their snapshots, values (datetimes, enums, frozen
    dataclasses, ...) their ``value_converter`` JSON form, which ``apply_action`` structures back."""
    if is_node(value):
        return snapshot_of(value)
    if type(value) in _PLAIN_ARGUMENTS or isinstance(value, (FrozenDict, FrozenList)):
        return value
    if isinstance(value, dict):
        return {str(key): to_json_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_value(item) for item in value]
    if is_value_annotation(type(value)):
        return value_converter.unstructure(value)
    if isinstance(value, (str, int, float)):
        return value  # a subclass of a JSON scalar is written as one
    return {"$MST_UNSERIALIZABLE": True, "type": type(value).__name__}
