"""``mst-llm devtools``: the devtools page for a session log, or for the demo while it runs."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import click

from mst_llm.cli.common import debug_option, examples, run_async
from mst_llm.devtools import serve

HEADER_WAIT = 60.0  # seconds the demo may take to write its log's header (it starts by opening the store)


def _start_demo(log_path: Path) -> subprocess.Popen[bytes]:
    """``mst-llm demo --plain`` in a child process recording to ``log_path``; returns once the header is there."""
    child = subprocess.Popen([sys.executable, "-m", "mst_llm.cli", "demo", "--plain", "--session-log", str(log_path)])
    deadline = time.monotonic() + HEADER_WAIT
    while not (log_path.is_file() and b"\n" in log_path.read_bytes()[: 1 << 20]):
        if child.poll() is not None or time.monotonic() > deadline:
            child.terminate()
            raise click.ClickException(f"the demo ended before it wrote its session log (status {child.poll()})")
        time.sleep(0.05)
    return child


@click.command(
    epilog=examples(
        "mst-llm devtools session.jsonl       the page for a log (follows it while it grows)",
        "mst-llm devtools --demo              run the demo and watch its tree live",
        "mst-llm devtools redis://127.0.0.1:6379/0#app   a replicated stream (mst_llm.sync), followed live",
        "mst-llm devtools log.jsonl --port 8765",
    )
)
@click.argument("source", required=False)
@click.option("--demo", is_flag=True, help="Run `mst-llm demo` and show its session while it runs.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (warns if not loopback).")
@click.option("--port", default=0, show_default=True, help="Port to listen on (0: any free port).")
@debug_option
def devtools(source: str | None, demo: bool, host: str, port: int) -> None:
    """Open a session log (a file, or a replicated stream: redis://host:port/db#stream) in the browser devtools:
    state tree, timeline, any past state, diffs, LLM panel.

    Prints the page's URL (it holds the access token) and serves until Ctrl-C.
    """
    if (source is None) == (not demo):
        raise click.UsageError("give a session-log file or --demo (one of them)")
    if source is not None and "://" not in source and not Path(source).is_file():
        raise click.BadParameter(f"no session-log file at {source}", param_hint="SOURCE")
    with tempfile.TemporaryDirectory(prefix="mst_llm-devtools-") as workdir:
        child = None
        if demo:
            demo_log = Path(workdir) / "demo.jsonl"
            child = _start_demo(demo_log)
            source = str(demo_log)
        try:
            with serve(source, host=host, port=port) as server:
                click.echo(f"devtools: {server.url}")
                run_async(anyio.sleep_forever)
        finally:
            if child is not None:
                child.terminate()
                child.wait()
