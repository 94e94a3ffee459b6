"""Models: ``@model`` turns an annotated class into an attrs class whose instances are tree nodes, and
ModelType is the type of such a class.

Fields are attrs slots guarded by descriptors: reads are plain slot reads (plus dependency tracking while a view
computes); writes go through the write path (state/write.py) inside the running transaction.
"""

from __future__ import annotations

import inspect
import operator
import sys
from collections.abc import Callable, Mapping
from typing import Any, Self, TypeVar, dataclass_transform

import attrs

from mst_llm.core.base import context
from mst_llm.core.base.frozen import FrozenDict
from mst_llm.core.kinds.annotations import evaluate, registry, to_type
from mst_llm.core.kinds.base import (
    MISSING,
    Errors,
    FrozenType,
    IdentifierType,
    Nullable,
    Type,
    Volatile,
    WithDefault,
    _kind,
    _show,
    _unwrap,
    _validate_node_value,
    strip_late,
)
from mst_llm.core.kinds.compile import compile_build, compile_snapshot, compile_validate
from mst_llm.core.kinds.container import adopt
from mst_llm.core.kinds.dict import DictType
from mst_llm.core.kinds.list import ListType
from mst_llm.core.kinds.reference import ReferenceType, is_resolvable, reference_type_of, resolve_reference
from mst_llm.core.state import lifecycle, reactivity
from mst_llm.core.state.lifecycle import register_safe_ref
from mst_llm.core.state.node import ModelNodeBase, Tree, check_unique_ids, is_node, register_subtree
from mst_llm.core.state.reactivity import STRUCTURE
from mst_llm.core.state.transaction import run_action, run_bare, write_tx
from mst_llm.core.state.write import write
from mst_llm.errors import InvalidReferenceError, ValidationError

C = TypeVar("C", bound=type)
G = TypeVar("G", bound=Callable[..., Any])


class ModelType(Type):
    """The type of an @model class (held by the class as ``_mst_type``)."""

    is_node = True
    is_plain = False
    is_model = True

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

    def models(self) -> list[Type]:
        return [self]


class FieldSpec:
    """One declared field of a model class."""

    __slots__ = (
        "annotation",
        "create",
        "default",
        "get",
        "guard",
        "is_node",
        "kind",
        "name",
        "plain",
        "set",
        "snapshot",
        "type",
        "volatile",
    )

    def __init__(self, name: str, annotation: Any, default: Any, namespace: Mapping[str, Any]) -> None:
        self.name = name
        self.annotation = annotation
        self.volatile: Volatile | None = default if isinstance(default, Volatile) else None
        self.default = MISSING if self.volatile is not None else default
        type_ = to_type(annotation, namespace) if self.volatile is None else FrozenType()
        if self.default is not MISSING:
            type_ = WithDefault(type_, self.default)
        self.type: Type = type_
        self.kind = "plain"
        self.guard: Callable[[Any, Any, Any], None] | None = None
        self.get: Callable[[Any], Any] = _unset
        self.set: Callable[[Any, Any], None] = _unset

    def resolve(self) -> None:
        """Decide how the field is read and written once its (possibly late) type is known."""
        self.type = strip_late(self.type)
        self.create = self.type.create
        self.snapshot = self.type.snapshot
        self.is_node = self.type.is_node
        self.plain = self.type.is_plain
        base = _unwrap(self.type)
        inner = _unwrap(base.inner) if isinstance(base, Nullable) else base
        if self.volatile is not None:
            self.kind = "volatile"
        elif isinstance(base, IdentifierType):
            self.kind = "identifier"
        elif isinstance(inner, ReferenceType):
            self.kind = "reference"
        elif isinstance(inner, (ListType, DictType)):
            self.kind = "container"
        else:
            self.kind = "plain"
        if self.guard is not None:
            if self.kind != "plain":
                raise TypeError(f"@guard({self.name!r}): only plain value fields can have a guard")
            self.kind = "guarded"


def _unset(*args: Any) -> Any:
    raise AssertionError("field accessor used before the model class was prepared")


class _Field:
    """Data descriptor for a plain field (primitives, frozen values, nested models)."""

    __slots__ = ("get", "name", "spec")

    def __init__(self, spec: FieldSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.get = spec.get

    def __get__(self, node: Any, owner: Any = None) -> Any:
        if node is None:
            return self
        if context.tracking:  # reactivity.report, inlined: every field read of every view takes this path
            tracker = context.local.tracker
            if tracker is not None:
                tracker.add((node, self.name))
        return self.get(node)

    def __set__(self, node: Any, value: Any) -> None:
        tx = write_tx(node)
        if tx is None:
            run_bare(node, _set_field, self.spec, value)
            return
        write(tx, node, self.name, self.spec.type, self.get(node), value)


class _GuardedField(_Field):
    """A plain field with a ``@guard``: the write path asks the guard before it stores a new value."""

    __slots__ = ()

    def __set__(self, node: Any, value: Any) -> None:
        tx = write_tx(node)
        if tx is None:
            run_bare(node, _set_field, self.spec, value)
            return
        write(tx, node, self.name, self.spec.type, self.get(node), value, guard=self.spec.guard)


def _set_field(node: Any, spec: FieldSpec, value: Any) -> None:
    setattr(node, spec.name, value)


class _ContainerField(_Field):
    """A list or dict field: reading it inside a view also tracks the container's items."""

    __slots__ = ()

    def __get__(self, node: Any, owner: Any = None) -> Any:
        if node is None:
            return self
        value = self.get(node)
        tracker = context.local.tracker if context.tracking else None
        if tracker is not None:
            tracker.add((node, self.name))
            if value is not None:
                tracker.add((value, STRUCTURE))
        return value


class _IdentifierField(_Field):
    __slots__ = ()

    def __set__(self, node: Any, value: Any) -> None:
        if value == self.get(node):
            return
        raise ValidationError([(f"/{self.name}", f"identifiers are immutable (is {self.get(node)!r}, got {value!r})")])


class _ReferenceField(_Field):
    """Holds an identifier; reading resolves it to the node in the same tree (a dangling safe reference
    reads as None)."""

    __slots__ = ()

    def __get__(self, node: Any, owner: Any = None) -> Any:
        if node is None:
            return self
        if context.tracking:
            tracker = context.local.tracker
            if tracker is not None:
                tracker.add((node, self.name))
        ident = self.get(node)
        if ident is None:
            return None
        try:
            return resolve_reference(node, self.spec.type, ident)
        except InvalidReferenceError:
            if reference_type_of(self.spec.type).safe:
                return None
            raise


class _VolatileField(_Field):
    """Observable and protected like a field, but never in snapshots or patches."""

    __slots__ = ()

    def __set__(self, node: Any, value: Any) -> None:
        tx = write_tx(node)
        if tx is None:
            run_bare(node, _set_field, self.spec, value)
            return
        current = self.get(node)
        if current is value:
            return
        tx.undo.append((_restore_volatile, node, self.spec, current))
        self.spec.set(node, value)
        if node._obs is not None:
            reactivity.notify(node, self.name)


def _restore_volatile(node: Any, spec: FieldSpec, value: Any) -> None:
    spec.set(node, value)
    if node._obs is not None:
        reactivity.notify(node, spec.name)


_DESCRIPTORS = {
    "plain": _Field,
    "guarded": _GuardedField,
    "container": _ContainerField,
    "identifier": _IdentifierField,
    "reference": _ReferenceField,
    "volatile": _VolatileField,
}


class ModelNode(ModelNodeBase):
    """Base of every @model class (so users can type against it)."""

    __slots__ = ()

    _mst_kind = "model"
    _mst_id_family: type | None = None
    _mst_fields: dict[str, FieldSpec]
    _mst_field_names: tuple[str, ...]
    _mst_specs: tuple[FieldSpec, ...]
    _mst_volatiles: tuple[FieldSpec, ...]
    _mst_id_field: str | None
    _mst_type: ModelType
    _mst_ready: bool
    _mst_safe_refs: tuple[FieldSpec, ...]

    def __new__(cls, snapshot: Mapping[str, Any] | None = None, /, **fields: Any) -> Any:
        if snapshot is not None and fields:
            raise TypeError("pass either a snapshot or keyword fields, not both")
        return cls.create(snapshot if snapshot is not None else fields)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    @classmethod
    def create(cls, snapshot: Mapping[str, Any] | None = None, env: Any = None) -> Self:
        """Build a new root node from a snapshot (ValidationError lists every bad path)."""
        cls._mst_prepare()
        if snapshot is None:
            snapshot = {}
        cls._mst_type.check(snapshot)
        node: Self = cls._mst_type.create(snapshot)
        if node._parent is not None:
            raise ValidationError([("", f"{cls.__name__} node is already in a tree; detach() it first")])
        cls._mst_finish_root(node, env)
        return node

    @classmethod
    def _mst_fast_reader(cls, name: str) -> tuple[Any, Any] | None:
        """(the field's descriptor, a C-level property that reads it untracked and writes through it), for a
        view that reads ``name`` on many nodes of this class (reactivity._FastReads); None for a field kind
        whose reads do more than return the stored value."""
        descriptor = cls.__dict__.get(name)
        if not isinstance(descriptor, _Field) or type(descriptor) not in (_Field, _GuardedField):
            return None
        alias = f"_mst_slot_{name}"  # the attrs slot under a second name, for attrgetter (C all the way)
        slot = descriptor.get.__self__  # type: ignore[attr-defined]  # get is the slot's bound __get__
        setattr(cls, alias, slot)
        return descriptor, property(operator.attrgetter(alias), descriptor.__set__)

    @classmethod
    def _mst_finish_root(cls, node: Any, env: Any) -> None:
        if node._tree is None:
            tree = Tree(env)
            register_subtree(tree, node)
            check_unique_ids(tree)
            node._tree = tree
            if tree.safe_refs:
                run_action(node, None, _drop_all_dangling, (), {})
        elif env is not None:
            node._tree.env = env
        if lifecycle.hooks_in_use:
            lifecycle.fire_created(node, attached=False)

    @classmethod
    def _mst_prepare(cls) -> None:
        if cls.__dict__.get("_mst_ready"):
            return
        for spec in cls._mst_fields.values():
            spec.type.optional  # noqa: B018  (forces late types to resolve)
            spec.resolve()
            descriptor = _DESCRIPTORS[spec.kind](spec)
            setattr(cls, spec.name, descriptor)
        ids = [spec.name for spec in cls._mst_fields.values() if spec.kind == "identifier"]
        if len(ids) > 1:
            raise TypeError(f"{cls.__name__} declares more than one identifier: {ids}")
        cls._mst_id_field = ids[0] if ids else None
        cls._mst_id_family = _id_family(cls) if ids else None
        cls._mst_specs = tuple(spec for spec in cls._mst_fields.values() if spec.volatile is None)
        cls._mst_volatiles = tuple(spec for spec in cls._mst_fields.values() if spec.volatile is not None)
        cls._mst_safe_refs = tuple(
            spec for spec in cls._mst_specs if spec.kind == "reference" and reference_type_of(spec.type).safe
        )
        # the generated hot-path functions replace the generic entry points below
        validate = compile_validate(cls, cls._mst_specs, _unknown_fields(cls))
        build = compile_build(cls, cls._mst_specs, cls._mst_volatiles, _pending if cls._mst_has_hooks else None, adopt)
        setattr(cls, "_mst_validate", staticmethod(validate))  # noqa: B010  (replaces a classmethod)
        setattr(cls, "_mst_build", staticmethod(build))  # noqa: B010
        setattr(cls, "_mst_snapshot", compile_snapshot(cls._mst_specs))  # noqa: B010
        cls._mst_ready = True

    @classmethod
    def _mst_validate(cls, snapshot: Mapping[str, Any], path: str, errors: list[tuple[str, str]]) -> None:
        cls._mst_prepare()
        cls._mst_validate(snapshot, path, errors)

    @classmethod
    def _mst_build(cls, snapshot: Mapping[str, Any]) -> Any:
        cls._mst_prepare()
        return cls._mst_build(snapshot)

    _mst_has_hooks = False

    # --- tree protocol ---------------------------------------------------------------------------------

    def _mst_children(self) -> list[Any]:
        result = []
        for spec in type(self)._mst_specs:
            if spec.is_node:
                value = spec.get(self)
                if value is not None:
                    result.append(value)
        return result

    def _mst_identifier(self) -> str | None:
        field = type(self)._mst_id_field
        if field is None:
            return None
        value = type(self)._mst_fields[field].get(self)
        return None if value is None else str(value)

    def _mst_register_refs(self, tree: Tree) -> None:
        for spec in type(self)._mst_safe_refs:
            ident = spec.get(self)
            if ident is not None:
                register_safe_ref(tree, spec.type, ident, self, spec.name)

    def _mst_store(self, key: str, value: Any) -> None:
        type(self)._mst_fields[key].set(self, value)

    def _mst_drop_dangling(self, key: str) -> None:
        spec = type(self)._mst_fields[key]
        ident = spec.get(self)
        if ident is not None and not is_resolvable(self, spec.type, ident):
            setattr(self, key, None)

    def _mst_dirty(self, key: Any) -> None:
        self._snap = None

    def _mst_snapshot(self) -> FrozenDict:
        type(self)._mst_prepare()
        return type(self)._mst_snapshot(self)

    def _mst_reconcile(self, snapshot: Mapping[str, Any]) -> None:
        """Apply a (validated) snapshot field by field, reconciling children in place."""
        if snapshot is self._snap:
            return
        tx = write_tx(self)
        if tx is None:
            run_bare(self, ModelNode._mst_reconcile, snapshot)
            return
        with tx.savepoint():
            for spec in type(self)._mst_specs:
                value = snapshot.get(spec.name, MISSING)
                if value is MISSING:
                    value = spec.type.default_snapshot()
                if spec.kind == "identifier":
                    continue
                write(tx, self, spec.name, spec.type, spec.get(self), value, validated=True, guard=spec.guard)

    def __repr__(self) -> str:
        fields = ", ".join(f"{spec.name}={spec.get(self)!r}" for spec in type(self)._mst_specs)
        return f"{type(self).__name__}({fields})"

    def __reduce__(self) -> Any:
        raise TypeError("tree nodes cannot be pickled; pickle get_snapshot(node) instead")


def _pending(node: Any) -> None:
    context.pending.append(node)


def _unknown_fields(cls: Any) -> Any:
    fields = cls._mst_fields

    def unknown(snapshot: Mapping[str, Any], path: str, errors: list[tuple[str, str]]) -> None:
        for key in snapshot:
            spec = fields.get(key)
            if spec is None or spec.volatile is not None:
                errors.append((f"{path}/{key}", f"unknown field {key!r} for {cls.__name__}"))

    return unknown


def _id_family(cls: type) -> type:
    """Identifiers are unique per declaring model type: subclasses share their base's index."""
    family = cls
    for base in cls.__mro__[1:]:
        if isinstance(base.__dict__.get("_mst_type"), ModelType) and base.__dict__.get("_mst_id_field"):
            family = base
    return family


def _drop_all_dangling(root: Any) -> None:
    for holders in list(root._tree.safe_refs.values()):
        for holder, key in list(holders.values()):
            holder._mst_drop_dangling(key)


# --- @model -----------------------------------------------------------------------------------------------

_HOOK_NAMES = frozenset(lifecycle.HOOK_NAMES)
_GENERATED = ("_mst_validate", "_mst_build", "_mst_snapshot")  # the entry points _mst_prepare replaces


@dataclass_transform(kw_only_default=True)
def model(cls: C) -> C:
    """Turn an annotated class into a tree model (an attrs class whose instances are nodes).

    Inherit from ``ModelNode`` as well when you want type checkers to know ``create`` and the other
    class methods; ``@model`` works the same either way."""
    module = sys.modules.get(cls.__module__)
    namespace: dict[str, Any] = dict(vars(module)) if module is not None else {}
    caller = sys._getframe(1)
    if caller.f_code.co_name != "<module>":
        namespace.update(caller.f_locals)
    namespace = _LiveNamespace(namespace, module)
    own_annotations = inspect.get_annotations(cls)
    bases = tuple(base for base in cls.__bases__ if base is not object)
    model_bases = [base for base in bases if isinstance(base.__dict__.get("_mst_type"), ModelType)]
    inherited = _inherited(model_bases)
    fields = dict(inherited)
    for name, annotation in own_annotations.items():
        if name.startswith("__") or _is_classvar(annotation):
            continue
        fields[name] = FieldSpec(name, annotation, cls.__dict__.get(name, MISSING), namespace)
    _collect_guards(cls, fields)

    body = {
        key: value
        for key, value in cls.__dict__.items()
        if key not in fields and key not in ("__dict__", "__weakref__")
    }
    body["__annotations__"] = {}
    for name in _GENERATED:  # a used base holds its generated functions: this class must generate its own
        body[name] = ModelNode.__dict__[name]
    new_bases = tuple(model_bases) or (ModelNode,)
    extra_bases = tuple(base for base in bases if base not in model_bases and base is not ModelNode)
    built = type(cls.__name__, (*new_bases, *extra_bases), body)
    built.__qualname__ = cls.__qualname__
    built.__module__ = cls.__module__
    own_fields = {name: spec for name, spec in fields.items() if name not in inherited}
    built = attrs.define(
        built,
        these={name: attrs.field(type=_real_type(spec.annotation, namespace)) for name, spec in own_fields.items()},
        slots=True,
        eq=False,
        init=False,
        repr=False,
        weakref_slot=False,
    )
    for name, spec in fields.items():
        if name in own_fields:  # the slot attrs just made
            slot = built.__dict__[name]
            spec.get, spec.set = slot.__get__, slot.__set__
        else:  # the base's slot serves this class too (a used base holds its field descriptor under the name)
            spec = fields[name] = _copy_spec(spec)
            spec.get, spec.set = inherited[name].get, inherited[name].set
    built._mst_fields = fields  # type: ignore[attr-defined]
    built._mst_field_names = tuple(fields)  # type: ignore[attr-defined]
    built._mst_type = ModelType(built)  # type: ignore[attr-defined]
    built._mst_ready = False  # type: ignore[attr-defined]
    built._mst_has_hooks = any(hasattr(built, hook) for hook in _HOOK_NAMES)  # type: ignore[attr-defined]
    if built._mst_has_hooks:  # type: ignore[attr-defined]
        lifecycle.hooks_in_use = True
    _fix_class_cells(cls, built)
    namespace[cls.__name__] = built  # the class's own name means the class, even if another is global
    registry[cls.__name__] = built
    return built  # type: ignore[return-value]


def guard(*names: str) -> Callable[[G], G]:
    """Mark a method as the guard of the named plain fields: ``check(self, old, new)`` runs on every change of the
    field (actions, ``apply_patch``, ``apply_snapshot``) before the value is stored, and vetoes it by raising.

    Creating a node from a snapshot does not call it (there is no old value to move from)."""

    def mark(check: G) -> G:
        check._mst_guard = names  # type: ignore[attr-defined]
        return check

    return mark


def _collect_guards(cls: type, fields: dict[str, FieldSpec]) -> None:
    """Record each ``@guard`` method of the class body on the specs of the fields it names."""
    for member in cls.__dict__.values():
        for name in getattr(member, "_mst_guard", ()):
            if name not in fields:
                raise TypeError(f"{cls.__name__}: @guard names {name!r}, which is not a field")
            spec = fields[name] = _copy_spec(fields[name])  # never change a base class's spec
            spec.guard = member


class _LiveNamespace(dict[str, Any]):
    """The defining scope's names, falling back to the module's current globals for names defined later."""

    def __init__(self, names: dict[str, Any], module: Any) -> None:
        super().__init__(names)
        self.module = module

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key) or (self.module is not None and hasattr(self.module, str(key)))

    def __getitem__(self, key: str) -> Any:
        if dict.__contains__(self, key):
            return dict.__getitem__(self, key)
        if self.module is not None and hasattr(self.module, key):
            return getattr(self.module, key)
        raise KeyError(key)


def _real_type(annotation: Any, namespace: Mapping[str, Any]) -> Any:
    """A field's type for attrs (``attrs.fields(Model)``, cattrs, IDEs): a string annotation evaluated when it
    can be now (a name defined later stays a string, as attrs allows)."""
    if not isinstance(annotation, str):
        return annotation
    try:
        return evaluate(annotation, namespace)
    except NameError:
        return annotation


def _inherited(model_bases: list[type]) -> dict[str, FieldSpec]:
    """The fields the model bases declare, by name (the first base wins, as in the method resolution order)."""
    specs: dict[str, FieldSpec] = {}
    for base in reversed(model_bases):
        specs.update(base._mst_fields)  # type: ignore[attr-defined]
    return specs


def _copy_spec(spec: FieldSpec) -> FieldSpec:
    copy = object.__new__(FieldSpec)
    for slot in FieldSpec.__slots__:
        if hasattr(spec, slot):  # a base that was never used has not resolved its accessors yet
            setattr(copy, slot, getattr(spec, slot))
    return copy


def _is_classvar(annotation: Any) -> bool:
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return text.startswith(("ClassVar", "typing.ClassVar"))


def _fix_class_cells(original: type, built: type) -> None:
    """Point zero-argument super() / __class__ cells of the methods at the built class."""
    for value in vars(built).values():
        func = getattr(value, "__func__", value)
        func = getattr(func, "__wrapped__", func)
        closure = getattr(func, "__closure__", None)
        for cell in closure or ():
            try:
                if cell.cell_contents is original:
                    cell.cell_contents = built
            except ValueError:
                continue
