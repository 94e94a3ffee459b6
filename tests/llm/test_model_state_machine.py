"""Hypothesis drives LlamaModel (on a fake backend with injected faults) through random call sequences.

Invariants: the state is always legal and every state change is an allowed transition; each state change is
exactly one /state patch (never two in one transaction) and one on_state_change event; an illegal call raises
InvalidTransition and leaves the snapshot object untouched; replaying the recorded patches onto a fresh model
reproduces the final snapshot.
"""

from __future__ import annotations

import itertools
from contextlib import aclosing
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from mst_llm import InvalidTransition, apply_patch, get_snapshot, on_patch, on_snapshot
from mst_llm.llm import TRANSITIONS, InferenceError, LlamaModel
from tests.llm.fake_backend import fake_env

LEGAL_MOVES = {(state, target) for state, events in TRANSITIONS.items() for target in events.values()}


class LlamaModelMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.env = fake_env()
        self.faults = self.env["faults"]
        self.model = LlamaModel.open("fake.gguf", validate=False, env=self.env, progress_updates_per_second=0)
        self.initial = get_snapshot(self.model)
        self.patches: list[dict[str, Any]] = []
        self.state_patches: list[str] = []
        self.events: list[tuple[str, str]] = []
        self.per_transaction: list[int] = []
        self._seen = 0
        on_patch(self.model, self._patch)
        on_snapshot(self.model, self._snapshot)
        self.model.on_state_change.listen(lambda event: self.events.append((event.previous, event.state)))

    def _patch(self, patch: dict[str, Any], inverse: dict[str, Any]) -> None:
        self.patches.append(patch)
        if patch["path"] == "/state":
            self.state_patches.append(patch["value"])

    def _snapshot(self, snapshot: Any) -> None:
        self.per_transaction.append(len(self.state_patches) - self._seen)
        self._seen = len(self.state_patches)

    def _illegal(self, call: Any) -> None:
        before = get_snapshot(self.model)
        with pytest.raises(InvalidTransition) as raised:
            anyio.run(call)
        assert raised.value.state == self.model.state
        assert get_snapshot(self.model) is before

    @rule()
    def initialize(self) -> None:
        if self.model.state in ("idle", "error"):
            anyio.run(self.model.initialize)
            assert self.model.state in ("ready", "error")
            assert (self.model.error is None) == (self.model.state == "ready")
        else:
            self._illegal(self.model.initialize)

    @rule(tokens=st.integers(0, 4))
    def generate(self, tokens: int) -> None:
        async def call() -> None:
            result = await self.model.generate("hi", max_tokens=tokens)
            if result.finish_reason == "error":
                assert self.model.state == "error" and result.error
            else:
                assert result.finish_reason == "length" and result.completion_tokens == tokens
                assert self.model.state == "ready"

        if self.model.state == "ready":
            anyio.run(call)
        else:
            self._illegal(call)

    @rule(take=st.integers(0, 3))
    def stream_and_leave(self, take: int) -> None:
        async def call() -> None:
            taken = 0
            try:
                async with aclosing(self.model.stream("hi", max_tokens=5)) as chunks:
                    async for _chunk in chunks:
                        taken += 1
                        if taken >= take:
                            break
            except InferenceError:  # an injected failure: the stream raises once the model is in 'error'
                assert self.model.state == "error"
            assert self.model.state in ("ready", "error")

        if self.model.state == "ready":
            anyio.run(call)
        else:
            self._illegal(call)

    @rule(at=st.integers(1, 3))
    def generate_then_cancel(self, at: int) -> None:
        async def call() -> None:
            async with anyio.create_task_group() as group:

                def on_progress(event: Any) -> None:
                    if event.tokens_generated == at:
                        group.start_soon(self.model.cancel)

                stop = self.model.on_progress.listen(on_progress)
                result = await self.model.generate("hi", max_tokens=50)
                stop()
            assert result.finish_reason in ("cancelled", "error")
            assert self.model.state in ("ready", "error")

        if self.model.state == "ready":
            anyio.run(call)
        else:
            self._illegal(lambda: self.model.generate("hi", max_tokens=50))

    @rule()
    def cleanup(self) -> None:
        anyio.run(self.model.cleanup)
        assert self.model.state == "released"

    @rule(kind=st.sampled_from(["load_failure", "death_on_load", "fail_at_token", "death_at_token"]))
    def inject_fault(self, kind: str) -> None:
        setattr(self.faults, kind, 1 if kind.endswith("token") else True)

    @invariant()
    def state_is_legal(self) -> None:
        assert self.model.state in TRANSITIONS
        states = [self.initial["state"], *self.state_patches]
        assert all(move in LEGAL_MOVES for move in itertools.pairwise(states))
        assert all(count <= 1 for count in self.per_transaction)
        assert self.events == list(itertools.pairwise(states))

    def teardown(self) -> None:
        replica = LlamaModel.create(self.initial)
        apply_patch(replica, self.patches)
        assert get_snapshot(replica) == get_snapshot(self.model)
        anyio.run(self.model.cleanup)


LlamaModelMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=20, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestLlamaModelStateMachine = LlamaModelMachine.TestCase
