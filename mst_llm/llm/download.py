"""Resumable, verified HTTP downloads (httpx, async) that never leave a partial file at the final path.

Bytes go to ``<final>.part`` with a small JSON sidecar ``<final>.part.json`` (url, etag, size, offset). A dropped
connection resumes with ``Range`` (bounded retries with backoff; the httpx read timeout is the stall watchdog),
a new process resumes from the sidecar, and a server that ignores ``Range`` restarts cleanly from zero. Size and
sha256, of the bytes as read back from the file, are checked before the fsync'd atomic rename. One process at a
time downloads a file (a lock per file, ``locks.hold``): another one waits, then reuses the finished file.

The event loop only reads (a Content-Length body straight from the socket, bypassing h11's copies); writing and
hashing run in two worker threads, one hand-off per ``BATCH`` bytes (or 0.1 s), overlapping the reads and each
other (the hasher reads back the batch the writer wrote while the writer appends the next), and a third thread
keeps flushing what was written to the disk, so the final fsync only waits for the tail.

Every file operation (open, write, sidecar, flush, fsync, rename, close, even ``stat``) runs in a worker thread:
while hundreds of MiB are dirty, the kernel throttles any write and a journal commit can hold a rename for
100 ms, and on the event-loop thread that would freeze every other task of the app.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import time
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

import anyio
import httpcore
import httpx
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from mst_llm.errors import (
    ChecksumMismatchError,
    DownloadError,
    DownloadHTTPError,
    DownloadTimeoutError,
    InsufficientSpaceError,
    OfflineError,
)
from mst_llm.llm.hub_auth import access_hint, on_hub
from mst_llm.llm.locks import hold
from mst_llm.llm.retry import RETRYABLE_STATUS, backoff_delay, retry_after_seconds
from mst_llm.llm.scan import sha256_file

ProgressCallback = Callable[[float], None]
"""Receives a percentage (0-100): throttled, monotonic, and always ending with exactly 100."""

CHUNK = 1 << 20
BATCH = 16 << 20
"""Bytes handed to the writer and hasher threads at a time; at most about four batches are held in memory.

Measured on loopback (2 cores): each hand-off costs enough that 4 MiB batches were ~7 % slower than 16 MiB ones;
32 MiB gained nothing more."""
READ_SIZE = 1 << 20
"""Largest single network read; httpcore's default of 64 KiB costs a Python round trip per 64 KiB."""
_SIDECAR_EVERY_S = 1.0
_HANDOFF_S = 0.1
"""A slow download still reaches the disk (and the resume offset) at least this often, whatever ``BATCH`` is."""
_fdatasync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)
OFFLINE_ENV = "HF_HUB_OFFLINE"
"""huggingface_hub's switch: when true (``1``, ``ON``, ``YES``, ``TRUE``), nothing is downloaded."""


def offline() -> bool:
    """True when ``$HF_HUB_OFFLINE`` forbids the network (the values huggingface_hub accepts, any case)."""
    return os.environ.get(OFFLINE_ENV, "").strip().upper() in ("1", "ON", "YES", "TRUE")


def part_path(final: Path) -> Path:
    """Where the bytes of ``final`` accumulate until they are verified."""
    return final.with_name(final.name + ".part")


def sidecar_path(final: Path) -> Path:
    """The resume record of ``final``'s partial download."""
    return final.with_name(final.name + ".part.json")


def read_sidecar(final: Path) -> dict[str, Any] | None:
    """The sidecar's record, or None when it is missing or unreadable (then a resume starts from zero)."""
    try:
        data = json.loads(sidecar_path(final).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def partial_bytes(final: Path) -> int:
    """How many bytes of a resumable partial download of ``final`` are on disk (0 when none)."""
    try:
        return part_path(final).stat().st_size if sidecar_path(final).exists() else 0
    except OSError:
        return 0


def remove_partial(final: Path) -> None:
    """Delete the partial file and its sidecar, if any."""
    for path in (part_path(final), sidecar_path(final)):
        path.unlink(missing_ok=True)


class ProgressThrottle:
    """Turns byte counts into percentages at most ``rate`` times a second, never going back, ending at 100."""

    def __init__(self, callback: ProgressCallback | None, rate: float = 10.0) -> None:
        self._callback = callback
        self._interval = 1.0 / rate
        self._last_time = float("-inf")
        self._last_value = -1.0

    def update(self, done: int, total: int | None) -> None:
        """Report ``done`` of ``total`` bytes unless it is too soon or not an increase; 100 waits for ``finish``."""
        if self._callback is None or not total:
            return
        value = min(99.9, round(100.0 * done / total, 1))
        now = time.monotonic()
        if value > self._last_value and now - self._last_time >= self._interval:
            self._last_time, self._last_value = now, value
            self._callback(value)

    def finish(self) -> None:
        """Report 100 (once)."""
        if self._callback is not None and self._last_value < 100.0:
            self._last_value = 100.0
            self._callback(100.0)


@dataclass(frozen=True)
class DownloadResult:
    """What a finished download did: the file, its hash and size, and how many bytes came over the network."""

    path: Path
    sha256: str
    size: int
    transferred: int
    resumed_from: int


def check_free_space(directory: Path, needed: int, disk_free: Callable[[Path], int] | None = None) -> None:
    """Fail (not warn) when ``directory``'s file system has less than ``needed`` bytes plus a small margin free."""
    free = (disk_free or (lambda path: shutil.disk_usage(path).free))(directory)
    margin = 16 << 20
    if needed + margin > free:
        raise InsufficientSpaceError(
            f"not enough disk space in {directory}: need {needed / 1e6:.1f} MB (+16 MB margin), "
            f"{free / 1e6:.1f} MB free; free some space and retry",
            resumable=True,
        )


class Sink:
    """The partial file of a download or a packaged install (``packaged``) and the sha256 of what it holds; every
    method that touches the file runs in a worker thread.

    The hash is of the file, not of the bytes received: ``hash`` reads back what ``write`` appended (from the page
    cache, overlapping the next write), so another program writing to the same file (one that ignores the lock)
    or a short write shows as a wrong sha256 or size before the rename. Hashing the received bytes instead would
    save one copy per byte but would vouch for bytes the file may not hold; hashing the whole file again after
    the download would cost one more pass (0.3 s per 512 MiB at 1.7 GB/s) after the last byte arrived.
    """

    def __init__(self, final: Path) -> None:
        self.final = final
        self.file: BinaryIO = open(part_path(final), "ab", buffering=0)  # noqa: SIM115 - closed by close()
        try:
            self.reader = open(part_path(final), "rb", buffering=0)  # noqa: SIM115 - closed by close()
        except BaseException:
            self.file.close()
            raise
        self.hasher = hashlib.sha256()
        self.offset = 0
        """Bytes written."""
        self.hashed = 0
        """Bytes read back from the file and hashed."""
        self._buffer = memoryview(bytearray(CHUNK))

    @classmethod
    def resume(cls, final: Path) -> Sink:
        """Open the partial file (created when missing) and hash the bytes already in it."""
        sink = cls(final)
        try:
            sink.file.seek(0, os.SEEK_END)
            sink.offset = sink.file.tell()
            sink.hash(sink.offset)
        except BaseException:
            sink.close()
            raise
        return sink

    def restart(self) -> None:
        """Drop everything written so far (the server ignored Range or the file changed)."""
        self.file.truncate(0)
        self.file.seek(0)
        self.hasher = hashlib.sha256()
        self.offset = self.hashed = 0

    def write(self, block: bytes) -> None:
        """Append one block (``hash`` runs in another thread); ENOSPC becomes a resumable InsufficientSpaceError."""
        view = memoryview(block)
        try:
            while view:
                written = self.file.write(view)
                view = view[written or 0 :]
        except OSError as error:
            if error.errno in (errno.ENOSPC, errno.EDQUOT):
                raise InsufficientSpaceError(
                    f"the disk holding {self.final.parent} is full; free some space and retry (the download resumes)",
                    resumable=True,
                ) from error
            raise
        self.offset += len(block)

    def hash(self, end: int) -> None:
        """Feed the file's bytes up to offset ``end`` to the running sha256, read back from the file; a file shorter
        than that (truncated by someone else) stops early, and ``problem`` reports it."""
        self.reader.seek(self.hashed)
        while self.hashed < end:
            count = self.reader.readinto(self._buffer[: min(len(self._buffer), end - self.hashed)])
            if not count:
                return
            self.hasher.update(self._buffer[:count])
            self.hashed += count

    def problem(self, expected: int | None, sha256: str | None) -> str | None:
        """What keeps the file from its final name, if anything: bytes on disk that were not written here (as the
        file system reports its size) or not read back, a size or sha256 other than the expected ones."""
        on_disk = os.fstat(self.file.fileno()).st_size
        if on_disk != self.offset or self.hashed != self.offset:
            return (
                f"{on_disk} bytes on disk where {self.offset} were written and {self.hashed} read back "
                "(did another program write to it?)"
            )
        return mismatch(self.offset, expected, self.hasher.hexdigest(), sha256)

    def flush(self) -> None:
        """Write what is in the page cache to the disk now, so the fsync before the rename only waits for the tail.

        Measured on a 2-core VM (256 MiB at 430 MiB/s): the kernel's own writeback, even when started early with
        ``POSIX_FADV_DONTNEED``, fell behind and left 0.20-0.30 s for the final fsync; back-to-back fdatasync
        calls kept up and left almost nothing. Advisory: a failure here resurfaces in the final fsync.
        """
        with contextlib.suppress(OSError):
            _fdatasync(self.file.fileno())

    def close(self) -> None:
        try:
            self.file.close()
        finally:
            self.reader.close()

    def discard(self) -> None:
        """Close the partial file and delete it with its sidecar."""
        self.close()
        remove_partial(self.final)

    def complete(self) -> None:
        """Close the verified file, give it its final name durably, drop the sidecar."""
        self.close()
        finalize(part_path(self.final), self.final)
        sidecar_path(self.final).unlink(missing_ok=True)


def mismatch(size: int, expected: int | None, digest: str, sha256: str | None) -> str | None:
    """How a file of ``size`` bytes hashing to ``digest`` differs from the expected size and sha256 (None: each
    is unknown or matches)."""
    if expected is not None and size != expected:
        return f"size {size} bytes, expected {expected}"
    if sha256 is not None and digest != sha256:
        return f"sha256 {digest}, expected {sha256}"
    return None


def finished(final: Path, size: int | None, sha256: str | None) -> DownloadResult | None:
    """Runs in a worker thread, under the file's lock: a final file that is already there (another process
    downloaded it while this one waited for the lock) is reused when its size and sha256, read from the disk, are
    the expected ones, and is a DownloadError otherwise; None when there is none."""
    try:
        actual = final.stat().st_size
    except FileNotFoundError:
        return None
    digest = sha256_file(final)
    problem = mismatch(actual, size, digest, sha256)
    if problem is not None:
        raise DownloadError(f"{final} already exists and has {problem}; delete it first")
    return DownloadResult(final, digest, actual, 0, 0)


def _write_sidecar(final: Path, record: dict[str, Any]) -> None:
    """Small, advisory and rewritten often: temp file and rename, no fsync (the sha256 check guards the data)."""
    temporary = final.with_name(final.name + ".part.json.tmp")
    temporary.write_text(json.dumps(record), encoding="utf-8")
    os.replace(temporary, sidecar_path(final))


def _prepare(url: str, final: Path, size: int | None, disk_free: Callable[[Path], int] | None) -> dict[str, Any]:
    """Runs in a worker thread: drop a partial of another file, check the space; the record."""
    final.parent.mkdir(parents=True, exist_ok=True)
    record = read_sidecar(final) or {}
    if record.get("url") != url or (size is not None and record.get("size") not in (None, size)):
        remove_partial(final)
        record = {}
    if size is not None:
        check_free_space(final.parent, size - partial_bytes(final), disk_free)
    return record


def finalize(source: Path, final: Path) -> None:
    """fsync the verified file, rename it into place atomically and fsync the directory."""
    with open(source, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(source, final)
    directory = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


@dataclass
class Downloader:
    """Settings of a download: retries and backoff, the stall watchdog, and test hooks (client, disk_free)."""

    retries: int = 5
    backoff: float = 0.25
    max_backoff: float = 5.0
    max_retry_after: float = 60.0
    stall_timeout: float = 30.0
    connect_timeout: float = 15.0
    client: httpx.AsyncClient | None = None
    disk_free: Callable[[Path], int] | None = None

    async def download(
        self,
        url: str,
        final: Path,
        *,
        size: int | None = None,
        sha256: str | None = None,
        on_progress: ProgressCallback | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> DownloadResult:
        """Download ``url`` to ``final`` (verified, atomic); resumes any partial left by an earlier attempt.

        One download of ``final`` at a time, across processes: this one waits while another holds the file's lock
        (cancellably; it says so once in the log); a final file already there, such as the one the other download
        finished meanwhile, is reused when its size and sha256 match (``transferred == 0``).

        ``headers`` go with every request (``Authorization`` for a gated Hub file; httpx drops it on a redirect to
        another host). Raises a ``DownloadError`` subclass; ``error.resumable`` tells whether the partial was kept;
        with ``$HF_HUB_OFFLINE`` set that is an ``OfflineError`` before anything else happens.
        """
        if offline():
            raise OfflineError(f"{OFFLINE_ENV} is set: {final.name} is not downloaded and the network is off")
        async with hold(final):  # one process at a time downloads a file; the others wait, then reuse it
            existing = await anyio.to_thread.run_sync(finished, final, size, sha256)
            if existing is not None:
                ProgressThrottle(on_progress).finish()
                return existing
            return await self._fetch(url, final, size, sha256, on_progress, headers or {})

    async def _fetch(
        self,
        url: str,
        final: Path,
        size: int | None,
        sha256: str | None,
        on_progress: ProgressCallback | None,
        headers: Mapping[str, str],
    ) -> DownloadResult:
        """The download proper, under the file's lock: resume or start the partial, transfer, verify, rename."""
        record = await anyio.to_thread.run_sync(_prepare, url, final, size, self.disk_free)
        with anyio.CancelScope(shield=True):  # a cancel arrives at the next checkpoint, which closes the file
            sink = await anyio.to_thread.run_sync(Sink.resume, final)
        client = self.client
        try:
            if client is None:
                client = await anyio.to_thread.run_sync(self.new_client)
            resumed_from = sink.offset
            progress = ProgressThrottle(on_progress)
            state = _Transfer(url, final, sink, progress, {**record, "url": url, "size": size}, headers)
            try:
                await self._attempts(client, state)
            except _TooLong as error:
                await anyio.to_thread.run_sync(sink.discard)
                raise ChecksumMismatchError(f"{error}; the partial was deleted, check the catalog entry") from None
            await self._verify(sink, state.total, size, sha256)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(sink.close)
            raise
        finally:
            if self.client is None and client is not None:
                await client.aclose()
        await anyio.to_thread.run_sync(sink.complete)
        progress.finish()
        return DownloadResult(final, sink.hasher.hexdigest(), sink.offset, state.transferred, resumed_from)

    def new_client(self) -> httpx.AsyncClient:
        """A client with these timeouts that follows redirects (the Hub's API uses it too). Call it in a worker
        thread: building the TLS context parses the CA bundle (40 ms; 240 ms the first time)."""
        return httpx.AsyncClient(
            timeout=httpx.Timeout(self.connect_timeout, read=self.stall_timeout), follow_redirects=True
        )

    async def _attempts(self, client: httpx.AsyncClient, state: _Transfer) -> None:
        """Retry transient failures with exponential backoff, resuming where the last attempt stopped."""
        failures = 0
        while True:
            before = state.sink.offset
            try:
                await state.run(client, self)
                return
            except httpx.TimeoutException as error:
                reason: BaseException = error
                kind = "stalled"
            except (httpx.TransportError, _Retryable) as error:
                reason, kind = error, "failed"
            if state.sink.offset > before:
                failures = 0  # progress was made: this is a new run of bad luck
            failures += 1
            retry_after = reason.retry_after if isinstance(reason, _Retryable) else None
            wait = self.retry_delay(failures, retry_after)
            if wait is not None:
                await anyio.sleep(wait)
            elif failures <= self.retries:  # the retries are not used up: the server asks for too long a wait
                raise DownloadHTTPError(
                    f"{state.url}: {reason}, and the server asks to wait {retry_after:.0f} s (Retry-After); "
                    "try again later (the download resumes)",
                    status=cast(_Retryable, reason).status,
                    resumable=True,
                ) from None
            elif isinstance(reason, _Retryable):
                raise DownloadHTTPError(
                    f"{state.url}: {reason} after {self.retries} retries; try again later",
                    status=reason.status,
                    resumable=True,
                ) from None
            else:
                cls = DownloadTimeoutError if kind == "stalled" else DownloadError
                raise cls(
                    f"{state.url}: the connection {kind} {failures} times in a row ({reason!r}); "
                    "check the network and retry (the download resumes)",
                    resumable=True,
                ) from reason

    def retry_delay(self, failures: int, retry_after: float | None = None) -> float | None:
        """The wait before retry number ``failures``, or None to give up: after more than ``retries`` failures in a
        row, or when the server's ``Retry-After`` (429, 503) asks for more than ``max_retry_after``. The wait is
        what ``Retry-After`` asks, else jittered exponential backoff (``backoff * 2**(failures-1)`` capped at
        ``max_backoff``, its upper half). Downloads and the Hub's API requests retry by this one rule."""
        if failures > self.retries or (retry_after is not None and retry_after > self.max_retry_after):
            return None
        return retry_after if retry_after is not None else backoff_delay(failures, self.backoff, self.max_backoff)

    async def _verify(self, sink: Sink, total: int | None, size: int | None, sha256: str | None) -> None:
        """Size and sha256 of the file on disk must match before it may take its final name; a mismatch is not
        resumable."""
        problem = await anyio.to_thread.run_sync(sink.problem, size if size is not None else total, sha256)
        if problem:
            await anyio.to_thread.run_sync(sink.discard)
            raise ChecksumMismatchError(
                f"{sink.final.name}: downloaded file has {problem}; the partial was deleted. "
                "The server may be serving a different file; check the catalog entry"
            )


def _advice(response: httpx.Response) -> str:
    """What to do about a final answer that is not the file: a Hub that turns the request away (401, 403) wants
    ``$HF_TOKEN``; anything else points at the URL."""
    if response.status_code in (401, 403) and on_hub(str(response.url)):
        return f"the file is gated or private: {access_hint()}"
    return "check the URL in the catalog entry"


class _Retryable(Exception):
    """A transient HTTP status (5xx, 429, ...) worth retrying, and the wait its ``Retry-After`` asks for."""

    def __init__(self, status: int, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.retry_after = retry_after


class _TooLong(Exception):
    """The body is longer than the expected size: the file on the server is not the one the catalog names."""


def _single(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one meaningful error of a task group (cancellations only when nothing else went wrong)."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        current = pending.pop()
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        else:
            leaves.append(current)
    cancelled = anyio.get_cancelled_exc_class()
    return next((leaf for leaf in leaves if not isinstance(leaf, cancelled)), leaves[0])


def _widen_reads(response: httpx.Response) -> None:
    """Let httpcore read up to ``READ_SIZE`` bytes per call on this response's HTTP/1.1 connection.

    httpcore hard-codes 64 KiB reads (``READ_NUM_BYTES``), which caps loopback throughput with per-read Python
    overhead. The setting is per connection instance, so nothing else in the process changes; where httpcore's
    internals differ (another version, HTTP/2, a test transport) this does nothing and reads stay at 64 KiB.
    """
    current: Any = response.stream
    for _ in range(8):  # httpx BoundAsyncStream -> AsyncResponseStream -> PoolByteStream -> ... -> connection
        if isinstance(getattr(current, "READ_NUM_BYTES", None), int):
            current.READ_NUM_BYTES = max(current.READ_NUM_BYTES, READ_SIZE)
            return
        current = next(
            (
                getattr(current, name)
                for name in ("_stream", "_httpcore_stream", "_connection")
                if hasattr(current, name)
            ),
            None,
        )


def _direct_stream(response: httpx.Response) -> httpcore.AsyncNetworkStream | None:
    """The connection's socket stream when the body can bypass h11: HTTP/1.1 with a Content-Length, not chunked.

    h11 copies every received block three times (into its buffer, out of it, into ``bytes``); reading the socket
    stream (httpx's public ``network_stream`` extension) hands over the received ``bytes`` as they are. Anything
    else (chunked, HTTP/2, a test transport without the extension) returns None and stays on ``aiter_raw``.
    """
    stream = response.extensions.get("network_stream")
    if (
        response.http_version != "HTTP/1.1"
        or "transfer-encoding" in response.headers
        or not response.headers.get("content-length", "").isdigit()
        or not isinstance(stream, httpcore.AsyncNetworkStream)
    ):
        return None
    return stream


def _widen_transport(stream: httpcore.AsyncNetworkStream) -> None:
    """Let asyncio receive up to ``READ_SIZE`` bytes per socket read on this connection (the default is 256 KiB).

    Under asyncio each read is a selector callback, a task wake-up and two ``epoll_ctl`` calls through anyio:
    1 MiB reads cut the event loop's CPU time per 256 MiB from 0.29-0.35 s to 0.16-0.23 s (2-core VM). The
    transport belongs to this connection only, which is dropped after the body. Where the internals differ (trio,
    TLS, another version) this does nothing: trio already reads what ``_body`` asks for.
    """
    transport = getattr(getattr(stream, "_stream", None), "_transport", None)
    if isinstance(getattr(transport, "max_size", None), int):
        transport.max_size = max(transport.max_size, READ_SIZE)  # type: ignore[union-attr]


@contextlib.contextmanager
def _as_httpx_errors(request: httpx.Request) -> Iterator[None]:
    """Raise httpcore's read failures as the httpx errors the retry loop handles (timeout: the stall watchdog)."""
    try:
        yield
    except httpcore.TimeoutException as error:
        raise httpx.ReadTimeout(str(error) or "read timed out", request=request) from error
    except httpcore.NetworkError as error:
        raise httpx.ReadError(str(error) or "read failed", request=request) from error


async def _body(response: httpx.Response) -> AsyncGenerator[bytes, None]:
    """The raw body in pieces; after the first piece, straight from the socket where ``_direct_stream`` allows.

    The first piece comes through h11, which hands over at once everything it buffered with the headers (up to
    the body's length), so the socket then holds exactly the rest. The response's owner closes it afterwards;
    h11 never saw the end of this body, so httpcore drops the connection instead of reusing it.
    """
    _widen_reads(response)
    stream = _direct_stream(response)
    raw = cast(AsyncGenerator[bytes, None], response.aiter_raw())
    async with contextlib.aclosing(raw):  # closing it drops the connection, so only once the body is read
        async for piece in raw:
            yield piece
            if stream is not None:
                break
        if stream is None:
            return
        _widen_transport(stream)
        remaining = int(response.headers["content-length"]) - response.num_bytes_downloaded
        timeout = response.request.extensions.get("timeout", {}).get("read")
        while remaining > 0:
            with _as_httpx_errors(response.request):
                data = await stream.read(min(READ_SIZE, remaining), timeout=timeout)
            if not data:
                raise httpx.RemoteProtocolError(
                    f"peer closed the connection {remaining} bytes before the end of the body",
                    request=response.request,
                )
            remaining -= len(data)
            yield data


class _Transfer:
    """One download's moving parts across attempts: offset, etag, byte counts, sidecar updates."""

    def __init__(
        self,
        url: str,
        final: Path,
        sink: Sink,
        progress: ProgressThrottle,
        record: dict[str, Any],
        headers: Mapping[str, str],
    ) -> None:
        self.url, self.final, self.sink, self.progress, self.record = url, final, sink, progress, record
        self.headers = headers
        self.total: int | None = record.get("size")
        self.transferred = 0
        self._sidecar_at = 0.0

    async def run(self, client: httpx.AsyncClient, downloader: Downloader) -> None:
        """One HTTP request: continue at the current offset, or start over when the server insists."""
        offset = self.sink.offset
        headers = {**self.headers, "Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if self.record.get("etag"):
                headers["If-Range"] = self.record["etag"]
        async with client.stream("GET", self.url, headers=headers) as response:
            if response.status_code == 416 and offset:
                if self.total == offset:
                    return  # everything is already here
                await anyio.to_thread.run_sync(self.sink.restart)  # the partial does not fit the file: start over
                raise _Retryable(416)
            if response.status_code in RETRYABLE_STATUS:
                raise _Retryable(response.status_code, retry_after_seconds(response.headers.get("retry-after")))
            if response.status_code not in (200, 206):
                await anyio.to_thread.run_sync(remove_partial, self.final)
                raise DownloadHTTPError(
                    f"{self.url}: HTTP {response.status_code} {response.reason_phrase}; {_advice(response)}",
                    status=response.status_code,
                )
            start = self._start_of(response, offset)
            if start != offset:
                await anyio.to_thread.run_sync(self.sink.restart)
            if self.total is None:
                self.total = self._total_of(response, start)
                if self.total is not None:
                    await anyio.to_thread.run_sync(
                        check_free_space, self.final.parent, self.total - start, downloader.disk_free
                    )
            self.record.update(etag=response.headers.get("etag"), size=self.total, offset=self.sink.offset)
            await anyio.to_thread.run_sync(_write_sidecar, self.final, dict(self.record))
            await self._copy(response, start)

    def _start_of(self, response: httpx.Response, offset: int) -> int:
        """Where the body starts: the requested offset for a matching 206, else 0 (Range was ignored)."""
        if response.status_code != 206:
            return 0
        content_range = response.headers.get("content-range", "")
        try:
            first = int(content_range.split()[1].split("-")[0])
        except (IndexError, ValueError):
            return 0
        return first if first == offset else 0

    def _total_of(self, response: httpx.Response, start: int) -> int | None:
        """The file's full size from Content-Range or Content-Length, when the server says."""
        content_range = response.headers.get("content-range", "")
        if "/" in content_range and content_range.rsplit("/", 1)[1].isdigit():
            return int(content_range.rsplit("/", 1)[1])
        length = response.headers.get("content-length")
        return start + int(length) if length and length.isdigit() else None

    async def _copy(self, response: httpx.Response, start: int) -> None:
        """Stream the body into the sink: the event loop only reads; one worker thread writes batch n while batch
        n+1 arrives (one hand-off per ``BATCH`` bytes or ``_HANDOFF_S`` seconds), another reads batch n back from
        the file and hashes it while the writer appends batch n+1, and a third flushes what the writer wrote.
        hashlib, the reads, the write and the flush release the GIL, so on two cores they overlap the receiving
        instead of trailing it."""
        to_writer, writer_input = anyio.create_memory_object_stream[list[bytes]](1)
        to_hasher, hasher_input = anyio.create_memory_object_stream[int](1)
        to_flusher, flusher_input = anyio.create_memory_object_stream[None](1)
        batch: list[bytes] = []
        failure: Exception | None = None
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self._writer, writer_input, to_flusher, to_hasher)
                group.start_soon(self._hasher, hasher_input)
                group.start_soon(self._flusher, flusher_input)
                async with to_writer:
                    try:
                        await self._receive(response, start, to_writer, batch)
                    except (httpx.TransportError, _TooLong) as error:
                        failure = error  # keep what arrived before the failure, then report it
                    if batch and not isinstance(failure, _TooLong):
                        await to_writer.send(batch)
            if failure is not None:
                raise failure
        except BaseExceptionGroup as group:
            raise _single(group) from None
        finally:
            self.record["offset"] = self.sink.offset
            with anyio.CancelScope(shield=True):  # the resume offset must be recorded after a cancel too
                await anyio.to_thread.run_sync(_write_sidecar, self.final, dict(self.record))

    async def _receive(
        self,
        response: httpx.Response,
        start: int,
        writer: MemoryObjectSendStream[list[bytes]],
        batch: list[bytes],
    ) -> None:
        """Read the body, handing each full batch to the writer; ``batch`` keeps the pieces not handed over yet."""
        position = start
        batched = 0
        handed_at = time.monotonic()
        async with contextlib.aclosing(_body(response)) as pieces:
            async for piece in pieces:
                self.transferred += len(piece)
                position += len(piece)
                if self.total is not None and position > self.total:
                    raise _TooLong(f"{self.url}: the server sent more than the expected {self.total} bytes")
                batch.append(piece)
                batched += len(piece)
                now = time.monotonic()
                if batched >= BATCH or now - handed_at >= _HANDOFF_S:
                    await writer.send(batch.copy())
                    batch.clear()
                    batched, handed_at = 0, now

    async def _writer(
        self,
        batches: MemoryObjectReceiveStream[list[bytes]],
        flushes: MemoryObjectSendStream[None],
        hashes: MemoryObjectSendStream[int],
    ) -> None:
        """Append batches in a worker thread, then ask for a flush unless one is pending and hand the new end of the
        file to the hasher; progress follows what reached the file."""
        async with batches, flushes, hashes:
            async for pieces in batches:
                await anyio.to_thread.run_sync(self._write_batch, pieces)
                with contextlib.suppress(anyio.WouldBlock, anyio.BrokenResourceError):  # pending, or cancelled
                    flushes.send_nowait(None)
                self.progress.update(self.sink.offset, self.total)
                await hashes.send(self.sink.offset)

    async def _flusher(self, requests: MemoryObjectReceiveStream[None]) -> None:
        """Flush the partial file in a worker thread, back to back while the writer keeps writing."""
        async with requests:
            async for _ in requests:
                await anyio.to_thread.run_sync(self.sink.flush)

    async def _hasher(self, ends: MemoryObjectReceiveStream[int]) -> None:
        """Hash what the writer wrote, read back from the file, in a second worker thread while the writer goes on
        (a resume rehashes the file, so only the end needs both done)."""
        async with ends:
            async for end in ends:
                await anyio.to_thread.run_sync(self.sink.hash, end)

    def _write_batch(self, pieces: list[bytes]) -> None:
        """Runs in a worker thread: append the pieces in order, and record the resume offset now and then."""
        for piece in pieces:
            self.sink.write(piece)
        now = time.monotonic()
        if now - self._sidecar_at >= _SIDECAR_EVERY_S:
            self._sidecar_at = now
            self.record["offset"] = self.sink.offset
            _write_sidecar(self.final, self.record)


__all__ = [
    "DownloadResult",
    "Downloader",
    "ProgressCallback",
    "ProgressThrottle",
    "Sink",
    "check_free_space",
    "finalize",
    "finished",
    "mismatch",
    "offline",
    "part_path",
    "partial_bytes",
    "read_sidecar",
    "remove_partial",
    "sidecar_path",
]
