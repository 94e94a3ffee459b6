"""``mst-llm run`` and ``mst-llm chat``: text from a store's model, streamed to the terminal token by token.

The store and the model live in an event loop on a helper thread (an anyio blocking portal); the main thread
keeps the terminal. That is what makes Ctrl-C precise: Python raises KeyboardInterrupt in the main thread, where
``input()`` has readline's line editing and gives its line up on Ctrl-C (an ``input()`` in a worker thread can
do neither), and where a wait for an answer turns the interrupt into ``LlamaModel.cancel()``: the partial answer
and its stats are still printed, then ``run`` exits 130 and ``chat`` returns to its prompt. SIGTERM unwinds like
an interrupted command: the store closes (the model is released) and the exit status is 130.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click
from anyio.from_thread import BlockingPortal, start_blocking_portal

from mst_llm.cli.common import (
    Interrupted,
    catalog_option,
    check_usable,
    debug_option,
    find_model,
    models_dir_option,
    names_model,
)
from mst_llm.errors import ChatTemplateError, InferenceError, ModelStoreError
from mst_llm.llm.backend import default_config
from mst_llm.llm.chat import ChatFormat, Message
from mst_llm.llm.model import GenerationResult, Isolation, LlamaModel, ProgressEvent
from mst_llm.llm.model_info import ModelInfo
from mst_llm.llm.store import LLMStore, create_llm_store

_T = TypeVar("_T")
_F = TypeVar("_F", bound=Callable[..., Any])
_PROMPT = ">>> "
#: Control characters a model may emit, made visible instead of driving the terminal (newline and tab stay).
_CONTROLS = {
    **{code: f"^{chr(code ^ 0x40)}" for code in (*range(0x20), 0x7F) if chr(code) not in "\n\t"},
    **dict.fromkeys(range(0x80, 0xA0), "\N{REPLACEMENT CHARACTER}"),
}
#: JSON leaves DEL and the C1 controls unescaped; --show-prompt escapes them too, so the line is safe to print.
_JSON_CONTROLS = {code: f"\\u{code:04x}" for code in (0x7F, *range(0x80, 0xA0))}
_CHAT_HELP = """\
/help          this help
/reset         forget the conversation and start a new one
/exit, /quit   leave (so do /bye and Ctrl-D)
Ctrl-C         stop the answer being written (what it wrote stays in the conversation);
               at the prompt, discard the line (twice in a row: leave)"""


@dataclass(frozen=True)
class _Settings:
    """What the shared options of ``run`` and ``chat`` ask for."""

    models_dir: Path | None
    catalog: Path | None
    max_tokens: int
    temperature: float
    top_p: float
    seed: int | None
    stop: tuple[str, ...]
    isolation: Isolation
    ctx_size: int | None
    check_tensors: bool
    show_prompt: bool

    def sampling(self, stops: tuple[str, ...]) -> dict[str, Any]:
        """Keyword arguments for ``LlamaModel.generate``; ``stops`` come from the chat format."""
        return {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
            "stop_tokens": [*self.stop, *stops],
        }

    def model_config(self) -> dict[str, Any]:
        """Keyword arguments for ``LLMStore.load_model``."""
        config: dict[str, Any] = {"isolation": self.isolation}
        if self.ctx_size:
            config["n_ctx"] = self.ctx_size
        if self.check_tensors:
            config["check_tensors"] = True
        return config


def _generation_options(function: _F) -> _F:
    """The options ``run`` and ``chat`` share, collected into ``**options`` for :class:`_Settings`."""
    options = [
        click.option(
            "--max-tokens",
            type=click.IntRange(min=1),
            default=1024,
            show_default=True,
            help="Stop after this many tokens (a full context stops sooner).",
        ),
        click.option("--temperature", type=click.FloatRange(min=0), default=0.8, show_default=True, help="0: greedy."),
        click.option("--top-p", type=click.FloatRange(0, 1), default=0.95, show_default=True, help="Nucleus sampling."),
        click.option("--seed", type=int, help="Sampling seed, for repeatable output (default: random)."),
        click.option("--stop", multiple=True, metavar="TEXT", help="End the answer where TEXT appears (repeatable)."),
        click.option(
            "--isolation",
            type=click.Choice(["process", "thread"]),
            default="process",
            show_default=True,
            help="Run llama.cpp in a worker process (a crash cannot take the command down) or in a thread.",
        ),
        click.option(
            "--ctx-size",
            type=click.IntRange(min=16),
            help=f"Context window in tokens (default: {default_config()['n_ctx']}).",
        ),
        click.option(
            "--check-tensors",
            is_flag=True,
            help="llama.cpp checks every weight while loading: NaN or inf ones fail the load (reads the whole file).",
        ),
        click.option("--show-prompt", is_flag=True, help="Print each exact prompt (as a JSON string) on stderr."),
    ]
    for option in reversed(options):
        function = option(function)
    return models_dir_option(catalog_option(debug_option(function)))


def _note(text: str) -> None:
    click.secho(text, dim=True, err=True)


class _Answer:
    """One generation in the event loop, its tokens printed as they come; ``stop()`` ends it early."""

    def __init__(self, llama: LlamaModel, prompt: str, sampling: dict[str, Any], *, echo: bool) -> None:
        self.llama = llama
        self.prompt = prompt
        self.sampling = sampling
        self.echo = echo
        self.sanitize = sys.stdout.isatty()  # a terminal runs escape codes; a pipe gets the text as it is
        self.stopped = False
        self.printed = False
        self.ends_line = True

    async def run(self) -> GenerationResult:
        if self.stopped:  # Ctrl-C came before the generation began (both run in the loop thread: no race)
            return GenerationResult("", 0, 0, "cancelled")
        unlisten = self.llama.on_progress.listen(self._print) if self.echo else None
        try:
            return await self.llama.generate(self.prompt, **self.sampling)
        finally:
            if unlisten is not None:
                unlisten()

    async def stop(self) -> None:
        self.stopped = True
        await self.llama.cancel()

    def _print(self, event: ProgressEvent) -> None:
        text = event.token if self.printed else event.token.lstrip()  # answers often open with a space
        if text:
            self.printed = True
            self.ends_line = text.endswith("\n")
            click.echo(text.translate(_CONTROLS) if self.sanitize else text, nl=False)


@dataclass
class _Session:
    """A loaded model and the event loop it lives in, driven from the main thread."""

    portal: BlockingPortal
    info: ModelInfo
    llama: LlamaModel
    settings: _Settings

    @property
    def chat_format(self) -> ChatFormat:
        return ChatFormat.of(self.llama.info)

    def generate(self, prompt: str, *, stops: tuple[str, ...] = (), echo: bool = True) -> GenerationResult:
        """One generation, printed token by token when ``echo``; Ctrl-C meanwhile cancels it (finish reason
        'cancelled') instead of propagating."""
        if self.settings.show_prompt:
            _note(f"prompt: {json.dumps(prompt, ensure_ascii=False).translate(_JSON_CONTROLS)}")
        answer = _Answer(self.llama, prompt, self.settings.sampling(stops), echo=echo)
        future = self.portal.start_task_soon(answer.run)
        try:
            result = future.result()
        except KeyboardInterrupt:
            self.portal.call(answer.stop)
            result = future.result()
        if echo and not answer.ends_line:
            click.echo()
        return result

    def reload(self) -> None:
        """Load the model again after a failed generation left it in 'error'."""
        self.portal.call(self.llama.initialize)
        if self.llama.state != "ready":
            raise ModelStoreError(f"cannot reload {self.info.key}: {self.llama.error}")


def _stats(result: GenerationResult) -> str:
    speed = result.timings.get("tokens_per_second", 0.0)
    return (
        f"{result.completion_tokens} tokens, {speed:.1f} tokens/s, finish: {result.finish_reason} "
        f"(prompt: {result.prompt_tokens} tokens)"
    )


@contextlib.contextmanager
def _session(settings: _Settings, key: str | Callable[[LLMStore], str | None] | None) -> Iterator[_Session]:
    """Open the store and load ``key`` (default: the selected model; a function picks it from the opened store);
    always close the store afterwards."""
    store = create_llm_store(settings.models_dir, settings.catalog)
    with _sigterm_interrupts(), start_blocking_portal() as portal, portal.wrap_async_context_manager(store):
        check_usable(store)
        info = _ready_model(store, key(store) if callable(key) else key)
        llama = _interruptible(portal, _load, store, info, settings)
        yield _Session(portal, info, llama, settings)


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises :class:`Interrupted` in the main thread, which unwinds the session like Ctrl-C would."""

    def interrupt(_signum: int, _frame: object) -> None:
        raise Interrupted("SIGTERM")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _ready_model(store: LLMStore, key: str | None) -> ModelInfo:
    """The installed model to use (a key or a Hugging Face name), or an error that says how to get one."""
    info = find_model(store, key) if key is not None else store.selected_model
    if info is None:
        raise ModelStoreError("no model is installed; `mst-llm pull KEY` installs one (`mst-llm models` lists them)")
    if info.status != "ready":
        reason = f": {info.error}" if info.error else ""
        raise ModelStoreError(
            f"model {info.key!r} is not usable ({info.status}{reason}); `mst-llm pull {info.key}` installs it"
        )
    return info


async def _load(store: LLMStore, info: ModelInfo, settings: _Settings) -> LlamaModel:
    llama = await store.load_model(info.key, **settings.model_config())
    if llama.state != "ready":
        raise ModelStoreError(info.error or f"cannot load {info.key}: {llama.error}")
    return llama


def _interruptible(portal: BlockingPortal, function: Callable[..., Awaitable[_T]], *args: Any) -> _T:
    """``portal.call`` whose Ctrl-C also cancels the call in the event loop (a load stops, nothing leaks)."""
    future = portal.start_task_soon(function, *args)
    try:
        return future.result()
    except KeyboardInterrupt:
        future.cancel()
        raise


# --- run ----------------------------------------------------------------------------------------------------


@click.command(
    epilog="""\b
Examples:
  mst-llm run "Why is the sky blue?"
  mst-llm run gemma-3-270m "Write a haiku about trees" --max-tokens 64
  mst-llm run --raw --temperature 0 "The capital of France is"
  mst-llm run --json --seed 42 "Say hello" | jq -r .text
  cat notes.txt | mst-llm run "Summarize these notes:"
  mst-llm run gemma-3-270m            no prompt on a terminal: a chat
  mst-llm run hf.co/unsloth/gemma-3-270m-it-GGUF:Q8_0 "Hi"   a model pulled by that name"""
)
@click.argument("words", nargs=-1, metavar="[KEY] [PROMPT]")
@click.option("--raw", is_flag=True, help="Send PROMPT as it is, not as a user turn of the model's chat template.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON object (text, token counts, finish reason, timings) instead of the stream.",
)
@_generation_options
def run(words: tuple[str, ...], raw: bool, as_json: bool, **options: Any) -> None:
    """Answer PROMPT with the model KEY (default: the selected one), streamed token by token.

    When the model file has a chat template, PROMPT is sent as one user turn (like `ollama run`); models without
    one (base models) continue PROMPT as it is. Stats go to stderr. Ctrl-C stops the answer, keeps what was
    written and exits with status 130.

    Like `ollama run`: when stdin is not a terminal, what it holds is the prompt (before PROMPT, when both are
    given); with no prompt at all, on a terminal, it opens a chat (see `mst-llm chat`). KEY may be the
    hf.co/USER/REPO[:QUANT] name a model was pulled by. A single word that names a model (a key, or a Hugging
    Face name: with its hf.co/ prefix, or a pulled model's) is KEY, otherwise PROMPT.
    """
    if len(words) > 2:
        raise click.UsageError("expected [KEY] [PROMPT]; quote a prompt of several words")
    piped = None if sys.stdin.isatty() else sys.stdin.read()
    prompts: list[str] = []

    def pick(store: LLMStore) -> str | None:
        """KEY and the prompt, checked before the model is loaded."""
        key, prompt = _key_and_prompt(words, lambda word: names_model(store, word))
        text = "\n\n".join(part for part in ((piped or "").strip(), prompt or "") if part)
        if text:
            prompts.append(text)
        elif piped is not None:
            raise click.UsageError("no prompt: stdin was empty; give PROMPT or pipe one in")
        elif as_json:
            raise click.UsageError("--json needs a PROMPT (without one, run opens a chat)")
        return key

    with _session(_Settings(**options), pick) as session:
        if not prompts:
            _Chat(session).loop()
            return
        prompt = prompts[0]
        chat_format = session.chat_format
        if not raw and chat_format.template is not None:
            prompt = chat_format.prompt([{"role": "user", "content": prompt}])
        result = session.generate(prompt, echo=not as_json)
        if result.finish_reason == "error":
            raise InferenceError(result.error or "the generation failed")
        if as_json:
            click.echo(json.dumps({"model": session.info.key, **dataclasses.asdict(result)}, indent=2))
        else:
            _note(_stats(result))
    if result.finish_reason == "cancelled":
        raise Interrupted("SIGINT")


def _key_and_prompt(words: tuple[str, ...], is_model: Callable[[str], bool]) -> tuple[str | None, str | None]:
    """``[KEY] [PROMPT]``: two words are both; one is KEY when it names a model (``names_model``), otherwise
    PROMPT."""
    if len(words) == 2:
        return words[0], words[1]
    if words and is_model(words[0]):
        return words[0], None
    return None, words[0] if words else None


# --- chat ---------------------------------------------------------------------------------------------------


@click.command(
    epilog="""\b
Examples:
  mst-llm chat
  mst-llm chat gemma-3-270m --temperature 0.2
  mst-llm chat --show-prompt          see the prompt the model gets each turn
  mst-llm chat --ctx-size 8192        room for a longer conversation"""
)
@click.argument("key", required=False, metavar="[KEY|hf.co/USER/REPO[:QUANT]]")
@_generation_options
def chat(key: str | None, **options: Any) -> None:
    """Talk with the model KEY (default: the selected one; or the name it was pulled by, hf.co/USER/REPO[:QUANT]);
    every prompt holds the whole conversation.

    The conversation is written with the model's chat template (GGUF tokenizer.chat_template), or as a plain
    User:/Assistant: transcript when the file has none.
    """
    with _session(_Settings(**options), key) as session:
        _Chat(session).loop()


class _Chat:
    """The read-answer loop: lines come from ``input()`` in the main thread, answers from the session."""

    def __init__(self, session: _Session) -> None:
        self.session = session
        self.format = session.chat_format
        self.messages: list[Message] = []

    def loop(self) -> None:
        """Until /exit, Ctrl-D, or two Ctrl-C in a row at the prompt."""
        _enable_line_editing()
        self._greet()
        armed = False
        while True:
            try:
                line = input(_PROMPT).strip()
            except EOFError:
                click.echo()
                return
            except KeyboardInterrupt:  # the line is gone; a second Ctrl-C in a row leaves
                click.echo()
                if armed:
                    return
                armed = True
                _note("(Ctrl-C again or Ctrl-D to leave)")
                continue
            armed = False
            if line.startswith("/"):
                if not self._command(line):
                    return
            elif line:
                self._ask(line)

    def _greet(self) -> None:
        info = self.session.info
        _note(f"Chatting with {info.display_name} ({info.key}); /help for help, Ctrl-D or /exit to leave.")
        if self.format.template is None:
            _note("The model file has no chat template: the conversation is a plain User:/Assistant: transcript.")

    def _command(self, line: str) -> bool:
        """Run a /command; False when it asks to leave."""
        command = line.split()[0].lower()
        if command in ("/exit", "/quit", "/bye"):
            return False
        if command == "/reset":
            self.messages.clear()
            _note("The conversation was cleared.")
        elif command in ("/help", "/?"):
            click.echo(_CHAT_HELP)
        else:
            _note(f"Unknown command {command}; /help lists the commands.")
        return True

    def _ask(self, question: str) -> None:
        self.messages.append({"role": "user", "content": question})
        try:
            prompt = self.format.prompt(self.messages)
        except ChatTemplateError as error:  # e.g. a template that refuses some conversations: keep chatting
            self.messages.pop()
            click.echo(f"error: {error}", err=True)
            return
        result = self.session.generate(prompt, stops=self.format.stop_strings())
        if result.finish_reason == "error":
            self.messages.pop()
            click.echo(f"error: {result.error}", err=True)
            self.session.reload()
            _note("The model was reloaded; /reset starts a new conversation (--ctx-size allows a longer one).")
            return
        _note(_stats(result))
        if result.finish_reason == "cancelled":
            _note("Answer interrupted; what it wrote stays in the conversation.")
        if result.text.strip():
            self.messages.append({"role": "assistant", "content": result.text.strip()})
        else:  # nothing was said: forget the question too, so that the turns keep alternating
            self.messages.pop()


def _enable_line_editing() -> None:
    """Arrow keys, history and a Ctrl-C that discards the line: Python's readline, where the platform has it."""
    if sys.stdin.isatty():
        with contextlib.suppress(ImportError):
            importlib.import_module("readline")
