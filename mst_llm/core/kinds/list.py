"""Lists: ``list[X]`` (ListType) and the list node, a ``list`` subclass whose reads run at C speed and whose every
mutating method maps onto one splice that goes through the transaction."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, SupportsIndex

from mst_llm.core.base.frozen import frozen_list
from mst_llm.core.kinds.base import MISSING, Errors, Type, _kind, _show, _unwrap, _validate_node_value
from mst_llm.core.kinds.container import (
    UNSHARED,
    ContainerNode,
    _getrefcount,
    adopt,
    sameness,
    snapshot_of_container,
)
from mst_llm.core.kinds.reference import is_resolvable, register_container_refs, resolve_reference
from mst_llm.core.state import lifecycle, reactivity
from mst_llm.core.state.node import NODE_SLOTS, is_node
from mst_llm.core.state.reactivity import STRUCTURE
from mst_llm.core.state.transaction import Transaction, invalidate_up, record, run_bare, touch, write_tx
from mst_llm.core.state.write import child_path, write
from mst_llm.errors import ValidationError

_list_getitem = list.__getitem__


_list_setitem = list.__setitem__


_list_len = list.__len__


class ListType(Type):
    is_node = True
    is_plain = False
    optional = True

    def __init__(self, item: Type) -> None:
        self.item = item

    @functools.cached_property
    def holds_safe_refs(self) -> bool:
        reference = self.item.reference()
        return reference is not None and bool(reference.safe)

    @functools.cached_property
    def id_field(self) -> str | None:
        """The identifier field of the item model type, if it has one (duplicates are invalid)."""
        return _unwrap(self.item).id_field

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
        if isinstance(value, ListNode) and value._parent is None:
            return value  # a detached list node is adopted as it is
        cls = ReferenceListNode if self.holds_references else ListNode
        return cls._mst_build(self, value)

    @functools.cached_property
    def holds_references(self) -> bool:
        return self.item.reference() is not None

    def snapshot(self, stored: Any) -> Any:
        return snapshot_of_container(stored)

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


class ListNode(ContainerNode, list[Any]):  # type: ignore[misc]  # hashed by identity
    """A list inside a tree."""

    __slots__ = (*NODE_SLOTS, "_type")
    _mst_kind = "list"

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
                    adopt(item, node, index)
        return node

    # --- tree protocol ---------------------------------------------------------------------------------

    def _mst_children(self) -> Iterable[Any]:
        return [item for item in list.__iter__(self) if item is not None] if self._type.item.is_node else ()

    def _mst_register_refs(self, tree: Any) -> None:
        if self._type.holds_safe_refs:
            register_container_refs(tree, self._type.item, self, STRUCTURE, list.__iter__(self))

    def _mst_store(self, key: int, value: Any) -> None:
        _list_setitem(self, key, value)

    def _mst_drop_dangling(self, key: Any) -> None:
        item = self._type.item
        for position in range(_list_len(self) - 1, -1, -1):
            current = _list_getitem(self, position)
            if current is not None and not is_resolvable(self, item, current):
                self._mst_splice(position, 1, [])

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
        unchanged = sameness(item)
        prefix = 0
        while prefix < size and prefix < count and unchanged(new_items[prefix], current[prefix]):
            prefix += 1
        suffix = 0
        while (
            suffix < size - prefix
            and suffix < count - prefix
            and unchanged(new_items[count - 1 - suffix], current[size - 1 - suffix])
        ):
            suffix += 1
        middle = [value if value is not MISSING else None for value in new_items[prefix : count - suffix]]
        pending = [(index, values[index]) for index in range(prefix, count - suffix) if new_items[index] is MISSING]
        with tx.savepoint():
            if pending:
                for index, value in pending:
                    middle[index - prefix] = item.create(value)
            if size - prefix - suffix or middle:
                self._mst_splice_items(tx, prefix, size - prefix - suffix, middle)
            for node, value in deep:
                node._mst_reconcile(value)  # validated with the list

    # --- the splice everything maps to ----------------------------------------------------------------

    def _mst_splice(self, index: int, remove_count: int, values: list[Any]) -> None:
        item = self._type.item
        if remove_count == len(values) and (
            not values
            or (
                not item.is_node
                and all(map(sameness(item), values, _list_getitem(self, slice(index, index + remove_count))))
            )
        ):
            return  # nothing changes: no transaction, no patch
        tx = write_tx(self)
        if tx is None:
            run_bare(self, ListNode._mst_splice, index, remove_count, values)
            return
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
        with tx.savepoint():
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
                register_container_refs(None, self._type.item, self, STRUCTURE, items)
        where = touch(tx, self, STRUCTURE, [])
        reactivity.notify_write(self, STRUCTURE)
        if where is None:
            return
        keys, consumers = where
        item_snapshot = self._type.item.snapshot
        if remove_count and len(items) == _list_len(self):
            old = frozen_list([item_snapshot(value) for value in removed])
            new = self._mst_snapshot()
            if new != old:  # (new nodes equal to the old ones: a replace by an equal list would change nothing when
                record(tx, where, "replace", new, old)  # applied, so the patches name them item by item)
                return
        below = [(consumer, depth + 1) for consumer, depth in consumers]
        for offset in range(remove_count - 1, -1, -1):
            record(tx, ([index + offset, *keys], below), "remove", None, item_snapshot(removed[offset]))
        for offset, value in enumerate(items):
            record(tx, ([index + offset, *keys], below), "add", item_snapshot(value), None)

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
        position = _position(self, index, "pop index out of range" if _list_len(self) else "pop from empty list")
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
        self._mst_set(_position(self, index, "list assignment index out of range"), value)

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
        self._mst_splice(_position(self, index, "list assignment index out of range"), 1, [])

    def __repr__(self) -> str:
        return list.__repr__(self)


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


def _position(node: ListNode, index: SupportsIndex, message: str) -> int:
    """The non-negative position ``index`` names in ``node`` (negative counts from the end), or IndexError."""
    size = _list_len(node)
    position = index.__index__()
    if position < 0:
        position += size
    if not 0 <= position < size:
        raise IndexError(message)
    return position


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


def _match_items(item: Type, current: list[Any], values: list[Any]) -> tuple[list[Any], list[Any]]:
    """For each new value: the existing node it reconciles with, the value itself (plain items), or MISSING
    (a node must be created). Also returns the (node, snapshot) pairs to reconcile deeply.

    Model items match by identifier through a hash of the current items (linear); items without an
    identifier are kept only where the same position already holds an equal snapshot."""
    base = _unwrap(item)
    deep: list[tuple[Any, Any]] = []
    if not base.models():
        return [item.create(value) if not item.is_node else MISSING for value in values], deep
    by_id: dict[tuple[Any, str], Any] = {}
    for node in current:
        if node is not None and node._mst_id_family is not None:
            by_id[(type(node), node._mst_identifier())] = node
    result: list[Any] = []
    append = result.append
    for position, value in enumerate(values):
        if type(value) is not dict and (is_node(value) or not isinstance(value, Mapping)):
            append(value if is_node(value) else MISSING)
            continue
        member: Any = base.dispatch(value)
        if member is None or not member.is_model:
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
