"""Fixtures for the LLM and CLI tests: tiny GGUF models written once per session, the malformed corpus, and a
local HTTP server that serves a tiny model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.llm.fake_hub import hub
from tests.llm.gguf_factory import MALFORMED_KINDS, write_malformed, write_tiny_llama
from tests.llm.http_server import FileServer, serve

__all__ = ["corpus", "gguf_bytes", "hub", "server", "tiny_model"]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("models") / "tiny.gguf")


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("malformed")
    return {kind: write_malformed(directory, kind) for kind in MALFORMED_KINDS}


@pytest.fixture(scope="session")
def gguf_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return write_tiny_llama(tmp_path_factory.mktemp("g") / "tiny.gguf").read_bytes()


@pytest.fixture
def server(gguf_bytes: bytes) -> Iterator[FileServer]:
    """A fault-injecting server on 127.0.0.1 that serves ``tiny.gguf``."""
    with serve() as state:
        state.add("tiny.gguf", gguf_bytes)
        yield state
