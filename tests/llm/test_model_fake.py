"""LlamaModel's contract on a fake backend (fast, deterministic): transitions, events, throttling, status."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import anyio
import pytest

from mst_llm import InvalidTransition, ValidationError, get_snapshot, on_patch
from mst_llm.llm import LlamaModel, LoadProgressEvent, ProgressEvent, StateChangeEvent
from tests.llm.fake_backend import fake_env

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def fake_model(**config: Any) -> LlamaModel:
    return LlamaModel.open("fake.gguf", env=fake_env(), validate=False, **config)


async def test_life_cycle_and_events() -> None:
    model = fake_model()
    states: list[StateChangeEvent] = []
    loads: list[LoadProgressEvent] = []
    model.on_state_change.listen(states.append)
    model.on_load_progress.listen(loads.append)
    await model.initialize()
    result = await model.generate("hi", max_tokens=3)
    assert (result.text, result.completion_tokens, result.finish_reason) == ("w0 w1 w2 ", 3, "length")
    assert set(result.timings) >= {"prompt_ms", "generation_ms", "total_ms", "tokens_per_second"}
    await model.cleanup()
    await model.cleanup()  # idempotent
    assert [(event.previous, event.state) for event in states] == [
        ("idle", "loading"),
        ("loading", "ready"),
        ("ready", "generating"),
        ("generating", "ready"),
        ("ready", "released"),
    ]
    assert [event.progress for event in loads] == [0.25, 0.5, 1.0]


async def test_illegal_calls_name_state_event_and_allowed_events_and_change_nothing() -> None:
    model = fake_model()
    before = get_snapshot(model)
    with pytest.raises(InvalidTransition) as raised:
        await model.generate("hi")
    assert (raised.value.state, raised.value.event, raised.value.allowed) == (
        "idle",
        "generate",
        ("initialize", "release"),
    )
    assert "'generate'" in str(raised.value) and "'idle'" in str(raised.value) and "initialize" in str(raised.value)
    with pytest.raises(InvalidTransition):
        model.stream("hi")  # refused at the call, before any iteration
    assert get_snapshot(model) is before
    await model.initialize()
    with pytest.raises(InvalidTransition):
        await model.initialize()
    await model.cleanup()
    for call, event in ((model.initialize, "initialize"), (lambda: model.generate("x"), "generate")):
        with pytest.raises(InvalidTransition, match="terminal") as raised:
            await call()
        assert (raised.value.state, raised.value.event, raised.value.allowed) == ("released", event, ())


async def test_second_generate_while_one_runs_is_rejected_at_once() -> None:
    model = fake_model()
    await model.initialize()
    rejected: list[InvalidTransition] = []

    async def second(event: Any) -> None:
        try:
            await model.generate("again")
        except InvalidTransition as error:
            rejected.append(error)

    async with anyio.create_task_group() as group:
        stop = model.on_progress.listen(
            lambda event: group.start_soon(second, event) if event.tokens_generated == 1 else None
        )
        result = await model.generate("hi", max_tokens=5)
        stop()
    assert result.finish_reason == "length"
    assert rejected and rejected[0].state == "generating"
    await model.cleanup()


async def test_progress_events_and_throttled_tree_updates() -> None:
    model = fake_model(progress_updates_per_second=0.001)  # at most one tree update per 1000 s
    await model.initialize()
    events: list[ProgressEvent] = []
    model.on_progress.listen(events.append)
    patches: list[dict[str, Any]] = []
    on_patch(model, lambda patch, inverse: patches.append(patch))
    result = await model.generate("hi", max_tokens=40)
    assert [event.tokens_generated for event in events] == list(range(1, 41))
    assert events[-1].partial_text == result.text and events[-1].token == "w39 "
    assert all(event.tokens_per_second >= 0 and event.elapsed >= 0 for event in events)
    counts = [patch["value"] for patch in patches if patch["path"] == "/tokens_generated"]
    assert counts == [40]  # only the final update: the end is always written
    await model.cleanup()


async def test_every_token_updates_the_tree_when_unthrottled() -> None:
    model = fake_model(progress_updates_per_second=0)
    await model.initialize()
    patches: list[dict[str, Any]] = []
    on_patch(model, lambda patch, inverse: patches.append(patch))
    await model.generate("hi", max_tokens=5)
    assert [patch["value"] for patch in patches if patch["path"] == "/tokens_generated"] == [1, 2, 3, 4, 5]
    await model.cleanup()


async def test_raising_listener_is_logged_not_fatal_and_unsubscribe_works(caplog: pytest.LogCaptureFixture) -> None:
    model = fake_model()
    seen: list[int] = []

    def broken(event: ProgressEvent) -> None:
        raise RuntimeError("listener bug")

    model.on_progress.listen(broken)
    stop = model.on_progress.listen(lambda event: seen.append(event.tokens_generated))
    await model.initialize()
    with caplog.at_level(logging.ERROR, logger="mst_llm.llm"):
        result = await model.generate("hi", max_tokens=3)
    assert result.finish_reason == "length" and seen == [1, 2, 3]
    assert "listener raised" in caplog.text
    stop()
    stop()  # twice is harmless
    await model.generate("hi", max_tokens=2)
    assert seen == [1, 2, 3]
    await model.cleanup()


async def test_stream_yields_chunks_and_leaving_early_settles_as_cancelled() -> None:
    model = fake_model()
    await model.initialize()
    pieces = [chunk.text async for chunk in model.stream("hi", max_tokens=4)]
    assert pieces == ["w0 ", "w1 ", "w2 ", "w3 "]
    chunks = model.stream("hi", max_tokens=100)
    async for chunk in chunks:
        if chunk.tokens_generated == 2:
            break
    await chunks.aclose()
    assert (model.state, model.last_finish_reason, model.tokens_generated) == ("ready", "cancelled", 2)
    await model.cleanup()


async def test_cancel_generation_and_cancel_load() -> None:
    env = fake_env()
    model = LlamaModel.open("fake.gguf", env=env, validate=False)
    env["faults"].hold_load = True
    async with anyio.create_task_group() as group:
        group.start_soon(model.initialize)
        while model.state != "loading":
            await anyio.sleep(0)
        await model.cancel()
    assert model.state == "idle"
    env["faults"].hold_load = False
    await model.cancel()  # nothing running: a no-op
    await model.initialize()
    async with anyio.create_task_group() as group:
        model.on_progress.listen(lambda event: group.start_soon(model.cancel) if event.tokens_generated == 2 else None)
        result = await model.generate("hi", max_tokens=1000)
    assert result.finish_reason == "cancelled" and result.completion_tokens <= 3
    assert model.state == "ready"
    await model.cleanup()


async def test_cancelling_the_awaiting_task_settles_the_model() -> None:
    model = fake_model()
    await model.initialize()
    with anyio.move_on_after(0.01):
        await model.generate("hi", max_tokens=10**9)
    assert (model.state, model.last_finish_reason) == ("ready", "cancelled")
    await model.cleanup()


async def test_cleanup_during_generation_cancels_first() -> None:
    model = fake_model()
    await model.initialize()
    async with anyio.create_task_group() as group:
        model.on_progress.listen(lambda event: group.start_soon(model.cleanup) if event.tokens_generated == 1 else None)
        result = await model.generate("hi", max_tokens=1000)
    assert result.finish_reason == "cancelled"
    assert model.state == "released"


async def test_faults_end_in_error_and_retry_recovers() -> None:
    env = fake_env()
    model = LlamaModel.open("fake.gguf", env=env, validate=False)
    env["faults"].death_on_load = True
    await model.initialize()
    assert model.state == "error" and "inference worker died (SIGABRT) while loading" in (model.error or "")
    await model.initialize()  # retry
    assert model.state == "ready" and model.error is None
    env["faults"].death_at_token = 2
    result = await model.generate("hi", max_tokens=5)
    assert result.finish_reason == "error" and "SIGSEGV" in (result.error or "")
    assert model.state == "error" and model.error == result.error
    await model.initialize()
    env["faults"].fail_at_token = 1
    with pytest.raises(Exception, match="injected failure"):
        async for _chunk in model.stream("hi", max_tokens=5):
            pass
    assert model.state == "error"
    await model.cleanup()


async def test_bad_paths_never_raise_they_end_in_error(tmp_path: Path) -> None:
    model = LlamaModel.open(tmp_path / "nope.gguf")  # the real backends: validation stops it first
    await model.initialize()
    assert model.state == "error" and "does not exist" in (model.error or "")
    assert model.get_status().is_initialized is False
    await model.cleanup()


async def test_status_reports_gpu_backend_and_effective_config() -> None:
    model = fake_model(n_ctx=512)
    assert model.get_status().gpu_reason == "the model is not loaded"
    await model.initialize()
    status = model.get_status()
    assert status.state == "ready" and status.is_initialized and status.error is None
    assert status.gpu_enabled is False and "CPU-only" in (status.gpu_reason or "")
    assert status.config["n_ctx"] == 512 and status.config["n_batch"] == 512
    assert status.backend["isolation"] == "process" and status.backend["backend"] == "fake"
    await model.cleanup()


def test_unknown_settings_are_refused() -> None:
    with pytest.raises(ValidationError, match="/config/n_context"):
        LlamaModel.open("x.gguf", n_context=5)


def test_sync_code_uses_anyio_run() -> None:
    model = fake_model()
    anyio.run(model.initialize)
    result = anyio.run(lambda: model.generate("hi", max_tokens=2))
    assert result.text == "w0 w1 "
    anyio.run(model.cleanup)


def test_an_async_listener_is_refused_at_once() -> None:
    model = fake_model()

    async def listener(event: ProgressEvent) -> None: ...

    class Handler:
        async def __call__(self, event: ProgressEvent) -> None: ...

    for callback in (listener, Handler()):
        with pytest.raises(TypeError, match="async function"):
            model.on_progress.listen(callback)
    assert model.on_progress.listener_count == 0
