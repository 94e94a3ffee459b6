"""Dicts: ``dict[str, X]`` (DictType) and the dict node, a ``dict`` subclass whose reads run at C speed and whose
every mutating method maps onto key writes that go through the transaction."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from mst_llm.core.base.frozen import FrozenDict, frozen_dict
from mst_llm.core.base.pointer import escape_json_path
from mst_llm.core.kinds.base import MISSING, Errors, Type, _kind, _show, _unwrap, _validate_node_value
from mst_llm.core.kinds.container import UNSHARED, ContainerNode, _getrefcount, adopt, snapshot_of_container
from mst_llm.core.kinds.reference import is_resolvable, register_container_refs, resolve_reference
from mst_llm.core.state import lifecycle, reactivity
from mst_llm.core.state.node import NODE_SLOTS, is_node
from mst_llm.core.state.reactivity import STRUCTURE
from mst_llm.core.state.transaction import Transaction, invalidate_up, run_bare, write_tx
from mst_llm.core.state.write import changed, child_path, validate_at, write
from mst_llm.errors import ValidationError

_dict_setitem = dict.__setitem__


_dict_delitem = dict.__delitem__


class DictType(Type):
    is_node = True
    is_plain = False
    optional = True

    def __init__(self, value: Type) -> None:
        self.value = value

    @functools.cached_property
    def holds_safe_refs(self) -> bool:
        reference = self.value.reference()
        return reference is not None and bool(reference.safe)

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
        id_field = _unwrap(self.value).id_field
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
        if isinstance(value, DictNode) and value._parent is None:
            return value
        cls = ReferenceDictNode if self.holds_references else DictNode
        return cls._mst_build(self, value)

    @functools.cached_property
    def holds_references(self) -> bool:
        return self.value.reference() is not None

    def snapshot(self, stored: Any) -> Any:
        return snapshot_of_container(stored)

    def default_snapshot(self) -> Any:
        return FrozenDict()

    def reconciles(self, current: Any, value: Any) -> bool:
        return value is not current and isinstance(value, Mapping) and not is_node(value)


class DictNode(ContainerNode, dict[str, Any]):  # type: ignore[misc]  # hashed by identity
    """A dict inside a tree (keys are str)."""

    __slots__ = (*NODE_SLOTS, "_type")
    _mst_kind = "dict"

    _type: DictType

    @classmethod
    def _mst_build(cls, typ: DictType, values: Mapping[str, Any]) -> DictNode:
        node: DictNode = dict.__new__(cls)
        node._parent = node._key = node._snap = node._obs = node._hooks = node._tree = node._dirty = None
        node._type = typ
        create = typ.value.create
        for key, value in values.items():
            stored = create(value)
            _dict_setitem(node, key, stored)
            if typ.value.is_node and stored is not None:
                adopt(stored, node, key)
        return node

    def _mst_children(self) -> Iterable[Any]:
        return [value for value in dict.values(self) if value is not None] if self._type.value.is_node else ()

    def _mst_register_refs(self, tree: Any) -> None:
        if self._type.holds_safe_refs:
            register_container_refs(tree, self._type.value, self, None, dict.items(self))

    def _mst_store(self, key: str, value: Any) -> None:
        _dict_setitem(self, key, value)

    def _mst_drop_dangling(self, key: str) -> None:
        if dict.__contains__(self, key):
            current = dict.__getitem__(self, key)
            if current is not None and not is_resolvable(self, self._type.value, current):
                del self[key]

    def _mst_snapshot(self) -> Any:
        snap = self._snap
        value_snapshot = self._type.value.snapshot
        if snap is not None:
            dirty = self._dirty
            if dirty is None:
                return snap
            if _getrefcount(snap) > UNSHARED:
                snap = frozen_dict(snap)
            for key in dirty:
                _dict_setitem(snap, key, value_snapshot(dict.__getitem__(self, key)))
            self._dirty = None
        else:
            snap = frozen_dict([(key, value_snapshot(value)) for key, value in dict.items(self)])
            self._dirty = None
        self._snap = snap
        return snap

    def _mst_reconcile(self, values: Mapping[str, Any]) -> None:
        tx = write_tx(self)
        if tx is None:
            run_bare(self, DictNode._mst_reconcile, values)
            return
        with tx.savepoint():
            for key in [key for key in dict.keys(self) if key not in values]:
                self._mst_delete(tx, key)
            for key, value in values.items():
                self._mst_put(tx, key, value, validated=True)

    def _mst_put(self, tx: Transaction, key: str, value: Any, validated: bool = False) -> None:
        typ = self._type.value
        if not isinstance(key, str):
            raise ValidationError([(child_path(self, key), f"dict keys must be str, got {type(key).__name__}")])
        if dict.__contains__(self, key):
            write(tx, self, key, typ, dict.__getitem__(self, key), value, validated)
            return
        if not validated:
            validate_at(typ, value, self, key)
        _check_key_matches_identifier(self, key, value)
        stored = typ.create(value)
        with tx.savepoint():
            tx.undo.append((_restore_key, self, key, MISSING))
            _dict_setitem(self, key, stored)
            if is_node(stored):
                lifecycle.attach(tx, stored, self, key)
            elif self._type.holds_safe_refs:
                register_container_refs(None, typ, self, key, [(key, stored)])
        self._mst_dirty(STRUCTURE)  # a new key changes the shape
        changed(tx, self, key, "add", stored, None, typ)

    def _mst_delete(self, tx: Transaction, key: str) -> None:
        typ = self._type.value
        current = dict.__getitem__(self, key)
        old_snapshot = typ.snapshot(current)
        with tx.savepoint():
            tx.undo.append((_restore_deleted_key, self, key, current, list(dict.keys(self)).index(key)))
            _dict_delitem(self, key)
            if is_node(current) and current._parent is self:
                lifecycle.remove(tx, current)
        self._mst_dirty(STRUCTURE)
        changed(tx, self, key, "remove", None, old_snapshot, typ)

    def _mst_edit(self, fn: Callable[..., Any], *args: Any) -> Any:
        tx = write_tx(self)
        if tx is None:
            return run_bare(self, DictNode._mst_edit, fn, *args)
        with tx.savepoint():
            return fn(tx, *args)

    # --- dict API --------------------------------------------------------------------------------------

    def __setitem__(self, key: str, value: Any) -> None:
        self._mst_edit(self._mst_put, key, value)

    def __delitem__(self, key: str) -> None:
        if not dict.__contains__(self, key):
            raise KeyError(key)
        self._mst_edit(self._mst_delete, key)

    def pop(self, key: str, *default: Any) -> Any:
        if not dict.__contains__(self, key):
            if default:
                return default[0]
            raise KeyError(key)
        value = dict.__getitem__(self, key)
        self._mst_edit(self._mst_delete, key)
        return value

    def popitem(self) -> tuple[str, Any]:
        if not dict.__len__(self):
            raise KeyError("popitem(): dictionary is empty")
        key = next(reversed(dict.keys(self)))
        return key, self.pop(key)

    def setdefault(self, key: str, default: Any = None) -> Any:
        if not dict.__contains__(self, key):
            self[key] = default
        return dict.__getitem__(self, key)

    def update(self, *args: Any, **kwargs: Any) -> None:
        items = dict(*args, **kwargs)

        def put_all(tx: Transaction) -> None:
            for key, value in items.items():
                self._mst_put(tx, key, value)

        if items:
            self._mst_edit(put_all)

    def __ior__(self, other: Any) -> DictNode:  # type: ignore[override,misc]
        self.update(other)
        return self

    def clear(self) -> None:
        def delete_all(tx: Transaction) -> None:
            for key in list(dict.keys(self)):
                self._mst_delete(tx, key)

        if dict.__len__(self):
            self._mst_edit(delete_all)

    def __repr__(self) -> str:
        return dict.__repr__(self)


class ReferenceDictNode(DictNode):
    """A dict of references: stores identifiers, hands out the nodes they refer to."""

    __slots__ = ()

    def _resolve(self, ident: Any) -> Any:
        return None if ident is None else resolve_reference(self, self._type.value, ident)

    def __getitem__(self, key: str) -> Any:
        return self._resolve(dict.__getitem__(self, key))

    def get(self, key: str, default: Any = None) -> Any:
        return self._resolve(dict.__getitem__(self, key)) if dict.__contains__(self, key) else default

    def values(self) -> Any:
        return [self._resolve(ident) for ident in dict.values(self)]

    def items(self) -> Any:
        return [(key, self._resolve(ident)) for key, ident in dict.items(self)]


def _restore_key(node: DictNode, key: str, value: Any) -> None:
    if value is MISSING:
        _dict_delitem(node, key)
    else:
        _dict_setitem(node, key, value)
    invalidate_up(node, STRUCTURE)
    reactivity.notify_write(node, key)


def _restore_deleted_key(node: DictNode, key: str, value: Any, position: int) -> None:
    items = list(dict.items(node))
    items.insert(position, (key, value))
    dict.clear(node)
    dict.update(node, items)
    _restore_key(node, key, value)


def _check_key_matches_identifier(node: DictNode, key: str, value: Any) -> None:
    field = _unwrap(node._type.value).id_field
    if field is None:
        return
    ident = value.get(field) if isinstance(value, Mapping) else getattr(value, field, None)
    if ident is not None and str(ident) != key:
        raise ValidationError([(child_path(node, key), f"key {key!r} does not match the identifier {ident!r}")])
