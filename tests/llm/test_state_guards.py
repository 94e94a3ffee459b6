"""The restore rule as properties: a patch or a snapshot moves ``ModelInfo.status`` and ``LlamaModel.state`` only
along their transition tables, never the state of a live model; one that may not raises InvalidTransition and
changes nothing, also the other fields it would have set."""

from __future__ import annotations

from typing import Any

import anyio
from hypothesis import given, settings
from hypothesis import strategies as st

from mst_llm import InvalidTransition, apply_patch, apply_snapshot, get_snapshot
from mst_llm.llm import TRANSITIONS, LlamaModel, ModelInfo
from mst_llm.llm.model import RUNTIME_STATES
from mst_llm.llm.model_info import TRANSITIONS as STATUS_TRANSITIONS
from tests.llm.fake_backend import fake_env

ENTRY = {"key": "m", "display_name": "M", "filename": "m.gguf", "url": "https://example.invalid/m.gguf"}
MOVES = st.lists(st.tuples(st.sampled_from(sorted(TRANSITIONS)), st.booleans()), max_size=10)


def _set(node: Any, field: str, target: str, other: tuple[str, Any], by_snapshot: bool) -> None:
    """Set ``field`` to ``target`` and another field with it, in one apply_snapshot or one apply_patch."""
    name, value = other
    if by_snapshot:
        apply_snapshot(node, {**get_snapshot(node), name: value, field: target})
    else:
        apply_patch(
            node,
            [
                {"op": "replace", "path": f"/{name}", "value": value},
                {"op": "replace", "path": f"/{field}", "value": target},
            ],
        )


def _check(node: Any, field: str, target: str, by_snapshot: bool, allowed: bool, other: tuple[str, Any]) -> None:
    old, before = getattr(node, field), get_snapshot(node)
    try:
        _set(node, field, target, other, by_snapshot)
    except InvalidTransition as error:
        assert not allowed and (error.state, error.event) == (old, f"set {target}")
        assert get_snapshot(node) == before
    else:
        assert allowed and getattr(node, field) == target and getattr(node, other[0]) == other[1]


@given(moves=st.lists(st.tuples(st.sampled_from(sorted(STATUS_TRANSITIONS)), st.booleans()), max_size=10))
def test_model_info_status_moves_only_along_its_table(moves: list[tuple[str, bool]]) -> None:
    info = ModelInfo.create(ENTRY)
    for number, (target, by_snapshot) in enumerate(moves):
        old = info.status
        allowed = target == old or target in STATUS_TRANSITIONS[old].values()
        _check(info, "status", target, by_snapshot, allowed, ("error", f"move {number}"))


@given(moves=MOVES)
def test_a_model_without_a_runtime_follows_its_table(moves: list[tuple[str, bool]]) -> None:
    """A replica or a restored model: the table's moves, and a leftover runtime state back to idle."""
    llama = LlamaModel.open("fake.gguf", validate=False, env=fake_env())
    for number, (target, by_snapshot) in enumerate(moves):
        old = llama.state
        allowed = target == old or target in TRANSITIONS[old].values() or (target == "idle" and old in RUNTIME_STATES)
        _check(llama, "state", target, by_snapshot, allowed, ("error", f"move {number}"))


@settings(max_examples=30, deadline=None)
@given(moves=MOVES)
def test_only_its_methods_move_a_live_model(moves: list[tuple[str, bool]]) -> None:
    """Time travel cannot pretend a model is loaded, or unloaded: a loaded model refuses every other state, and
    so does a released one (terminal)."""

    async def main() -> None:
        llama = LlamaModel.open("fake.gguf", validate=False, env=fake_env(), progress_updates_per_second=0)
        await llama.initialize()
        for phase in ("ready", "released"):
            assert llama.state == phase
            for number, (target, by_snapshot) in enumerate(moves):
                _check(llama, "state", target, by_snapshot, target == phase, ("error", f"move {number}"))
                assert llama.state == phase
            if phase == "ready":
                assert (await llama.generate("hi", max_tokens=2)).finish_reason == "length"  # still usable
                await llama.cleanup()

    anyio.run(main)
