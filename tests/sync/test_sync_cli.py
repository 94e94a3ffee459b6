"""``mst-llm replay redis://...#stream`` and ``SessionLog.open`` read a replicated stream like a log file, and
``--follow`` (``refresh()``) follows a live one like ``tail -f``."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import httpx

from mst_llm import SessionLog, get_snapshot
from mst_llm.sync import replicate

from .broker import Broker
from .sync_models import Tally

MST_LLM = Path(sys.executable).with_name("mst-llm")


def record(broker: Broker, stream: str, *tokens: str) -> object:
    """Join the stream, increment once, record each token (default "a", "b"), leave; the final state."""

    async def run() -> object:
        tally = Tally.create()
        async with replicate(tally, broker.url, stream) as replica:
            tally.increment()
            for token in tokens or ("a", "b"):
                tally.record(token)
            await replica.sync()
        return get_snapshot(tally)

    return asyncio.run(run())


def test_session_log_reads_a_stream(broker: Broker, stream: str) -> None:
    final = record(broker, stream)
    log = SessionLog.open(f"{broker.url}#{stream}")
    assert len(log) == 3
    assert [entry.name for entry in log] == ["increment", "record", "record"]
    assert log.snapshot_at(0) == {"count": 0, "seen": {}, "stamp": 0.0}
    assert log.snapshot_at(3) == final
    assert log.diff(1, 3)[-1] == {"op": "add", "path": "/seen/b", "value": 3}


def test_replay_command_reads_a_stream(broker: Broker, stream: str) -> None:
    final = record(broker, stream)
    url = f"{broker.url}#{stream}"
    summary = subprocess.run([MST_LLM, "replay", url, "--json"], capture_output=True, text=True, timeout=60)
    assert summary.returncode == 0, summary.stderr
    report = json.loads(summary.stdout)
    assert report["entries"] == 3 and report["actions"] == {"record": 2, "increment": 1}
    assert report["file"] == url
    state = subprocess.run([MST_LLM, "replay", url, "--at", "3", "--json"], capture_output=True, text=True, timeout=60)
    assert json.loads(state.stdout) == final


def test_replay_command_names_a_missing_stream_without_credentials(broker: Broker) -> None:
    url = broker.url.replace("redis://", "redis://user:hunter22@") + "#no-such-stream"
    result = subprocess.run([MST_LLM, "replay", url], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "no-such-stream" in result.stderr + result.stdout
    assert "hunter22" not in result.stderr + result.stdout


def test_a_stream_log_refreshes_with_new_entries(broker: Broker, stream: str) -> None:
    record(broker, stream)
    log = SessionLog.open(f"{broker.url}#{stream}")
    assert len(log) == 3 and log.refresh() == 0
    final = record(broker, stream, "c")  # a second replica joins at seq 3 and appends 2 entries
    assert log.refresh() == 2
    assert len(log) == 5 and [entry.name for entry in log.entries[3:]] == ["increment", "record"]
    assert log.snapshot_at(5) == final


def test_replay_follows_a_live_stream(broker: Broker, stream: str) -> None:
    record(broker, stream)
    url = f"{broker.url}#{stream}"
    command = [MST_LLM, "replay", url, "--follow", "--json", "--idle-exit", "3"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as follower:
        assert follower.stdout is not None
        printed = [json.loads(follower.stdout.readline()) for _ in range(3)]  # what the stream held
        record(broker, stream, "c", "d")  # appended while it follows
        printed += [json.loads(line) for line in follower.stdout]
        assert follower.wait(timeout=60) == 0, follower.stderr.read() if follower.stderr else ""
    assert [entry["seq"] for entry in printed] == [1, 2, 3, 4, 5, 6]
    assert [entry["action"]["args"] for entry in printed[3:]] == [[], ["c"], ["d"]]


def test_devtools_serve_a_stream_and_follow_it(broker: Broker, stream: str) -> None:
    """`mst-llm devtools redis://...#stream`: the page reads the stream and sees entries appended later."""
    record(broker, stream)
    url = f"{broker.url.replace('redis://', 'redis://default:hunter22@')}#{stream}"
    assert "hunter22" in url  # (a password the broker does not ask for: it must not show on the page)
    with subprocess.Popen([MST_LLM, "devtools", url], stdout=subprocess.PIPE, text=True) as child:
        try:
            assert child.stdout is not None
            page = child.stdout.readline().split()[-1]
            client = httpx.Client(base_url=page.split("?")[0], params={"token": page.split("token=")[1]}, timeout=30)
            info = client.get("api/info").json()
            assert info["length"] == 3 and info["root_type"] == "Tally" and "hunter22" not in json.dumps(info)
            final = record(broker, stream, "c")  # another replica appends two entries while the page is open
            assert client.get("api/info").json()["length"] == 5
            assert client.get("api/state", params={"seq": 5}).json()["state"] == final
            names = [row["name"] for row in client.get("api/entries", params={"offset": 0}).json()["entries"]]
            assert names == ["increment", "record", "record", "increment", "record"]
        finally:
            child.terminate()
    missing = subprocess.run([MST_LLM, "devtools", f"{url}-missing"], capture_output=True, text=True, timeout=60)
    assert missing.returncode != 0 and "-missing" in missing.stderr and "hunter22" not in missing.stderr
