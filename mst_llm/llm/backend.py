"""What LlamaModel needs from an inference backend, and the plain values that cross it.

The values are small frozen dataclasses of JSON-friendly fields, so they pickle cheaply across the worker
process boundary. A test (or another engine) can implement `Backend` without llama-cpp-python.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

FinishReason = Literal["stop", "length", "cancelled", "error"]


def default_config() -> dict[str, Any]:
    """The effective defaults (the seed's: context 2048, batch 512, threads = min(4, cores))."""
    return {
        "n_ctx": 2048,
        "n_batch": 512,
        "n_threads": min(4, os.cpu_count() or 1),
        "n_gpu_layers": None,  # None: every layer when the build can offload, else 0
        "use_mmap": True,
        "validate": True,  # check the file with gguf_check before llama.cpp sees it
        "check_tensors": False,  # llama.cpp validates every tensor's data (NaN, inf) while loading
        "progress_updates_per_second": 10.0,  # rate of tree updates while generating
    }


@dataclass(frozen=True)
class GenerateRequest:
    """One generation: the prompt and the sampling settings."""

    prompt: str
    max_tokens: int = 256
    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 40
    stop: tuple[str, ...] = ()
    seed: int | None = None
    repeat_penalty: float = 1.0


@dataclass(frozen=True)
class Chunk:
    """One sampled token and the text it made available (empty while a UTF-8 character is incomplete)."""

    text: str
    token: int


@dataclass(frozen=True)
class Finished:
    """The end of a generation (the last item a backend's generate() yields)."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason
    prompt_ms: float
    generation_ms: float


@dataclass(frozen=True)
class LoadInfo:
    """What the backend reports after loading: hardware use and the values it actually applied."""

    backend: str
    system_info: str
    gpu_offload_supported: bool
    offloaded_layers: int
    n_layers: int
    n_ctx: int
    n_batch: int
    n_threads: int
    n_vocab: int
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class LoadCancelled(Exception):
    """Raised by a backend's load() when cancel() stopped it."""


class Backend(Protocol):
    """An inference engine holding at most one loaded model. Calls never overlap, except cancel()."""

    async def load(self, path: str, config: Mapping[str, Any], on_progress: Callable[[float], None]) -> LoadInfo:
        """Load the model; report progress in [0, 1]; raise LoadCancelled or InferenceError."""
        ...

    def generate(self, request: GenerateRequest) -> AsyncGenerator[Chunk | Finished, None]:
        """Yield a Chunk per sampled token, then exactly one Finished; raise InferenceError on failure."""
        ...

    def cancel(self) -> None:
        """Stop the running load or generation soon (within a token); safe from any thread, idempotent."""
        ...

    async def close(self) -> None:
        """Free the model and any worker; idempotent."""
        ...

    def close_now(self) -> None:
        """Free everything synchronously and quietly (interpreter exit)."""
        ...
