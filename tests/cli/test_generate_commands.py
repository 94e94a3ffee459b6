"""``mst-llm run`` and ``mst-llm chat`` (piped input) on tiny GGUF models: real llama.cpp, gibberish text."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from mst_llm.cli import main
from tests.llm.gguf_factory import write_tiny_llama
from tests.llm.test_chat import CHATML

FAST = ("--isolation", "thread", "--seed", "7")
STATS = re.compile(r"^(\d+) tokens, [\d.]+ tokens/s, finish: (\w+) \(prompt: \d+ tokens\)$", re.M)


def place_model(tmp_path: Path, *, chat_template: str | None = None, fill: float | None = None) -> tuple[str, ...]:
    """A models dir holding the tiny model and a user catalog naming it ``tiny``: the store options for it."""
    models = tmp_path / "models"
    models.mkdir()
    write_tiny_llama(models / "tiny.gguf", chat_template=chat_template, fill=fill)
    entry = {"key": "tiny", "display_name": "Tiny", "filename": "tiny.gguf", "url": "https://example.invalid/t.gguf"}
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps([entry]))
    return ("--models-dir", str(models), "--catalog", str(catalog))


@pytest.fixture
def store(tmp_path: Path) -> tuple[str, ...]:
    return place_model(tmp_path)


def invoke(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input)


def shown_prompts(result: Result) -> list[str]:
    """The prompts ``--show-prompt`` printed."""
    lines = result.stderr.splitlines()
    return [json.loads(line.removeprefix("prompt: ")) for line in lines if line.startswith("prompt: ")]


def test_run_streams_the_answer_and_reports_stats_on_stderr(store: tuple[str, ...]) -> None:
    result = invoke("run", *store, *FAST, "--max-tokens", "12", "hello")
    assert result.exit_code == 0, result.stderr
    as_json = invoke("run", *store, *FAST, "--max-tokens", "12", "--json", "hello")
    assert result.stdout == json.loads(as_json.stdout)["text"].lstrip() + "\n"  # the same seed, the same text
    stats = STATS.fullmatch(result.stderr.rstrip("\n"))
    assert stats is not None and 0 < int(stats[1]) <= 12 and stats[2] in ("stop", "length"), result.stderr


def test_run_json_is_one_object_with_the_result(store: tuple[str, ...]) -> None:
    result = invoke("run", *store, *FAST, "--json", "--max-tokens", "5", "tiny", "the model")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["model"] == "tiny" and isinstance(data["text"], str) and data["error"] is None
    assert data["prompt_tokens"] > 0 and 0 < data["completion_tokens"] <= 5
    assert data["finish_reason"] in ("stop", "length")
    assert {"prompt_ms", "generation_ms", "total_ms", "tokens_per_second"} <= set(data["timings"])
    assert result.stderr == ""


def test_run_sends_the_prompt_as_a_user_turn_when_the_model_has_a_chat_template(tmp_path: Path) -> None:
    store = place_model(tmp_path, chat_template="{{ bos_token }}" + CHATML)
    result = invoke("run", *store, *FAST, "--max-tokens", "3", "--show-prompt", "Hi")
    assert result.exit_code == 0, result.stderr
    assert shown_prompts(result) == ["<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"]  # BOS: llama.cpp's
    raw = invoke("run", *store, *FAST, "--max-tokens", "3", "--show-prompt", "--raw", "Hi")
    assert shown_prompts(raw) == ["Hi"]


def test_run_without_a_chat_template_continues_the_prompt_as_it_is(store: tuple[str, ...]) -> None:
    result = invoke("run", *store, *FAST, "--max-tokens", "3", "--show-prompt", "The sky is")
    assert shown_prompts(result) == ["The sky is"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nope", "hello"), "error: unknown model 'nope' (known: tiny); `mst-llm models` lists them"),
        (("--ctx-size", "64", "hello " * 40), "error: the prompt has 242 tokens; the context holds 64"),
    ],
)
def test_run_errors_are_one_line(store: tuple[str, ...], args: tuple[str, ...], message: str) -> None:
    result = invoke("run", *store, *FAST, *args)
    assert result.exit_code == 1
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1, result.stderr
    assert result.stdout == ""


def test_run_check_tensors_refuses_nan_weights_in_one_line(tmp_path: Path) -> None:
    store = place_model(tmp_path, fill=float("nan"))
    result = invoke("run", *store, *FAST, "--check-tensors", "--max-tokens", "2", "hello")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "tiny.gguf" in result.stderr and "invalid data" in result.stderr, result.stderr
    assert result.stdout == ""


def test_run_without_an_installed_model_says_how_to_get_one(tmp_path: Path) -> None:
    result = invoke("run", "--models-dir", str(tmp_path / "empty"), "hello")
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "no model is installed" in result.stderr
    assert "mst-llm pull" in result.stderr


def test_run_takes_at_most_a_key_and_a_prompt(store: tuple[str, ...]) -> None:
    result = invoke("run", *store, "tiny", "why", "not")
    assert result.exit_code == 2 and "quote a prompt" in result.stderr


@pytest.mark.parametrize("command", ["run", "chat"])
def test_help_shows_examples_and_the_shared_options(command: str) -> None:
    result = invoke(command, "--help")
    assert result.exit_code == 0
    assert "Examples:\n    mst-llm " + command in result.stdout
    for option in ("--models-dir", "--catalog", "--debug", "--max-tokens", "--isolation", "--show-prompt"):
        assert option in result.stdout


def test_chat_keeps_the_conversation_in_every_prompt(store: tuple[str, ...]) -> None:
    lines = ["hello there", "what next", "/reset", "again", "/exit", "never read"]
    result = invoke("chat", *store, *FAST, "--max-tokens", "8", "--show-prompt", input="\n".join(lines) + "\n")
    assert result.exit_code == 0, result.stderr
    first, second, third = shown_prompts(result)
    assert first == "User: hello there\nAssistant:"
    answer = second.removeprefix(first + " ").removesuffix("\nUser: what next\nAssistant:")
    assert second == f"{first} {answer}\nUser: what next\nAssistant:" and answer  # the first answer, as printed
    assert answer in result.stdout
    assert third == "User: again\nAssistant:"  # /reset forgot both turns
    assert "The conversation was cleared." in result.stderr


def test_chat_commands_and_end_of_input(store: tuple[str, ...]) -> None:
    result = invoke("chat", *store, *FAST, input="/help\n/what\n")
    assert result.exit_code == 0, result.stderr
    assert "/reset" in result.stdout and "Unknown command /what" in result.stderr
    assert "no chat template" in result.stderr


def test_chat_recovers_from_a_prompt_the_context_cannot_hold(store: tuple[str, ...]) -> None:
    question = "hello " * 40
    result = invoke("chat", *store, *FAST, "--ctx-size", "64", "--max-tokens", "4", input=f"{question}\nhi\n")
    assert result.exit_code == 0, result.stderr
    assert "error: the prompt has" in result.stderr and "The model was reloaded" in result.stderr
    assert [stats[2] for stats in STATS.finditer(result.stderr)] in (["stop"], ["length"])  # the next answer


def test_chat_with_an_unknown_model_fails_before_reading(store: tuple[str, ...]) -> None:
    result = invoke("chat", *store, "nope", input="hello\n")
    assert result.exit_code == 1 and result.stderr.startswith("error: unknown model 'nope'")


def test_chat_reports_a_turn_the_template_refuses_and_goes_on(tmp_path: Path) -> None:
    picky = "{% if messages[-1].content == 'no' %}{{ raise_exception('refused') }}{% endif %}" + CHATML
    store = place_model(tmp_path, chat_template=picky)
    result = invoke("chat", *store, *FAST, "--max-tokens", "3", "--show-prompt", input="no\nyes\n")
    assert result.exit_code == 0, result.stderr
    assert "error: the model's chat template failed: refused" in result.stderr
    assert shown_prompts(result) == ["<|im_start|>user\nyes<|im_end|>\n<|im_start|>assistant\n"]
