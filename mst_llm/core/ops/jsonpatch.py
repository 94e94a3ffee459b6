"""JSON patches (RFC 6902: add, remove, replace, move, copy, test) applied to plain JSON data, not to nodes.

Session logs are read without the model classes (the CLI has none), so their states are rebuilt here from
the recorded snapshots and patches. Two flavours: in place on data the caller owns (fast, for one state) and
persistent, copying only the containers on the patched path (for many states that share structure). Both read
pointers with ``mst_llm.core.base.pointer``, as ``apply_patch`` does on trees, and both check a patch completely
before changing anything, so a refused patch (a JsonPatchError) leaves the document as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from mst_llm.core.base.frozen import FrozenDict, FrozenList, freeze
from mst_llm.core.base.pointer import list_index, split_json_path
from mst_llm.errors import PatchError, PathNotFoundError

_OPS = ("add", "remove", "replace", "move", "copy", "test")


class JsonPatchError(PatchError):
    """A patch does not fit the JSON data it is applied to."""


@dataclass(frozen=True)
class _Flavour:
    """How one flavour gets a container it may change: on the patched path, and for the removal half of a move.

    Values from a patch enter the document frozen (``freeze`` shares what is frozen already), so neither flavour
    ever changes a patch, a snapshot or another place of the document through a shared container.
    """

    copy: Callable[[Any], Any]
    detached: Callable[[Any], Any]


def _plain_copy(container: Any) -> Any:
    return list(container) if isinstance(container, list) else dict(container)


def _thawed(container: Any) -> Any:
    """The container itself if the caller handed it over (plain), a plain copy if it is frozen."""
    return _plain_copy(container) if isinstance(container, (FrozenList, FrozenDict)) else container


def _frozen_copy(container: Any) -> Any:
    return FrozenList(container) if isinstance(container, list) else FrozenDict(container)


# In place, the removal half of a move works on copies of the containers on its path, so that an add half that
# fails leaves the caller's document untouched.
_IN_PLACE = _Flavour(copy=_thawed, detached=_plain_copy)
_PERSISTENT = _Flavour(copy=_frozen_copy, detached=_frozen_copy)


def resolve_pointer(doc: Any, path: str) -> Any:
    """The value at JSON pointer ``path`` in ``doc``; raises KeyError when there is none."""
    try:
        return _get(doc, split_json_path(path), path)
    except JsonPatchError:
        raise KeyError(path) from None


def apply_in_place(doc: Any, patch: Mapping[str, Any]) -> Any:
    """Apply ``patch`` to ``doc``, mutating it; returns the new document (it changes for path "")."""
    return _apply(doc, patch, _IN_PLACE)


def apply_persistent(doc: Any, patch: Mapping[str, Any]) -> Any:
    """A new frozen document with ``patch`` applied; ``doc`` (frozen) is untouched and shared."""
    return _apply(doc, patch, _PERSISTENT)


def _apply(doc: Any, patch: Mapping[str, Any], flavour: _Flavour) -> Any:
    if not isinstance(patch, Mapping):
        _fail("", f"a patch must be a mapping, got {type(patch).__name__}")
    op, path = patch.get("op"), patch.get("path")
    if not isinstance(path, str):
        _fail("", f"patch path must be a string, got {path!r}")
    if op not in _OPS:
        _fail(path, f"unknown patch op {op!r} (RFC 6902 has {', '.join(_OPS)})")
    if op in ("add", "replace", "test") and "value" not in patch:
        _fail(path, f"{op!r} patch needs a value")
    parts = _parts(path)
    if op == "test":
        if not _json_equal(_get(doc, parts, path), patch["value"]):
            _fail(path, f"test failed: the value is not {patch['value']!r}")
        return doc
    if op in ("move", "copy"):
        source = patch.get("from")
        if not isinstance(source, str):
            _fail(path, f"{op!r} patch needs a 'from' pointer, got {source!r}")
        source_parts = _parts(source)
        value = _get(doc, source_parts, source)
        if op == "copy":
            return _edit(doc, parts, "add", freeze(value), flavour.copy, path)
        if source_parts == parts:
            return doc
        if parts[: len(source_parts)] == source_parts:
            _fail(path, f"cannot move {source!r} into itself")
        removed = _edit(doc, source_parts, "remove", None, flavour.detached, source)
        return _edit(removed, parts, "add", value, flavour.copy, path)
    return _edit(doc, parts, op, freeze(patch.get("value")), flavour.copy, path)


def _fail(path: str, message: str) -> NoReturn:
    raise JsonPatchError([(path, message)])


def _parts(path: str) -> list[str]:
    try:
        return split_json_path(path)
    except PatchError as error:
        raise JsonPatchError(error.errors) from None


def _get(doc: Any, parts: list[str], path: str) -> Any:
    for part in parts:
        doc = _child(doc, part, path)
    return doc


def _child(container: Any, part: str, path: str) -> Any:
    if isinstance(container, list):
        return container[_index(part, len(container), path)]
    if isinstance(container, dict):
        if part not in container:
            _fail(path, f"no key {part!r}")
        return container[part]
    _fail(path, f"cannot descend into a {type(container).__name__} value at {part!r}")


def _index(part: str, size: int, path: str, *, end: bool = False) -> int:
    try:
        return list_index(part, size, end=end)
    except PathNotFoundError as error:
        _fail(path, str(error))


def _edit(doc: Any, parts: list[str], op: str, value: Any, copy: Callable[[Any], Any], path: str) -> Any:
    """``doc`` with ``op`` applied at ``parts``; every check comes before the one change (and the copies)."""
    if not parts:
        if op == "remove":
            _fail(path, "cannot remove the whole document")
        return value
    return _edit_below(doc, parts, 0, op, value, copy, path)


def _edit_below(
    doc: Any, parts: list[str], depth: int, op: str, value: Any, copy: Callable[[Any], Any], path: str
) -> Any:
    if not isinstance(doc, (list, dict)):
        _fail(path, f"cannot change a {type(doc).__name__} value at {parts[depth]!r}")
    key = parts[depth]
    if depth < len(parts) - 1:
        child = _child(doc, key, path)
        value = _edit_below(child, parts, depth + 1, op, value, copy, path)
        if value is child:  # changed in place below: nothing to change here
            return doc
        op = "replace"
    changed = copy(doc)
    _store(changed, key, op, value, path)
    return changed


def _store(container: Any, key: str, op: str, value: Any, path: str) -> None:
    """Checks ``op`` at ``key`` of ``container``, then does it (base-class methods: frozen copies too)."""
    if isinstance(container, list):
        if op == "add":
            list.insert(container, _index(key, len(container), path, end=True), value)
        elif op == "replace":
            list.__setitem__(container, _index(key, len(container), path), value)
        else:
            list.__delitem__(container, _index(key, len(container), path))
    elif op == "add":
        dict.__setitem__(container, key, value)
    elif key not in container:
        _fail(path, f"no key {key!r} to {op}")
    elif op == "replace":
        dict.__setitem__(container, key, value)
    else:
        dict.__delitem__(container, key)


def _json_equal(a: Any, b: Any) -> bool:
    """RFC 6902 ``test`` equality: like ``==``, but true and 1 (or false and 0) differ."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[key], b[key]) for key in a)
    return not isinstance(a, list | dict) and not isinstance(b, list | dict) and a == b
