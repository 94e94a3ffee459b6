"""Resumable verified downloads against a real HTTP server on 127.0.0.1 with injected faults."""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from mst_llm import (
    ChecksumMismatchError,
    DownloadHTTPError,
    DownloadTimeoutError,
    InsufficientSpaceError,
    MSTError,
)
from mst_llm.llm import download
from mst_llm.llm.download import Downloader, ProgressThrottle, part_path, read_sidecar, sidecar_path
from tests.llm.http_server import Fault, FileServer, serve

DATA = os.urandom(3 << 20) + b"end"
SHA = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def server() -> Iterator[FileServer]:
    with serve() as state:
        state.add("m.gguf", DATA)
        yield state


def fast() -> Downloader:
    return Downloader(retries=3, backoff=0.01, stall_timeout=0.5, connect_timeout=2)


def run(coro_fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    return anyio.run(lambda: coro_fn(*args, **kwargs))


def test_plain_download_verifies_and_reports_progress(server: FileServer, tmp_path: Path) -> None:
    seen: list[float] = []
    final = tmp_path / "m.gguf"
    result = run(fast().download, server.url("m.gguf"), final, size=len(DATA), sha256=SHA, on_progress=seen.append)
    assert final.read_bytes() == DATA and result.sha256 == SHA and result.transferred == len(DATA)
    assert seen[-1] == 100.0 and seen == sorted(seen) and len(seen) == len(set(seen))
    assert not part_path(final).exists() and not sidecar_path(final).exists()


def test_unknown_size_and_hash_still_checked_against_server_length(server: FileServer, tmp_path: Path) -> None:
    result = run(fast().download, server.url("m.gguf"), tmp_path / "m.gguf")
    assert result.sha256 == SHA and result.size == len(DATA)


def test_resume_after_drop_transfers_only_missing_bytes(server: FileServer, tmp_path: Path) -> None:
    server.fault("m.gguf", Fault(drop_after=1 << 20))
    result = run(fast().download, server.url("m.gguf"), tmp_path / "m.gguf", size=len(DATA), sha256=SHA)
    assert result.transferred == len(DATA)
    assert server.log[1].range == f"bytes={1 << 20}-" and server.log[1].status == 206
    assert server.sent("m.gguf") == len(DATA)


def test_server_ignoring_range_restarts_from_zero(server: FileServer, tmp_path: Path) -> None:
    server.fault("m.gguf", Fault(drop_after=1 << 20))
    server.fault("m.gguf", Fault(ignore_range=True))
    final = tmp_path / "m.gguf"
    result = run(fast().download, server.url("m.gguf"), final, size=len(DATA), sha256=SHA)
    assert final.read_bytes() == DATA and result.transferred == len(DATA) + (1 << 20)


def test_early_writeback_keeps_resume_and_restart_byte_exact(
    server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writeback started every few KiB (and pages dropped) must not change the bytes, the offsets or the hash."""
    monkeypatch.setattr(download, "WRITEBACK_EVERY", 4096)
    server.fault("m.gguf", Fault(drop_after=(1 << 20) + 123))
    server.fault("m.gguf", Fault(drop_after=1 << 20, ignore_range=True))
    final = tmp_path / "m.gguf"
    result = run(fast().download, server.url("m.gguf"), final, size=len(DATA), sha256=SHA)
    assert final.read_bytes() == DATA and result.sha256 == SHA and result.size == len(DATA)
    assert server.log[1].range == f"bytes={(1 << 20) + 123}-" and server.log[1].status == 200
    assert server.log[2].range == f"bytes={1 << 20}-" and server.log[2].status == 206


def test_stall_is_detected_and_resumed(server: FileServer, tmp_path: Path) -> None:
    server.fault("m.gguf", Fault(stall_after=1 << 20, stall_s=3))
    start = time.monotonic()
    run(fast().download, server.url("m.gguf"), tmp_path / "m.gguf", size=len(DATA), sha256=SHA)
    assert time.monotonic() - start < 3
    assert server.log[-1].range == f"bytes={1 << 20}-"


def test_stalls_forever_end_in_a_timeout_error_keeping_the_partial(server: FileServer, tmp_path: Path) -> None:
    server.fault("m.gguf", Fault(drop_after=1 << 19))
    server.fault("m.gguf", Fault(times=None, stall_after=0, stall_s=1.5))
    final = tmp_path / "m.gguf"
    with pytest.raises(DownloadTimeoutError) as caught:
        run(Downloader(retries=1, backoff=0.01, stall_timeout=0.3).download, server.url("m.gguf"), final)
    assert caught.value.resumable and part_path(final).stat().st_size > 0 and isinstance(caught.value, MSTError)


@pytest.mark.parametrize("status", [500, 503])
def test_transient_errors_are_retried(server: FileServer, tmp_path: Path, status: int) -> None:
    server.fault("m.gguf", Fault(times=2, status=status))
    run(fast().download, server.url("m.gguf"), tmp_path / "m.gguf", sha256=SHA)
    assert [entry.status for entry in server.log] == [status, status, 200]


def test_persistent_503_is_an_http_error(server: FileServer, tmp_path: Path) -> None:
    server.fault("m.gguf", Fault(times=None, status=503))
    with pytest.raises(DownloadHTTPError) as caught:
        run(fast().download, server.url("m.gguf"), tmp_path / "m.gguf")
    assert caught.value.status == 503 and "503" in str(caught.value)


def test_404_is_not_retried(server: FileServer, tmp_path: Path) -> None:
    with pytest.raises(DownloadHTTPError) as caught:
        run(fast().download, server.url("missing.gguf"), tmp_path / "m.gguf")
    assert caught.value.status == 404 and len(server.log) == 1 and not caught.value.resumable


def test_sha_mismatch_deletes_partial_and_never_creates_final(server: FileServer, tmp_path: Path) -> None:
    final = tmp_path / "m.gguf"
    with pytest.raises(ChecksumMismatchError, match="sha256"):
        run(fast().download, server.url("m.gguf"), final, sha256="0" * 64)
    assert not final.exists() and not part_path(final).exists() and not sidecar_path(final).exists()


def test_wrong_size_is_a_checksum_error(server: FileServer, tmp_path: Path) -> None:
    with pytest.raises(ChecksumMismatchError, match="size"):
        run(fast().download, server.url("m.gguf"), tmp_path / "m.gguf", size=len(DATA) + 10)


def test_overstated_content_length_ends_verified_by_size_and_sha(server: FileServer, tmp_path: Path) -> None:
    server.fault("m.gguf", Fault(times=None, lie_length=1000))
    result = run(fast().download, server.url("m.gguf"), tmp_path / "m.gguf", size=len(DATA), sha256=SHA)
    assert result.sha256 == SHA and server.log[-1].status == 416


def test_more_bytes_than_expected_is_rejected(server: FileServer, tmp_path: Path) -> None:
    with pytest.raises(ChecksumMismatchError, match="more than"):
        run(fast().download, server.url("m.gguf"), tmp_path / "m.gguf", size=1000)
    assert not part_path(tmp_path / "m.gguf").exists()


def test_free_space_is_checked_first(server: FileServer, tmp_path: Path) -> None:
    downloader = Downloader(disk_free=lambda path: 1000)
    with pytest.raises(InsufficientSpaceError, match="disk space"):
        run(downloader.download, server.url("m.gguf"), tmp_path / "m.gguf", size=len(DATA))
    assert server.log == []


def test_enospc_while_writing_keeps_a_resumable_partial(
    server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mst_llm.llm import download

    calls = {"n": 0}
    original = download._Sink.write

    class FullDisk:
        def __init__(self, inner: object) -> None:
            self.inner = inner

        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name: str) -> object:
            return getattr(self.inner, name)

    def full_disk(self: download._Sink, block: bytes) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            self.file = FullDisk(self.file)  # type: ignore[assignment]
        original(self, block)

    monkeypatch.setattr(download._Sink, "write", full_disk)
    monkeypatch.setattr(download, "CHUNK", 1 << 20)
    with pytest.raises(InsufficientSpaceError) as caught:
        run(fast().download, server.url("m.gguf"), tmp_path / "m.gguf", size=len(DATA))
    assert caught.value.resumable
    monkeypatch.setattr(download._Sink, "write", original)
    run(fast().download, server.url("m.gguf"), tmp_path / "m.gguf", size=len(DATA), sha256=SHA)


def test_final_path_never_holds_partial_content(tmp_path: Path) -> None:
    with serve(FileServer(rate=8 << 20)) as server:
        server.add("m.gguf", DATA)
        server.fault("m.gguf", Fault(drop_after=1 << 20))
        final = tmp_path / "m.gguf"
        bad: list[int] = []
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                if final.exists() and final.stat().st_size != len(DATA):
                    bad.append(final.stat().st_size)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            run(fast().download, server.url("m.gguf"), final, size=len(DATA), sha256=SHA)
        finally:
            stop.set()
            watcher.join()
        assert bad == [] and final.read_bytes() == DATA


def test_cancel_is_prompt_and_keeps_partial_for_resume(tmp_path: Path) -> None:
    with serve(FileServer(rate=2 << 20)) as server:
        server.add("m.gguf", DATA)
        final = tmp_path / "m.gguf"

        async def main() -> float:
            async with anyio.create_task_group() as group:
                group.start_soon(lambda: fast().download(server.url("m.gguf"), final, size=len(DATA)))
                while not part_path(final).exists() or part_path(final).stat().st_size < (256 << 10):
                    await anyio.sleep(0.02)
                start = time.monotonic()
                group.cancel_scope.cancel()
            return time.monotonic() - start

        assert anyio.run(main) < 1.0
        kept = part_path(final).stat().st_size
        assert kept > 0 and read_sidecar(final) is not None
        server.rate = None
        result = run(fast().download, server.url("m.gguf"), final, size=len(DATA), sha256=SHA)
        assert result.resumed_from == kept and result.transferred == len(DATA) - kept


_CHILD = """
import sys, anyio
from pathlib import Path
from mst_llm.llm.download import Downloader
anyio.run(lambda: Downloader().download(sys.argv[1], Path(sys.argv[2]), size=int(sys.argv[3])))
"""


def test_sigkill_at_half_resumes_in_a_new_process(tmp_path: Path) -> None:
    with serve(FileServer(rate=4 << 20)) as server:
        server.add("m.gguf", DATA)
        final = tmp_path / "m.gguf"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, server.url("m.gguf"), str(final), str(len(DATA))], env=env
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if part_path(final).exists() and part_path(final).stat().st_size >= len(DATA) // 2:
                break
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert not final.exists()
        server.rate = None
        before = server.sent("m.gguf")
        run(fast().download, server.url("m.gguf"), final, size=len(DATA), sha256=SHA)
        assert final.read_bytes() == DATA
        assert server.sent("m.gguf") - before <= 0.6 * len(DATA)


def test_progress_throttle_is_monotonic_and_ends_at_100() -> None:
    seen: list[float] = []
    throttle = ProgressThrottle(seen.append, rate=1e9)
    for done in (10, 5, 50, 50, 100):
        throttle.update(done, 100)
    throttle.finish()
    throttle.finish()
    assert seen == [10.0, 50.0, 99.9, 100.0]


def test_download_works_on_trio(server: FileServer, tmp_path: Path) -> None:
    final = tmp_path / "m.gguf"
    result = anyio.run(lambda: fast().download(server.url("m.gguf"), final, sha256=SHA), backend="trio")
    assert final.read_bytes() == DATA and result.sha256 == SHA and result.transferred == len(DATA)
