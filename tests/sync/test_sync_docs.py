"""The runnable example of docs/replication.md, against the test broker (test_docs.py has no Redis, so the
block is marked ``# doctest: skip`` there and runs here)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .broker import Broker

DOC = Path(__file__).resolve().parents[2] / "docs" / "replication.md"


def test_the_two_replica_example_runs(broker: Broker, stream: str, capsys: pytest.CaptureFixture[str]) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    (example,) = [block for block in blocks if "class Stock" in block]
    code = example.replace("redis://127.0.0.1:6379/0", broker.url).replace('"stock"', repr(stream))
    exec(compile(code, str(DOC), "exec"), {"__name__": "replication_doc"})
    assert "'name': 'take'" in capsys.readouterr().out
