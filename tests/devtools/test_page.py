"""The devtools page in headless Chromium: tree, scrubbing, diff, who-changed, timeline, LLM panel, live follow,
and `mst-llm devtools --demo`.

Screenshots of each view land in the test's tmp dir."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page

from mst_llm import SessionLog, action, escape_json_path, get_snapshot, model, record_session
from mst_llm.cli.demo import DEFAULT_KEY, DEFAULT_PROMPT
from mst_llm.devtools import DevtoolsServer, serve
from tests.devtools.conftest import LONG_PROMPT


@model
class Counter:
    value: int = 0
    log: list[str]

    @action
    def bump(self, by: int) -> None:
        self.value += by
        self.log.append(f"bumped by {by}")


def leaves(value: Any, path: str = "") -> dict[str, Any]:
    """Every scalar of a snapshot by JSON pointer, as the page lists them."""
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return {path: value}
    found: dict[str, Any] = {}
    for key, child in items:
        found.update(leaves(child, f"{path}/{escape_json_path(str(key))}"))
    return found


def open_page(page: Page, server: DevtoolsServer, length: int) -> None:
    page.goto(server.url)
    page.wait_for_function("n => document.getElementById('tree').dataset.seq === String(n)", arg=length)


def go_to(page: Page, seq: int) -> None:
    page.eval_on_selector("#seq-slider", "(el, v) => { el.value = v; el.dispatchEvent(new Event('input')); }", seq)
    page.wait_for_function("n => document.getElementById('tree').dataset.seq === String(n)", arg=seq)


def shown_leaves(page: Page) -> dict[str, Any]:
    page.click("#expand-all")
    pairs = page.eval_on_selector_all("#tree .value", "els => els.map(e => [e.dataset.path, e.title])")
    return {path: json.loads(title) for path, title in pairs}


def test_tree_and_scrubbing_match_snapshot_at(page: Page, demo_log: Path, tmp_path: Path) -> None:
    log = SessionLog.open(demo_log)
    console_errors: list[str] = []  # (a request the page makes without its token shows here as a 403)
    page.on("console", lambda message: console_errors.append(message.text) if message.type == "error" else None)
    with serve(demo_log) as server:
        open_page(page, server, len(log))
        assert page.text_content("#length") == str(len(log))
        assert shown_leaves(page) == leaves(log.snapshot_at(len(log)))
        prompt = page.locator('#tree .value[data-path="/prompt"]')
        assert prompt.text_content().endswith("…") and json.loads(prompt.get_attribute("title") or "") == LONG_PROMPT
        page.screenshot(path=tmp_path / "state.png", full_page=True)

        middle = len(log) // 2
        go_to(page, middle)
        assert shown_leaves(page) == leaves(log.snapshot_at(middle))
        page.keyboard.press("ArrowLeft")
        page.wait_for_function("n => document.getElementById('tree').dataset.seq === String(n)", arg=middle - 1)
        assert shown_leaves(page) == leaves(log.snapshot_at(middle - 1))
        page.keyboard.press("ArrowRight")
        page.wait_for_function("n => document.getElementById('tree').dataset.seq === String(n)", arg=middle)
        assert page.text_content("#seq-entry") and log.entry(middle).name in (page.text_content("#seq-entry") or "")
        page.screenshot(path=tmp_path / "scrubbed.png", full_page=True)
    assert console_errors == []


def diff_paths(page: Page) -> list[str]:
    return page.eval_on_selector_all("#diff-patches tbody tr td:nth-child(2)", "tds => tds.map(t => t.textContent)")


def test_diff_between_two_seqs(page: Page, demo_log: Path, tmp_path: Path) -> None:
    log = SessionLog.open(demo_log)
    a, b = next(entry.seq for entry in log if entry.name == "use_model"), len(log)
    with serve(demo_log) as server:
        open_page(page, server, len(log))
        page.click('#tabs [data-tab="diff"]')  # opens on what the last entry changed, and follows the slider
        for seq in (b, b - 1):
            page.wait_for_selector(f'#diff-patches[data-range="{seq - 1}-{seq}"]', state="attached")
            assert diff_paths(page) == [patch["path"] or '""' for patch in log.diff(seq - 1, seq)]
            page.keyboard.press("ArrowLeft")
        page.fill("#diff-a", str(a))
        page.fill("#diff-b", str(b))
        page.click("#diff-run")
        expected = log.diff(a, b)
        page.wait_for_selector(f'#diff-patches[data-range="{a}-{b}"]', state="attached")
        assert diff_paths(page) == [patch["path"] or '""' for patch in expected]
        changed = page.eval_on_selector_all(
            "#diff-changed tbody tr", "trs => trs.map(tr => [...tr.cells].map(td => td.textContent))"
        )
        assert [row[0] for row in changed] == list(dict.fromkeys(patch["path"] for patch in expected))
        row = next(row for row in changed if row[0] == "/llama/state")
        assert json.loads(row[1]) == log.snapshot_at(a)["llama"]["state"]
        assert json.loads(row[2]) == log.snapshot_at(b)["llama"]["state"]
        page.screenshot(path=tmp_path / "diff.png", full_page=True)


def test_who_changed_a_clicked_value(page: Page, demo_log: Path, tmp_path: Path) -> None:
    log = SessionLog.open(demo_log)
    with serve(demo_log) as server:
        open_page(page, server, len(log))
        page.click("#expand-all")
        page.click('#tree .value[data-path="/llama/state"]')
        expected = [entry.seq for entry in log.changes_to("/llama/state")]
        page.wait_for_function("n => document.querySelectorAll('#who tbody tr').length === n", arg=len(expected))
        seqs = page.eval_on_selector_all("#who tbody tr", "trs => trs.map(tr => Number(tr.dataset.seq))")
        assert seqs == expected and len(seqs) >= 3  # loading, ready, generating, ...
        assert f"{len(expected)} entries changed /llama/state" in (page.text_content("#who-summary") or "")
        page.screenshot(path=tmp_path / "who.png", full_page=True)
        page.fill("#who-path", "/llama/load_progress")  # a typed path, run with Enter
        page.press("#who-path", "Enter")
        typed = len(log.changes_to("/llama/load_progress"))
        summary = f"{typed} entries changed /llama/load_progress"
        page.wait_for_function(f"() => document.getElementById('who-summary').textContent.startsWith('{summary}')")


def test_timeline_filter(page: Page, demo_log: Path, tmp_path: Path) -> None:
    log = SessionLog.open(demo_log)
    with serve(demo_log) as server:
        open_page(page, server, len(log))
        rows = page.locator("#timeline tbody tr")
        assert rows.count() == min(100, len(log))
        page.fill("#filter", "use_model")
        page.wait_for_function("() => document.querySelectorAll('#timeline tbody tr').length === 1")
        assert rows.first.get_attribute("data-seq") == str(next(e.seq for e in log if e.name == "use_model"))
        assert "use_model(" in (rows.first.text_content() or "") and "…" in (rows.first.text_content() or "")
        page.screenshot(path=tmp_path / "timeline.png", full_page=True)


def test_llm_panel(page: Page, demo_log: Path, tmp_path: Path) -> None:
    log = SessionLog.open(demo_log)
    final = log.snapshot_at(len(log))
    with serve(demo_log) as server:
        open_page(page, server, len(log))
        page.click('#tabs [data-tab="llm"]')
        card = page.locator('#llm .model[data-at="/llama"]')
        card.wait_for()
        assert card.locator(".llm-state").text_content() == final["llama"]["state"]
        # (tokens_generated is the last generation's count, not a total over the two)
        last = f"the last one: {final['llama']['tokens_generated']} tokens at "
        assert card.locator(".llm-tokens").text_content().startswith(f"2 generations finished; {last}")
        generating = [e.seq for e in log if e.name == "start_generation"][-1]  # the second one
        go_to(page, generating)
        text = "1 generation finished; this one so far: 0 tokens at 0.0 tokens/s"
        page.wait_for_function(f"() => document.querySelector('#llm .llm-tokens').textContent.startsWith('{text}')")
        points = card.locator("polyline").get_attribute("points") or ""
        target = "/llama/tokens_per_second"
        updates = [e for e in log.changes_to(target) if any(patch["path"] == target for patch in e.patches)]
        assert len(points.split()) == len(updates) > 0
        assert page.locator('#llm .store[data-at="/store"] tbody tr').count() == len(final["store"]["models"])
        page.screenshot(path=tmp_path / "llm.png", full_page=True)


def test_follows_a_live_tree_and_travels_in_time(page: Page, tmp_path: Path) -> None:
    counter = Counter.create({})
    with serve(counter, allow_time_travel=True) as server:
        open_page(page, server, 0)
        latencies = []
        for n in range(1, 6):
            started = time.perf_counter()
            threading.Thread(target=counter.bump, args=(n,)).start()
            page.wait_for_function("n => document.getElementById('tree').dataset.seq === String(n)", arg=n, polling=10)
            latencies.append(time.perf_counter() - started)
        assert shown_leaves(page) == leaves(get_snapshot(counter))
        assert page.locator("#timeline tbody tr").count() == 5
        assert statistics.median(latencies) <= 0.2, latencies
        page.screenshot(path=tmp_path / "live.png", full_page=True)

        go_to(page, 2)
        page.click("#travel")
        page.wait_for_function("() => document.getElementById('length').textContent === '6'")
        assert get_snapshot(counter) == {"value": 3, "log": ["bumped by 1", "bumped by 2"]}


def test_the_demo_command_opens_on_the_demo_session_with_its_llm_panel(
    page: Page, tiny_model: Path, tmp_path: Path
) -> None:
    """`mst-llm devtools --demo` as a user runs it (a real process, the demo in its child) on the tiny model."""
    models, scratch = tmp_path / "models", tmp_path / "tmp"
    models.mkdir()
    scratch.mkdir()
    shutil.copy(tiny_model, models / "tiny.gguf")  # installed already: the catalog's URL is never fetched
    catalog = tmp_path / "catalog.json"
    entry = {"key": DEFAULT_KEY, "display_name": "Tiny", "filename": "tiny.gguf", "url": "https://example.invalid/x"}
    catalog.write_text(json.dumps([entry]))
    env = {**os.environ, "MST_LLM_MODELS_DIR": str(models), "MST_LLM_CATALOG": str(catalog), "TMPDIR": str(scratch)}
    output = tmp_path / "output.txt"
    with output.open("wb") as out:
        child = subprocess.Popen([sys.executable, "-m", "mst_llm.cli", "devtools", "--demo"], stdout=out, env=env)
    try:
        url = wait_for_line(output, "devtools: ", child)
        assert url.startswith("http://127.0.0.1:") and "token=" in url
        refused = page.goto(url.split("?")[0])  # the page without its token
        assert refused is not None and refused.status == 403
        page.goto(url)  # while the demo runs: the page follows its growing log
        wait_for_line(output, "  mst-llm replay ", child)  # the demo ended: its log is complete
        (log_path,) = scratch.glob("mst_llm-devtools-*/demo.jsonl")
        log = SessionLog.open(log_path)
        page.wait_for_function("n => document.getElementById('tree').dataset.seq === String(n)", arg=len(log))
        assert (page.text_content("#source") or "").startswith("DemoSession · ")
        final = log.snapshot_at(len(log))
        assert shown_leaves(page) == leaves(final)
        assert final["prompt"] == DEFAULT_PROMPT and final["llama"]["generations"] == 1
        assert page.locator("#timeline tbody tr").count() > 0
        page.click('#tabs [data-tab="llm"]')
        card = page.locator('#llm .model[data-at="/llama"]')
        assert final["llama"]["state"] == "released"
        # the panel renders when its own request answers (a card of an earlier request may be there first)
        page.wait_for_function(
            "() => document.querySelector('#llm .model[data-at=\"/llama\"] .llm-state')?.textContent === 'released'"
        )
        text = f"1 generation finished; the last one: {final['llama']['tokens_generated']} tokens at "
        assert (card.locator(".llm-tokens").text_content() or "").startswith(text)
        (row,) = page.locator('#llm .store[data-at="/store"] tbody tr').all()
        assert final["store"]["models"][0]["progress"] == 100.0  # ModelInfo.progress is a percentage
        assert (row.locator("td").nth(2).text_content() or "").strip() == "100 %"
        assert row.locator(".bar > span").get_attribute("style") == "width:100%"
        page.screenshot(path=tmp_path / "demo.png", full_page=True)
    finally:
        child.send_signal(signal.SIGINT)  # Ctrl-C: the command stops its demo child and its server
        assert child.wait(timeout=30) == 130  # "interrupted: SIGINT", as after Ctrl-C
    assert not list(scratch.glob("mst_llm-devtools-*")), "the command left its temporary directory behind"


def wait_for_line(path: Path, prefix: str, child: subprocess.Popen[bytes], timeout: float = 180) -> str:
    """The rest of the first line of ``path`` that starts with ``prefix``, once a process has written it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in path.read_text().splitlines():
            if line.startswith(prefix):
                return line[len(prefix) :]
        assert child.poll() is None, f"the command ended ({child.returncode}): {path.read_text()}"
        time.sleep(0.1)
    raise AssertionError(f"no line starting {prefix!r} within {timeout} s: {path.read_text()}")


@contextlib.contextmanager
def diff_of_one_bump(page: Page, tmp_path: Path) -> Iterator[None]:
    """The page's Diff tab open on a log of one ``bump(1)`` (state 0 to 1), while the server runs."""
    counter = Counter.create({})
    path = tmp_path / "bump.jsonl"
    with record_session(counter, path):
        counter.bump(1)
    with serve(path) as server:
        open_page(page, server, 1)
        page.click('#tabs [data-tab="diff"]')
        page.wait_for_selector('#diff-patches[data-range="0-1"]', state="attached")
        yield


def test_diff_shows_an_absent_side_as_absent(page: Page, tmp_path: Path) -> None:
    with diff_of_one_bump(page, tmp_path):
        rows = page.eval_on_selector_all(
            "#diff-changed tbody tr", "trs => trs.map(tr => [...tr.cells].map(td => td.textContent))"
        )
        assert rows == [["/value", "0", "1"], ["/log/0", "(absent)", '"bumped by 1"']]
        page.screenshot(path=tmp_path / "diff-absent.png", full_page=True)


def test_follows_a_new_session_that_an_app_starts_in_the_file(page: Page, tmp_path: Path) -> None:
    """record_session truncates its file: the server read on from the old session's offset, and every request
    failed with 'line 4 is not a session-log line'; now the page loads the new session."""
    path = tmp_path / "app.jsonl"
    with record_session(Counter.create({}), path) as first:
        first.node.bump(1)
    with serve(path) as server:
        open_page(page, server, 1)
        second = Counter.create({})
        with record_session(second, path):
            for by in (10, 20, 30):
                second.bump(by)
        page.wait_for_function("() => document.getElementById('tree').dataset.seq === '3'", timeout=5000)
        assert page.text_content("#length") == "3"
        assert shown_leaves(page) == leaves(get_snapshot(second))
        info = json.loads(page.evaluate("fetch('api/info?token=' + document.body.dataset.token).then(r => r.text())"))
        assert info["length"] == 3 and page.text_content("#status") == ""


def test_an_empty_log_waits_for_its_header(page: Page, tmp_path: Path) -> None:
    """An app about to record: the page said 'null · empty.jsonl' and 'the log has no complete header'."""
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    console_errors: list[str] = []
    page.on("console", lambda message: console_errors.append(message.text) if message.type == "error" else None)
    with serve(path) as server:
        page.goto(server.url)
        page.wait_for_function("() => document.getElementById('source').textContent.includes('waiting')")
        assert page.text_content("#source") == f"{path} (no session header yet: waiting for it)"
        assert page.text_content("#status") == ""
        counter = Counter.create({})
        with record_session(counter, path):
            counter.bump(5)
        page.wait_for_function("() => document.getElementById('tree').dataset.seq === '1'", timeout=5000)
        assert page.text_content("#source") == f"Counter · {path}"
        assert shown_leaves(page) == leaves(get_snapshot(counter))
    assert console_errors == []


def test_who_changed_clears_the_last_answer_on_a_bad_path(page: Page, tmp_path: Path) -> None:
    """A path that is no JSON pointer showed its error next to the previous path's rows and '2 entries changed ...'."""
    counter = Counter.create({})
    path = tmp_path / "who.jsonl"
    with record_session(counter, path):
        counter.bump(1)
        counter.bump(2)
    with serve(path) as server:
        open_page(page, server, 2)
        page.click('#tabs [data-tab="who"]')
        page.fill("#who-path", "/value")
        page.press("#who-path", "Enter")
        summary = "document.getElementById('who-summary').textContent"
        page.wait_for_function(f"() => {summary} === '2 entries changed /value'")
        page.fill("#who-path", "value")
        page.press("#who-path", "Enter")
        page.wait_for_function("() => document.getElementById('status').textContent.includes('JSON pointer')")
        assert page.text_content("#who-summary") == "" and page.locator("#who tbody tr").count() == 0


def test_the_timeline_fits_its_pane_on_a_small_window(browser: Browser, demo_log: Path) -> None:
    """With a fixed max-width on the action, the patches column fell off the pane of a 1200px window."""
    log = SessionLog.open(demo_log)
    context = browser.new_context(viewport={"width": 1000, "height": 700})
    page = context.new_page()
    try:
        with serve(demo_log) as server:
            open_page(page, server, len(log))
            pane = page.evaluate(
                "(() => { const p = document.getElementById('timeline-pane'); "
                "return [p.scrollWidth, p.clientWidth, p.getBoundingClientRect().right]; })()"
            )
            assert pane[0] <= pane[1], pane
            last_cell = page.locator("#timeline tbody tr").first.locator("td").nth(3).bounding_box()
            assert last_cell is not None and last_cell["x"] + last_cell["width"] <= pane[2]
    finally:
        context.close()


def test_a_diff_out_of_range_clears_the_last_one(page: Page, tmp_path: Path) -> None:
    """'seq 9 is out of range' showed above the previous diff's tables and '2 patches, 2 paths'."""
    with diff_of_one_bump(page, tmp_path):
        assert page.locator("#diff-patches tbody tr").count() == 2
        page.fill("#diff-b", "9")
        page.press("#diff-b", "Enter")
        page.wait_for_function("() => document.getElementById('status').textContent.includes('out of range')")
        assert page.text_content("#diff-summary") == "" and page.locator("#diff-patches tbody tr").count() == 0
        assert page.locator("#diff-changed tbody tr").count() == 0


def test_a_state_that_cannot_be_read_is_not_shown_as_the_last_one(page: Page, tmp_path: Path) -> None:
    """After a corrupt line the page said 'state 3' over the tree of the state shown before, with no sign of it."""
    counter = Counter.create({})
    path = tmp_path / "corrupt.jsonl"
    with record_session(counter, path):
        for by in (1, 2, 3):
            counter.bump(by)
    lines = path.read_bytes().splitlines(keepends=True)
    lines[2] = b'{"seq":2,"ts":1.0,"act GARBAGE\n'
    path.write_bytes(b"".join(lines))
    with serve(path) as server:
        page.goto(server.url)
        page.wait_for_function("() => document.getElementById('status').textContent.includes('line 3 (entry 2')")
        go_to(page, 1)
        assert shown_leaves(page) == {"/value": 1, "/log/0": "bumped by 1"}
        page.eval_on_selector("#seq-slider", "el => { el.value = 3; el.dispatchEvent(new Event('input')); }")
        page.wait_for_function("() => document.getElementById('tree').textContent === 'state 3 cannot be shown'")
        assert page.text_content("#seq-label") == "3" and "line 3 (entry 2" in (page.text_content("#status") or "")
        page.click("#collapse-all")
        assert page.text_content("#tree") == "state 3 cannot be shown"
