"""Value types (issue 11): cattrs-backed leaf values in fields, snapshots, patches and action replay, and the MST
parity functions that came with them."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import functools
import json
import operator
import typing
import uuid
from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mst_llm import (
    ActionCall,
    MSTError,
    PatchError,
    SessionLog,
    ValidationError,
    action,
    apply_action,
    apply_patch,
    apply_snapshot,
    clone,
    detach,
    get_members,
    get_relative_path,
    get_running_action_context,
    get_snapshot,
    is_valid_reference,
    model,
    on_action,
    on_patch,
    record_actions,
    record_session,
    resolve_path,
    try_reference,
    try_resolve,
    typecheck,
    unprotect,
    value_converter,
    view,
)
from mst_llm import types as t


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Status(enum.StrEnum):
    OPEN = "open"
    DONE = "done"


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int


@attrs.frozen
class Stamp:
    at: dt.datetime
    where: Point


@model
class Values:
    when: dt.datetime | None = None
    day: dt.date | None = None
    clock: dt.time | None = None
    span: dt.timedelta | None = None
    money: Decimal | None = None
    ident: uuid.UUID | None = None
    path: Path | None = None
    posix: PurePosixPath | None = None
    colour: Colour | None = None
    level: Level | None = None
    status: Status | None = None
    many: tuple[int, ...] | None = None
    pair: tuple[str, int] | None = None
    tags: frozenset[str] | None = None
    labels: set[str] | None = None
    point: Point | None = None
    stamp: Stamp | None = None
    either: dt.datetime | int | None = None
    amount: Decimal | float | None = None
    moments: list[dt.datetime] = []
    prices: dict[str, Decimal] = {}

    @action
    def put(self, name: str, value: Any) -> None:
        setattr(self, name, value)

    @action
    def set_when(self, when: dt.datetime, *, money: Decimal | None = None, days: list[dt.date] | None = None) -> None:
        self.when = when
        self.money = money
        self.moments = [dt.datetime.combine(day, dt.time(), dt.UTC) for day in days or []]


zones = st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=2)), dt.timezone(dt.timedelta(hours=-5, minutes=-30))])
datetimes = st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1), timezones=zones)
points = st.builds(Point, st.integers(-1000, 1000), st.integers(-1000, 1000))
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "when": datetimes,
    "day": st.dates(),
    "clock": st.times(),
    "span": st.timedeltas(min_value=dt.timedelta(days=-(10**5)), max_value=dt.timedelta(days=10**5)),
    "money": st.decimals(allow_nan=False, allow_infinity=False),
    "ident": st.uuids(),
    "path": st.builds(Path, st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=8)),
    "posix": st.builds(PurePosixPath, st.from_regex(r"/?[a-z]{1,5}(/[a-z]{1,5}){0,2}", fullmatch=True)),
    "colour": st.sampled_from(Colour),
    "level": st.sampled_from(Level),
    "status": st.sampled_from(Status),
    "many": st.lists(st.integers(), max_size=4).map(tuple),
    "pair": st.tuples(st.text(max_size=5), st.integers()),
    "tags": st.frozensets(st.text(max_size=4), max_size=4),
    "labels": st.sets(st.text(max_size=4), max_size=4),
    "point": points,
    "stamp": st.builds(Stamp, datetimes, points),
    "either": datetimes | st.integers(),
    "amount": st.decimals(allow_nan=False, allow_infinity=False) | st.floats(allow_nan=False, allow_infinity=False),
}
writes = st.lists(st.one_of([st.tuples(st.just(name), strategy) for name, strategy in VALUES.items()]), max_size=8)


def _wire(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _held(value: Any) -> Any:
    """The value a field holds for ``value``: itself, but a timedelta rounded to its JSON form (float seconds)."""
    return dt.timedelta(seconds=value.total_seconds()) if isinstance(value, dt.timedelta) else value


@settings(max_examples=60, deadline=None)
@given(st.fixed_dictionaries({}, optional=VALUES))
def test_create_snapshot_json_create_gives_equal_values(fields: dict[str, Any]) -> None:
    node = Values.create(fields)
    again = Values.create(_wire(get_snapshot(node)))
    for name, value in fields.items():
        assert getattr(node, name) == _held(value)
        assert getattr(again, name) == _held(value)
        assert type(getattr(again, name)) is (frozenset if type(value) is set else type(value))  # a set is held frozen
    assert get_snapshot(again) == get_snapshot(node)


@settings(max_examples=60, deadline=None)
@given(writes)
def test_random_writes_replayed_as_patches_give_equal_snapshots(changes: list[tuple[str, Any]]) -> None:
    live = Values.create()
    copy = clone(live)
    patches: list[Any] = []
    on_patch(live, lambda patch, inverse: patches.append(patch))
    for name, value in changes:
        live.put(name, value)
    apply_patch(copy, _wire(patches))
    assert get_snapshot(copy) == get_snapshot(live)
    for name, _ in changes:
        assert getattr(copy, name) == getattr(live, name)


@settings(max_examples=60, deadline=None)
@given(datetimes, st.none() | st.decimals(allow_nan=False, allow_infinity=False), st.lists(st.dates(), max_size=3))
def test_action_replay_reproduces_state(when: dt.datetime, money: Decimal | None, days: list[dt.date]) -> None:
    live = Values.create()
    copy = clone(live)
    recorder = record_actions(live)
    live.set_when(when, money=money, days=days)
    assert recorder.actions[0]["args"] == [when.isoformat()]
    apply_action(copy, _wire(recorder.actions))
    assert get_snapshot(copy) == get_snapshot(live)
    assert copy.when == when and copy.when.utcoffset() == when.utcoffset()


@settings(max_examples=60, deadline=None)
@given(writes)
def test_random_writes_replayed_as_actions_give_equal_snapshots(changes: list[tuple[str, Any]]) -> None:
    live = Values.create()
    copy = clone(live)
    recorder = record_actions(live)
    for name, value in changes:
        live.put(name, value)  # ``value: Any``: the JSON form goes back as it is, and the field takes it
    apply_action(copy, _wire(recorder.actions))
    assert get_snapshot(copy) == get_snapshot(live)
    for name, _ in changes:
        assert getattr(copy, name) == getattr(live, name)


def test_reads_return_values_and_snapshots_hold_json_forms() -> None:
    node = Values.create(
        {
            "when": "2025-03-01T09:30:00+01:00",
            "span": 1.5,
            "money": "19.90",
            "colour": "red",
            "level": 2,
            "status": "done",
            "pair": ["a", 1],
            "tags": ["b", "a"],
            "stamp": {"at": "2025-01-01T00:00:00+00:00", "where": {"x": 1, "y": 2}},
            "prices": {"tea": "2.50"},
        }
    )
    assert node.when.utcoffset() == dt.timedelta(hours=1)
    assert node.span == dt.timedelta(seconds=1.5)
    assert node.colour is Colour.RED and node.level is Level.HIGH and node.status is Status.DONE
    assert node.pair == ("a", 1) and node.tags == frozenset({"a", "b"})
    assert node.stamp == Stamp(dt.datetime(2025, 1, 1, tzinfo=dt.UTC), Point(1, 2))
    assert node.prices["tea"] == Decimal("2.50")
    snapshot = get_snapshot(node)
    assert snapshot["money"] == "19.90" and snapshot["status"] == "done" and type(snapshot["status"]) is str
    assert snapshot["tags"] == ["a", "b"] and snapshot["prices"] == {"tea": "2.50"}
    assert snapshot["stamp"] == {"at": "2025-01-01T00:00:00+00:00", "where": {"x": 1, "y": 2}}


def test_invalid_form_names_path_and_type_and_leaves_tree_unchanged() -> None:
    node = Values.create({"money": "1"})
    before = get_snapshot(node)
    with pytest.raises(ValidationError) as raised:
        apply_patch(
            node,
            [{"op": "replace", "path": "/money", "value": "2"}, {"op": "replace", "path": "/when", "value": "soon"}],
        )
    assert raised.value.errors[0][0] == "/when"
    assert "expected datetime" in raised.value.errors[0][1]
    assert get_snapshot(node) is before or get_snapshot(node) == before
    with pytest.raises(ValidationError) as created:
        Values.create({"point": {"x": "one", "y": 2}, "moments": ["2025-01-01T00:00:00", 5]})
    assert [path for path, _ in created.value.errors] == ["/point", "/moments/1"]


def test_equal_write_emits_nothing_but_other_digits_do() -> None:
    node = Values.create({"money": "1.50", "when": "2025-01-01T00:00:00+00:00"})
    patches: list[Any] = []
    on_patch(node, lambda patch, inverse: patches.append(patch))
    node.put("money", Decimal("1.50"))
    node.put("when", dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
    assert patches == []
    node.put("money", Decimal("1.5"))
    assert patches == [{"op": "replace", "path": "/money", "value": "1.5"}]


def test_apply_snapshot_accepts_values_and_json_forms() -> None:
    node = Values.create()
    unprotect(node)
    apply_snapshot(node, {"when": dt.datetime(2025, 1, 1, tzinfo=dt.UTC), "point": {"x": 1, "y": 2}})
    assert node.point == Point(1, 2)
    assert get_snapshot(node)["when"] == "2025-01-01T00:00:00+00:00"
    apply_snapshot(node.moments, ["2025-01-02T00:00:00+00:00", dt.datetime(2025, 1, 3, tzinfo=dt.UTC)])
    assert node.moments[1].day == 3
    assert get_snapshot(node)["moments"] == ["2025-01-02T00:00:00+00:00", "2025-01-03T00:00:00+00:00"]


def test_mutable_dataclass_is_refused_by_name() -> None:
    @dataclasses.dataclass
    class Loose:
        x: int

    with pytest.raises(TypeError, match="Loose must be frozen"):

        @model
        class Holder:
            loose: Loose | None = None

        Holder.create()


class Rgb:
    def __init__(self, text: str) -> None:
        self.text = text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Rgb) and other.text == self.text

    __hash__ = None  # type: ignore[assignment]


def _rgb(value: Any, _: Any) -> Rgb:
    if isinstance(value, Rgb):
        return value
    if not (isinstance(value, str) and value.startswith("#")):
        raise ValueError(f"not a colour: {value!r}")
    return Rgb(value)


value_converter.register_unstructure_hook(Rgb, lambda colour: colour.text)
value_converter.register_structure_hook(Rgb, _rgb)
Cents = Annotated[Decimal, t.custom("Cents", lambda value: int(value * 100), lambda cents: Decimal(cents) / 100)]


@model
class Theme:
    accent: Rgb = t.default("#000000")
    price: Cents = Decimal("0")
    odd: Annotated[int, t.custom("Odd", str, int, lambda text: isinstance(text, str) and int(text) % 2 == 1)] = 1

    @action
    def paint(self, accent: Rgb) -> None:
        self.accent = accent


def test_converter_hooks_and_custom_types_work_like_builtin_values() -> None:
    theme = Theme.create({"price": 199, "odd": "3"})
    assert theme.accent == Rgb("#000000") and theme.price == Decimal("1.99") and theme.odd == 3
    assert get_snapshot(theme) == {"accent": "#000000", "price": 199, "odd": "3"}
    copy = clone(theme)
    recorder = record_actions(theme)
    theme.paint(Rgb("#ff0000"))
    assert recorder.actions == [{"name": "paint", "path": "", "args": ["#ff0000"]}]
    apply_action(copy, _wire(recorder.actions))
    assert copy.accent == Rgb("#ff0000")
    with pytest.raises(ValidationError):
        Theme.create({"odd": "4"})
    with pytest.raises(ValidationError):
        Theme.create({"accent": "red"})


def test_frozen_model_validates_against_snapshot_type() -> None:
    @model
    class Holder:
        shape: t.Frozen[Values] = None

    assert Holder.create({"shape": {"money": "1"}}).shape == {"money": "1"}
    with pytest.raises(ValidationError) as raised:
        Holder.create({"shape": {"money": "lots"}})
    assert raised.value.errors[0][0] == "/shape/money"


def test_attrs_fields_expose_real_types() -> None:
    assert attrs.has(Values)
    fields = {field.name: field.type for field in attrs.fields(Values)}
    assert fields["when"] == dt.datetime | None
    assert fields["prices"] == dict[str, Decimal]
    # so cattrs sees the schema: the converter turns a node into its snapshot, and a snapshot into an equal node
    node = Values.create({"when": "2025-01-01T00:00:00+00:00", "money": "1.50", "moments": [], "labels": ["a"]})
    assert value_converter.unstructure(node) == get_snapshot(node)
    assert get_snapshot(value_converter.structure(get_snapshot(node), Values)) == get_snapshot(node)


def test_views_keep_their_values() -> None:
    @model
    class Clock:
        at: dt.datetime = t.default("2025-01-01T00:00:00+00:00")

        @view
        def year(self) -> int:
            return self.at.year

    assert Clock.create().year == 2025


# --- MST parity -------------------------------------------------------------------------------------------


@model
class Item:
    id: t.Identifier
    n: int = 0


@model
class Shelf:
    items: list[Item] = []
    numbers: list[int] = []
    favourite: t.Reference[Item] | None = None

    @action
    def touch(self) -> ActionCall | None:
        return get_running_action_context()


def test_list_replaced_whole_emits_one_replace_for_a_listener_on_it() -> None:
    shelf = Shelf.create({"items": [{"id": "a"}, {"id": "b"}], "numbers": [1, 2]})
    unprotect(shelf)
    seen: list[Any] = []
    on_patch(shelf.items, lambda patch, inverse: seen.append(patch))
    on_patch(shelf.numbers, lambda patch, inverse: seen.append(patch))
    apply_snapshot(shelf.items, [{"id": "c"}, {"id": "d"}])
    apply_snapshot(shelf.numbers, [3, 4])
    assert seen == [
        {"op": "replace", "path": "", "value": [{"id": "c", "n": 0}, {"id": "d", "n": 0}]},
        {"op": "replace", "path": "", "value": [3, 4]},
    ]


def test_relative_paths_resolve_and_round_trip() -> None:
    shelf = Shelf.create({"items": [{"id": "a"}, {"id": "b"}]})
    first, second = shelf.items
    assert resolve_path(first, "../1") is second
    assert resolve_path(first, "./n") == 0
    assert resolve_path(second, "../../items/0") is first
    assert try_resolve(first, "../../nothing") is None
    for base, target in [(first, second), (shelf, second), (second, shelf), (first, first), (first, shelf.items)]:
        assert resolve_path(base, get_relative_path(base, target)) is target
    assert get_relative_path(first, second) == "../1"
    assert get_relative_path(shelf, second) == "/items/1"


@pytest.mark.parametrize("bad", [None, 5, "patch", b"x"])
def test_apply_patch_of_a_non_patch_raises_patch_error(bad: Any) -> None:
    shelf = Shelf.create()
    with pytest.raises(PatchError):
        apply_patch(shelf, bad)


def test_members_references_running_context_and_typecheck() -> None:
    members = get_members(Values.create())
    assert members["name"] == "Values" and members["actions"] == ["put", "set_when"]
    assert "when" in members["properties"] and members["views"] == [] and members["volatile"] == []
    shelf = Shelf.create({"items": [{"id": "a"}], "favourite": "a"})
    assert try_reference(lambda: shelf.favourite) is shelf.items[0]
    assert is_valid_reference(lambda: shelf.favourite)
    broken = Shelf.create({"items": [{"id": "a"}]})
    unprotect(broken)
    broken.favourite = "a"
    apply_snapshot(broken, {"items": [{"id": "b"}], "favourite": "a"})
    assert try_reference(lambda: broken.favourite) is None
    assert not is_valid_reference(lambda: broken.favourite)
    assert get_running_action_context() is None
    call = shelf.touch()
    assert call is not None and call.name == "touch" and call.context is shelf
    typecheck(Values, {"when": "2025-01-01T00:00:00+00:00"})
    typecheck(list[dt.date], ["2025-01-01"])
    with pytest.raises(ValidationError):
        typecheck(dt.date, "yesterday")


def test_on_action_sends_enum_members_as_values() -> None:
    node = Values.create()
    calls: list[Any] = []
    on_action(node, calls.append)
    node.put("status", Status.DONE)
    assert calls == [{"name": "put", "path": "", "args": ["status", "done"]}]
    assert type(calls[0]["args"][1]) is str


# --- sets, unions of values, equality in JSON form --------------------------------------------------------


def test_a_set_field_holds_a_frozenset_and_snapshots_a_sorted_list() -> None:
    node = Values.create({"labels": ["b", "a"]})
    assert node.labels == frozenset({"a", "b"}) and type(node.labels) is frozenset
    assert get_snapshot(node)["labels"] == ["a", "b"]
    patches: list[Any] = []
    on_patch(node, lambda patch, inverse: patches.append(patch))
    node.put("labels", {"a", "b"})
    assert patches == []
    node.put("labels", {"c", "a"})
    assert patches == [{"op": "replace", "path": "/labels", "value": ["a", "c"]}]
    unprotect(node)
    apply_snapshot(node, {**get_snapshot(node), "labels": ["z"]})
    assert node.labels == {"z"}
    for bad in ["ab", {"a": 1}, ["a", 1]]:
        with pytest.raises(ValidationError) as raised:
            Values.create({"labels": bad})
        assert raised.value.errors[0][0] == "/labels" and "expected set[str]" in raised.value.errors[0][1]


@pytest.mark.parametrize("text", ["ab", {"x": 1}])
def test_tuples_and_frozensets_are_not_made_from_strings_or_dicts(text: Any) -> None:
    for field in ("many", "tags", "pair"):
        with pytest.raises(ValidationError) as raised:
            Values.create({field: text})
        assert "expected a list" in raised.value.errors[0][1]


def test_a_union_of_values_dispatches_by_class_then_by_json_kind() -> None:
    moment = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    node = Values.create({"either": "2025-01-01T00:00:00+00:00", "amount": "1.10"})
    assert node.either == moment and node.amount == Decimal("1.10")
    node.put("either", 5)
    node.put("amount", 2.5)
    assert node.either == 5 and type(node.amount) is float
    assert get_snapshot(node)["either"] == 5 and get_snapshot(node)["amount"] == 2.5
    node.put("amount", 3)  # an int is no member's JSON form: the first member that takes it (Decimal)
    assert node.amount == Decimal(3)
    with pytest.raises(ValidationError) as raised:
        node.put("either", 1.5)
    assert raised.value.errors[0][0] == "/either" and "datetime | int" in raised.value.errors[0][1]
    assert node.either == 5


def test_scalar_unions_and_literals_work_as_fields() -> None:
    @model
    class Limits:
        cap: int | str = 0
        tokens: int | Literal["auto"] = "auto"
        ids: list[uuid.UUID | int] = []

    limits = Limits.create({"cap": "none", "ids": [1, "00000000-0000-0000-0000-000000000003"]})
    assert limits.cap == "none" and limits.tokens == "auto" and limits.ids[1] == uuid.UUID(int=3)
    assert get_snapshot(limits) == {"cap": "none", "tokens": "auto", "ids": [1, "00000000-0000-0000-0000-000000000003"]}
    with pytest.raises(ValidationError):
        Limits.create({"tokens": "many"})


@pytest.mark.parametrize(
    ("annotation", "words"),
    [
        (dt.datetime | Decimal, "both datetime and Decimal are written as a JSON string"),
        (dt.date | str | None, "both date and str are written as a JSON string"),
        (dt.timedelta | float, "both timedelta and float are written as a JSON float"),
        (Colour | str, "both Colour and str are written as a JSON string"),
        (Rgb | int, "the JSON form of Rgb is not known"),
    ],
)
def test_a_union_whose_json_forms_overlap_is_refused_by_name(annotation: Any, words: str) -> None:
    with pytest.raises(TypeError, match=words):

        @model
        class Ambiguous:
            value: annotation = None  # type: ignore[valid-type]

        Ambiguous.create()  # (a model's types are built on its first use)


@pytest.mark.parametrize("annotation", [Item | str, Item | dt.datetime | None, list[int] | str])
def test_a_union_of_nodes_and_values_is_refused_by_name(annotation: Any) -> None:
    @model
    class Mixed:
        value: annotation = None  # type: ignore[valid-type]

    with pytest.raises(TypeError, match=r"holds either tree nodes \(models, lists, dicts\) or values"):
        Mixed.create()


def test_equal_values_in_lists_and_dicts_write_nothing_but_other_forms_do() -> None:
    moment = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    elsewhere = moment.astimezone(dt.timezone(dt.timedelta(hours=1)))  # == moment, another JSON form
    node = Values.create({"moments": [moment.isoformat()], "prices": {"tea": "1.50"}})
    patches: list[Any] = []
    on_patch(node, lambda patch, inverse: patches.append(patch))
    node.put("moments", [moment])
    node.put("prices", {"tea": Decimal("1.50")})
    unprotect(node)
    node.moments[0] = moment
    node.moments[0:1] = [moment]
    apply_snapshot(node, {**get_snapshot(node), "moments": [moment]})
    assert patches == []
    node.moments[0:1] = [elsewhere]
    node.prices["tea"] = Decimal("1.5")
    apply_snapshot(node.moments, [moment])
    assert patches == [
        {"op": "replace", "path": "/moments", "value": [elsewhere.isoformat()]},
        {"op": "replace", "path": "/prices/tea", "value": "1.5"},
        {"op": "replace", "path": "/moments", "value": [moment.isoformat()]},
    ]
    assert node.moments[0].utcoffset() == dt.timedelta(0)


def test_a_timedelta_is_held_as_its_json_form_holds_it() -> None:
    span = dt.timedelta(days=99421, microseconds=1)  # float seconds cannot hold this microsecond
    node = Values.create({"span": span})
    assert node.span == Values.create(_wire(get_snapshot(node))).span
    assert abs(node.span - span) <= dt.timedelta(microseconds=1)


# --- node arguments ------------------------------------------------------------------------------------------


@model
class Card:
    id: t.Identifier
    title: str = ""

    @action
    def copy_title(self, other: Card) -> None:
        self.title = other.title


@model
class Deck:
    cards: list[Card] = []
    gone: list[str] = []
    top: t.Reference[Card] | None = None

    @action
    def discard(self, card: Card) -> None:
        self.gone.append(card.id)
        self.cards.remove(card)

    @action
    def choose(self, card: Card) -> None:
        self.top = card

    @action
    def add(self, card: Card, *, before: Card | None = None) -> None:
        self.cards.insert(self.cards.index(before) if before is not None else len(self.cards), card)

    @action
    def move_all(self, order: list[Card]) -> None:
        for card in order:
            self.cards.append(detach(card))


@model
class Table:
    decks: dict[str, Deck] = {}


def _deck(*ids: str) -> Deck:
    return Deck.create({"cards": [{"id": name, "title": name.upper()} for name in ids]})


def test_node_arguments_are_recorded_as_their_path_when_the_call_started() -> None:
    deck = _deck("a", "b", "c")
    recorder = record_actions(deck)
    deck.discard(deck.cards[1])
    deck.choose(deck.cards[1])
    deck.add(Card.create({"id": "n", "title": "new"}), before=deck.cards[0])
    assert recorder.actions == [
        {"name": "discard", "path": "", "args": [{"$MST_NODE_PATH": "/cards/1", "id": "b"}]},
        {"name": "choose", "path": "", "args": [{"$MST_NODE_PATH": "/cards/1", "id": "c"}]},
        {
            "name": "add",
            "path": "",
            "args": [{"id": "n", "title": "new"}],  # a node of another tree: its snapshot
            "kwargs": {"before": {"$MST_NODE_PATH": "/cards/0", "id": "a"}},
        },
    ]
    copy = _deck("a", "b", "c")
    apply_action(copy, _wire(recorder.actions))
    assert get_snapshot(copy) == get_snapshot(deck)
    assert copy.top is copy.cards[-1]


def test_node_paths_are_relative_to_the_listening_node() -> None:
    table = Table.create({"decks": {"x": get_snapshot(_deck("a", "b"))}})
    deck = table.decks["x"]
    on_table: list[Any] = []
    on_deck: list[Any] = []
    on_card: list[Any] = []
    on_action(table, on_table.append)
    on_action(deck, on_deck.append)
    on_action(deck.cards[0], on_card.append)
    deck.cards[0].copy_title(deck.cards[1])
    assert on_table[0]["path"] == "/decks/x/cards/0" and on_table[0]["args"] == [
        {"$MST_NODE_PATH": "/decks/x/cards/1", "id": "b"}
    ]
    assert on_deck[0]["path"] == "/cards/0" and on_deck[0]["args"] == [{"$MST_NODE_PATH": "/cards/1", "id": "b"}]
    assert on_card[0]["path"] == "" and on_card[0]["args"] == [{"$MST_NODE_PATH": "../1", "id": "b"}]
    copy = Deck.create(get_snapshot(_deck("a", "b")))
    apply_action(copy, _wire(on_deck))
    assert get_snapshot(copy) == get_snapshot(deck)
    lone = clone(_deck("a", "b").cards[0])
    with pytest.raises(MSTError):
        apply_action(lone, _wire(on_card))  # "../1" leads out of a root


def test_a_call_replayed_on_a_changed_tree_finds_its_node_by_identifier() -> None:
    deck = _deck("a", "b", "c")
    recorder = record_actions(deck)
    deck.discard(deck.cards[1])  # recorded as /cards/1, "b"
    moved = _deck("x", "a", "b", "c")  # a card came in front since: /cards/1 is "a" there
    apply_action(moved, recorder.actions)
    assert [card.id for card in moved.cards] == ["x", "a", "c"] and list(moved.gone) == ["b"]
    gone = _deck("a", "c")
    with pytest.raises(MSTError, match="identifier 'b'"):
        apply_action(gone, recorder.actions)
    assert [card.id for card in gone.cards] == ["a", "c"]


def test_nodes_without_an_identifier_are_named_by_path_alone() -> None:
    @model
    class Note:
        text: str = ""

    @model
    class Pad:
        notes: list[Note] = []
        last: str = ""

        @action
        def read(self, note: Note, notes: list[Note]) -> None:
            self.last = f"{note.text}/{len(notes)}"

    pad = Pad.create({"notes": [{"text": "one"}, {"text": "two"}]})
    copy = clone(pad)
    recorder = record_actions(pad)
    pad.read(pad.notes[1], pad.notes)
    assert recorder.actions[0]["args"] == [{"$MST_NODE_PATH": "/notes/1"}, {"$MST_NODE_PATH": "/notes"}]
    apply_action(copy, _wire(recorder.actions))
    assert copy.last == "two/2"


def test_session_logs_carry_node_paths_and_replay_them(tmp_path: Path) -> None:
    deck = _deck("a", "b", "c")
    initial = get_snapshot(deck)
    with record_session(deck, tmp_path / "deck.jsonl"):
        deck.discard(deck.cards[0])
        deck.move_all([deck.cards[1], deck.cards[0]])
    log = SessionLog.open(tmp_path / "deck.jsonl")
    calls = [entry.action for entry in log]
    assert calls[1] == {
        "name": "move_all",
        "path": "",
        "args": [[{"$MST_NODE_PATH": "/cards/1", "id": "c"}, {"$MST_NODE_PATH": "/cards/0", "id": "b"}]],
    }
    copy = Deck.create(initial)
    apply_action(copy, calls)
    assert get_snapshot(copy) == get_snapshot(deck)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["discard", "choose", "add", "move_all"]), st.integers(0, 9)), max_size=8))
def test_actions_with_node_arguments_replay_to_the_same_state(steps: list[tuple[str, int]]) -> None:
    live = _deck("a", "b", "c", "d")
    copy = clone(live)
    recorder = record_actions(live)
    for number, (name, pick) in enumerate(steps):
        cards = live.cards
        if name == "add":
            live.add(Card.create({"id": f"n{number}"}), before=cards[pick % len(cards)] if cards else None)
        elif cards:
            card = cards[pick % len(cards)]
            if name == "move_all":
                live.move_all(list(reversed(cards))[: pick % 3 + 1])
            else:
                getattr(live, name)(card)
    apply_action(copy, _wire(recorder.actions))
    assert get_snapshot(copy) == get_snapshot(live)


def _value_annotation(name: str) -> Any:
    """The value type of a ``Values`` field (its annotation without ``| None``)."""
    (field,) = (field for field in attrs.fields(Values) if field.name == name)
    return functools.reduce(operator.or_, [arg for arg in typing.get_args(field.type) if arg is not type(None)])


@pytest.mark.parametrize("name", sorted(VALUES))
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_every_value_type_round_trips_inside_lists_and_dicts(name: str, data: st.DataObject) -> None:
    annotation = _value_annotation(name)

    @model
    class Many:
        items: list[annotation] = []  # type: ignore[valid-type]
        by_key: dict[str, annotation] = {}  # type: ignore[valid-type]

    items = data.draw(st.lists(VALUES[name], max_size=3))
    node = Many.create({"items": items, "by_key": {str(i): item for i, item in enumerate(items)}})
    again = Many.create(_wire(get_snapshot(node)))
    assert list(again.items) == list(node.items) == [_held(item) for item in items]
    assert dict(again.by_key) == {str(i): _held(item) for i, item in enumerate(items)}
    assert get_snapshot(again) == get_snapshot(node)
    if items:  # apply_patch takes the value itself as well as its JSON form
        unprotect(again)
        apply_patch(again, {"op": "add", "path": "/items/-", "value": items[0]})
        assert again.items[-1] == _held(items[0]) and get_snapshot(again)["items"][-1] == get_snapshot(node)["items"][0]


def test_session_logs_carry_values_and_replay_them(tmp_path: Path) -> None:
    live = Values.create()
    when = dt.datetime(2025, 3, 1, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    with record_session(live, tmp_path / "values.jsonl"):
        live.set_when(when, money=Decimal("19.90"), days=[dt.date(2025, 1, 2)])
    (entry,) = SessionLog.open(tmp_path / "values.jsonl")
    assert entry.action == {
        "name": "set_when",
        "path": "",
        "args": ["2025-03-01T09:30:00+01:00"],
        "kwargs": {"money": "19.90", "days": ["2025-01-02"]},
    }
    copy = Values.create()
    apply_action(copy, entry.action)
    assert get_snapshot(copy) == get_snapshot(live) and copy.money == Decimal("19.90")
