"""Replicas: one state tree kept equal across processes and machines through a Redis stream.

Every committed transaction of the tree becomes a stream entry with id ``<seq>-0``; Redis refuses an explicit
id that is not above the stream's top, so an entry lands only on top of the state it was computed on. A
replica that loses that race rolls its pending transactions back, applies the winners and re-runs its pending
actions (a rebase); what cannot be re-run is reported through ``on_conflict``. Two asyncio tasks do the work:
a reader that blocks on XREAD and queues what arrives, and a writer that applies the queue, publishes local
commits and writes checkpoints. Both reconnect with backoff and resume from ``seq``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal
from uuid import uuid4

import orjson
from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from mst_llm import (
    Commit,
    ModelNode,
    SessionLog,
    action,
    apply_action,
    apply_patch,
    apply_snapshot,
    get_snapshot,
    model,
    on_commit,
)
from mst_llm.sync.stream import (
    APPEND,
    CHECKPOINT,
    INIT,
    BadEntryError,
    ConflictError,
    Entry,
    Keys,
    SyncError,
    decode,
    parse,
    password,
    redact,
    scrub,
)

log = logging.getLogger("mst_llm.sync")

Status = Literal["syncing", "live", "reconnecting", "closed"]
ConflictKind = Literal["not_rerunnable", "rerun_failed", "bad_entry", "missing_entries", "unpublished"]
# Connection trouble worth retrying (a broker that restarts, loads its AOF, or drops us); anything else is fatal.
RETRYABLE = (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError, asyncio.TimeoutError)
FATAL = (redis_errors.AuthenticationError, redis_errors.AuthorizationError)
MAX_BATCH = 1000  # local commits appended per round trip
READ_BATCH = 1000  # entries per XREAD / XRANGE
BLOCK_MS = 1000  # how long one XREAD waits for new entries
# After a read that brought entries, the reader waits this long before the next one, so that a busy stream wakes a
# replica at most ~200 times a second with what arrived meanwhile (each wake-up and XREAD costs more CPU than
# applying a few entries) instead of once per append; it adds at most this much to a follower's lag.
READ_PAUSE = 0.005


@model
class ReplicaStatus(ModelNode):
    """A replica's status as a tree of its own, so it is observed like any state (on_patch, views, ...)."""

    status: Literal["syncing", "live", "reconnecting", "closed"] = "syncing"

    @action
    def change(self, status: Status) -> None:
        self.status = status


@dataclass(frozen=True, slots=True)
class Conflict:
    """Something replication could not keep, reported instead of lost.

    ``kind``: ``not_rerunnable`` (a pending flow segment, apply_patch/apply_snapshot or bare change lost a race),
    ``rerun_failed`` (a pending action raised when re-run on the winners' state), ``bad_entry`` (a stream entry
    that is garbage or does not apply; skipped), ``missing_entries`` (the broker lost entries), ``unpublished``
    (local commits still pending when the replica closed). ``action``/``flow``/``patches`` describe the local
    transaction, ``seq`` the stream entry.
    """

    kind: ConflictKind
    error: Exception
    action: dict[str, Any] | None = None
    flow: dict[str, Any] | None = None
    patches: tuple[dict[str, Any], ...] = ()
    seq: int | None = None


@dataclass(slots=True)
class _Pending:
    tag: str  # "<replica id>/<n>": how we recognise our entry in the stream after a lost reply
    commit: Commit


@dataclass(slots=True)
class _Backoff:
    """Exponential backoff with jitter: 50 ms, doubling, at most 2 s."""

    delay: float = 0.05
    ceiling: float = 2.0
    current: float = field(default=0.0)

    def reset(self) -> None:
        self.current = 0.0

    async def sleep(self) -> None:
        self.current = min(self.ceiling, self.current * 2 if self.current else self.delay)
        await asyncio.sleep(self.current * random.uniform(0.5, 1.0))


class Replica:
    """One tree joined to a replicated stream. Use ``async with replicate(...) as replica``."""

    def __init__(
        self,
        tree: Any,
        url: str,
        stream: str,
        *,
        checkpoint_every: int = 1000,
        retain: int | None = None,
        connect_timeout: float = 10.0,
        close_timeout: float = 5.0,
        client_options: dict[str, Any] | None = None,
    ) -> None:
        if checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be at least 1, not {checkpoint_every}")
        if retain is not None and retain < 0:
            raise ValueError(f"retain must be None or at least 0, not {retain}")
        self.tree = tree
        self.url = redact(url)  # the only form of the URL this object keeps printable
        self._secret = password(url)
        self.stream = stream
        self.checkpoint_every = checkpoint_every
        self.retain = retain
        self.connect_timeout = connect_timeout
        self.close_timeout = close_timeout
        self.state = ReplicaStatus.create()
        self.seq = 0
        self._top = 0  # the highest seq known to be in the stream
        self._keys = Keys(stream)
        try:
            # a command that fails on a pooled connection is sent once more on a fresh one: after a broker restart a
            # connection opened to the old process fails on its first use (redis-py 8.1 no longer replaces one the
            # server closed, and from_url retries nothing), which flapped the status live -> reconnecting -> live.
            # An append whose reply was lost and is sent again finds its seq taken, and the replica recognises its
            # own entry by its origin tag. (A Retry per client: redis-py may update its error list in place.)
            self._client = Redis.from_url(url, **{"retry": Retry(NoBackoff(), 1), **(client_options or {})})
        except ValueError as error:
            raise SyncError(f"bad broker URL {self.url}: {scrub(error, self._secret)}") from None
        self._append = self._client.register_script(APPEND)
        self._init = self._client.register_script(INIT)
        self._checkpoint = self._client.register_script(CHECKPOINT)
        self._id = uuid4().hex[:12]
        self._count = 0
        self._pending: list[_Pending] = []
        self._inbox: deque[Entry] = deque()
        self._applying = False  # our own writes to the tree (remote entries, rollbacks, on the loop) are not published
        self._committed = False  # the last of them committed (apply_patch may still raise: a listener did)
        self._gap = False  # the inbox skipped entries: fetch them (or the checkpoint) with XRANGE
        self._resync = False  # after a reconnect: catch up before publishing
        self._checkpoint_due = False
        self._error: BaseException | None = None
        self._closing = False  # the tasks stop (redis-py may turn a cancellation into a ConnectionError)
        self._listeners: list[Callable[[Conflict], None]] = []
        self._dispose: Callable[[], None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0

    def __repr__(self) -> str:
        return f"<Replica {self.stream!r} on {self.url} seq={self.seq} status={self.status}>"

    # -- public --------------------------------------------------------------------------------------------

    @property
    def status(self) -> Status:
        status: Status = self.state.status
        return status

    @property
    def lag(self) -> int:
        """Entries in the stream that this replica has not applied yet (as far as it has seen)."""
        return max(0, self._top - self.seq)

    @property
    def pending(self) -> int:
        """Local commits not yet in the stream."""
        return len(self._pending)

    def on_conflict(self, listener: Callable[[Conflict], None]) -> Callable[[], None]:
        """Call ``listener(conflict)`` for each thing replication could not keep; returns the disposer."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    async def sync(self, timeout: float = 10.0) -> None:
        """Wait until every local commit is in the stream, this replica has applied the stream up to its top at
        the time of the call, and the checkpoint it owes (if any) is stored (raises SyncError after ``timeout``
        seconds)."""
        deadline = time.monotonic() + timeout
        top = await self._with_retry(self._stream_top, deadline)
        while self._pending or self.seq < top or self._checkpoint_due:
            if self._error is not None:
                raise SyncError(f"replication of {self.stream!r} stopped: {self._error}") from None
            if time.monotonic() > deadline:
                raise SyncError(
                    f"{self.stream!r} on {self.url}: not in sync after {timeout} s "
                    f"(seq {self.seq}, stream top {top}, {len(self._pending)} pending)"
                )
            self._wake.set()
            await asyncio.sleep(0.005)

    # -- joining and leaving ---------------------------------------------------------------------------------

    async def __aenter__(self) -> Replica:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._dispose = on_commit(self.tree, self._on_commit)
        try:
            deadline = time.monotonic() + self.connect_timeout
            await self._with_retry(self._join, deadline)
        except BaseException:
            await self._shutdown()
            raise
        self._tasks = [
            asyncio.create_task(self._read_loop(), name=f"mst_llm.sync reader {self.stream}"),
            asyncio.create_task(self._write_loop(), name=f"mst_llm.sync writer {self.stream}"),
        ]
        self._set_status("live")
        self._wake.set()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._error is None and self._pending:
            try:
                await self.sync(self.close_timeout)
            except SyncError as error:
                log.warning("%s", error)
        for item in self._pending:
            unpublished = SyncError(f"closed before this commit reached the stream {self.stream!r}")
            self._report(_conflict("unpublished", unpublished, item.commit))
        self._pending.clear()
        await self._shutdown()

    async def _shutdown(self) -> None:
        self._closing = True
        if self._dispose is not None:
            self._dispose()
            self._dispose = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self._client.aclose()
        self._set_status("closed")

    async def _join(self) -> None:
        keys = self._keys
        snapshot = get_snapshot(self.tree)
        root_type = SessionLog.root_type_of(self.tree)
        initial = [
            SessionLog.header_line(root_type, snapshot, {"replicated": True}),
            SessionLog.checkpoint_line(0, time.time(), snapshot),
        ]
        await self._init(keys=[keys.header, keys.checkpoint], args=initial)
        header = await self._client.get(keys.header)
        stream_type = orjson.loads(header or b"{}").get("root_type")
        if stream_type != root_type:
            raise SyncError(f"the stream {self.stream!r} replicates a {stream_type}, not a {root_type}")
        await self._load_checkpoint()
        await self._catch_up()

    # -- the two tasks ---------------------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        backoff = _Backoff()
        cursor = self.seq
        while not self._closing:
            try:
                cursor = max(cursor, self.seq)
                rows: Any = await self._client.xread({self.stream: f"{cursor}-0"}, count=READ_BATCH, block=BLOCK_MS)
                for _, items in rows:
                    for entry_id, fields in items:
                        entry = decode(entry_id, fields)
                        self._inbox.append(entry)
                        cursor = entry.seq
                self._top = max(self._top, cursor)
                if rows:
                    self._wake.set()
                    await asyncio.sleep(READ_PAUSE)
                elif int(await self._client.hget(self._keys.checkpoint, "seq") or 0) > self.seq:
                    self._gap = True  # idle, yet a checkpoint is ahead: our next entries were trimmed away
                    self._wake.set()
                if backoff.current:
                    backoff.reset()
                    self._resync = True
                    self._wake.set()
            except RETRYABLE as error:
                self._lost_connection("reader", error)
                await backoff.sleep()

    async def _write_loop(self) -> None:
        backoff = _Backoff()
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            try:
                if self._resync or self._gap:
                    self._resync = self._gap = False
                    await self._catch_up()
                self._drain()
                if self._pending and not self._gap:
                    await self._publish()
                if self._checkpoint_due and not self._pending:
                    await self._write_checkpoint()
                if backoff.current:
                    backoff.reset()
                self._set_status("live")
            except RETRYABLE as error:
                self._lost_connection("writer", error)
                self._resync = True
                await backoff.sleep()
                self._wake.set()
            except Exception as error:
                self._error = error
                log.error("replication of %r on %s stopped: %s", self.stream, self.url, scrub(error, self._secret))
                self._set_status("closed")
                return

    def _lost_connection(self, who: str, error: BaseException) -> None:
        if self.status != "reconnecting":
            log.warning("%s lost the broker at %s (%s); reconnecting", who, self.url, type(error).__name__)
        self._set_status("reconnecting")

    # -- reading -----------------------------------------------------------------------------------------------

    async def _catch_up(self) -> None:
        """Apply the stream from ``seq + 1`` to its top with XRANGE; reload the checkpoint if our seq was
        trimmed away."""
        while True:
            start = self.seq + 1
            rows: Any = await self._client.xrange(self.stream, f"{start}-0", "+", count=READ_BATCH)
            entries = [decode(entry_id, fields) for entry_id, fields in rows]
            if entries and entries[0].seq == start:
                self._top = max(self._top, entries[-1].seq)
                self._process(entries)
                if len(entries) == READ_BATCH or self._gap:
                    self._gap = False
                    continue
                return
            stored = await self._client.hget(self._keys.checkpoint, "seq")
            if stored is not None and int(stored) >= start:
                await self._load_checkpoint()
                continue
            if not entries:
                return
            missing = SyncError(f"the stream lost entries {start}..{entries[0].seq - 1} (broker without AOF?)")
            log.error("%s: %s", self.stream, missing)
            self._report(Conflict("missing_entries", missing, seq=start))
            self._process(entries, base=entries[0].seq - 1)

    async def _load_checkpoint(self) -> None:
        seq, data = await self._client.hmget(self._keys.checkpoint, ["seq", "data"])
        if seq is None or data is None:
            raise SyncError(f"the stream {self.stream!r} has no checkpoint (its keys were deleted?)")
        if int(seq) < self.seq:
            return
        checkpoint = orjson.loads(data)
        self._rebase(lambda: self._reset(int(seq), checkpoint["snapshot"]))

    def _reset(self, seq: int, snapshot: Any) -> None:
        apply_snapshot(self.tree, snapshot)
        self.seq = seq
        self._top = max(self._top, seq)

    def _drain(self) -> None:
        entries = list(self._inbox)
        self._inbox.clear()
        self._process(entries)

    def _process(self, entries: list[Entry], base: int | None = None) -> None:
        """Apply entries in order: our own confirm our pending commits, the others are the winners."""
        if base is not None:
            self.seq = base
        remote: list[Entry] = []
        for entry in entries:
            expected = self.seq + len(remote) + 1
            if entry.seq < expected:
                continue  # already applied (the reader and XRANGE both bring it)
            if entry.seq > expected:
                self._gap = True
                self._wake.set()
                break
            if not remote and self._pending and entry.origin == self._pending[0].tag:
                self._pending.pop(0)  # ours: the reply to our append was lost, the entry was not
                self._advance(entry.seq)
                continue
            remote.append(entry)
        if remote:
            self._rebase(lambda: self._apply_remote(remote))

    def _apply_remote(self, remote: list[Entry]) -> None:
        """Apply the winners' entries in order, each as one transaction (contract section 12: listeners and
        reactions see one commit per entry, as on the replica that made it); garbage and entries whose patches do
        not apply are reported and skipped."""
        for entry in remote:
            body = parse(entry)
            if isinstance(body, str):
                self._bad_entry(entry.seq, body)
            else:
                error = self._apply(body["patches"], f"entry {entry.seq}")
                if error is not None:
                    self._bad_entry(entry.seq, f"its patches do not apply ({scrub(error, self._secret)})")
            self.seq = entry.seq

    def _apply(self, patches: list[Any], what: str) -> Exception | None:
        """``apply_patch`` as the replica's own write: None once the patches are in the tree (a listener that
        raised after the commit is logged), else why they do not apply (then the tree is as it was)."""
        self._committed = False
        try:
            apply_patch(self.tree, patches)
        except Exception as error:
            if not self._committed:
                return error
            log.warning("a listener raised on %r, %s: %s", self.stream, what, scrub(error, self._secret))
        return None

    def _bad_entry(self, seq: int, problem: str) -> None:
        error = BadEntryError(f"stream {self.stream!r} entry {seq} was skipped: {problem}")
        log.warning("%s", error)
        self._report(Conflict("bad_entry", error, seq=seq))

    def _rebase(self, change: Callable[[], None]) -> None:
        """Roll the pending local transactions back, make ``change`` (remote state), then re-run them."""
        pending, self._pending = self._pending, []
        self._applying = True
        try:
            if pending:
                undo = [patch for item in reversed(pending) for patch in reversed(item.commit.inverse_patches)]
                error = self._apply(undo, "the roll-back of the pending commits")
                if error is not None:
                    raise error
            change()
        finally:
            self._applying = False
        for item in pending:
            self._rerun(item.commit)

    def _rerun(self, commit: Commit) -> None:
        call = commit.action
        if commit.flow is not None or call is None or str(call.get("name", "")).startswith("@"):
            what = (
                "a flow segment"
                if commit.flow is not None
                else "a change without an action"
                if call is None
                else f"{call['name']} (patches or a snapshot, computed on the old state)"
            )
            error = ConflictError(f"{what} lost a race for {self.stream!r} and cannot be re-run: dropped")
            self._report(_conflict("not_rerunnable", error, commit))
            return
        try:
            apply_action(self.tree, call)
        except Exception as error:
            failed = ConflictError(f"re-running {call['name']!r} on the new state raised {type(error).__name__}")
            failed.__cause__ = error
            self._report(_conflict("rerun_failed", failed, commit))

    # -- writing -----------------------------------------------------------------------------------------------

    def _on_commit(self, commit: Commit) -> None:
        loop = self._loop
        on_loop = loop is None or threading.get_ident() == self._loop_thread
        if self._applying and on_loop:
            self._committed = True
            return  # ours: remote entries, a rollback (another thread's commit meanwhile is published, not skipped)
        self._count += 1
        self._pending.append(_Pending(f"{self._id}/{self._count}", commit))
        if loop is None or on_loop:
            self._wake.set()
        else:
            loop.call_soon_threadsafe(self._wake.set)

    async def _publish(self) -> None:
        base = self.seq
        batch = self._pending[:MAX_BATCH]
        args: list[Any] = [base]
        for offset, item in enumerate(batch, start=1):
            args.append(SessionLog.commit_line(base + offset, item.commit))
            args.append(item.tag)
        appended = int(await self._append(keys=[self.stream], args=args))
        if appended:
            del self._pending[: len(batch)]
            self._advance(base + appended)
            if self._pending:
                self._wake.set()
        else:  # stale: someone else took seq base + 1; fetch the winners now and rebase onto them
            await self._catch_up()
            self._wake.set()

    def _advance(self, seq: int) -> None:
        if seq // self.checkpoint_every > self.seq // self.checkpoint_every:
            self._checkpoint_due = True  # we wrote the entry that crossed a multiple: the checkpoint is ours
        self.seq = seq
        self._top = max(self._top, seq)

    async def _write_checkpoint(self) -> None:
        seq = self.seq
        trim = "" if self.retain is None else f"{max(1, seq - self.retain + 1)}-0"
        line = SessionLog.checkpoint_line(seq, time.time(), get_snapshot(self.tree))
        await self._checkpoint(keys=[self._keys.checkpoint, self.stream], args=[seq, line, trim])
        self._checkpoint_due = False  # only now: one that failed on a lost connection is written after it

    async def _stream_top(self) -> int:
        rows: Any = await self._client.xrevrange(self.stream, "+", "-", count=1)
        stored = await self._client.hget(self._keys.checkpoint, "seq")
        top = max(int(rows[0][0].partition(b"-")[0]) if rows else 0, int(stored or 0))
        self._top = max(self._top, top)
        return top

    # -- helpers -----------------------------------------------------------------------------------------------

    async def _with_retry(self, step: Callable[[], Any], deadline: float) -> Any:
        """Run ``step()`` until it succeeds, with backoff on connection trouble until ``deadline``."""
        backoff = _Backoff()
        while True:
            try:
                return await step()
            except FATAL as error:
                raise SyncError(f"the broker at {self.url} refused us: {scrub(error, self._secret)}") from None
            except RETRYABLE as error:
                if time.monotonic() + backoff.current > deadline:
                    reason = f"{type(error).__name__}: {scrub(error, self._secret)}"
                    raise SyncError(f"cannot reach the broker at {self.url} ({reason})") from None
                await backoff.sleep()
            except redis_errors.ResponseError as error:
                raise SyncError(f"the broker at {self.url} answered an error: {scrub(error, self._secret)}") from None

    def _set_status(self, status: Status) -> None:
        if self.state.status != status and not (self.state.status == "closed" and status != "closed"):
            self.state.change(status)

    def _report(self, conflict: Conflict) -> None:
        for listener in list(self._listeners):
            try:
                listener(conflict)
            except Exception:
                log.exception("an on_conflict listener of %r raised", self.stream)


def _conflict(kind: ConflictKind, error: Exception, commit: Commit) -> Conflict:
    return Conflict(kind, error, commit.action, commit.flow, commit.patches)


def replicate(
    tree: Any,
    url: str,
    stream: str,
    *,
    checkpoint_every: int = 1000,
    retain: int | None = None,
    connect_timeout: float = 10.0,
    close_timeout: float = 5.0,
    client_options: dict[str, Any] | None = None,
) -> Replica:
    """Join ``tree`` to the replicated stream ``stream`` on the Redis at ``url``: ``async with`` it.

    ``checkpoint_every``: entries between snapshots stored next to the stream (new replicas start there).
    ``retain``: entries kept before the latest checkpoint; older ones are trimmed (None keeps the whole
    history, so ``SessionLog.open`` and ``mst-llm replay`` can read it from the start).
    ``client_options``: passed to ``redis.asyncio.Redis.from_url`` (TLS files, timeouts, ...).
    """
    return Replica(
        tree,
        url,
        stream,
        checkpoint_every=checkpoint_every,
        retain=retain,
        connect_timeout=connect_timeout,
        close_timeout=close_timeout,
        client_options=client_options,
    )
