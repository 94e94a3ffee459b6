"""Loading a store's model goes through LlamaModel: initializing, then ready (real llama-cpp-python)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from mst_llm import ModelStoreError, apply_patch, get_snapshot, on_patch
from mst_llm.llm.store import LLMStore, create_llm_store
from tests.llm.gguf_factory import write_malformed, write_tiny_llama


def local_store(tmp_path: Path, filename: str = "tiny.gguf") -> LLMStore:
    entry = {"key": "tiny", "display_name": "Tiny", "filename": filename, "url": "https://example.invalid/x.gguf"}
    return create_llm_store(tmp_path / "models", [entry])


@pytest.mark.parametrize("isolation", ["thread", "process"])
def test_load_selected_model_shows_initializing_then_ready(tmp_path: Path, isolation: str) -> None:
    (tmp_path / "models").mkdir()
    write_tiny_llama(tmp_path / "models" / "tiny.gguf")

    async def main() -> None:
        store = local_store(tmp_path)
        async with store:
            assert store.selected_model_key == "tiny"
            initial = get_snapshot(store)
            patches: list[Any] = []
            on_patch(store, lambda patch, inverse: patches.append(patch))
            llama = await store.load_model(isolation=isolation)
            assert llama.state == "ready"
            assert await store.load_model() is llama  # loading again returns the loaded model
            assert [p["value"] for p in patches if p["path"] == "/models/0/status"] == ["initializing", "ready"]
            with pytest.raises(ModelStoreError):
                await store.delete_model("tiny")
            replica = LLMStore.create(initial)
            apply_patch(replica, patches)
            assert get_snapshot(replica) == get_snapshot(store)
        assert llama.state == "released"  # close() released it

    anyio.run(main)


def test_a_model_llama_cpp_refuses_ends_in_error_with_its_message(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    bad = write_malformed(models, "missing_byte_tokens")

    async def main() -> None:
        store = local_store(tmp_path, bad.name)
        async with store:
            info = store.get_model("tiny")
            if info.status != "ready":  # the scan already refused it: nothing to load
                assert info.error
                return
            llama = await store.load_model(isolation="process")
            assert llama.state == "released"  # the failed model was freed at once
            assert info.status == "error" and info.error and bad.name in info.error

    anyio.run(main)


def test_load_model_with_check_tensors_refuses_nan_weights(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    write_tiny_llama(tmp_path / "models" / "tiny.gguf", fill=float("nan"))

    async def main() -> None:
        async with local_store(tmp_path) as store:
            info = store.get_model("tiny")
            assert info.status == "ready"  # well-formed: the scan's check_gguf passes it
            llama = await store.load_model(isolation="thread", check_tensors=True)
            assert llama.state == "released" and llama.config == {"check_tensors": True}
            assert info.status == "error" and info.error and "invalid data" in info.error, info.error
            assert "ready" not in [model.state for model in store.loaded_models.values()]

    anyio.run(main)


def test_release_model_keeps_the_file_ready(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    write_tiny_llama(tmp_path / "models" / "tiny.gguf")

    async def main() -> None:
        async with local_store(tmp_path) as store:
            llama = await store.load_model(isolation="thread")
            await store.release_model("tiny")
            assert llama.state == "released"
            assert store.get_model("tiny").status == "ready"
            await store.delete_model("tiny")
            assert store.get_model("tiny").status == "idle"

    anyio.run(main)
