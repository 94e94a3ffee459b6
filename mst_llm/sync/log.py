"""``SessionLog.open("redis://host:port/db#stream")``: a replicated stream read like a session-log file.

The core finds this reader through the ``mst_llm.log_sources`` entry points (it imports no redis). The stream's
header and entries are copied into a private temporary file that the returned ``StreamLog`` reads and that goes
away with it; ``refresh()`` copies the entries appended since, as it indexes the lines appended to a growing file,
so ``mst-llm replay redis://...#stream --follow`` follows a live stream like ``tail -f``.
"""

from __future__ import annotations

import os
import tempfile
import weakref
from collections.abc import Callable
from contextlib import suppress
from typing import Any, BinaryIO

from redis import Redis
from redis import exceptions as redis_errors

from mst_llm import SessionLog, SessionLogError
from mst_llm.sync.stream import Keys, SyncError, entry_seq, password, redact, scrub, split_stream_url

READ_BATCH = 5000
HINT = " (the replicas keep a checkpoint instead; replicate with retain=None to keep every entry)"


class StreamLog(SessionLog):
    """The session log of a replicated stream (``redis[s]://[user:password@]host:port/db#stream``)."""

    def __init__(self, url: str) -> None:
        try:  # a URL it cannot read is a SessionLogError, like a file it cannot read
            broker, stream = split_stream_url(url)
            self._secret = password(broker)
            self._client = Redis.from_url(broker)
        except (SyncError, ValueError) as error:
            raise SessionLogError(scrub(error, password(url))) from None
        self.url = f"{redact(broker)}#{stream}"  # the only form of the URL it keeps printable
        self._stream = stream
        self._copied = 0  # the last seq copied into the file
        fd, path = tempfile.mkstemp(prefix="mst_llm-stream-", suffix=".jsonl")
        self._file: BinaryIO = os.fdopen(fd, "wb")
        self._finalizer = weakref.finalize(self, _discard, self._client, self._file, path)
        try:
            header = self._call(self._client.get, Keys(stream).header)
            if header is None:  # a missing file, not an empty one: waiting could be for a mistyped name forever
                raise SessionLogError(f"{self.url}: no replica has joined this stream yet (it has no header)")
            self._file.write(header.rstrip(b"\n") + b"\n")
            super().__init__(path)  # reads the header, then refresh() copies and indexes the entries
        except BaseException:
            self.close()
            raise

    @property
    def name(self) -> str:
        return self.url

    def refresh(self) -> int:
        """Copy the entries appended to the stream since the last call, then index them; returns how many."""
        if not self._finalizer.alive:
            raise SessionLogError(f"{self.url}: the log is closed")
        while True:
            rows, checkpoint = self._read_next()
            if not rows and checkpoint > self._copied:
                raise self._trimmed(checkpoint)
            for entry_id, fields in rows:
                seq = entry_seq(entry_id)
                if seq != self._copied + 1:
                    raise self._trimmed(seq - 1)
                body = fields.get(b"e")
                if body is None:
                    raise SessionLogError(f"{self.url}: entry {seq} has no field 'e' (it is not a session-log entry)")
                self._file.write(body.rstrip(b"\n") + b"\n")
                self._copied = seq
            if len(rows) < READ_BATCH:
                break
        self._file.flush()
        return super().refresh()

    def new_session(self) -> bool:
        """Never: the file read is this reader's private copy (a stream's entries are only ever appended)."""
        return False

    def close(self) -> None:
        """Close the connection and delete the copy (also done when the log is garbage-collected)."""
        self._finalizer()

    def _read_next(self) -> tuple[list[Any], int]:
        """The entries after the last one copied and the checkpoint's seq, read at one instant (MULTI/EXEC).

        Entries up to a checkpoint are in the stream before it is stored, so a checkpoint past the last entry
        copied with no entry after it means they were trimmed. Read apart, entries and a checkpoint appended
        between the two reads looked the same: open() refused a live stream that was empty when it was copied."""
        with self._client.pipeline(transaction=True) as both:
            both.xrange(self._stream, f"{self._copied + 1}-0", "+", count=READ_BATCH)
            both.hget(Keys(self._stream).checkpoint, "seq")
            rows, checkpoint = self._call(both.execute)
        return rows, int(checkpoint or 0)

    def _trimmed(self, last: int) -> SessionLogError:
        return SessionLogError(f"{self.url}: entries {self._copied + 1}..{last} were trimmed{HINT}")

    def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except redis_errors.RedisError as error:
            raise SessionLogError(
                f"cannot read {self.url}: {type(error).__name__}: {scrub(error, self._secret)}"
            ) from None


def _discard(client: Redis, file: BinaryIO, path: str) -> None:
    client.close()
    file.close()
    with suppress(FileNotFoundError):
        os.unlink(path)


def open_stream_log(url: str) -> SessionLog:
    """Read the whole stream named by ``url`` (``redis[s]://[user:password@]host:port/db#stream``)."""
    return StreamLog(url)
