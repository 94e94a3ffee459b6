"""Download throughput (with sha256) vs `curl -o` on loopback, progress patch rate, event-loop lateness; prints JSON.

Usage: python benchmarks/download.py [--mib 512] [--rounds 5] [--debug-rounds 1]

The HTTP server runs in its own process (``tests/llm/http_server.py``), so the downloader and curl face the same
server and neither shares a GIL with it. Rounds alternate ours and curl; the ratio is reported per round, as the
median and as its spread (min, max), with the load average before and after (a busy machine makes rounds swing).
The debug rounds (not timed) run one more download in asyncio's debug mode with ``slow_callback_duration = 0.02``
and report every callback or task step that held the event loop longer than that.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
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


async def ours_in_debug_mode(url: str, data_size: int, sha: str, directory: Path) -> list[str]:
    """One store download in asyncio debug mode; the event-loop steps that took longer than 20 ms."""
    asyncio.get_running_loop().slow_callback_duration = 0.02
    handler = _SlowCallbacks()
    logger = logging.getLogger("asyncio")
    logger.addHandler(handler)
    try:
        await ours(url, data_size, sha, directory)
    finally:
        logger.removeHandler(handler)
    return [message[:160] + " ... " + message.rsplit(" took ", 1)[-1] for message in handler.messages]


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
            slow: list[str] = []
            for round_ in range(args.debug_rounds):
                target = Path(tmp) / f"debug{round_}"
                slow += anyio.run(ours_in_debug_mode, url, size, sha, target, backend_options={"debug": True})
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
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
