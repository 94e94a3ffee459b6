"""``mst-llm chat`` in a real terminal (a tmux pane: readline, Ctrl-C, Ctrl-D) and ``mst-llm run`` interrupted
by a real signal. Greedy sampling (``--temperature 0``) of the tiny model writes thousands of tokens for these
prompts, and a 32k context leaves it room, so an answer is still being written when the test interrupts it."""

from __future__ import annotations

import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.cli.test_generate_commands import STATS, place_model

ROOT = Path(__file__).resolve().parents[2]
LONG_ANSWERS = ("--temperature", "0", "--ctx-size", "32768", "--max-tokens", "100000")
COMMAND = [sys.executable, "-m", "mst_llm.cli"]


class Terminal:
    """A command in the pane of a tmux server of its own: keys go in, the screen (with scrollback) comes out."""

    def __init__(self, directory: Path, args: list[str]) -> None:
        config = directory / "tmux.conf"
        config.write_text("set -g history-limit 100000\n")
        self.base = ["tmux", "-L", f"mst-llm-test-{id(self)}", "-f", str(config)]
        script = f'{shlex.join([*COMMAND, *args])}; echo "[exit $?]"; sleep 600'
        self._tmux("new-session", "-d", "-x", "120", "-y", "40", "-c", str(ROOT), script)

    def _tmux(self, *args: str) -> str:
        return subprocess.run([*self.base, *args], check=True, capture_output=True, text=True).stdout

    def type(self, text: str) -> None:
        self._tmux("send-keys", "-l", text)

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", *keys)

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-J", "-S", "-")

    def wait_for(self, pattern: str, count: int = 1, timeout: float = 60) -> list[re.Match[str]]:
        """Wait until ``pattern`` (multiline) matches ``count`` times; the matches."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            matches = list(re.finditer(pattern, screen, re.M))
            if len(matches) >= count:
                return matches
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} did not show {count} times; the screen:\n{screen[-3000:]}")
            time.sleep(0.05)

    def wait_for_prompt(self, count: int) -> None:
        """Wait until the ``count``-th ``>>>`` prompt waits for input at the bottom of the screen."""
        self.wait_for(r"^>>> ?", count)
        self.wait_for(r"^>>>\s*\Z")

    def close(self) -> None:
        subprocess.run([*self.base, "kill-server"], check=False, capture_output=True)


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Callable[..., Terminal]]:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    store = place_model(tmp_path)
    opened: list[Terminal] = []

    def chat(*args: str) -> Terminal:
        opened.append(Terminal(tmp_path, ["chat", *store, *args]))
        return opened[-1]

    yield chat
    for tty in opened:
        tty.close()


def test_ctrl_c_stops_only_the_answer_and_the_conversation_goes_on(terminal: Callable[..., Terminal]) -> None:
    tty = terminal(*LONG_ANSWERS, "--show-prompt")
    tty.wait_for_prompt(1)
    tty.type("hello wrld")
    tty.keys("Left", "Left", "Left")
    tty.type("o")
    tty.keys("Enter")
    tty.wait_for(r'^prompt: "User: hello world\\nAssistant:"\n(?s:.{200})')  # readline's editing; 200 chars later:
    tty.keys("C-c")
    tty.wait_for("^Answer interrupted; what it wrote stays in the conversation.")
    assert [match[2] for match in STATS.finditer(tty.screen())] == ["cancelled"]
    tty.wait_for_prompt(2)

    tty.type("the model")
    tty.keys("Enter")
    kept = tty.wait_for(r'^prompt: "User: hello world\\nAssistant: (.+)\\nUser: the model\\nAssistant:"$')[0]
    assert kept[1].strip()  # the interrupted answer is part of the next prompt
    try:
        tty.wait_for(STATS.pattern, count=2, timeout=3)
    except AssertionError:  # a long answer: stop it too
        tty.keys("C-c")
    answer = tty.wait_for(STATS.pattern, count=2)[1]
    assert int(answer[1]) > 0 and answer[2] in ("stop", "length", "cancelled")
    tty.wait_for_prompt(3)

    tty.keys("C-c")
    tty.wait_for(r"^\(Ctrl-C again or Ctrl-D to leave\)")
    tty.type("/exit")
    tty.keys("Enter")
    tty.wait_for(r"^\[exit 0\]$")


def test_ctrl_c_at_the_prompt_discards_the_line_and_twice_leaves(terminal: Callable[..., Terminal]) -> None:
    tty = terminal()
    tty.wait_for_prompt(1)
    tty.type("abc")
    tty.keys("C-c")
    tty.wait_for_prompt(2)
    tty.type("/help")  # would be the question "abc/help" had the line been kept
    tty.keys("Enter")
    tty.wait_for(r"^/reset\s+forget the conversation")
    tty.wait_for_prompt(3)
    tty.keys("C-c")
    tty.wait_for_prompt(4)
    tty.keys("C-c")
    tty.wait_for(r"^\[exit 0\]$")


def test_ctrl_d_at_the_prompt_leaves(terminal: Callable[..., Terminal]) -> None:
    tty = terminal()
    tty.wait_for_prompt(1)
    tty.keys("C-d")
    tty.wait_for(r"^\[exit 0\]$")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_run_stopped_by_a_signal_keeps_the_partial_answer_and_exits_130(tmp_path: Path, signum: int) -> None:
    args = [*COMMAND, "run", *place_model(tmp_path), *LONG_ANSWERS, "the model"]
    # stdin is not a terminal here: without DEVNULL, run would wait for a piped prompt from pytest's stdin
    process = subprocess.Popen(args, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None
    first = process.stdout.read(1)  # the answer is streaming
    process.send_signal(signum)
    out, err = process.communicate(timeout=60)
    stderr = err.decode()
    assert process.returncode == 130, stderr
    assert first + out
    assert stderr.endswith(f"interrupted: {signal.Signals(signum).name}\n")
    if signum == signal.SIGINT:  # Ctrl-C ends the answer, which reports what it was
        stats = STATS.search(stderr)
        assert stats is not None and int(stats[1]) > 0 and stats[2] == "cancelled"
