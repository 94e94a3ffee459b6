"""Writing a conversation as the prompt a model expects: its GGUF chat template, or a plain transcript.

A GGUF file may carry a Jinja chat template (``tokenizer.chat_template``). It is rendered in a sandbox, because
it comes with a downloaded file. Files without one (base models, the tiny test models) get a
``User: ...`` / ``Assistant: ...`` transcript and a stop string that ends the answer where the model would start
writing the user's next turn.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, NoReturn, TypedDict

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from mst_llm.errors import ChatTemplateError

Role = Literal["system", "user", "assistant"]
_TRANSCRIPT_STOP = "\nUser:"


class Message(TypedDict):
    role: Role
    content: str


@dataclass(frozen=True)
class ChatFormat:
    """How one model wants a conversation written (pure: the same messages always give the same prompt)."""

    template: str | None = None
    bos_token: str = ""
    eos_token: str = ""

    @classmethod
    def of(cls, gguf_info: Mapping[str, Any] | None) -> ChatFormat:
        """The format a model's GGUF info (``LlamaModel.info``, ``GGUFInfo.to_dict()``) asks for."""
        info = gguf_info or {}
        template = (info.get("metadata") or {}).get("tokenizer.chat_template")
        return cls(
            template if isinstance(template, str) and template.strip() else None,
            info.get("bos_token") or "",
            info.get("eos_token") or "",
        )

    def prompt(self, messages: Sequence[Message]) -> str:
        """The prompt for the model's next (assistant) turn after ``messages``."""
        if self.template is None:
            turns = [f"{message['role'].capitalize()}: {message['content'].strip()}" for message in messages]
            return "\n".join([*turns, "Assistant:"])
        try:
            text = _compile(self.template).render(
                messages=[dict(message) for message in messages],
                add_generation_prompt=True,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
            )
        except jinja2.TemplateError as error:
            raise ChatTemplateError(f"the model's chat template failed: {error}") from error
        # llama.cpp adds the BOS token itself when the model wants one; a second one would confuse the model
        return text.removeprefix(self.bos_token) if self.bos_token else text

    def stop_strings(self) -> tuple[str, ...]:
        """Where an answer ends besides the model's end-of-generation tokens (which also end template turns)."""
        return () if self.template is not None else (_TRANSCRIPT_STOP,)


def _raise_exception(message: str) -> NoReturn:
    """Templates call ``raise_exception(...)`` to refuse a conversation (as in Hugging Face transformers)."""
    raise jinja2.TemplateError(message)


def _strftime_now(format: str) -> str:
    return datetime.now().strftime(format)


@functools.lru_cache(maxsize=8)
def _compile(template: str) -> jinja2.Template:
    environment = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )
    environment.globals.update(raise_exception=_raise_exception, strftime_now=_strftime_now)
    try:
        return environment.from_string(template)
    except jinja2.TemplateError as error:
        raise ChatTemplateError(f"the model's chat template does not parse: {error}") from error
