"""Typed event channels on pyee: `listen(callback)` returns an unsubscribe function.

A listener that raises is logged and skipped, so a broken UI callback never breaks a generation."""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Callable
from typing import Generic, TypeVar

from pyee import EventEmitter

T = TypeVar("T")
logger = logging.getLogger("mst_llm.llm")


class Event(Generic[T]):
    """One named event of an emitter (``model.on_progress``, ``model.on_state_change``, ...)."""

    __slots__ = ("_emitter", "_name")

    def __init__(self, emitter: EventEmitter, name: str) -> None:
        self._emitter = emitter
        self._name = name

    def listen(self, callback: Callable[[T], object]) -> Callable[[], None]:
        """Call `callback(event)` for each event until the returned function is called.

        Listeners run synchronously where the event happens; an ``async def`` one would only create a coroutine
        that never runs, so it is refused at once with TypeError (start a task from a plain listener instead)."""
        if inspect.iscoroutinefunction(callback) or inspect.iscoroutinefunction(type(callback).__call__):
            raise TypeError(
                f"{self._name} listeners are called synchronously; {callback!r} is an async function, "
                "so it would never run: pass a plain function (it may start a task)"
            )

        def guarded(value: T) -> None:
            try:
                callback(value)
            except Exception:
                logger.exception("a %s listener raised; ignored", self._name)

        self._emitter.add_listener(self._name, guarded)

        def unsubscribe() -> None:
            with contextlib.suppress(KeyError, ValueError):
                self._emitter.remove_listener(self._name, guarded)

        return unsubscribe

    def emit(self, value: T) -> None:
        self._emitter.emit(self._name, value)

    @property
    def listener_count(self) -> int:
        return len(self._emitter.listeners(self._name))
