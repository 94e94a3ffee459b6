"""A replica in its own OS process, for the multi-process tests and benchmarks/sync.py.

``sync_worker.py URL STREAM --mode increment|record|tick|follow --count N --until TOTAL [--start-at EPOCH]
[--delay S | --rate N]``:
joins the stream, waits until ``--start-at``, runs its actions, then follows until the tally's count reaches
``--until`` (bounded by ``--timeout``) and prints one JSON line: snapshot, seq, conflicts, statuses, lags, the
seconds its actions took and the CPU seconds it spent after joining.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sync_models import Tally

from mst_llm import get_snapshot, on_patch, on_snapshot, when
from mst_llm.sync import replicate


async def main(options: argparse.Namespace) -> dict[str, Any]:
    tally = Tally.create()
    conflicts: list[dict[str, Any]] = []
    lags: list[float] = []
    statuses: list[str] = []
    async with replicate(
        tally, options.url, options.stream, checkpoint_every=options.checkpoint_every, retain=options.retain
    ) as replica:
        replica.on_conflict(lambda c: conflicts.append({"kind": c.kind, "error": str(c.error)}))
        on_snapshot(replica.state, lambda snapshot: statuses.append(snapshot["status"]))
        if options.mode == "follow":
            on_patch(tally, lambda patch, _inverse: _lag(patch, lags))
        print("joined", flush=True)
        cpu = time.process_time()
        await asyncio.sleep(max(0.0, options.start_at - time.time()))
        started = time.perf_counter()
        for index in range(options.count):
            if options.mode == "increment":
                tally.increment()
            elif options.mode == "record":
                tally.record(f"{options.prefix}-{index}")
            elif options.mode == "tick":
                tally.tick(time.time())
            # --rate: the (index + 1)th action is due at started + (index + 1) / rate; else --delay after each
            due = started + (index + 1) / options.rate - time.perf_counter() if options.rate else options.delay
            await asyncio.sleep(max(0.0, due))
        if options.mode != "follow":
            await replica.sync(timeout=options.timeout)
        produced = time.perf_counter() - started
        with suppress(TimeoutError):  # then the sync below names what is missing
            await when(lambda: tally.count >= options.until, timeout=options.timeout)
        await replica.sync(timeout=options.timeout)
        cpu = time.process_time() - cpu
        return {
            "snapshot": get_snapshot(tally),
            "seq": replica.seq,
            "conflicts": conflicts,
            "statuses": statuses,
            "lags": lags,
            "seconds": produced,
            "cpu_seconds": cpu,  # CPU time (user + system) from joining to the end: steadier than wall time
        }


def _lag(patch: dict[str, Any], lags: list[float]) -> None:
    if patch["path"] == "/stamp":
        lags.append(time.time() - patch["value"])


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("stream")
    parser.add_argument("--mode", choices=["increment", "record", "tick", "follow"], default="increment")
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--until", type=int, default=0)
    parser.add_argument("--prefix", default="w")
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--rate", type=float, default=0.0, help="actions per second (instead of --delay)")
    parser.add_argument("--start-at", type=float, default=0.0)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--checkpoint-every", type=int, default=1000)
    parser.add_argument("--retain", type=int, default=None)
    result = asyncio.run(main(parser.parse_args()))
    print(json.dumps(result), flush=True)
