"""Replicated trees over Redis Streams (mst_llm.sync): contention, a broker killed mid-run, throughput and lag.

Usage:
    python benchmarks/sync.py [--quick] [--only contention|fault|throughput ...]

Starts its own redis-server (Debian's; ``make bench`` installs it) on 127.0.0.1 with AOF and
``appendfsync always`` in a temporary directory, and runs every replica as its own OS process
(tests/sync/sync_worker.py):

1. contention: 4 processes x 500 increments of one counter, all at once; every replica must end at 2,000 and
   equal the stream's replay;
2. fault: 8 replicas, 10,000 actions spread over them, the broker killed (-9) once half of them are in the
   stream and restarted; all equal, every action exactly once;
3. throughput: one writer and 7 followers on loopback; committed actions/s at the writer (target >= 2,000)
   and follower lag from commit to apply (target p99 <= 50 ms), once with the writer as fast as it can go and
   once with the writer held to 2,000 actions/s; and the CPU time each process spent per action (the
   wall-clock figures depend on what else the machine runs; these much less).

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
PARTS = ["contention", "fault", "throughput"]
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
    deadline = time.monotonic() + 300
    with redis.Redis.from_url(broker.url) as client:
        while (at_kill := client.xlen("fault")) < total // 2:  # mid-run: half of the actions are in the stream
            if time.monotonic() > deadline:
                raise RuntimeError(f"the replicas wrote only {at_kill} of {total} entries in 300 s")
            time.sleep(0.01)
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
    """The writer as fast as it can go (its committed actions/s, and the followers' lag at that rate: on two
    cores, seven followers that each apply every entry fall behind a writer that gets as much CPU as each of them),
    then the writer held to the target rate of 2,000 actions/s (the followers' lag at the target)."""
    return {
        "flat_out": one_writer(broker, "throughput", actions, rate=0.0),
        "at_2000_per_s": one_writer(broker, "throughput-2000", actions, rate=2000.0),
        "targets": {"actions_per_s": 2000, "lag_p99_ms": 50},
    }


def one_writer(broker: Broker, stream: str, actions: int, rate: float) -> dict[str, Any]:
    followers = [spawn(broker.url, stream, "--mode", "follow", "--until", str(actions)) for _ in range(7)]
    wait_joined(followers)
    before = command_calls(broker)
    (writer,) = finish([spawn(broker.url, stream, "--mode", "tick", "--count", str(actions), "--rate", str(rate))])
    results = finish(followers)
    calls = {name: count - before.get(name, 0) for name, count in command_calls(broker).items()}
    lags = sorted(lag for result in results for lag in result["lags"])
    p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))] if lags else None
    follower_cpu = statistics.median(result["cpu_seconds"] for result in results)
    return {
        "writer_actions": actions,
        "committed_actions_per_s": round(actions / writer["seconds"]),
        "followers": 7,
        "followers_in_sync": all(result["snapshot"] == writer["snapshot"] for result in results),
        "lag_samples": len(lags),
        "lag_p50_ms": round(statistics.median(lags) * 1000, 2) if lags else None,
        "lag_p99_ms": round(p99 * 1000, 2) if p99 is not None else None,
        "lag_max_ms": round(lags[-1] * 1000, 2) if lags else None,
        # CPU time (user + system; the median follower): the machine's other load changes it much less
        "writer_cpu_us_per_action": round(writer["cpu_seconds"] / actions * 1e6, 1),
        "follower_cpu_us_per_entry": round(follower_cpu / actions * 1e6, 1),
        # commands the broker served per action, all eight replicas together (each one a round trip)
        "commands_per_action": {name: round(count / actions, 3) for name, count in sorted(calls.items()) if count},
    }


def command_calls(broker: Broker) -> dict[str, int]:
    """How many times the broker ran each command so far (INFO commandstats)."""
    with broker.client() as client:
        stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(values["calls"]) for name, values in stats.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    parser.add_argument("--only", choices=PARTS, action="append", help="run this part only (repeatable)")
    options = parser.parse_args()
    parts = options.only or PARTS
    report: dict[str, Any] = {"meta": {"quick": options.quick, "cpus": os.cpu_count(), "load": os.getloadavg()}}
    with tempfile.TemporaryDirectory() as directory:
        broker = Broker(Path(directory))
        broker.start()
        try:
            if "contention" in parts:
                report["contention"] = contention(broker, 100 if options.quick else 500)
            if "fault" in parts:
                report["fault"] = fault(broker, 1600 if options.quick else 10_000)
            if "throughput" in parts:
                report["throughput"] = throughput(broker, 1000 if options.quick else 10_000)
        finally:
            broker.stop()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
