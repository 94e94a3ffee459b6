"""``SessionLog.open("redis://...#stream")`` (mst_llm.sync.log): its name, its errors, a stream that grows while it
is opened, and the devtools serving an open stream log."""

from __future__ import annotations

import asyncio
import logging
import re
from urllib.parse import quote

import httpx
import pytest

from mst_llm import SessionLog, SessionLogError, on_patch
from mst_llm.devtools import DevtoolsError, serve
from mst_llm.devtools.source import open_source
from mst_llm.sync import replicate
from mst_llm.sync.stream import Keys, password, scrub

from .broker import Broker
from .sync_models import Tally
from .test_sync_cli import record

SECRET = "p@ss/w%rd:1"  # every character that a URL must percent-encode


def test_devtools_serve_an_open_stream_log(broker: Broker, stream: str) -> None:
    """serve(log) reads the log it is given: named by its URL, refreshed by the page, left open for the caller."""
    record(broker, stream)
    url = f"{broker.url.replace('redis://', 'redis://default:hunter22@')}#{stream}"
    with SessionLog.open(url) as log:
        assert log.name == f"{broker.url.replace('redis://', 'redis://***@')}#{stream}"
        with serve(log) as server:
            client = httpx.Client(base_url=server.url.split("?")[0], params={"token": server.token}, timeout=30)
            info = client.get("api/info").json()
            assert info["file"] == log.name and info["length"] == 3
            final = record(broker, stream, "c")  # appended while the page is open; nobody refreshes the log
            assert client.get("api/info").json()["length"] == 5
            assert client.get("api/state", params={"seq": 5}).json()["state"] == final
        assert log.refresh() == 0 and log.snapshot_at(5) == final  # the page did not close the caller's log
        source = open_source(log)
    with pytest.raises(SessionLogError, match="the log is closed"):  # not the deleted copy's FileNotFoundError
        source.refresh()


def test_a_url_it_cannot_read_is_a_session_log_error(broker: Broker) -> None:
    for url, problem in [
        (broker.url, "names no stream"),
        ("redis://127.0.0.1:12x/0#s", "Port could not be cast"),
        (f"redis://:{quote(SECRET, safe='')}@127.0.0.1:99999/0#s", "Port out of range"),
    ]:
        with pytest.raises(SessionLogError, match=problem) as caught:
            SessionLog.open(url)
        assert SECRET not in str(caught.value)
    with pytest.raises(DevtoolsError, match="names no stream"):
        open_source(broker.url)


def test_a_checkpoint_newer_than_the_entries_copied_is_no_trim(broker: Broker, stream: str) -> None:
    """A checkpoint written after the entries were copied (here: past them) does not fail the open of a stream
    that keeps all its entries."""
    record(broker, stream)
    with broker.client() as client:
        client.hset(Keys(stream).checkpoint, "seq", "5")
    with SessionLog.open(f"{broker.url}#{stream}") as log:
        assert len(log) == 3


def test_an_entry_without_its_session_log_line_is_an_error(broker: Broker, stream: str) -> None:
    record(broker, stream)
    url = f"{broker.url}#{stream}"
    with broker.client() as client:
        client.xadd(stream, {"o": b"elsewhere/1"}, id="4-0")
    with pytest.raises(SessionLogError, match=f"^{re.escape(url)}: entry 4 has no field 'e'"):
        SessionLog.open(url)


def test_errors_name_the_stream_not_its_copy(broker: Broker, stream: str) -> None:
    record(broker, stream)
    url = f"{broker.url}#{stream}"
    with broker.client() as client:
        client.xadd(stream, {"e": b"garbage", "o": b"elsewhere/1"}, id="4-0")
    with pytest.raises(SessionLogError, match=f"^{re.escape(url)}: line 5 is not a session-log line") as caught:
        SessionLog.open(url)
    assert "mst_llm-stream-" not in str(caught.value)


def test_a_percent_encoded_password_is_scrubbed(broker: Broker, stream: str, caplog: pytest.LogCaptureFixture) -> None:
    url = broker.url.replace("redis://", f"redis://default:{quote(SECRET, safe='')}@")
    assert password(url) == SECRET and scrub(f"AUTH {SECRET} failed", password(url)) == "AUTH *** failed"

    def leak(patch: object, _inverse: object) -> None:
        raise RuntimeError(f"a listener's bug shows {SECRET}")

    async def run() -> None:
        one, two = Tally.create(), Tally.create()
        async with replicate(one, url, stream) as a, replicate(two, url, stream) as b:
            on_patch(two, leak)
            one.increment()
            await a.sync()
            await b.sync()
            assert two.count == 1

    caplog.set_level(logging.DEBUG)
    asyncio.run(run())
    assert "a listener's bug shows ***" in caplog.text and SECRET not in caplog.text
