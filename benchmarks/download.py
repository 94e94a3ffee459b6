"""Download throughput (with sha256) vs `curl -o` on loopback, progress patch rate, event-loop lateness; prints JSON.

Usage: python benchmarks/download.py [--mib 512] [--rounds 5] [--debug-rounds 1]

The HTTP server runs in its own process (``tests/llm/http_server.py``), so the downloader and curl face the same
server and neither shares a GIL with it. Rounds alternate ours and curl; the ratio is reported per round, as the
median and as its spread (min, max), with the load average before and after (a busy machine makes rounds swing).
The debug rounds (not timed) run one more download in asyncio's debug mode with ``slow_callback_duration = 0.02``
and report every callback or task step that held the event loop longer than that, with where its time went (Linux):
the loop thread's CPU time, its wait for a CPU (``/proc/self/task/<tid>/schedstat``), the time the hypervisor took
from the machine (``steal`` in ``/proc/stat``, all vCPUs) and garbage collections. A step whose wall time is mostly
run-queue wait or steal was held up by the machine, not by code on the event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mst_llm import on_patch
from mst_llm.llm.store import create_llm_store
from tests.llm.gguf_factory import write_tiny_llama


@contextmanager
def served(path: Path) -> Iterator[str]:
    """Serve ``path`` from ``tests/llm/http_server.py`` in a separate process; yields its URL."""
    script = Path(__file__).resolve().parent.parent / "tests" / "llm" / "http_server.py"
    process = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        if not url.startswith("http://"):
            raise RuntimeError(f"the benchmark server did not start (printed {url!r})")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


async def ours(url: str, data_size: int, sha: str, directory: Path) -> dict[str, float]:
    """One store download; counts progress patches and the worst lateness of a 10 ms timer."""
    entry = {"key": "big", "display_name": "Big", "filename": "big.gguf", "url": url, "size": data_size, "sha256": sha}
    store = create_llm_store(directory, [entry])
    await store.initialize()
    patches = 0

    def count(patch: dict[str, object], inverse: object) -> None:
        nonlocal patches
        patches += patch["path"] == "/models/0/progress"

    on_patch(store, count)
    worst = 0.0
    done = False

    async def ticker() -> None:
        nonlocal worst
        while not done:
            start = time.perf_counter()
            await anyio.sleep(0.01)
            worst = max(worst, time.perf_counter() - start - 0.01)

    async with anyio.create_task_group() as group:
        group.start_soon(ticker)
        start = time.perf_counter()
        await store.start_model_download("big")
        elapsed = time.perf_counter() - start
        done = True
    assert store.models[0].status == "ready", store.models[0].error
    await store.close()
    return {"seconds": elapsed, "progress_patches_per_s": patches / elapsed, "timer_late_max_ms": worst * 1000}


class _SlowCallbacks(logging.Handler):
    """Collects asyncio debug mode's "Executing <step> took N seconds" warnings."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Executing"):
            self.messages.append(message)


def _read_ms(path: str, pick: Callable[[list[str]], float]) -> float | None:
    """A counter from a /proc file in ms, or None where the file is missing (not Linux)."""
    try:
        with open(path) as file:
            return pick(file.readline().split())
    except OSError:
        return None


_Counters = tuple[float, float, float | None, float | None]  # wall, loop-thread CPU, run-queue wait, steal


class _StepAccounts:
    """Where the time of each event-loop step over the threshold went: the loop thread's CPU time, its wait for a
    CPU, the machine's steal time and garbage collections (wraps ``asyncio.Handle._run`` for the debug rounds)."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.steps: list[dict[str, object]] = []
        self._collections: list[tuple[float, float]] = []  # (start, seconds)
        self._gc_started = 0.0
        self._schedstat = f"/proc/self/task/{threading.get_native_id()}/schedstat"

    def _counters(self) -> _Counters:
        return (
            time.perf_counter(),
            time.thread_time(),
            _read_ms(self._schedstat, lambda fields: int(fields[1]) / 1e6),  # ns waiting on a run queue
            _read_ms("/proc/stat", lambda fields: int(fields[8]) * 10.0),  # steal, in 10 ms ticks
        )

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self._collections.append((self._gc_started, time.perf_counter() - self._gc_started))

    @contextmanager
    def installed(self) -> Iterator[None]:
        original = asyncio.events.Handle._run
        accounts = self

        def run(handle: asyncio.Handle) -> None:
            before = accounts._counters()
            try:
                original(handle)
            finally:
                if time.perf_counter() - before[0] > accounts.threshold:
                    accounts._record(handle, before, accounts._counters())

        asyncio.events.Handle._run = run  # type: ignore[method-assign,assignment]
        gc.callbacks.append(self._on_gc)
        try:
            yield
        finally:
            asyncio.events.Handle._run = original  # type: ignore[method-assign]
            gc.callbacks.remove(self._on_gc)

    def _record(self, handle: asyncio.Handle, before: _Counters, after: _Counters) -> None:
        def delta(index: int) -> float | None:
            start, end = before[index], after[index]
            return None if start is None or end is None else round(end - start, 1)

        wall, cpu, waiting = (after[0] - before[0]) * 1e3, (after[1] - before[1]) * 1e3, delta(2)
        self.steps.append(
            {
                "step": repr(handle)[:160],
                "wall_ms": round(wall, 1),
                "loop_cpu_ms": round(cpu, 1),
                "waiting_for_cpu_ms": waiting,
                # off the CPU for another reason: a blocking call on the loop thread, or waiting for the GIL
                "blocked_or_gil_ms": round(wall - cpu - (waiting or 0.0), 1),
                "machine_steal_ms": delta(3),
                "gc_ms": [round(seconds * 1e3, 1) for start, seconds in self._collections if start >= before[0]],
            }
        )


async def ours_in_debug_mode(url: str, data_size: int, sha: str, directory: Path) -> dict[str, list[object]]:
    """One store download in asyncio debug mode: the steps asyncio reports over 20 ms, and where their time went."""
    asyncio.get_running_loop().slow_callback_duration = 0.02
    handler = _SlowCallbacks()
    logger = logging.getLogger("asyncio")
    logger.addHandler(handler)
    accounts = _StepAccounts(0.02)
    try:
        with accounts.installed():
            await ours(url, data_size, sha, directory)
    finally:
        logger.removeHandler(handler)
    reported = [message[:160] + " ... " + message.rsplit(" took ", 1)[-1] for message in handler.messages]
    return {"reported": list(reported), "accounts": list(accounts.steps)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--debug-rounds", type=int, default=1)
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        head = write_tiny_llama(Path(tmp) / "tiny.gguf").read_bytes()  # a valid header, then random padding
    data = head + os.urandom((args.mib << 20) - len(head))
    sha = hashlib.sha256(data).hexdigest()
    curl = shutil.which("curl")
    results: dict[str, list[float]] = {"ours_mib_s": [], "curl_mib_s": [], "patches_per_s": [], "late_ms": []}
    size = len(data)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "big.gguf"
        with open(source, "wb") as handle:
            handle.write(data)
            os.fsync(handle.fileno())  # no background writeback of the source competes with the rounds
        del data  # the server process reads its own copy
        with served(source) as url:
            for round_ in range(args.rounds):  # alternate ours and curl against the same server process
                target = Path(tmp) / f"r{round_}"
                measured = anyio.run(ours, url, size, sha, target)
                results["ours_mib_s"].append(args.mib / measured["seconds"])
                results["patches_per_s"].append(measured["progress_patches_per_s"])
                results["late_ms"].append(measured["timer_late_max_ms"])
                shutil.rmtree(target)
                if curl:
                    start = time.perf_counter()
                    subprocess.run([curl, "-s", "-o", str(Path(tmp) / "curl.bin"), url], check=True)
                    results["curl_mib_s"].append(args.mib / (time.perf_counter() - start))
                    (Path(tmp) / "curl.bin").unlink()
            slow: list[object] = []
            accounts: list[object] = []
            for round_ in range(args.debug_rounds):
                target = Path(tmp) / f"debug{round_}"
                found = anyio.run(ours_in_debug_mode, url, size, sha, target, backend_options={"debug": True})
                slow += found["reported"]
                accounts += found["accounts"]
                shutil.rmtree(target)
    ratios = [mine / theirs for mine, theirs in zip(results["ours_mib_s"], results["curl_mib_s"], strict=False)]
    summary = {
        "file_mib": args.mib,
        "rounds": args.rounds,
        "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "ours_mib_s": [round(value, 1) for value in results["ours_mib_s"]],
        "curl_mib_s": [round(value, 1) for value in results["curl_mib_s"]] if curl else "curl missing",
        "ratio_per_round": [round(ratio, 3) for ratio in ratios],
        "ratio_median": round(statistics.median(ratios), 3) if ratios else None,
        "ratio_spread_min_max": [round(min(ratios), 3), round(max(ratios), 3)] if ratios else None,
        "progress_patches_per_s_max": round(max(results["patches_per_s"]), 2),
        "timer_late_max_ms": round(max(results["late_ms"]), 2),
        "debug_rounds": args.debug_rounds,
        "slow_callbacks_over_20ms": slow,
        "slow_steps_accounted": accounts,
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
