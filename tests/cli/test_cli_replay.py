"""The ``mst-llm replay`` command."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from mst_llm import SessionLog, action, model, record_session
from mst_llm.cli import main


@model
class Counter:
    value: int = 0
    label: str = ""
    history: list[int]

    @action
    def bump(self, by: int) -> None:
        self.value += by
        self.history.append(self.value)

    @action
    def relabel(self, label: str) -> None:
        self.label = label


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    path = tmp_path / "session.jsonl"
    counter = Counter.create({})
    with record_session(counter, path, meta={"user": "ann"}):
        counter.bump(2)
        counter.relabel("[bold]x")
        counter.bump(-5)
    return path


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_summary(log_path: Path) -> None:
    code, out, _ = invoke("replay", str(log_path))
    assert code == 0
    assert "Counter" in out and "entries        3" in out and "time span" in out
    assert "bump" in out and "relabel" in out and '"user": "ann"' in out


def test_at_prints_json_or_tree(log_path: Path) -> None:
    code, out, _ = invoke("replay", str(log_path), "--at", "2")
    assert code == 0
    assert json.loads(out) == {"value": 2, "label": "[bold]x", "history": [2]}
    code, out, _ = invoke("replay", str(log_path), "--at", "0", "--tree")
    assert code == 0 and "state 0" in out and "value: 0" in out
    code, out, _ = invoke("replay", str(log_path), "--at", "3", "--tree")
    assert "[bold]x" in out and "-3" in out


def test_diff(log_path: Path) -> None:
    code, out, _ = invoke("replay", str(log_path), "--diff", "0", "1")
    assert code == 0
    assert "/value" in out and "/history/0" in out and "2 patches" in out
    code, out, _ = invoke("replay", str(log_path), "--diff", "3", "2")
    assert code == 0 and "remove" in out


def test_path_history(log_path: Path) -> None:
    code, out, _ = invoke("replay", str(log_path), "--path", "/value")
    assert code == 0
    assert "bump(2)" in out and "bump(-5)" in out and "relabel" not in out
    assert "2 entries changed /value" in out
    code, out, _ = invoke("replay", str(log_path), "--path", "/history/1")
    assert "(absent)" in out and "-3" in out


def test_follow_prints_new_entries(tmp_path: Path) -> None:
    path = tmp_path / "live.jsonl"
    counter = Counter.create({})
    recorder = record_session(counter, path)
    counter.bump(1)

    def later() -> None:
        time.sleep(0.3)
        counter.bump(10)
        recorder.close()

    thread = threading.Thread(target=later)
    thread.start()
    code, out, _ = invoke("replay", str(path), "--follow", "--idle-exit", "1")
    thread.join()
    assert code == 0
    assert "bump(1)" in out and "bump(10)" in out


def test_errors_are_one_line_unless_debug(tmp_path: Path, log_path: Path) -> None:
    code, _, err = invoke("replay", str(log_path), "--at", "9")
    assert code == 1 and err.strip().count("\n") == 0 and err.startswith("error: seq 9 is out of range")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"format":"mst_llm.session","version":2}\n')
    code, _, err = invoke("replay", str(bad))
    assert code == 1 and "format version 2 is not supported" in err and "Traceback" not in err
    result = CliRunner().invoke(main, ["--debug", "replay", str(bad)])
    assert result.exit_code == 1 and result.exception is not None
    code, _, err = invoke("replay", str(tmp_path / "missing.jsonl"))
    assert code == 2 and "does not exist" in err


def test_torn_log_is_reported(log_path: Path) -> None:
    log_path.write_bytes(log_path.read_bytes()[:-5])
    code, out, err = invoke("replay", str(log_path))
    assert code == 0 and "torn last line" in err and "entries        2" in out


def test_every_view_prints_json(log_path: Path) -> None:
    log = SessionLog.open(log_path)
    code, out, _ = invoke("replay", str(log_path), "--at", "2", "--json")
    assert code == 0 and json.loads(out) == log.snapshot_at(2)
    code, out, _ = invoke("replay", str(log_path), "--at", "2", "--tree", "--json")
    assert code == 0 and json.loads(out) == log.snapshot_at(2)
    code, out, _ = invoke("replay", str(log_path), "--diff", "3", "0", "--json")
    assert code == 0 and json.loads(out) == log.diff(3, 0)
    code, out, _ = invoke("replay", str(log_path), "--path", "/history/1", "--json")
    rows = json.loads(out)
    assert code == 0 and [row["seq"] for row in rows] == [3]
    assert rows[0]["action"] == {"name": "bump", "path": "", "args": [-5]} and rows[0]["after"] == -3
    assert "before" not in rows[0]  # the path did not exist before entry 3
    code, out, _ = invoke("replay", str(log_path), "--json")
    summary = json.loads(out)
    assert code == 0 and summary["entries"] == 3 and summary["actions"] == {"bump": 2, "relabel": 1}
    assert summary["header"]["meta"] == {"user": "ann"} and "initial" not in summary["header"]
    code, out, _ = invoke("replay", str(log_path), "--follow", "--json", "--idle-exit", "0.2")
    assert code == 0 and [json.loads(line)["seq"] for line in out.splitlines()] == [1, 2, 3]


def test_path_rows_stay_on_one_line(tmp_path: Path) -> None:
    path = tmp_path / "long.jsonl"
    counter = Counter.create({})
    with record_session(counter, path):
        counter.relabel("a long label " * 40)
        counter.relabel("short")
    result = CliRunner().invoke(main, ["replay", str(path), "--path", "/label"], terminal_width=120)
    lines = result.stdout.splitlines()
    rows = [line for line in lines if "relabel(" in line]
    assert result.exit_code == 0 and len(rows) == 2, result.stdout
    assert "…" in rows[0] and '"short"' in rows[1]
    assert "2 entries changed /label" in result.stdout


@pytest.mark.parametrize("columns", ["80", "200"])
def test_path_rows_keep_seq_and_time_on_a_narrow_terminal(tmp_path: Path, columns: str) -> None:
    """Long values are shortened; the seq and the time of each row are never squeezed out (at 80 columns they were)."""
    path = tmp_path / "long.jsonl"
    counter = Counter.create({})
    with record_session(counter, path):
        for n in range(12):
            counter.relabel(f"{n} " + "a long label " * 40)
    result = CliRunner().invoke(main, ["replay", str(path), "--path", "/label"], env={"COLUMNS": columns})
    rows = [line for line in result.stdout.splitlines() if "relabel(" in line]
    assert result.exit_code == 0 and len(rows) == 12, result.stdout
    for seq, row in enumerate(rows, 1):
        cells = [cell.strip() for cell in row.split("│")]
        assert cells[1] == str(seq) and len(cells[2]) == len("18:39:28.776"), row
        assert len(row) <= int(columns) and "…" in row
    assert "changes to /label, times in UTC on " in result.stdout and "12 entries changed /label" in result.stdout


def test_path_that_nothing_changed_says_so(log_path: Path) -> None:
    code, out, _ = invoke("replay", str(log_path), "--path", "/never/there")
    assert code == 0 and out == "no entry changed /never/there\n"
    code, out, _ = invoke("replay", str(log_path), "--path", "")
    assert code == 0 and "3 entries changed the root" in out


def test_a_file_without_a_header_is_an_error_unless_followed(tmp_path: Path) -> None:
    """An empty file (or a torn first line) is no log yet: the views say so instead of a summary of '?'s."""
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    for view in ([], ["--at", "0"], ["--diff", "0", "0"], ["--path", "/value"], ["--json"]):
        code, out, err = invoke("replay", str(empty), *view)
        assert code == 1 and out == "", view
        assert err == f"error: {empty}: no session header yet: it is empty (--follow waits for it)\n", view
    torn = tmp_path / "half.jsonl"
    torn.write_bytes(b'{"format":"mst_')
    code, _, err = invoke("replay", str(torn))
    assert code == 1 and "no session header yet: its first line is incomplete" in err and "torn" not in err

    def record() -> None:
        time.sleep(0.3)
        counter = Counter.create({})
        with record_session(counter, empty):
            counter.bump(7)

    thread = threading.Thread(target=record)
    thread.start()
    code, out, err = invoke("replay", str(empty), "--follow", "--idle-exit", "1")
    thread.join()
    assert code == 0 and "no session header yet; waiting" in err and "bump(7)" in out


def test_options_of_different_views_are_refused(log_path: Path) -> None:
    """`--at 1 --diff 1 2` printed state 1 and dropped the diff without a word; --tree alone was ignored too."""
    for args, message in (
        (["--at", "1", "--diff", "1", "2"], "--at and --diff are different views: give one of them"),
        (["--path", "/value", "--follow"], "--path and --follow are different views"),
        (["--tree"], "--tree goes with --at"),
        (["--diff", "0", "1", "--idle-exit", "1"], "--idle-exit goes with --follow"),
    ):
        code, out, err = invoke("replay", str(log_path), *args)
        assert code == 2 and out == "" and message in err, args


@pytest.mark.parametrize("entries", [1, 6])  # the new session shorter than the old one, and longer
def test_follow_stops_when_an_app_starts_a_new_session_in_the_file(tmp_path: Path, entries: int) -> None:
    """record_session truncates its file: following on from the old session's offset read the middle of the new
    one ('line 4 is not a session-log line: b"}\\n"') or nothing at all."""
    path = tmp_path / "app.jsonl"

    def session(run: str, count: int) -> bytes:
        lines = [SessionLog.header_line("Counter", {"value": 0, "run": run}, {"run": run})]
        for seq in range(1, count + 1):
            patch = [{"op": "replace", "path": "/value", "value": seq}]
            lines.append(SessionLog.entry_line(seq, seq, {"name": f"{run}{seq}", "path": "", "args": []}, patch, patch))
        return b"".join(lines)

    path.write_bytes(session("old", 3))

    def restart() -> None:
        time.sleep(0.4)
        path.write_bytes(session("new", entries))

    thread = threading.Thread(target=restart)
    thread.start()
    code, out, err = invoke("replay", str(path), "--follow", "--idle-exit", "2")
    thread.join()
    assert "old3()" in out and "new" not in out
    assert (
        code == 1
        and err
        == f"error: {path} now holds a new session (an app started recording to it again); "
        "run replay again to follow that one\n"
    )


def test_tree_shows_long_values_whole(tmp_path: Path) -> None:
    """--tree cut a long value at the terminal's edge, with no sign that it was cut."""
    path = tmp_path / "long.jsonl"
    counter = Counter.create({})
    with record_session(counter, path):
        counter.relabel("x" * 150 + "END")
    result = CliRunner().invoke(main, ["replay", str(path), "--at", "1", "--tree"], env={"COLUMNS": "80"})
    unwrapped = re.sub(r"\n[│ ]*", "", result.stdout)  # (wrapped under the tree's guide lines)
    assert result.exit_code == 0 and f'label: "{"x" * 150}END"' in unwrapped, result.stdout
    assert max(map(len, result.stdout.splitlines())) <= 80


@model
class Queue:
    items: list[str]

    @action
    def push(self, item: str) -> None:
        self.items.append(item)

    @action
    def pop_first(self) -> None:
        del self.items[0]


def test_path_history_lists_an_item_moved_by_a_removal_before_it(tmp_path: Path) -> None:
    """Removing items[0] moves items[1] to items[0]: no patch names /items/1, but its value changed there."""
    path = tmp_path / "queue.jsonl"
    queue = Queue.create({})
    with record_session(queue, path):
        for item in ("a", "b", "c"):
            queue.push(item)
        queue.pop_first()
    code, out, _ = invoke("replay", str(path), "--path", "/items/1", "--json")
    rows = [{key: row.get(key) for key in ("seq", "before", "after")} for row in json.loads(out)]
    assert code == 0 and rows == [{"seq": 2, "before": None, "after": "b"}, {"seq": 4, "before": "b", "after": "c"}]
    code, out, _ = invoke("replay", str(path), "--path", "/items/2")
    assert code == 0 and "2 entries changed /items/2" in out and "pop_first()" in out


def test_diff_without_changes_says_so(log_path: Path) -> None:
    """An empty table and '0 patches' read like a failure to find the states."""
    code, out, _ = invoke("replay", str(log_path), "--diff", "2", "2")
    assert code == 0 and out == "no changes from state 2 to state 2\n"
    code, out, _ = invoke("replay", str(log_path), "--diff", "1", "2")
    assert code == 0 and out.startswith("from state 1 to state 2\n") and out.endswith("\n1 patch\n")
