"""``ModelInfo``: one catalog model's state in the store, changed only through the transition table."""

from __future__ import annotations

from typing import Any, Literal

from mst_llm import ModelNode, action, guard, model
from mst_llm import types as t
from mst_llm.errors import InvalidTransition

Status = Literal["idle", "downloading", "initializing", "ready", "error"]

TRANSITIONS: dict[str, dict[str, Status]] = {
    "idle": {"download": "downloading", "found": "ready", "fail": "error"},
    "downloading": {"complete": "ready", "cancel": "idle", "fail": "error"},
    "ready": {"load": "initializing", "remove": "idle", "fail": "error", "found": "ready"},
    "initializing": {"loaded": "ready", "fail": "error", "unload": "ready"},
    "error": {"download": "downloading", "found": "ready", "remove": "idle", "fail": "error"},
}
"""state -> {event: next state}: the only way a ModelInfo's status changes."""

_MUTABLE = frozenset(
    {
        "path",
        "progress",
        "error",
        "sha256",
        "size",
        "quantization",
        "architecture",
        "context_length",
        "parameter_count",
        "resumable_bytes",
        "hash_cache",
    }
)


@model
class ModelInfo(ModelNode):
    """A model the store knows: catalog data, where its file is, its status, progress and GGUF metadata."""

    key: t.Identifier
    display_name: str
    filename: str
    url: str | None = None
    size: int | None = None
    sha256: str | None = None
    min_size: int | None = None
    quantization: str | None = None
    license: str | None = None
    path: str | None = None
    status: Status = "idle"
    progress: float = 0.0
    error: str | None = None
    resumable_bytes: int = 0
    architecture: str | None = None
    context_length: int | None = None
    parameter_count: int | None = None
    hash_cache: t.Frozen[dict] | None = None  # type: ignore[type-arg]  # core: Frozen[Any] fails isinstance

    @action
    def transition(self, event: str, **changes: Any) -> None:
        """Apply ``event`` from the table (InvalidTransition names the allowed events) and set ``changes``."""
        allowed = TRANSITIONS[self.status]
        if event not in allowed:
            raise InvalidTransition(
                f"model {self.key!r}: event {event!r} is not allowed in state {self.status!r}; "
                f"allowed: {sorted(allowed)}",
                state=self.status,
                event=event,
                allowed=sorted(allowed),
            )
        self.update(**changes)
        self.status = allowed[event]

    def after_create(self) -> None:
        """Built from a snapshot, nothing runs yet: a download in progress comes back ``idle`` (its
        ``resumable_bytes`` kept, so the next download resumes), a model being loaded comes back ``ready``."""
        if self.status == "downloading":
            self.transition("cancel", progress=0.0)
        elif self.status == "initializing":
            self.transition("unload")

    @guard("status")
    def _guard_status(self, old: str, new: str) -> None:
        """A patch or snapshot may move ``status`` only along the transition table, like ``transition`` does."""
        allowed = TRANSITIONS[old]
        if new not in allowed.values():
            raise InvalidTransition(
                f"model {self.key!r}: status cannot be set from {old!r} to {new!r}; allowed: {sorted(allowed)}",
                state=old,
                event=f"set {new}",
                allowed=sorted(allowed),
            )

    @action
    def update(self, **changes: Any) -> None:
        """Set data fields (never ``status``: that goes through ``transition``)."""
        unknown = set(changes) - _MUTABLE
        if unknown:
            raise AttributeError(f"ModelInfo.update cannot set {sorted(unknown)}")
        for name, value in changes.items():
            setattr(self, name, value)

    @action
    def set_progress(self, progress: float) -> None:
        """Progress of the running download, 0-100; ignored unless downloading and moving forward."""
        if self.status == "downloading" and progress > self.progress:
            self.progress = min(100.0, progress)
