"""Field guards: ``@guard`` methods veto a change on every road (action, apply_patch, apply_snapshot)."""

from __future__ import annotations

from typing import Literal

import pytest

from mst_llm import InvalidTransition, action, apply_patch, apply_snapshot, get_snapshot, guard, model, on_patch

NEXT = {"red": "green", "green": "yellow", "yellow": "red"}


@model
class Light:
    color: Literal["red", "green", "yellow"] = "red"
    clicks: int = 0

    @action
    def step(self, to: str) -> None:
        self.clicks += 1
        self.color = to  # type: ignore[assignment]

    @guard("color")
    def _only_next(self, old: str, new: str) -> None:
        if NEXT[old] != new:
            raise InvalidTransition(f"{old} -> {new}", state=old, event=new, allowed=[NEXT[old]])


@model
class Crossing:
    light: Light
    name: str = "main"


def test_a_guard_allows_what_it_allows_on_every_road() -> None:
    light = Light.create()
    light.step("green")
    apply_patch(light, {"op": "replace", "path": "/color", "value": "yellow"})
    apply_snapshot(light, {"color": "red", "clicks": 1})
    assert get_snapshot(light) == {"color": "red", "clicks": 1}


@pytest.mark.parametrize(
    "change",
    [
        lambda light: light.step("yellow"),
        lambda light: apply_patch(
            light,
            [{"op": "replace", "path": "/clicks", "value": 9}, {"op": "replace", "path": "/color", "value": "yellow"}],
        ),
        lambda light: apply_snapshot(light, {"color": "yellow", "clicks": 9}),
    ],
)
def test_a_vetoed_change_raises_and_changes_nothing(change: object) -> None:
    crossing = Crossing.create({"light": {}})
    patches: list[dict[str, object]] = []
    on_patch(crossing, lambda patch, _inverse: patches.append(patch))
    with pytest.raises(InvalidTransition) as raised:
        change(crossing.light)  # type: ignore[operator]
    assert (raised.value.state, raised.value.event, raised.value.allowed) == ("red", "yellow", ("green",))
    assert get_snapshot(crossing) == {"light": {"color": "red", "clicks": 0}, "name": "main"}
    assert patches == []


def test_a_guard_is_not_asked_on_create_nor_for_equal_values() -> None:
    light = Light.create({"color": "yellow"})
    apply_snapshot(light, {"color": "yellow", "clicks": 3})
    assert light.color == "yellow" and light.clicks == 3


def test_subclasses_inherit_the_guard_and_bases_keep_theirs() -> None:
    @model
    class Base:  # a fresh base: subclassing a model class already in use is another matter
        color: Literal["red", "green", "yellow"] = "red"
        clicks: int = 0

        @guard("color")
        def _only_next(self, old: str, new: str) -> None:
            Light._only_next(self, old, new)  # type: ignore[arg-type]

    @model
    class Blinking(Base):
        @guard("clicks")
        def _never_back(self, old: int, new: int) -> None:
            if new < old:
                raise ValueError("clicks only grow")

    blinking = Blinking.create({"clicks": 2})
    with pytest.raises(InvalidTransition):
        apply_patch(blinking, {"op": "replace", "path": "/color", "value": "yellow"})
    with pytest.raises(ValueError, match="only grow"):
        apply_patch(blinking, {"op": "replace", "path": "/clicks", "value": 1})
    base = Base.create({"clicks": 2})
    apply_patch(base, {"op": "replace", "path": "/clicks", "value": 1})
    assert base.clicks == 1


def test_a_guard_naming_an_unknown_field_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="not a field"):

        @model
        class Broken:
            value: int = 0

            @guard("valeu")
            def _check(self, old: int, new: int) -> None: ...
