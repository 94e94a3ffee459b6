"""Saving the store's snapshot: atomic (a temp file of its own, fsync, rename) under a lock shared with other
processes, in one worker thread (saves land in the order of their commits), debounced, and tolerant of a corrupt
file."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
from filelock import Timeout

from mst_llm.llm.locks import holding

STATE_FILE = ".mst_llm_store.json"
_LOCK_TIMEOUT_S = 10.0
"""How long a save or a read waits for another process's save of the same file (a save takes milliseconds)."""
_TEMP_SUFFIX = ".tmp"

logger = logging.getLogger("mst_llm.llm")


def _temp_prefix(path: Path) -> str:
    return f"{path.name}."


def write_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Write JSON so that a crash leaves either the old or the new file, never a torn one: under the file's lock,
    through a temp file with a name of its own (processes that share a models folder save the same file)."""
    with holding(path, _LOCK_TIMEOUT_S):
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed below, before the rename
            "w", encoding="utf-8", dir=path.parent, prefix=_temp_prefix(path), suffix=_TEMP_SUFFIX, delete=False
        )
        try:
            with handle:
                json.dump(data, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(handle.name, path)
        except BaseException:
            Path(handle.name).unlink(missing_ok=True)
            raise


def _remove_temp_files(path: Path) -> None:
    """Under the file's lock: delete the temp files of saves that never finished. Every save creates, renames or
    deletes its temp file while it holds the lock, so one that is there now belongs to a process that died
    mid-save (killed, out of power); nothing else would ever remove it."""
    prefix = _temp_prefix(path)
    for entry in path.parent.iterdir():
        if entry.name.startswith(prefix) and entry.name.endswith(_TEMP_SUFFIX):
            with contextlib.suppress(OSError):  # left for the next start; the state is read all the same
                entry.unlink()


def read_state(path: Path) -> dict[str, Any] | None:
    """The saved snapshot; None when absent. A torn or corrupt file is moved aside (``*.corrupt-<time>``), under the
    file's lock so that a newer file another process saves meanwhile stays; temp files that crashed saves left are
    deleted under the same lock; a lock held too long reads as absent (the scan rebuilds the state)."""
    try:
        with holding(path, _LOCK_TIMEOUT_S):
            _remove_temp_files(path)
            try:
                text = path.read_text(encoding="utf-8")
            except FileNotFoundError:
                return None
            try:
                data = json.loads(text)
                if not isinstance(data, dict) or not isinstance(data.get("models"), list):
                    raise ValueError("not a store snapshot")
                return data
            except ValueError:
                os.replace(path, path.with_name(f"{path.name}.corrupt-{time.time_ns()}"))
                return None
    except Timeout:
        logger.warning("%s stayed locked by another process for %.0f s; rebuilding the state", path, _LOCK_TIMEOUT_S)
        return None


class Saver:
    """Debounces snapshot saves: at most one write per ``interval``, all made in one worker thread, in order;
    ``flush`` writes what is still pending and returns once it is on disk.

    No save touches the event-loop thread: the debounced ones run during downloads (each progress update is a
    commit), and an fsync there waited 30-90 ms behind the journal commits of the file being downloaded, freezing
    every task; ``flush`` (after a download, a delete, on close) waits in a worker thread too.
    """

    def __init__(self, path: Path, interval: float = 0.5) -> None:
        self.path = path
        self.interval = interval
        self._pending: Mapping[str, Any] | None = None
        self._last = float("-inf")
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mst-llm-saver")
        self._saving: Future[Mapping[str, Any] | None] | None = None

    def changed(self, snapshot: Mapping[str, Any]) -> None:
        """After each commit of the store: start a save, or remember the snapshot until the interval has passed and
        the previous save is done."""
        self._pending = snapshot
        if time.monotonic() - self._last >= self.interval and (self._saving is None or self._saving.done()):
            self._collect()
            self._submit()

    async def flush(self) -> None:
        """Queue the pending snapshot, if any, behind the save in progress and wait until both are on disk (a
        failing disk must not break the store: the scan rebuilds it). The wait is not cancellable: the last state
        reaches the disk, also on a cancelled ``close``."""
        self._submit()
        saving = self._saving
        if saving is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(saving.exception)
            if saving is self._saving:
                self._collect()

    def _submit(self) -> None:
        """Hand the pending snapshot, if any, to the worker thread (after any save queued before it)."""
        if self._pending is not None:
            snapshot, self._pending = self._pending, None
            self._last = time.monotonic()
            self._saving = self._worker.submit(self._save, snapshot)

    def _save(self, snapshot: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """Write one snapshot; on failure return it, to be written again."""
        try:
            write_atomic(self.path, snapshot)
        except OSError:
            return snapshot
        return None

    def _collect(self) -> None:
        """Take the finished save's outcome: a failed one is saved again later unless a newer snapshot is pending."""
        if self._saving is not None:
            failed, self._saving = self._saving.result(), None
            if self._pending is None:
                self._pending = failed
