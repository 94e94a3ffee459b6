"""The exception hierarchy: every error the library raises on purpose derives from :class:`MSTError`."""

from __future__ import annotations

from collections.abc import Iterable


class MSTError(Exception):
    """Base class of every deliberate mst_llm error."""


class ValidationError(MSTError, ValueError):
    """A value does not fit its type. ``errors`` lists every bad ``(path, message)`` pair."""

    def __init__(self, errors: Iterable[tuple[str, str]] | str) -> None:
        self.errors: list[tuple[str, str]] = [("", errors)] if isinstance(errors, str) else list(errors)
        lines = [f"{path or '/'}: {message}" if path is not None else message for path, message in self.errors]
        super().__init__("; ".join(lines) if len(lines) < 2 else "\n  " + "\n  ".join(lines))


class PatchError(ValidationError):
    """A JSON patch cannot be applied (bad path, unknown field, wrong op or value)."""


class ProtectionError(MSTError):
    """A protected tree was changed outside an action, or an action changed a node outside its subtree."""


class DeadNodeError(MSTError):
    """A destroyed or removed node was used."""


class InvalidTransition(MSTError):
    """A state machine refused an event in its current state."""


class InvalidReferenceError(MSTError):
    """A reference points to an identifier that is not in the tree."""


class PathNotFoundError(MSTError, LookupError):
    """A JSON pointer does not lead to a value in the tree."""


class SessionLogError(MSTError):
    """A session log cannot be read: not a session log, an unsupported format version, or corrupt entries."""
