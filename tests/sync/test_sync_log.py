"""``SessionLog.open("redis://...#stream")`` (mst_llm.sync.log): its name, its errors, a stream that grows while it
is opened, and the devtools serving an open stream log."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import quote

import pytest

from mst_llm import on_patch
from mst_llm.sync import replicate
from mst_llm.sync.stream import password, scrub

from .broker import Broker
from .sync_models import Tally

SECRET = "p@ss/w%rd:1"  # every character that a URL must percent-encode


def test_a_percent_encoded_password_is_scrubbed(broker: Broker, stream: str, caplog: pytest.LogCaptureFixture) -> None:
    url = broker.url.replace("redis://", f"redis://default:{quote(SECRET, safe='')}@")
    assert password(url) == SECRET and scrub(f"AUTH {SECRET} failed", password(url)) == "AUTH *** failed"

    def leak(patch: object, _inverse: object) -> None:
        raise RuntimeError(f"a listener's bug shows {SECRET}")

    async def run() -> None:
        one, two = Tally.create(), Tally.create()
        async with replicate(one, url, stream) as a, replicate(two, url, stream) as b:
            on_patch(two, leak)
            one.increment()
            await a.sync()
            await b.sync()
            assert two.count == 1

    caplog.set_level(logging.DEBUG)
    asyncio.run(run())
    assert "a listener's bug shows ***" in caplog.text and SECRET not in caplog.text
