"""The Type interface every kind of type implements, and the kinds that hold no node: primitives, literals,
identifiers, frozen values, the wrappers (None, defaults, refinements, snapshot processors, forward references)
and unions of model types.

A *stored* value is what a node keeps: a primitive, a child node, or (for references) an identifier.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from mst_llm.core.base.frozen import freeze
from mst_llm.core.state.node import is_alive, is_node
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
    is_model = False  # a model type (``cls``, ``id_field`` and model nodes)

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

    @property
    def id_field(self) -> str | None:
        """The identifier field of the model nodes this type creates, if any."""
        return None

    def dispatch(self, value: Any) -> Type | None:
        """The type a snapshot ``value`` is created as (unions pick a member; None when none fits)."""
        return self

    def models(self) -> list[Type]:
        """The model types whose nodes this type creates (a model, or the members of a union of models)."""
        return []

    def reference(self) -> Any:
        """The reference type this type stores (seen through defaults, forward references and None), or None."""
        return None

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
        return union_of([self, _operand(other)])

    def __ror__(self, other: Any) -> Type:
        return union_of([_operand(other), self])

    def __repr__(self) -> str:
        return f"<type {self.name}>"


def _operand(other: Any) -> Type:
    """The type for the other side of ``some_type | other`` (annotations spell anything else)."""
    if isinstance(other, Type):
        return other
    if other is None or other is type(None):
        return NONE
    model_type = getattr(other, "_mst_type", None)
    if isinstance(model_type, Type) and isinstance(other, type):
        return model_type
    simple = {str: STR, int: INT, float: FLOAT, bool: BOOL}.get(other)
    if simple is None:
        raise TypeError(f"cannot combine an mst_llm type with {other!r} by |; write the union as an annotation")
    return simple


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

    def __init__(self, container: type | None = None, schema: Type | None = None) -> None:
        self.container = container
        self.schema = schema  # a model type whose snapshot type the value must match (``t.Frozen[SomeModel]``)
        label = container or getattr(schema, "cls", None)
        self.name = f"Frozen[{label.__name__}]" if label else "Frozen"

    def validate(self, value: Any, path: str, errors: Errors) -> None:
        if value is None:
            return
        if self.schema is not None:
            if is_node(value) or not isinstance(value, Mapping):
                errors.append((path, f"expected a {self.name} snapshot (a mapping), got {_kind(value)} {_show(value)}"))
                return
            self.schema.validate(value, path, errors)
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

    def reference(self) -> Any:
        return self.inner.reference()


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

    def reference(self) -> Any:
        return self.inner.reference()


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

    def reference(self) -> Any:
        return self.resolved.reference()


def _validate_node_value(value: Any, path: str, errors: Errors) -> None:
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

    def models(self) -> list[Type]:
        return [m.resolved if isinstance(m, LateType) else m for m in self.members]

    def discriminator(self) -> tuple[str, dict[Any, Type]] | None:
        if self._discriminator is False:
            self._discriminator = _find_discriminator(self.models())
        return self._discriminator  # type: ignore[return-value]

    @property
    def id_field(self) -> str | None:
        """The identifier field of the model nodes this type creates, if any."""
        return None

    def dispatch(self, value: Any) -> Type | None:
        for member in self.models():
            if isinstance(value, member.cls):  # type: ignore[attr-defined]
                return member
        if not isinstance(value, Mapping):
            return None
        found = self.discriminator()
        if found is not None and found[0] in value:
            return found[1].get(value[found[0]])
        for member in self.models():
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


def _find_discriminator(models: list[Type]) -> tuple[str, dict[Any, Type]] | None:
    if not models:
        return None
    first: Any = models[0].cls  # type: ignore[attr-defined]
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


def _unwrap(type_: Type) -> Type:
    while isinstance(type_, (WithDefault, LateType)):
        type_ = type_.inner if isinstance(type_, WithDefault) else type_.resolved
    return type_


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


def default(snapshot: Any) -> Any:
    """A field default that type checkers accept for any field type (``address: Address = t.default({})``, where
    ``= {}`` is a dict assigned to an ``Address``): the snapshot used when the field is omitted, or a function
    that returns a fresh one on every create (``t.default(make_address)``)."""
    return snapshot
