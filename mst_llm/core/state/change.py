"""The change record: what the write path notes for each changed slot, and the one place where it becomes
RFC 6902 patches (relative to each node that listens)."""

from __future__ import annotations

from typing import Any, TypeAlias

from mst_llm.core.base.pointer import escape_json_path

Change: TypeAlias = tuple[list[Any], list[tuple[Any, int]], str, Any, Any]
"""One change to one slot, as the write path records it: ``(keys, consumers, op, value, old)``.

``keys`` is the path from the changed slot up to the root (innermost first); ``consumers`` are the nodes on that
path with patch or commit listeners, each with the number of keys below it; ``op`` is "add", "remove" or
"replace"; ``value`` and ``old`` are the new and the old snapshot (None where the op has none). A plain tuple: a
NamedTuple instance costs ~2,400 instructions more to build and unpack (measured with callgrind; it is tracked by
the cyclic GC), once per change that someone listens to.
"""


def relative_path(keys: list[Any], depth: int) -> str:
    """The JSON pointer of the ``depth`` innermost ``keys`` (given innermost first)."""
    if depth == 0:
        return ""
    parts = []
    for index in range(depth - 1, -1, -1):
        key = keys[index]
        if type(key) is int:
            parts.append(str(key))
        elif "~" in key or "/" in key:
            parts.append(escape_json_path(key))
        else:
            parts.append(key)
    return "/" + "/".join(parts)


def make_patch_pair(op: str, path: str, value: Any, old: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """A change's RFC 6902 patch and its inverse, at ``path`` (``relative_path`` of its keys for one consumer)."""
    if op == "replace":
        return {"op": "replace", "path": path, "value": value}, {"op": "replace", "path": path, "value": old}
    if op == "add":
        return {"op": "add", "path": path, "value": value}, {"op": "remove", "path": path}
    return {"op": "remove", "path": path}, {"op": "add", "path": path, "value": old}
