"""Contract section 6: session logs (record_session, SessionLog)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Literal

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mst_llm
from mst_llm import (
    SessionLog,
    SessionLogError,
    action,
    apply_patch,
    flow,
    get_snapshot,
    model,
    on_commit,
    on_patch,
    on_snapshot,
    record_session,
    unprotect,
)
from mst_llm import types as t
from mst_llm.core.base.frozen import FrozenDict
from mst_llm.core.ops import sessions
from tests.schema import EXPECTED_ERRORS, Op, op_sequences, run_op
from tests.schema import Store as SchemaStore


@model
class Task:
    id: t.Identifier
    title: str = ""
    done: bool = False

    @action
    def toggle(self) -> None:
        self.done = not self.done


@model
class Board:
    tasks: list[Task]
    notes: dict[str, str]
    owner: str | None = None

    @action
    def add(self, task_id: str, title: str = "") -> None:
        self.tasks.append({"id": task_id, "title": title})

    @action
    def set_owner(self, owner: str | None) -> None:
        self.owner = owner

    @action
    def note(self, key: str, text: str) -> None:
        self.notes[key] = text

    @action
    def fail(self) -> None:
        self.owner = "nobody"
        raise RuntimeError("boom")

    @action
    def drop(self, index: int) -> None:
        del self.tasks[index]

    @action
    def add_all(self, task_ids: list[str]) -> None:
        self.tasks.extend({"id": task_id} for task_id in task_ids)


def record_board(path: Path, **kwargs: Any) -> tuple[Board, list[Any]]:
    """A board with a few recorded transactions; returns it and the snapshot after each state."""
    board = Board.create({"tasks": [{"id": "a"}]})
    states = [get_snapshot(board)]
    with record_session(board, path, **kwargs):
        on_snapshot(board, states.append)
        board.add("b", "second")
        board.tasks[0].toggle()
        board.set_owner("ann")
        board.note("x/y", "slash key")
        board.set_owner(None)
    return board, states


def test_header_entries_and_states(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    _, states = record_board(path, meta={"app": "demo"})
    log = SessionLog.open(path)
    header = log.header
    assert header is not None
    assert header["format"] == "mst_llm.session" and header["version"] == 1
    assert header["root_type"] == "Board" and header["meta"] == {"app": "demo"}
    assert header["library_version"] == mst_llm.__version__ and header["started"].startswith("20")
    assert header["initial"] == states[0]
    assert len(log) == 5 and not log.truncated
    entries = list(log.entries)
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].action == {"name": "add", "path": "", "args": ["b", "second"]}
    assert entries[1].action == {"name": "toggle", "path": "/tasks/0", "args": []}
    assert entries[1].name == "toggle"
    assert entries[3].patches == [{"op": "add", "path": "/notes/x~1y", "value": "slash key"}]
    assert entries[3].inverse_patches == [{"op": "remove", "path": "/notes/x~1y"}]
    assert all(entries[i].ts <= entries[i + 1].ts for i in range(4))
    assert log.entries[-1] == entries[-1] and log.entries[1:3] == entries[1:3]
    with pytest.raises(IndexError):
        log.entries[5]
    for seq, state in enumerate(states):
        assert log.snapshot_at(seq) == state
    streamed = list(log.states())
    assert [entry.seq for entry, _ in streamed] == [1, 2, 3, 4, 5]
    assert [snap for _, snap in streamed] == states[1:]
    assert isinstance(streamed[0][1], FrozenDict)
    with pytest.raises(TypeError):
        streamed[0][1]["owner"] = "x"
    assert streamed[0][1]["notes"] is streamed[1][1]["notes"]  # structural sharing between states
    with pytest.raises(SessionLogError, match="out of range"):
        log.snapshot_at(6)


def test_failed_actions_write_nothing_and_bare_changes_have_no_action(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    board = Board.create({})
    with record_session(board, path) as recorder:
        with pytest.raises(RuntimeError):
            board.fail()
        unprotect(board)
        board.owner = "bare"
        assert recorder.seq == 1
    log = SessionLog.open(path)
    assert len(log) == 1 and log.entries[0].action is None
    assert log.snapshot_at(1)["owner"] == "bare"


def test_diff_forward_and_backward_apply_to_live_trees(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    _, states = record_board(path)
    log = SessionLog.open(path)
    for a, b in [(0, 5), (5, 0), (1, 4), (4, 2), (3, 3)]:
        board = Board.create(states[a])
        apply_patch(board, log.diff(a, b))
        assert get_snapshot(board) == states[b]
    assert log.diff(2, 3) == log.entries[2].patches


def test_changes_to_path(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    record_board(path)
    log = SessionLog.open(path)
    assert [e.seq for e in log.changes_to("/owner")] == [3, 5]
    assert [e.seq for e in log.changes_to("/tasks")] == [1, 2]
    assert [e.seq for e in log.changes_to("/tasks/0/done")] == [2]
    assert [e.seq for e in log.changes_to("/notes/x~1y")] == [4]
    assert [e.seq for e in log.changes_to("")] == [1, 2, 3, 4, 5]


def test_replay_drives_a_live_tree(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    _, states = record_board(path)
    log = SessionLog.open(path)
    board = Board.create({"owner": "someone else"})
    seen = [get_snapshot(board)]
    on_snapshot(board, seen.append)
    log.replay(board)
    assert get_snapshot(board) == states[-1]
    assert seen[1:] == states  # apply the initial snapshot, then one transaction per entry
    log.replay(board, upto=2)
    assert get_snapshot(board) == states[2]


def test_replay_refuses_another_type(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    record_board(path)
    with pytest.raises(SessionLogError, match="recorded on a Board"):
        SessionLog.open(path).replay(Task.create({"id": "q"}))


@pytest.mark.parametrize("flush", ["line", "batch"])
def test_checkpoints_are_written_and_used(tmp_path: Path, flush: Literal["line", "batch"]) -> None:
    path = tmp_path / "s.jsonl"
    board = Board.create({})
    states = [get_snapshot(board)]
    on_snapshot(board, states.append)
    with record_session(board, path, checkpoint_every=2, flush=flush) as recorder:
        for i in range(40):
            board.note(f"k{i % 3}", "v" * i)  # entries outgrow the small snapshot, so checkpoints happen
            if flush == "batch":
                recorder.flush()  # as the timer does: the checkpoint rule knows the size of the entries it wrote
        recorder.checkpoint()
    kinds = [json.loads(line).keys() for line in path.read_text().splitlines()]
    checkpoints = sum("checkpoint" in keys for keys in kinds)
    assert checkpoints >= 3
    log = SessionLog.open(path)
    assert len(log) == 40
    assert [log.snapshot_at(seq) for seq in range(41)] == states
    assert [snap for _, snap in log.states()] == states[1:]
    assert [snap for _, snap in log.states(start=17, stop=30)] == states[17:31]
    fresh = Board.create({})
    log.replay(fresh)
    assert get_snapshot(fresh) == states[-1]


def test_replay_detects_divergence_at_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    board = Board.create({})
    with record_session(board, path, checkpoint_every=None) as recorder:
        board.set_owner("ann")
        recorder.checkpoint()
    text = path.read_text().replace('"snapshot":{"tasks":[]', '"snapshot":{"tasks":[{"id":"ghost"}]')
    path.write_text(text)
    with pytest.raises(SessionLogError, match=r"diverged .* entry 1"):
        SessionLog.open(path).replay(Board.create({}))


def test_torn_last_line_is_ignored_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    _, states = record_board(path)
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    log = SessionLog.open(path)
    assert log.truncated and log.truncated_bytes > 0
    assert len(log) == 4 and log.snapshot_at(4) == states[4]
    path.write_bytes(data[:-1])  # only the final newline lost: the line is complete
    log = SessionLog.open(path)
    assert not log.truncated and len(log) == 5


def test_live_log_refresh(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    board = Board.create({})
    with record_session(board, path, fsync=True):
        board.set_owner("a")
        log = SessionLog.open(path)
        assert len(log) == 1
        board.set_owner("b")
        board.set_owner("c")
        assert log.refresh() == 2
        assert log.snapshot_at(3)["owner"] == "c"
        assert log.refresh() == 0


def test_stop_ends_recording(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    board = Board.create({})
    recorder = record_session(board, path)
    board.set_owner("a")
    recorder.stop()
    recorder.close()
    assert recorder.closed
    board.set_owner("b")
    assert len(SessionLog.open(path)) == 1


def test_bad_files_give_clear_errors(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    record_board(path)
    lines = path.read_text().splitlines(keepends=True)
    header = json.loads(lines[0])
    header["version"] = 99
    path.write_text(json.dumps(header, separators=(",", ":")) + "\n" + "".join(lines[1:]))
    with pytest.raises(SessionLogError, match="format version 99 is not supported"):
        SessionLog.open(path)
    path.write_text('{"hello": 1}\n')
    with pytest.raises(SessionLogError, match="not an mst_llm session log"):
        SessionLog.open(path)
    path.write_text("".join(lines[:2]) + "garbage\n")
    with pytest.raises(SessionLogError, match=r"line 3 is not a session-log line \(it follows entry 1\)"):
        SessionLog.open(path)
    path.write_text("".join(lines[:2]).replace('"seq":1', '"seq":7'))
    with pytest.raises(SessionLogError, match="numbered"):
        SessionLog.open(path).snapshot_at(1)
    path.write_bytes(b"")
    log = SessionLog.open(path)
    assert len(log) == 0 and log.header is None
    with pytest.raises(SessionLogError, match="no complete header"):
        log.snapshot_at(0)


def test_a_corrupt_line_in_the_middle_is_named_by_line_and_seq(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    board = Board.create({})
    with record_session(board, path, checkpoint_every=None) as recorder:
        for i in range(6):
            board.add(f"t{i}")
            if i == 1:
                recorder.checkpoint()
    lines = path.read_text().splitlines(keepends=True)
    index = next(i for i, line in enumerate(lines) if line.startswith('{"seq":5,'))
    lines[index] = lines[index].replace('"action":', '"action"', 1)
    path.write_text("".join(lines))
    log = SessionLog.open(path)
    assert log.snapshot_at(4)["tasks"][-1]["id"] == "t3"
    expected = rf"line {index + 1} \(entry 5, between entries 4 and 6\) is corrupt: Expecting ':'"
    with pytest.raises(SessionLogError, match=expected):
        log.snapshot_at(6)
    with pytest.raises(SessionLogError, match=expected):
        list(log)


def test_header_versions_are_named(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    record_board(path)
    lines = path.read_text().splitlines(keepends=True)
    header = json.loads(lines[0])
    del header["version"]
    path.write_text(json.dumps(header) + "\n")
    with pytest.raises(
        SessionLogError, match=rf"{path}: session log has no format version \(this mst_llm reads version 1;"
    ):
        SessionLog.open(path)
    header = {"version": 3, **header}  # another key order, spaces: still recognised as a header
    path.write_text(json.dumps(header) + "\n")
    with pytest.raises(SessionLogError, match=r"format version 3 is not supported \(this mst_llm reads version 1"):
        SessionLog.open(path)


def test_a_misnumbered_entry_inside_a_chunk_is_named(tmp_path: Path) -> None:
    """Entries are parsed in chunks; a wrong seq between a chunk's first and last entry was not noticed."""
    path = tmp_path / "s.jsonl"
    board = Board.create({})
    with record_session(board, path, checkpoint_every=None):
        for i in range(5):
            board.add(f"t{i}")
    path.write_text(path.read_text().replace('{"seq":3,', '{"seq":7,', 1))
    log = SessionLog.open(path)
    with pytest.raises(
        SessionLogError, match=r"line 4 \(entry 3, between entries 2 and 4\) is corrupt: it is numbered 7"
    ):
        list(log)


def test_bad_ranges_and_files_are_session_log_errors(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    record_board(path)
    log = SessionLog.open(path)
    for bad in (lambda: list(log.states(1, len(log) + 5)), lambda: list(log.iter_entries(0))):
        with pytest.raises(SessionLogError, match=r"is out of range: this log has states 1\.\."):
            bad()
    assert list(log.iter_entries(3, 2)) == []  # an empty range is empty
    for missing in (tmp_path / "nothing.jsonl", tmp_path):
        with pytest.raises(SessionLogError, match=f"{missing}: cannot read the log: "):
            SessionLog.open(missing)
    path.write_text("hello\n")
    with pytest.raises(SessionLogError, match=f"{path}: not an mst_llm session log"):
        SessionLog.open(path)


def test_new_session_tells_a_file_that_an_app_records_to_again(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.touch()
    log = SessionLog.open(path)
    assert not log.new_session()  # nothing indexed yet: whatever comes is the session
    record_board(path)
    log.refresh()
    assert len(log) == 5 and not log.new_session()
    record_board(path)  # truncates the file and writes a new header (another start time)
    assert log.new_session()
    assert not SessionLog.open(path).new_session()


def test_a_log_iterates_over_its_entries(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    record_board(path)
    log = SessionLog.open(path)
    assert [entry.seq for entry in log] == list(range(1, len(log) + 1))
    assert [entry.name for entry in log] == [entry.name for entry in log.entries]


def test_each_line_reaches_the_file_before_the_action_returns(tmp_path: Path) -> None:
    """flush="line" (the default), no fsync: another reader sees every entry as soon as its action returned."""
    path = tmp_path / "s.jsonl"
    board = Board.create({})
    with record_session(board, path):
        for count in range(1, 6):
            board.add(f"card {count}")
            log = SessionLog.open(path)  # its own file descriptor
            assert len(log) == count and not log.truncated
            assert log.entry(count).ts == pytest.approx(time.time(), abs=5)


def test_batch_flush_writes_within_50_ms_and_on_close(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    board = Board.create({})
    recorder = record_session(board, path, flush="batch")
    started = time.monotonic()
    board.add("a")
    board.add("b")
    written = len(SessionLog.open(path))
    if time.monotonic() - started < sessions.BATCH_INTERVAL:  # (a machine that stalled here proves nothing)
        assert written == 0  # held back, not yet written
    deadline = time.monotonic() + 2
    while len(SessionLog.open(path)) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    log = SessionLog.open(path)
    assert [entry.name for entry in log] == ["add", "add"]
    board.add("c")
    recorder.close()
    assert SessionLog.open(path).snapshot_at(3) == get_snapshot(board)
    with pytest.raises(SessionLogError, match="flush must be 'line' or 'batch', not 'never'"):
        record_session(board, path, flush="never")  # type: ignore[arg-type]
    assert SessionLog.open(path).snapshot_at(3) == get_snapshot(board)  # the log it would have replaced is intact


def test_batch_entries_name_each_call_as_it_was_when_it_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sessions, "BATCH_INTERVAL", 60.0)  # the writer thread writes on close, not before
    path = tmp_path / "s.jsonl"
    board = Board.create({"tasks": [{"id": "a"}, {"id": "b"}]})
    with record_session(board, path, flush="batch", checkpoint_every=None):
        board.tasks[1].toggle()  # plain arguments: the writer thread serialises the call later...
        board.drop(0)  # ...when its node is at /tasks/0
        task_ids = ["c"]
        board.add_all(task_ids)  # a mutable argument: serialised at once...
        task_ids.append("d")  # ...as it was, not as it is by the time the writer thread writes
        assert len(SessionLog.open(path)) == 0  # (all of it still held)
    actions = [entry.action for entry in SessionLog.open(path)]
    assert actions == [
        {"name": "toggle", "path": "/tasks/1", "args": []},
        {"name": "drop", "path": "", "args": [0]},
        {"name": "add_all", "path": "", "args": [["c"]]},
    ]


def test_unserialisable_meta_is_rejected_and_the_file_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text("an earlier log\n")
    with pytest.raises(SessionLogError, match="object is not JSON data and cannot be written to a session log"):
        record_session(Board.create({}), path, meta={"x": object()})
    assert path.read_text() == "an earlier log\n"


# --- the property: replay reproduces every state, also from a log cut at any byte ---------------------------

PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
INITIAL = {
    "todos": [{"id": "t1", "title": "a", "tags": ["x/y"]}, {"id": "t2"}],
    "users": {"u1": {"id": "u1", "address": {}}},
    "settings": {},
}


@PROPS
@given(ops=op_sequences(max_size=15), every=st.sampled_from([1, 2, 1000]), cut=st.floats(0, 1))
def test_replay_reproduces_every_recorded_state(
    tmp_path_factory: pytest.TempPathFactory, ops: list[Op], every: int, cut: float
) -> None:
    path = tmp_path_factory.mktemp("prop") / "s.jsonl"
    store = SchemaStore.create(INITIAL)
    states = [get_snapshot(store)]
    emitted: list[Any] = []
    on_patch(store, lambda patch, inverse: emitted.append(patch))
    with record_session(store, path, checkpoint_every=every) as recorder:
        for op in ops:
            before = len(emitted)
            with contextlib.suppress(*EXPECTED_ERRORS):
                run_op(store, op)
            if len(emitted) > before:  # committed (possibly leaving an equal snapshot, e.g. a no-op move)
                states.append(get_snapshot(store))
            if every == 1:
                recorder.checkpoint()  # force checkpoints even where the size rule would skip them
    log = SessionLog.open(path)
    assert len(log) == len(states) - 1
    assert [json.dumps(s) for _, s in log.states()] == [json.dumps(s) for s in states[1:]]
    assert all(log.snapshot_at(seq) == state for seq, state in enumerate(states))
    replayed = SchemaStore.create(INITIAL)
    seen: list[Any] = []
    on_commit(replayed, lambda commit: seen.append(get_snapshot(replayed)))
    log.replay(replayed)
    assert seen == states[1:]  # one transaction per entry, each reaching the recorded state

    # a process killed mid-write: the file ends anywhere; what is complete still replays exactly
    data = path.read_bytes()
    header_end = data.index(b"\n") + 1
    size = int(header_end + cut * (len(data) - header_end))
    path.write_bytes(data[:size])
    cut_log = SessionLog.open(path)
    complete = size == len(data) or b"\n" in (data[size - 1 : size], data[size : size + 1])
    assert cut_log.truncated == (not complete)
    assert len(cut_log) <= len(log)
    prefix = [s for _, s in cut_log.states()]
    assert prefix == states[1 : len(prefix) + 1]
    fresh = SchemaStore.create(INITIAL)
    cut_log.replay(fresh)
    assert get_snapshot(fresh) == states[len(cut_log)]


_FAILING_DISK = """
import resource, signal, sys, time
from pathlib import Path
from mst_llm import SessionLogError, record_session
from tests.test_session import Board

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
path = Path(sys.argv[1])
board = Board.create({})
recorder = record_session(board, path, flush="batch", checkpoint_every=None)
resource.setrlimit(resource.RLIMIT_FSIZE, (path.stat().st_size + 100, resource.RLIM_INFINITY))
for index in range(50):
    board.add(f"lost-{index}")
time.sleep(0.5)  # the writer thread writes 100 bytes of them and fails on the rest
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
board.add("after")
time.sleep(0.5)
try:
    recorder.close()
except SessionLogError as error:
    print("raised:", error)
"""


def test_batch_write_failures_are_raised_by_close_and_recording_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    done = subprocess.run(
        [sys.executable, "-c", _FAILING_DISK, str(path)], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.startswith(f"raised: {path}: entries held by flush='batch' were not written: ")
    assert "File too large" in done.stdout
    assert b'"args":["after"' in path.read_bytes()  # the writer thread went on after the failure


_EXIT_WITHOUT_CLOSE = """
import sys
from mst_llm import record_session
from tests.test_session import Board

board = Board.create({})
recorder = record_session(board, sys.argv[1], flush="batch")
for index in range(20):
    board.add(f"card {index}")
"""


_FORKED_CHILD_EXITS = (
    _EXIT_WITHOUT_CLOSE
    + """
import os
if os.fork() == 0:
    sys.exit(0)  # a child that ends normally runs the exit handlers it inherited
os.wait()
"""
)


@pytest.mark.parametrize("script", [_EXIT_WITHOUT_CLOSE, _FORKED_CHILD_EXITS], ids=["exit", "forked child exits"])
def test_batch_entries_held_at_exit_are_written_once_without_close(tmp_path: Path, script: str) -> None:
    path = tmp_path / "s.jsonl"
    subprocess.run([sys.executable, "-c", script, str(path)], timeout=60, check=True)
    log = SessionLog.open(path)
    assert [entry.action["args"] for entry in log if entry.action] == [[f"card {index}"] for index in range(20)]
    assert not log.truncated


@PROPS
@given(ops=op_sequences(max_size=15))
def test_batch_writes_the_lines_line_writes(tmp_path_factory: pytest.TempPathFactory, ops: list[Op]) -> None:
    directory = tmp_path_factory.mktemp("both")
    store = SchemaStore.create(INITIAL)
    with (
        record_session(store, directory / "line.jsonl", checkpoint_every=None),
        record_session(store, directory / "batch.jsonl", checkpoint_every=None, flush="batch"),
    ):
        for op in ops:
            with contextlib.suppress(*EXPECTED_ERRORS):
                run_op(store, op)
    line, batch = ((directory / name).read_bytes().splitlines()[1:] for name in ("line.jsonl", "batch.jsonl"))
    assert batch == line  # the same entries, byte for byte (the header's start time aside)


@settings(max_examples=30, deadline=None)
@given(cut=st.integers(0, 400))
def test_any_cut_inside_the_header_opens_empty(tmp_path_factory: pytest.TempPathFactory, cut: int) -> None:
    path = tmp_path_factory.mktemp("hdr") / "s.jsonl"
    board = Board.create({})
    with record_session(board, path):
        board.set_owner("a")
    data = path.read_bytes()
    header_end = data.index(b"\n") + 1
    path.write_bytes(data[: min(cut, header_end - 2)])
    log = SessionLog.open(path)
    assert len(log) == 0 and log.header is None and log.truncated == (min(cut, header_end - 2) > 0)


@model
class Inbox:
    messages: list[str]

    @flow
    async def receive(self, sender: str, count: int) -> None:
        for index in range(count):
            await anyio.sleep(0)
            self.messages.append(f"{sender} {index}")


def test_a_recording_started_during_a_flow_names_its_call_in_every_entry(tmp_path: Path) -> None:
    """Each entry's flow record comes from its own commit: a recorder that missed the first segment still has it."""
    root = Inbox.create({"messages": []})
    recorders: list[Any] = []

    async def scenario() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(root.receive, "ann", 3)
            await anyio.sleep(0)  # the flow's first segment ran and is waiting
            recorders.append(record_session(root, tmp_path / "late.jsonl"))

    anyio.run(scenario)
    recorders[0].close()
    entries = list(SessionLog.open(tmp_path / "late.jsonl"))
    assert entries and all(entry.action is None for entry in entries)
    assert [entry.flow["segment"] for entry in entries if entry.flow] == list(range(5 - len(entries), 5))
    assert all(
        entry.flow is not None and entry.flow["args"] == ["ann", 3] and entry.flow["path"] == "" for entry in entries
    )
    assert {entry.name for entry in entries} == {"receive"}


def test_a_log_file_is_named_by_its_path_and_closes_as_a_context(tmp_path: Path) -> None:
    """``name`` and ``close()`` are what every log has (a stream's reader gives its URL and drops its copy)."""
    path = tmp_path / "s.jsonl"
    record_board(path)
    with SessionLog.open(path) as log:
        assert log.name == str(path) and len(log) == 5
    log.close()  # nothing to release: it still reads
    assert log.refresh() == 0 and len(log) == 5
    path.write_text(path.read_text() + "garbage\n")
    with pytest.raises(SessionLogError) as caught:
        log.refresh()
    assert str(caught.value).startswith(f"{path}: line 7 is not a session-log line")
