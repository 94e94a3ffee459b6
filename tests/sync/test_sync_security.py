"""rediss:// (TLS) and password URLs work; the password never reaches a log record or an error."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest

from mst_llm import SessionLog, SessionLogError, get_snapshot
from mst_llm.sync import SyncError, redact, replicate

from .broker import Broker
from .sync_models import Tally

SECRET = "s3cr3t-Pa55word"


@pytest.fixture
def locked_broker(tmp_path: Path) -> Iterator[Broker]:
    """A broker behind TLS (a self-signed certificate made with openssl) and a password."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    request = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
    files = ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)]
    subprocess.run([*request, *files], check=True, capture_output=True)
    server = Broker(tmp_path, password=SECRET, tls={"cert": cert, "key": key})
    server.start()
    yield server
    server.stop()


def test_tls_and_a_password_url_replicate(locked_broker: Broker, stream: str) -> None:
    assert locked_broker.url.startswith(f"rediss://:{SECRET}@")
    options = {"ssl_ca_certs": str(locked_broker.tls["cert"])} if locked_broker.tls else {}

    async def run() -> tuple[object, object]:
        one, two = Tally.create(), Tally.create()
        async with (
            replicate(one, locked_broker.url, stream, client_options=options) as a,
            replicate(two, locked_broker.url, stream, client_options=options) as b,
        ):
            assert SECRET not in repr(a) and SECRET not in a.url and a.url in repr(a)
            one.increment()
            two.record("x")
            for replica in (a, b, a):
                await replica.sync()
            return get_snapshot(one), get_snapshot(two)

    one, two = asyncio.run(run())
    assert one == two and one["count"] == 2


def test_a_wrong_password_is_a_sync_error_without_the_password(
    locked_broker: Broker, stream: str, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = locked_broker.url.replace(SECRET, "Wr0ng-" + SECRET)
    options = {"ssl_ca_certs": str(locked_broker.tls["cert"])} if locked_broker.tls else {}

    async def run() -> None:
        async with replicate(Tally.create(), wrong, stream, client_options=options):
            pass  # pragma: no cover

    caplog.set_level(logging.DEBUG)
    with pytest.raises(SyncError) as caught:
        asyncio.run(run())
    told = "".join(traceback.format_exception(caught.value)) + caplog.text
    assert "refused us" in str(caught.value) and "***@127.0.0.1" in str(caught.value)
    assert SECRET not in told


def test_session_log_errors_name_the_broker_without_the_password(locked_broker: Broker) -> None:
    url = locked_broker.url.replace(SECRET, "Wr0ng-" + SECRET) + "#nothing"
    with pytest.raises(SessionLogError) as caught:
        SessionLog.open(url)
    assert SECRET not in "".join(traceback.format_exception(caught.value))


def test_redact_hides_user_and_password() -> None:
    assert redact(f"rediss://user:{SECRET}@db.example:6380/2") == "rediss://***@db.example:6380/2"
    assert redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
