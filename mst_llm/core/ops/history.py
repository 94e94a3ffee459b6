"""Recording what happened to a tree: ``record_patches``, ``UndoManager`` and ``TimeTraveller``.

The undo manager and the time traveller observe committed transactions through ``on_commit``
(one entry per outermost transaction) and change the tree only through ``apply_patch``/``apply_snapshot``,
so their own changes are ordinary transactions that other listeners see as patches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from mst_llm.core.ops.patches import apply_patch, on_patch
from mst_llm.core.ops.snapshots import apply_snapshot, get_snapshot
from mst_llm.core.ops.tree import on_commit
from mst_llm.core.state.transaction import Commit
from mst_llm.errors import MSTError


class PatchRecorder:
    """Collects the patches (and inverse patches) emitted below a node."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self.patches: list[dict[str, Any]] = []
        self.inverse_patches: list[dict[str, Any]] = []
        self._dispose: Callable[[], None] | None = None
        self.resume()

    def _record(self, patch: dict[str, Any], inverse: dict[str, Any]) -> None:
        self.patches.append(patch)
        self.inverse_patches.append(inverse)

    @property
    def recording(self) -> bool:
        return self._dispose is not None

    def stop(self) -> None:
        if self._dispose is not None:
            self._dispose()
            self._dispose = None

    def resume(self) -> None:
        if self._dispose is None:
            self._dispose = on_patch(self.node, self._record)

    def replay(self, target: Any) -> None:
        """Apply the recorded patches to ``target`` (one transaction)."""
        apply_patch(target, self.patches)

    def undo(self, target: Any | None = None) -> None:
        """Apply the inverse patches in reverse order (one transaction), undoing what was recorded."""
        apply_patch(self.node if target is None else target, list(reversed(self.inverse_patches)))


def record_patches(node: Any) -> PatchRecorder:
    """Record the patches below ``node``: ``.patches``, ``.inverse_patches``, ``.stop()``, ``.resume()``,
    ``.replay(target)``, ``.undo(target)``."""
    return PatchRecorder(node)


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One undoable step: the patches of one transaction (or group), in mutation order, and its inverses.

    ``actions`` lists the outermost action calls that made it (empty for bare mutations).
    """

    patches: list[dict[str, Any]]
    inverse_patches: list[dict[str, Any]]
    actions: tuple[dict[str, Any], ...] = ()


class UndoManager:
    """Undo/redo over ``target``: one history entry per committed outermost transaction (or group).

    ``history`` is the whole timeline, undone entries included (as in MST); ``undo_index`` is the number of
    entries currently applied. A new recorded change discards the undone (redo) part.
    """

    def __init__(self, target: Any, max_history: int | None = None) -> None:
        if max_history is not None and max_history < 1:
            raise ValueError("max_history must be at least 1 (or None for no limit)")
        self.target = target
        self.max_history = max_history
        self._entries: list[HistoryEntry] = []
        self._index = 0
        self._group: list[HistoryEntry] | None = None
        self._group_depth = 0
        self._skip_depth = 0
        self._replaying = False
        self._dispose: Callable[[], None] | None = on_commit(target, self._on_commit)

    # -- recording ----------------------------------------------------------------------------------------

    def _on_commit(self, commit: Commit) -> None:
        if self._replaying or self._skip_depth:
            return
        action = commit.action
        actions = () if action is None else (action,)
        item = HistoryEntry(list(commit.patches), list(commit.inverse_patches), actions)
        if self._group is not None:
            self._group.append(item)
        else:
            self._push(item)

    def _push(self, item: HistoryEntry) -> None:
        entries = self._entries
        if self._index < len(entries):
            del entries[self._index :]
        entries.append(item)
        if self.max_history is not None and len(entries) > self.max_history:
            del entries[: len(entries) - self.max_history]
        self._index = len(entries)

    @contextmanager
    def with_group(self) -> Iterator[None]:
        """Merge every transaction committed inside the block into one history entry (nesting is flat)."""
        self._group_depth += 1
        if self._group is None:
            self._group = []
        try:
            yield
        finally:
            self._group_depth -= 1
            if self._group_depth == 0:
                items, self._group = self._group, None
                if items:
                    self._push(_merge(items))

    @contextmanager
    def without_undo(self) -> Iterator[None]:
        """Changes committed inside the block are not recorded (and do not discard the redo part)."""
        self._skip_depth += 1
        try:
            yield
        finally:
            self._skip_depth -= 1

    # -- undo/redo ---------------------------------------------------------------------------------------

    @property
    def history(self) -> tuple[HistoryEntry, ...]:
        return tuple(self._entries)

    @property
    def undo_index(self) -> int:
        return self._index

    @property
    def can_undo(self) -> bool:
        return self._index > 0

    @property
    def can_redo(self) -> bool:
        return self._index < len(self._entries)

    def undo(self) -> None:
        """Revert the latest applied entry in one transaction (its patches reach listeners, not history)."""
        if not self.can_undo:
            raise MSTError("nothing to undo")
        entry = self._entries[self._index - 1]
        self._apply(entry.inverse_patches[::-1])
        self._index -= 1

    def redo(self) -> None:
        """Re-apply the next undone entry in one transaction."""
        if not self.can_redo:
            raise MSTError("nothing to redo")
        self._apply(self._entries[self._index].patches)
        self._index += 1

    def _apply(self, patches: list[dict[str, Any]]) -> None:
        self._replaying = True
        try:
            apply_patch(self.target, patches)
        finally:
            self._replaying = False

    def clear(self, *, undo: bool = True, redo: bool = True) -> None:
        """Forget the undo part, the redo part, or (by default) both."""
        if redo:
            del self._entries[self._index :]
        if undo:
            del self._entries[: self._index]
            self._index = 0

    def stop(self) -> None:
        """Stop recording; undo/redo of what was recorded keep working."""
        if self._dispose is not None:
            self._dispose()
            self._dispose = None


def _merge(items: list[HistoryEntry]) -> HistoryEntry:
    if len(items) == 1:
        return items[0]
    patches = [patch for item in items for patch in item.patches]
    inverses = [patch for item in items for patch in item.inverse_patches]
    return HistoryEntry(patches, inverses, tuple(call for item in items for call in item.actions))


class TimeTraveller:
    """Keeps the snapshot after every transaction on ``target`` and moves the tree between them.

    ``history[0]`` is the state when the traveller was created. Moving (``go_to``/``undo``/``redo``) applies
    a snapshot in one transaction and is not recorded; a new change while in the past discards the future.
    """

    def __init__(self, target: Any) -> None:
        self.target = target
        self._states: list[Any] = [get_snapshot(target)]
        self._index = 0
        self._moving = False
        self._dispose: Callable[[], None] | None = on_commit(target, self._on_commit)

    def _on_commit(self, commit: Commit) -> None:
        if self._moving:
            return
        del self._states[self._index + 1 :]
        self._states.append(get_snapshot(self.target))
        self._index += 1

    @property
    def history(self) -> tuple[Any, ...]:
        return tuple(self._states)

    @property
    def index(self) -> int:
        return self._index

    @property
    def can_undo(self) -> bool:
        return self._index > 0

    @property
    def can_redo(self) -> bool:
        return self._index < len(self._states) - 1

    def go_to(self, index: int) -> None:
        """Make the tree equal to ``history[index]`` (negative indices count from the end)."""
        size = len(self._states)
        if not -size <= index < size:
            raise IndexError(f"time travel index {index} is out of range (history has {size} states)")
        index %= size
        self._moving = True
        try:
            apply_snapshot(self.target, self._states[index])
        finally:
            self._moving = False
        self._index = index

    def undo(self) -> None:
        if not self.can_undo:
            raise MSTError("nothing to undo")
        self.go_to(self._index - 1)

    def redo(self) -> None:
        if not self.can_redo:
            raise MSTError("nothing to redo")
        self.go_to(self._index + 1)

    def stop(self) -> None:
        """Stop recording new states."""
        if self._dispose is not None:
            self._dispose()
            self._dispose = None
