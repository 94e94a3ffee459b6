"""A Hugging Face Hub on 127.0.0.1 for tests: the tree API's JSON and the resolve URLs, on the fault-injecting
file server (``tests/llm/http_server.py``), as huggingface_hub addresses them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import pytest

from tests.llm.http_server import Fault, FileServer, serve

TOKEN = "hf_TestSecretToken1234567890"


@dataclass
class FakeHub:
    """``HF_ENDPOINT`` points here while the fixture runs."""

    server: FileServer

    @property
    def endpoint(self) -> str:
        return self.server.url("").rstrip("/")

    def add_repo(
        self, repo: str, files: Mapping[str, bytes], *, sha256: Mapping[str, str] | None = None, pages: int = 1
    ) -> None:
        """Serve ``repo``'s files and their listing (LFS entries with sha256 and size); ``sha256`` overrides what
        the listing says; ``pages`` splits the listing with ``Link: rel="next"`` headers like the Hub does."""
        listing = [
            {
                "type": "file",
                "oid": hashlib.sha1(data).hexdigest(),
                "size": len(data),
                "path": name,
                "lfs": {
                    "oid": (sha256 or {}).get(name, hashlib.sha256(data).hexdigest()),
                    "size": len(data),
                    "pointerSize": 134,
                },
            }
            for name, data in files.items()
        ]
        listing.append({"type": "directory", "oid": "0" * 40, "size": 0, "path": "docs"})
        listing.append({"type": "file", "oid": "1" * 40, "size": 12, "path": "README.md"})
        self.server.add(f"{repo}/resolve/main/README.md", b"# a test repo")
        api = f"api/models/{repo}/tree/main"
        step = -(-len(listing) // pages)
        for page in range(pages):
            path = f"{api}?recursive=true" if page == 0 else f"{api}?cursor={page}"
            self.server.add(path, json.dumps(listing[page * step : (page + 1) * step]).encode())
            if page + 1 < pages:
                link = f'<{self.server.url(api)}?cursor={page + 1}>; rel="next"'
                self.server.fault(path, Fault(times=None, headers={"Link": link}))
        for name, data in files.items():
            self.server.add(f"{repo}/resolve/main/{name}", data)

    def requests(self, prefix: str) -> list[str]:
        return [entry.path for entry in self.server.log if entry.path.startswith(prefix)]


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    """A fake Hub with ``HF_ENDPOINT`` pointing to it, and no token or offline switch from the environment."""
    with serve() as server:
        fake = FakeHub(server)
        monkeypatch.setenv("HF_ENDPOINT", fake.endpoint)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        yield fake
