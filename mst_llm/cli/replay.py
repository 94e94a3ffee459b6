"""``mst-llm replay``: read a session log written by :func:`mst_llm.record_session`."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import click
from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from mst_llm.cli.common import debug_option, examples
from mst_llm.core.ops.sessions import LogEntry, SessionLog
from mst_llm.devtools.pointer import ABSENT, resolve
from mst_llm.devtools.text import call_text, value_text
from mst_llm.errors import SessionLogError


@click.command(
    epilog=examples(
        "mst-llm replay session.jsonl                 summary: entries, time span, actions by name",
        "mst-llm replay session.jsonl --at 12 --tree  the state after entry 12",
        "mst-llm replay session.jsonl --diff 3 9      the patches that turn state 3 into state 9",
        "mst-llm replay session.jsonl --path /llama/state",
        "mst-llm replay session.jsonl --follow        watch a running app's log",
        "mst-llm replay redis://127.0.0.1:6379/0#app --follow   watch a replicated stream (mst_llm.sync)",
        "mst-llm replay session.jsonl --diff 3 9 --json   the same as JSON, for scripts (every view has --json)",
    )
)
@click.argument("log_path", metavar="LOG")
@click.option("--at", "at", type=int, metavar="SEQ", help="Print the state after entry SEQ (0: initial).")
@click.option("--tree", is_flag=True, help="With --at: show the state as a tree instead of JSON.")
@click.option("--diff", nargs=2, type=int, metavar="A B", help="Print the patches turning state A into B.")
@click.option("--path", "json_path", metavar="POINTER", help="List the entries that changed a JSON pointer.")
@click.option("--follow", is_flag=True, help="Print entries as they are appended to a live log or stream.")
@click.option("--idle-exit", type=float, metavar="SECONDS", help="With --follow: stop after this long idle.")
@click.option(
    "as_json",
    "--json",
    is_flag=True,
    help="Print JSON: the snapshot (--at), the patches (--diff), the entries (--path, and one per line for "
    "--follow), a summary object otherwise.",
)
@debug_option
def replay(
    log_path: str,
    at: int | None,
    tree: bool,
    diff: tuple[int, int] | None,
    json_path: str | None,
    follow: bool,
    idle_exit: float | None,
    as_json: bool,
) -> None:
    """Inspect a session log written by mst_llm.record_session (or a replicated stream, redis://host:port/db#stream):
    summary, states, diffs, history of a path."""
    views = [
        name
        for name, given in (
            ("--at", at is not None),
            ("--diff", diff),
            ("--path", json_path is not None),
            ("--follow", follow),
        )
        if given
    ]
    if len(views) > 1:
        raise click.UsageError(f"{' and '.join(views)} are different views: give one of them")
    for option, needs, given in (("--tree", "--at", tree), ("--idle-exit", "--follow", idle_exit is not None)):
        if given and needs not in views:
            raise click.UsageError(f"{option} goes with {needs}")
    if "://" not in log_path:  # a file (a URL is read by the reader registered for its scheme)
        click.Path(exists=True, dir_okay=False).convert(log_path, None, click.get_current_context())
    with SessionLog.open(log_path) as log:  # (a stream's reader holds a connection and a copy)
        console = Console(soft_wrap=True)
        if log.header is None:  # (the reader opens such a file: an app may be about to write it)
            problem = "it is empty" if not log.truncated else "its first line is incomplete or not JSON"
            if not follow:
                raise SessionLogError(f"{log.name}: no session header yet: {problem} (--follow waits for it)")
            Console(stderr=True).print(Text(f"note: {log.name} has no session header yet; waiting", style="yellow"))
        elif log.truncated:
            note = f"note: ignored a torn last line ({log.truncated_bytes} bytes)"
            Console(stderr=True).print(Text(note, style="yellow"))
        if at is not None:
            snapshot = log.snapshot_at(at)
            if tree and not as_json:
                console.print(_tree(f"state {at}", snapshot), soft_wrap=False)  # (soft wrap crops long values)
            else:
                _echo_json(snapshot)
        elif diff is not None:
            patches = log.diff(*diff)
            _echo_json(patches) if as_json else _print_diff(console, patches, *diff)
        elif json_path is not None:
            rows = _path_history(log, json_path)
            _echo_json(rows) if as_json else _print_path_history(console, rows, json_path)
        elif follow:
            _follow(console, log, idle_exit, as_json)
        else:
            _echo_json(_summary(log)) if as_json else _print_summary(console, log)


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def _entry_json(entry: LogEntry) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "ts": entry.ts,
        "action": entry.action,
        "flow": entry.flow,
        "patches": entry.patches,
        "inverse_patches": entry.inverse_patches,
    }


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


def _summary(log: SessionLog) -> dict[str, Any]:
    """Entries, time span and actions by name: what the summary view prints."""
    names: Counter[str] = Counter()
    first = last = None
    for entry in log:
        names[entry.name or "(no action)"] += 1
        first = entry.ts if first is None else first
        last = entry.ts
    header = {key: value for key, value in (log.header or {}).items() if key != "initial"}
    return {
        "file": log.name,
        "header": header,
        "entries": len(log),
        "first_ts": first,
        "last_ts": last,
        "actions": dict(names.most_common()),
    }


def _print_summary(console: Console, log: SessionLog) -> None:
    summary = _summary(log)
    header = summary["header"]
    console.print(Text(log.name, style="bold"))
    console.print(f"  root type      {header.get('root_type', '?')}")
    console.print(f"  recorded with  mst_llm {header.get('library_version', '?')}, format {header.get('version')}")
    console.print(f"  started        {header.get('started', '?')}")
    if header.get("meta") is not None:
        console.print(Text(f"  meta           {json.dumps(header['meta'], ensure_ascii=False)}"))
    console.print(f"  entries        {len(log)}")
    first, last = summary["first_ts"], summary["last_ts"]
    if first is not None and last is not None:
        console.print(f"  time span      {_when(first)} .. {_when(last)} ({last - first:.3f} s)")
    if summary["actions"]:
        table = Table("action", "count", title="actions by name", title_justify="left")
        for name, count in summary["actions"].items():
            table.add_row(Text(name), str(count))
        console.print(table)


def _print_diff(console: Console, patches: list[dict[str, Any]], a: int, b: int) -> None:
    if not patches:
        console.print(f"no changes from state {a} to state {b}")
        return
    table = Table("op", "path", "value", title=f"from state {a} to state {b}", title_justify="left")
    for patch in patches:
        value = json.dumps(patch["value"], ensure_ascii=False) if "value" in patch else ""
        table.add_row(patch["op"], Text(patch["path"] or '""'), Text(value))
    console.print(table)
    console.print(f"{len(patches)} {'patch' if len(patches) == 1 else 'patches'}")


def _path_history(log: SessionLog, json_path: str) -> list[dict[str, Any]]:
    """The entries that changed ``json_path``, each with the value there before and after it (a key is left
    out where the path did not exist). Those are the entries whose patches touch the path, and those after which
    its value differs: adding or removing an array item moves the items after it, whose paths no patch names."""
    wanted = {entry.seq for entry in log.changes_to(json_path)}
    rows = []
    before = resolve(log.snapshot_at(0), json_path)
    for entry, snapshot in log.states():
        after = resolve(snapshot, json_path)
        if entry.seq in wanted or (after is ABSENT) != (before is ABSENT) or (after is not before and after != before):
            values = {"before": before, "after": after}
            rows.append({**_entry_json(entry), **{key: value for key, value in values.items() if value is not ABSENT}})
        before = after
    return rows


def _print_path_history(console: Console, rows: list[dict[str, Any]], json_path: str) -> None:
    where = json_path or "the root"
    if not rows:
        console.print(Text(f"no entry changed {where}"))
        return
    days = {_when(row["ts"])[:10] for row in rows}
    clock = len(days) == 1  # all on one day: the time of day, which leaves the values more room
    title = f"changes to {where}, times in UTC" + (f" on {days.pop()}" if clock else "")
    cells = [
        [
            str(row["seq"]),
            _when(row["ts"])[11:23] if clock else _when(row["ts"]),
            call_text(row["action"], 60, row["flow"]),
            _shown(row.get("before", ABSENT)),
            _shown(row.get("after", ABSENT)),
        ]
        for row in rows
    ]
    headers = ["seq", "time", "action", "before", "after"]
    widths = [max(cell_len(header), *(cell_len(line[i]) for line in cells)) for i, header in enumerate(headers)]
    # one line per entry; seq and time always whole (rich would squeeze them to nothing to fit long values on a
    # narrow terminal), the values share the rest, shortened (--json has them whole); 16: borders and padding
    cap = _fair_share(widths[2:], console.width - 16 - widths[0] - widths[1])
    table = Table(title=Text(title), title_justify="left")
    table.add_column("seq", no_wrap=True, justify="right", min_width=widths[0])
    table.add_column("time", no_wrap=True, min_width=widths[1])
    for name in headers[2:]:
        table.add_column(name, no_wrap=True, overflow="ellipsis", max_width=cap)
    for line in cells:
        table.add_row(*map(Text, line))
    console.print(table)
    console.print(Text(f"{len(rows)} {'entry' if len(rows) == 1 else 'entries'} changed {where}"))


def _fair_share(widths: list[int], room: int) -> int:
    """The widest a column may be so that columns this wide fit in ``room``: narrow ones keep their width and
    leave the rest to the wide ones (at least 8 each, however narrow the terminal)."""
    for done, width in enumerate(sorted(widths)):
        left = len(widths) - done
        if width * left > room:
            return max(8, room // left)
        room -= width
    return max(widths)


def _shown(value: Any) -> str:
    return "(absent)" if value is ABSENT else value_text(value, 40)


def _follow(console: Console, log: SessionLog, idle_exit: float | None, as_json: bool) -> None:
    """Print the last entries, then each new one; stop when an app starts a new session in the file."""
    printed = max(0, len(log) - 10)
    idle_since = time.monotonic()
    try:
        while True:
            for entry in log.iter_entries(printed + 1):
                if as_json:
                    click.echo(json.dumps(_entry_json(entry), ensure_ascii=False))
                else:
                    call = call_text(entry.action, flow=entry.flow)
                    line = f"{entry.seq:>8}  {_when(entry.ts)}  {call}  ({len(entry.patches)} patches)"
                    console.print(Text(line))
                printed = entry.seq
            _same_session(log)
            try:
                grew = log.refresh()
            except SessionLogError:
                _same_session(log)  # (a new session read from the old one's offset looks corrupt)
                raise
            if grew:
                idle_since = time.monotonic()
            elif idle_exit is not None and time.monotonic() - idle_since >= idle_exit:
                return
            else:
                time.sleep(0.1)
    except KeyboardInterrupt:
        return


def _same_session(log: SessionLog) -> None:
    """Raise if an app started a new session in the followed file (``SessionLog.new_session``)."""
    if log.new_session():
        raise SessionLogError(
            f"{log.name} now holds a new session (an app started recording to it again); run replay again to "
            "follow that one"
        )


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
