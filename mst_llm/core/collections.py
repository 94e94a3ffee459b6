"""List and dict nodes. They subclass ``list`` and ``dict`` so every read runs at C speed; every mutating
method is mapped onto one splice (lists) or one key write (dicts) that goes through the transaction."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, SupportsIndex

from mst_llm.core import lifecycle, reactivity
from mst_llm.core.frozen import FrozenList, frozen_dict, frozen_list
from mst_llm.core.node import NODE_SLOTS, NodeSlots, is_node
from mst_llm.core.transaction import (
    Transaction,
    invalidate_up,
    record_patch,
    rollback_to,
    run_bare,
    touch,
    write_tx,
)
from mst_llm.core.types import (
    MISSING,
    DictType,
    ListType,
    ModelType,
    Type,
    UnionType,
    _unwrap,
    is_resolvable,
    resolve_reference,
)
from mst_llm.core.write import changed, child_path, validate_at, write
from mst_llm.errors import ValidationError

STRUCTURE = reactivity.STRUCTURE
_getrefcount = sys.getrefcount
_list_getitem = list.__getitem__
_list_setitem = list.__setitem__
_list_delitem = list.__delitem__
_list_len = list.__len__
_dict_setitem = dict.__setitem__
_dict_delitem = dict.__delitem__


def _unshared_refcount() -> int:
    """sys.getrefcount of a cached snapshot held only by its node, as seen from ``_mst_snapshot``."""

    class Probe:
        __slots__ = ("_snap",)
        _snap: FrozenList

    probe = Probe()
    probe._snap = FrozenList()
    snap = probe._snap
    return _getrefcount(snap)


# When nobody but the node holds its stale snapshot, it is updated in place (O(changed items)) instead of
# copied (O(len)); nobody can observe the difference because nobody else can reach the object.
UNSHARED = _unshared_refcount()


class ListNode(NodeSlots, list[Any]):
    """A list inside a tree."""

    __slots__ = (*NODE_SLOTS, "_type")
    _mst_kind = "list"
    _mst_id_family = None

    _type: ListType

    @classmethod
    def _mst_build(cls, typ: ListType, values: Iterable[Any]) -> ListNode:
        node: ListNode = list.__new__(cls)
        node._parent = node._key = node._snap = node._obs = node._hooks = node._tree = node._dirty = None
        node._type = typ
        create = typ.item.create
        items = [create(value) for value in values]
        list.extend(node, items)
        if typ.item.is_node:
            for index, item in enumerate(items):
                if item is not None:
                    _adopt(item, node, index)
        return node

    # --- tree protocol ---------------------------------------------------------------------------------

    def _mst_children(self) -> Iterable[Any]:
        return [item for item in list.__iter__(self) if item is not None] if self._type.item.is_node else ()

    def _mst_identifier(self) -> None:
        return None

    def _mst_register_refs(self, tree: Any) -> None:
        if self._type.holds_safe_refs:
            _register_safe_refs(tree, self._type.item, self, STRUCTURE, list.__iter__(self))

    def _mst_store(self, key: int, value: Any) -> None:
        _list_setitem(self, key, value)

    def _mst_drop_dangling(self, key: Any) -> None:
        item = self._type.item
        for position in range(_list_len(self) - 1, -1, -1):
            current = _list_getitem(self, position)
            if current is not None and not is_resolvable(self, item, current):
                self._mst_splice(position, 1, [])

    def _mst_dirty(self, key: Any) -> None:
        if key is STRUCTURE:
            self._snap = None
            self._dirty = None
        elif self._snap is not None:
            dirty = self._dirty
            if dirty is None:
                self._dirty = {key}
            else:
                dirty.add(key)

    def _mst_snapshot(self) -> Any:
        snap = self._snap
        item = self._type.item
        if snap is not None:
            dirty = self._dirty
            if dirty is None:
                return snap
            if _getrefcount(snap) > UNSHARED:
                snap = frozen_list(snap)
            item_snapshot = item.snapshot
            for index in dirty:
                _list_setitem(snap, index, item_snapshot(_list_getitem(self, index)))
            self._dirty = None
        else:
            if item.is_plain:
                snap = frozen_list(list.__iter__(self))
            else:
                item_snapshot = item.snapshot
                snap = frozen_list([item_snapshot(value) for value in list.__iter__(self)])
            self._dirty = None
        self._snap = snap
        return snap

    def _mst_reconcile(self, values: Any) -> None:
        """Make this list equal to ``values`` (validated), keeping nodes whose identifier matches."""
        tx = write_tx(self)
        if tx is None:
            run_bare(self, ListNode._mst_reconcile, values)
            return
        values = list(values)
        item = self._type.item
        current = list(list.__iter__(self))
        new_items, deep = _match_items(item, current, values)
        size, count = len(current), len(new_items)
        prefix = 0
        while prefix < size and prefix < count and _same(new_items[prefix], current[prefix]):
            prefix += 1
        suffix = 0
        while (
            suffix < size - prefix
            and suffix < count - prefix
            and _same(new_items[count - 1 - suffix], current[size - 1 - suffix])
        ):
            suffix += 1
        middle = [value if value is not MISSING else None for value in new_items[prefix : count - suffix]]
        pending = [(index, values[index]) for index in range(prefix, count - suffix) if new_items[index] is MISSING]
        mark = tx.mark()
        try:
            if pending:
                for index, value in pending:
                    middle[index - prefix] = item.create(value)
            if size - prefix - suffix or middle:
                self._mst_splice_items(tx, prefix, size - prefix - suffix, middle)
            for node, value in deep:
                node._mst_reconcile(value)  # validated with the list
        except BaseException:
            rollback_to(tx, mark)
            raise

    # --- the splice everything maps to ----------------------------------------------------------------

    def _mst_splice(self, index: int, remove_count: int, values: list[Any]) -> None:
        if remove_count == len(values) and (
            not values
            or (
                self._type.item.is_plain
                and all(map(_same, values, _list_getitem(self, slice(index, index + remove_count))))
            )
        ):
            return  # nothing changes: no transaction, no patch
        tx = write_tx(self)
        if tx is None:
            run_bare(self, ListNode._mst_splice, index, remove_count, values)
            return
        item = self._type.item
        errors: list[tuple[str, str]] = []
        for offset, value in enumerate(values):
            item.validate(value, f"/{index + offset}", errors)
        if item.is_node:
            for offset, value in enumerate(values):
                if is_node(value) and value._parent is not None:
                    errors.append((f"/{index + offset}", f"{type(value).__name__} node is already in a tree"))
        if errors:
            base = child_path(self, "")[:-1]
            raise ValidationError([(base + path, message) for path, message in errors])
        self._mst_splice_items(tx, index, remove_count, [item.create(value) for value in values])

    def _mst_splice_items(self, tx: Transaction, index: int, remove_count: int, items: list[Any]) -> None:
        removed = _list_getitem(self, slice(index, index + remove_count))
        mark = tx.mark()
        try:
            tx.undo.append((_restore_slice, self, index, len(items), removed))
            _list_setitem(self, slice(index, index + remove_count), items)
            if self._type.item.is_node:
                kept = {id(value) for value in items if is_node(value) and value._parent is self}
                for value in removed:
                    if is_node(value) and value._parent is self and id(value) not in kept:
                        lifecycle.remove(tx, value)
                for offset, value in enumerate(items):
                    if is_node(value) and value._parent is not self:
                        lifecycle.attach(tx, value, self, index + offset)
                _renumber(self, index)
            elif self._type.holds_safe_refs:
                _register_safe_refs(None, self._type.item, self, STRUCTURE, items)
        except BaseException:
            rollback_to(tx, mark)
            raise
        where = touch(tx, self, STRUCTURE, [])
        reactivity.notify_write(self, STRUCTURE)
        if where is None:
            return
        keys, consumers = where
        item_snapshot = self._type.item.snapshot
        if remove_count and len(items) == _list_len(self):
            old = frozen_list([item_snapshot(value) for value in removed])
            record_patch(tx, where, "replace", self._mst_snapshot(), old)
            return
        below = [(consumer, depth + 1) for consumer, depth in consumers]
        for offset in range(remove_count - 1, -1, -1):
            record_patch(tx, ([index + offset, *keys], below), "remove", None, item_snapshot(removed[offset]))
        for offset, value in enumerate(items):
            record_patch(tx, ([index + offset, *keys], below), "add", item_snapshot(value), None)

    def _mst_set(self, index: int, value: Any) -> None:
        tx = write_tx(self)
        if tx is None:
            run_bare(self, ListNode._mst_set, index, value)
            return
        write(tx, self, index, self._type.item, _list_getitem(self, index), value, by_identifier_only=True)

    # --- list API --------------------------------------------------------------------------------------

    def append(self, value: Any) -> None:
        self._mst_splice(_list_len(self), 0, [value])

    def extend(self, values: Iterable[Any]) -> None:
        values = list(values)
        if values:
            self._mst_splice(_list_len(self), 0, values)

    def __iadd__(self, values: Iterable[Any]) -> ListNode:  # type: ignore[misc]
        self.extend(values)
        return self

    def __imul__(self, times: SupportsIndex) -> ListNode:
        count = times.__index__()
        if count <= 0:
            self.clear()
        elif count > 1:
            self.extend(list(self) * (count - 1))
        return self

    def insert(self, index: SupportsIndex, value: Any) -> None:
        size = _list_len(self)
        position = index.__index__()
        if position < 0:
            position = max(0, size + position)
        self._mst_splice(min(position, size), 0, [value])

    def pop(self, index: SupportsIndex = -1) -> Any:
        size = _list_len(self)
        position = index.__index__()
        if position < 0:
            position += size
        if not 0 <= position < size:
            raise IndexError("pop index out of range" if size else "pop from empty list")
        value = _list_getitem(self, position)
        self._mst_splice(position, 1, [])
        return value

    def remove(self, value: Any) -> None:
        self._mst_splice(self.index(value), 1, [])

    def clear(self) -> None:
        if _list_len(self):
            self._mst_splice(0, _list_len(self), [])

    def sort(self, *, key: Callable[[Any], Any] | None = None, reverse: bool = False) -> None:
        self._mst_reorder(sorted(list.__iter__(self), key=key, reverse=reverse))

    def reverse(self) -> None:
        self._mst_reorder(list.__getitem__(self, slice(None, None, -1)))

    def _mst_reorder(self, order: list[Any]) -> None:
        if all(a is b for a, b in zip(order, list.__iter__(self), strict=True)):
            return
        tx = write_tx(self)
        if tx is None:
            run_bare(self, ListNode._mst_reorder, order)
            return
        self._mst_splice_items(tx, 0, _list_len(self), order)

    def __setitem__(self, index: Any, value: Any) -> None:
        if isinstance(index, slice):
            start, stop, step = index.indices(_list_len(self))
            values = list(value)
            if step == 1:
                self._mst_splice(start, max(0, stop - start), values)
                return
            positions = range(start, stop, step)
            if len(positions) != len(values):
                raise ValueError(
                    f"attempt to assign sequence of size {len(values)} to extended slice of size {len(positions)}"
                )
            for position, item in zip(positions, values, strict=True):
                self._mst_set(position, item)
            return
        size = _list_len(self)
        position = index.__index__()
        if position < 0:
            position += size
        if not 0 <= position < size:
            raise IndexError("list assignment index out of range")
        self._mst_set(position, value)

    def __delitem__(self, index: Any) -> None:
        if isinstance(index, slice):
            start, stop, step = index.indices(_list_len(self))
            if step == 1:
                if stop > start:
                    self._mst_splice(start, stop - start, [])
                return
            for position in sorted(range(start, stop, step), reverse=True):
                self._mst_splice(position, 1, [])
            return
        size = _list_len(self)
        position = index.__index__()
        if position < 0:
            position += size
        if not 0 <= position < size:
            raise IndexError("list assignment index out of range")
        self._mst_splice(position, 1, [])

    def __repr__(self) -> str:
        return list.__repr__(self)

    def __hash__(self) -> int:  # type: ignore[override]  # nodes are identities
        return id(self) >> 4

    def __eq__(self, other: object) -> bool:
        return list.__eq__(self, other)

    def __reduce__(self) -> Any:
        raise TypeError("tree nodes cannot be pickled; pickle get_snapshot(node) instead")


class DictNode(NodeSlots, dict[str, Any]):
    """A dict inside a tree (keys are str)."""

    __slots__ = (*NODE_SLOTS, "_type")
    _mst_kind = "dict"
    _mst_id_family = None

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
                _adopt(stored, node, key)
        return node

    def _mst_children(self) -> Iterable[Any]:
        return [value for value in dict.values(self) if value is not None] if self._type.value.is_node else ()

    def _mst_identifier(self) -> None:
        return None

    def _mst_register_refs(self, tree: Any) -> None:
        if self._type.holds_safe_refs:
            _register_safe_refs(tree, self._type.value, self, None, dict.items(self))

    def _mst_store(self, key: str, value: Any) -> None:
        _dict_setitem(self, key, value)

    def _mst_drop_dangling(self, key: str) -> None:
        if dict.__contains__(self, key):
            current = dict.__getitem__(self, key)
            if current is not None and not is_resolvable(self, self._type.value, current):
                del self[key]

    def _mst_dirty(self, key: Any) -> None:
        if key is STRUCTURE:
            self._snap = None
            self._dirty = None
        elif self._snap is not None:
            dirty = self._dirty
            if dirty is None:
                self._dirty = {key}
            else:
                dirty.add(key)

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
        mark = tx.mark()
        try:
            for key in [key for key in dict.keys(self) if key not in values]:
                self._mst_delete(tx, key)
            for key, value in values.items():
                self._mst_put(tx, key, value, validated=True)
        except BaseException:
            rollback_to(tx, mark)
            raise

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
        mark = tx.mark()
        try:
            tx.undo.append((_restore_key, self, key, MISSING))
            _dict_setitem(self, key, stored)
            if is_node(stored):
                lifecycle.attach(tx, stored, self, key)
            elif self._type.holds_safe_refs:
                _register_safe_refs(None, typ, self, key, [(key, stored)])
        except BaseException:
            rollback_to(tx, mark)
            raise
        self._mst_dirty(STRUCTURE)  # a new key changes the shape
        changed(tx, self, key, "add", stored, None, typ)

    def _mst_delete(self, tx: Transaction, key: str) -> None:
        typ = self._type.value
        current = dict.__getitem__(self, key)
        old_snapshot = typ.snapshot(current)
        mark = tx.mark()
        try:
            tx.undo.append((_restore_deleted_key, self, key, current, list(dict.keys(self)).index(key)))
            _dict_delitem(self, key)
            if is_node(current) and current._parent is self:
                lifecycle.remove(tx, current)
        except BaseException:
            rollback_to(tx, mark)
            raise
        self._mst_dirty(STRUCTURE)
        changed(tx, self, key, "remove", None, old_snapshot, typ)

    def _mst_edit(self, fn: Callable[..., Any], *args: Any) -> Any:
        tx = write_tx(self)
        if tx is None:
            return run_bare(self, DictNode._mst_edit, fn, *args)
        mark = tx.mark()
        try:
            return fn(tx, *args)
        except BaseException:
            rollback_to(tx, mark)
            raise

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

    def __hash__(self) -> int:  # type: ignore[override]
        return id(self) >> 4

    def __eq__(self, other: object) -> bool:
        return dict.__eq__(self, other)

    def __reduce__(self) -> Any:
        raise TypeError("tree nodes cannot be pickled; pickle get_snapshot(node) instead")


class ReferenceListNode(ListNode):
    """A list of references: stores identifiers, hands out the nodes they refer to."""

    __slots__ = ()

    def _resolve(self, ident: Any) -> Any:
        return None if ident is None else resolve_reference(self, self._type.item, ident)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self._resolve(ident) for ident in _list_getitem(self, index)]
        return self._resolve(_list_getitem(self, index))

    def __iter__(self) -> Iterator[Any]:
        for ident in list.__iter__(self):
            yield self._resolve(ident)

    def _ident(self, value: Any) -> Any:
        return self._type.item.create(value) if is_node(value) else value

    def index(self, value: Any, *args: Any) -> int:
        return list.index(self, self._ident(value), *args)

    def count(self, value: Any) -> int:
        return list.count(self, self._ident(value))

    def __contains__(self, value: object) -> bool:
        return list.__contains__(self, self._ident(value))


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


# --- helpers -------------------------------------------------------------------------------------------------


def _adopt(child: Any, parent: Any, key: Any) -> None:
    """Link a child while building a new subtree (its identifiers are registered when the subtree attaches)."""
    if child._parent is not None:
        raise ValidationError([("", f"{type(child).__name__} node is already in a tree; detach() it first")])
    child._parent = parent
    child._key = key
    child._tree = None


def _renumber(node: ListNode, start: int) -> None:
    for index in range(start, _list_len(node)):
        value = _list_getitem(node, index)
        if value is not None:
            value._key = index


def _restore_slice(node: ListNode, index: int, added: int, removed: list[Any]) -> None:
    _list_setitem(node, slice(index, index + added), removed)
    if node._type.item.is_node:
        for position in range(index, _list_len(node)):
            value = _list_getitem(node, position)
            if is_node(value):
                value._parent = node
                value._key = position
    invalidate_up(node, STRUCTURE)
    reactivity.notify_write(node, STRUCTURE)


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


def _same(new: Any, old: Any) -> bool:
    return new is old or (not is_node(new) and new is not MISSING and new == old and type(new) is type(old))


def _match_items(item: Type, current: list[Any], values: list[Any]) -> tuple[list[Any], list[Any]]:
    """For each new value: the existing node it reconciles with, the value itself (plain items), or MISSING
    (a node must be created). Also returns the (node, snapshot) pairs to reconcile deeply.

    Model items match by identifier through a hash of the current items (linear); items without an
    identifier are kept only where the same position already holds an equal snapshot."""
    base = _unwrap(item)
    union = base if isinstance(base, UnionType) else None
    models = union._models() if union is not None else [base] if isinstance(base, ModelType) else []
    deep: list[tuple[Any, Any]] = []
    if not models:
        return [item.create(value) if not item.is_node else MISSING for value in values], deep
    by_id: dict[tuple[Any, str], Any] = {}
    for node in current:
        if node is not None and node._mst_id_family is not None:
            by_id[(type(node), node._mst_identifier())] = node
    result: list[Any] = []
    append = result.append
    member: Any = base
    for position, value in enumerate(values):
        if type(value) is not dict and (is_node(value) or not isinstance(value, Mapping)):
            append(value if is_node(value) else MISSING)
            continue
        if union is not None:
            member = union.dispatch(value)
            if not isinstance(member, ModelType):
                append(MISSING)
                continue
        id_field = member.id_field
        if id_field is not None:
            existing = by_id.get((member.cls, str(value.get(id_field))))
            if existing is not None:
                append(existing)
                snap = existing._snap
                if (snap if snap is not None else existing._mst_snapshot()) != value:
                    deep.append((existing, value))
                continue
        elif position < len(current):
            existing = current[position]
            if type(existing) is member.cls and member.snapshot(existing) == value:
                append(existing)
                continue
        append(MISSING)
    return result, deep


def _check_key_matches_identifier(node: DictNode, key: str, value: Any) -> None:
    base = _unwrap(node._type.value)
    if not isinstance(base, ModelType) or base.id_field is None:
        return
    field = base.id_field
    ident = value.get(field) if isinstance(value, Mapping) else getattr(value, field, None)
    if ident is not None and str(ident) != key:
        raise ValidationError([(child_path(node, key), f"key {key!r} does not match the identifier {ident!r}")])


# Set by the reference support in model.py: registers safe references held by a container.
_register_safe_refs: Callable[..., None] = lambda *args: None  # noqa: E731
