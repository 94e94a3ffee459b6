"""The CLI tests use the LLM tests' fixtures (tiny models, the local HTTP server)."""

from tests.llm.conftest import corpus, gguf_bytes, hub, server, tiny_model

__all__ = ["corpus", "gguf_bytes", "hub", "server", "tiny_model"]
