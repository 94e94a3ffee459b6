"""Models the replication tests share with their worker processes (imported by both, so one root type)."""

from __future__ import annotations

from mst_llm import ModelNode, action, model


@model
class Tally(ModelNode):
    """A counter, and which token each ``record`` got: a duplicated or lost action shows in ``seen``."""

    count: int = 0
    seen: dict[str, int]
    stamp: float = 0.0

    @action
    def increment(self) -> None:
        self.count += 1

    @action
    def record(self, token: str) -> None:
        if token in self.seen:
            raise ValueError(f"token {token!r} recorded twice")
        self.count += 1
        self.seen[token] = self.count

    @action
    def tick(self, stamp: float) -> None:
        """The benchmark's action: followers measure their lag from the writer's clock (one machine)."""
        self.count += 1
        self.stamp = stamp


@model
class Board(ModelNode):
    """The hypothesis model: every action changes the tree or raises, so each one lands once or is reported."""

    cells: dict[str, int]

    @action
    def put(self, key: str, value: int) -> None:
        self.cells[key] = value

    @action
    def bump(self, key: str) -> None:
        if key not in self.cells:
            raise KeyError(key)
        self.cells[key] += 1

    @action
    def remove(self, key: str) -> None:
        del self.cells[key]
