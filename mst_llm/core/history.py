"""Recording what happened to a tree: ``record_patches`` (and, later, undo and time travel)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mst_llm.core.patch import apply_patch, on_patch


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
    return PatchRecorder(node)
