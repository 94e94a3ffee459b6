"""``apply_patch`` (RFC 6902 add/replace/remove on trees), all or nothing, and ``on_patch``."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from mst_llm.core.base.frozen import FrozenList
from mst_llm.core.base.pointer import list_index, split_json_path
from mst_llm.core.ops.snapshots import _apply_snapshot
from mst_llm.core.state.node import add_listener, is_node
from mst_llm.core.state.transaction import run_action
from mst_llm.errors import PatchError, PathNotFoundError, ValidationError


def on_patch(node: Any, listener: Callable[[dict[str, Any], dict[str, Any]], None]) -> Callable[[], None]:
    """Call ``listener(patch, inverse)`` for every change below ``node``, when its transaction commits."""
    return add_listener(node, "patch", listener)


def apply_patch(node: Any, patch: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> None:
    """Apply one patch or a list of patches in one transaction; on any error nothing changes."""
    if type(patch) is list:  # the usual shapes first: an ABC isinstance check costs ~1,500 instructions
        patches = list(patch)
    elif type(patch) is dict or isinstance(patch, Mapping):
        patches = [patch]
    elif isinstance(patch, Iterable) and not isinstance(patch, (str, bytes)):
        patches = list(patch)
    else:
        raise PatchError([("", f"expected a patch or a list of patches, got {type(patch).__name__}")])
    if not is_node(node):
        raise PatchError([("", f"apply_patch expects a tree node, got {type(node).__name__}")])
    # recorded as a frozen list: JSON already, so the call's JSON form and node pinning need not walk it (that
    # walk was ~15 % of a replica's cost per applied entry)
    run_action(node, "@APPLY_PATCHES", _apply_all, (patches,), {}, record_args=(FrozenList(patches),))


def _apply_all(node: Any, patches: list[Mapping[str, Any]]) -> None:
    for patch in patches:
        _apply_one(node, patch)


_OPS = ("add", "replace", "remove")
# A tree records only the three ops above; a moved node's identity would be a guess, so the other RFC 6902 ops
# are refused by name (the plain-value applier in core/ops/jsonpatch.py applies all six).
_NOT_ON_TREES = ("test", "move", "copy")


def _apply_one(root: Any, patch: Mapping[str, Any]) -> None:
    if type(patch) is not dict and not isinstance(patch, Mapping):
        raise PatchError([("", f"a patch must be a mapping, got {type(patch).__name__}")])
    op = patch.get("op")
    path = patch.get("path")
    if not isinstance(path, str):
        raise PatchError([("", f"patch path must be a string, got {path!r}")])
    if op not in _OPS:
        why = "is not applied to trees (only add, replace and remove are)" if op in _NOT_ON_TREES else "is unknown"
        raise PatchError([(path, f"patch op {op!r} {why}")])
    if op != "remove" and "value" not in patch:
        raise PatchError([(path, f"{op!r} patch needs a value")])
    parts = split_json_path(path)
    value = patch.get("value")
    try:
        if not parts:
            if op == "remove":
                raise PatchError([(path, "cannot remove the node the patch is applied to")])
            _apply_snapshot(root, value)
            return
        parent = _resolve(root, parts[:-1], path)
        _apply_at(parent, parts[-1], op, value, path)
    except PatchError:
        raise
    except PathNotFoundError as error:
        raise PatchError([(path, str(error))]) from error
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
            node = list.__getitem__(node, list_index(part, len(node)))
        elif kind == "dict":
            if part not in node:
                raise PatchError([(path, f"no key {part!r}")])
            node = dict.__getitem__(node, part)
        else:
            raise PatchError([(path, f"cannot descend into a {type(node).__name__} value at {part!r}")])
        if not is_node(node):
            raise PatchError([(path, f"{part!r} does not hold a node")])
    return node


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
        if op == "add":
            parent.insert(list_index(key, len(parent), end=True), value)
        elif op == "replace":
            parent[list_index(key, len(parent))] = value
        else:
            del parent[list_index(key, len(parent))]
    elif op == "add":
        parent[key] = value
    elif key not in parent:
        raise PatchError([(path, f"no key {key!r} to {op}")])
    elif op == "replace":
        parent[key] = value
    else:
        del parent[key]
