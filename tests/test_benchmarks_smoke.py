"""Smoke test: `benchmarks/core.py --quick` runs, exits 0 and prints a complete JSON report.

It checks the shape of the report only, never timings."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "core.py"

WORKLOADS = [
    "1_create_and_read",
    "2_toggle_on_patch",
    "3_toggle_get_snapshot",
    "4_replay_apply_patch",
    "5_apply_snapshot_1pct",
    "6_toggle_done_count",
    "7_toggle_on_snapshot",
    "8_record_and_undo",
]


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def test_quick_benchmark_runs_and_prints_complete_json() -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr}"
    report = json.loads(proc.stdout)

    assert report["errors"] == []
    sizes = report["meta"]["sizes"]
    assert sizes == [1000, 10000]
    assert report["meta"]["k"] == 200

    workloads = report["workloads"]
    assert set(WORKLOADS) | {"9_memory_per_todo"} <= set(workloads)
    for name in WORKLOADS:
        results = workloads[name]["results"]
        for n in sizes:
            result = results[str(n)]
            assert "error" not in result, (name, n, result)
            assert _is_number(result["total_s"]) and result["total_s"] >= 0, (name, n)
            assert _is_number(result["per_unit_us"]) and result["per_unit_us"] >= 0, (name, n)
            assert result["count"] > 0
            if workloads[name]["target_us"] is not None:
                assert isinstance(result["within_target"], bool)
                assert "pass" in result
        if name == "8_record_and_undo":
            for n in sizes:
                for part in ("toggle", "undo"):
                    assert _is_number(results[str(n)][part]["per_unit_us"])

    memory = workloads["9_memory_per_todo"]["results"]
    (mem,) = memory.values()
    assert "error" not in mem, mem
    assert _is_number(mem["bytes_per_todo"])
    assert isinstance(mem["pass"], bool)

    for name in ("2_toggle_on_patch", "3_toggle_get_snapshot", "7_toggle_on_snapshot"):
        assert _is_number(report["ratios"][name]["ratio"])


def test_values_benchmark_runs_and_reports_every_case() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "values.py"), "--n", "20", "--repeat", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\nstderr:\n{proc.stderr}"
    report = json.loads(proc.stdout)
    cases = ["str", "datetime", "Decimal", "StrEnum", "timedelta", "frozen dataclass", "set[str]", "datetime | int"]
    assert list(report) == cases
    for name in cases:
        keys = ["create_from_json_us", "create_from_value_us", "write_us"]
        keys += [] if name == "str" else ["create_ratio", "write_ratio"]
        assert all(_is_number(report[name][key]) and report[name][key] > 0 for key in keys), (name, report[name])
