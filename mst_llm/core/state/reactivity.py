"""Dependency tracking for views: a view remembers the (node, key) pairs it read and is marked stale when
one of them changes. Staleness is pushed eagerly; recomputation happens lazily on the next read. ``@view``
lives here too."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

from mst_llm.core.base import context
from mst_llm.core.state.node import root_of

R = TypeVar("R")

STRUCTURE = None  # the key under which a list or dict node reports a change of its own items


def track(fn: Callable[..., Any], *args: Any) -> tuple[Any, set[tuple[Any, Any]], BaseException | None]:
    """Run ``fn(*args)`` recording what it reads: (result, dependencies, the exception it raised or None)."""
    local = context.local
    outer = local.tracker
    deps: set[tuple[Any, Any]] = set()
    local.tracker = deps
    if outer is None:
        context.tracking.add(threading.get_ident())
    try:
        return fn(*args), deps, None
    except Exception as error:
        return None, deps, error
    finally:
        local.tracker = outer
        if outer is None:
            context.tracking.discard(threading.get_ident())


def resubscribe(observer: Any, old: set[tuple[Any, Any]], new: set[tuple[Any, Any]]) -> None:
    """Move ``observer`` from the dependencies it had to the ones it has now."""
    if new != old:
        for dep in old - new:
            _unsubscribe(dep, observer)
        for dep in new - old:
            _subscribe(dep, observer)


def report(source: Any, key: Any) -> None:
    """Tell the computation running on this thread, if any, that it read ``key`` of ``source``."""
    if context.tracking:
        tracker = context.local.tracker
        if tracker is not None:
            tracker.add((source, key))


class Computed:
    """The cached result of one view on one node.

    Observers (views and reactions that read it) are told ``input_stale()``: the value may have changed. Its
    own dependencies tell it ``invalidate()``: the value must be computed again.
    """

    __slots__ = ("deps", "fn", "node", "observers", "stale", "value")

    def __init__(self, node: Any, fn: Callable[[Any], Any]) -> None:
        self.node = node
        self.fn = fn
        self.value: Any = None
        self.stale = True
        self.deps: set[tuple[Any, Any]] = set()
        self.observers: set[Any] | None = None

    def get(self) -> Any:
        if self.stale:
            tree = root_of(self.node)._tree
            if tree is None:  # a node being built: nobody else can change it
                self._compute()
            else:
                with tree.lock:  # no transaction of another thread changes what it reads meanwhile
                    if self.stale:
                        self._compute()
        report(self, None)
        return self.value

    def _compute(self) -> None:
        value, deps, error = track(self.fn, self.node)
        resubscribe(self, self.deps, deps)
        self.deps = deps
        if error is not None:
            raise error
        self.value = value
        self.stale = False

    def invalidate(self) -> None:
        if not self.stale:
            self.stale = True
            if self.observers:
                for observer in list(self.observers):
                    observer.input_stale()

    input_stale = invalidate

    def dispose(self) -> None:
        for dep in self.deps:
            _unsubscribe(dep, self)
        self.deps = set()
        self.stale = True


def _subscribe(dep: tuple[Any, Any], observer: Any) -> None:
    source, key = dep
    if isinstance(source, Computed):
        if source.observers is None:
            source.observers = set()
        source.observers.add(observer)
        return
    obs = source._obs
    if obs is None:
        obs = source._obs = {}
    observers = obs.get(key)
    if observers is None:
        observers = obs[key] = set()
    observers.add(observer)


def _unsubscribe(dep: tuple[Any, Any], observer: Any) -> None:
    source, key = dep
    if isinstance(source, Computed):
        if source.observers:
            source.observers.discard(observer)
        return
    obs = source._obs
    if obs:
        observers = obs.get(key)
        if observers:
            observers.discard(observer)


def track_contents(node: Any) -> None:
    """Inside a view, depend on the items of ``node`` when it is a list or dict handed out by a tree function
    (container fields are tracked by their descriptor; item reads run at C speed and are not seen)."""
    if getattr(type(node), "_mst_kind", "model") != "model":
        report(node, STRUCTURE)


def notify(node: Any, key: Any) -> None:
    """Mark every view and reaction that read ``key`` of ``node`` stale (call when node._obs is not None)."""
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
    """Mark every view and reaction that read anything of ``node`` stale (the node died or was restored)."""
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
