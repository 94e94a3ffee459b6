"""``value_converter``: the one cattrs Converter between leaf values (datetimes, decimals, enums, frozen
dataclasses, ...) and their JSON form. Value fields, snapshots, patches and action calls all convert through it, so
a hook registered on it applies everywhere. A leaf module: it imports nothing from mst_llm.

JSON forms: datetime/date/time as ISO 8601 (timezone kept), timedelta as seconds (float), Decimal as a string
(digits kept), UUID and paths as strings, enums as their value, tuples as lists, frozensets as sorted lists,
frozen attrs classes and dataclasses as dicts. Structuring is strict: a JSON form of the wrong kind raises.
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
from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from decimal import Decimal, InvalidOperation
from pathlib import PurePath
from typing import Any

import attrs
import cattrs
from cattrs.errors import StructureHandlerNotFoundError


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
    if isinstance(value, dt.timedelta):
        return value
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


# --- which annotations are values ----------------------------------------------------------------------------

_JSON_SCALARS = frozenset({str, int, float, bool, type(None)})


def is_frozen_class(cls: type) -> bool:
    """Whether ``cls`` is a frozen dataclass or a frozen attrs class (instances cannot change)."""
    if dataclasses.is_dataclass(cls):
        return bool(cls.__dataclass_params__.frozen)  # type: ignore[attr-defined]
    return attrs.has(cls) and getattr(cls.__setattr__, "__name__", "") == "_frozen_setattrs"


def is_value_annotation(annotation: Any) -> bool:
    """Whether ``annotation`` is a value type the converter handles: not a JSON scalar, not a tree node type,
    a frozen class if it is a record class, and built only of such types and JSON scalars."""
    if annotation in _JSON_SCALARS or hasattr(annotation, "_mst_kind"):
        return False
    origin = typing.get_origin(annotation)
    if origin is not None:
        args = [arg for arg in typing.get_args(annotation) if arg is not Ellipsis]
        return (
            origin in (tuple, frozenset)
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
