"""Annotations -> types: how ``@model`` reads a field's annotation (classes, typing constructs, the ``t`` markers
and string forward references), and the public type constructors that take annotations."""

from __future__ import annotations

import builtins
import dataclasses
import functools
import operator
import sys
import types as _pytypes
import typing
import weakref
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar, Union

import attrs

from mst_llm.core.base.values import is_value_annotation, label
from mst_llm.core.kinds.base import (
    BOOL,
    FLOAT,
    INT,
    NONE,
    STR,
    FrozenType,
    LateType,
    LiteralType,
    Nullable,
    Refinement,
    SnapshotProcessor,
    Type,
    union_of,
)
from mst_llm.core.kinds.dict import DictType
from mst_llm.core.kinds.list import ListType
from mst_llm.core.kinds.reference import ReferenceType
from mst_llm.core.kinds.value import ValueType

# Every model class by name, so that string annotations resolve even for classes defined inside functions.
registry: weakref.WeakValueDictionary[str, type] = weakref.WeakValueDictionary()


class _Marker:
    """``Annotated`` metadata that turns the annotated type into a reference or a frozen value."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"t.{self.name}"


_REFERENCE, _SAFE_REFERENCE, _FROZEN = _Marker("Reference"), _Marker("SafeReference"), _Marker("Frozen")


def _annotated(base: Any, metadata: tuple[Any, ...], namespace: Mapping[str, Any] | None) -> Type:
    for item in metadata:
        if item is _REFERENCE or item is _SAFE_REFERENCE:
            reference = ReferenceType(to_type(base, namespace), safe=item is _SAFE_REFERENCE)
            # a safe reference clears itself when its target goes away, so it can always hold None
            return Nullable(reference) if reference.safe else reference
        if item is _FROZEN:
            schema = getattr(base, "_mst_type", None)
            if isinstance(schema, Type) and schema.is_model:
                return FrozenType(schema=schema)
            origin = typing.get_origin(base) or base
            return FrozenType(origin if isinstance(origin, type) and origin not in (Any, object) else None)
        if isinstance(item, Type):
            return item
    return to_type(base, namespace)


def refinement(base: Any, predicate: Callable[[Any], bool], message: str | None = None, name: str = "") -> Type:
    """A type that accepts values of ``base`` for which ``predicate(value)`` is true."""
    base_type = to_type(base)
    return Refinement(base_type, predicate, message, name or f"refinement({base_type.name})")


def snapshot_processor(
    base: Any,
    pre_process: Callable[[Any], Any] | None = None,
    post_process: Callable[[Any], Any] | None = None,
) -> Type:
    """A type whose snapshots are transformed on input (``pre_process``) and output (``post_process``)."""
    return SnapshotProcessor(to_type(base), pre_process, post_process)


def to_type(annotation: Any, namespace: Mapping[str, Any] | None = None) -> Type:
    """Turn an annotation (class, typing construct, mst type or string forward reference) into a Type."""
    if isinstance(annotation, Type):
        return annotation
    if annotation is None or annotation is type(None):
        return NONE
    if isinstance(annotation, str):
        return _forward(annotation, namespace)
    if isinstance(annotation, typing.ForwardRef):
        return _forward(annotation.__forward_arg__, namespace)
    model_type = getattr(annotation, "_mst_type", None)
    if isinstance(model_type, Type) and model_type.is_model and isinstance(annotation, type):
        return model_type
    simple = {str: STR, int: INT, float: FLOAT, bool: BOOL}.get(annotation)
    if simple is not None:
        return simple
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        return LiteralType(args)
    if origin is Union or origin is _pytypes.UnionType:
        present = tuple(arg for arg in args if arg is not type(None))
        if len(present) > 1 and is_value_annotation(annotation):  # values (``datetime | int``): one value type
            value = ValueType(functools.reduce(operator.or_, present))
            return Nullable(value) if len(present) < len(args) else value
        members = [to_type(arg, namespace) for arg in args]
        known = [member for member in members if member is not NONE and not isinstance(member, LateType)]
        if any(member.is_node for member in known) and not all(member.is_node for member in known):
            raise TypeError(
                f"{label(annotation)}: a union holds either tree nodes (models, lists, dicts) or values, not both"
            )
        return union_of(members)
    if origin is list or annotation is list:
        return ListType(to_type(args[0], namespace) if args else FrozenType())
    if origin is dict or annotation is dict:
        if args and args[0] is not str:
            raise TypeError(f"dict keys must be str in {annotation!r}")
        return DictType(to_type(args[1], namespace) if args else FrozenType())
    if origin is typing.Annotated:
        return _annotated(args[0], annotation.__metadata__, namespace)
    if isinstance(annotation, TypeVar):
        return FrozenType()
    if annotation is object or annotation is Any:
        return FrozenType()
    if is_value_annotation(annotation):
        return ValueType(annotation)
    if isinstance(annotation, type) and (dataclasses.is_dataclass(annotation) or attrs.has(annotation)):
        raise TypeError(f"{annotation.__name__} must be frozen to be a value in the tree (its instances are shared)")
    raise TypeError(f"cannot turn annotation {annotation!r} into an mst_llm type")


def _forward(text: str, namespace: Mapping[str, Any] | None) -> Type:
    def resolve() -> Type:
        return to_type(evaluate(text, namespace), namespace)

    return LateType(resolve, text)


def evaluate(text: str, namespace: Mapping[str, Any] | None) -> Any:
    """Evaluate a string annotation in the defining module's namespace (and the model registry)."""
    return eval(text, {}, _Namespace(namespace))


class _Namespace(Mapping[str, Any]):
    """Names visible to a string annotation: the module's, the defining scope's, then every model class."""

    def __init__(self, base: Mapping[str, Any] | None) -> None:
        self.base = base or {}

    def __getitem__(self, key: str) -> Any:
        if key in self.base:
            return self.base[key]
        if key in registry:
            return registry[key]
        if key == "t":
            return sys.modules["mst_llm.core.types"]  # the public module, by name: it imports this one
        return getattr(builtins, key) if hasattr(builtins, key) else _raise_name(key)

    def __iter__(self) -> Any:
        return iter(self.base)

    def __len__(self) -> int:
        return len(self.base)


def _raise_name(key: str) -> Any:
    raise NameError(f"name {key!r} in an annotation is not defined")
