"""Session logs name what made every change: an action, or a flow with its arguments and segment number."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
from click.testing import CliRunner

from mst_llm import SessionLog, record_session
from mst_llm.cli import main
from tests.llm.test_embedding import ChatApp, app_env, models_dir  # noqa: F401  (the fixture)


def test_every_entry_of_a_flow_names_the_flow(models_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    log_path = tmp_path / "session.jsonl"

    async def scenario() -> None:
        app = ChatApp.create({"store": {}}, env=app_env(models_dir))
        with record_session(app, log_path):
            await app.store.initialize()
            llama = await app.store.load_model("tiny")
            await llama.generate("hi", max_tokens=3)
            await app.store.close()

    anyio.run(scenario)
    log = SessionLog.open(log_path)
    entries = list(log)
    assert entries and all(entry.name is not None for entry in entries)
    later = [entry for entry in entries if entry.action is None]
    assert later, "the flows had segments after an await"
    loads = [entry.flow for entry in later if entry.flow is not None and entry.flow["name"] == "load_model"]
    assert loads and all(flow["args"] == ["tiny"] and flow["path"] == "/store" for flow in loads)
    assert all(flow["segment"] > 1 for flow in loads)
    names = {entry.name for entry in entries}
    assert {"initialize", "load_model", "start_generation", "finish_generation"} <= names
    assert not any(name.startswith("_") for name in names if name)

    result = CliRunner().invoke(main, ["replay", str(log_path), "--json"])
    assert result.exit_code == 0, result.output
    assert "(no action)" not in result.output
    follow = CliRunner().invoke(main, ["replay", str(log_path), "--follow", "--idle-exit", "0"])
    assert '/store.load_model("tiny") [segment' in follow.output and "(no action)" not in follow.output


def test_logs_without_flow_records_stay_readable(tmp_path: Path) -> None:
    path = tmp_path / "old.jsonl"
    header = {"format": "mst_llm.session", "version": 1, "root_type": "X", "initial": {"n": 0}, "ts": 0.0}
    entry = {
        "seq": 1,
        "ts": 1.0,
        "action": None,
        "patches": [{"op": "replace", "path": "/n", "value": 1}],
        "inverse_patches": [{"op": "replace", "path": "/n", "value": 0}],
    }
    path.write_text(json.dumps(header) + "\n" + json.dumps(entry) + "\n")
    log = SessionLog.open(path)
    (only,) = list(log)
    assert only.flow is None and only.name is None and log.snapshot_at(1) == {"n": 1}
