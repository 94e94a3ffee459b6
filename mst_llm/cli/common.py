"""What every ``mst-llm`` command shares: the group, one-line errors, ``--debug``, ``--models-dir`` and running
an async body against an initialized store with Ctrl-C / SIGTERM handled like ``store.close()``."""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import click

from mst_llm.errors import HubError, ModelStoreError
from mst_llm.llm import hub
from mst_llm.llm.model_info import ModelInfo
from mst_llm.llm.store import MODELS_DIR_ENV, LLMStore, create_llm_store
from mst_llm.llm.worker import spare_workers

_T = TypeVar("_T")
_F = TypeVar("_F", bound=Callable[..., Any])
_DEBUG = "mst_llm.debug"
CATALOG_ENV = "MST_LLM_CATALOG"
HUB_PREFIXES = ("hf.co/", "huggingface.co/")
"""How a Hugging Face name starts in Ollama's form: never a prompt or a file of the current folder."""

#: Exit status after Ctrl-C or SIGTERM, as shells report a death by SIGINT.
INTERRUPTED = 130


class Interrupted(Exception):
    """Ctrl-C or SIGTERM arrived while a command ran; the store was closed first."""


class _Group(click.Group):
    """Turns unexpected exceptions into a one-line error unless --debug was given."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except (Interrupted, KeyboardInterrupt) as error:
            if ctx.meta.get(_DEBUG):
                raise
            click.echo(f"interrupted{': ' + str(error) if str(error) else ''}", err=True)
            ctx.exit(INTERRUPTED)
        except Exception as error:
            if ctx.meta.get(_DEBUG):
                raise
            click.echo(f"error: {error}", err=True)
            ctx.exit(1)


def _set_debug(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    if value:
        ctx.meta[_DEBUG] = True
    return value


def examples(*lines: str) -> str:
    """An ``Examples:`` epilog that click prints line by line."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


def debug_option(function: _F) -> _F:
    """``--debug``: tracebacks instead of one-line errors (accepted by the group and by every command)."""
    return click.option(
        "--debug", is_flag=True, expose_value=False, is_eager=True, callback=_set_debug, help="Show tracebacks."
    )(function)


def models_dir_option(function: _F) -> _F:
    """``--models-dir DIR`` (or ``$MST_LLM_MODELS_DIR``; default: the user cache dir)."""
    return click.option(
        "--models-dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar=MODELS_DIR_ENV,
        help=f"Where models live (default: ${MODELS_DIR_ENV}, else the user cache dir).",
    )(function)


@click.group(cls=_Group)
@debug_option
@click.version_option(package_name="mst-llm")
def main() -> None:
    """mst_llm: a MobX-State-Tree port for Python, and a home for local LLMs in it.

    \b
    Examples:
      mst-llm demo                      the whole library on the embedded Gemma 3 270M model
      mst-llm models                    the catalog and what is on disk
      mst-llm pull gemma-3-270m         install a model (Ctrl-C keeps a resumable partial)
      mst-llm run "Why is the sky blue?"
      mst-llm replay session.jsonl      step through a recorded session
    """
    # A command loads at most one model: a spare worker kept ready for a next load would only compete with the
    # generation for the CPU. (Restored afterwards, for programs that call the group in-process, like tests.)
    previous, spare_workers.enabled = spare_workers.enabled, False
    click.get_current_context().call_on_close(lambda: setattr(spare_workers, "enabled", previous))


def run_async(body: Callable[[], Awaitable[_T]]) -> _T:
    """Run ``body`` on anyio; Ctrl-C and SIGTERM cancel it and raise :class:`Interrupted` afterwards, so the
    body's ``finally`` / ``async with`` blocks (``store.close()``) run first."""

    async def main() -> _T:
        interrupted: list[int] = []
        result: list[_T] = []
        failed: list[Exception] = []  # raised after the task group, so it is not wrapped in an ExceptionGroup
        async with anyio.create_task_group() as group:

            async def watch() -> None:
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for signum in signals:
                        interrupted.append(signum)
                        group.cancel_scope.cancel()
                        return

            group.start_soon(watch)
            try:
                result.append(await body())
            except Exception as error:
                failed.append(error)
            group.cancel_scope.cancel()
        if interrupted:
            raise Interrupted(signal.Signals(interrupted[0]).name)
        if failed:
            raise failed[0]
        return result[0]

    return anyio.run(main)


def catalog_option(function: _F) -> _F:
    """``--catalog FILE`` (or ``$MST_LLM_CATALOG``): a TOML or JSON catalog instead of the built-in one."""
    return click.option(
        "--catalog",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar=CATALOG_ENV,
        help=f"A TOML or JSON model catalog to use instead of the built-in one (or ${CATALOG_ENV}).",
    )(function)


def check_usable(store: LLMStore) -> None:
    """An initialized store whose models dir is unusable says why (its ``error``) instead of listing nothing."""
    if store.error is not None:
        raise ModelStoreError(store.error)


def find_model(store: LLMStore, name: str) -> ModelInfo:
    """The model a command names: a catalog key, or a Hugging Face name as ``pull`` takes it
    (``hf.co/USER/REPO[:QUANT]``), meaning the model ``pull`` added for it, found without the network. A
    ModelStoreError says where the keys are listed or how to pull the model; a HubError, what is malformed."""
    if hub.is_hub_reference(name):
        found = hub.find_model(hub.parse_reference(name), store.models)
        if found is None:
            raise ModelStoreError(f"{name} is not pulled; `mst-llm pull {name}` downloads it")
        return found
    try:
        return store.get_model(name)
    except ModelStoreError:
        known = ", ".join(info.key for info in store.models) or "none"
        raise ModelStoreError(f"unknown model {name!r} (known: {known}); `mst-llm models` lists them") from None


def names_model(store: LLMStore, word: str) -> bool:
    """Whether a word that could be a prompt names a model: a key, a Hugging Face name with its ``hf.co/`` prefix,
    or one without it (``USER/REPO:QUANT``) that a pulled model answers to."""
    if any(info.key == word for info in store.models) or word.startswith(HUB_PREFIXES):
        return True
    try:
        return hub.is_hub_reference(word) and hub.find_model(hub.parse_reference(word), store.models) is not None
    except HubError:
        return False


def with_store(models_dir: Path | None, catalog: Path | None, body: Callable[[LLMStore], Awaitable[_T]]) -> _T:
    """Open and initialize a store over ``models_dir``, check it is usable, run ``body(store)``, always close
    the store (downloads keep resumable partials, loaded models are released), signals handled by `run_async`."""

    async def run() -> _T:
        async with create_llm_store(models_dir, catalog) as store:
            check_usable(store)
            return await body(store)

    return run_async(run)
