"""Dependency tracking for views: a view remembers the (node, key) pairs it read and is marked stale when
one of them changes. Staleness is pushed eagerly; recomputation happens lazily on the next read. ``@view``
lives here too."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

from mst_llm.core.base import context

R = TypeVar("R")

STRUCTURE = None  # the key under which a list or dict node reports a change of its own items


class Computed:
    """The cached result of one view on one node."""

    __slots__ = ("deps", "fn", "node", "observers", "stale", "value")

    def __init__(self, node: Any, fn: Callable[[Any], Any]) -> None:
        self.node = node
        self.fn = fn
        self.value: Any = None
        self.stale = True
        self.deps: set[tuple[Any, Any]] = set()
        self.observers: set[Computed] | None = None

    def get(self) -> Any:
        if self.stale:
            outer = context.tracker
            new_deps: set[tuple[Any, Any]] = set()
            context.tracker = new_deps
            try:
                value = self.fn(self.node)
            finally:
                context.tracker = outer
            old_deps = self.deps
            if new_deps != old_deps:
                for dep in old_deps - new_deps:
                    _unsubscribe(dep, self)
                for dep in new_deps - old_deps:
                    _subscribe(dep, self)
                self.deps = new_deps
            self.value = value
            self.stale = False
        tracker = context.tracker
        if tracker is not None:
            tracker.add((self, None))
        return self.value

    def invalidate(self) -> None:
        if not self.stale:
            self.stale = True
            if self.observers:
                for observer in list(self.observers):
                    observer.invalidate()

    def dispose(self) -> None:
        for dep in self.deps:
            _unsubscribe(dep, self)
        self.deps = set()
        self.stale = True


def _subscribe(dep: tuple[Any, Any], computed: Computed) -> None:
    source, key = dep
    if isinstance(source, Computed):
        if source.observers is None:
            source.observers = set()
        source.observers.add(computed)
        return
    obs = source._obs
    if obs is None:
        obs = source._obs = {}
    observers = obs.get(key)
    if observers is None:
        observers = obs[key] = set()
    observers.add(computed)


def _unsubscribe(dep: tuple[Any, Any], computed: Computed) -> None:
    source, key = dep
    if isinstance(source, Computed):
        if source.observers:
            source.observers.discard(computed)
        return
    obs = source._obs
    if obs:
        observers = obs.get(key)
        if observers:
            observers.discard(computed)


def track_contents(node: Any) -> None:
    """Inside a view, depend on the items of ``node`` when it is a list or dict handed out by a tree function
    (container fields are tracked by their descriptor; item reads run at C speed and are not seen)."""
    tracker = context.tracker
    if tracker is not None and getattr(type(node), "_mst_kind", "model") != "model":
        tracker.add((node, STRUCTURE))


def notify(node: Any, key: Any) -> None:
    """Mark every view that read ``key`` of ``node`` stale (call when node._obs is not None)."""
    observers = node._obs.get(key)
    if observers:
        for computed in list(observers):
            computed.invalidate()


def notify_write(holder: Any, key: Any) -> None:
    """``holder[key]`` changed (a model field, a list index or a dict key): mark the views that read it stale.

    A view depends on a list or dict as a whole (reading any item, its length or its keys depends on all of
    them, like a MobX observable array), and it can reach a nested list or dict only through the lists and dicts
    above it, so a change of one is reported to them too, up to the nearest model node."""
    if holder._mst_kind == "model":
        if holder._obs is not None:
            notify(holder, key)
        return
    while holder is not None and holder._mst_kind != "model":
        if holder._obs is not None:
            notify(holder, STRUCTURE)
        holder = holder._parent


def notify_all(node: Any) -> None:
    """Mark every view that read anything of ``node`` stale (the node died or was restored)."""
    for observers in list(node._obs.values()):
        for computed in list(observers):
            computed.invalidate()


class _View(Generic[R]):
    """A cached computed property; generic in the function's return type, so type checkers see what it reads as."""

    __slots__ = ("fn", "name")

    def __init__(self, fn: Callable[[Any], R]) -> None:
        self.fn = fn
        self.name = fn.__name__

    @overload
    def __get__(self, node: None, owner: Any = None) -> _View[R]: ...

    @overload
    def __get__(self, node: object, owner: Any = None) -> R: ...

    def __get__(self, node: Any, owner: Any = None) -> Any:
        if node is None:
            return self
        views = node._views
        if views is None:
            views = node._views = {}
        computed = views.get(self.name)
        if computed is None:
            computed = views[self.name] = Computed(node, self.fn)
        return computed.get()

    def __set__(self, node: Any, value: Any) -> None:
        raise AttributeError(f"view {self.name!r} is read-only")


def view(fn: Callable[[Any], R]) -> _View[R]:
    """Turn a method into a computed property, cached until something it read changes."""
    return _View(fn)
