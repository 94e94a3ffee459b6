"""Optional parts of mst_llm name the pip extra that installs them when their packages are missing."""

from __future__ import annotations

import importlib.util


def require_extra(extra: str, part: str, modules: tuple[str, ...]) -> None:
    """Raise ImportError naming ``mst-llm[extra]`` unless every module can be imported (checked without importing
    them, so a slow import such as llama_cpp costs nothing here)."""
    missing = [name for name in modules if not _available(name)]
    if missing:
        raise ImportError(
            f"{part} needs the [{extra}] extra: pip install 'mst-llm[{extra}]' (missing: {', '.join(missing)})",
            name=missing[0],
        )


def _available(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a blocked or half-imported module
        return False
