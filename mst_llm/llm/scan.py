"""Checking model files on disk: GGUF structure and metadata, size, sha256 (cached by size+mtime).

Everything here is blocking file I/O; the store runs it in a worker thread.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mst_llm.errors import GGUFValidationError
from mst_llm.llm.gguf_check import check_gguf

_BLOCK = 4 << 20


@dataclass(frozen=True)
class FileCheck:
    """The outcome of checking one model file: ``problem`` is None when the file is usable."""

    size: int
    mtime_ns: int
    sha256: str | None
    problem: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, read in large blocks (hashlib releases the GIL)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def check_file(
    path: Path,
    *,
    size: int | None,
    min_size: int | None,
    sha256: str | None,
    cached: tuple[int, int, str] | None,
) -> FileCheck:
    """Check size, the GGUF structure (the same validation LlamaModel runs before llama.cpp sees a file) and,
    when known, sha256; ``cached`` (size, mtime_ns, sha256) skips re-hashing."""
    stat = path.stat()
    actual, mtime = stat.st_size, stat.st_mtime_ns
    if size is not None and actual != size:
        return FileCheck(actual, mtime, None, f"size is {actual} bytes, expected {size}")
    if min_size is not None and actual < min_size:
        return FileCheck(actual, mtime, None, f"size is {actual} bytes, expected at least {min_size}")
    try:
        info = check_gguf(path)
    except GGUFValidationError as error:
        return FileCheck(actual, mtime, None, error.reason)
    digest = cached[2] if cached is not None and cached[:2] == (actual, mtime) else None
    if sha256 is not None:
        digest = digest or sha256_file(path)
        if digest != sha256:
            return FileCheck(actual, mtime, digest, f"sha256 is {digest}, expected {sha256}")
    metadata = {
        "architecture": info.architecture,
        "context_length": info.context_length,
        "quantization": info.quantization,
        "parameter_count": info.parameter_count,
    }
    return FileCheck(actual, mtime, digest, None, {key: value for key, value in metadata.items() if value is not None})
