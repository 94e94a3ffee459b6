"""``mst-llm replay``: read a session log written by :func:`mst_llm.record_session`."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from mst_llm.cli.common import debug_option, examples
from mst_llm.core.jsonpatch import resolve_pointer
from mst_llm.core.session import LogEntry, SessionLog


@click.command(
    epilog=examples(
        "mst-llm replay session.jsonl                 summary: entries, time span, actions by name",
        "mst-llm replay session.jsonl --at 12 --tree  the state after entry 12",
        "mst-llm replay session.jsonl --diff 3 9      the patches that turn state 3 into state 9",
        "mst-llm replay session.jsonl --path /llama/state",
        "mst-llm replay session.jsonl --follow        watch a running app's log",
    )
)
@click.argument("log_path", metavar="LOG", type=click.Path(exists=True, dir_okay=False))
@click.option("--at", "at", type=int, metavar="SEQ", help="Print the state after entry SEQ (0: initial).")
@click.option("--tree", is_flag=True, help="With --at: show the state as a tree instead of JSON.")
@click.option("--diff", nargs=2, type=int, metavar="A B", help="Print the patches turning state A into B.")
@click.option("--path", "json_path", metavar="POINTER", help="List the entries that changed a JSON pointer.")
@click.option("--follow", is_flag=True, help="Print entries as they are appended to a live log.")
@click.option("--idle-exit", type=float, metavar="SECONDS", help="With --follow: stop after this long idle.")
@debug_option
def replay(
    log_path: str,
    at: int | None,
    tree: bool,
    diff: tuple[int, int] | None,
    json_path: str | None,
    follow: bool,
    idle_exit: float | None,
) -> None:
    """Inspect a session log written by mst_llm.record_session: summary, states, diffs, history of a path."""
    log = SessionLog.open(log_path)
    console = Console(soft_wrap=True)
    if log.truncated:
        note = f"note: ignored a torn last line ({log.truncated_bytes} bytes)"
        Console(stderr=True).print(Text(note, style="yellow"))
    if at is not None:
        snapshot = log.snapshot_at(at)
        if tree:
            console.print(_tree(f"state {at}", snapshot))
        else:
            click.echo(json.dumps(snapshot, indent=2, ensure_ascii=False))
    elif diff is not None:
        _print_diff(console, log.diff(*diff))
    elif json_path is not None:
        _print_path_history(console, log, json_path)
    elif follow:
        _follow(console, log, idle_exit)
    else:
        _print_summary(console, log)


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


def _call(entry: LogEntry) -> str:
    if entry.action is None:
        return "(no action)"
    args = ", ".join(json.dumps(arg, ensure_ascii=False) for arg in entry.action.get("args", []))
    return f"{entry.action.get('path') or ''}.{entry.action['name']}({args})".lstrip(".")


def _print_summary(console: Console, log: SessionLog) -> None:
    header = log.header or {}
    console.print(Text(str(log.path), style="bold"))
    console.print(f"  root type      {header.get('root_type', '?')}")
    console.print(f"  recorded with  mst_llm {header.get('library_version', '?')}, format {header.get('version')}")
    console.print(f"  started        {header.get('started', '?')}")
    if header.get("meta") is not None:
        console.print(Text(f"  meta           {json.dumps(header['meta'], ensure_ascii=False)}"))
    console.print(f"  entries        {len(log)}")
    names: Counter[str] = Counter()
    first = last = None
    for entry in log.iter_entries():
        names[entry.name or "(no action)"] += 1
        first = entry.ts if first is None else first
        last = entry.ts
    if first is not None and last is not None:
        console.print(f"  time span      {_when(first)} .. {_when(last)} ({last - first:.3f} s)")
    if names:
        table = Table("action", "count", title="actions by name", title_justify="left")
        for name, count in names.most_common():
            table.add_row(Text(name), str(count))
        console.print(table)


def _print_diff(console: Console, patches: list[dict[str, Any]]) -> None:
    table = Table("op", "path", "value")
    for patch in patches:
        value = json.dumps(patch["value"], ensure_ascii=False) if "value" in patch else ""
        table.add_row(patch["op"], Text(patch["path"] or '""'), Text(value))
    console.print(table)
    console.print(f"{len(patches)} patches")


def _print_path_history(console: Console, log: SessionLog, json_path: str) -> None:
    wanted = {entry.seq for entry in log.changes_to(json_path)}
    table = Table("seq", "time", "action", "before", "after")
    previous = log.snapshot_at(0)
    for entry, snapshot in log.states():
        if entry.seq in wanted:
            table.add_row(
                str(entry.seq),
                _when(entry.ts),
                Text(_call(entry)),
                Text(_value_at(previous, json_path)),
                Text(_value_at(snapshot, json_path)),
            )
        previous = snapshot
    console.print(table)
    console.print(Text(f"{len(wanted)} entries changed {json_path}"))


def _value_at(snapshot: Any, json_path: str) -> str:
    try:
        return json.dumps(resolve_pointer(snapshot, json_path), ensure_ascii=False)
    except KeyError:
        return "(absent)"


def _follow(console: Console, log: SessionLog, idle_exit: float | None) -> None:
    printed = max(0, len(log) - 10)
    idle_since = time.monotonic()
    try:
        while True:
            for entry in log.iter_entries(printed + 1):
                line = f"{entry.seq:>8}  {_when(entry.ts)}  {_call(entry)}  ({len(entry.patches)} patches)"
                console.print(Text(line))
                printed = entry.seq
            if log.refresh():
                idle_since = time.monotonic()
            elif idle_exit is not None and time.monotonic() - idle_since >= idle_exit:
                return
            else:
                time.sleep(0.1)
    except KeyboardInterrupt:
        return


def _tree(label: str, value: Any) -> Tree:
    node = Tree(label)
    _add_children(node, value)
    return node


def _add_children(node: Tree, value: Any) -> None:
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        label = f"[bold]{escape(str(key))}[/]" if isinstance(value, dict) else f"[dim]{key}[/]"
        if isinstance(item, dict | list) and item:
            _add_children(node.add(label), item)
        else:
            node.add(f"{label}: {escape(json.dumps(item, ensure_ascii=False))}")
