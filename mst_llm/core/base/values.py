"""``value_converter``: the one cattrs Converter between leaf values (datetimes, decimals, enums, frozen
dataclasses, ...) and their JSON form. Value fields, snapshots, patches and action calls all convert through it, so
a hook registered on it applies everywhere. A leaf module: it imports nothing from mst_llm.

JSON forms: datetime/date/time as ISO 8601 (timezone kept), timedelta as seconds (float), Decimal as a string
(digits kept), UUID and paths as strings, enums as their value, tuples as lists, sets and frozensets as sorted
lists, frozen attrs classes and dataclasses as dicts. A union of such types (``datetime | int``) is structured by
the class of the value, else by the kind of its JSON form, which must differ between the members. Structuring is
strict: a JSON form of the wrong kind raises.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import math
import types
import typing
import uuid
from collections.abc import Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from decimal import Decimal, InvalidOperation
from pathlib import PurePath
from typing import Any

import attrs
import cattrs
from cattrs.errors import IterableValidationError, IterableValidationNote, StructureHandlerNotFoundError


def _sorted_list(items: Iterable[Any]) -> list[Any]:
    """A frozenset's JSON form: its items sorted (by their JSON text when they do not compare)."""
    values = list(items)
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=lambda item: json.dumps(item, sort_keys=True))


value_converter = cattrs.Converter(
    forbid_extra_keys=True,
    unstruct_collection_overrides={AbstractSet: _sorted_list, tuple: list},
)


def _strict(kinds: tuple[type, ...], convert: Callable[[Any], Any] | None = None) -> Callable[[Any, Any], Any]:
    """A structure hook that accepts only ``kinds`` (bool never counts as a number)."""

    def structure(value: Any, cls: Any) -> Any:
        if cls not in kinds:  # a StrEnum or IntEnum: the str or int hook is the nearest one to its class
            return cls(value)
        if isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds):
            return value if convert is None else convert(value)
        raise TypeError(f"expected {cls.__name__}, got {type(value).__name__}")

    return structure


value_converter.register_structure_hook(str, _strict((str,)))
value_converter.register_structure_hook(int, _strict((int,)))
value_converter.register_structure_hook(float, _strict((int, float), float))
value_converter.register_structure_hook(bool, _strict((bool,)))


def _unstructure_scalar(value: Any) -> Any:
    """A str or int as it is; a StrEnum or IntEnum member (a str or int subclass) as its value."""
    return value.value if isinstance(value, enum.Enum) else value


value_converter.register_unstructure_hook(str, _unstructure_scalar)
value_converter.register_unstructure_hook(int, _unstructure_scalar)


def _iso(cls: type, parse: Callable[[str], Any]) -> Callable[[Any, Any], Any]:
    """Structure ``cls`` from an instance of exactly ``cls`` (a datetime is no date) or its ISO 8601 text."""

    def structure(value: Any, _: Any) -> Any:
        if type(value) is cls:
            return value
        if isinstance(value, str):
            return parse(value)
        raise TypeError(f"expected {cls.__name__} or an ISO 8601 string, got {type(value).__name__}")

    return structure


for _cls in (dt.datetime, dt.date, dt.time):
    value_converter.register_structure_hook(_cls, _iso(_cls, _cls.fromisoformat))
    value_converter.register_unstructure_hook(_cls, _cls.isoformat)


def _structure_timedelta(value: Any, _: Any) -> dt.timedelta:
    # a timedelta is rounded to what its JSON form (float seconds) holds, so the value read back and the value a
    # replica builds from the snapshot are equal (past ~10**8 s a float no longer holds every microsecond)
    if isinstance(value, dt.timedelta):
        value = value.total_seconds()
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return dt.timedelta(seconds=value)
    raise TypeError(f"expected timedelta or seconds as a number, got {type(value).__name__}")


value_converter.register_structure_hook(dt.timedelta, _structure_timedelta)
value_converter.register_unstructure_hook(dt.timedelta, dt.timedelta.total_seconds)


def _structure_decimal(value: Any, _: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, str):
        try:
            return Decimal(value)
        except InvalidOperation:
            raise ValueError(f"{value!r} is not a decimal number") from None
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    raise TypeError(f"expected Decimal, a decimal string or an int, got {type(value).__name__}")


value_converter.register_structure_hook(Decimal, _structure_decimal)
value_converter.register_unstructure_hook(Decimal, str)


def _structure_uuid(value: Any, _: Any) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str):
        return uuid.UUID(value)
    raise TypeError(f"expected UUID or its string, got {type(value).__name__}")


value_converter.register_structure_hook(uuid.UUID, _structure_uuid)
value_converter.register_unstructure_hook(uuid.UUID, str)


def _is_path(cls: Any) -> bool:
    return isinstance(cls, type) and issubclass(cls, PurePath)


def _structure_path(value: Any, cls: Any) -> PurePath:
    if type(value) is cls:
        return value  # type: ignore[no-any-return]
    if isinstance(value, (str, PurePath)):
        return cls(value)  # type: ignore[no-any-return]
    raise TypeError(f"expected {cls.__name__} or its string, got {type(value).__name__}")


value_converter.register_structure_hook_func(_is_path, _structure_path)
value_converter.register_unstructure_hook_func(_is_path, str)


def _is_collection(cls: Any) -> bool:
    return typing.get_origin(cls) in (tuple, frozenset, set) and bool(typing.get_args(cls))


def _structure_collection(cls: Any) -> Callable[[Any, Any], Any]:
    """A tuple, set or frozenset from a list or from such a collection itself (cattrs' own hooks take any
    iterable, so a string would become its characters and a dict its keys); a fixed tuple needs its length."""
    origin = typing.get_origin(cls)
    args = typing.get_args(cls)
    homogeneous = origin is not tuple or (len(args) == 2 and args[1] is Ellipsis)
    hooks = [(arg, value_converter.get_structure_hook(arg)) for arg in (args[:1] if homogeneous else args)]

    def structure(value: Any, _: Any) -> Any:
        if not (isinstance(value, (list, tuple)) or (isinstance(value, AbstractSet) and origin is not tuple)):
            raise TypeError(f"expected a list, got {type(value).__name__}")
        items = list(value)
        if not homogeneous and len(items) != len(hooks):
            raise ValueError(f"expected {len(hooks)} items, got {len(items)}")
        result: list[Any] = []
        errors: list[Exception] = []
        for index, item in enumerate(items):
            arg, hook = hooks[0 if homogeneous else index]
            try:
                result.append(hook(item, arg))
            except Exception as error:
                error.__notes__ = [
                    *getattr(error, "__notes__", []),
                    IterableValidationNote(f"item {index}", index, arg),
                ]
                errors.append(error)
        if errors:
            raise IterableValidationError(f"While structuring {cls!r}", errors, cls)
        return origin(result)

    return structure


value_converter.register_structure_hook_factory(_is_collection, _structure_collection)


# --- unions of values --------------------------------------------------------------------------------------

# the kind of JSON value each Python class is written as (bool before int: True is an int too)
_JSON_KIND = {str: "string", bool: "boolean", int: "integer", float: "float", type(None): "null"}
_VALUE_FORMS: tuple[tuple[tuple[type, ...], str], ...] = (
    ((dt.date, dt.time, Decimal, uuid.UUID, PurePath), "string"),  # (a datetime is a date)
    ((dt.timedelta,), "float"),
)


def json_kind(value: Any) -> str | None:
    """The kind of JSON value ``value`` is: "string", "integer", "float", "boolean", "null", "array", "object"."""
    for cls in type(value).__mro__:
        kind = _JSON_KIND.get(cls)
        if kind is not None:
            return kind
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return None


def _json_kinds(annotation: Any) -> frozenset[str] | None:
    """The kinds of JSON value the JSON forms of ``annotation`` take; None when unknown (a class with hooks of
    its own: only a sample could tell)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        kinds = {json_kind(value) for value in typing.get_args(annotation)}
        return None if None in kinds else frozenset(kinds)  # type: ignore[arg-type]
    if origin in (tuple, frozenset, set):
        return frozenset({"array"})
    if not isinstance(annotation, type):
        return None
    if annotation in _JSON_KIND:
        return frozenset({_JSON_KIND[annotation]})
    if issubclass(annotation, enum.Enum):
        kinds = {json_kind(value_converter.unstructure(member)) for member in annotation}
        return None if None in kinds else frozenset(kinds)  # type: ignore[arg-type]
    for classes, kind in _VALUE_FORMS:
        if issubclass(annotation, classes):
            return frozenset({kind})
    if is_frozen_class(annotation):
        return frozenset({"object"})
    return None


def label(annotation: Any) -> str:
    """An annotation as it is written (``datetime``, ``tuple[int, ...]``, ``datetime | int``)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Ellipsis or annotation is type(None):
        return "..." if annotation is Ellipsis else "None"
    if origin is typing.Union or origin is types.UnionType:
        return " | ".join(label(arg) for arg in args)
    if origin is typing.Literal:
        return f"Literal[{', '.join(map(repr, args))}]"
    if origin is not None:
        return f"{label(origin)}[{', '.join(label(arg) for arg in args)}]"
    return annotation.__name__ if isinstance(annotation, type) else repr(annotation)


def _union_members(annotation: Any) -> list[Any] | None:
    """The members (None left out) of a union of JSON scalars, literals and value types; None otherwise."""
    if typing.get_origin(annotation) not in (typing.Union, types.UnionType):
        return None
    members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    for member in members:
        if not (member in _JSON_SCALARS or typing.get_origin(member) is typing.Literal or is_value_annotation(member)):
            return None
    return members


def _structure_union(cls: Any) -> Callable[[Any, Any], Any]:
    """A union of values: the member whose class the value is an instance of, else the one whose JSON form has
    the value's kind, else the first that takes it. Members whose JSON forms share a kind are refused here
    (TypeError, when the model's types are built): a snapshot could not tell which one it holds."""
    members = _union_members(cls) or []
    nullable = type(None) in typing.get_args(cls)
    by_kind: dict[str, Any] = {}
    for member in members:
        kinds = _json_kinds(member)
        if kinds is None:
            raise TypeError(
                f"{label(cls)}: the JSON form of {label(member)} is not known, so a snapshot of the union could "
                "not tell which member it holds (use t.custom for the whole union)"
            )
        for kind in kinds:
            if kind in by_kind:
                raise TypeError(
                    f"{label(cls)}: both {label(by_kind[kind])} and {label(member)} are written as a JSON {kind}, "
                    "so a snapshot could not tell which one it holds (use one type, a frozen dataclass with a field "
                    "per alternative, or t.custom)"
                )
            by_kind[kind] = member
    classes = [(member, typing.get_origin(member) or member) for member in members]
    classes = [(member, held) for member, held in classes if isinstance(held, type)]
    hooks = {id(member): value_converter.get_structure_hook(member) for member in members}

    def structure(value: Any, _: Any) -> Any:
        if value is None and nullable:
            return None
        member = next((member for member, held in classes if type(value) is held), None)
        if member is None:
            member = next((member for member, held in classes if isinstance(value, held)), None)
        if member is None:
            member = by_kind.get(json_kind(value) or "")
        if member is not None:
            return hooks[id(member)](value, member)
        for member in members:  # no member's JSON form has this kind (an int for ``Decimal | float``): try in order
            try:
                return hooks[id(member)](value, member)
            except Exception:
                continue
        raise TypeError(f"none of its members takes this {type(value).__name__}")

    return structure


value_converter.register_structure_hook_factory(lambda cls: _union_members(cls) is not None, _structure_union)


# --- which annotations are values ----------------------------------------------------------------------------

_JSON_SCALARS = frozenset({str, int, float, bool, type(None)})


def is_frozen_class(cls: type) -> bool:
    """Whether ``cls`` is a frozen dataclass or a frozen attrs class (instances cannot change)."""
    if dataclasses.is_dataclass(cls):
        return bool(cls.__dataclass_params__.frozen)  # type: ignore[attr-defined]
    return attrs.has(cls) and getattr(cls.__setattr__, "__name__", "") == "_frozen_setattrs"


def is_value_annotation(annotation: Any) -> bool:
    """Whether ``annotation`` is a value type the converter handles: not a JSON scalar, not a tree node type,
    a frozen class if it is a record class, and built only of such types and JSON scalars; or a union of two or
    more of them and JSON scalars and literals (None may be one more)."""
    if annotation in _JSON_SCALARS or hasattr(annotation, "_mst_kind"):
        return False
    members = _union_members(annotation)
    if members is not None:  # a union of two or more values (``X | None`` alone is a nullable X)
        return len(members) > 1 and not all(typing.get_origin(member) is typing.Literal for member in members)
    origin = typing.get_origin(annotation)
    if origin is not None:
        args = [arg for arg in typing.get_args(annotation) if arg is not Ellipsis]
        return (
            origin in (tuple, frozenset, set)
            and bool(args)
            and all(arg in _JSON_SCALARS or is_value_annotation(arg) for arg in args)
        )
    if not isinstance(annotation, type):
        return False
    if issubclass(annotation, (dt.date, dt.time, dt.timedelta, Decimal, uuid.UUID, PurePath, enum.Enum)):
        return True
    if dataclasses.is_dataclass(annotation) or attrs.has(annotation):
        return is_frozen_class(annotation)
    try:
        value_converter.get_structure_hook(annotation)
    except StructureHandlerNotFoundError:
        return False
    return True


def is_value_hint(hint: Any) -> bool:
    """Whether an action parameter annotated ``hint`` takes a value the converter structures back on replay: a
    value type, or a ``list``, ``dict[str, ...]`` or ``X | None`` of one."""
    if is_value_annotation(hint):
        return True
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is list:
        return is_value_hint(args[0])
    if origin is dict:
        return args[0] is str and is_value_hint(args[1])
    if origin is typing.Union or origin is types.UnionType:
        present = [arg for arg in args if arg is not type(None)]
        return len(present) == 1 < len(args) and is_value_hint(present[0])
    return False
