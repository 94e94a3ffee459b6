"""``@flow``: an async action whose synchronous segments (between awaits) each run as one transaction."""

from __future__ import annotations

import functools
import inspect
import itertools
from collections.abc import Callable
from typing import Any, TypeVar

import anyio

from mst_llm.core.state.actions import NO_NODE_ARGUMENTS, FlowSegment
from mst_llm.core.state.node import keys_up
from mst_llm.core.state.transaction import run_action

F = TypeVar("F", bound=Callable[..., Any])


class _Yield:
    """Hands one value yielded by the inner coroutine to the event loop and returns what it sends back."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __await__(self) -> Any:
        return (yield self.value)


def flow(fn: F) -> F:
    """An async action: each synchronous segment between awaits runs as its own action (transaction).

    A segment that raises is rolled back, except when it ends by letting a cancellation propagate: the
    changes it made while handling the cancellation (``except Cancelled: self.status = "idle"; raise``)
    commit, then the cancellation continues."""
    if not inspect.iscoroutinefunction(fn):
        raise TypeError("@flow decorates `async def` methods")
    name = fn.__name__

    @functools.wraps(fn)
    async def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        cancelled = anyio.get_cancelled_exc_class()
        coroutine = fn(self, *args, **kwargs)
        step: Callable[..., Any] = _send
        value: Any = None
        segment_name: str | None = name
        run_id = next(_flow_runs)
        keys = keys_up(self)  # where the flow's node is when it starts: every segment's record names it there
        segment = 0
        while True:
            segment += 1
            outcome, result = run_action(
                self,
                segment_name,
                _segment,
                (coroutine, step, value, cancelled),
                {},
                record_args=args,
                flow=FlowSegment(name, run_id, segment, (name, self, args, kwargs, keys, NO_NODE_ARGUMENTS)),
                record_kwargs=kwargs,
            )
            if outcome is _RETURNED:
                return result
            if outcome is _CANCELLED:
                raise result
            segment_name = None
            try:
                value, step = await _Yield(result), _send
            except BaseException as thrown:  # cancellation and errors go back into the flow
                value, step = thrown, _throw

    run._mst_action = True  # type: ignore[attr-defined]
    return run  # type: ignore[return-value]


_YIELDED, _RETURNED, _CANCELLED = object(), object(), object()


_flow_runs = itertools.count(1)


def _segment(
    node: Any, coroutine: Any, step: Callable[[Any, Any], Any], value: Any, cancelled: type[BaseException]
) -> tuple[object, Any]:
    try:
        return _YIELDED, step(coroutine, value)
    except StopIteration as stop:
        return _RETURNED, stop.value
    except cancelled as error:
        return _CANCELLED, error


def _send(coroutine: Any, value: Any) -> Any:
    return coroutine.send(value)


def _throw(coroutine: Any, error: BaseException) -> Any:
    return coroutine.throw(error)
