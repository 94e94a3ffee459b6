"""Fixtures for the replication tests: a real redis-server (tests/sync/broker.py) and replicas in processes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .broker import Broker

WORKER = Path(__file__).with_name("sync_worker.py")


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    server = Broker(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Broker]:
    """A broker of this test alone (for tests that kill it)."""
    server = Broker(tmp_path)
    server.start()
    yield server
    server.stop()


_streams = iter(range(1_000_000))


@pytest.fixture
def stream(request: pytest.FixtureRequest) -> str:
    """A stream name no other test uses."""
    return f"{request.node.name[:40]}-{os.getpid()}-{next(_streams)}"


def spawn(*args: str) -> subprocess.Popen[str]:
    """A replica in its own process (tests/sync/sync_worker.py); it prints one JSON line when done."""
    return subprocess.Popen(
        [sys.executable, str(WORKER), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
