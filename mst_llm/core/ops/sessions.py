"""Session logs: a JSON Lines record of every committed transaction on a tree, and a reader that rebuilds any
recorded state, diffs states, finds what changed a path and drives a live tree through the recording.

File layout (one JSON object per line, UTF-8)::

    {"format":"mst_llm.session","version":1,"root_type":...,"library_version":...,"started":...,"ts":...,
     "meta":...,"initial":<snapshot>}                                        header, always first
    {"seq":1,"ts":...,"action":{"name":..,"path":..,"args":[..]}|null,"patches":[..],"inverse_patches":[..],
     "flow":{"name":..,"id":..,"segment":..,"path":..,"args":[..]}}           "flow" only when a flow made it
    {"checkpoint":1000,"ts":...,"snapshot":<snapshot after entry 1000>}      now and then

State ``seq`` is the snapshot after entry ``seq``; state 0 is the header's initial snapshot. With
``flush="line"`` each line is written with one unbuffered ``os.write`` before the action returns, so a killed
process leaves at most one torn last line, which the reader skips and reports (``SessionLog.truncated``);
``flush="batch"`` writes the lines of the last 50 ms at once (a killed process loses at most those; a program that
ends without ``close()`` writes them at exit).
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import time
from array import array
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import entry_points
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, overload

import orjson

from mst_llm._version import __version__
from mst_llm.core.base.frozen import freeze
from mst_llm.core.base.pointer import split_json_path
from mst_llm.core.ops.jsonpatch import JsonPatchError, apply_in_place, apply_persistent
from mst_llm.core.ops.patches import apply_patch
from mst_llm.core.ops.snapshots import apply_snapshot, get_snapshot
from mst_llm.core.ops.tree import get_type, on_commit
from mst_llm.core.state.transaction import Commit, self_contained
from mst_llm.errors import SessionLogError

FORMAT = "mst_llm.session"
FORMAT_VERSION = 1
READABLE_VERSIONS = (1,)  # the format versions this release reads
BATCH_INTERVAL = 0.05  # flush="batch": the longest a committed entry waits before it is written (seconds)
FlushMode = Literal["line", "batch"]
# A checkpoint is written only once the entries since the last one outweigh it this many times, so that
# checkpoints cost at most ~1/CHECKPOINT_SIZE_FACTOR of the log (in bytes and encoding time) on big trees.
CHECKPOINT_SIZE_FACTOR = 4
_CHUNK = 4096  # entries parsed per json.loads call when streaming
_SESSION_MARK = 4096  # bytes of the header line compared by new_session: its start time is in the first hundred

_ENTRY_PREFIX = b'{"seq":'
_CHECKPOINT_PREFIX = b'{"checkpoint":'


def _make_encoder() -> Callable[[Any], str]:
    """A compact JSON encoder built once (``json.dumps`` rebuilds its C encoder on every call)."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - CPython always has the C encoder
        return json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

    def default(value: Any) -> Any:
        raise SessionLogError(f"{type(value).__name__} is not JSON data and cannot be written to a session log")

    encode = make(None, default, json.encoder.encode_basestring, None, ":", ",", False, False, True)
    join = "".join
    return lambda value: join(encode(value, 0))


encode_json = _make_encoder()


def _dumps(value: Any) -> bytes:
    """One JSON line. orjson encodes a typical entry in 0.7 µs against 3.7 µs for the stdlib's C encoder
    (benchmarks/history.py); values it refuses (ints beyond 64 bits, non-str keys, non-JSON data) take the
    stdlib encoder, which writes the former and names the latter."""
    try:
        return orjson.dumps(value, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:
        return (encode_json(value) + "\n").encode()


def entry_line(
    seq: int,
    ts: float,
    action: dict[str, Any] | None,
    patches: Sequence[dict[str, Any]],
    inverse_patches: Sequence[dict[str, Any]],
    flow: dict[str, Any] | None = None,
) -> bytes:
    entry = {"seq": seq, "ts": ts, "action": action, "patches": patches, "inverse_patches": inverse_patches}
    if flow is not None:
        entry["flow"] = flow
    return _dumps(entry)


def commit_line(seq: int, commit: Commit) -> bytes:
    """The entry line of a commit (``on_commit``) as entry ``seq``: what the recorder and a replica write."""
    return entry_line(seq, commit.committed_at, commit.action, commit.patches, commit.inverse_patches, commit.flow)


def _checkpoint(seq: int, ts: float, snapshot: Any) -> dict[str, Any]:
    return {"checkpoint": seq, "ts": ts, "snapshot": snapshot}


def checkpoint_line(seq: int, ts: float, snapshot: Any) -> bytes:
    return _dumps(_checkpoint(seq, ts, snapshot))


def header_line(root_type: str, snapshot: Any, meta: Any) -> bytes:
    now = time.time()
    header = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "root_type": root_type,
        "library_version": __version__,
        "started": datetime.fromtimestamp(now, UTC).isoformat(),
        "ts": now,
        "meta": meta,
        "initial": snapshot,
    }
    return _dumps(header)


def type_name(node: Any) -> str:
    type_ = get_type(node)
    return str(getattr(type_, "__name__", None) or getattr(type_, "name", type_))


# --- writing ---------------------------------------------------------------------------------------------


class SessionRecorder:
    """Appends one line per committed transaction on ``node`` to a session log; a context manager."""

    def __init__(
        self,
        node: Any,
        path: str | os.PathLike[str],
        *,
        meta: Any = None,
        fsync: bool = False,
        checkpoint_every: int | None = 1000,
        flush: FlushMode = "line",
    ) -> None:
        if flush not in ("line", "batch"):
            raise SessionLogError(f"flush must be 'line' or 'batch', not {flush!r}")
        header = header_line(type_name(node), get_snapshot(node), meta)  # first: bad meta leaves the file alone
        self.node = node
        self.path = Path(path)
        self.fsync = fsync
        self.flush_mode = flush
        # flush="batch": what is not written yet, in order: (seq, commit) pairs, entry lines, checkpoints (appended
        # without the lock: deque.append and popleft are atomic; the lock serialises flushes); the writer thread
        # is woken once per batch (``_armed``), so holding an entry is one append
        self._pending: deque[tuple[int, Commit] | bytes | dict[str, Any]] = deque()
        self._pending_lock = threading.Lock()
        self._armed = False
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._writer: threading.Thread | None = None
        self._write_error: Exception | None = None  # the writer thread's first failure, raised by close()
        self._pid = os.getpid()
        self.checkpoint_every = checkpoint_every
        self.seq = 0
        self._since_checkpoint = 0
        self._bytes_since_checkpoint = 0
        self._dispose: Callable[[], None] | None = None
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        try:
            self._last_checkpoint_bytes = self._write_now(header)
        except BaseException:
            self.close()
            raise
        if flush == "batch":
            self._writer = threading.Thread(target=self._write_batches, name=f"session log {self.path}", daemon=True)
            self._writer.start()
            atexit.register(self._close_at_exit)
        self._dispose = on_commit(node, self._on_commit_line if flush == "line" else self._on_commit_batch)

    def _on_commit_line(self, commit: Commit) -> None:
        """flush="line": encode the entry and hand it to the OS (one ``os.write``) before the action returns."""
        fd = self._fd
        if fd is None:
            return
        self.seq = seq = self.seq + 1
        line = commit_line(seq, commit)
        written = os.write(fd, line)
        if written < len(line) or self.fsync:
            self._write_now(line, written)
        if self.checkpoint_every:
            self._since_checkpoint += 1
            self._bytes_since_checkpoint += len(line)
            if self._since_checkpoint >= self.checkpoint_every:
                self._checkpoint_if_due()

    def _on_commit_batch(self, commit: Commit) -> None:
        """flush="batch": keep the commit; the writer thread serialises, encodes and writes what it holds every 50 ms.
        A commit whose call has other than plain arguments is serialised here, on the committing thread: the JSON
        form of a node or of a mutable argument reads what the writer thread must not read while it changes."""
        if self._fd is None:
            return
        self.seq = seq = self.seq + 1
        self._hold((seq, commit) if self_contained(commit) else commit_line(seq, commit))
        if self.checkpoint_every:
            self._since_checkpoint += 1  # (flush counts the entry's bytes once it has encoded it)
            if self._since_checkpoint >= self.checkpoint_every:
                self._checkpoint_if_due()

    def _checkpoint_if_due(self) -> None:
        """Enough entries since the last checkpoint: write one once they also outweigh it."""
        if self._bytes_since_checkpoint >= CHECKPOINT_SIZE_FACTOR * self._last_checkpoint_bytes:
            self.checkpoint()

    def checkpoint(self) -> None:
        """Write the current snapshot, so readers need not replay the entries before it."""
        checkpoint = _checkpoint(self.seq, time.time(), get_snapshot(self.node))
        self._since_checkpoint = 0
        if self.flush_mode == "line":
            self._bytes_since_checkpoint = 0
            self._last_checkpoint_bytes = self._write_now(_dumps(checkpoint))
        else:
            self._hold(checkpoint, checkpoint=True)

    def _hold(self, item: tuple[int, Commit] | bytes | dict[str, Any], *, checkpoint: bool = False) -> None:
        if checkpoint:
            with self._pending_lock:  # (flush counts the bytes of the entries held after it; see there)
                self._bytes_since_checkpoint = 0
                self._pending.append(item)
        else:
            self._pending.append(item)
        if not self._armed:
            self._armed = True
            self._wake.set()

    def _write_batches(self) -> None:
        """flush="batch": the writer thread. Woken by the first entry held after a write, it waits BATCH_INTERVAL
        (less when the recorder closes) and writes what is held by then. (One thread for the recorder's life, not a
        thread start per batch.)"""
        while not self._closing.is_set():
            self._wake.wait()
            self._closing.wait(BATCH_INTERVAL)
            self._wake.clear()
            self._armed = False  # before flush drains: an entry held from now on wakes the next round
            try:
                self.flush()
            except Exception as error:  # a full disk, say: those entries are lost; close() says so, recording goes on
                self._write_error = self._write_error or error

    def flush(self) -> None:
        """Encode and write the entries that flush="batch" holds back (called every 50 ms while there are any)."""
        with self._pending_lock:
            pending = self._pending
            items = [pending.popleft() for _ in range(len(pending))]
            if not items or self._fd is None:
                return
            # the checkpoint rule's bytes: those of the entries held after the last checkpoint, which set the count
            # back to 0 when it was taken (the entries held before it belong to the stretch it closed)
            counted = 0
            lines = []
            for item in items:
                if isinstance(item, dict):  # a checkpoint
                    line = _dumps(item)
                    self._last_checkpoint_bytes = len(line)
                    counted = 0
                else:
                    line = item if isinstance(item, bytes) else commit_line(*item)
                    counted += len(line)
                lines.append(line)
            self._bytes_since_checkpoint += counted
            self._write_now(b"".join(lines))

    def _write_now(self, data: bytes, written: int = 0) -> int:
        """Write ``data`` from byte ``written`` on (the bytes before it were written already), fsync if asked."""
        assert self._fd is not None
        if not written:
            written = os.write(self._fd, data)
        while written < len(data):  # regular files rarely write short, but never lose the rest
            written += os.write(self._fd, data[written:])
        if self.fsync:
            os.fsync(self._fd)
        return len(data)

    @property
    def closed(self) -> bool:
        return self._fd is None

    def close(self) -> None:
        """Stop recording and close the file (idempotent). Raises SessionLogError when flush="batch" could not write
        some entries (its writer thread keeps the first failure for here)."""
        if self._dispose is not None:
            self._dispose()
            self._dispose = None
        if self._writer is not None:
            atexit.unregister(self._close_at_exit)
            self._closing.set()
            self._wake.set()
            self._writer.join()
            self._writer = None
        try:
            self.flush()
        finally:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
        error, self._write_error = self._write_error, None
        if error is not None:
            raise SessionLogError(f"{self.path}: entries held by flush='batch' were not written: {error}") from error

    stop = close

    def _close_at_exit(self) -> None:
        """flush="batch": a program that ends without close() still writes what is held (the daemon writer thread
        dies with the interpreter); not in a forked child, which would write its parent's entries again."""
        if os.getpid() == self._pid:
            self.close()

    def __enter__(self) -> SessionRecorder:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def record_session(
    node: Any,
    path: str | os.PathLike[str],
    *,
    meta: Any = None,
    fsync: bool = False,
    checkpoint_every: int | None = 1000,
    flush: FlushMode = "line",
) -> SessionRecorder:
    """Record every committed transaction on ``node`` to the JSON Lines file ``path`` (truncated first).

    ``checkpoint_every``: least number of entries between full-snapshot checkpoints (None: never).
    ``fsync``: also fsync each write (survives power loss, not just a killed process; much slower).
    ``flush``: "line" writes each entry before the action returns; "batch" writes the entries of the last
    50 ms together from a writer thread (cheaper per action; a killed process loses at most those 50 ms).
    """
    return SessionRecorder(node, path, meta=meta, fsync=fsync, checkpoint_every=checkpoint_every, flush=flush)


# --- reading ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One recorded transaction. ``action`` is the outermost action call, None for bare changes; ``flow`` is the
    flow run that made it (``name``, ``id``, ``segment``, and ``path``/``args`` when known), else None."""

    seq: int
    ts: float
    action: dict[str, Any] | None
    patches: list[dict[str, Any]]
    inverse_patches: list[dict[str, Any]]
    flow: dict[str, Any] | None = None

    @property
    def name(self) -> str | None:
        """The action's name, else the name of the flow that made the change (None for a bare change)."""
        if self.action is not None:
            return str(self.action["name"])
        return None if self.flow is None else str(self.flow["name"])


class SessionLog:
    """A session log opened for reading. Lines are indexed on open and parsed only when needed."""

    # the lines of the format it reads, for programs that write it elsewhere (mst_llm.sync to a Redis stream)
    header_line = staticmethod(header_line)
    entry_line = staticmethod(entry_line)
    commit_line = staticmethod(commit_line)
    checkpoint_line = staticmethod(checkpoint_line)
    root_type_of = staticmethod(type_name)

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.header: dict[str, Any] | None = None
        self.truncated = False  # the file ends with a torn (incomplete) line, which is ignored
        self.truncated_bytes = 0
        self._header_end = 0
        self._starts = array("q")  # byte range of entry seq = index + 1
        self._ends = array("q")
        self._checkpoint_seqs: list[int] = []
        self._checkpoint_ranges: list[tuple[int, int]] = []
        self._scanned = 0  # byte offset up to which complete lines have been indexed
        self._session_mark = b""  # the start of the header line indexed (see new_session)
        self._lines = 0  # how many lines that is
        self.refresh()

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> SessionLog:
        """Open a log file, or a URL (``redis://host:port/db#stream``) through the reader that an installed
        package registers for its scheme under the ``mst_llm.log_sources`` entry points (the core imports none)."""
        scheme, sep, _ = os.fspath(path).partition("://")
        if sep and scheme.isascii() and scheme.isalpha() and len(scheme) > 1:
            return _open_url(scheme.lower(), os.fspath(path))
        return cls(path)

    @property
    def name(self) -> str:
        """What the log is called in messages: its path (a stream's reader gives its URL without credentials)."""
        return str(self.path)

    def close(self) -> None:
        """Release what the log holds: nothing for a file (a stream's reader closes its connection and copy)."""

    def __enter__(self) -> SessionLog:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- indexing ----------------------------------------------------------------------------------------

    def refresh(self) -> int:
        """Index lines appended since the last call (a live log); returns how many entries were added."""
        before = len(self._starts)
        try:
            with open(self.path, "rb") as file:
                file.seek(self._scanned)
                position = self._scanned
                torn = b""
                for line in file:
                    if not line.endswith(b"\n") and not _parses(line):
                        torn = line
                        break
                    self._lines += 1
                    self._index_line(line, position)
                    position += len(line)
        except OSError as error:  # missing, a directory, no permission
            raise SessionLogError(f"{self.name}: cannot read the log: {error.strerror or error}") from error
        self._scanned = position
        self.truncated = bool(torn)
        self.truncated_bytes = len(torn)
        return len(self._starts) - before

    def new_session(self) -> bool:
        """Whether the file now holds another session than the one indexed: an app started recording to it again
        (``record_session`` truncates it), so its header (which has the start time) changed. Read on from the old
        session's offset, the new one would look corrupt; a follower opens the file afresh or stops."""
        if not self._session_mark:  # no header indexed yet: whatever comes is the session
            return False
        try:
            with open(self.path, "rb") as file:
                return file.read(len(self._session_mark)) != self._session_mark
        except OSError as error:
            raise SessionLogError(f"{self.name}: cannot read the log: {error.strerror or error}") from error

    def _index_line(self, line: bytes, position: int) -> None:
        end = position + len(line)
        if position == 0:
            self.header = _check_header(line, self.name)
            self._header_end = end
            self._session_mark = line[:_SESSION_MARK]
        elif line.startswith(_ENTRY_PREFIX):
            self._starts.append(position)
            self._ends.append(end)
        elif line.startswith(_CHECKPOINT_PREFIX):
            self._checkpoint_seqs.append(len(self._starts))
            self._checkpoint_ranges.append((position, end))
        elif line.strip():
            raise SessionLogError(
                f"{self.name}: line {self._lines} is not a session-log line (it follows entry {len(self)}): "
                f"{line[:60]!r}"
            )

    # -- entries -----------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._starts)

    def __iter__(self) -> Iterator[LogEntry]:
        """The entries, seq 1 first (like the records of a file)."""
        return self.iter_entries()

    @property
    def entries(self) -> EntryList:
        return EntryList(self)

    def entry(self, seq: int) -> LogEntry:
        self._check_seq(seq, first=1)
        return self._read_entries(seq, seq)[0]

    def iter_entries(self, start: int = 1, stop: int | None = None) -> Iterator[LogEntry]:
        """Entries ``start`` to ``stop`` (inclusive; default the last), parsed in chunks."""
        stop = len(self) if stop is None else stop
        if start <= stop:
            self._check_seq(start, first=1)
            self._check_seq(stop, first=1)
        seq = start
        while seq <= stop:
            # a contiguous run of entry lines: up to the next checkpoint line and at most _CHUNK entries
            boundary = bisect_right(self._checkpoint_seqs, seq - 1)
            last = stop
            if boundary < len(self._checkpoint_seqs):
                last = min(last, self._checkpoint_seqs[boundary])
            last = min(last, seq + _CHUNK - 1)
            yield from self._read_entries(seq, last)
            seq = last + 1

    def _read_entries(self, first: int, last: int) -> list[LogEntry]:
        raw = self._read(self._starts[first - 1], self._ends[last - 1])
        try:
            items = json.loads(b"[" + raw.rstrip(b"\n").replace(b"\n", b",") + b"]")
            entries = [
                LogEntry(
                    item["seq"],
                    item["ts"],
                    item.get("action"),
                    item["patches"],
                    item["inverse_patches"],
                    item.get("flow"),
                )
                for item in items
            ]
        except (ValueError, KeyError, TypeError):
            raise self._corrupt_entry(first, last) from None
        if [entry.seq for entry in entries] != list(range(first, last + 1)):
            raise self._corrupt_entry(first, last)
        return entries

    def _corrupt_entry(self, first: int, last: int) -> SessionLogError:
        """The error for the first bad line among entries ``first..last``, named by line number and seq."""
        for seq in range(first, last + 1):
            line = self._read(self._starts[seq - 1], self._ends[seq - 1])
            try:
                item = json.loads(line)
                problem = None if item["seq"] == seq else f"it is numbered {item['seq']}, expected {seq}"
            except ValueError as error:
                problem = f"{error}"
            except (KeyError, TypeError) as error:
                problem = f"a field is missing or of the wrong type ({error})"
            if problem is not None:
                lineno = self._read(0, self._starts[seq - 1]).count(b"\n") + 1
                return SessionLogError(
                    f"{self.name}: line {lineno} (entry {seq}, between entries {seq - 1} and {seq + 1}) "
                    f"is corrupt: {problem}"
                )
        return SessionLogError(f"{self.name}: entries {first}-{last} are corrupt")  # pragma: no cover

    def _read(self, start: int, end: int) -> bytes:
        with open(self.path, "rb") as file:
            file.seek(start)
            return file.read(end - start)

    # -- states ------------------------------------------------------------------------------------------

    def _require_header(self) -> dict[str, Any]:
        if self.header is None:
            raise SessionLogError(f"{self.name}: the log has no complete header (nothing was recorded)")
        return self.header

    def _check_seq(self, seq: int, first: int = 0) -> None:
        if not first <= seq <= len(self):
            raise SessionLogError(f"seq {seq} is out of range: this log has states {first}..{len(self)}")

    def _base(self, seq: int) -> tuple[int, Any]:
        """The nearest stored state at or before ``seq``, freshly parsed (the caller may mutate it)."""
        self._require_header()
        index = bisect_right(self._checkpoint_seqs, seq) - 1
        if index < 0:
            return 0, json.loads(self._read(0, self._header_end))["initial"]
        start, end = self._checkpoint_ranges[index]
        return self._checkpoint_seqs[index], json.loads(self._read(start, end))["snapshot"]

    def snapshot_at(self, seq: int) -> Any:
        """The (immutable) snapshot after entry ``seq``; 0 is the initial state."""
        self._check_seq(seq)
        base_seq, doc = self._base(seq)
        for entry in self.iter_entries(base_seq + 1, seq):
            doc = _apply_entry(doc, entry, apply_in_place)
        return freeze(doc)

    def states(self, start: int = 1, stop: int | None = None) -> Iterator[tuple[LogEntry, Any]]:
        """``(entry, snapshot after it)`` for each entry; snapshots share unchanged subtrees."""
        doc = self.snapshot_at(start - 1)
        for entry in self.iter_entries(start, stop):
            doc = _apply_entry(doc, entry, apply_persistent)
            yield entry, doc

    def diff(self, a: int, b: int) -> list[dict[str, Any]]:
        """Patches turning state ``a`` into state ``b``: the recorded ones, or their inverses going back."""
        self._check_seq(a)
        self._check_seq(b)
        if a <= b:
            return [patch for entry in self.iter_entries(a + 1, b) for patch in entry.patches]
        backwards = list(self.iter_entries(b + 1, a))
        return [patch for entry in reversed(backwards) for patch in reversed(entry.inverse_patches)]

    def changes_to(self, json_path: str) -> list[LogEntry]:
        """Entries that changed ``json_path``: a patch at it, under it, or replacing a container above it."""
        target = split_json_path(json_path)
        return [
            entry
            for entry in self.iter_entries()
            if any(_overlaps(split_json_path(patch["path"]), target) for patch in entry.patches)
        ]

    def replay(self, node: Any, upto: int | None = None) -> None:
        """Drive ``node`` through the recorded states 0..``upto`` (default all), one transaction per entry.

        At each checkpoint the live snapshot is compared with the recorded one, so replaying onto model
        classes that behave differently fails early with a SessionLogError naming the entry.
        """
        header = self._require_header()
        upto = len(self) if upto is None else upto
        self._check_seq(upto)
        if type_name(node) != header["root_type"]:
            raise SessionLogError(
                f"this log was recorded on a {header['root_type']}, not a {type_name(node)}: {self.name}"
            )
        apply_snapshot(node, header["initial"])
        checkpoints = {seq: i for i, seq in enumerate(self._checkpoint_seqs) if seq <= upto}
        for entry in self.iter_entries(1, upto):
            apply_patch(node, entry.patches)
            if entry.seq in checkpoints:
                start, end = self._checkpoint_ranges[checkpoints[entry.seq]]
                if get_snapshot(node) != json.loads(self._read(start, end))["snapshot"]:
                    raise SessionLogError(f"replay diverged from the recorded state at entry {entry.seq}")


class EntryList(Sequence[LogEntry]):
    """The entries of a log as a read-only sequence; ``entries[0]`` is seq 1."""

    def __init__(self, log: SessionLog) -> None:
        self._log = log

    def __len__(self) -> int:
        return len(self._log)

    @overload
    def __getitem__(self, index: int) -> LogEntry: ...
    @overload
    def __getitem__(self, index: slice) -> list[LogEntry]: ...
    def __getitem__(self, index: int | slice) -> LogEntry | list[LogEntry]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        size = len(self)
        if not -size <= index < size:
            raise IndexError(f"entry index {index} out of range ({size} entries)")
        return self._log.entry(index % size + 1)

    def __iter__(self) -> Iterator[LogEntry]:
        return self._log.iter_entries()


LOG_SOURCES = "mst_llm.log_sources"  # entry-point group: URL scheme -> callable(url) returning a SessionLog


def _open_url(scheme: str, url: str) -> SessionLog:
    readers = entry_points(group=LOG_SOURCES, name=scheme)
    if not readers:
        hint = " (install mst-llm[redis])" if scheme in ("redis", "rediss") else ""
        raise SessionLogError(f"no session-log reader is installed for {scheme}:// URLs{hint}")
    log = next(iter(readers)).load()(url)
    if not isinstance(log, SessionLog):
        raise SessionLogError(f"the {scheme}:// reader returned a {type(log).__name__}, not a SessionLog")
    return log


def _apply_entry(doc: Any, entry: LogEntry, apply: Callable[[Any, dict[str, Any]], Any]) -> Any:
    try:
        for patch in entry.patches:
            doc = apply(doc, patch)
    except JsonPatchError as error:
        raise SessionLogError(f"entry {entry.seq} does not apply to the recorded state: {error}") from None
    return doc


def _overlaps(path: list[str], target: list[str]) -> bool:
    shorter = min(len(path), len(target))
    return path[:shorter] == target[:shorter]


def _parses(line: bytes) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def _check_header(line: bytes, name: str) -> dict[str, Any]:
    readable = ", ".join(map(str, READABLE_VERSIONS))
    try:
        header = json.loads(line)
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise SessionLogError(
            f"{name}: not an mst_llm session log: the first line is not a session header "
            f'(expected {{"format":"{FORMAT}","version":N,...}}, found {line[:60]!r})'
        )
    version = header.get("version")
    if version not in READABLE_VERSIONS:
        found = "has no format version" if version is None else f"format version {version!r} is not supported"
        raise SessionLogError(
            f"{name}: session log {found} (this mst_llm reads version {readable}; the log was written by mst_llm "
            f"{header.get('library_version', '?')})"
        )
    return header
