"""``mst-llm demo``: the main job, driven as a user runs it (plain output, as in CI logs and pipes)."""

from __future__ import annotations

import json
import runpy
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from mst_llm import SessionLog, get_snapshot
from mst_llm.cli import main
from mst_llm.cli.demo import DemoSession
from tests.llm.gguf_factory import write_tiny_llama
from tests.llm.http_server import serve

ROOT = Path(__file__).resolve().parents[2]


def run_demo(tmp_path: Path, *args: str) -> tuple[str, Path]:
    log = tmp_path / "session.jsonl"
    result = CliRunner().invoke(
        main,
        ["demo", "--models-dir", str(tmp_path / "models"), "--session-log", str(log), "--max-tokens", "8", *args],
    )
    assert result.exit_code == 0, result.output
    return result.output, log


def tiny_catalog(tmp_path: Path, url: str) -> Path:
    entry = {"key": "tiny", "display_name": "Tiny", "filename": "tiny.gguf", "url": url}
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps([entry]))
    return path


def test_demo_installs_over_http_loads_streams_and_records_a_replayable_session(tmp_path: Path) -> None:
    model = write_tiny_llama(tmp_path / "source.gguf").read_bytes()
    with serve() as server:
        catalog = tiny_catalog(tmp_path, server.add("tiny.gguf", model))
        output, log = run_demo(tmp_path, "--model", "tiny", "--catalog", str(catalog), "--prompt", "Hello")
    assert (tmp_path / "models" / "tiny.gguf").read_bytes() == model
    lines = output.splitlines()
    assert any(line.startswith("installing Tiny") for line in lines)
    assert any(line.startswith("tiny: 100%") for line in lines) and "  load 100.0 %" in lines
    assert any(line.startswith("Hello") for line in lines)  # the prompt, then the streamed tokens
    stats = next(line for line in lines if " tokens/s · " in line)  # "8 tokens · 412.3 tokens/s · ... · finish: length"
    generated = int(stats.split()[0])
    assert 0 < generated <= 8 and ("finish: length" in stats) == (generated == 8), stats
    assert f"  mst-llm replay {log}" in lines
    recorded = SessionLog.open(log)
    states = [entry.patches[0]["value"] for entry in recorded.entries if entry.patches[0]["path"] == "/llama/state"]
    assert states[-1] == "released"
    final = recorded.snapshot_at(len(recorded))
    assert final["store"]["models"][0]["status"] == "ready"
    assert final["llama"]["generations"] == 1 and final["prompt"] == "Hello"
    replica = DemoSession.create(recorded.snapshot_at(0))
    recorded.replay(replica)  # the patches alone rebuild the final state
    assert get_snapshot(replica) == final and final["llama"]["tokens_generated"] == generated
    unnamed = [entry.seq for entry in recorded.entries if entry.name is None or entry.name.startswith("_")]
    assert unnamed == []  # every change names its action or flow, in words a user understands
    later = [entry for entry in recorded.entries if entry.action is None]  # flow segments after an await
    assert later and all(entry.flow is not None and entry.flow["segment"] > 1 for entry in later)
    summary = CliRunner().invoke(main, ["replay", str(log)])
    assert summary.exit_code == 0 and "start_model_download" in summary.output
    assert "(no action)" not in summary.output


def test_second_run_finds_the_model_installed(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    write_tiny_llama(tmp_path / "models" / "tiny.gguf")
    catalog = tiny_catalog(tmp_path, "https://example.invalid/tiny.gguf")
    output, _ = run_demo(tmp_path, "--model", "tiny", "--catalog", str(catalog))
    assert "✓ Tiny is installed" in output


def test_unknown_model_is_a_one_line_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["demo", "--models-dir", str(tmp_path), "--model", "nope"])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: unknown model 'nope'")


@pytest.mark.slow
def test_demo_on_the_embedded_gemma_model(tmp_path: Path) -> None:
    """The README's main job, in a child process as `make demo` runs it: no network, real text."""
    log = tmp_path / "session.jsonl"
    command = [sys.executable, "-m", "mst_llm.cli", "demo", "--models-dir", str(tmp_path / "models")]
    command += ["--session-log", str(log), "--max-tokens", "12"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "installed" in done.stdout and "loaded in" in done.stdout
    text = next(line for line in done.stdout.splitlines() if line.startswith("The three most useful"))
    assert len(text.split()) > 12  # the prompt plus real words
    assert SessionLog.open(log).snapshot_at(1) is not None


def test_core_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(ROOT / "examples" / "todos.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "open todos (a cached view): 2" in out
    assert "ValidationError: " in out and "duplicate identifier 'spec'" in out
    # the undo prints the initial state again: one todo, nothing selected
    final = json.loads(out[out.index("\n{") :])
    assert final == {
        "todos": [{"id": "spec", "title": "Write the spec", "done": False, "tags": []}],
        "selected": None,
        "filter": "all",
    }


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_demo_on_a_terminal_shows_live_panels(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    write_tiny_llama(tmp_path / "models" / "tiny.gguf")
    catalog = tiny_catalog(tmp_path, "https://example.invalid/tiny.gguf")
    done = tmp_path / "done"
    command = f"{sys.executable} -m mst_llm.cli demo --model tiny --catalog {catalog}"
    command += f" --models-dir {tmp_path / 'models'} --session-log {tmp_path / 'log.jsonl'} --max-tokens 8"
    command += f"; echo $? > {done}; sleep 30"
    session = f"mst-llm-demo-{tmp_path.name}"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "140", "-y", "50", command], check=True, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)
    assert done.read_text().strip() == "0", screen
    assert "─ completion ─" in screen and "─ patches ─" in screen
    assert "rep /llama/state" in screen and "load ━" in screen
