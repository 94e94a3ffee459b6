"""``mst-llm models | ls | pull | rm | select | status | inspect``: the model store from the command line.

Each command opens the store over ``--models-dir`` (initializing scans the files), acts and closes it. ``pull``
draws its progress bar from the ModelInfo's patches, like any other observer of the tree.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import click
from rich.console import Console
from rich.filesize import decimal
from rich.table import Table
from rich.text import Text

from mst_llm import get_snapshot
from mst_llm.cli.common import (
    catalog_option,
    debug_option,
    examples,
    find_model,
    models_dir_option,
    with_store,
)
from mst_llm.cli.progress import DownloadView, human_bytes, json_progress
from mst_llm.errors import ModelStoreError, MSTError
from mst_llm.llm import hub
from mst_llm.llm.gguf_check import GGUFInfo, check_gguf
from mst_llm.llm.model import ModelStatus
from mst_llm.llm.model_info import ModelInfo
from mst_llm.llm.store import LLMStore
from mst_llm.llm.worker import build_info

_T = TypeVar("_T")
_STATUS_WORDS = {"idle": "not installed", "initializing": "loading", "ready": "ready"}


def _json_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")(function)


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _echo_json_line(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False))


def _size(info: ModelInfo) -> int | None:
    """The catalog size, else the size of the file on disk (models found on disk only have no catalog size)."""
    if info.size is None and info.path is not None and Path(info.path).is_file():
        return Path(info.path).stat().st_size
    return info.size


def _status(info: ModelInfo) -> str:
    """One phrase for a model's state; a resumable partial says how far it got."""
    if info.status == "downloading":
        return f"downloading {info.progress:.0f}%"
    if info.status == "error":
        return f"error: {info.error}"
    if info.status == "idle" and info.resumable_bytes:
        done = f"{100 * info.resumable_bytes / info.size:.0f}% " if info.size else ""
        return f"partial {done}({human_bytes(info.resumable_bytes)}), resumable with `mst-llm pull {info.key}`"
    return _STATUS_WORDS[info.status]


# --- models ---------------------------------------------------------------------------------------------------


@click.command(
    epilog=examples(
        "mst-llm models",
        "mst-llm models --json",
        "mst-llm models --models-dir ./models --catalog my-models.toml",
    )
)
@_json_option
@models_dir_option
@catalog_option
@debug_option
def models(as_json: bool, models_dir: Path | None, catalog: Path | None) -> None:
    """List the catalog's models and what is on disk: size, status, and which one is selected."""

    async def body(store: LLMStore) -> None:
        if as_json:
            _echo_json(_store_dict(store))
        else:
            _print_models(Console(soft_wrap=True), store)

    with_store(models_dir, catalog, body)


def _store_dict(store: LLMStore) -> dict[str, Any]:
    listed = [
        {name: value for name, value in info.items() if name != "hash_cache"} for info in get_snapshot(store)["models"]
    ]
    return {
        "models_dir": str(store.context.models_dir),
        "selected_model_key": store.selected_model_key,
        "models": listed,
    }


def _print_models(console: Console, store: LLMStore) -> None:
    console.print(Text(f"models dir: {store.context.models_dir}"))
    table = Table("", "key", "name", "size", "status", caption="* selected", caption_justify="left")
    for info in store.models:
        selected = "*" if info.key == store.selected_model_key else ""
        table.add_row(selected, Text(info.key), Text(info.display_name), human_bytes(_size(info)), Text(_status(info)))
    console.print(table)


# --- ls -------------------------------------------------------------------------------------------------------


@click.command("ls", epilog=examples("mst-llm ls", "mst-llm ls --json | jq -r '.[].path'"))
@_json_option
@models_dir_option
@catalog_option
@debug_option
def ls(as_json: bool, models_dir: Path | None, catalog: Path | None) -> None:
    """List the downloaded models (like `ollama list`): key, size, quantization and path."""

    async def body(store: LLMStore) -> list[dict[str, Any]]:
        return [
            {"key": info.key, "size": _size(info), "quantization": info.quantization, "path": info.path}
            for info in store.models
            if info.status == "ready"
        ]

    rows = with_store(models_dir, catalog, body)
    if as_json:
        _echo_json(rows)
        return
    table = [("KEY", "SIZE", "QUANT", "PATH")]
    table += [(row["key"], human_bytes(row["size"]), row["quantization"] or "?", row["path"]) for row in rows]
    widths = [max(len(line[column]) for line in table) for column in range(3)]
    for line in table:
        click.echo("   ".join([*(cell.ljust(width) for cell, width in zip(line, widths, strict=False)), line[3]]))
    if not rows:
        click.echo("no model is downloaded; `mst-llm pull KEY` or `mst-llm pull hf.co/USER/REPO` gets one", err=True)


# --- pull -----------------------------------------------------------------------------------------------------


@click.command(
    epilog=examples(
        "mst-llm pull gemma-3-270m                       install the embedded model (no network)",
        "mst-llm pull my-model --catalog my-models.toml  a model from your own catalog",
        "mst-llm pull hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M",
        "mst-llm pull unsloth/gemma-3-270m-it-GGUF gemma-3-270m-it-Q8_0.gguf",
        "mst-llm pull gemma-3-270m --json                JSON lines: progress, then the result",
        "(Ctrl-C keeps the partial download; the same command resumes it)",
    )
)
@click.argument("key", metavar="KEY|hf.co/USER/REPO[:QUANT]")
@click.argument("file", required=False, metavar="[FILE.gguf]")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines: progress records, then the result.")
@models_dir_option
@catalog_option
@debug_option
def pull(key: str, file: str | None, as_json: bool, models_dir: Path | None, catalog: Path | None) -> None:
    """Download (or install) a model and verify it; an interrupted download resumes where it stopped.

    KEY is a catalog key, or a Hugging Face repository: hf.co/USER/REPO[:QUANT] takes its GGUF file of that
    quantization (default Q4_K_M), USER/REPO FILE.gguf that file; the store adds a catalog entry with the size and
    sha256 the Hub reports. $HF_TOKEN authenticates to the Hub ($HF_ENDPOINT), $HF_HUB_OFFLINE=1 forbids the
    network.
    """
    if file is not None and not hub.is_hub_reference(key):
        raise click.UsageError("FILE goes with a Hugging Face repository: mst-llm pull USER/REPO FILE.gguf")
    console = Console(soft_wrap=True)

    async def body(store: LLMStore) -> None:
        if hub.is_hub_reference(key):
            info = await store.add_hub_model(key, file)
        else:
            info = find_model(store, key)
        installed = info.status == "ready"
        if not installed:
            await _download(console, store, info, as_json=as_json)
        if as_json:
            _echo_json_line({"status": "success", "already_installed": installed, **_pulled(info)})
        elif installed:
            console.print(Text(f"{info.key} is already installed: {info.path}"))

    try:
        with_store(models_dir, catalog, body)
    except MSTError as error:
        if as_json:
            _echo_json_line({"status": "error", "error": str(error)})
        raise


def _pulled(info: ModelInfo) -> dict[str, Any]:
    """What `pull --json` reports of an installed model."""
    fields = ("key", "display_name", "path", "url", "sha256", "quantization")
    return {"size": _size(info), **{name: getattr(info, name) for name in fields}}


async def _download(console: Console, store: LLMStore, info: ModelInfo, *, as_json: bool = False) -> None:
    """Run the store's download flow under a progress view (or JSON progress lines); on Ctrl-C / SIGTERM say what
    was kept."""
    if as_json:
        _echo_json_line(
            {"status": "pulling", "key": info.key, "url": info.url, "path": str(store.model_path(info))}
            | {"total": info.size, "completed": info.resumable_bytes}
        )
    else:
        resume = f", resuming at {human_bytes(info.resumable_bytes)}" if info.resumable_bytes else ""
        console.print(Text(f"pulling {info.key} from {info.url} into {store.model_path(info)}{resume}"))
    try:
        with json_progress(info, _echo_json_line) if as_json else DownloadView(console, info):
            await store.start_model_download(info.key)
    except anyio.get_cancelled_exc_class():
        _report_stopped(info)
        raise
    if info.status != "ready":
        raise ModelStoreError(f"{info.key}: {info.error}")
    if not as_json:
        console.print(Text(f"{info.key} installed: {info.path} ({human_bytes(_size(info))})"))


def _report_stopped(info: ModelInfo) -> None:
    if info.resumable_bytes:
        kept = f"{human_bytes(info.resumable_bytes)} kept; run `mst-llm pull {info.key}` again to resume"
    else:
        kept = f"nothing kept; run `mst-llm pull {info.key}` again to start over"
    click.echo(f"download of {info.key} stopped: {kept}", err=True)


# --- rm and select --------------------------------------------------------------------------------------------


@click.command(
    epilog=examples(
        "mst-llm rm gemma-3-270m",
        "mst-llm rm my-model --models-dir ./models",
        "mst-llm rm hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M   the name it was pulled by",
    )
)
@click.argument("key", metavar="KEY|hf.co/USER/REPO[:QUANT]")
@models_dir_option
@catalog_option
@debug_option
def rm(key: str, models_dir: Path | None, catalog: Path | None) -> None:
    """Delete a model's file or partial download; its catalog entry stays, so `pull` can fetch it again."""

    async def body(store: LLMStore) -> None:
        info = find_model(store, key)
        if info.status == "idle" and not info.resumable_bytes:
            raise ModelStoreError(f"{info.key} is not installed; there is nothing to delete")
        path = store.model_path(info)
        await store.delete_model(info.key)
        click.echo(f"removed {info.key} ({path})")

    with_store(models_dir, catalog, body)


@click.command(
    epilog=examples(
        "mst-llm select gemma-3-270m", "mst-llm select hf.co/unsloth/gemma-3-270m-it-GGUF:Q8_0", "mst-llm select --none"
    )
)
@click.argument("key", required=False, metavar="[KEY|hf.co/USER/REPO[:QUANT]]")
@click.option("--none", "clear", is_flag=True, help="Clear the selection instead.")
@models_dir_option
@catalog_option
@debug_option
def select(key: str | None, clear: bool, models_dir: Path | None, catalog: Path | None) -> None:
    """Choose the installed model that `run`, `chat` and `status` use."""
    if (key is None) != clear:
        raise click.UsageError("give a KEY or --none (not both)")

    async def body(store: LLMStore) -> None:
        if key is None:
            store.select_model(None)
            click.echo("selection cleared")
            if store.has_ready_model:
                click.echo("note: the store selects a ready model again when it next starts")
            return
        info = find_model(store, key)
        if info.status != "ready":
            raise ModelStoreError(f"{info.key} is not usable ({_status(info)}); run `mst-llm pull {key}` first")
        store.select_model(info.key)
        click.echo(f"selected {info.key} ({info.path})")

    with_store(models_dir, catalog, body)


# --- status ---------------------------------------------------------------------------------------------------


@click.command(epilog=examples("mst-llm status", "mst-llm status --no-load", "mst-llm status --json"))
@click.option("--no-load", is_flag=True, help="Do not load the selected model (faster; no GPU figures).")
@_json_option
@models_dir_option
@catalog_option
@debug_option
def status(no_load: bool, as_json: bool, models_dir: Path | None, catalog: Path | None) -> None:
    """The models dir, the selected model and its state, GPU use (or why not) and the llama.cpp build."""

    async def body(store: LLMStore) -> dict[str, Any]:
        return await _status_dict(store, load=not no_load)

    data = with_store(models_dir, catalog, body)
    if as_json:
        _echo_json(data)
    else:
        _print_status(Console(soft_wrap=True), data)


async def _status_dict(store: LLMStore, *, load: bool) -> dict[str, Any]:
    """Load the selected model when asked (released again when the store closes) and ask it for its status."""
    info = store.selected_model
    loaded: ModelStatus | None = None
    if load and info is not None and info.status == "ready":
        loaded = (await store.load_model(info.key)).get_status()
    return {
        "models_dir": str(store.context.models_dir),
        "selected_model_key": None if info is None else info.key,
        "selected_model_status": None if info is None else _status(info),
        "path": None if info is None else info.path,
        "model": None if loaded is None else dataclasses.asdict(loaded),
        "llama_cpp": await _build(loaded),
    }


async def _build(loaded: ModelStatus | None) -> dict[str, Any]:
    """What llama.cpp offers here: from the loaded model's backend, else asked without loading a model."""
    backend = loaded.backend if loaded is not None else {}
    if "system_info" not in backend:  # nothing loaded, or the load failed
        return await anyio.to_thread.run_sync(build_info)
    return {
        "gpu_offload_supported": backend["gpu_offload_supported"],
        "system_info": backend["system_info"],
        "llama_cpp_python": backend.get("extra", {}).get("llama_cpp_python"),
    }


def _print_status(console: Console, data: dict[str, Any]) -> None:
    rows: list[tuple[str, str]] = [("models dir", data["models_dir"])]
    if data["selected_model_key"] is None:
        rows.append(("selected", "none (`mst-llm select KEY`)"))
    else:
        rows += [("selected", f"{data['selected_model_key']} ({data['selected_model_status']})")]
        rows += [("file", str(data["path"]))]
    model = data["model"]
    if model is not None:
        rows.append(("model state", model["state"] + (f": {model['error']}" if model["error"] else "")))
        gpu = (
            f"yes, {model['offloaded_layers']} layers offloaded"
            if model["gpu_enabled"]
            else f"no: {model['gpu_reason']}"
        )
        rows.append(("GPU", gpu))
        rows.append(("config", ", ".join(f"{name}={value}" for name, value in model["config"].items())))
    elif data["selected_model_key"] is not None:
        rows.append(("model state", "not loaded"))
    build = data["llama_cpp"]
    rows.append(
        ("GPU offload", "supported by this llama.cpp build" if build["gpu_offload_supported"] else "CPU-only build")
    )
    rows.append(("llama-cpp-python", str(build["llama_cpp_python"])))
    rows.append(("system", build["system_info"]))
    _print_grid(console, rows)


def _print_grid(console: Console, rows: list[tuple[str, str]]) -> None:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for label, value in rows:
        grid.add_row(label, Text(value))
    console.print(grid)


# --- inspect --------------------------------------------------------------------------------------------------


@click.command(
    "inspect",
    epilog=examples(
        "mst-llm inspect model.gguf",
        "mst-llm inspect gemma-3-270m            an installed model, by its key",
        "mst-llm inspect unsloth/gemma-3-270m-it-GGUF:Q8_0    a pulled model, by its name",
        "mst-llm inspect model.gguf --json | jq .metadata",
    ),
)
@click.argument("target", metavar="FILE|KEY")
@_json_option
@models_dir_option
@catalog_option
@debug_option
def inspect_file(target: str, as_json: bool, models_dir: Path | None, catalog: Path | None) -> None:
    """Validate a GGUF file (or an installed model's, by key) as LlamaModel does before llama.cpp sees it, and
    show its metadata."""
    path = Path(target)
    if not path.exists() and path.suffix != ".gguf":  # a key or a pulled name: find_model says which, as for rm

        async def installed(store: LLMStore) -> Path:
            return store.model_path(find_model(store, target))

        path = with_store(models_dir, catalog, installed)
    info = check_gguf(path)
    if as_json:
        _echo_json(info.to_dict())
    else:
        _print_gguf(Console(soft_wrap=True), info)


def _print_gguf(console: Console, info: GGUFInfo) -> None:
    def number(value: int | None) -> str:
        return "?" if value is None else f"{value:,}"

    file_type = "?" if info.file_type is None else f"{info.quantization or 'unknown'} (file type {info.file_type})"
    _print_grid(
        console,
        [
            ("file", info.path),
            ("size", f"{decimal(info.size)} (GGUF version {info.version})"),
            ("architecture", info.architecture),
            ("name", info.name or "?"),
            ("parameters", number(info.parameter_count)),
            ("quantization", file_type),
            ("context length", number(info.context_length)),
            ("embedding length", number(info.embedding_length)),
            ("layers", number(info.block_count)),
            ("vocabulary", f"{info.vocab_size:,} tokens ({info.tokenizer or '?'} tokenizer)"),
            ("tensors", number(info.tensor_count)),
            ("chat template", "yes" if "tokenizer.chat_template" in info.metadata else "no"),
            ("metadata keys", number(len(info.metadata))),
        ],
    )
    console.print(Text("valid: it passes the checks run before llama.cpp sees a file", style="green"))
