"""Download throughput (with sha256) vs `curl -o` on loopback, progress patch rate, event-loop lateness; prints JSON.

Usage: python benchmarks/download.py [--mib 512] [--rounds 2]

The HTTP server runs in its own process (``tests/llm/http_server.py``), so the downloader and curl face the same
server and neither shares a GIL with it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
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
    best_ours = max(results["ours_mib_s"])
    best_curl = max(results["curl_mib_s"]) if results["curl_mib_s"] else None
    summary = {
        "file_mib": args.mib,
        "rounds": args.rounds,
        "ours_mib_s": [round(value, 1) for value in results["ours_mib_s"]],
        "curl_mib_s": [round(value, 1) for value in results["curl_mib_s"]] if curl else "curl missing",
        "ratio_best": round(best_ours / best_curl, 3) if best_curl else None,
        "ratio_per_round": [
            round(mine / theirs, 3) for mine, theirs in zip(results["ours_mib_s"], results["curl_mib_s"], strict=False)
        ],
        "progress_patches_per_s_max": round(max(results["patches_per_s"]), 2),
        "timer_late_max_ms": round(max(results["late_ms"]), 2),
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
