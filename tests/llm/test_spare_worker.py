"""The spare worker pool of process isolation: reused by initialize(), replenished, never leaked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from mst_llm.llm import LlamaModel
from mst_llm.llm.worker import ProcessBackend, spare_workers

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def fresh_pool() -> Iterator[None]:
    spare_workers.discard()
    yield
    spare_workers.enabled = True


def _spare_pid() -> int | None:
    spare = spare_workers._spare
    return None if spare is None else spare.proc.pid


def _worker_pid(model: LlamaModel) -> int:
    backend = model._rt.backend
    assert isinstance(backend, ProcessBackend)
    return backend._proc.pid


async def test_initialize_takes_the_spare_and_a_new_one_is_started(tiny_model: Path) -> None:
    model = LlamaModel.open(tiny_model, n_ctx=256, n_threads=1)
    first = _spare_pid()
    assert first is not None and spare_workers.wait_ready(30)
    await model.initialize()
    assert model.state == "ready", model.error
    assert _worker_pid(model) == first
    second = _spare_pid()
    assert second is not None and second != first  # replenished after the load
    result = await model.generate("hello", max_tokens=3, temperature=0.0)
    assert result.finish_reason in ("length", "stop")
    await model.cleanup()
    assert model.state == "released" and _spare_pid() == second  # cleanup leaves the spare for the next model


async def test_a_dead_spare_is_replaced(tiny_model: Path) -> None:
    model = LlamaModel.open(tiny_model, n_ctx=256, n_threads=1)
    dead = _spare_pid()
    assert dead is not None
    os.kill(dead, signal.SIGKILL)
    spare_workers._spare.proc.wait()  # type: ignore[union-attr]
    await model.initialize()
    assert model.state == "ready", model.error
    assert _worker_pid(model) != dead
    await model.cleanup()


async def test_cancel_during_load_on_a_spare(tiny_model: Path) -> None:
    model = LlamaModel.open(tiny_model, n_ctx=256, n_threads=1)
    async with anyio.create_task_group() as group:
        group.start_soon(model.initialize)
        while model._rt.backend is None:
            await anyio.sleep(0)
        await model.cancel()
    assert model.state == "idle" and model._rt.backend is None
    await model.initialize()  # the next load takes the replenished spare
    assert model.state == "ready", model.error
    await model.cleanup()


async def test_thread_isolation_and_disabled_pool_start_no_spare(tiny_model: Path) -> None:
    model = LlamaModel.open(tiny_model, isolation="thread", n_ctx=256, n_threads=1)
    assert _spare_pid() is None
    await model.initialize()
    assert model.state == "ready" and _spare_pid() is None
    await model.cleanup()

    spare_workers.enabled = False
    model = LlamaModel.open(tiny_model, n_ctx=256, n_threads=1)
    assert _spare_pid() is None
    await model.initialize()  # a worker started on demand
    assert model.state == "ready" and _spare_pid() is None
    await model.cleanup()


EXIT_SCRIPT = """
import anyio, sys
from mst_llm.llm import LlamaModel
from mst_llm.llm.worker import spare_workers

async def main():
    global kept
    kept = LlamaModel.open(sys.argv[1], n_ctx=256)
    await kept.initialize()
    print(kept.state, kept._rt.backend._proc.pid, spare_workers._spare.proc.pid)

anyio.run(main)
"""


def test_spare_and_workers_are_gone_after_exit(tiny_model: Path, tmp_path: Path) -> None:
    """At exit the loaded model's worker and the spare are stopped, their logs removed, stderr stays empty."""
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT, str(tiny_model)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    state, *pids = done.stdout.split()
    assert state == "ready"
    for pid in map(int, pids):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert list(tmp_path.iterdir()) == []  # the workers' log files
