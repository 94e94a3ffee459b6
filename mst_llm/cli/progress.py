"""Progress views the commands share, drawn from the state tree's patches like any other observer's."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.filesize import decimal
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text

from mst_llm import reaction
from mst_llm.llm.model_info import ModelInfo


def human_bytes(count: int | None) -> str:
    """``253.1 MB``; ``?`` when unknown."""
    return "?" if count is None else decimal(count)


@contextlib.contextmanager
def json_progress(info: ModelInfo, emit: Callable[[dict[str, Any]], None]) -> Iterator[None]:
    """``pull --json``'s progress records, one per forward step of the ModelInfo's ``progress`` (at most ten a
    second): the percentage, and the bytes of the total when the size is known."""

    def report(progress: float, _previous: float) -> None:
        if progress > 0:  # not the reset to 0 when a download starts
            total = info.size
            completed = None if total is None else round(total * progress / 100)
            emit(
                {"status": "downloading", "key": info.key, "percent": progress, "completed": completed, "total": total}
            )

    dispose = reaction(lambda: info.progress, report)
    try:
        yield
    finally:
        dispose()


def _columns(sized: bool) -> tuple[ProgressColumn, ...]:
    """Bytes, speed and ETA when the size is known; otherwise percent and elapsed time."""
    if sized:
        return (DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    return (TaskProgressColumn(), TimeElapsedColumn())


class DownloadView:
    """A download's progress drawn by a reaction to its ModelInfo's ``progress``: a live bar on a terminal, a plain
    line per 10 % elsewhere (logs, pipes, tests)."""

    def __init__(self, console: Console, info: ModelInfo, *, live: bool | None = None) -> None:
        self._console = console
        self._info = info
        self._scale = (info.size or 100) / 100  # a percent in task units: bytes when the size is known
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), *_columns(info.size is not None), console=console
        )
        start = info.resumable_bytes if info.size else 0
        self._task = self._progress.add_task(info.key, total=self._scale * 100, completed=start)
        self._live = console.is_terminal if live is None else live
        self._decile = int(start / self._scale) // 10
        self._dispose: Callable[[], None] | None = None

    def __enter__(self) -> DownloadView:
        if self._live:
            self._progress.start()
        self._dispose = reaction(lambda: self._info.progress, self._on_progress)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._dispose is not None:
            self._dispose()
        if self._live:
            self._progress.stop()

    def _on_progress(self, progress: float, _previous: float) -> None:
        percent = float(progress)
        task = self._progress.tasks[0]
        if percent * self._scale <= task.completed:
            return  # the reset to 0 when a download starts, before a resume reports its offset
        self._progress.update(self._task, completed=percent * self._scale)
        if not self._live and int(percent) // 10 > self._decile:
            self._decile = int(percent) // 10
            self._console.print(Text(self._line(percent)))

    def _line(self, percent: float) -> str:
        task = self._progress.tasks[0]
        line = f"{self._info.key}: {int(percent)}%"
        if self._info.size is not None:
            line += f" ({human_bytes(int(task.completed))} of {human_bytes(self._info.size)}"
            if task.speed:
                line += f", {human_bytes(int(task.speed))}/s, {task.time_remaining or 0:.0f} s left"
            line += ")"
        return line
