"""The LLM layer's one entry in a tree's env, so an app keeps ``env`` for its own services.

``App.create(snapshot, env={**llm_env(models_dir=...), "db": db})``: every ``LLMStore`` and ``LlamaModel``
anywhere in that tree reads its settings from ``env[LLM_ENV_KEY]``; without the entry they use the defaults
(``default_models_dir()``, the built-in catalog, real downloads and llama.cpp backends).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs

from mst_llm import get_env
from mst_llm.llm.backend import Backend
from mst_llm.llm.catalog import CatalogEntry, load_catalog
from mst_llm.llm.download import Downloader

LLM_ENV_KEY = "mst_llm.llm"
"""The key of the LLM layer's settings in a tree's env mapping."""

MODELS_DIR_ENV = "MST_LLM_MODELS_DIR"


def default_models_dir() -> Path:
    """``$MST_LLM_MODELS_DIR``, else the platform's user cache dir / ``models``."""
    override = os.environ.get(MODELS_DIR_ENV)
    return Path(override) if override else Path(platformdirs.user_cache_dir("mst_llm")) / "models"


@dataclass(frozen=True)
class LLMEnv:
    """Settings of the LLM layer in one tree; None means the default."""

    models_dir: Path | None = None
    catalog: tuple[CatalogEntry, ...] | None = None
    downloader: Downloader | None = None
    backend_factory: Callable[[str], Backend] | None = None
    save_interval: float = 0.5


def llm_env(
    models_dir: str | Path | None = None,
    *,
    catalog: str | Path | Iterable[Mapping[str, Any] | CatalogEntry] | None = None,
    downloader: Downloader | None = None,
    backend_factory: Callable[[str], Backend] | None = None,
    save_interval: float = 0.5,
) -> dict[str, LLMEnv]:
    """The env entry to merge into an app's env: ``env={**llm_env(models_dir=...), **my_services}``.

    ``backend_factory(isolation)`` replaces llama.cpp (tests use a fake); ``catalog`` replaces the built-in one."""
    entries = None if catalog is None else tuple(load_catalog(catalog))
    directory = None if models_dir is None else Path(models_dir)
    return {LLM_ENV_KEY: LLMEnv(directory, entries, downloader, backend_factory, save_interval)}


def settings_in(env: Any) -> LLMEnv:
    """The LLM settings in an env value (the defaults when it has none)."""
    entry = env.get(LLM_ENV_KEY) if isinstance(env, Mapping) else None
    return entry if isinstance(entry, LLMEnv) else LLMEnv()


def llm_settings(node: Any) -> LLMEnv:
    """The LLM settings of the tree ``node`` is in."""
    return settings_in(get_env(node))
