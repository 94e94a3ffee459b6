"""Value-type fields vs str fields: create a node from its snapshot and write the field in an action (issue 11:
a value field costs at most 2x a str field; plain JSON fields no slower than before).

Prints JSON: microseconds per operation for each field kind, and the ratio to the str field.
    python benchmarks/values.py [--n 20000] [--repeat 5]

For instruction counts, ``--only CASE --op create|write`` runs just that operation ``--n`` times, untimed; run it
under ``valgrind --tool=callgrind`` with ``--n N`` and ``--n 0`` and divide the difference by N.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import timeit
from collections.abc import Callable
from decimal import Decimal
from enum import StrEnum
from typing import Any

from mst_llm import action, model, on_patch


class Status(StrEnum):
    OPEN = "open"
    DONE = "done"


@model
class StrBox:
    value: str = ""

    @action
    def put(self, value: Any) -> None:
        self.value = value


@model
class DatetimeBox:
    value: dt.datetime | None = None

    @action
    def put(self, value: Any) -> None:
        self.value = value


@model
class DecimalBox:
    value: Decimal = Decimal("0")

    @action
    def put(self, value: Any) -> None:
        self.value = value


@model
class EnumBox:
    value: Status = Status.OPEN

    @action
    def put(self, value: Any) -> None:
        self.value = value


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int


@model
class PointBox:
    value: Point = Point(0, 0)

    @action
    def put(self, value: Any) -> None:
        self.value = value


@model
class TimedeltaBox:
    value: dt.timedelta = dt.timedelta(0)

    @action
    def put(self, value: Any) -> None:
        self.value = value


@model
class SetBox:
    value: set[str] = set()

    @action
    def put(self, value: Any) -> None:
        self.value = value


@model
class UnionBox:
    value: dt.datetime | int = 0

    @action
    def put(self, value: Any) -> None:
        self.value = value


MOMENTS = [dt.datetime(2025, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=i) for i in range(2)]
# (box class, the two values written in turn, the JSON form used for create)
CASES: dict[str, tuple[type, list[Any], Any]] = {
    "str": (StrBox, ["a", "b"], "a"),
    "datetime": (DatetimeBox, MOMENTS, MOMENTS[0].isoformat()),
    "Decimal": (DecimalBox, [Decimal("1.50"), Decimal("2.50")], "1.50"),
    "StrEnum": (EnumBox, [Status.OPEN, Status.DONE], "open"),
    "timedelta": (TimedeltaBox, [dt.timedelta(seconds=1), dt.timedelta(seconds=2)], 1.0),
    "frozen dataclass": (PointBox, [Point(1, 2), Point(3, 4)], {"x": 1, "y": 2}),
    "set[str]": (SetBox, [{"a", "b"}, {"c"}], ["a", "b"]),
    "datetime | int": (UnionBox, MOMENTS, MOMENTS[0].isoformat()),
}


def best(fn: Callable[[], Any], n: int, repeat: int) -> float:
    """Microseconds per call, best of ``repeat`` runs (the least disturbed by other jobs on the machine)."""
    return min(timeit.repeat(fn, number=n, repeat=repeat)) / n * 1e6


def measure(n: int, repeat: int) -> dict[str, dict[str, float]]:
    figures: dict[str, dict[str, float]] = {}
    for name, (cls, values, json_form) in CASES.items():
        snapshot = {"value": json_form}
        node: Any = cls.create(snapshot)
        on_patch(node, lambda patch, inverse: None)
        state = {"i": 0}

        def write(node: Any = node, values: list[Any] = values, state: dict[str, int] = state) -> None:
            state["i"] ^= 1
            node.put(values[state["i"]])

        figures[name] = {
            "create_from_json_us": best(lambda cls=cls, snapshot=snapshot: cls.create(snapshot), n, repeat),
            "create_from_value_us": best(lambda cls=cls, v=values[0]: cls.create({"value": v}), n, repeat),
            "write_us": best(write, n, repeat),
        }
    base = figures["str"]
    for name, row in figures.items():
        if name != "str":
            row["create_ratio"] = round(row["create_from_json_us"] / base["create_from_json_us"], 2)
            row["write_ratio"] = round(row["write_us"] / base["write_us"], 2)
    return {name: {key: round(value, 2) for key, value in row.items()} for name, row in figures.items()}


def run_only(name: str, op: str, n: int) -> None:
    """``n`` creates from the JSON form, or ``n`` writes (with an ``on_patch`` listener), of one case, untimed."""
    cls, values, json_form = CASES[name]
    snapshot = {"value": json_form}
    node: Any = cls.create(snapshot)
    on_patch(node, lambda patch, inverse: None)
    node.put(values[1])
    node.put(values[0])
    for i in range(n):
        if op == "create":
            cls.create(snapshot)
        else:
            node.put(values[i & 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", choices=list(CASES), help="run one case untimed (for callgrind)")
    parser.add_argument("--op", choices=["create", "write"], default="create")
    args = parser.parse_args()
    if args.only is not None:
        run_only(args.only, args.op, args.n)
        return
    print(json.dumps(measure(args.n, args.repeat), indent=2))


if __name__ == "__main__":
    main()
