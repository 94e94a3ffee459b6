"""Stateful property test: the schema's actions plus undo/redo built from recorded patches (api.md 2-4).

Each successful action that changed something is one history entry (its patches and inverse patches, as
delivered to a root on_patch listener). Undo applies the entry's inverse patches in reverse order through
``apply_patch``; redo applies its patches. Both are ordinary transactions, so their own emitted patches go to
the log (and redo's emitted patches become the entry undone next).

Invariants after every step: the live snapshot validates (``Store.create(get_snapshot(store))`` works and is
equal), undo restores the snapshot from before that transaction exactly (checked in the rule), redo restores
the one after it, and replaying the whole patch log onto ``Store.create(initial)`` gives the live snapshot.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from mst_llm import apply_patch, apply_snapshot, get_snapshot, on_patch
from tests.schema import (
    EXPECTED_ERRORS,
    Op,
    Store,
    assert_unchanged,
    capture,
    ops,
    run_op,
    store_snapshots,
)


class Entry(NamedTuple):
    patches: list[Any]
    inverses: list[Any]
    before: Any
    after: Any


class StoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.current: list[tuple[Any, Any]] = []
        self.log: list[Any] = []
        self.undo_stack: list[Entry] = []
        self.redo_stack: list[Entry] = []

    @initialize(initial=store_snapshots())
    def create(self, initial: dict[str, Any]) -> None:
        self.initial = initial
        self.store = Store.create(initial)
        assert get_snapshot(self.store) == initial
        on_patch(self.store, lambda patch, inverse: self.current.append((patch, inverse)))

    def _transaction(self, fn: Any) -> tuple[BaseException | None, Entry]:
        before = get_snapshot(self.store)
        self.current = []
        error: BaseException | None = None
        try:
            fn()
        except EXPECTED_ERRORS as exc:
            error = exc
        delivered, self.current = self.current, []
        entry = Entry([p for p, _ in delivered], [i for _, i in delivered], before, get_snapshot(self.store))
        for patch in entry.patches + entry.inverses:
            assert json.loads(json.dumps(patch)) == patch
        self.log += entry.patches
        return error, entry

    def _record(self, entry: Entry) -> None:
        if entry.patches:
            self.undo_stack.append(entry)
            self.redo_stack.clear()
        else:
            assert entry.after is entry.before

    @rule(op=ops())
    def act(self, op: Op) -> None:
        before = capture(self.store)
        error, entry = self._transaction(lambda: run_op(self.store, op))
        if error is not None:
            assert entry.patches == [], (op, error)
            assert_unchanged(self.store, before)
            return
        self._record(entry)

    @rule(snapshot=store_snapshots())
    def apply_random_snapshot(self, snapshot: dict[str, Any]) -> None:
        error, entry = self._transaction(lambda: apply_snapshot(self.store, snapshot))
        assert error is None
        assert get_snapshot(self.store) == snapshot
        self._record(entry)

    @precondition(lambda self: self.undo_stack)
    @rule()
    def undo(self) -> None:
        entry = self.undo_stack.pop()
        assert get_snapshot(self.store) == entry.after
        error, _ = self._transaction(lambda: apply_patch(self.store, list(reversed(entry.inverses))))
        assert error is None, error
        assert get_snapshot(self.store) == entry.before
        self.redo_stack.append(entry)

    @precondition(lambda self: self.redo_stack)
    @rule()
    def redo(self) -> None:
        entry = self.redo_stack.pop()
        assert get_snapshot(self.store) == entry.before
        error, redone = self._transaction(lambda: apply_patch(self.store, entry.patches))
        assert error is None, error
        assert get_snapshot(self.store) == entry.after
        # undo the redo with what the redo itself emitted
        self.undo_stack.append(redone._replace(before=entry.before, after=entry.after))

    @invariant()
    def snapshot_validates(self) -> None:
        if not hasattr(self, "store"):
            return
        snap = get_snapshot(self.store)
        assert json.loads(json.dumps(snap)) == snap
        assert get_snapshot(Store.create(snap)) == snap

    @invariant()
    def log_replays_to_live_snapshot(self) -> None:
        if not hasattr(self, "store"):
            return
        fresh = Store.create(self.initial)
        apply_patch(fresh, self.log)
        assert get_snapshot(fresh) == get_snapshot(self.store)


StoreMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestStoreMachine = StoreMachine.TestCase
