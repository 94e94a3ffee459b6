"""Saving the store's snapshot: atomic (temp file, fsync, rename), debounced, and tolerant of a corrupt file."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

STATE_FILE = ".mst_llm_store.json"


def write_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Write JSON so that a crash leaves either the old or the new file, never a torn one."""
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def read_state(path: Path) -> dict[str, Any] | None:
    """The saved snapshot; None when absent. A torn or corrupt file is moved aside (``*.corrupt-<time>``)."""
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


class Saver:
    """Debounces snapshot saves: at most one write per ``interval``, made in a worker thread; ``flush`` writes what
    is still pending and returns once it is on disk.

    The debounced saves run during downloads (each progress update is a commit), and their fsync on the event-loop
    thread waited 30-90 ms behind the journal commits of the file being downloaded, freezing every task.
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
            self._pending = None
            self._last = time.monotonic()
            self._saving = self._worker.submit(self._save, snapshot)

    def flush(self) -> None:
        """Wait for a save in progress, then write the pending snapshot, if any (a failing disk must not break the
        store: the scan rebuilds it)."""
        self._collect()
        if self._pending is None:
            return
        snapshot, self._pending = self._pending, None
        self._last = time.monotonic()
        self._pending = self._save(snapshot)

    def _save(self, snapshot: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """Write one snapshot; on failure return it, to be written again."""
        try:
            write_atomic(self.path, snapshot)
        except OSError:
            return snapshot
        return None

    def _collect(self) -> None:
        """Wait for the save in progress; a failed one is saved again later unless a newer snapshot is pending."""
        if self._saving is not None:
            failed, self._saving = self._saving.result(), None
            if self._pending is None:
                self._pending = failed
