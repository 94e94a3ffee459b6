"""Hugging Face Hub references -> catalog entries, with huggingface_hub's addresses and Ollama's ``hf.co`` names.

``hf.co/USER/REPO:QUANT`` (Ollama's form; ``huggingface.co/`` and no prefix work too) picks the repository's
``.gguf`` file whose name holds the quantization tag, case-insensitively (default ``Q4_K_M``); ``USER/REPO`` with a
file name picks that file. The Hub is addressed as huggingface_hub does: ``$HF_ENDPOINT`` (default
``https://huggingface.co``), the file list with sizes and LFS sha256 from ``GET /api/models/{repo}/tree/{revision}``,
the file from ``/{repo}/resolve/{revision}/{filename}``, and ``$HF_TOKEN`` as ``Authorization: Bearer`` to that
endpoint only (never in a message; httpx drops it when a download is redirected to another host).

Hand-written on httpx instead of depending on huggingface_hub: the surface is these two endpoints, and the
download itself is the store's own resumable, verified one (huggingface_hub would bring its own cache layout).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

import anyio
import httpx

from mst_llm.errors import CatalogError, HubError, OfflineError
from mst_llm.llm.catalog import CatalogEntry, validate_name
from mst_llm.llm.download import OFFLINE_ENV, Downloader, offline
from mst_llm.llm.hub_auth import ENDPOINT_ENV, TOKEN_ENV, access_hint, auth_headers, endpoint
from mst_llm.llm.model_info import ModelInfo
from mst_llm.llm.retry import RETRYABLE_STATUS, retry_after_seconds

DEFAULT_QUANT = "Q4_K_M"
"""The quantization picked when a reference names none (Ollama's default too)."""

_PREFIXES = ("https://", "http://", "hf.co/", "huggingface.co/")
_REPO = re.compile(r"^[A-Za-z0-9](?:[\w-]*[A-Za-z0-9_])?/[A-Za-z0-9_.](?:[\w.-]*[A-Za-z0-9_])?$", re.ASCII)
"""A user or organisation (no dots) and a repository name, as the Hub allows them."""
_SHA256 = re.compile(r"[0-9a-f]{64}")
_QUANT_NAME = re.compile(r"^[A-Za-z0-9_]{1,32}$")
_QUANT_IN_NAME = re.compile(r"(?:^|[-.])((?:I?Q\d\w*)|(?:B?F(?:16|32)))(?=[-.]|$)", re.IGNORECASE)


@dataclass(frozen=True)
class HubReference:
    """A repository and which of its GGUF files: a quantization tag, a file name, or neither (the default tag)."""

    repo: str
    quant: str | None = None
    filename: str | None = None
    revision: str = "main"

    def __str__(self) -> str:
        return f"hf.co/{self.repo}" + (f" {self.filename}" if self.filename else f":{self.quant or DEFAULT_QUANT}")

    def file_url(self, path: str) -> str:
        """Where the file is downloaded from: ``{endpoint}/{repo}/resolve/{revision}/{path}``."""
        return f"{endpoint()}/{self.repo}/resolve/{quote(self.revision, safe='')}/{quote(path)}"


def is_hub_reference(text: str) -> bool:
    """True for ``hf.co/USER/REPO...`` and ``USER/REPO...``: a catalog key never holds a ``/``."""
    return "/" in text


def parse_reference(text: str, filename: str | None = None) -> HubReference:
    """``hf.co/USER/REPO[:QUANT]`` or ``USER/REPO`` and a ``.gguf`` file name; HubError says what is malformed."""
    rest = text.strip()
    for prefix in _PREFIXES:
        rest = rest.removeprefix(prefix)
    rest = rest.removeprefix(endpoint().split("://", 1)[-1] + "/")
    repo, _, quant = rest.partition(":")
    if not _REPO.match(repo) or "--" in repo or ".." in repo or len(repo) > 96:
        raise HubError(f"{text!r} is not a Hugging Face repository; expected hf.co/USER/REPO[:QUANT] or USER/REPO FILE")
    if quant and not _QUANT_NAME.match(quant):
        raise HubError(f"{text!r}: {quant!r} is not a quantization tag (like Q4_K_M)")
    if filename is not None:
        if quant:
            raise HubError(f"give a quantization ({text}) or a file name ({filename}), not both")
        if not filename.lower().endswith(".gguf") or filename.startswith("/") or ".." in filename.split("/"):
            raise HubError(f"{filename!r} is not a .gguf file of the repository")
    return HubReference(repo, quant or None, filename)


@dataclass(frozen=True)
class HubFile:
    """A file of a repository, as the tree API lists it: path, size and (for an LFS file) its sha256."""

    path: str
    size: int | None = None
    sha256: str | None = None

    @property
    def quant(self) -> str | None:
        """The quantization tag in the file name (``Q4_K_M``, ``IQ4_XS``, ``F16``, ...), upper case."""
        found = _QUANT_IN_NAME.findall(self.path.rsplit("/", 1)[-1].removesuffix(".gguf"))
        return found[-1].upper() if found else None


def _files_of(listing: Any) -> list[HubFile]:
    """The files of one page of ``/api/models/{repo}/tree/{revision}``: ``lfs.oid`` is the sha256."""
    if not isinstance(listing, list):
        raise HubError("the Hub's file list is not a list")
    files = []
    for item in listing:
        if not isinstance(item, dict) or item.get("type") != "file" or not isinstance(item.get("path"), str):
            continue
        found = item.get("lfs")
        lfs: dict[str, Any] = found if isinstance(found, dict) else {}
        size = lfs.get("size", item.get("size"))
        sha256 = lfs.get("oid")
        files.append(
            HubFile(
                item["path"],
                size if isinstance(size, int) else None,
                sha256 if isinstance(sha256, str) and _SHA256.fullmatch(sha256) else None,
            )
        )
    return files


async def list_files(reference: HubReference, downloader: Downloader | None = None) -> list[HubFile]:
    """Every file of the repository at the reference's revision, following the API's ``Link: rel="next"`` pages;
    transient failures are retried like a download's (``Retry-After``, jittered backoff)."""
    settings = downloader or Downloader()
    url: str | None = f"{endpoint()}/api/models/{reference.repo}/tree/{quote(reference.revision, safe='')}"
    params: dict[str, str] | None = {"recursive": "true"}
    files: list[HubFile] = []
    client = settings.client
    if client is None:
        client = await anyio.to_thread.run_sync(settings.new_client)
    try:
        while url is not None:
            response = await _get(client, url, params, reference, settings)
            try:
                listing = response.json()
            except ValueError:
                raise HubError(f"{reference.repo}: the Hub's file list is not JSON") from None
            files += _files_of(listing)
            url, params = response.links.get("next", {}).get("url"), None
    finally:
        if settings.client is None:
            await client.aclose()
    return files


async def _get(
    client: httpx.AsyncClient, url: str, params: dict[str, str] | None, reference: HubReference, settings: Downloader
) -> httpx.Response:
    """One API request, retried on transient failures; HubError names the repository and what to do."""
    failures = 0
    while True:
        retry_after = None
        try:
            response = await client.get(url, params=params, headers=auth_headers(url))
        except httpx.TransportError as error:
            problem, status = f"cannot reach {endpoint()} ({type(error).__name__}); check the network", None
        else:
            if response.status_code not in RETRYABLE_STATUS:
                _check(response, reference)
                return response
            problem, status = f"the Hub answered HTTP {response.status_code}; try again later", response.status_code
            retry_after = retry_after_seconds(response.headers.get("retry-after"))
        failures += 1
        wait = settings.retry_delay(failures, retry_after)
        if wait is None:
            raise HubError(f"{reference.repo}: {problem}", status=status)
        await anyio.sleep(wait)


def _check(response: httpx.Response, reference: HubReference) -> None:
    """A final answer that is not a file list: say why in the user's terms."""
    status = response.status_code
    if status in (401, 403):
        raise HubError(f"{reference.repo} is gated or private (HTTP {status}); {access_hint()}", status=status)
    if status == 404:
        raise HubError(
            f"{reference.repo} (revision {reference.revision}) was not found on {endpoint()} "
            f"(a private repository needs {TOKEN_ENV})",
            status=status,
        )
    if status >= 400:
        raise HubError(f"{reference.repo}: the Hub answered HTTP {status}", status=status)


def choose_file(reference: HubReference, files: Iterable[HubFile]) -> HubFile:
    """The GGUF file the reference means: the named one, or the one whose quantization tag matches (a tag equal to
    the quant wins over a name merely containing it); HubError lists what is available otherwise."""
    ggufs = [item for item in files if item.path.lower().endswith(".gguf") and "mmproj" not in item.path.lower()]
    if reference.filename is not None:
        found = [item for item in ggufs if item.path == reference.filename]
        if not found:
            raise HubError(f"{reference.repo} has no file {reference.filename!r}; its GGUF files: {_names(ggufs)}")
        return found[0]
    wanted = (reference.quant or DEFAULT_QUANT).upper()
    found = [item for item in ggufs if item.quant == wanted] or [
        item for item in ggufs if wanted in item.path.rsplit("/", 1)[-1].upper()
    ]
    if len(found) == 1:
        return found[0]
    if found:
        raise HubError(f"{reference}: {len(found)} files match {wanted}: {_names(found)}; name one with USER/REPO FILE")
    if not ggufs:
        raise HubError(f"{reference.repo} has no GGUF file")
    quants = sorted({item.quant for item in ggufs if item.quant})
    available = f"quantizations {', '.join(quants)}" if quants else f"GGUF files {_names(ggufs)}"
    raise HubError(f"{reference.repo} has no {wanted} file; available: {available}")


def _names(files: Iterable[HubFile]) -> str:
    return ", ".join(item.path for item in files) or "none"


def entry_for(reference: HubReference, file: HubFile) -> CatalogEntry:
    """The catalog entry of a Hub file: key = the file name without ``.gguf``, size and sha256 as the Hub says."""
    name = file.path.rsplit("/", 1)[-1]
    try:
        validate_name(name, "filename")
    except CatalogError as error:
        raise HubError(f"{reference}: cannot store {file.path!r}: {error}") from None
    label = f"hf.co/{reference.repo}" + (f":{file.quant}" if file.quant else f" {name}")
    return CatalogEntry(
        key=name[: -len(".gguf")],
        display_name=label,
        filename=name,
        url=reference.file_url(file.path),
        size=file.size,
        sha256=file.sha256,
        quantization=file.quant,
    )


async def resolve(reference: HubReference, downloader: Downloader | None = None) -> CatalogEntry:
    """Ask the Hub for the reference's file: its catalog entry (OfflineError under ``$HF_HUB_OFFLINE``)."""
    if offline():
        raise OfflineError(f"{OFFLINE_ENV} is set: cannot ask the Hub about {reference}")
    return entry_for(reference, choose_file(reference, await list_files(reference, downloader)))


def _files_from(reference: HubReference, models: Iterable[ModelInfo]) -> dict[str, ModelInfo]:
    """The models whose URL is a file of the reference's repository, by that file's path."""
    prefix = f"{endpoint()}/{reference.repo}/resolve/"
    return {
        unquote(info.url[len(prefix) :].split("/", 1)[-1]): info
        for info in models
        if info.url is not None and info.url.startswith(prefix)
    }


def find_model(reference: HubReference, models: Iterable[ModelInfo]) -> ModelInfo | None:
    """The model of ``models`` that came from the reference's repository and is the file it means (by name, or by
    quantization tag as ``choose_file`` picks it), whatever its status; None when there is none. No network."""
    by_path = _files_from(reference, models)
    try:
        return by_path[choose_file(reference, [HubFile(path) for path in by_path]).path]
    except HubError:
        return None


def downloaded(reference: HubReference, models: Iterable[ModelInfo]) -> ModelInfo:
    """Offline: the installed model that came from the reference's repository and matches its file or tag;
    OfflineError when there is none."""
    ready = [info for info in models if info.status == "ready"]
    found = find_model(reference, ready)
    if found is None:
        raise OfflineError(
            f"{OFFLINE_ENV} is set and {reference} is not downloaded; unset it to download "
            f"(installed from {reference.repo}: {', '.join(_files_from(reference, ready)) or 'nothing'})"
        )
    return found


__all__ = [
    "DEFAULT_QUANT",
    "ENDPOINT_ENV",
    "TOKEN_ENV",
    "HubFile",
    "HubReference",
    "auth_headers",
    "choose_file",
    "downloaded",
    "endpoint",
    "entry_for",
    "find_model",
    "is_hub_reference",
    "list_files",
    "parse_reference",
    "resolve",
]
