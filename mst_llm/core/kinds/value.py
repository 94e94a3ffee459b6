"""Values: leaf fields whose Python value is not JSON (``datetime``, ``Decimal``, enums, frozen dataclasses, ...).

The node stores the value itself, so reads return it; snapshots and patches hold its JSON form from
``value_converter``; writes accept either form. ``t.custom`` declares a one-off value type with its own pair of
functions (MST ``types.custom``).
"""

from __future__ import annotations

import datetime as dt
import enum
import typing
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import PurePath
from typing import Any

from cattrs import transform_error
from cattrs.errors import BaseValidationError

from mst_llm.core.base.frozen import FrozenDict, FrozenList, freeze
from mst_llm.core.base.values import label, value_converter
from mst_llm.core.kinds.base import MISSING, Errors, Type, _kind, _show

# values whose JSON form is a scalar: their snapshots need no freezing
_SCALAR_FORMS = (dt.date, dt.time, dt.timedelta, Decimal, uuid.UUID, PurePath, enum.Enum)


def _reason(error: Exception) -> str:
    if isinstance(error, BaseValidationError):
        return "; ".join(transform_error(error))
    return str(error) or type(error).__name__


class ValueType(Type):
    """A value type the converter handles, named by its annotation (``datetime``, ``tuple[int, ...]``, ...).

    A ``set[X]`` holds a frozenset: a value in the tree never changes in place (assign a new set instead)."""

    is_plain = False

    def __init__(self, annotation: Any) -> None:
        self.name = label(annotation)
        if typing.get_origin(annotation) is set:
            annotation = frozenset[typing.get_args(annotation)]  # type: ignore[misc]
        self.annotation = annotation
        # exact instances are the value itself: always valid, stored as they are (the fast path); a timedelta is
        # rounded to its JSON form by its hook
        self.exact = annotation if isinstance(annotation, type) and annotation is not dt.timedelta else None
        self._structure = value_converter.get_structure_hook(annotation)
        self._unstructure = value_converter.get_unstructure_hook(annotation)
        self._scalar_form = isinstance(annotation, type) and issubclass(annotation, _SCALAR_FORMS)
        # Memos keyed by identity (the hooks are pure functions of their input, and values never change): the
        # input ``validate`` structured last, which ``create`` is asked for next; the last two values whose JSON
        # form ``snapshot`` gave, which a write asks for twice each (the equality test, then the patch pair).
        self._structured: tuple[Any, Any] = (MISSING, None)
        self._formed: tuple[Any, Any, Any, Any] = (MISSING, None, MISSING, None)

    def validate(self, value: Any, path: str, errors: Errors) -> None:
        if type(value) is self.exact:
            return
        try:
            self._structured = (value, self._structure(value, self.annotation))
        except Exception as error:
            message = f"expected {self.name} (the value or its JSON form), got {_kind(value)} {_show(value)}"
            errors.append((path, f"{message}: {_reason(error)}"))

    def create(self, value: Any) -> Any:
        if type(value) is self.exact:
            return value
        structured = self._structured
        if structured[0] is value:
            return structured[1]
        return self._structure(value, self.annotation)

    def snapshot(self, stored: Any) -> Any:
        formed = self._formed
        if formed[0] is stored:
            return formed[1]
        if formed[2] is stored:
            return formed[3]
        form = self._unstructure(stored) if self._scalar_form else freeze(self._unstructure(stored))
        self._formed = (stored, form, formed[0], formed[1])
        return form


def _is_json(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool, list, tuple, Mapping, FrozenDict, FrozenList))


class CustomType(Type):
    """A one-off value type: ``from_snapshot`` builds the value from its JSON form, ``to_snapshot`` goes back.

    A JSON value given to it is a snapshot; anything else is the value itself."""

    is_plain = False

    def __init__(
        self,
        name: str,
        to_snapshot: Callable[[Any], Any],
        from_snapshot: Callable[[Any], Any],
        is_valid: Callable[[Any], bool] | None,
    ) -> None:
        self.name = name
        self.to_snapshot = to_snapshot
        self.from_snapshot = from_snapshot
        self.is_valid_snapshot = is_valid

    def validate(self, value: Any, path: str, errors: Errors) -> None:
        expected = f"expected {self.name} (the value or its JSON form), got {_kind(value)} {_show(value)}"
        try:
            if not _is_json(value):
                self.to_snapshot(value)
            elif self.is_valid_snapshot is not None:
                if not self.is_valid_snapshot(value):
                    errors.append((path, expected))
            else:
                self.from_snapshot(value)
        except Exception as error:
            errors.append((path, f"{expected}: {_reason(error)}"))

    def create(self, value: Any) -> Any:
        return self.from_snapshot(value) if _is_json(value) else value

    def snapshot(self, stored: Any) -> Any:
        return freeze(self.to_snapshot(stored))


def custom(
    name: str,
    to_snapshot: Callable[[Any], Any],
    from_snapshot: Callable[[Any], Any],
    is_valid: Callable[[Any], bool] | None = None,
) -> Type:
    """A value type with its own conversion (MST ``types.custom``): use it as ``Annotated[Money, t.custom(...)]``.

    ``to_snapshot(value)`` gives the JSON form, ``from_snapshot(json)`` the value; ``is_valid(json)`` checks a
    JSON form (without it, a JSON form is valid when ``from_snapshot`` accepts it)."""
    return CustomType(name, to_snapshot, from_snapshot, is_valid)
