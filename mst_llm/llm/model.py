"""LlamaModel: a llama.cpp model as a state-tree node, with its life as an enforced state machine.

Every state change is an action checked against `TRANSITIONS`, so it is a patch (and an `InvalidTransition`
changes nothing). The node holds only JSON state; the backend, the event emitter and the bookkeeping of the
running operation live in a volatile `runtime` object.
"""

from __future__ import annotations

import atexit
import logging
import time
import weakref
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import anyio.to_thread
from pyee import EventEmitter

from mst_llm import ModelNode, ValidationError, action, guard, model
from mst_llm import types as t
from mst_llm.errors import GGUFValidationError, InferenceError, InvalidTransition
from mst_llm.llm.backend import Backend, Finished, FinishReason, GenerateRequest, LoadCancelled, default_config
from mst_llm.llm.env import llm_settings
from mst_llm.llm.events import Event
from mst_llm.llm.gguf_check import check_gguf
from mst_llm.llm.worker import ProcessBackend, ThreadBackend, spare_workers

logger = logging.getLogger("mst_llm.llm")

State = Literal["idle", "loading", "ready", "generating", "error", "released"]
Isolation = Literal["process", "thread"]

#: state -> event -> next state. The only place that says what may happen when.
TRANSITIONS: dict[str, dict[str, str]] = {
    "idle": {"initialize": "loading", "release": "released"},
    "loading": {"loaded": "ready", "fail": "error", "cancel": "idle"},
    "ready": {"generate": "generating", "fail": "error", "release": "released"},
    "generating": {"finish": "ready", "fail": "error"},
    "error": {"initialize": "loading", "release": "released"},
    "released": {},
}

#: States that only a live runtime (a backend, a running load or generation) can be in.
RUNTIME_STATES = frozenset({"loading", "ready", "generating"})


@dataclass(frozen=True)
class StateChangeEvent:
    state: str
    previous: str
    error: str | None


@dataclass(frozen=True)
class LoadProgressEvent:
    progress: float  # 0..1, monotonic, ends at 1.0 when the model is ready


@dataclass(frozen=True)
class ProgressEvent:
    partial_text: str
    token: str
    tokens_generated: int
    tokens_per_second: float
    elapsed: float


@dataclass(frozen=True)
class StreamChunk:
    """What `stream()` yields per token: the new text and where the generation stands."""

    text: str
    token: int
    tokens_generated: int
    elapsed: float


@dataclass(frozen=True)
class GenerationResult:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class ModelStatus:
    state: str
    is_initialized: bool
    error: str | None
    gpu_enabled: bool
    gpu_reason: str | None
    offloaded_layers: int
    backend: dict[str, Any]
    config: dict[str, Any]


class _Runtime:
    """The live, non-snapshot side of a model: backend, events, the running operation."""

    def __init__(self) -> None:
        self.backend: Backend | None = None
        emitter = EventEmitter()
        self.on_progress: Event[ProgressEvent] = Event(emitter, "progress")
        self.on_state_change: Event[StateChangeEvent] = Event(emitter, "state_change")
        self.on_load_progress: Event[LoadProgressEvent] = Event(emitter, "load_progress")
        self.cancel_requested = False
        self.done: anyio.Event | None = None
        self.load_progress = 0.0
        self.last_update = 0.0
        self.moving = False  # True while the model's own transition writes `state`
        _live.add(self)

    @property
    def live(self) -> bool:
        """Whether a backend is held or a load or generation is running."""
        return self.backend is not None or (self.done is not None and not self.done.is_set())


_live: weakref.WeakSet[_Runtime] = weakref.WeakSet()


@atexit.register
def _release_all() -> None:
    """Free every model still loaded when the interpreter exits (quietly: no worker, no llama.cpp noise)."""
    for runtime in list(_live):
        backend, runtime.backend = runtime.backend, None
        if backend is not None:
            try:
                backend.close_now()
            except Exception:  # exiting anyway; never print over the user's last output
                logger.debug("releasing a model at exit failed", exc_info=True)


@model
class LlamaModel(ModelNode):
    """A local llama.cpp model in the state tree: ``LlamaModel.open(path)``, then ``await initialize()``."""

    path: str
    isolation: Isolation = "process"
    config: t.Frozen[dict[str, Any]] | None = None  # the caller's settings; get_status().config has the effective ones
    state: State = "idle"
    error: str | None = None
    load_progress: float = 0.0
    info: t.Frozen[dict[str, Any]] | None = None  # GGUF metadata, once validated
    backend_info: t.Frozen[dict[str, Any]] | None = None  # what the backend applied, once loaded
    tokens_generated: int = 0
    tokens_per_second: float = 0.0
    generations: int = 0
    last_finish_reason: Literal["stop", "length", "cancelled", "error"] | None = None
    runtime: object = t.volatile(factory=_Runtime)

    @classmethod
    def open(cls, path: Any, *, isolation: Isolation = "process", env: Any = None, **config: Any) -> LlamaModel:
        """A new model for `path` (not loaded yet; a bad path only shows when `initialize()` fails).

        With process isolation this also starts a spare worker process in the background (unless one waits
        already), so that `initialize()` finds llama-cpp-python imported. ``env`` is a tree env holding
        ``llm_env(...)``; a model that is a field of an app's tree uses that tree's env instead."""
        created = cls.create(cls.snapshot_for(path, isolation=isolation, **config), env=env)
        created.prestart()
        return created

    @staticmethod
    def snapshot_for(path: Any, *, isolation: Isolation = "process", **config: Any) -> dict[str, Any]:
        """The snapshot of a new, idle model (for ``app.llama = ...`` inside an action); unknown settings raise."""
        unknown = sorted(set(config) - set(default_config()))
        if unknown:
            raise ValidationError([(f"/config/{key}", "unknown setting") for key in unknown])
        return {"path": str(path), "isolation": isolation, "config": config}

    def prestart(self) -> None:
        """Start a spare worker process now, so that a later ``initialize()`` with process isolation is quicker."""
        if self.isolation == "process" and llm_settings(self).backend_factory is None:
            spare_workers.prestart()

    def after_create(self) -> None:
        """A model built from a snapshot has no backend yet: a runtime state from the snapshot becomes ``idle``
        (path, config and error kept), so a restored app can ``initialize()`` it again."""
        if self.state in RUNTIME_STATES:
            self.state = "idle"

    @guard("state")
    def _guard_state(self, old: str, new: str) -> None:
        """Only the model's own methods move a live model; a patch or snapshot may follow the transition table on
        a model without a runtime (a replica, a restored app), and set a leftover runtime state back to idle."""
        rt = self._rt
        if rt.moving:
            return
        if not rt.live and (new in TRANSITIONS[old].values() or (new == "idle" and old in RUNTIME_STATES)):
            return
        allowed = TRANSITIONS[old]
        why = "its runtime is live, only its methods change it" if rt.live else "the transition table forbids it"
        raise InvalidTransition(
            f"LlamaModel state cannot be set from {old!r} to {new!r} by a patch or snapshot ({why}; "
            f"allowed events there: {', '.join(allowed) or 'none, it is terminal'})",
            state=old,
            event=f"set {new}",
            allowed=allowed,
        )

    # --- events ---------------------------------------------------------------------------------------------

    @property
    def on_progress(self) -> Event[ProgressEvent]:
        return self._rt.on_progress

    @property
    def on_state_change(self) -> Event[StateChangeEvent]:
        return self._rt.on_state_change

    @property
    def on_load_progress(self) -> Event[LoadProgressEvent]:
        return self._rt.on_load_progress

    @property
    def _rt(self) -> _Runtime:
        runtime = self.runtime
        assert isinstance(runtime, _Runtime)
        return runtime

    # --- reading --------------------------------------------------------------------------------------------

    def effective_config(self) -> dict[str, Any]:
        return {**default_config(), **(self.config or {})}

    def get_status(self) -> ModelStatus:
        """State, GPU use (and why not), backend and effective config, as one object."""
        loaded = self.backend_info or {}
        config = self.effective_config()
        offloaded = int(loaded.get("offloaded_layers", 0))
        if not loaded:
            reason: str | None = "the model is not loaded"
        elif not loaded.get("gpu_offload_supported"):
            reason = "llama.cpp is a CPU-only build (no GPU offload support)"
        elif config["n_gpu_layers"] == 0:
            reason = "disabled by config (n_gpu_layers=0)"
        elif offloaded == 0:
            reason = "no layers offloaded"
        else:
            reason = None
        return ModelStatus(
            state=self.state,
            is_initialized=self.state in ("ready", "generating"),
            error=self.error,
            gpu_enabled=reason is None,
            gpu_reason=reason,
            offloaded_layers=offloaded,
            backend={"isolation": self.isolation, **{k: v for k, v in loaded.items() if k != "offloaded_layers"}},
            config=config,
        )

    # --- the transitions (each one action, so one transaction and one /state patch) ------------------------
    # The model calls these itself; their names are what patches, commits and session logs show.

    def _move(self, event: str) -> None:
        self._check(event)
        rt = self._rt
        rt.moving = True
        try:
            self.state = TRANSITIONS[self.state][event]  # type: ignore[assignment]
        finally:
            rt.moving = False

    def _check(self, event: str) -> None:
        """Raise InvalidTransition (naming state, event and the allowed events) unless `event` may happen now."""
        allowed = TRANSITIONS[self.state]
        if event not in allowed:
            raise InvalidTransition(
                f"LlamaModel cannot {event!r} in state {self.state!r} "
                f"(allowed events there: {', '.join(allowed) or 'none, it is terminal'})",
                state=self.state,
                event=event,
                allowed=allowed,
            )

    @action
    def start_loading(self) -> None:
        self._move("initialize")
        self.error = None
        self.load_progress = 0.0

    @action
    def record_file_info(self, info: dict[str, Any]) -> None:
        self.info = info

    @action
    def report_load_progress(self, progress: float) -> None:
        self.load_progress = progress

    @action
    def finish_loading(self, backend_info: dict[str, Any]) -> None:
        self._move("loaded")
        self.load_progress = 1.0
        self.backend_info = backend_info

    @action
    def fail(self, message: str) -> None:
        self._move("fail")
        self.error = message

    @action
    def cancel_loading(self) -> None:
        self._move("cancel")

    @action
    def start_generation(self) -> None:
        self._move("generate")
        self.tokens_generated = 0
        self.tokens_per_second = 0.0

    @action
    def report_progress(self, tokens: int, tokens_per_second: float) -> None:
        self.tokens_generated = tokens
        self.tokens_per_second = tokens_per_second

    @action
    def finish_generation(self, tokens: int, tokens_per_second: float, reason: FinishReason) -> None:
        self._move("finish")
        self.tokens_generated = tokens
        self.tokens_per_second = tokens_per_second
        self.generations += 1
        self.last_finish_reason = reason

    @action
    def mark_released(self) -> None:
        self._move("release")

    def _changed(self, previous: str) -> None:
        """Tell state listeners (after the action committed, so they see the new tree)."""
        if self.state != previous:
            self._rt.on_state_change.emit(StateChangeEvent(self.state, previous, self.error))

    def _step(self, name: str, *args: Any) -> None:
        previous = self.state
        getattr(self, name)(*args)
        self._changed(previous)

    # --- loading --------------------------------------------------------------------------------------------

    async def initialize(self) -> None:
        """Validate the file, then load it. Ends in 'ready', or 'error' with a message (bad files never raise).

        Raises InvalidTransition unless the model is idle or in error (a retry)."""
        rt = self._rt
        self._step("start_loading")
        rt.cancel_requested = False
        rt.load_progress = 0.0
        rt.done = anyio.Event()
        try:
            await self._load(rt)
        finally:
            rt.done.set()

    async def _load(self, rt: _Runtime) -> None:
        config = self.effective_config()
        with anyio.CancelScope(shield=True):
            await self._close_backend(rt)
        try:
            if config["validate"]:  # before any worker starts: a bad file costs milliseconds, not a process
                info = await anyio.to_thread.run_sync(check_gguf, self.path)
                self.record_file_info(info.to_dict())
            if rt.cancel_requested:
                raise LoadCancelled()
            backend = rt.backend = self._make_backend()
            loaded = await backend.load(self.path, config, self._on_load_progress)
            if rt.cancel_requested:  # the load finished before the cancel reached it: honour the cancel
                raise LoadCancelled()
        except LoadCancelled:
            self._step("cancel_loading")
        except (GGUFValidationError, InferenceError, OSError) as error:
            self._step("fail", str(error))
        except anyio.get_cancelled_exc_class():
            self._step("cancel_loading")
            raise
        except Exception as error:  # a bug or an engine surprise must not leave the model stuck in 'loading'
            logger.exception("loading %s failed unexpectedly", self.path)
            self._step("fail", f"loading failed unexpectedly: {error!r}")
        else:
            self._on_load_progress(1.0)
            self._step("finish_loading", loaded.to_dict())
            return
        finally:
            if self.state != "loading" and self.state != "ready":
                with anyio.CancelScope(shield=True):
                    await self._close_backend(rt)

    def _make_backend(self) -> Backend:
        factory = llm_settings(self).backend_factory
        if factory is not None:
            return factory(self.isolation)
        return ProcessBackend() if self.isolation == "process" else ThreadBackend()

    def _on_load_progress(self, progress: float) -> None:
        rt = self._rt
        if progress <= rt.load_progress:
            return
        rt.load_progress = progress
        rt.on_load_progress.emit(LoadProgressEvent(progress))
        now = time.monotonic()
        if progress < 1.0 and now - rt.last_update >= self._update_interval():
            rt.last_update = now
            self.report_load_progress(progress)

    def _update_interval(self) -> float:
        rate = float(self.effective_config()["progress_updates_per_second"])
        return 1.0 / rate if rate > 0 else 0.0

    @staticmethod
    async def _close_backend(rt: _Runtime) -> None:
        backend, rt.backend = rt.backend, None
        if backend is not None:
            await backend.close()

    # --- generating -----------------------------------------------------------------------------------------

    async def generate(
        self,
        input: str,
        max_tokens: int = 256,
        temperature: float = 0.8,
        top_p: float = 0.95,
        stop_tokens: Sequence[str] = (),
        seed: int | None = None,
        top_k: int = 40,
        repeat_penalty: float = 1.0,
    ) -> GenerationResult:
        """Generate a completion of `input`. A failure returns finish_reason 'error' (and moves to 'error');
        cancel() returns finish_reason 'cancelled'. Raises InvalidTransition unless the model is ready."""
        request = GenerateRequest(
            input, max_tokens, temperature, top_p, top_k, tuple(stop_tokens), seed, repeat_penalty
        )
        result: GenerationResult | None = None
        async with aclosing(self._run(request, raise_errors=False)) as items:
            async for item in items:
                if isinstance(item, GenerationResult):
                    result = item
        assert result is not None
        return result

    def stream(
        self,
        input: str,
        max_tokens: int = 256,
        temperature: float = 0.8,
        top_p: float = 0.95,
        stop_tokens: Sequence[str] = (),
        seed: int | None = None,
        top_k: int = 40,
        repeat_penalty: float = 1.0,
    ) -> AsyncGenerator[StreamChunk, None]:
        """Yield a StreamChunk per token. Cancelling (or leaving the loop) simply ends it; a failure raises
        InferenceError after the model moved to 'error'. The state is checked now and again at the first step."""
        self._check("generate")
        request = GenerateRequest(
            input, max_tokens, temperature, top_p, top_k, tuple(stop_tokens), seed, repeat_penalty
        )
        return self._chunks(request)

    async def _chunks(self, request: GenerateRequest) -> AsyncGenerator[StreamChunk, None]:
        async with aclosing(self._run(request, raise_errors=True)) as items:
            async for item in items:
                if isinstance(item, StreamChunk):
                    yield item

    async def _run(
        self, request: GenerateRequest, *, raise_errors: bool
    ) -> AsyncGenerator[StreamChunk | GenerationResult, None]:
        rt = self._rt
        self._step("start_generation")
        backend = rt.backend
        assert backend is not None, "a ready model has a backend"
        rt.cancel_requested = False
        done = rt.done = anyio.Event()
        interval = self._update_interval()
        started = rt.last_update = time.monotonic()
        tokens, text = 0, ""
        finished: Finished | None = None
        failure: InferenceError | None = None
        items = backend.generate(request)
        try:
            async for item in items:
                if isinstance(item, Finished):
                    finished = item
                    break
                now = time.monotonic()
                elapsed = now - started
                if item.token >= 0:
                    tokens += 1
                text += item.text
                speed = tokens / elapsed if elapsed > 0 else 0.0
                rt.on_progress.emit(ProgressEvent(text, item.text, tokens, speed, elapsed))
                if now - rt.last_update >= interval:
                    rt.last_update = now
                    self.report_progress(tokens, speed)
                yield StreamChunk(item.text, item.token, tokens, elapsed)
        except InferenceError as error:
            failure = error
        finally:
            with anyio.CancelScope(shield=True):
                await items.aclose()
                if failure is not None:
                    await self._fail_generation(rt, failure)
            if self.state == "generating":  # also when the consumer left early or the task was cancelled
                if finished is None:
                    self._settle(tokens, started, "cancelled")
                else:
                    self._settle(finished.completion_tokens, started, finished.finish_reason)
            done.set()
        if failure is not None:
            if raise_errors:
                raise failure
            yield GenerationResult(text, 0, tokens, "error", {}, str(failure))
            return
        assert finished is not None
        timings = {
            "prompt_ms": finished.prompt_ms,
            "generation_ms": finished.generation_ms,
            "total_ms": finished.prompt_ms + finished.generation_ms,
            "tokens_per_second": self.tokens_per_second,
        }
        yield GenerationResult(
            finished.text, finished.prompt_tokens, finished.completion_tokens, finished.finish_reason, timings
        )

    def _settle(self, tokens: int, started: float, reason: FinishReason) -> None:
        elapsed = time.monotonic() - started
        self._step("finish_generation", tokens, tokens / elapsed if elapsed > 0 else 0.0, reason)

    async def _fail_generation(self, rt: _Runtime, error: InferenceError) -> None:
        self._step("fail", str(error))
        with anyio.CancelScope(shield=True):
            await self._close_backend(rt)

    # --- stopping -------------------------------------------------------------------------------------------

    async def cancel(self) -> None:
        """Stop the running load or generation (within one token) and wait until it settled; else a no-op."""
        rt = self._rt
        if self.state not in ("loading", "generating") or rt.done is None:
            return
        rt.cancel_requested = True
        if rt.backend is not None:
            rt.backend.cancel()
        await rt.done.wait()

    async def cleanup(self) -> None:
        """Free the model and its worker (cancelling a running operation first); idempotent. Ends 'released'."""
        if self.state == "released":
            return
        await self.cancel()
        with anyio.CancelScope(shield=True):
            await self._close_backend(self._rt)
        self._step("mark_released")
