"""What type checkers see (issue 11): ``@view`` properties have their function's return type, value fields their
value type, and ``t.default(...)`` spells a model field default that ``mypy --strict`` accepts (the classes
inherit ``ModelNode``, as docs/concepts/models.md says, so that ``create`` is known). Runs mypy on a small
program and reads its report."""

from __future__ import annotations

import textwrap
from pathlib import Path

from mypy import api

PROGRAM = """
from __future__ import annotations

import datetime as dt
from decimal import Decimal

from mst_llm import ModelNode, model, view
from mst_llm import types as t


@model
class Message(ModelNode):
    text: str = ""


@model
class Address(ModelNode):
    city: str = ""


@model
class Conversation(ModelNode):
    messages: list[Message]
    address: Address = t.default({})
    opened: dt.datetime | None = None
    total: Decimal = Decimal("0")

    @view
    def last_message(self) -> Message:
        return self.messages[-1]

    @view
    def count(self) -> int:
        return len(self.messages)


conv = Conversation.create({"messages": [{"text": "hi"}]})
n: int = conv.count
text: str = conv.last_message.text
total: Decimal = conv.total
opened: dt.datetime | None = conv.opened
wrong: int = conv.last_message  # the one error
"""


def test_views_and_value_fields_are_typed_and_t_default_type_checks(tmp_path: Path) -> None:
    program = tmp_path / "program.py"
    text = textwrap.dedent(PROGRAM).lstrip("\n")
    program.write_text(text, encoding="utf-8")
    wrong = next(number for number, line in enumerate(text.splitlines(), 1) if line.startswith("wrong:"))
    report, errors, status = api.run(
        ["--strict", "--no-error-summary", "--cache-dir", str(tmp_path / "cache"), str(program)]
    )
    lines = [line for line in report.splitlines() if ": error:" in line]
    assert errors == ""
    assert len(lines) == 1 and status == 1, report
    assert lines[0].startswith(f"{program}:{wrong}: error: Incompatible types in assignment"), report
    assert '"Message"' in lines[0] and '"int"' in lines[0]
