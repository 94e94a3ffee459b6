"""The devtools server without a browser: token and Host checks, read-only by default, paging a big log, the
``mst-llm devtools`` command."""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from mst_llm import SessionLog, action, model, record_session
from mst_llm.devtools import DevtoolsError, serve


@model
class Counter:
    value: int = 0

    @action
    def bump(self) -> None:
        self.value += 1


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    path = tmp_path / "s.jsonl"
    counter = Counter.create({})
    with record_session(counter, path):
        for _ in range(3):
            counter.bump()
    return path


def base(url: str) -> str:
    return url.split("?")[0]


def test_every_request_needs_the_token(log_path: Path) -> None:
    with serve(log_path) as server:
        root = base(server.url)
        assert httpx.get(server.url).status_code == 200
        assert httpx.get(f"{root}api/info", params={"token": server.token}).json()["length"] == 3
        assert httpx.get(f"{root}api/info", headers={"X-Devtools-Token": server.token}).status_code == 200
        for path in ("", "api/info", "api/state?seq=1", "api/events", "static/app.js"):
            assert httpx.get(root + path).status_code == 403, path
            assert httpx.get(root + path, params={"token": "x" + server.token}).status_code == 403, path


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_serves_from_inside_an_asyncio_or_a_trio_app(log_path: Path, backend: str) -> None:
    async def app() -> Any:
        with serve(log_path) as server:
            async with httpx.AsyncClient() as client:
                answer = await client.get(f"{base(server.url)}api/info", params={"token": server.token})
                return answer.json()

    with ThreadPoolExecutor(1) as pool:  # a thread of its own: Playwright's sync API may keep a loop running here
        assert pool.submit(anyio.run, app, backend=backend).result()["length"] == 3


def test_a_foreign_host_header_is_refused(log_path: Path) -> None:
    with serve(log_path) as server:
        params = {"token": server.token}
        url = f"{base(server.url)}api/info"
        assert httpx.get(url, params=params, headers={"Host": f"localhost:{server.port}"}).status_code == 200
        assert httpx.get(url, params=params, headers={"Host": f"attacker.example:{server.port}"}).status_code == 400


def test_read_only_unless_time_travel_is_allowed(log_path: Path) -> None:
    counter = Counter.create({})
    with serve(log_path) as server:
        answer = httpx.post(f"{base(server.url)}api/travel", params={"token": server.token, "seq": 1})
        assert answer.status_code == 403 and "read-only" in answer.json()["error"]
    with serve(counter) as server:
        answer = httpx.post(f"{base(server.url)}api/travel", params={"token": server.token, "seq": 0})
        assert answer.status_code == 403
    counter.bump()
    with serve(counter, allow_time_travel=True) as server:
        counter.bump()
        answer = httpx.post(f"{base(server.url)}api/travel", params={"token": server.token, "seq": 0})
        assert answer.status_code == 200 and counter.value == 1  # state 0: the tree when serving began


def test_binding_elsewhere_warns(log_path: Path) -> None:
    with pytest.warns(UserWarning, match="not only on this machine"), serve(log_path, host="0.0.0.0") as server:
        answer = httpx.get(f"http://127.0.0.1:{server.port}/api/info", params={"token": server.token})
        assert answer.status_code == 200


def test_bad_sources_and_requests(tmp_path: Path, log_path: Path) -> None:
    with pytest.raises(DevtoolsError, match="no session log"):
        serve(tmp_path / "missing.jsonl")
    with pytest.raises(DevtoolsError, match=r"no session-log reader is installed for ftp:// URLs"):
        serve("ftp://example.invalid/log.jsonl")
    with serve(SessionLog.open(log_path)) as server:
        answer = httpx.get(f"{base(server.url)}api/state", params={"token": server.token, "seq": 9})
        assert answer.status_code == 400 and "out of range" in answer.json()["error"]


def test_a_big_log_is_served_a_page_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    entries = 100_000
    with open(path, "wb") as file:
        file.write(SessionLog.header_line("Counter", {"value": 0}, None))
        for seq in range(1, entries + 1):
            patch = [{"op": "replace", "path": "/value", "value": seq}]
            name = "bump" if seq % 10 else "reset"
            file.write(SessionLog.entry_line(seq, seq, {"name": name, "path": "", "args": []}, patch, patch))
            if seq % 1000 == 0:
                file.write(SessionLog.checkpoint_line(seq, seq, {"value": seq}))
    with serve(path) as server:
        client = httpx.Client(base_url=base(server.url), params={"token": server.token}, timeout=30)
        started = time.perf_counter()
        page = client.get("api/entries", params={"offset": entries - 100, "limit": 100}).json()
        state = client.get("api/state", params={"seq": 54_321}).json()
        assert time.perf_counter() - started < 2
        assert page["total"] == entries and [row["seq"] for row in page["entries"]] == list(range(99_901, 100_001))
        assert state["state"] == {"value": 54_321}
        assert len(client.get("api/entries", params={"limit": 10**6}).json()["entries"]) == 500
        resets = client.get("api/entries", params={"action": "reset", "offset": 0, "limit": 5}).json()
        assert resets["total"] == entries // 10 and [row["seq"] for row in resets["entries"]] == [10, 20, 30, 40, 50]


def test_the_command_prints_the_url_and_serves(log_path: Path) -> None:
    command = [sys.executable, "-m", "mst_llm.cli", "devtools", str(log_path)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as child:
        try:
            assert child.stdout is not None
            line = child.stdout.readline()
            assert line.startswith("devtools: http://127.0.0.1:") and "token=" in line
            url = line.split()[-1]
            token = url.split("token=")[1]
            assert httpx.get(f"{base(url)}api/info", params={"token": token}).json()["root_type"] == "Counter"
        finally:
            child.terminate()
    code = subprocess.run([*command[:4], "--demo", str(log_path)], capture_output=True, text=True).returncode
    assert code == 2  # a file or --demo, not both


def test_a_diff_leaves_out_the_side_where_a_path_is_absent(tmp_path: Path) -> None:
    """A path added or removed between two states has no value on one side; a real value must not look like it."""
    path = tmp_path / "tags.jsonl"
    with open(path, "wb") as file:
        file.write(SessionLog.header_line("Tags", {"tags": {}}, None))
        added = [{"op": "add", "path": "/tags/a", "value": {"absent": True}}]
        file.write(SessionLog.entry_line(1, 1.0, None, added, [{"op": "remove", "path": "/tags/a"}]))
    with serve(path) as server:
        client = httpx.Client(base_url=base(server.url), params={"token": server.token})
        forward = client.get("api/diff", params={"a": 0, "b": 1}).json()["changed"]
        back = client.get("api/diff", params={"a": 1, "b": 0}).json()["changed"]
    assert forward == [{"path": "/tags/a", "after": {"absent": True}}]
    assert back == [{"path": "/tags/a", "before": {"absent": True}}]


def test_one_corrupt_line_leaves_the_rest_of_the_timeline_readable(log_path: Path) -> None:
    """A page of the timeline that held a corrupt line was a 400, so the page showed no timeline at all."""
    lines = log_path.read_bytes().splitlines(keepends=True)
    lines[2] = b'{"seq":2,"ts":1.0,"act GARBAGE\n'  # entry 2 of 3
    log_path.write_bytes(b"".join(lines))
    with serve(log_path) as server:
        client = httpx.Client(base_url=base(server.url), params={"token": server.token})
        rows = client.get("api/entries").json()["entries"]
        bumps = client.get("api/entries", params={"action": "bump"}).json()
        state = client.get("api/state", params={"seq": 3})
    assert [row["seq"] for row in rows] == [1, 2, 3] and [row["call"] for row in (rows[0], rows[2])] == ["bump()"] * 2
    assert rows[1]["call"] is None and "line 3 (entry 2, between entries 1 and 3) is corrupt" in rows[1]["error"]
    assert bumps["total"] == 2 and [row["seq"] for row in bumps["entries"]] == [1, 3]
    assert state.status_code == 400 and "line 3 (entry 2" in state.json()["error"]  # (a state after it is unknown)
