"""Saving the store's snapshot: atomic (temp file, fsync, rename), debounced, and tolerant of a corrupt file."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
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
    """Debounces snapshot saves: at most one write per ``interval``; ``flush`` writes what is still pending."""

    def __init__(self, path: Path, interval: float = 0.5) -> None:
        self.path = path
        self.interval = interval
        self._pending: Mapping[str, Any] | None = None
        self._last = float("-inf")

    def changed(self, snapshot: Mapping[str, Any]) -> None:
        """After each commit of the store: save now, or remember the snapshot until the interval has passed."""
        self._pending = snapshot
        if time.monotonic() - self._last >= self.interval:
            self.flush()

    def flush(self) -> None:
        """Write the pending snapshot, if any (a failing disk must not break the store: the scan rebuilds it)."""
        if self._pending is None:
            return
        snapshot, self._pending = self._pending, None
        self._last = time.monotonic()
        try:
            write_atomic(self.path, snapshot)
        except OSError:
            self._pending = snapshot
