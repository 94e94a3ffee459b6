"""Fixtures shared by the store and CLI tests: a tiny GGUF model, and a local HTTP server that serves it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.gguf_factory import write_tiny_llama
from tests.http_server import FileServer, serve


@pytest.fixture(scope="session")
def gguf_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return write_tiny_llama(tmp_path_factory.mktemp("g") / "tiny.gguf").read_bytes()


@pytest.fixture
def server(gguf_bytes: bytes) -> Iterator[FileServer]:
    """A fault-injecting server on 127.0.0.1 that serves ``tiny.gguf``."""
    with serve() as state:
        state.add("tiny.gguf", gguf_bytes)
        yield state
