"""The type system: annotations become Type objects that validate values, create stored values (nodes for
models, lists and dicts), turn stored values into snapshots and decide whether a new value reconciles with the
current one.

A *stored* value is what a node keeps: a primitive, a child node, or (for references) an identifier.
"""

from __future__ import annotations

import functools
import math
import sys
import types as _pytypes
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any, Literal, TypeAlias, TypeVar, Union

from mst_llm.core.frozen import FrozenDict, FrozenList, freeze
from mst_llm.core.node import is_node
from mst_llm.core.patch import escape_json_path
from mst_llm.errors import ValidationError

MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING"})()

Errors = list[tuple[str, str]]


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _kind(value: Any) -> str:
    return "None" if value is None else type(value).__name__


class Type:
    """Base class of every mst_llm type."""

    name = "type"
    is_node = False  # stored values are child nodes
    is_plain = True  # stored value == snapshot and needs no conversion
    optional = False  # may be omitted from a snapshot (then ``default_snapshot()`` is used)
    is_safe_reference = False  # stored identifiers must be cleared when their target leaves the tree

    def validate(self, value: Any, path: str, errors: Errors) -> None:
        raise NotImplementedError

    def create(self, value: Any) -> Any:
        """The stored value for a validated input value."""
        return value

    def snapshot(self, stored: Any) -> Any:
        return stored

    def default_snapshot(self) -> Any:
        return MISSING

    def reconciles(self, current: Any, value: Any) -> bool:
        """Whether assigning ``value`` should update the node ``current`` in place."""
        return False

    def preprocess(self, value: Any) -> Any:
        """The snapshot a node of this type is reconciled with (snapshot processors transform it)."""
        return value

    def check(self, value: Any, path: str = "") -> None:
        errors: Errors = []
        self.validate(value, path, errors)
        if errors:
            raise ValidationError(errors)

    def is_valid(self, value: Any) -> bool:
        errors: Errors = []
        self.validate(value, "", errors)
        return not errors

    def __or__(self, other: Any) -> Type:
        return union_of([self, to_type(other)])

    def __ror__(self, other: Any) -> Type:
        return union_of([to_type(other), self])

    def __repr__(self) -> str:
        return f"<type {self.name}>"


class Primitive(Type):
    def __init__(
        self, name: str, exact: type, accepts: Callable[[Any], bool], convert: Callable[[Any], Any] | None = None
    ) -> None:
        self.name = name
        self.exact = exact  # exact instances are always valid: the fast path of generated validators
        self.accepts = accepts
        self.convert = convert
        self.identity_create = convert is None

    def validate(self, value: Any, path: str, errors: Errors) -> None:
        if not self.accepts(value):
            errors.append((path, f"expected {self.name}, got {_kind(value)} {_show(value)}"))

    def create(self, value: Any) -> Any:
        return value if self.convert is None else self.convert(value)


STR = Primitive("str", str, lambda v: isinstance(v, str))
INT = Primitive("int", int, lambda v: isinstance(v, int) and not isinstance(v, bool))
FLOAT = Primitive(
    "float",
    float,
    lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    lambda v: v if type(v) is float else float(v),
)
BOOL = Primitive("bool", bool, lambda v: v is True or v is False)


class LiteralType(Type):
    identity_create = True

    def __init__(self, values: Iterable[Any]) -> None:
        self.values = tuple(values)
        self.name = " | ".join(repr(v) for v in self.values)

    def validate(self, value: Any, path: str, errors: Errors) -> None:
        for allowed in self.values:
            if value == allowed and type(value) is type(allowed):
                return
        errors.append((path, f"expected one of {self.name}, got {_show(value)}"))


class IdentifierType(Type):
    """The node's identifier: unique per model type within a tree, never changed once set."""

    identity_create = True

    def __init__(self, numeric: bool) -> None:
        self.numeric = numeric
        self.name = "IdentifierNumber" if numeric else "Identifier"

    def validate(self, value: Any, path: str, errors: Errors) -> None:
        if self.numeric:
            if not (isinstance(value, int) and not isinstance(value, bool)):
                errors.append((path, f"expected an int identifier, got {_kind(value)} {_show(value)}"))
        elif not isinstance(value, str):
            errors.append((path, f"expected a str identifier, got {_kind(value)} {_show(value)}"))


class FrozenType(Type):
    """An immutable JSON value, replaced whole."""

    optional = True

    def __init__(self, container: type | None = None) -> None:
        self.container = container
        self.name = f"Frozen[{container.__name__}]" if container else "Frozen"

    def validate(self, value: Any, path: str, errors: Errors) -> None:
        if value is None:
            return
        if self.container is not None:
            allowed: tuple[type, ...] = (list, tuple) if self.container in (list, tuple) else (self.container,)
            if not isinstance(value, allowed):
                errors.append((path, f"expected {self.name}, got {_kind(value)}"))
                return
        _validate_json(value, path, errors)

    def create(self, value: Any) -> Any:
        return freeze(value)

    def default_snapshot(self) -> Any:
        return None


def _validate_json(value: Any, path: str, errors: Errors) -> None:
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            errors.append((path, f"{value!r} is not valid JSON"))
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                errors.append((path, f"JSON object keys must be str, got {_kind(key)}"))
            else:
                _validate_json(item, f"{path}/{key}", errors)
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _validate_json(item, f"{path}/{index}", errors)
        return
    errors.append((path, f"expected a JSON value, got {_kind(value)}"))


class Wrapper(Type):
    """A type that adds one behaviour to another (``wrapped``) and delegates everything else to it."""

    @property
    def wrapped(self) -> Type:
        raise NotImplementedError

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.wrapped.name

    @property
    def is_node(self) -> bool:  # type: ignore[override]
        return self.wrapped.is_node

    @property
    def is_plain(self) -> bool:  # type: ignore[override]
        return self.wrapped.is_plain

    @property
    def optional(self) -> bool:  # type: ignore[override]
        return self.wrapped.optional

    @property
    def is_safe_reference(self) -> bool:  # type: ignore[override]
        return self.wrapped.is_safe_reference

    def preprocess(self, value: Any) -> Any:
        return self.wrapped.preprocess(value)

    def validate(self, value: Any, path: str, errors: Errors) -> None:
        self.wrapped.validate(value, path, errors)

    def create(self, value: Any) -> Any:
        return self.wrapped.create(value)

    def snapshot(self, stored: Any) -> Any:
        return self.wrapped.snapshot(stored)

    def default_snapshot(self) -> Any:
        return self.wrapped.default_snapshot()

    def reconciles(self, current: Any, value: Any) -> bool:
        return self.wrapped.reconciles(current, value)


class Nullable(Wrapper):
    """``X | None``: holds None when empty; always present in snapshots (default None)."""

    def __init__(self, inner: Type) -> None:
        self.inner = inner

    @property
    def wrapped(self) -> Type:
        return self.inner

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"{self.inner.name} | None"

    @property
    def optional(self) -> bool:  # type: ignore[override]
        return True

    def validate(self, value: Any, path: str, errors: Errors) -> None:
        if value is not None:
            self.inner.validate(value, path, errors)

    def create(self, value: Any) -> Any:
        return None if value is None else self.inner.create(value)

    def snapshot(self, stored: Any) -> Any:
        return None if stored is None else self.inner.snapshot(stored)

    def default_snapshot(self) -> Any:
        return None

    def reconciles(self, current: Any, value: Any) -> bool:
        return current is not None and value is not None and self.inner.reconciles(current, value)


class WithDefault(Wrapper):
    """A type with a default snapshot used when the field is omitted."""

    def __init__(self, inner: Type, default: Any) -> None:
        self.inner = inner
        self.default = default

    @property
    def wrapped(self) -> Type:
        return self.inner

    @property
    def optional(self) -> bool:  # type: ignore[override]
        return True

    def default_snapshot(self) -> Any:
        default = self.default
        return default() if callable(default) and not isinstance(default, Type) else default


class Refinement(Wrapper):
    """Values of ``base`` for which ``predicate`` holds."""

    def __init__(self, base: Type, predicate: Callable[[Any], bool], message: str | None, name: str) -> None:
        self.base = base
        self.predicate = predicate
        self.message = message
        self.label = name

    @property
    def wrapped(self) -> Type:
        return self.base

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.label

    def validate(self, value: Any, path: str, errors: Errors) -> None:
        before = len(errors)
        self.base.validate(value, path, errors)
        if len(errors) == before and not self.predicate(value):
            errors.append((path, self.message or f"value {_show(value)} is not a valid {self.name}"))


class SnapshotProcessor(Wrapper):
    """Transforms snapshots on the way in (``pre_process``) and out (``post_process``)."""

    def __init__(
        self,
        base: Type,
        pre_process: Callable[[Any], Any] | None,
        post_process: Callable[[Any], Any] | None,
    ) -> None:
        self.base = base
        self.pre_process = pre_process
        self.post_process = post_process

    @property
    def wrapped(self) -> Type:
        return self.base

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"snapshot_processor({self.base.name})"

    @property
    def is_plain(self) -> bool:  # type: ignore[override]
        return self.base.is_plain and self.post_process is None

    def _pre(self, value: Any) -> Any:
        if self.pre_process is None or is_node(value):
            return value
        return self.pre_process(value)

    def preprocess(self, value: Any) -> Any:
        return self.base.preprocess(self._pre(value))

    def validate(self, value: Any, path: str, errors: Errors) -> None:
        try:
            value = self._pre(value)
        except Exception as error:
            errors.append((path, f"pre_process failed: {error}"))
            return
        self.base.validate(value, path, errors)

    def create(self, value: Any) -> Any:
        return self.base.create(self._pre(value))

    def snapshot(self, stored: Any) -> Any:
        snapshot = self.base.snapshot(stored)
        return snapshot if self.post_process is None else freeze(self.post_process(snapshot))

    def reconciles(self, current: Any, value: Any) -> bool:
        return self.base.reconciles(current, self._pre(value))


class LateType(Wrapper):
    """A forward reference, resolved on first use."""

    def __init__(self, resolve: Callable[[], Type], label: str) -> None:
        self._resolve = resolve
        self._resolved: Type | None = None
        self.label = label

    @property
    def resolved(self) -> Type:
        if self._resolved is None:
            self._resolved = self._resolve()
        return self._resolved

    @property
    def wrapped(self) -> Type:
        return self.resolved

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.label if self._resolved is None else self._resolved.name


class ModelType(Type):
    """The type of an @model class (held by the class as ``_mst_type``)."""

    is_node = True
    is_plain = False

    def __init__(self, cls: type) -> None:
        self.cls = cls
        self.name = cls.__name__

    @property
    def id_field(self) -> str | None:
        """The name of the identifier field, or None."""
        cls: Any = self.cls
        cls._mst_prepare()
        return cls._mst_id_field  # type: ignore[no-any-return]

    def validate(self, value: Any, path: str, errors: Errors) -> None:
        cls: Any = self.cls
        if isinstance(value, cls):
            _validate_node_value(value, path, errors)
            return
        if type(value) is dict or isinstance(value, Mapping):
            cls._mst_validate(value, path, errors)
            return
        if is_node(value):
            errors.append((path, f"expected a {self.name}, got a {type(value).__name__} node"))
        else:
            errors.append((path, f"expected a {self.name} snapshot (a mapping), got {_kind(value)} {_show(value)}"))

    def create(self, value: Any) -> Any:
        if isinstance(value, self.cls):
            return value
        return self.cls._mst_build(value)  # type: ignore[attr-defined]

    def snapshot(self, stored: Any) -> Any:
        snapshot = stored._snap
        return stored._mst_snapshot() if snapshot is None else snapshot

    def reconciles(self, current: Any, value: Any) -> bool:
        if type(current) is not self.cls or not isinstance(value, Mapping) or isinstance(value, self.cls):
            return False
        id_field = self.id_field
        if id_field is None:
            return True
        return bool(getattr(current, id_field) == value.get(id_field, MISSING))


def _validate_node_value(value: Any, path: str, errors: Errors) -> None:
    from mst_llm.core.node import is_alive

    if not is_alive(value):
        errors.append((path, f"cannot use a dead {type(value).__mro__[1].__name__} node"))


class UnionType(Type):
    """A union of model types, dispatched by a Literal discriminator field or by which type validates."""

    is_node = True
    is_plain = False

    def __init__(self, members: list[Type]) -> None:
        self.members = members
        self._discriminator: tuple[str, dict[Any, Type]] | bool | None = False

    @property
    def name(self) -> str:  # type: ignore[override]
        return " | ".join(member.name for member in self.members)

    def _models(self) -> list[ModelType]:
        return [m.resolved if isinstance(m, LateType) else m for m in self.members]  # type: ignore[misc]

    def discriminator(self) -> tuple[str, dict[Any, Type]] | None:
        if self._discriminator is False:
            self._discriminator = _find_discriminator(self._models())
        return self._discriminator  # type: ignore[return-value]

    def dispatch(self, value: Any) -> Type | None:
        for member in self._models():
            if isinstance(value, member.cls):
                return member
        if not isinstance(value, Mapping):
            return None
        found = self.discriminator()
        if found is not None and found[0] in value:
            return found[1].get(value[found[0]])
        for member in self._models():
            if member.is_valid(value):
                return member
        return None

    def validate(self, value: Any, path: str, errors: Errors) -> None:
        member = self.dispatch(value)
        if member is None:
            found = self.discriminator()
            if found is not None and isinstance(value, Mapping):
                errors.append((path, f"{found[0]}={_show(value.get(found[0]))} matches none of {self.name}"))
            else:
                errors.append((path, f"value matches none of {self.name}: {_show(value)}"))
            return
        member.validate(value, path, errors)

    def create(self, value: Any) -> Any:
        member = self.dispatch(value)
        assert member is not None
        return member.create(value)

    def snapshot(self, stored: Any) -> Any:
        snapshot = stored._snap
        return stored._mst_snapshot() if snapshot is None else snapshot

    def reconciles(self, current: Any, value: Any) -> bool:
        member = self.dispatch(value)
        return member is not None and member.reconciles(current, value)


def _find_discriminator(models: list[ModelType]) -> tuple[str, dict[Any, Type]] | None:
    if not models:
        return None
    first: Any = models[0].cls
    for field_name in first._mst_field_names:
        table: dict[Any, Type] = {}
        for member in models:
            spec = member.cls._mst_fields.get(field_name)  # type: ignore[attr-defined]
            literal = _unwrap(spec.type) if spec is not None else None
            if not isinstance(literal, LiteralType):
                break
            for allowed in literal.values:
                if allowed in table:
                    break
                table[allowed] = member
            else:
                continue
            break
        else:
            return field_name, table
    return None


def strip_late(type_: Type) -> Type:
    """Replace forward references by the types they resolve to, so hot paths skip the indirection."""
    try:
        while isinstance(type_, LateType):
            type_ = type_.resolved
    except NameError:
        return type_
    attributes = vars(type_)
    for name in ("inner", "base", "item", "value", "target"):
        child = attributes.get(name)
        if isinstance(child, Type):
            attributes[name] = strip_late(child)
    if isinstance(type_, UnionType):
        type_.members = [strip_late(member) for member in type_.members]
    return type_


def _is_reference(type_: Type) -> bool:
    base = _unwrap(type_)
    if isinstance(base, Nullable):
        base = _unwrap(base.inner)
    return isinstance(base, ReferenceType)


def _is_safe_reference(type_: Type) -> bool:
    base = _unwrap(type_)
    if isinstance(base, Nullable):
        base = _unwrap(base.inner)
    return isinstance(base, ReferenceType) and base.safe


def _unwrap(type_: Type) -> Type:
    while isinstance(type_, (WithDefault, LateType)):
        type_ = type_.inner if isinstance(type_, WithDefault) else type_.resolved
    return type_


class ListType(Type):
    is_node = True
    is_plain = False
    optional = True

    def __init__(self, item: Type) -> None:
        self.item = item

    @functools.cached_property
    def holds_safe_refs(self) -> bool:
        return _is_safe_reference(self.item)

    @functools.cached_property
    def id_field(self) -> str | None:
        """The identifier field of the item model type, if it has one (duplicates are invalid)."""
        base = _unwrap(self.item)
        return base.id_field if isinstance(base, ModelType) else None

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"list[{self.item.name}]"

    def validate(self, value: Any, path: str, errors: Errors) -> None:
        if type(value) is not list and is_node(value):
            _validate_node_value(value, path, errors)
            if not errors:
                value = list(value)
            else:
                return
        if isinstance(value, (list, tuple)):
            item = self.item
            exact = getattr(item, "exact", None)
            for index, element in enumerate(value):
                if type(element) is not exact:
                    item.validate(element, f"{path}/{index}", errors)
            if self.id_field is not None:
                _check_unique_ids(self.id_field, self.item, value, path, errors)
            return
        errors.append((path, f"expected a list, got {_kind(value)} {_show(value)}"))

    def create(self, value: Any) -> Any:
        from mst_llm.core.collections import ListNode, ReferenceListNode

        if isinstance(value, ListNode) and value._parent is None:
            return value  # a detached list node is adopted as it is
        cls = ReferenceListNode if self.holds_references else ListNode
        return cls._mst_build(self, value)

    @functools.cached_property
    def holds_references(self) -> bool:
        return _is_reference(self.item)

    def snapshot(self, stored: Any) -> Any:
        # no local reference to the cached snapshot: _mst_snapshot may update it in place when unshared
        if stored._snap is None or stored._dirty is not None:
            return stored._mst_snapshot()
        return stored._snap

    def default_snapshot(self) -> Any:
        return ()

    def reconciles(self, current: Any, value: Any) -> bool:
        return value is not current and isinstance(value, (list, tuple)) and not is_node(value)


def _check_unique_ids(id_field: str, item: Type, values: Iterable[Any], path: str, errors: Errors) -> None:
    base = _unwrap(item)
    seen: set[Any] = set()
    for index, element in enumerate(values):
        ident = element.get(id_field) if type(element) is dict or isinstance(element, Mapping) else None
        if ident is None:
            ident = getattr(element, id_field, None) if is_node(element) else None
            if ident is None:
                continue
        key = str(ident)
        if key in seen:
            errors.append((f"{path}/{index}", f"duplicate identifier {key!r} for type {base.name}"))
        seen.add(key)


class DictType(Type):
    is_node = True
    is_plain = False
    optional = True

    def __init__(self, value: Type) -> None:
        self.value = value

    @functools.cached_property
    def holds_safe_refs(self) -> bool:
        return _is_safe_reference(self.value)

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"dict[str, {self.value.name}]"

    def validate(self, value: Any, path: str, errors: Errors) -> None:
        if type(value) is not dict and is_node(value):
            _validate_node_value(value, path, errors)
            if errors:
                return
        if not isinstance(value, Mapping):
            errors.append((path, f"expected a dict, got {_kind(value)} {_show(value)}"))
            return
        base = _unwrap(self.value)
        id_field = base.id_field if isinstance(base, ModelType) else None
        for key, element in value.items():
            if not isinstance(key, str):
                errors.append((path, f"dict keys must be str, got {_kind(key)} {_show(key)}"))
                continue
            child_path = f"{path}/{escape_json_path(key)}"
            self.value.validate(element, child_path, errors)
            if id_field is not None:
                ident = element.get(id_field) if isinstance(element, Mapping) else getattr(element, id_field, None)
                if ident is not None and str(ident) != key:
                    errors.append((child_path, f"key {key!r} does not match the identifier {ident!r}"))

    def create(self, value: Any) -> Any:
        from mst_llm.core.collections import DictNode, ReferenceDictNode

        if isinstance(value, DictNode) and value._parent is None:
            return value
        cls = ReferenceDictNode if self.holds_references else DictNode
        return cls._mst_build(self, value)

    @functools.cached_property
    def holds_references(self) -> bool:
        return _is_reference(self.value)

    def snapshot(self, stored: Any) -> Any:
        # no local reference to the cached snapshot: _mst_snapshot may update it in place when unshared
        if stored._snap is None or stored._dirty is not None:
            return stored._mst_snapshot()
        return stored._snap

    def default_snapshot(self) -> Any:
        return FrozenDict()

    def reconciles(self, current: Any, value: Any) -> bool:
        return value is not current and isinstance(value, Mapping) and not is_node(value)


class ReferenceType(Type):
    """``t.Reference[X]``: stores the target's identifier, resolves it through the tree's identifier index."""

    def __init__(self, target: Type, safe: bool) -> None:
        self.target = target
        self.safe = safe
        self.is_safe_reference = safe

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"{'SafeReference' if self.safe else 'Reference'}[{self.target.name}]"

    def families(self) -> list[type]:
        target = _unwrap(self.target)
        if isinstance(target, UnionType):
            return [member.cls for member in target._models()]
        if isinstance(target, ModelType):
            return [target.cls]
        raise TypeError(f"{self.name}: references must point to model types")

    def validate(self, value: Any, path: str, errors: Errors) -> None:
        families = self.families()
        if isinstance(value, tuple(families)):
            _validate_node_value(value, path, errors)
            if not errors and value._mst_identifier() is None:  # type: ignore[attr-defined]
                errors.append((path, f"cannot reference a {type(value).__name__} without an identifier"))
            return
        if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
            return
        errors.append((path, f"expected a {self.target.name} node or identifier, got {_kind(value)} {_show(value)}"))

    def create(self, value: Any) -> Any:
        if isinstance(value, (str, int)):
            return value
        id_field = type(value)._mst_id_field
        return getattr(value, id_field)


def reference_type_of(type_: Type) -> ReferenceType:
    base = _unwrap(type_)
    if isinstance(base, Nullable):
        base = _unwrap(base.inner)
    assert isinstance(base, ReferenceType)
    return base


def resolve_reference(holder: Any, type_: Type, ident: Any) -> Any:
    """The node an identifier stored in ``holder`` refers to (InvalidReferenceError if it is not in the tree)."""
    from mst_llm.core.node import tree_of
    from mst_llm.errors import InvalidReferenceError

    reference = reference_type_of(type_)
    tree = tree_of(holder)
    key = str(ident)
    for family in reference.families():
        index = tree.ids.get(family)
        if index is not None:
            target = index.get(key)
            if target is not None:
                if tree.dupes and (family, key) in tree.dupes:
                    raise InvalidReferenceError(
                        f"reference to {reference.target.name} {ident!r} is ambiguous: two nodes hold that "
                        "identifier (a transaction in progress; a commit refuses such a state)"
                    )
                return target
    raise InvalidReferenceError(
        f"reference to {reference.target.name} {ident!r} cannot be resolved: no such identifier in the tree"
    )


def is_resolvable(holder: Any, type_: Type, ident: Any) -> bool:
    from mst_llm.errors import InvalidReferenceError

    try:
        resolve_reference(holder, type_, ident)
    except InvalidReferenceError:
        return False
    return True


class _Marker:
    """``Annotated`` metadata that turns the annotated type into a reference or a frozen value."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"t.{self.name}"


_REFERENCE, _SAFE_REFERENCE, _FROZEN = _Marker("Reference"), _Marker("SafeReference"), _Marker("Frozen")
_T = TypeVar("_T")

# --- public type constructors (``from mst_llm import types as t``) ----------------------------------------
# They are ``Annotated`` aliases, so type checkers see plain ``str``/``int``/the target class, and mst_llm reads
# the metadata.

Identifier: TypeAlias = Annotated[str, IdentifierType(numeric=False)]
IdentifierNumber: TypeAlias = Annotated[int, IdentifierType(numeric=True)]
Reference: TypeAlias = Annotated[_T, _REFERENCE]
SafeReference: TypeAlias = Annotated[_T, _SAFE_REFERENCE]
Frozen: TypeAlias = Annotated[_T, _FROZEN]


def _annotated(base: Any, metadata: tuple[Any, ...], namespace: Mapping[str, Any] | None) -> Type:
    for item in metadata:
        if item is _REFERENCE or item is _SAFE_REFERENCE:
            reference = ReferenceType(to_type(base, namespace), safe=item is _SAFE_REFERENCE)
            # a safe reference clears itself when its target goes away, so it can always hold None
            return Nullable(reference) if reference.safe else reference
        if item is _FROZEN:
            origin = typing.get_origin(base) or base
            return FrozenType(origin if isinstance(origin, type) and origin not in (Any, object) else None)
        if isinstance(item, Type):
            return item
    return to_type(base, namespace)


class Volatile:
    """Marks a field as volatile: observable and action-protected, never in snapshots or patches."""

    def __init__(self, default: Any = None, factory: Callable[[], Any] | None = None) -> None:
        self.default = default
        self.factory = factory

    def initial(self) -> Any:
        return self.factory() if self.factory is not None else self.default


def volatile(default: Any = None, *, factory: Callable[[], Any] | None = None) -> Any:
    """A volatile field: ``cache: object = t.volatile(None)`` (or ``t.volatile(factory=dict)``)."""
    return Volatile(default, factory)


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


def union_of(members: list[Type]) -> Type:
    nullable = False
    flat: list[Type] = []
    for member in members:
        if member is NONE:
            nullable = True
        elif isinstance(member, Nullable):
            nullable = True
            flat.append(member.inner)
        elif isinstance(member, UnionType):
            flat.extend(member.members)
        else:
            flat.append(member)
    if not flat:
        raise TypeError("a union needs at least one type besides None")
    result = flat[0] if len(flat) == 1 else _union_of_non_null(flat)
    return Nullable(result) if nullable else result


def _union_of_non_null(members: list[Type]) -> Type:
    if all(isinstance(m, LiteralType) for m in members):
        return LiteralType(v for m in members for v in m.values)  # type: ignore[attr-defined]
    return UnionType(members)


class _NoneType(Type):
    name = "None"

    def validate(self, value: Any, path: str, errors: Errors) -> None:
        if value is not None:
            errors.append((path, f"expected None, got {_show(value)}"))


NONE = _NoneType()


# --- annotations -> types ----------------------------------------------------------------------------------


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
    if isinstance(model_type, ModelType) and isinstance(annotation, type):
        return model_type
    simple = {str: STR, int: INT, float: FLOAT, bool: BOOL}.get(annotation)
    if simple is not None:
        return simple
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        return LiteralType(args)
    if origin is Union or origin is _pytypes.UnionType:
        return union_of([to_type(arg, namespace) for arg in args])
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
        from mst_llm.core import model

        if key in model.registry:
            return model.registry[key]
        if key == "t":
            return sys.modules["mst_llm.core.types"]
        import builtins

        return getattr(builtins, key) if hasattr(builtins, key) else _raise_name(key)

    def __iter__(self) -> Any:
        return iter(self.base)

    def __len__(self) -> int:
        return len(self.base)


def _raise_name(key: str) -> Any:
    raise NameError(f"name {key!r} in an annotation is not defined")


__all__ = [
    "MISSING",
    "Frozen",
    "FrozenDict",
    "FrozenList",
    "Identifier",
    "IdentifierNumber",
    "Reference",
    "SafeReference",
    "Type",
    "refinement",
    "snapshot_processor",
    "volatile",
]
