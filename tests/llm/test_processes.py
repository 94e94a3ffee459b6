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

from mst_llm.llm.locks import LOCK_DIR
from mst_llm.llm.persist import STATE_FILE, write_atomic
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
