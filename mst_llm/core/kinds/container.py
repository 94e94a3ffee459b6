"""What list and dict nodes share: the node slots and the identity semantics of a node, the per-key snapshot
cache they patch in place when nobody else holds it, and adoption of children built with them."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

from mst_llm.core.base.frozen import FrozenList
from mst_llm.core.kinds.base import MISSING, Type
from mst_llm.core.state.node import NodeSlots, is_node
from mst_llm.core.state.reactivity import STRUCTURE
from mst_llm.errors import ValidationError

_getrefcount = sys.getrefcount


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


class ContainerNode(NodeSlots):
    """Mixin of list and dict nodes (they also subclass ``list``/``dict`` so that reads run at C speed)."""

    __slots__ = ()
    _mst_id_family = None

    def _mst_identifier(self) -> None:
        return None

    # the slots themselves are laid out by ListNode and DictNode (a list or dict base forbids them here)
    def _mst_dirty(self, key: Any) -> None:
        if key is STRUCTURE:
            self._snap = None
            self._dirty = None  # type: ignore[misc]
        elif self._snap is not None:
            dirty = self._dirty
            if dirty is None:
                self._dirty = {key}  # type: ignore[misc]
            else:
                dirty.add(key)

    def __hash__(self) -> int:  # nodes are identities
        return id(self) >> 4

    def __reduce__(self) -> Any:
        raise TypeError("tree nodes cannot be pickled; pickle get_snapshot(node) instead")


def adopt(child: Any, parent: Any, key: Any) -> None:
    """Link a child while building a new subtree (its identifiers are registered when the subtree attaches)."""
    if child._parent is not None:
        raise ValidationError([("", f"{type(child).__name__} node is already in a tree; detach() it first")])
    child._parent = parent
    child._key = key
    child._tree = None


def same(new: Any, old: Any) -> bool:
    return new is old or (not is_node(new) and new is not MISSING and new == old and type(new) is type(old))


def sameness(typ: Type) -> Callable[[Any, Any], bool]:
    """How to tell that storing a new item of ``typ`` over an old one changes nothing: ``same``, and for values
    whose JSON form can differ while they compare equal (Decimal 1.5 == 1.50, a datetime equals itself in another
    timezone) the same JSON form too."""
    if typ.is_plain or typ.is_node:
        return same
    return functools.partial(_same_form, typ)


def _same_form(typ: Type, new: Any, old: Any) -> bool:
    return same(new, old) and (new is old or typ.snapshot(new) == typ.snapshot(old))


def snapshot_of_container(stored: Any) -> Any:
    """The Type.snapshot of list and dict types (no local reference to the cached snapshot: ``_mst_snapshot``
    may update it in place when it is unshared)."""
    if stored._snap is None or stored._dirty is not None:
        return stored._mst_snapshot()
    return stored._snap
