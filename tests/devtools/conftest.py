"""Fixtures for the devtools tests: Debian's chromium driven by Playwright, and a recorded demo-like session
(the demo's own tree, a tiny llama model loaded and generating) ."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anyio
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from mst_llm import get_env, get_snapshot, record_session
from mst_llm.cli.demo import DemoSession
from mst_llm.llm import LlamaModel, create_llm_store
from tests.llm.conftest import tiny_model

__all__ = ["browser", "demo_log", "page", "tiny_model"]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LONG_PROMPT = "Tell me everything about state trees. " * 8  # longer than the page shows in full


# package scope: Playwright's sync API keeps an event loop running in this thread until it stops, and tests
# after these ones start event loops of their own
@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    assert CHROMIUM.is_file(), "Debian's chromium is missing: `make test` installs it (apt-get install chromium)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture(scope="session")
def demo_log(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Path:
    """A session log of the demo's tree: open the store, load a tiny model, generate twice."""
    directory = tmp_path_factory.mktemp("devtools")
    path = directory / "demo.jsonl"

    async def record() -> None:
        store = create_llm_store(directory / "models")
        session = DemoSession.create({"store": get_snapshot(store)}, env=get_env(store))
        with record_session(session, path, meta={"command": "test"}):
            async with session.store:
                llama = LlamaModel.open(tiny_model, isolation="thread", env=get_env(session), n_ctx=256, n_threads=1)
                session.use_model(llama, LONG_PROMPT)
                await llama.initialize()
                assert llama.state == "ready", llama.error
                for seed in (1, 2):
                    await llama.generate("hello world", max_tokens=12, seed=seed, temperature=0.0)
                await llama.cleanup()

    with ThreadPoolExecutor(1) as pool:  # not on this thread: Playwright's sync API keeps a loop running here
        pool.submit(anyio.run, record).result()
    return path
