"""``mst-llm pull hf.co/...``, ``pull --json``, ``ls`` and ``run`` with piped or no prompts, against a fake Hub on
127.0.0.1 and tiny GGUF files (real llama.cpp for ``run``)."""

from __future__ import annotations

import hashlib
import json
import shutil
import traceback
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from mst_llm.cli import main
from tests.cli.test_chat_terminal import Terminal
from tests.cli.test_generate_commands import FAST, STATS, place_model, shown_prompts
from tests.llm.fake_hub import TOKEN, FakeHub
from tests.llm.http_server import Fault

REPO = "tester/Tiny-GGUF"


@pytest.fixture
def repo(hub: FakeHub, gguf_bytes: bytes) -> FakeHub:
    hub.add_repo(REPO, {"tiny-Q8_0.gguf": gguf_bytes, "tiny-Q4_K_M.gguf": gguf_bytes})
    return hub


def invoke(models_dir: Path, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, [*args, "--models-dir", str(models_dir)], input=input)


def test_pull_by_quant_then_ls(repo: FakeHub, tmp_path: Path, gguf_bytes: bytes) -> None:
    result = invoke(tmp_path, "pull", "hf.co/tester/Tiny-GGUF:Q8_0")
    assert result.exit_code == 0, result.output
    path = tmp_path / "tiny-Q8_0.gguf"
    assert result.stdout.splitlines()[-1] == f"tiny-Q8_0 installed: {path} (168.4 kB)"
    assert path.read_bytes() == gguf_bytes

    listed = invoke(tmp_path, "ls")
    assert listed.exit_code == 0, listed.output
    assert listed.stdout.splitlines() == [
        "KEY         SIZE       QUANT   PATH",
        f"tiny-Q8_0   168.4 kB   Q8_0    {path}",
    ]
    rows = json.loads(invoke(tmp_path, "ls", "--json").stdout)
    assert rows == [{"key": "tiny-Q8_0", "size": len(gguf_bytes), "quantization": "Q8_0", "path": str(path)}]

    again = invoke(tmp_path, "pull", "hf.co/tester/Tiny-GGUF:q8_0")
    assert again.exit_code == 0 and again.stdout == f"tiny-Q8_0 is already installed: {path}\n"


def test_ls_with_nothing_downloaded(tmp_path: Path) -> None:
    result = invoke(tmp_path, "ls", "--catalog", str(_empty_catalog(tmp_path)))
    assert result.exit_code == 0 and result.stdout == "KEY   SIZE   QUANT   PATH\n"
    assert "no model is downloaded" in result.stderr


def _empty_catalog(tmp_path: Path) -> Path:
    path = tmp_path / "catalog.json"
    path.write_text("[]")
    return path


def test_pull_by_repository_and_file(repo: FakeHub, tmp_path: Path) -> None:
    result = invoke(tmp_path, "pull", REPO, "tiny-Q4_K_M.gguf")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "tiny-Q4_K_M.gguf").is_file()
    assert repo.requests(REPO) == [f"{REPO}/resolve/main/tiny-Q4_K_M.gguf"]


def test_pull_usage_and_hub_errors_are_one_line(repo: FakeHub, tmp_path: Path) -> None:
    usage = invoke(tmp_path, "pull", "gemma-3-270m", "x.gguf")
    assert usage.exit_code == 2 and "FILE goes with a Hugging Face repository" in usage.stderr
    missing = invoke(tmp_path, "pull", "hf.co/tester/Tiny-GGUF:Q2_K")
    assert missing.exit_code == 1
    assert missing.stderr == ("error: tester/Tiny-GGUF has no Q2_K file; available: quantizations Q4_K_M, Q8_0\n")


def test_pull_json_lines(repo: FakeHub, tmp_path: Path, gguf_bytes: bytes) -> None:
    repo.server.rate = 400_000  # about half a second: several progress records
    result = invoke(tmp_path, "pull", "--json", "hf.co/tester/Tiny-GGUF")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [record["status"] for record in records[:1] + records[-1:]] == ["pulling", "success"]
    progress = records[1:-1]
    assert len(progress) >= 2 and {record["status"] for record in progress} == {"downloading"}
    assert [record["completed"] for record in progress] == sorted(record["completed"] for record in progress)
    assert all(record["total"] == len(gguf_bytes) for record in progress)
    assert progress[-1]["percent"] == 100.0 and progress[-1]["completed"] == len(gguf_bytes)
    final = records[-1]
    assert final["key"] == "tiny-Q4_K_M" and final["already_installed"] is False
    assert final["sha256"] == hashlib.sha256(gguf_bytes).hexdigest() and final["size"] == len(gguf_bytes)
    assert final["path"] == str(tmp_path / "tiny-Q4_K_M.gguf") and final["quantization"] == "Q4_K_M"

    again = invoke(tmp_path, "pull", "--json", "hf.co/tester/Tiny-GGUF")
    assert [json.loads(line)["already_installed"] for line in again.stdout.splitlines()] == [True]

    failed = invoke(tmp_path, "pull", "--json", "hf.co/tester/Missing")
    assert failed.exit_code == 1 and failed.stderr.startswith("error: tester/Missing (revision main) was not found")
    assert [json.loads(line) for line in failed.stdout.splitlines()] == [
        {"status": "error", "error": failed.stderr.removeprefix("error: ").rstrip("\n")}
    ]


def test_the_token_is_sent_but_never_printed(repo: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    ok = invoke(tmp_path, "pull", "--json", "hf.co/tester/Tiny-GGUF:Q8_0", "--debug")
    assert ok.exit_code == 0, ok.output
    assert {entry.authorization for entry in repo.server.log} == {f"Bearer {TOKEN}"}
    repo.server.fault(f"{REPO}/resolve/main/tiny-Q4_K_M.gguf", Fault(status=401))
    denied = invoke(tmp_path, "pull", "hf.co/tester/Tiny-GGUF")
    assert denied.exit_code == 1
    assert "HTTP 401 Unauthorized; the file is gated or private: the token in HF_TOKEN has no access" in denied.stderr
    forbidden_api = f"api/models/{REPO}/tree/main?recursive=true"
    repo.server.fault(forbidden_api, Fault(status=403))
    gated = invoke(tmp_path, "pull", "hf.co/tester/Tiny-GGUF", "--debug")  # a traceback shows no token either
    assert gated.exception is not None
    trace = "".join(traceback.format_exception(gated.exception))
    assert "gated or private" in trace
    for text in (ok.output, denied.output, gated.output, trace):
        assert TOKEN not in text
    assert all(
        TOKEN not in path.read_text(errors="replace")
        for path in tmp_path.iterdir()
        if path.is_file() and not path.name.endswith(".gguf")
    )


def test_offline_pull(repo: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    offline = invoke(tmp_path, "pull", "hf.co/tester/Tiny-GGUF:Q8_0")
    assert offline.exit_code == 1 and offline.stderr.startswith(
        "error: HF_HUB_OFFLINE is set and hf.co/tester/Tiny-GGUF:Q8_0 is not downloaded"
    )
    assert repo.server.log == []
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert invoke(tmp_path, "pull", "hf.co/tester/Tiny-GGUF:Q8_0").exit_code == 0
    requests = len(repo.server.log)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    again = invoke(tmp_path, "pull", "hf.co/tester/Tiny-GGUF:Q8_0")
    assert again.exit_code == 0 and "tiny-Q8_0 is already installed" in again.stdout
    assert len(repo.server.log) == requests


def test_run_reads_the_prompt_from_stdin(tmp_path: Path) -> None:
    store = place_model(tmp_path)
    piped = CliRunner().invoke(main, ["run", *store, *FAST, "--max-tokens", "3", "--show-prompt"], input="The sky\n")
    assert piped.exit_code == 0, piped.stderr
    assert shown_prompts(piped) == ["The sky"] and STATS.search(piped.stderr)
    both = CliRunner().invoke(
        main, ["run", *store, *FAST, "--max-tokens", "3", "--show-prompt", "tiny", "Summarize:"], input="notes\n"
    )
    assert shown_prompts(both) == ["notes\n\nSummarize:"]
    key_only = CliRunner().invoke(
        main, ["run", *store, *FAST, "--max-tokens", "3", "--show-prompt", "tiny"], input="hi"
    )
    assert key_only.exit_code == 0 and shown_prompts(key_only) == ["hi"]
    empty = CliRunner().invoke(main, ["run", *store, *FAST], input="")
    assert empty.exit_code == 2 and "no prompt: stdin was empty" in empty.stderr


def test_run_without_a_prompt_on_a_terminal_opens_a_chat(tmp_path: Path) -> None:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    tty = Terminal(tmp_path, ["run", *place_model(tmp_path), *FAST, "--max-tokens", "3", "--show-prompt", "tiny"])
    try:
        tty.wait_for(r"^Chatting with Tiny \(tiny\)")
        tty.wait_for_prompt(1)
        tty.type("hello")
        tty.keys("Enter")
        tty.wait_for(r'^prompt: "User: hello\\nAssistant:"$')
        tty.wait_for_prompt(2)
        tty.type("/exit")
        tty.keys("Enter")
        tty.wait_for(r"^\[exit 0\]$")
    finally:
        tty.close()


def test_inspect_takes_a_pulled_name_without_its_prefix(repo: FakeHub, tmp_path: Path) -> None:
    """``USER/REPO:QUANT`` names a pulled model for inspect as for rm, not a file of the current folder."""
    assert invoke(tmp_path, "pull", "hf.co/tester/Tiny-GGUF:Q8_0").exit_code == 0
    inspected = invoke(tmp_path, "inspect", "--json", "tester/Tiny-GGUF:Q8_0")
    assert inspected.exit_code == 0, inspected.output
    assert json.loads(inspected.stdout)["path"] == str(tmp_path / "tiny-Q8_0.gguf")
    missing = invoke(tmp_path, "inspect", "tester/Tiny-GGUF:Q4_K_M")
    assert missing.exit_code == 1
    assert missing.stderr == (
        "error: tester/Tiny-GGUF:Q4_K_M is not pulled; `mst-llm pull tester/Tiny-GGUF:Q4_K_M` downloads it\n"
    )


def test_run_select_inspect_and_rm_take_the_name_a_model_was_pulled_by(
    repo: FakeHub, tmp_path: Path, gguf_bytes: bytes
) -> None:
    assert invoke(tmp_path, "pull", "hf.co/tester/Tiny-GGUF:Q8_0").exit_code == 0
    path = tmp_path / "tiny-Q8_0.gguf"
    requests = len(repo.server.log)

    def model_of_run(*words: str, input: str | None = None) -> object:
        result = invoke(tmp_path, "run", "--json", *FAST, "--max-tokens", "2", *words, input=input)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)["model"]

    assert model_of_run("hf.co/tester/Tiny-GGUF:q8_0", "hi") == "tiny-Q8_0"
    assert model_of_run("tester/Tiny-GGUF:Q8_0", input="hi") == "tiny-Q8_0"  # one word naming a pulled model
    prompt = invoke(tmp_path, "run", *FAST, "--max-tokens", "2", "--show-prompt", "and/or", input="")
    assert prompt.exit_code == 0 and shown_prompts(prompt) == ["and/or"]  # a word with a slash is still a prompt

    selected = invoke(tmp_path, "select", "hf.co/tester/Tiny-GGUF:Q8_0")
    assert selected.exit_code == 0 and selected.stdout == f"selected tiny-Q8_0 ({path})\n"
    inspected = invoke(tmp_path, "inspect", "--json", "hf.co/tester/Tiny-GGUF:Q8_0")
    assert inspected.exit_code == 0 and json.loads(inspected.stdout)["path"] == str(path)
    missing = invoke(tmp_path, "rm", "hf.co/tester/Tiny-GGUF")  # Q4_K_M: never pulled
    assert missing.exit_code == 1
    assert (
        missing.stderr
        == "error: hf.co/tester/Tiny-GGUF is not pulled; `mst-llm pull hf.co/tester/Tiny-GGUF` downloads it\n"
    )
    malformed = invoke(tmp_path, "select", "hf.co/tester")
    assert malformed.exit_code == 1 and "is not a Hugging Face repository" in malformed.stderr
    assert len(repo.server.log) == requests  # all of it without the network

    removed = invoke(tmp_path, "rm", "hf.co/tester/Tiny-GGUF:Q8_0")
    assert removed.exit_code == 0 and removed.stdout == f"removed tiny-Q8_0 ({path})\n" and not path.exists()
    gone = invoke(tmp_path, "run", "hf.co/tester/Tiny-GGUF:Q8_0", "hi")
    assert gone.exit_code == 1 and "hf.co/tester/Tiny-GGUF:Q8_0 is not pulled" in gone.stderr
    assert invoke(tmp_path, "pull", "hf.co/tester/Tiny-GGUF:Q8_0").exit_code == 0
    assert path.read_bytes() == gguf_bytes
