"""Checking model files on disk: GGUF header, size, sha256 (cached by size+mtime) and GGUF metadata.

Everything here is blocking file I/O; the store runs it in a worker thread.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GGUF_MAGIC = b"GGUF"
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


def gguf_metadata(path: Path) -> dict[str, Any]:
    """Architecture, context length, quantization and parameter count from a GGUF header (absent keys omitted)."""
    from gguf import GGUFReader, LlamaFileType  # imported lazily: numpy is slow to import

    reader = GGUFReader(path)

    def value(name: str) -> Any:
        found = reader.get_field(name)
        return found.contents() if found is not None and found.types else None

    result: dict[str, Any] = {}
    architecture = value("general.architecture")
    if isinstance(architecture, str):
        result["architecture"] = architecture
        context = value(f"{architecture}.context_length")
        if isinstance(context, int):
            result["context_length"] = context
    file_type = value("general.file_type")
    if isinstance(file_type, int):
        with contextlib.suppress(ValueError):
            result["quantization"] = LlamaFileType(file_type).name.removeprefix("MOSTLY_")
    count = value("general.parameter_count")
    if not isinstance(count, int) and reader.tensors:
        count = sum(int(tensor.n_elements) for tensor in reader.tensors)
    if isinstance(count, int) and count > 0:
        result["parameter_count"] = count
    return result


def check_file(
    path: Path,
    *,
    size: int | None,
    min_size: int | None,
    sha256: str | None,
    cached: tuple[int, int, str] | None,
) -> FileCheck:
    """Check header, size and (when known) sha256; ``cached`` (size, mtime_ns, sha256) skips re-hashing."""
    stat = path.stat()
    actual, mtime = stat.st_size, stat.st_mtime_ns
    with open(path, "rb") as handle:
        if handle.read(4) != GGUF_MAGIC:
            return FileCheck(actual, mtime, None, "not a GGUF file (bad magic)")
    if size is not None and actual != size:
        return FileCheck(actual, mtime, None, f"size is {actual} bytes, expected {size}")
    if min_size is not None and actual < min_size:
        return FileCheck(actual, mtime, None, f"size is {actual} bytes, expected at least {min_size}")
    digest = cached[2] if cached is not None and cached[:2] == (actual, mtime) else None
    if sha256 is not None:
        digest = digest or sha256_file(path)
        if digest != sha256:
            return FileCheck(actual, mtime, digest, f"sha256 is {digest}, expected {sha256}")
    try:
        metadata = gguf_metadata(path)
    except Exception as error:  # the gguf reader raises assorted errors on torn files
        return FileCheck(actual, mtime, digest, f"unreadable GGUF header: {error}")
    return FileCheck(actual, mtime, digest, None, metadata)
