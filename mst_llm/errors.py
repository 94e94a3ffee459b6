"""The exception hierarchy: every error the library raises on purpose derives from ``MSTError``."""

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
    """A state machine refused an event in its current state (``state``, ``event`` and ``allowed`` say which).

    All three are required, so every raise lets a caller react without parsing the message."""

    def __init__(self, message: str, *, state: str, event: str, allowed: Iterable[str]) -> None:
        self.state = state
        self.event = event
        self.allowed = tuple(allowed)
        super().__init__(message)


class ReactionLoopError(MSTError):
    """Reactions kept making each other stale: more rounds after one commit than ``MAX_ROUNDS`` (100)."""


class InvalidReferenceError(MSTError):
    """A reference points to an identifier that is not in the tree."""


class PathNotFoundError(MSTError, LookupError):
    """A JSON pointer does not lead to a value in the tree."""


class SessionLogError(MSTError):
    """A session log cannot be read: not a session log, an unsupported format version, or corrupt entries."""


class CatalogError(MSTError, ValueError):
    """A catalog entry, key or file name is invalid (bad source scheme, path separators, ``..``, ...)."""


class ModelStoreError(MSTError):
    """An LLMStore operation was refused (unknown key, model loaded or downloading, no source)."""


class DownloadError(MSTError):
    """A model download or install failed. ``resumable`` says whether the partial file was kept for a resume."""

    resumable: bool = False

    def __init__(self, message: str, *, resumable: bool = False) -> None:
        super().__init__(message)
        self.resumable = resumable


class DownloadHTTPError(DownloadError):
    """The server answered with an HTTP error status (``status`` holds it)."""

    def __init__(self, message: str, *, status: int, resumable: bool = False) -> None:
        super().__init__(message, resumable=resumable)
        self.status = status


class ChecksumMismatchError(DownloadError):
    """The downloaded bytes do not have the expected size or sha256; the partial file was deleted."""


class InsufficientSpaceError(DownloadError, OSError):
    """Not enough free disk space for the download (checked first, or ENOSPC while writing)."""


class DownloadTimeoutError(DownloadError, TimeoutError):
    """The connection stalled or failed repeatedly until the retries ran out; the partial is kept."""


class HubError(DownloadError, LookupError):
    """A Hugging Face Hub reference cannot be resolved: a malformed reference, an unknown or private repository or
    file, no GGUF file for the quantization (or more than one), or an API error (``status`` holds the HTTP status,
    None when there was no answer)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class OfflineError(DownloadError):
    """``HF_HUB_OFFLINE`` is set and the model is not downloaded; nothing was fetched (a partial file is kept)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, resumable=True)


class GGUFValidationError(MSTError, ValueError):
    """A file is not a GGUF model that llama.cpp can load safely; raised before llama.cpp ever sees it.

    ``path`` is the file and ``reason`` says what is wrong (and where, for structural damage)."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class InferenceError(MSTError):
    """The inference backend failed: llama.cpp refused a model, a generation failed, or the worker died."""


class WorkerDiedError(InferenceError):
    """The inference worker process ended unexpectedly (a llama.cpp abort, a signal, or an exit)."""


class ChatTemplateError(InferenceError, ValueError):
    """A model's chat template failed to render: a bug in the template, or a conversation it refuses."""
