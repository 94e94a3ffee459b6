"""The store's state file: saves reach the disk in the order of their commits and the last state wins, whatever
the timing of the disk, the debounce interval and the flushes; a failed save is written again."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import anyio
from hypothesis import given, settings
from hypothesis import strategies as st

from mst_llm.llm.persist import STATE_FILE, Saver, read_state


class _Recording(Saver):
    """A Saver whose disk takes the given time per save, recording which snapshot reached it when."""

    def __init__(self, path: Path, interval: float, delays: Iterable[float]) -> None:
        super().__init__(path, interval)
        self.delays = iter(delays)
        self.written: list[int] = []

    def _save(self, snapshot: Mapping[str, Any]) -> Mapping[str, Any] | None:
        time.sleep(next(self.delays, 0.0))
        failed = super()._save(snapshot)
        self.written.append(snapshot["number"])
        return failed


@settings(max_examples=40, deadline=None)
@given(
    interval=st.sampled_from([0.0, 0.002, 10.0]),
    steps=st.lists(st.tuples(st.booleans(), st.floats(0, 0.004), st.booleans()), min_size=1, max_size=12),
)
def test_saves_land_in_commit_order_and_the_last_state_wins(
    interval: float, steps: list[tuple[bool, float, bool]]
) -> None:
    """Commits (each ``changed``), some followed by a ``flush`` or a pause; then a final ``flush`` (``close``)."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / STATE_FILE
        saver = _Recording(path, interval, [delay for _, delay, _ in steps])

        async def main() -> None:
            for number, (flush, _, pause) in enumerate(steps):
                saver.changed({"models": [], "number": number})
                if flush:
                    await saver.flush()
                if pause:
                    await anyio.sleep(0.003)
            await saver.flush()

        anyio.run(main)
        assert saver.written == sorted(set(saver.written)) and saver.written[-1] == len(steps) - 1
        assert read_state(path) == {"models": [], "number": len(steps) - 1}


def test_a_failed_save_is_written_again_by_the_next_flush(tmp_path: Path) -> None:
    blocker = tmp_path / "models"
    blocker.write_text("a file where the models folder should be")
    path = blocker / STATE_FILE
    saver = Saver(path, interval=0)

    async def main() -> bool:
        saver.changed({"models": [], "number": 1})
        await saver.flush()
        failed = not path.exists()
        blocker.unlink()
        blocker.mkdir()
        await saver.flush()
        return failed

    assert anyio.run(main)
    assert read_state(path) == {"models": [], "number": 1}
