"""Dependency tracking for views: a view remembers the (node, key) pairs it read and is marked stale when
one of them changes. Staleness is pushed eagerly; recomputation happens lazily on the next read. ``@view``
lives here too.

A view that reads one field of many nodes of a class (``sum(1 for t in self.todos if t.done)``) depends on
"field ``done`` of any ``Todo``" instead of on thousands of (node, key) pairs, and while it is computed again
that field is read at C speed (see ``_FastReads``)."""

from __future__ import annotations

import functools
import threading
import weakref
from collections import Counter, deque
from collections.abc import Callable, Iterator
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
    fast_reads, epoch = _fast.active, _fast.epoch
    try:
        return fn(*args), deps, None
    except Exception as error:
        return None, deps, error
    finally:
        local.tracker = outer
        if outer is None:
            context.tracking.discard(threading.get_ident())
        # fields read at C speed meanwhile were not recorded: depend on them as a whole (swaps made by views
        # this computation read on this thread are not its own reads and are left out)
        if _fast.epoch != epoch and _fast.swapped_by_others(epoch):
            deps.update(_fast.history)
        elif fast_reads or _fast.active:
            deps.update(fast_reads)
            deps.update(_fast.active)


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


class _ClassReads:
    """The observers of "field ``name`` of any node of one class", kept on the class as ``_mst_class_reads``
    (weakly: a view of a tree nobody holds any more must not stay alive through its class)."""

    __slots__ = ("_obs",)

    def __init__(self) -> None:
        self._obs: dict[str, _WeakObservers] = {}


class _WeakObservers:
    """A set of observers held weakly, for a class's fields: every tree and thread shares it, so adding, removing
    and copying it are each one C-level dict operation (a ``WeakSet`` copies itself in Python and fails with
    "Set changed size during iteration" when another thread changes it meanwhile)."""

    __slots__ = ("__weakref__", "_refs")

    def __init__(self) -> None:
        self._refs: dict[int, weakref.ref[Any]] = {}

    def add(self, observer: Any) -> None:
        key = id(observer)
        if key not in self._refs:
            self._refs[key] = weakref.ref(observer, functools.partial(_forget, weakref.ref(self), key))

    def discard(self, observer: Any) -> None:
        self._refs.pop(id(observer), None)

    def __iter__(self) -> Iterator[Any]:
        alive = [ref() for ref in list(self._refs.values())]
        return iter([observer for observer in alive if observer is not None])

    def __bool__(self) -> bool:
        return bool(self._refs)


def _forget(observers: weakref.ref[_WeakObservers], key: int, ref: weakref.ref[Any]) -> None:
    """An observer died: drop its entry (unless the id already names a newer one)."""
    owner = observers()
    if owner is not None and owner._refs.get(key) is ref:
        owner._refs.pop(key, None)


class _FastReads:
    """Fields swapped to a C-level reader while a view that reads them on many nodes is computed again.

    A Python descriptor call costs ~2,000 instructions per read, the swapped-in property ~640 (a plain slot
    ~240; callgrind), and a view over 10,000 items reads 10,000 times. One view swaps at a time (``lock``); a
    swapped read is seen by nobody, so every computation that ran while a swap was active depends on the swapped
    fields as a whole (``track``), and writes of those fields notify ``_ClassReads`` (``notify_write``).
    """

    MIN_DEPS = 256  # a computation with fewer dependencies is never grouped
    MIN_NODES = 64  # a field read on at least this many nodes of one class becomes one dependency

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.epoch = 0  # counts swaps in and out
        self.swaps: deque[tuple[int, int]] = deque(maxlen=256)  # the last ones: (epoch, thread)
        self.active: tuple[tuple[Any, Any], ...] = ()  # the (class reads, field) deps swapped now
        self.history: set[tuple[Any, Any]] = set()  # every such dep ever swapped

    def swap_in(self, fields: tuple[_FastField, ...]) -> None:
        self._count()
        self.active = tuple(field.dep for field in fields)  # (before the swap: a computation that starts now
        for field in fields:  # and ends before the swap-out depends on them)
            setattr(field.cls, field.name, field.fast)

    def swap_out(self, fields: tuple[_FastField, ...]) -> None:
        for field in fields:
            setattr(field.cls, field.name, field.slow)
        self.active = ()
        self._count()  # (after: a computation that began before sees the epoch change)

    def _count(self) -> None:
        self.epoch += 1
        self.swaps.append((self.epoch, threading.get_ident()))  # (after the count, before the fields change)

    def swapped_by_others(self, since: int) -> bool:
        """Whether another thread swapped fields in or out after epoch ``since``."""
        swaps = list(self.swaps)
        if not swaps or swaps[0][0] > since + 1:  # forgotten: assume so
            return True
        me = threading.get_ident()
        return any(epoch > since and thread != me for epoch, thread in swaps)


_fast = _FastReads()


class _FastField:
    __slots__ = ("cls", "dep", "fast", "name", "slow")

    def __init__(self, cls: type, name: str, slow: Any, fast: Any, dep: tuple[Any, Any]) -> None:
        self.cls, self.name, self.slow, self.fast, self.dep = cls, name, slow, fast, dep


def _group(deps: set[tuple[Any, Any]], known: tuple[_FastField, ...]) -> tuple[_FastField, ...]:
    """The fields read on many nodes of one class among ``deps`` that can be read at C speed."""
    counts = Counter((type(source), key) for source, key in deps if type(key) is str)
    have = {(field.cls, field.name) for field in known}
    found = []
    for (cls, name), count in counts.items():
        if count < _FastReads.MIN_NODES or (cls, name) in have:
            continue
        readers = cls._mst_fast_reader(name) if hasattr(cls, "_mst_fast_reader") else None
        if readers is None:
            continue
        with _class_reads_lock:
            reads = cls.__dict__.get("_mst_class_reads")
            if reads is None:
                reads = _ClassReads()
                cls._mst_class_reads = reads
            reads._obs.setdefault(name, _WeakObservers())
        slow, fast = readers
        found.append(_FastField(cls, name, slow, fast, (reads, name)))
    return known + tuple(found)


_class_reads_lock = threading.Lock()


class Computed:
    """The cached result of one view on one node.

    Observers (views and reactions that read it) are told ``input_stale()``: the value may have changed. Its
    own dependencies tell it ``invalidate()``: the value must be computed again.
    """

    __slots__ = ("__weakref__", "deps", "fast", "fn", "node", "observers", "stale", "value")

    def __init__(self, node: Any, fn: Callable[[Any], Any]) -> None:
        self.node = node
        self.fn = fn
        self.value: Any = None
        self.stale = True
        self.deps: set[tuple[Any, Any]] = set()
        self.observers: set[Any] | None = None
        self.fast: tuple[_FastField, ...] = ()  # the fields it reads on many nodes (read at C speed)

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
        fast = self.fast
        if fast and _fast.lock.acquire(blocking=False):  # (another view's swap is running: read them slowly)
            try:
                _fast.swap_in(fast)
                value, deps, error = track(self.fn, self.node)
            finally:
                _fast.swap_out(fast)
                _fast.lock.release()
        else:
            value, deps, error = track(self.fn, self.node)
            if len(deps) >= _FastReads.MIN_DEPS:
                grouped = _group(deps, fast)
                if grouped != fast:
                    self.fast = grouped
                    _fast.history.update(field.dep for field in grouped)
                    keys = {(field.cls, field.name) for field in grouped}
                    deps = {dep for dep in deps if (type(dep[0]), dep[1]) not in keys}
                    deps.update(field.dep for field in grouped)
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
        class_reads = type(holder)._mst_class_reads
        if class_reads is not None:
            notify(class_reads, key)
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
