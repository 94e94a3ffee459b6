"""Subclassing a model class that is already in use (its descriptors and generated functions are in place).

A used class holds field descriptors where attrs put its slots, and its generated validate/build/snapshot
functions; a subclass defined afterwards must find the slots and generate its own functions (it once raised
``AssertionError: no slot for field`` or validated and built with the base's fields)."""

from __future__ import annotations

from typing import Any

import pytest

from mst_llm import (
    ValidationError,
    action,
    apply_snapshot,
    get_snapshot,
    model,
    on_patch,
    view,
)
from mst_llm import types as t


def test_a_subclass_of_a_used_model_adds_a_field_and_overrides_a_view_and_an_action() -> None:
    @model
    class Animal:
        name: str
        sound: str = "..."

        @view
        def describe(self) -> str:
            return f"{self.name} says {self.sound}"

        @action
        def speak(self) -> None:
            self.sound = "hello"

        @action
        def rename(self, name: str) -> None:
            self.name = name

    cat = Animal.create({"name": "cat"})  # the base is used: descriptors and generated functions in place
    cat.speak()
    assert cat.describe == "cat says hello"

    @model
    class Dog(Animal):
        tricks: list[str]
        sound: str = "woof"  # a new default for an inherited field

        @view
        def describe(self) -> str:
            return f"{self.name} says {self.sound} and knows {len(self.tricks)} tricks"

        @action
        def speak(self) -> None:
            self.sound = "WOOF"
            self.tricks.append("speak")

    dog = Dog.create({"name": "rex"})
    assert get_snapshot(dog) == {"name": "rex", "sound": "woof", "tricks": []}
    assert dog.describe == "rex says woof and knows 0 tricks"

    cat_patches: list[Any] = []
    dog_patches: list[Any] = []
    on_patch(cat, lambda patch, inverse: cat_patches.append((patch, inverse)))
    on_patch(dog, lambda patch, inverse: dog_patches.append((patch, inverse)))
    # interleaved: each class keeps its own fields, view and action
    dog.speak()
    cat.rename("tom")
    dog.rename("max")
    cat.speak()
    second = Animal.create({"name": "cow", "sound": "moo"})
    assert get_snapshot(cat) == {"name": "tom", "sound": "hello"}
    assert get_snapshot(dog) == {"name": "max", "sound": "WOOF", "tricks": ["speak"]}
    assert get_snapshot(second) == {"name": "cow", "sound": "moo"}
    assert (cat.describe, dog.describe) == ("tom says hello", "max says WOOF and knows 1 tricks")
    assert dog_patches == [
        ({"op": "replace", "path": "/sound", "value": "WOOF"}, {"op": "replace", "path": "/sound", "value": "woof"}),
        ({"op": "add", "path": "/tricks/0", "value": "speak"}, {"op": "remove", "path": "/tricks/0"}),
        ({"op": "replace", "path": "/name", "value": "max"}, {"op": "replace", "path": "/name", "value": "rex"}),
    ]
    assert cat_patches == [
        ({"op": "replace", "path": "/name", "value": "tom"}, {"op": "replace", "path": "/name", "value": "cat"}),
    ]  # speak() wrote the value the field already held: no patch
    # each class validates with its own fields
    with pytest.raises(ValidationError, match="unknown field 'tricks' for Animal"):
        Animal.create({"name": "x", "tricks": []})
    apply_snapshot(dog, {"name": "rex", "tricks": ["sit", "roll"]})
    assert get_snapshot(dog) == {"name": "rex", "sound": "woof", "tricks": ["sit", "roll"]}
    assert isinstance(dog, Animal) and not isinstance(cat, Dog)


def test_a_subclass_first_used_as_a_field_type_builds_its_own_class() -> None:
    """Before its own first ``create``, the subclass is reached through a parent's field: validating and
    building must not fall back on the base's generated functions."""

    @model
    class Base:
        id: t.Identifier
        label: str = ""

    Base.create({"id": "b"})

    @model
    class Extended(Base):
        weight: int = 0

    @model
    class Holder:
        item: Extended
        items: list[Extended]

    holder = Holder.create({"item": {"id": "e", "weight": 3}, "items": [{"id": "f", "weight": 4}]})
    assert type(holder.item) is Extended and type(holder.items[0]) is Extended
    assert (holder.item.weight, holder.items[0].weight) == (3, 4)
    assert get_snapshot(holder) == {
        "item": {"id": "e", "label": "", "weight": 3},
        "items": [{"id": "f", "label": "", "weight": 4}],
    }
    with pytest.raises(ValidationError) as raised:
        Holder.create({"item": {"id": "g", "weight": "heavy"}, "items": [{"id": "h", "colour": "red"}]})
    assert raised.value.errors == [
        ("/item/weight", "expected int, got str 'heavy'"),
        ("/items/0/colour", "unknown field 'colour' for Extended"),
    ]


def test_three_levels_each_used_before_the_next_is_defined() -> None:
    @model
    class One:
        a: int = 1

        @action
        def bump(self) -> None:
            self.a += 1

    One.create().bump()

    @model
    class Two(One):
        b: int = 2

    Two.create().bump()

    @model
    class Three(Two):
        c: int = 3

        @action
        def bump(self) -> None:
            super().bump()
            self.c += 1

    three = Three.create({"b": 5})
    three.bump()
    assert get_snapshot(three) == {"a": 2, "b": 5, "c": 4}
    assert get_snapshot(Two.create()) == {"a": 1, "b": 2}
    assert get_snapshot(One.create({"a": 7})) == {"a": 7}
