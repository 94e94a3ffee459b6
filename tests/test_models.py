"""Contract section 1 (declaring models) and the related clarifications of section 8.

This module uses ``from __future__ import annotations`` (as in the contract's example), so every
annotation reaches ``@model`` as a string and has to be resolved lazily (forward references).
"""

from __future__ import annotations

import json
from typing import Any, Literal

import attrs
import pytest

import mst_llm
from mst_llm import (
    DeadNodeError,
    InvalidReferenceError,
    MSTError,
    ProtectionError,
    ValidationError,
    action,
    destroy,
    detach,
    get_env,
    get_identifier,
    get_parent,
    get_snapshot,
    get_type,
    is_alive,
    is_root,
    is_state_tree_node,
    model,
    on_patch,
    on_snapshot,
    resolve_identifier,
    unprotect,
    view,
)
from mst_llm import types as t

# --------------------------------------------------------------------------------------------------
# helpers


def error_paths(exc: ValidationError) -> set[str]:
    """The paths named by a ValidationError, normalised to JSON-pointer form ("/a/0/b", "" for root)."""
    out: set[str] = set()
    for path, _message in exc.errors:
        p = str(path)
        out.add("/" + p.lstrip("/") if p.strip("/") else "")
    return out


def create_error(type_: Any, snapshot: Any) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        type_.create(snapshot)
    return info.value


# --------------------------------------------------------------------------------------------------
# models used across the module

Positive = t.refinement(int, lambda v: v > 0, "must be positive")


@model
class Item:
    id: t.Identifier
    name: str = ""
    count: int = 0
    price: float = 0.0
    flag: bool = False
    kind: Literal["a", "b"] = "a"
    note: str | None = None
    tags: list[str]
    attrs: dict[str, int]
    meta: t.Frozen[dict] = None
    qty: Positive = 1
    cache: object = t.volatile(None)

    @action
    def assign(self, name: str, value: Any) -> None:
        setattr(self, name, value)

    @action
    def run(self, fn: Any) -> Any:
        return fn(self)


ITEM_FIELDS = ["id", "name", "count", "price", "flag", "kind", "note", "tags", "attrs", "meta", "qty"]


@model
class Library:
    items: list[Item]
    by_key: dict[str, Item]
    selected: t.Reference[Item] | None = None
    safe: t.SafeReference[Item] | None = None

    @action
    def assign(self, name: str, value: Any) -> None:
        setattr(self, name, value)

    @action
    def run(self, fn: Any) -> Any:
        return fn(self)


@model
class Address:
    city: str = ""
    zip: str = ""


@model
class Person:
    name: str = ""
    home: Address
    work: Address | None = None

    @action
    def assign(self, name: str, value: Any) -> None:
        setattr(self, name, value)


@model
class Circle:
    kind: Literal["circle"]
    radius: float = 1.0


@model
class Square:
    kind: Literal["square"]
    side: float = 1.0


@model
class Canvas:
    # Dog and Fish are declared further down: module-level forward references.
    shapes: list[Circle | Square]
    focus: Circle | Square | None = None
    pet: Dog | Fish | None = None

    @action
    def assign(self, name: str, value: Any) -> None:
        setattr(self, name, value)


@model
class Dog:
    name: str
    barks: bool


@model
class Fish:
    name: str
    fins: int


@model
class TreeNode:
    id: t.Identifier
    children: list[TreeNode]
    favourite: t.Reference[TreeNode] | None = None

    @action
    def add_child(self, snapshot: Any) -> None:
        self.children.append(snapshot)


@model
class Num:
    id: t.IdentifierNumber
    label: str = ""

    @action
    def assign(self, name: str, value: Any) -> None:
        setattr(self, name, value)


@model
class NumBag:
    nums: list[Num]
    pick: t.Reference[Num] | None = None

    @action
    def assign(self, name: str, value: Any) -> None:
        setattr(self, name, value)


@model
class Grid:
    matrix: list[list[int]]
    groups: dict[str, list[str]]
    level: Literal[1, 2, 3] = 1
    blob: t.Frozen[list] = None


def lib_snapshot() -> dict[str, Any]:
    return {
        "items": [{"id": "a", "name": "A"}, {"id": "b", "name": "B"}, {"id": "c", "name": "C"}],
        "by_key": {"k": {"id": "k", "name": "K"}},
    }


# --------------------------------------------------------------------------------------------------
# @model declaration basics


def test_model_class_is_an_attrs_class() -> None:
    assert attrs.has(Item)


def test_create_returns_a_root_state_tree_node() -> None:
    item = Item.create({"id": "a"})
    assert is_state_tree_node(item)
    assert is_root(item)
    assert isinstance(item, Item)


def test_get_type_of_model_node_is_the_model_class() -> None:
    lib = Library.create(lib_snapshot())
    assert get_type(lib) is Library
    assert get_type(lib.items[0]) is Item
    assert get_type(lib.by_key["k"]) is Item


def test_keyword_constructor_equals_create() -> None:
    a = Item(id="a", name="x")
    b = Item.create({"id": "a", "name": "x"})
    assert is_state_tree_node(a)
    assert is_root(a)
    assert get_snapshot(a) == get_snapshot(b)


def test_plain_values_are_not_state_tree_nodes() -> None:
    assert not is_state_tree_node({"id": "a"})
    assert not is_state_tree_node(3)


def test_create_with_all_defaults_needs_no_snapshot() -> None:
    lib = Library.create()
    assert get_snapshot(lib) == {"items": [], "by_key": {}, "selected": None, "safe": None}


def test_create_none_snapshot_is_like_no_snapshot() -> None:
    assert get_snapshot(Library.create(None)) == get_snapshot(Library.create())


def test_create_missing_required_identifier_names_it() -> None:
    err = create_error(Item, {})
    assert "/id" in error_paths(err)


def test_create_with_non_dict_snapshot_raises() -> None:
    with pytest.raises(ValidationError):
        Item.create(5)
    with pytest.raises(ValidationError):
        Item.create(["id", "a"])


def test_validation_error_is_an_mst_error() -> None:
    assert issubclass(ValidationError, MSTError)
    assert issubclass(mst_llm.PatchError, ValidationError)
    assert issubclass(ProtectionError, MSTError)
    assert issubclass(DeadNodeError, MSTError)
    assert issubclass(InvalidReferenceError, MSTError)


def test_validation_error_errors_are_path_message_tuples() -> None:
    err = create_error(Item, {"id": "a", "name": 1})
    assert isinstance(err.errors, list)
    assert err.errors
    for entry in err.errors:
        path, message = entry
        assert isinstance(path, str)
        assert isinstance(message, str)


def test_validation_error_lists_every_bad_path() -> None:
    err = create_error(
        Item,
        {
            "id": "a",
            "name": 1,
            "count": "x",
            "price": "cheap",
            "kind": "zzz",
            "tags": ["ok", 2, 3],
            "attrs": {"good": 1, "bad": "v"},
            "qty": 0,
        },
    )
    paths = error_paths(err)
    for expected in ["/name", "/count", "/price", "/kind", "/tags/1", "/tags/2", "/attrs/bad", "/qty"]:
        assert expected in paths, (expected, paths)
    assert "/tags/0" not in paths
    assert "/attrs/good" not in paths
    assert "/id" not in paths


def test_validation_error_lists_every_bad_nested_path() -> None:
    snap = lib_snapshot()
    snap["items"][0]["count"] = "x"
    snap["items"][2]["flag"] = "yes"
    snap["by_key"]["k"]["name"] = 7
    err = create_error(Library, snap)
    paths = error_paths(err)
    assert {"/items/0/count", "/items/2/flag", "/by_key/k/name"} <= paths, paths


def test_validation_error_message_mentions_bad_field() -> None:
    err = create_error(Item, {"id": "a", "count": "x"})
    assert "count" in str(err)


# --------------------------------------------------------------------------------------------------
# defaults and snapshots


def test_omitted_optional_fields_take_defaults() -> None:
    item = Item.create({"id": "a"})
    assert item.name == ""
    assert item.count == 0
    assert item.price == 0.0
    assert item.flag is False
    assert item.kind == "a"
    assert item.note is None
    assert list(item.tags) == []
    assert dict(item.attrs) == {}
    assert item.meta is None
    assert item.qty == 1
    assert item.cache is None


def test_snapshot_includes_defaults_in_declaration_order() -> None:
    snap = get_snapshot(Item.create({"attrs": {}, "id": "a", "tags": []}))
    assert list(snap) == ITEM_FIELDS
    assert snap == {
        "id": "a",
        "name": "",
        "count": 0,
        "price": 0.0,
        "flag": False,
        "kind": "a",
        "note": None,
        "tags": [],
        "attrs": {},
        "meta": None,
        "qty": 1,
    }


def test_nullable_field_always_appears_in_snapshot() -> None:
    snap = get_snapshot(Item.create({"id": "a"}))
    assert "note" in snap
    assert snap["note"] is None


def test_dict_snapshot_keeps_insertion_order() -> None:
    item = Item.create({"id": "a", "attrs": {"z": 1, "a": 2, "m": 3}})
    assert list(get_snapshot(item)["attrs"]) == ["z", "a", "m"]
    assert list(item.attrs) == ["z", "a", "m"]


def test_snapshot_is_json_serialisable() -> None:
    lib = Library.create(lib_snapshot())
    assert json.loads(json.dumps(get_snapshot(lib))) == get_snapshot(lib)


def test_create_from_snapshot_round_trips() -> None:
    lib = Library.create({**lib_snapshot(), "selected": "b"})
    again = Library.create(get_snapshot(lib))
    assert get_snapshot(again) == get_snapshot(lib)


# --------------------------------------------------------------------------------------------------
# primitives


def test_str_field_accepts_str_rejects_int() -> None:
    assert Item.create({"id": "a", "name": "x"}).name == "x"
    assert "/name" in error_paths(create_error(Item, {"id": "a", "name": 3}))


def test_int_field_rejects_bool() -> None:
    assert "/count" in error_paths(create_error(Item, {"id": "a", "count": True}))
    assert "/count" in error_paths(create_error(Item, {"id": "a", "count": False}))


def test_int_field_rejects_float_and_str() -> None:
    assert "/count" in error_paths(create_error(Item, {"id": "a", "count": 1.5}))
    assert "/count" in error_paths(create_error(Item, {"id": "a", "count": "1"}))


def test_int_field_accepts_int() -> None:
    assert Item.create({"id": "a", "count": 42}).count == 42


def test_float_field_accepts_int() -> None:
    item = Item.create({"id": "a", "price": 3})
    assert item.price == 3
    assert get_snapshot(item)["price"] == 3


def test_float_field_accepts_float_rejects_str() -> None:
    assert Item.create({"id": "a", "price": 2.5}).price == 2.5
    assert "/price" in error_paths(create_error(Item, {"id": "a", "price": "2.5"}))


def test_bool_field_accepts_bool_rejects_int_and_str() -> None:
    assert Item.create({"id": "a", "flag": True}).flag is True
    assert "/flag" in error_paths(create_error(Item, {"id": "a", "flag": 1}))
    assert "/flag" in error_paths(create_error(Item, {"id": "a", "flag": "true"}))


def test_literal_field_accepts_members_only() -> None:
    assert Item.create({"id": "a", "kind": "b"}).kind == "b"
    assert "/kind" in error_paths(create_error(Item, {"id": "a", "kind": "c"}))


def test_nullable_field_accepts_none_and_value_rejects_other_type() -> None:
    assert Item.create({"id": "a", "note": None}).note is None
    assert Item.create({"id": "a", "note": "hi"}).note == "hi"
    assert "/note" in error_paths(create_error(Item, {"id": "a", "note": 5}))


def test_nullable_field_can_be_set_and_cleared() -> None:
    item = Item.create({"id": "a"})
    item.assign("note", "x")
    assert get_snapshot(item)["note"] == "x"
    item.assign("note", None)
    assert get_snapshot(item)["note"] is None


# --------------------------------------------------------------------------------------------------
# lists and dicts


def test_list_field_defaults_to_empty_list_node() -> None:
    item = Item.create({"id": "a"})
    assert isinstance(item.tags, list)
    assert item.tags == []


def test_list_field_returns_same_node_each_time() -> None:
    item = Item.create({"id": "a", "tags": ["x"]})
    assert item.tags is item.tags
    assert is_state_tree_node(item.tags)


def test_list_items_validated_with_index_paths() -> None:
    assert "/tags/1" in error_paths(create_error(Item, {"id": "a", "tags": ["x", 1]}))


def test_list_field_rejects_non_list() -> None:
    assert "/tags" in error_paths(create_error(Item, {"id": "a", "tags": "abc"}))


def test_dict_field_defaults_to_empty_dict_node() -> None:
    item = Item.create({"id": "a"})
    assert isinstance(item.attrs, dict)
    assert item.attrs == {}
    assert item.attrs is item.attrs


def test_dict_values_validated_with_key_paths() -> None:
    assert "/attrs/x" in error_paths(create_error(Item, {"id": "a", "attrs": {"x": "nope"}}))


def test_dict_field_rejects_non_dict() -> None:
    assert "/attrs" in error_paths(create_error(Item, {"id": "a", "attrs": [1, 2]}))


def test_nested_list_of_lists_validated_with_deep_paths() -> None:
    g = Grid.create({"matrix": [[1, 2], [3, 4]]})
    assert [list(row) for row in g.matrix] == [[1, 2], [3, 4]]
    err = create_error(Grid, {"matrix": [[1], ["x", 2, True]]})
    paths = error_paths(err)
    assert {"/matrix/1/0", "/matrix/1/2"} <= paths, paths
    assert "/matrix/1/1" not in paths


def test_dict_of_lists() -> None:
    g = Grid.create({"groups": {"a": ["x", "y"], "b": []}})
    assert isinstance(g.groups["a"], list)
    assert get_snapshot(g)["groups"] == {"a": ["x", "y"], "b": []}
    assert "/groups/b/0" in error_paths(create_error(Grid, {"groups": {"b": [1]}}))


def test_int_literal_field() -> None:
    assert Grid.create({"level": 3}).level == 3
    assert "/level" in error_paths(create_error(Grid, {"level": 4}))
    assert "/level" in error_paths(create_error(Grid, {"level": "1"}))


def test_frozen_list_is_immutable_and_equal() -> None:
    g = Grid.create({"blob": [1, {"a": 2}]})
    assert g.blob == [1, {"a": 2}]
    with pytest.raises(TypeError):
        g.blob.append(3)
    with pytest.raises(TypeError):
        g.blob[1]["b"] = 1


def test_create_does_not_mutate_or_alias_input_snapshot() -> None:
    raw = {"id": "a", "tags": ["x"], "attrs": {"k": 1}}
    item = Item.create(raw)
    assert raw == {"id": "a", "tags": ["x"], "attrs": {"k": 1}}
    raw["tags"].append("y")
    raw["attrs"]["z"] = 2
    assert list(item.tags) == ["x"]
    assert dict(item.attrs) == {"k": 1}


def test_list_of_models_children_are_nodes_with_list_parent() -> None:
    lib = Library.create(lib_snapshot())
    first = lib.items[0]
    assert is_state_tree_node(first)
    assert get_parent(first) is lib.items
    assert get_parent(first, 2) is lib


def test_dict_of_models_children_have_dict_parent() -> None:
    lib = Library.create(lib_snapshot())
    k = lib.by_key["k"]
    assert get_parent(k) is lib.by_key
    assert get_parent(k, 2) is lib


def test_dict_key_must_equal_child_identifier_on_create() -> None:
    with pytest.raises(ValidationError):
        Library.create({"by_key": {"x": {"id": "y"}}})


def test_dict_key_must_equal_child_identifier_on_set() -> None:
    lib = Library.create(lib_snapshot())
    before = get_snapshot(lib)

    def put(lib: Library) -> None:
        lib.by_key["x"] = {"id": "y"}

    with pytest.raises(ValidationError):
        lib.run(put)
    assert get_snapshot(lib) == before


def test_list_item_wrong_type_on_append_raises_and_leaves_list() -> None:
    item = Item.create({"id": "a", "tags": ["x"]})
    with pytest.raises(ValidationError):
        item.run(lambda s: s.tags.append(5))
    assert get_snapshot(item)["tags"] == ["x"]


def test_inserting_node_already_in_tree_raises() -> None:
    lib = Library.create(lib_snapshot())
    before = get_snapshot(lib)
    with pytest.raises(ValidationError):
        lib.run(lambda s: s.items.append(s.items[0]))
    assert get_snapshot(lib) == before
    assert get_parent(lib.items[0]) is lib.items


# --------------------------------------------------------------------------------------------------
# nested models


def test_nested_model_field_is_a_node() -> None:
    p = Person.create({"name": "ann", "home": {"city": "Oslo"}})
    assert get_type(p.home) is Address
    assert p.home.city == "Oslo"
    assert p.home.zip == ""
    assert get_parent(p.home) is p
    assert p.home is p.home


def test_nested_model_snapshot() -> None:
    p = Person.create({"home": {"city": "Oslo"}})
    assert get_snapshot(p) == {"name": "", "home": {"city": "Oslo", "zip": ""}, "work": None}


def test_nested_model_invalid_field_path() -> None:
    assert "/home/city" in error_paths(create_error(Person, {"home": {"city": 1}}))


def test_assigning_snapshot_to_model_field_creates_node() -> None:
    p = Person.create({"home": {}})
    p.assign("work", {"city": "Bergen"})
    assert get_type(p.work) is Address
    assert p.work.city == "Bergen"
    assert get_parent(p.work) is p


def test_assigning_invalid_snapshot_to_model_field_raises_and_keeps_tree() -> None:
    p = Person.create({"home": {"city": "Oslo"}})
    home = p.home
    before = get_snapshot(p)
    with pytest.raises(ValidationError):
        p.assign("home", {"city": 5})
    assert get_snapshot(p) == before
    assert p.home is home
    assert is_alive(home)


def test_assigning_node_of_wrong_model_type_raises() -> None:
    p = Person.create({"home": {}})
    with pytest.raises(ValidationError):
        p.assign("work", Item.create({"id": "x"}))
    assert p.work is None


# --------------------------------------------------------------------------------------------------
# unions of models


def test_union_dispatches_by_literal_discriminator() -> None:
    c = Canvas.create({"shapes": [{"kind": "square", "side": 2}, {"kind": "circle", "radius": 3}]})
    assert get_type(c.shapes[0]) is Square
    assert get_type(c.shapes[1]) is Circle
    assert c.shapes[0].side == 2
    assert c.shapes[1].radius == 3


def test_union_rejects_unknown_discriminator() -> None:
    err = create_error(Canvas, {"shapes": [{"kind": "circle"}, {"kind": "triangle"}]})
    paths = error_paths(err)
    assert any(p.startswith("/shapes/1") for p in paths), paths
    assert not any(p.startswith("/shapes/0") for p in paths), paths


def test_union_dispatches_by_which_snapshot_validates() -> None:
    c = Canvas.create({"pet": {"name": "nemo", "fins": 3}})
    assert get_type(c.pet) is Fish
    c2 = Canvas.create({"pet": {"name": "rex", "barks": True}})
    assert get_type(c2.pet) is Dog


def test_union_with_no_matching_member_raises() -> None:
    err = create_error(Canvas, {"pet": {"name": "x"}})
    assert any(p.startswith("/pet") for p in error_paths(err))


def test_union_member_field_error_path() -> None:
    err = create_error(Canvas, {"shapes": [{"kind": "circle", "radius": "big"}]})
    assert "/shapes/0/radius" in error_paths(err)


def test_nullable_union_defaults_to_none() -> None:
    c = Canvas.create()
    assert c.focus is None
    assert c.pet is None


def test_union_assignment_dispatches() -> None:
    c = Canvas.create()
    c.assign("focus", {"kind": "square", "side": 4})
    assert get_type(c.focus) is Square
    c.assign("focus", {"kind": "circle"})
    assert get_type(c.focus) is Circle
    assert get_snapshot(c)["focus"] == {"kind": "circle", "radius": 1.0}


def test_union_accepts_node_of_member_type() -> None:
    c = Canvas.create()
    sq = Square.create({"kind": "square"})
    c.assign("focus", sq)
    assert c.focus is sq
    assert get_parent(sq) is c


# --------------------------------------------------------------------------------------------------
# forward references


def test_self_referential_tree_model() -> None:
    root = TreeNode.create(
        {"id": "r", "children": [{"id": "a", "children": [{"id": "a1"}]}, {"id": "b"}]},
    )
    assert get_type(root.children[0]) is TreeNode
    assert get_type(root.children[0].children[0]) is TreeNode
    assert root.children[0].children[0].id == "a1"
    assert get_snapshot(root)["children"][1] == {"id": "b", "children": [], "favourite": None}


def test_self_referential_tree_grows_via_action() -> None:
    root = TreeNode.create({"id": "r"})
    root.add_child({"id": "x", "children": [{"id": "y"}]})
    assert get_type(root.children[0].children[0]) is TreeNode
    assert get_parent(root.children[0].children[0], 2) is root.children[0]


def test_self_reference_resolves_across_tree() -> None:
    root = TreeNode.create({"id": "r", "favourite": "deep", "children": [{"id": "a", "children": [{"id": "deep"}]}]})
    assert root.favourite is root.children[0].children[0]


def test_self_referential_tree_validation_path() -> None:
    err = create_error(TreeNode, {"id": "r", "children": [{"id": "a", "children": [{"id": 5}]}]})
    assert "/children/0/children/0/id" in error_paths(err)


def test_module_level_forward_reference_to_later_class() -> None:
    c = Canvas.create({"pet": {"name": "rex", "barks": False}})
    assert isinstance(c.pet, Dog)


def test_class_defined_inside_function_self_reference() -> None:
    @model
    class Node:
        name: str = ""
        kids: list[Node]

    n = Node.create({"name": "r", "kids": [{"name": "c", "kids": [{"name": "g"}]}]})
    assert get_type(n.kids[0]) is Node
    assert get_type(n.kids[0].kids[0]) is Node
    assert n.kids[0].kids[0].name == "g"


def test_classes_defined_inside_function_mutual_forward_reference() -> None:
    @model
    class Owner:
        name: str = ""
        pets: list[LocalPet]

    @model
    class LocalPet:
        name: str = ""
        toy: LocalToy | None = None

    @model
    class LocalToy:
        colour: str = "red"

    o = Owner.create({"name": "o", "pets": [{"name": "p", "toy": {}}]})
    assert get_type(o.pets[0]) is LocalPet
    assert get_type(o.pets[0].toy) is LocalToy
    assert get_snapshot(o) == {"name": "o", "pets": [{"name": "p", "toy": {"colour": "red"}}]}


def test_class_defined_inside_function_with_explicit_string_annotation() -> None:
    @model
    class Branch:
        label: str = ""
        left: Branch | None = None
        right: Branch | None = None

    b = Branch.create({"label": "root", "left": {"label": "l", "right": {"label": "lr"}}})
    assert get_type(b.left.right) is Branch
    assert b.right is None
    err = create_error(Branch, {"left": {"right": {"label": 1}}})
    assert "/left/right/label" in error_paths(err)


def test_local_class_shadowing_module_model_name_resolves_to_local() -> None:
    @model
    class Item:  # same name as the module-level Item
        label: str = ""
        inner: list[Item]

    x = Item.create({"label": "outer", "inner": [{"label": "in"}]})
    assert get_type(x.inner[0]) is Item
    assert get_snapshot(x) == {"label": "outer", "inner": [{"label": "in", "inner": []}]}


def test_two_local_classes_with_same_name_in_different_functions() -> None:
    def first() -> Any:
        @model
        class Twin:
            a: int = 1
            kids: list[Twin]

        return Twin

    def second() -> Any:
        @model
        class Twin:
            b: str = "x"
            kids: list[Twin]

        return Twin

    one, two = first(), second()
    assert get_snapshot(one.create({"kids": [{}]})) == {"a": 1, "kids": [{"a": 1, "kids": []}]}
    assert get_snapshot(two.create({"kids": [{}]})) == {"b": "x", "kids": [{"b": "x", "kids": []}]}


def test_local_class_with_reference_to_itself() -> None:
    @model
    class Cell:
        id: t.Identifier
        next: t.Reference[Cell] | None = None
        rest: list[Cell]

    c = Cell.create({"id": "a", "next": "b", "rest": [{"id": "b", "next": "a"}]})
    assert c.next is c.rest[0]
    assert c.rest[0].next is c


# --------------------------------------------------------------------------------------------------
# identifiers


def test_identifier_field_value() -> None:
    item = Item.create({"id": "abc"})
    assert item.id == "abc"
    assert get_identifier(item) == "abc"


def test_identifier_rejects_non_string() -> None:
    assert "/id" in error_paths(create_error(Item, {"id": 5}))


def test_identifier_cannot_be_changed_in_action() -> None:
    item = Item.create({"id": "a"})
    with pytest.raises(ValidationError):
        item.assign("id", "b")
    assert item.id == "a"
    assert get_snapshot(item)["id"] == "a"


def test_identifier_cannot_be_changed_when_unprotected() -> None:
    item = Item.create({"id": "a"})
    unprotect(item)
    with pytest.raises(ValidationError):
        item.id = "b"
    assert item.id == "a"


def test_identifier_change_rolls_back_whole_action() -> None:
    item = Item.create({"id": "a"})

    def change(s: Item) -> None:
        s.name = "changed"
        s.id = "b"

    with pytest.raises(ValidationError):
        item.run(change)
    assert get_snapshot(item)["name"] == ""
    assert item.id == "a"


def test_resolve_identifier_finds_nodes_in_lists_and_dicts() -> None:
    lib = Library.create(lib_snapshot())
    assert resolve_identifier(Item, lib, "b") is lib.items[1]
    assert resolve_identifier(Item, lib, "k") is lib.by_key["k"]


def test_identifier_number_field() -> None:
    n = Num.create({"id": 3, "label": "three"})
    assert n.id == 3
    assert get_snapshot(n)["id"] == 3
    assert get_identifier(n) == "3"


def test_identifier_number_rejects_string_and_bool() -> None:
    assert "/id" in error_paths(create_error(Num, {"id": "3"}))
    assert "/id" in error_paths(create_error(Num, {"id": True}))


def test_identifier_number_cannot_change() -> None:
    n = Num.create({"id": 3})
    with pytest.raises(ValidationError):
        n.assign("id", 4)
    assert n.id == 3


def test_resolve_identifier_number_accepts_int_or_str() -> None:
    bag = NumBag.create({"nums": [{"id": 1}, {"id": 2}]})
    assert resolve_identifier(Num, bag, 2) is bag.nums[1]
    assert resolve_identifier(Num, bag, "2") is bag.nums[1]


def test_reference_to_identifier_number() -> None:
    bag = NumBag.create({"nums": [{"id": 1}, {"id": 2}], "pick": 2})
    assert bag.pick is bag.nums[1]
    bag.assign("pick", bag.nums[0])
    assert bag.pick is bag.nums[0]
    assert get_snapshot(bag)["pick"] in (1, "1")


# --------------------------------------------------------------------------------------------------
# references


def test_reference_defaults_to_none() -> None:
    lib = Library.create(lib_snapshot())
    assert lib.selected is None
    assert get_snapshot(lib)["selected"] is None


def test_reference_from_snapshot_resolves_to_node() -> None:
    lib = Library.create({**lib_snapshot(), "selected": "b"})
    assert lib.selected is lib.items[1]


def test_reference_assigned_node_snapshot_holds_identifier() -> None:
    lib = Library.create(lib_snapshot())
    lib.assign("selected", lib.items[2])
    assert lib.selected is lib.items[2]
    assert get_snapshot(lib)["selected"] == "c"


def test_reference_assigned_identifier_resolves() -> None:
    lib = Library.create(lib_snapshot())
    lib.assign("selected", "a")
    assert lib.selected is lib.items[0]


def test_reference_does_not_move_target() -> None:
    lib = Library.create(lib_snapshot())
    target = lib.items[1]
    lib.assign("selected", target)
    assert get_parent(target) is lib.items
    assert len(lib.items) == 3


def test_reference_resolves_into_dict() -> None:
    lib = Library.create({**lib_snapshot(), "selected": "k"})
    assert lib.selected is lib.by_key["k"]


def test_reference_to_removed_target_raises_on_read() -> None:
    lib = Library.create({**lib_snapshot(), "selected": "a"})
    lib.run(lambda s: s.items.pop(0))
    with pytest.raises(InvalidReferenceError):
        _ = lib.selected


def test_reference_still_resolves_after_rolled_back_removal() -> None:
    lib = Library.create({**lib_snapshot(), "selected": "a"})
    first = lib.items[0]

    def body(s: Library) -> None:
        s.items.pop(0)
        s.selected = None
        raise RuntimeError("undo")

    with pytest.raises(RuntimeError):
        lib.run(body)
    assert lib.selected is first
    assert is_alive(first)


def test_reference_to_node_of_other_tree_is_rejected_or_unresolvable() -> None:
    lib = Library.create(lib_snapshot())
    stranger = Item.create({"id": "zz"})
    try:
        lib.assign("selected", stranger)
    except MSTError:
        assert lib.selected is None
    else:
        with pytest.raises(InvalidReferenceError):
            _ = lib.selected


def test_safe_reference_resolves() -> None:
    lib = Library.create({**lib_snapshot(), "safe": "c"})
    assert lib.safe is lib.items[2]
    assert get_snapshot(lib)["safe"] == "c"


def test_safe_reference_becomes_none_when_target_removed() -> None:
    lib = Library.create({**lib_snapshot(), "safe": "b"})
    lib.run(lambda s: s.items.pop(1))
    assert lib.safe is None
    assert get_snapshot(lib)["safe"] is None


def test_safe_reference_becomes_none_when_dict_target_deleted() -> None:
    lib = Library.create({**lib_snapshot(), "safe": "k"})

    def drop(s: Library) -> None:
        del s.by_key["k"]

    lib.run(drop)
    assert lib.safe is None


# --------------------------------------------------------------------------------------------------
# frozen


def test_frozen_accepts_none_by_default() -> None:
    item = Item.create({"id": "a"})
    assert item.meta is None


def test_frozen_value_equals_input() -> None:
    item = Item.create({"id": "a", "meta": {"x": [1, 2], "y": {"z": True}}})
    assert item.meta == {"x": [1, 2], "y": {"z": True}}


def test_frozen_snapshot_holds_same_object() -> None:
    item = Item.create({"id": "a", "meta": {"x": 1}})
    assert get_snapshot(item)["meta"] is item.meta


def test_frozen_value_is_immutable() -> None:
    item = Item.create({"id": "a", "meta": {"x": [1, 2]}})
    with pytest.raises(TypeError):
        item.meta["y"] = 1
    with pytest.raises(TypeError):
        item.meta["x"].append(3)


def test_frozen_is_replaced_whole_with_one_patch() -> None:
    item = Item.create({"id": "a", "meta": {"x": 1}})
    patches: list[Any] = []
    on_patch(item, lambda p, _inv: patches.append(p))
    item.assign("meta", {"x": 2, "y": [3]})
    assert item.meta == {"x": 2, "y": [3]}
    assert patches == [{"op": "replace", "path": "/meta", "value": {"x": 2, "y": [3]}}]


def test_frozen_not_a_state_tree_node() -> None:
    item = Item.create({"id": "a", "meta": {"x": 1}})
    assert not is_state_tree_node(item.meta)


def test_frozen_input_mutation_does_not_leak_in() -> None:
    raw = {"x": [1]}
    item = Item.create({"id": "a", "meta": raw})
    raw["x"].append(2)
    raw["y"] = 3
    assert item.meta == {"x": [1]}


# --------------------------------------------------------------------------------------------------
# volatile


def test_volatile_not_in_snapshot() -> None:
    item = Item.create({"id": "a"})
    assert "cache" not in get_snapshot(item)


def test_volatile_can_be_set_in_action_without_patch_or_snapshot() -> None:
    item = Item.create({"id": "a"})
    patches: list[Any] = []
    snaps: list[Any] = []
    on_patch(item, lambda p, _inv: patches.append(p))
    on_snapshot(item, snaps.append)
    before = get_snapshot(item)
    item.assign("cache", {"anything": object()})
    assert item.cache is not None
    assert patches == []
    assert snaps == []
    assert get_snapshot(item) == before


def test_volatile_does_not_survive_clone_through_snapshot() -> None:
    item = Item.create({"id": "a"})
    item.assign("cache", "hot")
    again = Item.create(get_snapshot(item))
    assert again.cache is None


@model
class Counter:
    n: int = 0
    scratch: object = t.volatile(0)

    @view
    def double(self) -> int:
        VIEW_CALLS.append("double")
        return self.n * 2

    @view
    def scratch_plus_n(self) -> Any:
        return self.scratch + self.n

    def times(self, k: int) -> int:
        return self.n * k

    @action
    def inc(self) -> None:
        self.n += 1

    @action
    def set_scratch(self, v: Any) -> None:
        self.scratch = v


VIEW_CALLS: list[str] = []


def test_view_is_read_as_attribute() -> None:
    c = Counter.create({"n": 2})
    assert c.double == 4


def test_view_is_cached_until_dependency_changes() -> None:
    c = Counter.create({"n": 2})
    VIEW_CALLS.clear()
    assert c.double == 4
    assert c.double == 4
    assert VIEW_CALLS == ["double"]
    c.inc()
    assert c.double == 6
    assert VIEW_CALLS == ["double", "double"]


def test_view_observes_volatile_state() -> None:
    c = Counter.create({"n": 1})
    assert c.scratch_plus_n == 1
    c.set_scratch(10)
    assert c.scratch_plus_n == 11


def test_plain_method_is_uncached_view() -> None:
    c = Counter.create({"n": 3})
    assert c.times(2) == 6
    c.inc()
    assert c.times(2) == 8


def test_views_are_not_in_snapshot() -> None:
    assert get_snapshot(Counter.create({"n": 1})) == {"n": 1}


# --------------------------------------------------------------------------------------------------
# refinement


def test_refinement_accepts_valid_value() -> None:
    assert Item.create({"id": "a", "qty": 5}).qty == 5


def test_refinement_rejects_with_message() -> None:
    err = create_error(Item, {"id": "a", "qty": 0})
    assert "/qty" in error_paths(err)
    assert any("must be positive" in msg for _p, msg in err.errors)


def test_refinement_checks_base_type() -> None:
    assert "/qty" in error_paths(create_error(Item, {"id": "a", "qty": "3"}))


def test_refinement_enforced_on_assignment() -> None:
    item = Item.create({"id": "a", "qty": 2})
    with pytest.raises(ValidationError):
        item.assign("qty", -1)
    assert item.qty == 2


def test_refinement_inside_function_local_model() -> None:
    Short = t.refinement(str, lambda s: len(s) <= 3, "too long")

    @model
    class Code:
        code: Short = "ab"

    assert Code.create({"code": "xyz"}).code == "xyz"
    err = create_error(Code, {"code": "abcd"})
    assert "/code" in error_paths(err)


# --------------------------------------------------------------------------------------------------
# snapshot processor


def _csv_pre(snapshot: Any) -> Any:
    return [part for part in snapshot.split(",") if part] if isinstance(snapshot, str) else snapshot


def _csv_post(snapshot: Any, *_rest: Any) -> Any:
    return ",".join(snapshot)


CsvList = t.snapshot_processor(list[str], _csv_pre, _csv_post)


@model
class Tagged:
    tags: CsvList = ""


def test_snapshot_processor_pre_processes_input() -> None:
    tg = Tagged.create({"tags": "a,b,c"})
    assert list(tg.tags) == ["a", "b", "c"]


def test_snapshot_processor_post_processes_snapshot() -> None:
    tg = Tagged.create({"tags": "a,b"})
    assert get_snapshot(tg) == {"tags": "a,b"}


def test_snapshot_processor_round_trips() -> None:
    tg = Tagged.create({"tags": "x,y"})
    assert get_snapshot(Tagged.create(get_snapshot(tg))) == get_snapshot(tg)


def test_snapshot_processor_default_goes_through_processors() -> None:
    tg = Tagged.create()
    assert list(tg.tags) == []
    assert get_snapshot(tg) == {"tags": ""}


def test_snapshot_processor_still_validates() -> None:
    with pytest.raises(ValidationError):
        Tagged.create({"tags": 5})


# --------------------------------------------------------------------------------------------------
# env


def test_create_with_env_is_visible_from_every_node() -> None:
    env = {"clock": object()}
    lib = Library.create(lib_snapshot(), env)
    assert get_env(lib) is env
    assert get_env(lib.items[0]) is env
    assert get_env(lib.by_key["k"]) is env


def test_create_env_keyword() -> None:
    env = {"x": 1}
    lib = Library.create(lib_snapshot(), env=env)
    assert get_env(lib.items[1]) is env


# --------------------------------------------------------------------------------------------------
# wrong-type assignment leaves the tree unchanged


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", 1),
        ("count", True),
        ("count", "1"),
        ("price", "x"),
        ("flag", 0),
        ("kind", "zzz"),
        ("note", 3),
        ("tags", ["ok", 1]),
        ("attrs", {"a": "b"}),
        ("qty", 0),
    ],
)
def test_wrong_type_assignment_raises_and_tree_unchanged(field: str, value: Any) -> None:
    item = Item.create({"id": "a", "name": "n", "tags": ["t"], "attrs": {"a": 1}})
    before = get_snapshot(item)
    tags, attrs_node = item.tags, item.attrs
    patches: list[Any] = []
    snaps: list[Any] = []
    on_patch(item, lambda p, _inv: patches.append(p))
    on_snapshot(item, snaps.append)
    with pytest.raises(ValidationError):
        item.assign(field, value)
    assert get_snapshot(item) == before
    assert item.tags is tags
    assert item.attrs is attrs_node
    assert patches == []
    assert snaps == []


def test_wrong_type_assignment_unprotected_raises_and_tree_unchanged() -> None:
    item = Item.create({"id": "a", "count": 1})
    unprotect(item)
    with pytest.raises(ValidationError):
        item.count = "two"
    assert item.count == 1


def test_wrong_type_list_item_assignment_unchanged() -> None:
    item = Item.create({"id": "a", "tags": ["a", "b"]})

    def setitem(s: Item) -> None:
        s.tags[1] = 99

    with pytest.raises(ValidationError):
        item.run(setitem)
    assert list(item.tags) == ["a", "b"]


def test_wrong_type_dict_value_assignment_unchanged() -> None:
    item = Item.create({"id": "a", "attrs": {"x": 1}})

    def setitem(s: Item) -> None:
        s.attrs["y"] = "nope"

    with pytest.raises(ValidationError):
        item.run(setitem)
    assert dict(item.attrs) == {"x": 1}


def test_valid_assignment_emits_replace_patch() -> None:
    item = Item.create({"id": "a"})
    patches: list[Any] = []
    on_patch(item, lambda p, _inv: patches.append(p))
    item.assign("count", 7)
    assert item.count == 7
    assert patches == [{"op": "replace", "path": "/count", "value": 7}]


# --------------------------------------------------------------------------------------------------
# lifecycle hooks

HOOKS: list[tuple[str, str]] = []


@model
class Hooked:
    id: t.Identifier

    def after_create(self) -> None:
        HOOKS.append(("after_create", self.id))

    def after_attach(self) -> None:
        HOOKS.append(("after_attach", self.id))

    def before_detach(self) -> None:
        HOOKS.append(("before_detach", self.id))

    def before_destroy(self) -> None:
        HOOKS.append(("before_destroy", self.id))


@model
class HookHost:
    kids: list[Hooked]

    @action
    def run(self, fn: Any) -> Any:
        return fn(self)


def test_after_create_runs_for_each_node() -> None:
    HOOKS.clear()
    HookHost.create({"kids": [{"id": "a"}, {"id": "b"}]})
    assert ("after_create", "a") in HOOKS
    assert ("after_create", "b") in HOOKS


def test_after_attach_runs_when_node_inserted() -> None:
    host = HookHost.create()
    HOOKS.clear()
    host.run(lambda s: s.kids.append({"id": "n"}))
    assert ("after_attach", "n") in HOOKS


def test_before_detach_runs_on_detach() -> None:
    host = HookHost.create({"kids": [{"id": "a"}]})
    HOOKS.clear()
    node = host.run(lambda s: detach(s.kids[0]))
    assert ("before_detach", "a") in HOOKS
    assert is_root(node)
    assert is_alive(node)


def test_before_destroy_runs_on_removal() -> None:
    host = HookHost.create({"kids": [{"id": "a"}, {"id": "b"}]})
    HOOKS.clear()
    removed = host.run(lambda s: s.kids.pop(0))
    assert ("before_destroy", "a") in HOOKS
    assert not is_alive(removed)


def test_destroyed_node_attribute_access_raises_dead_node() -> None:
    host = HookHost.create({"kids": [{"id": "a"}]})
    kid = host.kids[0]
    host.run(lambda s: destroy(s.kids[0]))
    assert not is_alive(kid)
    assert get_snapshot(kid) == {"id": "a"}
    with pytest.raises(DeadNodeError):
        _ = kid.id


def test_frozen_of_any_accepts_any_json_value() -> None:
    from typing import Any as AnyValue

    @model
    class Holder:
        data: t.Frozen[AnyValue] = None

        @action
        def put(self, value: object) -> None:
            self.data = value

    holder = Holder.create()
    holder.put({"a": [1, 2]})
    assert get_snapshot(holder)["data"] == {"a": [1, 2]}
    holder.put(3)
    assert holder.data == 3
