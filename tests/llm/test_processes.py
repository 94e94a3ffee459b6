"""Processes sharing one models folder: a model pulled by two at once is downloaded once, and the store's state
file saved by several at once is never torn or missing. Real processes, a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from threading import Barrier

import anyio

from mst_llm.llm import create_llm_store
from mst_llm.llm.locks import LOCK_DIR
from mst_llm.llm.persist import STATE_FILE, read_state, write_atomic
from tests.llm.http_server import Fault, serve

_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}


def _pull(models_dir: Path, catalog: Path, output: Path) -> subprocess.Popen[bytes]:
    """``mst-llm pull tiny`` in a new process, its stdout and stderr going to ``output``.out and .err."""
    command = [sys.executable, "-m", "mst_llm.cli", "pull", "tiny", "--models-dir", str(models_dir)]
    with open(output.with_suffix(".out"), "wb") as out, open(output.with_suffix(".err"), "wb") as err:
        return subprocess.Popen([*command, "--catalog", str(catalog)], stdout=out, stderr=err, env=_ENV)


def _wait_for(condition: Callable[[], bool], *processes: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert all(process.poll() is None for process in processes) and time.monotonic() < deadline
        time.sleep(0.02)


def test_two_processes_pulling_one_model_download_it_once(tmp_path: Path, gguf_bytes: bytes) -> None:
    """The second `mst-llm pull` starts while the first is downloading (the server holds the body after 64 KiB
    until the second says it waits): it then uses the first's file; the server sends the file once, and both
    commands report success."""
    models = tmp_path / "models"
    release = threading.Event()
    with serve() as server:
        url = server.add("tiny.gguf", gguf_bytes)
        server.fault("tiny.gguf", Fault(stall_after=64 << 10, stall_s=60, resume=release))
        entry = {"key": "tiny", "display_name": "Tiny", "filename": "tiny.gguf", "url": url}
        entry |= {"size": len(gguf_bytes), "sha256": hashlib.sha256(gguf_bytes).hexdigest()}
        catalog = tmp_path / "catalog.json"
        catalog.write_text(json.dumps([entry]))
        first = _pull(models, catalog, tmp_path / "first")
        _wait_for(lambda: bool(server.log) and server.log[0].sent > 0, first)
        second = _pull(models, catalog, tmp_path / "second")
        _wait_for(lambda: "waiting for it to finish" in (tmp_path / "second.err").read_text(), first, second)
        release.set()
        codes = [process.wait(timeout=120) for process in (first, second)]
    outputs = {name: (tmp_path / f"{name}.out").read_text() for name in ("first", "second")}
    assert codes == [0, 0], (outputs, (tmp_path / "first.err").read_text(), (tmp_path / "second.err").read_text())
    assert all("tiny installed: " in output for output in outputs.values()), outputs
    assert "another download of" in (tmp_path / "second.err").read_text()
    assert [(entry.status, entry.range) for entry in server.log] == [(200, None)]
    assert server.sent("tiny.gguf") == len(gguf_bytes)
    assert (models / "tiny.gguf").read_bytes() == gguf_bytes
    assert sorted(path.name for path in models.iterdir()) == [LOCK_DIR, STATE_FILE, "tiny.gguf"]
    saved = json.loads((models / STATE_FILE).read_text())
    assert [(model["key"], model["status"]) for model in saved["models"]] == [("tiny", "ready")]


def _save_many(path: str, writer: int, count: int, start: Barrier) -> None:
    """A process saving the state file ``count`` times, each time with a sizeable snapshot."""
    start.wait()
    for number in range(count):
        write_atomic(Path(path), {"models": [], "writer": writer, "number": number, "padding": "x" * 300_000})


def test_state_file_saved_by_several_processes_is_never_torn_or_missing(tmp_path: Path) -> None:
    """Four processes save the state file 30 times each while this one keeps reading it: every read is a whole
    snapshot, the last save of some writer is what stays, and no temp file is left behind."""
    path = tmp_path / STATE_FILE
    write_atomic(path, {"models": [], "writer": -1, "number": -1, "padding": ""})
    context = multiprocessing.get_context("spawn")
    writers_count, count = 4, 30
    start = context.Barrier(writers_count + 1)
    writers = [
        context.Process(target=_save_many, args=(str(path), writer, count, start)) for writer in range(writers_count)
    ]
    for process in writers:
        process.start()
    start.wait(timeout=120)
    seen: set[tuple[int, int]] = set()
    problems: list[str] = []
    while any(process.is_alive() for process in writers):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            problems.append(repr(error))
            continue
        seen.add((data["writer"], data["number"]))
    for process in writers:
        process.join(timeout=60)
    assert [process.exitcode for process in writers] == [0] * writers_count
    assert problems == []
    final = json.loads(path.read_text(encoding="utf-8"))
    assert final["number"] == count - 1 and final["writer"] in range(writers_count)
    assert len({writer for writer, _ in seen}) > 1  # the reads did overlap the writers' saves
    assert sorted(entry.name for entry in tmp_path.iterdir()) == [LOCK_DIR, STATE_FILE]


_CRASHING_SAVE = """
import os, signal, sys
from pathlib import Path
from mst_llm.llm import persist

def die(*_args: object) -> None:  # the power goes out after the fsync, before the rename
    os.kill(os.getpid(), signal.SIGKILL)

persist.os.replace = die
persist.write_atomic(Path(sys.argv[1]), {"models": [], "saved_by": "the crashed process"})
"""

_SLOW_SAVE = """
import os, sys, time
from pathlib import Path
from mst_llm.llm import persist
from mst_llm.llm.locks import holding

path = Path(sys.argv[1])
with holding(path, 10):  # a save in progress, as write_atomic makes it, only slower
    temp = path.with_name(path.name + ".inprogress.tmp")
    temp.write_text('{"models": [], "saved_by": "the slow process"}')
    print("saving", flush=True)
    time.sleep(1)
    os.replace(temp, path)
"""


def test_temp_files_of_crashed_saves_are_removed_when_a_store_starts(tmp_path: Path) -> None:
    """Two processes die in the middle of a save (SIGKILL between the fsync and the rename); a store starting on
    the folder deletes the temp files they left, under the state file's lock, and keeps everything else."""
    path = tmp_path / STATE_FILE
    write_atomic(path, {"models": [], "selected_model_key": None, "saved_by": "a finished save"})
    for _ in range(2):
        crashed = subprocess.run([sys.executable, "-c", _CRASHING_SAVE, str(path)], env=_ENV, check=False)
        assert crashed.returncode == -9
    left = sorted(entry.name for entry in tmp_path.glob(f"{STATE_FILE}.*.tmp"))
    assert len(left) == 2 and all("the crashed process" in (tmp_path / name).read_text() for name in left)
    others = [tmp_path / f"{STATE_FILE}.corrupt-1", tmp_path / "notes.tmp"]
    for other in others:
        other.write_text("not ours")

    async def start() -> None:
        async with create_llm_store(tmp_path, []):
            pass

    anyio.run(start)
    assert sorted(entry.name for entry in tmp_path.iterdir()) == sorted(
        [LOCK_DIR, STATE_FILE, *(other.name for other in others)]
    )
    assert json.loads(path.read_text())["selected_model_key"] is None


def test_the_temp_file_of_a_save_in_progress_is_left_alone(tmp_path: Path) -> None:
    """A store that starts while another process is saving waits for the lock and reads what that save wrote:
    only temp files nobody holds the lock for are removed."""
    path = tmp_path / STATE_FILE
    write_atomic(path, {"models": [], "saved_by": "an earlier save"})
    slow = subprocess.Popen([sys.executable, "-c", _SLOW_SAVE, str(path)], env=_ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert slow.stdout is not None and slow.stdout.readline() == "saving\n"
        state = read_state(path)
    finally:
        assert slow.wait(timeout=60) == 0
    assert state is not None and state["saved_by"] == "the slow process"
    assert sorted(entry.name for entry in tmp_path.iterdir()) == [LOCK_DIR, STATE_FILE]
