"""Reactions (MobX semantics): ``autorun``, ``reaction`` and ``when`` run side effects when what they read changes.

A reaction tracks what its function reads like a view does. A change marks it stale inside the transaction that
made it; the transaction hands its stale reactions over when it commits (and drops them when it rolls back), and
they run after the commit's listeners, at most once per commit, until no round makes another one stale.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections.abc import Callable, Generator
from types import TracebackType
from typing import Any

import anyio

from mst_llm.core.base import context
from mst_llm.core.state.reactivity import Computed, _unsubscribe, resubscribe, track
from mst_llm.errors import DeadNodeError, ReactionLoopError

logger = logging.getLogger("mst_llm")

MAX_ROUNDS = 100  # rounds of reactions one commit may cause before ReactionLoopError


class Disposer:
    """Stops a reaction: call it (more than once is fine) or use it as a context manager."""

    __slots__ = ("_reaction",)

    def __init__(self, reaction: Reaction) -> None:
        self._reaction = reaction

    def __call__(self) -> None:
        self._reaction.dispose()

    @property
    def disposed(self) -> bool:
        """Whether the reaction has stopped (disposed, a ``when`` that fired, or everything it watched died)."""
        return self._reaction.disposed

    def __enter__(self) -> Disposer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self()


class Reaction:
    """One tracked function and what to do with its result; scheduled when something it read changes."""

    __slots__ = (
        "__weakref__",  # (a field read by views over many nodes keeps its observers weakly: reactivity._ClassReads)
        "changed",
        "computeds",
        "deps",
        "disposed",
        "name",
        "on_error",
        "run_tracked",
        "scheduled",
        "seen",
    )

    def __init__(
        self, name: str, run_tracked: Callable[[], None], on_error: Callable[[BaseException], None] | None
    ) -> None:
        self.name = name
        self.run_tracked = run_tracked  # tracks, then acts on what it tracked (may call self.track)
        self.on_error = on_error
        self.deps: set[tuple[Any, Any]] = set()
        self.computeds: list[Computed] = []  # the views among its dependencies
        self.seen: dict[Computed, Any] = {}  # the value of each view it read, as it read it
        self.changed = True  # something it read directly changed (not only a view it read)
        self.scheduled = False
        self.disposed = False

    # --- the observer protocol (see reactivity.notify and Computed.invalidate) ------------------------

    def invalidate(self) -> None:
        self.changed = True
        self._schedule()

    def input_stale(self) -> None:
        self._schedule()

    def _schedule(self) -> None:
        if self.scheduled or self.disposed:
            return
        self.scheduled = True
        tx = context.local.tx
        if tx is not None:
            if tx.reactions is None:
                tx.reactions = [self]
            else:
                tx.reactions.append(self)
        else:  # a change outside any transaction (a node destroyed by hand): run at once
            run_reactions([self])

    # --- running ----------------------------------------------------------------------------------------

    def run(self) -> None:
        self.scheduled = False
        if self.disposed:
            return
        if not self.changed and all(computed.get() == value for computed, value in self.seen.items()):
            return  # only views it read went stale, and they came back with the values it saw
        self.changed = False
        watched = self.deps
        try:
            self.run_tracked()
        except DeadNodeError as error:
            if watched and all(_dead(source) for source, _ in watched):
                self.dispose()  # everything it watched is gone
            else:
                self.report(error)
        except Exception as error:
            self.report(error)

    def track(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn()`` recording what it reads as this reaction's dependencies; raises what ``fn`` raised."""
        value, deps, error = track(fn)
        if deps != self.deps:
            resubscribe(self, self.deps, deps)
            self.deps = deps
            self.computeds = [source for source, _ in deps if isinstance(source, Computed)]
        if self.computeds:
            self.seen = {computed: computed.value for computed in self.computeds}
        elif self.seen:
            self.seen = {}
        if error is not None:
            raise error
        return value

    def report(self, error: BaseException) -> None:
        if self.on_error is not None:
            self.on_error(error)
        else:
            logger.exception("reaction %r raised", self.name, exc_info=error)

    def dispose(self) -> None:
        if self.disposed:
            return
        self.disposed = True
        for dep in self.deps:
            _unsubscribe(dep, self)
        self.deps = set()
        self.computeds = []
        self.seen = {}

    def __repr__(self) -> str:
        return f"<Reaction {self.name!r}>"


def _dead(source: Any) -> bool:
    node = source.node if isinstance(source, Computed) else source
    return bool(getattr(type(node), "_mst_dead", False))


def discard(reactions: list[Reaction]) -> None:
    """A rolled-back transaction had made them stale: nothing changed after all. The views they read are
    brought up to date again, so that the next change reaches them (a stale view tells its observers nothing)."""
    for stale in reactions:
        stale.scheduled = False
        stale.changed = False
        for computed in stale.seen:
            try:
                untracked(computed.get)
            except Exception:  # the next real change runs the reaction, which reports it
                stale.changed = True


def untracked(fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn(*args)`` without recording what it reads (effects are not dependencies)."""
    local = context.local
    outer = local.tracker
    local.tracker = None
    try:
        return fn(*args)
    finally:
        local.tracker = outer


def run_reactions(reactions: list[Reaction]) -> None:
    """Run stale reactions after a commit, round after round, on this thread; a round's commits queue the next.

    Raises ReactionLoopError when the rounds do not settle."""
    local = context.local
    if local.reacting:  # a reaction's own commit: the loop below, further up the stack, picks them up
        assert local.queue is not None
        local.queue.extend(reactions)
        return
    local.reacting = True
    batch = reactions
    looping: set[str] = set()  # the reactions that ran in the last rounds: the loop is among them
    try:
        rounds = 0
        while batch:
            rounds += 1
            if rounds > MAX_ROUNDS:
                for reaction in batch:
                    reaction.scheduled = False
                names = ", ".join(sorted(looping))
                raise ReactionLoopError(f"reactions did not settle after {MAX_ROUNDS} rounds: {names}")
            if rounds > MAX_ROUNDS - 10:
                looping.update(reaction.name for reaction in batch)
            local.queue = []  # what this round's commits make stale
            for reaction in batch:
                reaction.run()
            batch = local.queue
    finally:
        local.reacting = False
        local.queue = None


# --- the public functions ------------------------------------------------------------------------------------

_names = itertools.count(1)


def _name(kind: str, name: str | None, fn: Callable[..., Any]) -> str:
    return name or f"{kind}({getattr(fn, '__qualname__', 'fn')})#{next(_names)}"


def autorun(
    fn: Callable[[], Any], *, name: str | None = None, on_error: Callable[[BaseException], None] | None = None
) -> Disposer:
    """Run ``fn()`` now and again after each commit that changed anything it read."""
    this = Reaction(_name("autorun", name, fn), lambda: this.track(fn), on_error)
    this.run()
    return Disposer(this)


def reaction(
    expression: Callable[[], Any],
    effect: Callable[[Any, Any], Any],
    *,
    fire_immediately: bool = False,
    equals: Callable[[Any, Any], bool] | None = None,
    name: str | None = None,
    on_error: Callable[[BaseException], None] | None = None,
) -> Disposer:
    """Track only ``expression()``; call ``effect(new, old)`` (untracked) whenever its value changes."""
    same = equals if equals is not None else _equal
    state: dict[str, Any] = {}

    def step() -> None:
        value = this.track(expression)
        if "value" not in state:
            state["value"] = value
            if fire_immediately:
                untracked(effect, value, None)
            return
        old = state["value"]
        if same(value, old):
            return
        state["value"] = value
        untracked(effect, value, old)

    this = Reaction(_name("reaction", name, expression), step, on_error)
    this.run()
    return Disposer(this)


def _equal(a: Any, b: Any) -> bool:
    return bool(a == b)


def when(
    predicate: Callable[[], Any],
    effect: Callable[[], Any] | None = None,
    *,
    timeout: float | None = None,
    name: str | None = None,
    on_error: Callable[[BaseException], None] | None = None,
) -> Any:
    """Call ``effect()`` once, the first time ``predicate()`` is true, then stop. Without an effect, return an
    object to ``await`` (asyncio or trio): it resumes when the predicate holds, or raises TimeoutError after
    ``timeout`` seconds."""
    if effect is None:
        return _When(predicate, timeout, name)
    return _when(predicate, effect, name, on_error)


def _when(
    predicate: Callable[[], Any],
    effect: Callable[[], Any],
    name: str | None,
    on_error: Callable[[BaseException], None] | None,
) -> Disposer:
    def step() -> None:
        if this.track(predicate):
            this.dispose()
            untracked(effect)

    this = Reaction(_name("when", name, predicate), step, on_error)
    this.run()
    return Disposer(this)


class _When:
    """``await when(predicate, timeout=...)``: resumes on the awaiting task's event loop, whichever thread
    committed the change that made the predicate true."""

    def __init__(self, predicate: Callable[[], Any], timeout: float | None, name: str | None) -> None:
        self.predicate = predicate
        self.timeout = timeout
        self.name = name
        self.disposer: Disposer | None = None

    def __await__(self) -> Generator[Any, None, None]:
        return self._wait().__await__()

    async def _wait(self) -> None:
        event = anyio.Event()
        wake = _waker(event)
        errors: list[BaseException] = []

        def failed(error: BaseException) -> None:
            errors.append(error)
            wake()

        self.disposer = _when(self.predicate, wake, self.name, failed)
        try:
            with anyio.fail_after(self.timeout):
                while not event.is_set() and not errors:
                    await event.wait()
        finally:
            self.disposer()
        if errors:
            raise errors[0]


def _waker(event: anyio.Event) -> Callable[[], None]:
    """A function that sets ``event`` from any thread (a reaction runs on the committing thread)."""
    loop_thread = threading.get_ident()
    run_soon: Callable[[Callable[[], object]], object]
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # not asyncio: anyio's other backend, trio
        import trio

        run_soon = trio.lowlevel.current_trio_token().run_sync_soon
    else:
        run_soon = loop.call_soon_threadsafe

    def wake() -> None:
        if threading.get_ident() == loop_thread:
            event.set()
        else:
            run_soon(event.set)

    return wake
