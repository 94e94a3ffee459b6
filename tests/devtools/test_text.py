"""The one-line texts of recorded calls that the page and ``mst-llm replay`` show."""

from __future__ import annotations

from mst_llm.devtools.text import call_text


def test_call_text_shows_keyword_arguments() -> None:
    call = {"name": "add", "path": "/cart", "args": ["pen"], "kwargs": {"price": 1.5, "note": "ünï"}}
    assert call_text(call) == '/cart.add("pen", price=1.5, note="ünï")'
    assert call_text({"name": "add", "path": "", "args": [], "kwargs": {"sku": "x"}}) == 'add(sku="x")'


def test_flow_segment_shows_the_flows_keyword_arguments() -> None:
    flow = {"name": "load", "id": 3, "segment": 2, "path": "", "args": [1], "kwargs": {"force": True}}
    assert call_text(None, flow=flow) == "load(1, force=true) [segment 2]"


def test_long_arguments_are_shortened_to_the_limit() -> None:
    text = call_text({"name": "say", "path": "", "args": [], "kwargs": {"text": "word " * 50}}, 40)
    assert len(text) <= 40 and text.startswith('say(text="word') and text.endswith("…)")
