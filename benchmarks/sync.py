"""Replicated trees over Redis Streams (mst_llm.sync): contention, a broker killed mid-run, throughput and lag.

Usage:
    python benchmarks/sync.py [--quick]

Starts its own redis-server (Debian's; ``make bench`` installs it) on 127.0.0.1 with AOF and
``appendfsync always`` in a temporary directory, and runs every replica as its own OS process
(tests/sync/sync_worker.py):

1. contention: 4 processes x 500 increments of one counter, all at once; every replica must end at 2,000 and
   equal the stream's replay;
2. fault: 8 replicas, 10,000 actions spread over them, the broker killed (-9) and restarted mid-run; all equal,
   every action exactly once;
3. throughput: one writer and 7 followers on loopback; committed actions/s at the writer (target >= 2,000)
   and follower lag from commit to apply (target p99 <= 50 ms).

Prints one JSON report.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from mst_llm import SessionLog

ROOT = Path(__file__).resolve().parent.parent
WORKER = ROOT / "tests" / "sync" / "sync_worker.py"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.sync.broker import Broker  # noqa: E402  (the same redis-server the tests start)


def spawn(url: str, stream: str, *args: str) -> subprocess.Popen[str]:
    command = [sys.executable, str(WORKER), url, stream, "--timeout", "300", *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_joined(processes: list[subprocess.Popen[str]]) -> None:
    for process in processes:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if line != "joined":
            raise RuntimeError(f"a replica did not join: {line!r} {process.stderr.read() if process.stderr else ''}")


def finish(processes: list[subprocess.Popen[str]]) -> list[dict[str, Any]]:
    results = []
    for process in processes:
        out, err = process.communicate(timeout=600)
        if process.returncode != 0:
            raise RuntimeError(f"a replica failed:\n{err[-3000:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def replay(url: str, stream: str) -> tuple[Any, int]:
    log = SessionLog.open(f"{url}#{stream}")
    return log.snapshot_at(len(log)), len(log)


def contention(broker: Broker, per_process: int) -> dict[str, Any]:
    total = 4 * per_process
    start = str(time.time() + 3)
    args = ["--mode", "increment", "--count", str(per_process), "--until", str(total), "--start-at", start]
    workers = [spawn(broker.url, "contention", *args) for _ in range(4)]
    began = time.perf_counter()
    results = finish(workers)
    replayed, entries = replay(broker.url, "contention")
    return {
        "processes": 4,
        "increments_each": per_process,
        "final_counts": [result["snapshot"]["count"] for result in results],
        "all_equal_replay": all(result["snapshot"] == replayed for result in results),
        "stream_entries": entries,
        "conflicts_reported": sum(len(result["conflicts"]) for result in results),
        "wall_s": round(time.perf_counter() - began - 3, 2),
        "ok": entries == total
        and all(result["snapshot"] == replayed for result in results)
        and replayed["count"] == total,
    }


def fault(broker: Broker, total: int) -> dict[str, Any]:
    per_worker = total // 8
    start = time.time() + 4
    options = ["--until", str(total), "--delay", "0.002", "--start-at", str(start), "--checkpoint-every", "1000"]
    workers = [
        spawn(broker.url, "fault", "--mode", "record", "--prefix", f"w{i}", "--count", str(per_worker), *options)
        for i in range(8)
    ]
    wait_joined(workers)
    time.sleep(max(0.0, start - time.time()) + 2.0)  # mid-run
    with redis.Redis.from_url(broker.url) as client:
        at_kill = client.xlen("fault")
    broker.kill()
    time.sleep(1.0)
    broker.start()
    results = finish(workers)
    replayed, entries = replay(broker.url, "fault")
    tokens = {f"w{i}-{k}" for i in range(8) for k in range(per_worker)}
    return {
        "replicas": 8,
        "actions": total,
        "entries_when_killed": at_kill,
        "stream_entries": entries,
        "all_equal_replay": all(result["snapshot"] == replayed for result in results),
        "every_action_once": set(replayed["seen"]) == tokens
        and sorted(replayed["seen"].values()) == list(range(1, total + 1)),
        "saw_reconnecting": sum("reconnecting" in result["statuses"] for result in results),
        "conflicts_reported": sum(len(result["conflicts"]) for result in results),
    }


def throughput(broker: Broker, actions: int) -> dict[str, Any]:
    followers = [spawn(broker.url, "throughput", "--mode", "follow", "--until", str(actions)) for _ in range(7)]
    wait_joined(followers)
    (writer,) = finish([spawn(broker.url, "throughput", "--mode", "tick", "--count", str(actions))])
    results = finish(followers)
    lags = sorted(lag for result in results for lag in result["lags"])
    p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))] if lags else None
    rate = actions / writer["seconds"]
    return {
        "writer_actions": actions,
        "committed_actions_per_s": round(rate),
        "followers": 7,
        "followers_in_sync": all(result["snapshot"] == writer["snapshot"] for result in results),
        "lag_samples": len(lags),
        "lag_p50_ms": round(statistics.median(lags) * 1000, 2) if lags else None,
        "lag_p99_ms": round(p99 * 1000, 2) if p99 is not None else None,
        "lag_max_ms": round(lags[-1] * 1000, 2) if lags else None,
        "targets": {"actions_per_s": 2000, "lag_p99_ms": 50},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    options = parser.parse_args()
    report: dict[str, Any] = {"meta": {"quick": options.quick, "cpus": os.cpu_count()}}
    with tempfile.TemporaryDirectory() as directory:
        broker = Broker(Path(directory))
        broker.start()
        try:
            report["contention"] = contention(broker, 100 if options.quick else 500)
            report["fault"] = fault(broker, 1600 if options.quick else 10_000)
            report["throughput"] = throughput(broker, 1000 if options.quick else 10_000)
        finally:
            broker.stop()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
