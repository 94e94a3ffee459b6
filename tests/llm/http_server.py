"""A threaded HTTP file server on 127.0.0.1 with Range/206/Content-Range/ETag and fault injection, for tests.

Faults are per path and count down per request: ``drop_after`` closes the connection after N body bytes,
``stall_after`` sleeps ``stall_s`` after N bytes (or until ``resume`` is set), ``ignore_range`` answers 200
with the whole file, ``status`` answers an error code, ``lie_length`` adds to Content-Length, ``headers`` go
with the answer (``Retry-After``, ``Location``, ``Link``), ``rate`` throttles bytes per second. The log records
each request's time and ``Authorization`` header. A path may hold a query (``api/...?recursive=true``): it is
matched as it is.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Fault:
    """Misbehaviour for the next ``times`` requests of a path (None: every request)."""

    times: int | None = 1
    drop_after: int | None = None
    stall_after: int | None = None
    stall_s: float = 5.0
    resume: threading.Event | None = None
    ignore_range: bool = False
    status: int | None = None
    lie_length: int = 0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Served:
    """One request as the server saw it."""

    path: str
    range: str | None
    status: int
    sent: int = 0
    authorization: str | None = None
    time: float = field(default_factory=time.monotonic)


@dataclass
class FileServer:
    """The files, faults and request log; ``url(name)`` gives a file's address."""

    files: dict[str, bytes] = field(default_factory=dict)
    faults: dict[str, list[Fault]] = field(default_factory=dict)
    log: list[Served] = field(default_factory=list)
    rate: float | None = None
    port: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def add(self, name: str, data: bytes) -> str:
        self.files[name] = data
        return self.url(name)

    def fault(self, name: str, fault: Fault) -> None:
        self.faults.setdefault(name, []).append(fault)

    def sent(self, name: str) -> int:
        return sum(entry.sent for entry in self.log if entry.path == name)

    def take_fault(self, name: str) -> Fault | None:
        with self.lock:
            queue = self.faults.get(name) or []
            if not queue:
                return None
            fault = queue[0]
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    queue.pop(0)
            return fault


def etag_of(data: bytes) -> str:
    return '"' + hashlib.sha256(data).hexdigest()[:16] + '"'


def _handler(server: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            name = self.path.lstrip("/")
            fault = server.take_fault(name) or Fault()
            data = server.files.get(name)
            entry = Served(name, self.headers.get("Range"), 200, authorization=self.headers.get("Authorization"))
            server.log.append(entry)
            if fault.status is not None or data is None:
                entry.status = fault.status or 404
                self.send_response(entry.status)
                self._extra_headers(fault)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start = self._range_start(data, fault)
            if start is not None and start >= len(data):
                entry.status = 416
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = memoryview(data)[start or 0 :]
            entry.status = 206 if start is not None else 200
            self.send_response(entry.status)
            self.send_header("ETag", etag_of(data))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(len(body) + fault.lie_length))
            if start is not None:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self._extra_headers(fault)
            self.end_headers()
            self._send(body, fault, entry)

        def _extra_headers(self, fault: Fault) -> None:
            for name, value in fault.headers.items():
                self.send_header(name, value)

        def _range_start(self, data: bytes, fault: Fault) -> int | None:
            header = self.headers.get("Range")
            if fault.ignore_range or not header or not header.startswith("bytes="):
                return None
            if_range = self.headers.get("If-Range")
            if if_range and if_range != etag_of(data):
                return None
            first = header[len("bytes=") :].split("-")[0]
            return int(first) if first.isdigit() else None

        def _send(self, body: memoryview, fault: Fault, entry: Served) -> None:
            piece = 64 << 10 if server.rate else 1 << 20
            try:
                while entry.sent < len(body):
                    limit = len(body)
                    if fault.drop_after is not None:
                        limit = min(limit, fault.drop_after)
                    if fault.stall_after is not None and entry.sent >= fault.stall_after:
                        if fault.resume is None:
                            time.sleep(fault.stall_s)
                        else:
                            fault.resume.wait(fault.stall_s)
                        fault.stall_after = None
                    if entry.sent >= limit:
                        break
                    end = min(limit, entry.sent + piece)
                    if fault.stall_after is not None:
                        end = min(end, max(fault.stall_after, entry.sent + 1))
                    self.wfile.write(body[entry.sent : end])
                    entry.sent = end
                    if server.rate:
                        time.sleep(piece / server.rate)
            except (BrokenPipeError, ConnectionResetError):
                pass
            if entry.sent < len(body):
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)

    return Handler


class _QuietServer(ThreadingHTTPServer):
    """A client that drops its connection (a cancelled or finished download) is not an error worth a traceback."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@contextmanager
def serve(server: FileServer | None = None) -> Iterator[FileServer]:
    """Run a FileServer in a daemon thread for the duration of the block."""
    state = server or FileServer()
    httpd = _QuietServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


def main() -> None:
    """Serve one file (``python tests/http_server.py FILE``) and print the URL; used by the benchmark."""
    path = sys.argv[1]
    with open(path, "rb") as handle:
        data = handle.read()
    with serve() as state:
        print(state.add(os.path.basename(path), data), flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
