"""What the page shows, read from a session log: a file someone else writes, or one this process records
from a live tree. Every answer is one page of data (the browser never receives the whole log)."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mst_llm import SessionLog, SessionLogError, apply_snapshot, is_state_tree_node, record_session
from mst_llm.devtools.errors import DevtoolsError
from mst_llm.devtools.llm_panel import llm_panel
from mst_llm.devtools.pointer import ABSENT, overlaps, resolve
from mst_llm.devtools.text import call_text

MAX_PAGE = 500  # most timeline entries per request
MAX_PATCHES = 2000  # most patches per diff answer (the total is always given)
MAX_CHANGED = 500  # most rows in a diff's side-by-side


def summary(entry: Any) -> dict[str, Any]:
    """One timeline row: enough to list the entry, not its patches."""
    action = entry.action
    return {
        "seq": entry.seq,
        "ts": entry.ts,
        "name": entry.name,
        "path": None if action is None else action.get("path", ""),
        "call": call_text(action, 160, entry.flow),
        "patches": len(entry.patches),
    }


def _row(entry: Any, seq: int) -> dict[str, Any]:
    """A timeline row, or for an entry that cannot be read the error naming its line (``seq``: its number)."""
    if not isinstance(entry, SessionLogError):
        return summary(entry)
    return {"seq": seq, "ts": None, "name": None, "path": None, "call": None, "patches": None, "error": str(entry)}


class Source:
    """A session log for the page, safe to call from several threads; ``tree``: the live tree it records."""

    def __init__(
        self, log: SessionLog | str | os.PathLike[str], *, tree: Any = None, workdir: Path | None = None
    ) -> None:
        """``log``: an open log, read as it is and left open, or the path or URL of one to open (and, with
        ``tree``, to record the tree to), closed with the source."""
        self.tree = tree
        self._lock = threading.Lock()
        self._workdir = workdir
        self._recorder = None
        self._owns_log = not isinstance(log, SessionLog)
        if isinstance(log, SessionLog):
            self._log = log
        else:
            if tree is not None:
                self._recorder = record_session(tree, log, meta={"source": "mst_llm.devtools"})
            self._log = SessionLog.open(log)
        self.name = self._log.name  # what the page names: the file, or a stream's URL without credentials
        self._names: list[str] = []  # action name per seq, filled when the timeline is first filtered

    @property
    def live(self) -> bool:
        return self.tree is not None

    @property
    def length(self) -> int:
        return len(self._log)

    def refresh(self) -> int:
        """Index what was appended to the log; returns the number of entries."""
        with self._fresh():
            return len(self._log)

    @property
    def session(self) -> str | None:
        """When the session shown began (the header's ``started``); it changes when an app starts a new one in the
        file, and the page then loads afresh."""
        return None if self._log.header is None else self._log.header.get("started")

    @contextmanager
    def _fresh(self) -> Iterator[None]:
        """Hold the lock over a log brought up to date (every answer sees the latest entries)."""
        with self._lock:
            self._reopen_if_new_session()
            try:
                self._log.refresh()
            except SessionLogError:  # a new session read on from the old one's offset looks corrupt
                if not self._reopen_if_new_session():
                    raise
                self._log.refresh()
            yield

    def _reopen_if_new_session(self) -> bool:
        """Open the file afresh when an app started a new session in it (``SessionLog.new_session``)."""
        if not self._log.new_session():
            return False
        if self._owns_log:
            self._log.close()  # (one given open stays the caller's to close)
        self._log = SessionLog.open(self._log.path)
        self._owns_log = True
        self._names = []
        return True

    def info(self) -> dict[str, Any]:
        with self._fresh():
            header = self._log.header or {}
            return {
                "file": self.name,
                "root_type": header.get("root_type"),
                "library_version": header.get("library_version"),
                "started": header.get("started"),
                "meta": header.get("meta"),
                "length": len(self._log),
                "truncated": self._log.truncated,
                "live": self.live,
            }

    def entries(self, offset: int, limit: int, action: str = "") -> dict[str, Any]:
        """A page of timeline rows; ``action`` keeps the entries whose action name contains it."""
        limit = max(1, min(limit, MAX_PAGE))
        with self._fresh():
            if not action:
                total = len(self._log)
                offset = max(0, min(offset, total))
                found = self._readable(offset + 1, min(total, offset + limit))
                rows = [_row(entry, seq) for seq, entry in enumerate(found, offset + 1)]
                return {"total": total, "offset": offset, "entries": rows}
            found = self._readable(len(self._names) + 1, len(self._log))
            self._names.extend("" if isinstance(entry, SessionLogError) else entry.name or "" for entry in found)
            wanted = action.lower()
            matching = [seq for seq, name in enumerate(self._names, 1) if wanted in name.lower()]
            offset = max(0, min(offset, len(matching)))
            rows = [_row(self._entry_or_error(seq), seq) for seq in matching[offset : offset + limit]]
            return {"total": len(matching), "offset": offset, "entries": rows}

    def _readable(self, first: int, last: int) -> list[Any]:
        """Entries ``first..last``, a corrupt one as the SessionLogError naming it, so that one bad line in a log
        leaves the rest of the timeline readable."""
        try:
            return list(self._log.iter_entries(first, last))
        except SessionLogError:
            return [self._entry_or_error(seq) for seq in range(first, last + 1)]

    def _entry_or_error(self, seq: int) -> Any:
        try:
            return self._log.entry(seq)
        except SessionLogError as error:
            return error

    def state(self, seq: int) -> dict[str, Any]:
        with self._fresh():
            self._check(seq)
            entry = summary(self._log.entry(seq)) if seq else None
            return {"seq": seq, "length": len(self._log), "entry": entry, "state": self._log.snapshot_at(seq)}

    def diff(self, a: int, b: int) -> dict[str, Any]:
        """The patches turning state a into b, and each changed path's value before and after."""
        with self._fresh():
            self._check(a)
            self._check(b)
            patches = self._log.diff(a, b)
            before, after = self._log.snapshot_at(a), self._log.snapshot_at(b)
        paths = list(dict.fromkeys(patch["path"] for patch in patches))
        changed = [_changed(path, before, after) for path in paths]
        return {
            "a": a,
            "b": b,
            "total_patches": len(patches),
            "patches": patches[:MAX_PATCHES],
            "total_changed": len(changed),
            "changed": changed[:MAX_CHANGED],
        }

    def who(self, path: str, limit: int) -> dict[str, Any]:
        """The latest ``limit`` entries that changed ``path`` (at, under or above it), with their patches."""
        with self._fresh():
            found = self._log.changes_to(path)
        rows = []
        for entry in found[-max(1, min(limit, MAX_PAGE)) :]:
            touching = [patch for patch in entry.patches if overlaps(patch["path"], path)]
            rows.append({**summary(entry), "changes": touching[:20]})
        return {"path": path, "total": len(found), "entries": rows}

    def llm(self, seq: int) -> dict[str, Any]:
        """The LLM panel at state ``seq``: models and stores found in the tree, tokens/s over the session."""
        with self._fresh():
            self._check(seq)
            return llm_panel(self._log, self._log.snapshot_at(seq))

    def travel(self, seq: int) -> None:
        """Drive the live tree to recorded state ``seq`` (one new transaction, recorded like any other)."""
        if self.tree is None:
            raise DevtoolsError("time travel needs a live tree; this page shows a log file")
        with self._fresh():
            self._check(seq)
            snapshot = self._log.snapshot_at(seq)
        apply_snapshot(self.tree, snapshot)

    def _check(self, seq: int) -> None:
        if not 0 <= seq <= len(self._log):
            raise DevtoolsError(f"seq {seq} is out of range: the log has states 0..{len(self._log)}")

    def close(self) -> None:
        """Stop recording a live tree and remove its temporary log; close the log if the source opened it."""
        if self._recorder is not None:
            self._recorder.close()
        if self._owns_log:
            self._log.close()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)


def _changed(path: str, before: Any, after: Any) -> dict[str, Any]:
    """A diff row: the path's value before and after, a key left out where the path does not exist (a real value
    can look like any marker, so absence is the key's absence, as in ``mst-llm replay --path --json``)."""
    values = {"before": resolve(before, path), "after": resolve(after, path)}
    return {"path": path, **{key: value for key, value in values.items() if value is not ABSENT}}


def open_source(tree_or_source: Any) -> Source:
    """A live tree (recorded to a temporary log), a session-log path, an open SessionLog, or the URL of a replicated
    stream (``redis://host:port/db#stream``, read with ``SessionLog.open`` through mst_llm.sync)."""
    if is_state_tree_node(tree_or_source):
        workdir = Path(tempfile.mkdtemp(prefix="mst_llm-devtools-"))
        return Source(workdir / "live.jsonl", tree=tree_or_source, workdir=workdir)
    if isinstance(tree_or_source, SessionLog):
        return Source(tree_or_source)
    if isinstance(tree_or_source, str) and "://" in tree_or_source:  # a replicated stream (redis://host/db#name)
        try:
            return Source(tree_or_source)
        except SessionLogError as error:  # (its message never holds the URL's credentials)
            raise DevtoolsError(f"cannot open the stream: {error}") from None
    if isinstance(tree_or_source, str | os.PathLike):
        if not Path(tree_or_source).is_file():
            raise DevtoolsError(f"no session log at {tree_or_source}")
        return Source(tree_or_source)
    raise DevtoolsError(f"cannot show a {type(tree_or_source).__name__}: pass a tree, a SessionLog or a log path")
