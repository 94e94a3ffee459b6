"""A real redis-server on 127.0.0.1 (a free port, a temporary directory, AOF with fsync on every write), shared by
the replication tests and benchmarks/sync.py.

The binary comes from Debian's ``redis-server`` package, which ``make test`` and ``make bench`` install; without
it ``start()`` raises, so a test fails instead of skipping.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Broker:
    """One redis-server process; ``kill()`` is kill -9, ``start()`` brings it back on the same port and AOF."""

    def __init__(self, directory: Path, *, password: str | None = None, tls: dict[str, Path] | None = None) -> None:
        self.directory = directory
        self.port = free_port()
        self.password = password
        self.tls = tls
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        scheme = "rediss" if self.tls else "redis"
        auth = f":{self.password}@" if self.password else ""
        return f"{scheme}://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        if not os.path.exists(REDIS_SERVER):
            raise RuntimeError("redis-server is missing: run `make test`, or `apt-get install -y redis-server` as root")
        args = [REDIS_SERVER, "--bind", "127.0.0.1", "--dir", str(self.directory), "--save", ""]
        args += ["--appendonly", "yes", "--appendfsync", "always", "--daemonize", "no", "--logfile", "redis.log"]
        if self.tls:
            args += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(self.tls["cert"])]
            args += ["--tls-key-file", str(self.tls["key"]), "--tls-auth-clients", "no"]
        else:
            args += ["--port", str(self.port)]
        if self.password:
            args += ["--requirepass", self.password]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.wait_ready()

    def client(self) -> redis.Redis:
        if self.tls:
            return redis.Redis.from_url(self.url, ssl_ca_certs=str(self.tls["cert"]))
        return redis.Redis.from_url(self.url)

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None and self.process.poll() is None, "redis-server exited at start"
            try:
                with self.client() as client:
                    client.ping()
                return
            except (redis.ConnectionError, redis.BusyLoadingError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
