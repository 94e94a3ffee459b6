"""``SessionLog.open("redis://...#stream")`` (mst_llm.sync.log): its name, its errors, a stream that grows while it
is opened, and the devtools serving an open stream log."""

from __future__ import annotations

import asyncio
import logging
import re
from urllib.parse import quote

import httpx
import pytest

from mst_llm import SessionLog, SessionLogError, get_snapshot, on_patch
from mst_llm.devtools import DevtoolsError, serve
from mst_llm.devtools.source import open_source
from mst_llm.sync import StreamLog, replicate
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


def grow(broker: Broker, stream: str, count: int, *, retain: int | None = None) -> object:
    """Another replica joins, makes ``count`` commits and leaves; every second seq gets a checkpoint (``retain``: as
    replicate's, 0 trims every entry the checkpoint covers); the final state."""

    async def run() -> object:
        tally = Tally.create()
        async with replicate(tally, broker.url, stream, checkpoint_every=2, retain=retain) as replica:
            for _ in range(count):
                tally.increment()
            await replica.sync()
        return get_snapshot(tally)

    return asyncio.run(run())


@pytest.mark.parametrize("before", [0, 3])
def test_entries_and_a_checkpoint_written_right_after_the_copy_are_no_trim(
    broker: Broker, stream: str, monkeypatch: pytest.MonkeyPatch, before: int
) -> None:
    """open() copies the stream (empty: a replica joined and committed nothing yet; or 3 entries), then other
    replicas append and store a checkpoint past what was copied, before open() returns: a live stream that keeps
    all its entries, so the open succeeds and refresh() brings them (it failed as "entries up to 2 were trimmed"
    when nothing had been copied)."""
    grow(broker, stream, before)
    copy = StreamLog.refresh
    grown: list[object] = []

    def copy_then_grow(log: StreamLog) -> int:
        added = copy(log)
        if not grown:  # the first copy, made inside open()
            grown.append(grow(broker, stream, 2))
        return added

    monkeypatch.setattr(StreamLog, "refresh", copy_then_grow)
    with SessionLog.open(f"{broker.url}#{stream}") as log:
        with broker.client() as client:
            assert int(client.hget(Keys(stream).checkpoint, "seq") or 0) == before + 2 > len(log) == before
        assert log.refresh() == 2 and log.snapshot_at(before + 2) == grown[0]


def test_a_follower_hears_of_entries_trimmed_before_it_read_them(broker: Broker, stream: str) -> None:
    """Entries appended and all trimmed away (retain=0) between two refresh() calls are an error, not "nothing
    new": the stream holds nothing after the copy, yet a checkpoint stands past it."""
    record(broker, stream)
    with SessionLog.open(f"{broker.url}#{stream}") as log:
        assert len(log) == 3
        grow(broker, stream, 3, retain=0)  # entries 4..6, checkpoint at 6, XTRIM MINID 7-0
        with broker.client() as client:
            assert client.xlen(stream) == 0
        with pytest.raises(SessionLogError, match=r"entries 4\.\.6 were trimmed"):
            log.refresh()


def test_a_stream_no_replica_has_joined_yet_is_an_error(broker: Broker, stream: str) -> None:
    """No header: nothing to read yet (a file that does not exist, not an empty one), so open() says so at once
    instead of waiting for a replica that may never come (a mistyped stream name)."""
    url = f"{broker.url}#{stream}"
    with pytest.raises(SessionLogError, match=f"^{re.escape(url)}: no replica has joined this stream yet"):
        SessionLog.open(url)
    grow(broker, stream, 0)  # a replica joins: header and checkpoint at 0, no entries yet
    with SessionLog.open(url) as log:
        assert len(log) == 0 and log.snapshot_at(0) == {"count": 0, "seen": {}, "stamp": 0.0}


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
