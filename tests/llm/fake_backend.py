"""A scripted Backend for tests of LlamaModel's state machine: no llama.cpp, with injectable faults."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio

from mst_llm.errors import InferenceError, WorkerDiedError
from mst_llm.llm import Chunk, Finished, GenerateRequest, LoadCancelled, LoadInfo, llm_env


@dataclass
class Faults:
    """What the next operations do wrong (each flag is consumed by the operation it breaks)."""

    load_failure: bool = False
    death_on_load: bool = False
    fail_at_token: int | None = None
    death_at_token: int | None = None
    hold_load: bool = False  # load waits (checking for cancel) until this is cleared


class FakeBackend:
    """Loads instantly in two progress steps; generates 'w0 w1 ...' one token per checkpoint."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.cancelled = False
        self.closed = False

    async def load(self, path: str, config: Mapping[str, Any], on_progress: Callable[[float], None]) -> LoadInfo:
        self.cancelled = False
        while self.faults.hold_load and not self.cancelled:
            await anyio.sleep(0.001)
        for step in (0.25, 0.5, 1.0):
            await anyio.sleep(0)
            if self.cancelled:
                raise LoadCancelled()
            on_progress(step)
        if self.faults.load_failure:
            self.faults.load_failure = False
            raise InferenceError(f"llama.cpp could not load {path}: injected failure")
        if self.faults.death_on_load:
            self.faults.death_on_load = False
            self.closed = True
            raise WorkerDiedError(f"inference worker died (SIGABRT) while loading {path}")
        return LoadInfo("fake", "", False, 0, 2, int(config["n_ctx"]), 512, 1, 10)

    async def generate(self, request: GenerateRequest) -> AsyncGenerator[Chunk | Finished, None]:
        if self.closed:
            raise WorkerDiedError("inference worker died (SIGKILL) while idle")
        self.cancelled = False
        text = ""
        for index in range(request.max_tokens):
            await anyio.sleep(0)
            if self.cancelled:
                yield Finished(text, 3, index, "cancelled", 1.0, 1.0)
                return
            if self.faults.fail_at_token == index:
                self.faults.fail_at_token = None
                raise InferenceError("generation failed: injected failure")
            if self.faults.death_at_token == index:
                self.faults.death_at_token = None
                self.closed = True
                raise WorkerDiedError("inference worker died (SIGSEGV) while generating")
            piece = f"w{index} "
            text += piece
            yield Chunk(piece, index)
        yield Finished(text, 3, request.max_tokens, "length", 1.0, 1.0)

    def cancel(self) -> None:
        self.cancelled = True

    async def close(self) -> None:
        self.closed = True

    def close_now(self) -> None:
        self.closed = True


def fake_env(faults: Faults | None = None) -> dict[str, Any]:
    """An env for LlamaModel.open(..., env=...) that makes it use a FakeBackend."""
    shared = faults or Faults()
    return {**llm_env(backend_factory=lambda isolation: FakeBackend(shared)), "faults": shared}
