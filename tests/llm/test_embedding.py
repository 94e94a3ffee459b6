"""The LLM layer as fields of a user's app: composition through one env entry, restore, guarded state fields."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from mst_llm import (
    InvalidTransition,
    ModelNode,
    action,
    apply_patch,
    apply_snapshot,
    get_env,
    get_root,
    get_snapshot,
    model,
    on_patch,
)
from mst_llm.llm import LlamaModel, LLMStore, create_llm_store, llm_env
from mst_llm.llm.persist import STATE_FILE
from tests.llm.fake_backend import FakeBackend, Faults
from tests.llm.gguf_factory import write_tiny_llama


@model
class ChatApp(ModelNode):
    store: LLMStore
    llama: LlamaModel | None = None
    replies: list[str]

    @action
    def use_model(self, path: str) -> None:
        self.llama = LlamaModel.snapshot_for(path, isolation="thread")  # type: ignore[assignment]


def app_env(models_dir: Path) -> dict[str, Any]:
    entry = {"key": "tiny", "display_name": "Tiny", "filename": "tiny.gguf", "url": "https://example.invalid/t.gguf"}
    faults = Faults()
    return {
        **llm_env(models_dir, catalog=[entry], backend_factory=lambda _isolation: FakeBackend(faults)),
        "greeting": "hi",
    }


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "models"
    directory.mkdir()
    write_tiny_llama(directory / "tiny.gguf")
    return directory


def test_store_and_model_work_as_fields_of_an_app(models_dir: Path) -> None:
    async def main() -> None:
        app = ChatApp.create({"store": {}}, env=app_env(models_dir))
        paths: list[str] = []
        on_patch(app, lambda patch, _inverse: paths.append(patch["path"]))
        await app.store.initialize()
        assert app.store.error is None and app.store.selected_model_key == "tiny"
        assert app.store.context.models_dir == models_dir
        llama = await app.store.load_model("tiny")
        assert get_root(llama) is app and llama.state == "ready"
        assert "/store/loaded_models/tiny/state" in paths and "/store/models/0/status" in paths
        app.use_model(str(models_dir / "tiny.gguf"))
        assert app.llama is not None
        await app.llama.initialize()
        result = await app.llama.generate("hello", max_tokens=3)
        assert result.text == "w0 w1 w2 " and "/llama/state" in paths
        await app.store.close()

    anyio.run(main)


def test_without_the_env_entry_the_store_uses_the_default_dir(
    models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MST_LLM_MODELS_DIR", str(models_dir))
    app = ChatApp.create({"store": {}})
    assert app.store.context.models_dir == models_dir
    assert len(app.store.context.catalog) > 0  # the built-in catalog


def test_a_store_made_by_create_llm_store_keeps_its_settings_inside_an_app(tmp_path: Path) -> None:
    """The issue's first steps: the store placed into an app initializes (it failed with AttributeError), and the
    app's env stays the user's own."""
    store = create_llm_store(tmp_path / "elsewhere", catalog=[])
    app = ChatApp.create({"store": store}, env={"greeting": "hi"})
    assert app.store.context.models_dir == tmp_path / "elsewhere"

    async def main() -> None:
        async with app.store:
            assert app.store.is_initialized and app.store.error is None

    anyio.run(main)
    assert get_env(app) == {"greeting": "hi"} and (tmp_path / "elsewhere" / STATE_FILE).is_file()


def test_a_snapshot_taken_while_loaded_restores_into_a_usable_app(models_dir: Path) -> None:
    async def main() -> None:
        app = ChatApp.create({"store": {}}, env=app_env(models_dir))
        await app.store.initialize()
        await app.store.load_model("tiny", isolation="thread", n_ctx=256)
        app.use_model(str(models_dir / "tiny.gguf"))
        assert app.llama is not None
        await app.llama.initialize()
        saved = get_snapshot(app)
        assert saved["llama"]["state"] == "ready" and saved["store"]["loaded_models"]["tiny"]["state"] == "ready"
        await app.store.close()
        await app.llama.cleanup()

        restored = ChatApp.create(saved, env=app_env(models_dir))
        assert restored.llama is not None and restored.llama.state == "idle"
        assert restored.llama.path == str(models_dir / "tiny.gguf")
        assert restored.store.loaded_models["tiny"].state == "idle"
        await restored.llama.initialize()
        assert restored.llama.state == "ready"
        await restored.store.initialize()
        llama = await restored.store.load_model("tiny")
        assert llama.state == "ready" and llama.config == {"n_ctx": 256} and llama.isolation == "thread"
        await restored.store.close()

    anyio.run(main)


def test_runtime_states_are_normalised_on_create() -> None:
    info = {"key": "m", "display_name": "M", "filename": "m.gguf", "url": "https://example.invalid/m.gguf"}
    store = LLMStore.create(
        {
            "models": [
                {**info, "status": "downloading", "progress": 40.0, "resumable_bytes": 1234},
                {**info, "key": "n", "filename": "n.gguf", "status": "initializing", "path": "/x/n.gguf"},
            ],
            "loaded_models": {"n": {"path": "/x/n.gguf", "state": "generating", "config": {"n_ctx": 64}}},
        }
    )
    downloading, loading = store.models
    assert (downloading.status, downloading.progress, downloading.resumable_bytes) == ("idle", 0.0, 1234)
    assert loading.status == "ready"
    llama = store.loaded_models["n"]
    assert (llama.state, llama.path, llama.config) == ("idle", "/x/n.gguf", {"n_ctx": 64})


def test_patches_and_snapshots_cannot_pretend_a_model_is_loaded(models_dir: Path) -> None:
    async def main() -> None:
        app = ChatApp.create({"store": {}}, env=app_env(models_dir))
        app.use_model(str(models_dir / "tiny.gguf"))
        assert app.llama is not None
        idle = get_snapshot(app)
        with pytest.raises(InvalidTransition) as raised:
            apply_snapshot(app, {**idle, "replies": ["x"], "llama": {**idle["llama"], "state": "ready"}})
        assert (raised.value.state, raised.value.event) == ("idle", "set ready")
        assert set(raised.value.allowed) == {"initialize", "release"}
        assert get_snapshot(app) == idle

        await app.llama.initialize()
        ready = get_snapshot(app)
        for state in ("idle", "generating", "loading"):
            with pytest.raises(InvalidTransition):
                apply_patch(app, {"op": "replace", "path": "/llama/state", "value": state})
        apply_snapshot(app, ready)  # the current state: nothing to do
        assert get_snapshot(app) == ready and app.llama.state == "ready"
        await app.llama.cleanup()

    anyio.run(main)


def test_model_info_status_follows_its_table_under_patches() -> None:
    entry = {"key": "m", "display_name": "M", "filename": "m.gguf", "url": "https://example.invalid/m.gguf"}
    store = create_llm_store("/nonexistent", [entry])
    with pytest.raises(InvalidTransition) as raised:
        apply_patch(store, {"op": "replace", "path": "/models/0/status", "value": "initializing"})
    assert raised.value.state == "idle" and "found" in raised.value.allowed
    assert store.models[0].status == "idle"
    apply_patch(store, {"op": "replace", "path": "/models/0/status", "value": "ready"})  # "found" is allowed
    assert store.models[0].status == "ready"
