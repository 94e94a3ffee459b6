"""JSON pointers into plain snapshots (the page reads recorded states, not live nodes)."""

from __future__ import annotations

from typing import Any

from mst_llm import unescape_json_path

ABSENT: dict[str, bool] = {"absent": True}  # resolve's answer for a path a state does not have (compare with `is`)


def resolve(doc: Any, pointer: str) -> Any:
    """The value at ``pointer`` in ``doc``, or ``ABSENT``."""
    for part in pointer.split("/")[1:] if pointer else ():
        key = unescape_json_path(part)
        if isinstance(doc, dict) and key in doc:
            doc = doc[key]
        elif isinstance(doc, list) and key.isdigit() and int(key) < len(doc):
            doc = doc[int(key)]
        else:
            return ABSENT
    return doc


def overlaps(a: str, b: str) -> bool:
    """Whether one pointer is the other or lies under it."""
    return a == b or a.startswith(b + "/") or b.startswith(a + "/") or not a or not b
