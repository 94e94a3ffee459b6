"""JSON patches (RFC 6902, with MST's list and model semantics) applied to plain JSON data, not to nodes.

Session logs are read without the model classes (the CLI has none), so their states are rebuilt here from
the recorded snapshots and patches. Two flavours: in place on data the caller owns (fast, for one state) and
persistent, copying only the containers on the patched path (for many states that share structure).
"""

from __future__ import annotations

from typing import Any

from mst_llm.core.frozen import FrozenDict, FrozenList, freeze
from mst_llm.core.patch import split_json_path
from mst_llm.errors import PatchError


class JsonPatchError(PatchError):
    """A patch does not fit the JSON data it is applied to."""


def resolve_pointer(doc: Any, path: str) -> Any:
    """The value at JSON pointer ``path`` in ``doc``; raises KeyError when there is none."""
    for part in split_json_path(path):
        doc = _child(doc, part, path)
    return doc


def _child(container: Any, part: str, path: str) -> Any:
    try:
        if isinstance(container, list):
            return container[_index(part, len(container) - 1, path)]
        if isinstance(container, dict):
            return container[part]
    except KeyError:
        pass
    raise KeyError(path)


def _index(part: str, last: int, path: str) -> int:
    if not part.isdigit() or not 0 <= int(part) <= last:
        raise KeyError(path)
    return int(part)


def apply_in_place(doc: Any, patch: dict[str, Any]) -> Any:
    """Apply ``patch`` to ``doc``, mutating it; returns the new document (it changes for path "")."""
    parts = split_json_path(patch["path"])
    op = patch["op"]
    if not parts:
        return patch["value"]
    try:
        parent = doc
        for part in parts[:-1]:
            parent = _child(parent, part, patch["path"])
        _set(parent, parts[-1], op, patch.get("value"))
    except (KeyError, IndexError, TypeError, ValueError) as error:
        raise JsonPatchError(f"cannot apply {patch!r}: {error}") from None
    return doc


def _set(parent: Any, key: str, op: str, value: Any) -> None:
    if isinstance(parent, list):
        if op == "add":
            list.insert(parent, len(parent) if key == "-" else _index(key, len(parent), key), value)
        elif op == "replace":
            list.__setitem__(parent, _index(key, len(parent) - 1, key), value)
        else:
            list.__delitem__(parent, _index(key, len(parent) - 1, key))
    elif isinstance(parent, dict):
        if op == "remove":
            dict.__delitem__(parent, key)
        else:
            dict.__setitem__(parent, key, value)
    else:
        raise TypeError(f"cannot change a {type(parent).__name__} value")


def apply_persistent(doc: Any, patch: dict[str, Any]) -> Any:
    """A new frozen document with ``patch`` applied; ``doc`` (frozen) is untouched and shared."""
    parts = split_json_path(patch["path"])
    value = freeze(patch.get("value"))
    if not parts:
        return value
    try:
        return _copy_set(doc, parts, 0, patch["op"], value, patch["path"])
    except (KeyError, IndexError, TypeError, ValueError) as error:
        raise JsonPatchError(f"cannot apply {patch!r}: {error}") from None


def _copy_set(node: Any, parts: list[str], depth: int, op: str, value: Any, path: str) -> Any:
    copy: Any
    if isinstance(node, list):
        copy = FrozenList(node)
    elif isinstance(node, dict):
        copy = FrozenDict(node)
    else:
        raise TypeError(f"cannot change a {type(node).__name__} value")
    key = parts[depth]
    if depth == len(parts) - 1:
        _set(copy, key, op, value)
    else:
        child = _copy_set(_child(node, key, path), parts, depth + 1, op, value, path)
        _set(copy, key, "replace", child)
    return copy
