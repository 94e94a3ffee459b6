"""Locks between processes (filelock) on the files of a models folder: one per model file, one for the state file.

A lock file lives in ``<folder>/.locks/<name>.lock``, as huggingface_hub keeps them (filelock leaves it there
on Unix: a process that unlinked one while another waited on it would let a third lock a new file at the same
path). The operating system releases a lock whose process dies, so a killed download never leaves a stale one.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
from filelock import FileLock, Timeout

LOCK_DIR = ".locks"
_POLL_S = 0.1
"""How often a waiting download tries the lock again (each try is one ``flock`` in a worker thread)."""

logger = logging.getLogger("mst_llm.llm")


def lock_path(target: Path) -> Path:
    """The lock file guarding ``target``."""
    return target.parent / LOCK_DIR / f"{target.name}.lock"


def _lock(target: Path) -> FileLock:
    """Blocking (folder creation): a lock object any thread may release (filelock's default is per thread)."""
    path = lock_path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(path, thread_local=False)


def _try(lock: FileLock) -> bool:
    """Blocking: one attempt to take ``lock``."""
    try:
        lock.acquire(blocking=False)
    except Timeout:
        return False
    return True


@contextlib.contextmanager
def holding(target: Path, timeout: float) -> Iterator[None]:
    """Blocking, for worker threads: hold ``target``'s lock, waiting at most ``timeout`` seconds for another process
    (then ``filelock.Timeout``, a ``TimeoutError`` and so an ``OSError``)."""
    with _lock(target).acquire(timeout=timeout):
        yield


@contextlib.asynccontextmanager
async def hold(target: Path) -> AsyncIterator[None]:
    """Hold ``target``'s lock for the block, waiting (cancellably, off the event loop) for as long as another
    process holds it, and saying so once in the log."""
    lock = await anyio.to_thread.run_sync(_lock, target)
    if not await anyio.to_thread.run_sync(_try, lock):
        logger.warning(
            "another download of %s is running (it holds %s); waiting for it to finish", target, lock.lock_file
        )
        while not await anyio.to_thread.run_sync(_try, lock):
            await anyio.sleep(_POLL_S)
    try:
        yield
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(lock.release)


__all__ = ["LOCK_DIR", "hold", "holding", "lock_path"]
