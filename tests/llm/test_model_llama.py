"""LlamaModel on the real llama-cpp-python with tiny GGUF models, in both isolation modes, asyncio and trio."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio
import pytest

from mst_llm import InvalidTransition, apply_patch, get_snapshot, on_patch
from mst_llm.llm import LlamaModel, LoadProgressEvent
from tests.llm.gguf_factory import MALFORMED_KINDS, write_tiny_llama

pytestmark = pytest.mark.anyio
ISOLATIONS = ["thread", "process"]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.parametrize("isolation", ISOLATIONS)
async def test_load_generate_stream_cleanup(tiny_model: Path, isolation: Any) -> None:
    model = LlamaModel.open(tiny_model, isolation=isolation, n_ctx=256, n_threads=1)
    loads: list[LoadProgressEvent] = []
    model.on_load_progress.listen(loads.append)
    patches: list[dict[str, Any]] = []
    on_patch(model, lambda patch, inverse: patches.append(patch))
    await model.initialize()
    assert model.state == "ready", model.error
    progress = [event.progress for event in loads]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert model.info is not None and model.info["architecture"] == "llama"

    result = await model.generate("hello world", max_tokens=8, seed=1, temperature=0.0)
    assert result.finish_reason in ("length", "stop") and result.prompt_tokens > 0
    assert 0 < result.completion_tokens <= 8 or result.finish_reason == "stop"
    assert isinstance(result.text, str) and result.timings["total_ms"] > 0
    again = await model.generate("hello world", max_tokens=8, seed=1, temperature=0.0)
    assert again.text == result.text  # greedy decoding is deterministic

    chunks = [chunk async for chunk in model.stream("the model", max_tokens=6, temperature=0.0)]
    assert chunks and [chunk.tokens_generated for chunk in chunks][-1] <= 6
    assert model.state == "ready" and model.generations == 3

    status = model.get_status()
    assert status.is_initialized and status.backend["isolation"] == isolation
    assert status.backend["backend"] == "llama.cpp" and status.backend["n_ctx"] == 256
    assert status.config["n_threads"] == 1
    assert status.gpu_enabled or status.gpu_reason

    await model.cleanup()
    assert model.state == "released"
    with pytest.raises(InvalidTransition):
        await model.generate("x")
    states = [patch["value"] for patch in patches if patch["path"] == "/state"]
    assert states == ["loading", "ready", *["generating", "ready"] * 3, "released"]


@pytest.mark.parametrize("isolation", ISOLATIONS)
async def test_stream_text_matches_generate(tiny_model: Path, isolation: Any) -> None:
    model = LlamaModel.open(tiny_model, isolation=isolation, n_ctx=256, n_threads=1)
    await model.initialize()
    result = await model.generate("state tree", max_tokens=10, temperature=0.0)
    chunks = [chunk async for chunk in model.stream("state tree", max_tokens=10, temperature=0.0)]
    assert "".join(chunk.text for chunk in chunks) == result.text
    assert chunks[-1].tokens_generated == result.completion_tokens
    await model.cleanup()


@pytest.mark.parametrize("isolation", ISOLATIONS)
async def test_cancel_mid_generation(tiny_model: Path, isolation: Any) -> None:
    model = LlamaModel.open(tiny_model, isolation=isolation, n_ctx=2048, n_threads=1)
    await model.initialize()
    async with anyio.create_task_group() as group:
        model.on_progress.listen(lambda event: group.start_soon(model.cancel) if event.tokens_generated == 2 else None)
        # greedy: the tiny model's weights are fixed, and it continues this prompt for 2,000 tokens without EOS, so
        # only the cancel can end it early (a random seed sometimes drew EOS within the first tokens)
        result = await model.generate("the model", max_tokens=2000, temperature=0.0)
    assert result.finish_reason == "cancelled"
    if isolation == "thread":  # the flag is checked before each token
        assert result.completion_tokens <= 3
    assert model.state == "ready" and model.last_finish_reason == "cancelled"
    await model.cleanup()


async def test_cancel_during_prompt_evaluation(tiny_model: Path) -> None:
    """A cancel that lands while the prompt is evaluated aborts llama_decode (or stops before the first token)."""
    model = LlamaModel.open(tiny_model, isolation="thread", n_ctx=2048, n_batch=64, n_threads=1)
    await model.initialize()
    async with anyio.create_task_group() as group:
        group.start_soon(model.generate, "hello world " * 120, 50)
        while model.state != "generating":
            await anyio.sleep(0)
        await model.cancel()
    assert model.last_finish_reason == "cancelled" and model.tokens_generated <= 1, (model.state, model.error)
    result = await model.generate("hello", max_tokens=3, temperature=0.0)  # still usable
    assert result.finish_reason in ("length", "stop")
    await model.cleanup()


@pytest.mark.parametrize("isolation", ISOLATIONS)
async def test_malformed_corpus_ends_in_error(corpus: dict[str, Path], isolation: Any) -> None:
    for kind in MALFORMED_KINDS:
        model = LlamaModel.open(corpus[kind], isolation=isolation)
        await model.initialize()
        assert model.state == "error", kind
        assert str(corpus[kind]) in (model.error or ""), (kind, model.error)
        await model.cleanup()


@pytest.mark.parametrize("isolation", ISOLATIONS)
@pytest.mark.parametrize("fill", [float("nan"), float("inf")], ids=["nan", "inf"])
async def test_check_tensors_refuses_weights_that_are_not_numbers(tmp_path: Path, isolation: Any, fill: float) -> None:
    """A well-formed file (check_gguf passes it) whose weights are NaN or inf: llama.cpp loads it unless asked to
    check the tensors; with ``check_tensors=True`` the load fails and the model ends in 'error', and can retry."""
    path = write_tiny_llama(tmp_path / "bad_weights.gguf", fill=fill)
    trusting = LlamaModel.open(path, isolation=isolation, n_ctx=256, n_threads=1)
    await trusting.initialize()
    assert trusting.state == "ready"  # the default: no tensor check
    await trusting.cleanup()

    states: list[str] = []
    model = LlamaModel.open(path, isolation=isolation, n_ctx=256, n_threads=1, check_tensors=True)
    model.on_state_change.listen(lambda event: states.append(event.state))
    await model.initialize()
    assert model.state == "error" and states == ["loading", "error"]
    assert model.get_status().config["check_tensors"] is True
    assert "llama.cpp could not load bad_weights.gguf" in (model.error or ""), model.error
    assert "invalid data" in (model.error or ""), model.error
    with pytest.raises(InvalidTransition):  # a typed MSTError: an errored model cannot generate
        await model.generate("hi", max_tokens=1)
    await model.initialize()  # error -> loading is a retry; the file is still bad
    assert model.state == "error"
    await model.cleanup()
    assert model.state == "released"


async def test_check_tensors_passes_a_good_model(tiny_model: Path) -> None:
    model = LlamaModel.open(tiny_model, isolation="thread", n_ctx=256, n_threads=1, check_tensors=True)
    await model.initialize()
    assert model.state == "ready", model.error
    result = await model.generate("tree", max_tokens=2, temperature=0.0)
    assert result.finish_reason in ("length", "stop")
    await model.cleanup()


@pytest.mark.parametrize("isolation", ISOLATIONS)
async def test_unreadable_file_ends_in_error_without_validation(corpus: dict[str, Path], isolation: Any) -> None:
    """The unreadable case is a UNIX socket, which open() refuses even for root; llama.cpp's refusal is an error."""
    path = corpus["unreadable"]
    with pytest.raises(OSError):
        path.open("rb")
    model = LlamaModel.open(path, isolation=isolation, validate=False)
    await model.initialize()
    assert model.state == "error"
    assert "llama.cpp could not load unreadable.gguf" in (model.error or ""), model.error
    await model.cleanup()


async def test_worker_abort_while_loading_becomes_error(corpus: dict[str, Path]) -> None:
    """Duplicate token strings make llama.cpp abort; in the worker that is an error state, not a dead host."""
    logs_before = set(Path(tempfile.gettempdir()).glob("mst_llm_worker_*.log"))
    model = LlamaModel.open(corpus["duplicate_tokens"], validate=False)
    await model.initialize()
    assert model.state == "error"
    assert "inference worker died (SIGABRT) while loading duplicate_tokens.gguf" in (model.error or "")
    # the dead worker's log was read for the message, then removed (the spare started after it may have one)
    leftover = set(Path(tempfile.gettempdir()).glob("mst_llm_worker_*.log")) - logs_before
    assert len(leftover) <= 1
    await model.initialize()  # a retry is allowed (and fails the same way)
    assert model.state == "error"
    await model.cleanup()


async def test_worker_abort_while_generating_becomes_error(corpus: dict[str, Path]) -> None:
    """An SPM vocabulary without byte tokens loads, then aborts llama.cpp on non-ASCII input."""
    model = LlamaModel.open(corpus["missing_byte_tokens"], validate=False, n_ctx=256)
    await model.initialize()
    assert model.state == "ready", model.error
    result = await model.generate("h\u00e9llo \u2603", max_tokens=4)
    assert result.finish_reason == "error"
    assert "inference worker died" in (result.error or "") and "while generating" in (result.error or "")
    assert model.state == "error" and model.error == result.error
    await model.cleanup()


async def test_replaying_patches_reproduces_the_snapshot(tmp_path: Path) -> None:
    path = write_tiny_llama(tmp_path / "replay.gguf", seed=3)
    model = LlamaModel.open(path, isolation="thread", n_ctx=256, progress_updates_per_second=0)
    initial = get_snapshot(model)
    patches: list[dict[str, Any]] = []
    on_patch(model, lambda patch, inverse: patches.append(patch))
    await model.initialize()
    await model.generate("tree", max_tokens=5)
    await model.cleanup()
    replica = LlamaModel.create(initial)
    apply_patch(replica, patches)
    assert get_snapshot(replica) == get_snapshot(model)


EXIT_SCRIPT = """
import sys, anyio
from mst_llm.llm import LlamaModel

async def main():
    global kept
    kept = [LlamaModel.open(sys.argv[1], isolation=isolation, n_ctx=256) for isolation in ("process", "thread")]
    for model in kept:
        await model.initialize()
    print(" ".join(model.state for model in kept))

anyio.run(main)
"""


def test_loaded_models_are_released_quietly_at_exit(tiny_model: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT, str(tiny_model)], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ready", "ready"]
    assert done.stderr == ""
