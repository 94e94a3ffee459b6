"""Short one-line texts for recorded action calls and values, shared by the page and ``mst-llm replay``."""

from __future__ import annotations

import json
from typing import Any


def shorten(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis, so one entry stays on one line."""
    text = " ".join(text.split()) if "\n" in text else text
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


def value_text(value: Any, limit: int = 60) -> str:
    """A JSON value as one short line."""
    return shorten(json.dumps(value, ensure_ascii=False), limit)


def call_text(action: dict[str, Any] | None, limit: int = 100, flow: dict[str, Any] | None = None) -> str:
    """``path.name(args, key=value)`` of a recorded action call, its arguments shortened to fit ``limit``; for a
    flow's later segment (no call of its own) the flow's call and ``[segment N]``."""
    if action is None and flow is not None:
        segment = f" [segment {flow['segment']}]"
        return call_text({"args": [], **flow}, max(8, limit - len(segment))) + segment
    if action is None:
        return "(no action)"
    target = f"{action.get('path') or ''}.{action['name']}".lstrip(".")
    args = ", ".join(
        [json.dumps(arg, ensure_ascii=False) for arg in action.get("args", [])]
        + [f"{key}={json.dumps(arg, ensure_ascii=False)}" for key, arg in (action.get("kwargs") or {}).items()]
    )
    return f"{target}({shorten(args, max(8, limit - len(target) - 2))})"
