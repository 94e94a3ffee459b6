"""JSON pointers (RFC 6901): the one parser, escaper and list-index rule for tree nodes and plain JSON values.

``apply_patch``, ``resolve_path`` and the plain-value patch applier of session logs all read pointers here, so a
pointer means the same thing (or is refused the same way) whichever of them reads it. A leaf module: it imports
nothing from mst_llm but the errors.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from mst_llm.errors import PatchError, PathNotFoundError

_BAD_ESCAPE = re.compile("~(?![01])")


def escape_json_path(segment: str) -> str:
    """Escape one JSON pointer segment (RFC 6901): ``~`` becomes ``~0``, ``/`` becomes ``~1``."""
    return segment.replace("~", "~0").replace("/", "~1")


def unescape_json_path(segment: str) -> str:
    """Undo ``escape_json_path`` (``~1`` first, so ``~01`` is ``~1``, as RFC 6901 section 4 requires)."""
    return segment.replace("~1", "/").replace("~0", "~")


def json_patch_path(parts: Iterable[Any]) -> str:
    """Join path parts into a JSON pointer ("" for no parts)."""
    return "".join("/" + escape_json_path(str(part)) for part in parts)


def relative_pointer(base: list[Any], target: list[Any]) -> str:
    """The shortest path from the node at path parts ``base`` to the one at ``target`` (MST ``getRelativePath``):
    "../b/c" goes up then down, "/todos/1" down, ".." up, "" stays."""
    common = 0
    while common < min(len(base), len(target)) and base[common] == target[common]:
        common += 1
    return "/".join([".."] * (len(base) - common)) + json_patch_path(target[common:])


def split_json_path(path: str) -> list[str]:
    """Split a JSON pointer into unescaped parts ("" -> []); PatchError when it is not RFC 6901 syntax."""
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError([(path, "a JSON pointer must be empty or start with '/'")])
    if "~" in path and _BAD_ESCAPE.search(path):
        raise PatchError([(path, "'~' in a JSON pointer must be followed by 0 or 1 (~0 is '~', ~1 is '/')")])
    return [unescape_json_path(part) for part in path[1:].split("/")]


def split_relative_path(path: str) -> list[str]:
    """Split a path for ``resolve_path``: a JSON pointer, or (as MST's ``resolvePath``) a relative path that starts
    with "." ("./a", "../b/c", ".."), whose "." parts stay where they are and ".." parts go up."""
    if not path.startswith("."):
        return split_json_path(path)
    if "~" in path and _BAD_ESCAPE.search(path):
        raise PatchError([(path, "'~' in a path must be followed by 0 or 1 (~0 is '~', ~1 is '/')")])
    return [unescape_json_path(part) for part in path.split("/") if part != "."]


def list_index(part: str, size: int, *, end: bool = False) -> int:
    """The index ``part`` names in a list of ``size`` items (PathNotFoundError when none).

    RFC 6901: ASCII digits without a leading zero, so "01" names nothing. ``end`` admits the position after the
    last item, as ``size`` or "-", where an ``add`` inserts; elsewhere "-" names nothing.
    """
    if part == "-" and end:
        return size
    if not (part.isascii() and part.isdigit()) or (part[0] == "0" and part != "0"):
        raise PathNotFoundError(f"{part!r} is not a list index (RFC 6901: digits, no leading zero)")
    index = int(part)
    if index > size or (index == size and not end):
        raise PathNotFoundError(f"index {index} is out of range for a list of {size}")
    return index
