"""Conversation -> prompt: the GGUF chat template rendered in a sandbox, or a plain transcript."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from mst_llm.errors import ChatTemplateError
from mst_llm.llm.chat import ChatFormat, Message
from mst_llm.llm.gguf_check import check_gguf
from tests.llm.gguf_factory import write_tiny_llama

CHATML = (
    "{% for message in messages %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Llama 2 / Mistral style: BOS first, EOS after every answer, alternation enforced with raise_exception
INST = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}[INST] {{ message['content'] }} [/INST]"
    "{% else %}{{ message['content'] }}{{ eos_token }}{% endif %}{% endfor %}"
)
CONVERSATION: list[Message] = [
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "Why?"},
]


def test_without_a_template_the_conversation_is_a_transcript_that_stops_at_the_next_user_turn() -> None:
    plain = ChatFormat()
    assert plain.prompt(CONVERSATION) == "User: Hi\nAssistant: Hello!\nUser: Why?\nAssistant:"
    assert plain.prompt([{"role": "system", "content": " Be brief. "}]) == "System: Be brief.\nAssistant:"
    assert plain.stop_strings() == ("\nUser:",)


def test_a_template_is_rendered_with_the_generation_prompt_and_needs_no_stop_strings() -> None:
    chatml = ChatFormat(CHATML)
    assert chatml.prompt(CONVERSATION) == (
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
        "<|im_start|>user\nWhy?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert chatml.stop_strings() == ()


def test_the_leading_bos_is_left_to_llama_cpp_and_eos_ends_each_answer() -> None:
    inst = ChatFormat(INST, bos_token="<s>", eos_token="</s>")
    assert inst.prompt(CONVERSATION) == "[INST] Hi [/INST]Hello!</s>[INST] Why? [/INST]"


def test_a_conversation_the_template_refuses_raises_its_message() -> None:
    with pytest.raises(ChatTemplateError, match="roles must alternate"):
        ChatFormat(INST).prompt([{"role": "assistant", "content": "I start"}])


def test_templates_run_sandboxed() -> None:
    escape = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    with pytest.raises(ChatTemplateError):
        ChatFormat(escape).prompt(CONVERSATION)
    mutate = "{{ messages.append({'role': 'user', 'content': 'x'}) }}"
    with pytest.raises(ChatTemplateError):
        ChatFormat(mutate).prompt(CONVERSATION)


def test_a_broken_template_is_reported_as_such() -> None:
    with pytest.raises(ChatTemplateError, match="does not parse"):
        ChatFormat("{% for message in messages %}").prompt(CONVERSATION)


def test_templates_can_ask_for_the_date() -> None:
    assert ChatFormat("{{ strftime_now('%Y') }}").prompt(CONVERSATION) == str(datetime.now().year)


def test_the_format_comes_from_the_gguf_metadata(tmp_path: Path) -> None:
    with_template = check_gguf(write_tiny_llama(tmp_path / "chat.gguf", chat_template=CHATML)).to_dict()
    assert ChatFormat.of(with_template) == ChatFormat(CHATML, "<s>", "</s>")
    without = check_gguf(write_tiny_llama(tmp_path / "base.gguf")).to_dict()
    assert ChatFormat.of(without) == ChatFormat(None, "<s>", "</s>")
    assert ChatFormat.of(None) == ChatFormat()
    assert ChatFormat.of({"metadata": {"tokenizer.chat_template": "  "}}).template is None
