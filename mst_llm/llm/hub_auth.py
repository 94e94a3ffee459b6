"""Where the Hugging Face Hub is and how to authenticate to it (``$HF_ENDPOINT``, ``$HF_TOKEN``, read as
huggingface_hub reads them), and what to tell a user the Hub turned away. Shared by the Hub's API (``hub``) and
the file download (``download``), which ``hub`` builds on."""

from __future__ import annotations

import os

ENDPOINT_ENV = "HF_ENDPOINT"
TOKEN_ENV = "HF_TOKEN"
DEFAULT_ENDPOINT = "https://huggingface.co"


def endpoint() -> str:
    """``$HF_ENDPOINT`` without a trailing slash, else ``https://huggingface.co``."""
    return (os.environ.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT).rstrip("/")


def on_hub(url: str) -> bool:
    """True for a URL on the Hub's endpoint."""
    return url.startswith(endpoint() + "/")


def _token() -> str:
    return os.environ.get(TOKEN_ENV, "").strip()


def auth_headers(url: str) -> dict[str, str]:
    """``Authorization: Bearer $HF_TOKEN`` for a URL on the Hub's endpoint; nothing for any other host."""
    token = _token()
    return {"Authorization": f"Bearer {token}"} if token and on_hub(url) else {}


def access_hint() -> str:
    """What to do after the Hub answered 401 or 403: set ``$HF_TOKEN``, or use a token with access."""
    return f"the token in {TOKEN_ENV} has no access to it" if _token() else f"set {TOKEN_ENV} to a token with access"


__all__ = ["DEFAULT_ENDPOINT", "ENDPOINT_ENV", "TOKEN_ENV", "access_hint", "auth_headers", "endpoint", "on_hub"]
