"""JSON pointer helpers (RFC 6901) and ``apply_patch`` (RFC 6902 add/replace/remove), all or nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from mst_llm.core.node import add_listener, is_node
from mst_llm.errors import PatchError, ValidationError


def escape_json_path(segment: str) -> str:
    """Escape one JSON pointer segment (RFC 6901): ``~`` becomes ``~0``, ``/`` becomes ``~1``."""
    return segment.replace("~", "~0").replace("/", "~1")


def unescape_json_path(segment: str) -> str:
    """Undo ``escape_json_path``."""
    return segment.replace("~1", "/").replace("~0", "~")


def json_patch_path(parts: Iterable[Any]) -> str:
    """Join path parts into a JSON pointer ("" for no parts)."""
    return "".join("/" + escape_json_path(str(part)) for part in parts)


def split_json_path(path: str) -> list[str]:
    """Split a JSON pointer into unescaped parts ("" -> [])."""
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError([(path, "a JSON pointer must be empty or start with '/'")])
    return [unescape_json_path(part) for part in path[1:].split("/")]


def on_patch(node: Any, listener: Callable[[dict[str, Any], dict[str, Any]], None]) -> Callable[[], None]:
    """Call ``listener(patch, inverse)`` for every change below ``node``, when its transaction commits."""
    return add_listener(node, "patch", listener)


def apply_patch(node: Any, patch: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> None:
    """Apply one patch or a list of patches in one transaction; on any error nothing changes."""
    from mst_llm.core.transaction import run_action

    patches = [patch] if isinstance(patch, Mapping) else list(patch)
    if not is_node(node):
        raise PatchError([("", f"apply_patch expects a tree node, got {type(node).__name__}")])
    run_action(node, "@APPLY_PATCHES", _apply_all, (patches,), {}, record_args=(patches,))


def _apply_all(node: Any, patches: list[Mapping[str, Any]]) -> None:
    for patch in patches:
        _apply_one(node, patch)


_OPS = ("add", "replace", "remove")


def _apply_one(root: Any, patch: Mapping[str, Any]) -> None:
    if not isinstance(patch, Mapping):
        raise PatchError([("", f"a patch must be a mapping, got {type(patch).__name__}")])
    op = patch.get("op")
    path = patch.get("path")
    if not isinstance(path, str):
        raise PatchError([("", f"patch path must be a string, got {path!r}")])
    if op not in _OPS:
        raise PatchError([(path, f"unsupported patch op {op!r} (expected add, replace or remove)")])
    if op != "remove" and "value" not in patch:
        raise PatchError([(path, f"{op!r} patch needs a value")])
    parts = split_json_path(path)
    value = patch.get("value")
    try:
        if not parts:
            if op == "remove":
                raise PatchError([(path, "cannot remove the node the patch is applied to")])
            from mst_llm.core.snapshot import _apply_snapshot

            _apply_snapshot(root, value)
            return
        parent = _resolve(root, parts[:-1], path)
        _apply_at(parent, parts[-1], op, value, path)
    except PatchError:
        raise
    except ValidationError as error:
        raise PatchError([(p or path, m) for p, m in error.errors]) from error


def _resolve(node: Any, parts: list[str], path: str) -> Any:
    for part in parts:
        kind = getattr(type(node), "_mst_kind", None)
        if kind == "model":
            fields = type(node)._mst_fields
            if part not in fields or fields[part].volatile is not None:
                raise PatchError([(path, f"{type(node).__name__} has no field {part!r}")])
            node = fields[part].get(node)
        elif kind == "list":
            index = _index(part, len(node), path, allow_end=False)
            node = list.__getitem__(node, index)
        elif kind == "dict":
            if part not in node:
                raise PatchError([(path, f"no key {part!r}")])
            node = dict.__getitem__(node, part)
        else:
            raise PatchError([(path, f"cannot descend into a {type(node).__name__} value at {part!r}")])
        if not is_node(node):
            raise PatchError([(path, f"{part!r} does not hold a node")])
    return node


def _index(part: str, size: int, path: str, *, allow_end: bool) -> int:
    if not part.isdigit() or (len(part) > 1 and part[0] == "0"):
        raise PatchError([(path, f"{part!r} is not a list index")])
    index = int(part)
    if index > size or (index == size and not allow_end):
        raise PatchError([(path, f"index {index} is out of range for a list of {size}")])
    return index


def _apply_at(parent: Any, key: str, op: str, value: Any, path: str) -> None:
    kind = parent._mst_kind
    if kind == "model":
        fields = type(parent)._mst_fields
        spec = fields.get(key)
        if spec is None or spec.volatile is not None:
            raise PatchError([(path, f"{type(parent).__name__} has no field {key!r}")])
        if op == "remove":
            raise PatchError([(path, "cannot remove a model field (replace it instead)")])
        setattr(parent, key, value)
    elif kind == "list":
        size = len(parent)
        if op == "add":
            index = size if key == "-" else _index(key, size, path, allow_end=True)
            parent.insert(index, value)
        elif op == "replace":
            parent[_index(key, size, path, allow_end=False)] = value
        else:
            del parent[_index(key, size, path, allow_end=False)]
    else:
        if op == "remove":
            if key not in parent:
                raise PatchError([(path, f"no key {key!r} to remove")])
            del parent[key]
        else:
            parent[key] = value
