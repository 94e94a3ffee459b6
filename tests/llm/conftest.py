"""Fixtures: tiny GGUF models written once per session, and the malformed corpus."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.gguf_factory import MALFORMED_KINDS, write_malformed, write_tiny_llama


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("models") / "tiny.gguf")


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("malformed")
    return {kind: write_malformed(directory, kind) for kind in MALFORMED_KINDS}
