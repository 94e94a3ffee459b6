"""LLMStore against a real HTTP server on 127.0.0.1 with tiny generated GGUF files."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import anyio
import pytest

from mst_llm import CatalogError, InvalidTransition, ModelStoreError, apply_patch, get_snapshot, on_patch
from mst_llm.llm.catalog import load_catalog
from mst_llm.llm.download import Downloader, part_path
from mst_llm.llm.model_info import ModelInfo
from mst_llm.llm.persist import STATE_FILE
from mst_llm.llm.store import LLMStore, create_llm_store, default_models_dir
from tests.llm.http_server import Fault, FileServer, serve


def catalog(server: FileServer, data: bytes, **extra: Any) -> list[dict[str, Any]]:
    entry = {"key": "tiny", "display_name": "Tiny", "filename": "tiny.gguf", "url": server.url("tiny.gguf")}
    entry |= {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()} | extra
    return [entry]


def make(tmp_path: Path, server: FileServer, data: bytes, **extra: Any) -> LLMStore:
    downloader = Downloader(retries=2, backoff=0.01, stall_timeout=0.5)
    return create_llm_store(tmp_path / "models", catalog(server, data, **extra), downloader=downloader)


def test_download_select_and_patch_replay(tmp_path: Path, server: FileServer, gguf_bytes: bytes) -> None:
    async def main() -> None:
        store = make(tmp_path, server, gguf_bytes)
        initial = get_snapshot(store)
        patches: list[Any] = []
        on_patch(store, lambda patch, inverse: patches.append(patch))
        async with store:
            assert store.is_initialized and not store.has_ready_model
            await store.start_model_download("tiny")
            info = store.get_model("tiny")
            assert info.status == "ready" and info.progress == 100.0
            assert info.path == str(tmp_path / "models" / "tiny.gguf")
            assert info.architecture == "llama" and info.context_length and info.parameter_count
            assert store.selected_model is info and store.has_ready_model
        statuses = [p["value"] for p in patches if p["path"] == "/models/0/status"]
        assert statuses == ["downloading", "ready"]
        replica = LLMStore.create(initial)
        apply_patch(replica, patches)
        assert get_snapshot(replica) == get_snapshot(store)

    anyio.run(main)


def test_restart_scan_restores_state_and_uses_hash_cache(tmp_path: Path, server: FileServer, gguf_bytes: bytes) -> None:
    async def main() -> None:
        async with make(tmp_path, server, gguf_bytes) as store:
            await store.start_model_download("tiny")
        second = make(tmp_path, server, gguf_bytes)
        async with second:
            assert second.get_model("tiny").status == "ready" and second.selected_model_key == "tiny"
            assert second.get_model("tiny").hash_cache is not None
        assert len(server.log) == 1

    anyio.run(main)


def test_corrupt_state_file_is_moved_aside_and_rebuilt(tmp_path: Path, server: FileServer, gguf_bytes: bytes) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / STATE_FILE).write_text('{"models": [tor')
    (models / "tiny.gguf").write_bytes(gguf_bytes)

    async def main() -> None:
        async with make(tmp_path, server, gguf_bytes) as store:
            assert store.get_model("tiny").status == "ready" and store.error is None

    anyio.run(main)
    assert list(models.glob(STATE_FILE + ".corrupt-*"))


def test_bad_file_on_disk_is_an_error_with_message(tmp_path: Path, server: FileServer, gguf_bytes: bytes) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "tiny.gguf").write_bytes(b"GGUF" + b"\0" * 100)

    async def main() -> None:
        async with make(tmp_path, server, gguf_bytes) as store:
            info = store.get_model("tiny")
            assert info.status == "error" and "size" in (info.error or "") and store.selected_model is None

    anyio.run(main)


def test_unusable_dir_is_an_error_state_not_an_empty_catalog(tmp_path: Path, server: FileServer) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    store = create_llm_store(blocker / "models", catalog(server, b"x"))
    anyio.run(store.initialize)
    assert not store.is_initialized and "not usable" in (store.error or "") and len(store.models) == 1


def test_failures_end_in_error_status_and_retry_works(tmp_path: Path, server: FileServer, gguf_bytes: bytes) -> None:
    async def main() -> None:
        async with make(tmp_path, server, gguf_bytes) as store:
            server.fault("tiny.gguf", Fault(times=None, status=404))
            await store.start_model_download("tiny")
            info = store.get_model("tiny")
            assert info.status == "error" and "404" in (info.error or "")
            server.faults.clear()
            await store.start_model_download("tiny")
            assert info.status == "ready" and info.error is None

    anyio.run(main)


def test_sha_mismatch_is_an_error(tmp_path: Path, server: FileServer, gguf_bytes: bytes) -> None:
    async def main() -> None:
        async with make(tmp_path, server, gguf_bytes, sha256="0" * 64) as store:
            await store.start_model_download("tiny")
            info = store.get_model("tiny")
            assert info.status == "error" and "sha256" in (info.error or "") and info.resumable_bytes == 0
            assert not (tmp_path / "models" / "tiny.gguf").exists()

    anyio.run(main)


def test_unknown_hash_is_recorded_on_first_download(tmp_path: Path, server: FileServer, gguf_bytes: bytes) -> None:
    async def main() -> None:
        async with make(tmp_path, server, gguf_bytes, sha256=None, size=None) as store:
            await store.start_model_download("tiny")
            assert store.get_model("tiny").sha256 == hashlib.sha256(gguf_bytes).hexdigest()

    anyio.run(main)


@pytest.mark.parametrize("keep", [False, True])
def test_cancel_and_partial_reported_resumable(tmp_path: Path, gguf_bytes: bytes, keep: bool) -> None:
    data = gguf_bytes * 20  # not a valid GGUF file, but fine for the transfer
    with serve(FileServer(rate=1 << 20)) as server:
        server.add("tiny.gguf", data)

        async def main() -> None:
            store = make(tmp_path, server, data)
            async with store, anyio.create_task_group() as group:
                group.start_soon(store.start_model_download, "tiny")
                path = part_path(tmp_path / "models" / "tiny.gguf")
                while not path.exists() or path.stat().st_size == 0:
                    await anyio.sleep(0.01)
                assert store.downloading_model is store.get_model("tiny")
                with anyio.fail_after(1):
                    await store.cancel_model_download("tiny", keep_partial=keep)
                assert store.get_model("tiny").status == "idle" and path.exists() == keep
            again = make(tmp_path, server, data)
            async with again:
                assert (again.get_model("tiny").resumable_bytes > 0) == keep

        anyio.run(main)


def test_delete_clears_selection_and_refuses_while_downloading(
    tmp_path: Path, server: FileServer, gguf_bytes: bytes
) -> None:
    async def main() -> None:
        async with make(tmp_path, server, gguf_bytes) as store:
            await store.start_model_download("tiny")
            await store.delete_model("tiny")
            assert store.selected_model_key is None and store.get_model("tiny").status == "idle"
            assert not (tmp_path / "models" / "tiny.gguf").exists()
            with pytest.raises(ModelStoreError):
                await store.delete_model("nope")

    anyio.run(main)


def test_transition_table_rejects_illegal_events() -> None:
    info = ModelInfo.create({"key": "k", "display_name": "K", "filename": "k.gguf"})
    with pytest.raises(InvalidTransition, match="allowed") as raised:
        info.transition("complete")
    assert (raised.value.state, raised.value.event, raised.value.allowed) == (
        "idle",
        "complete",
        ("download", "fail", "found"),
    )
    assert info.status == "idle"


@pytest.mark.parametrize("bad", ["../evil", "a/b", "/abs", "a\\b", "nul\x00", "..", "tab\there"])
def test_path_traversal_keys_and_filenames_rejected(bad: str) -> None:
    for field in ("key", "filename"):
        entry = {"key": "ok", "display_name": "x", "filename": "ok.gguf", "url": "https://e.org/x"} | {field: bad}
        with pytest.raises(CatalogError):
            load_catalog([entry])


@pytest.mark.parametrize("url", ["ftp://e.org/x", "file:///etc/passwd", "package:other", "https://"])
def test_other_sources_rejected(url: str) -> None:
    with pytest.raises(CatalogError):
        load_catalog([{"key": "k", "display_name": "K", "filename": "k.gguf", "url": url}])


def test_catalog_files_toml_and_json(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('[[models]]\nkey = "a"\ndisplay_name = "A"\nfilename = "a.gguf"\nurl = "https://e.org/a"\n')
    json_file = tmp_path / "c.json"
    json_file.write_text('[{"key": "b", "display_name": "B", "filename": "b.gguf", "url": "http://e.org/b"}]')
    assert [entry.key for entry in load_catalog(toml) + load_catalog(json_file)] == ["a", "b"]


def test_add_model_refuses_an_unknown_field(tmp_path: Path) -> None:
    """A misspelt field is named, not dropped (dropping "sha265" would download the model unverified)."""

    async def main() -> None:
        async with create_llm_store(tmp_path / "models", []) as store:
            entry = {
                "key": "k",
                "display_name": "K",
                "filename": "k.gguf",
                "url": "https://e.org/k",
                "sha265": "0" * 64,
            }
            with pytest.raises(CatalogError, match="unknown fields \\['sha265'\\]"):
                await store.add_model(entry)
            assert store.models == []

    anyio.run(main)


def test_models_dir_env_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MST_LLM_MODELS_DIR", str(tmp_path))
    assert default_models_dir() == tmp_path
    assert create_llm_store().context.models_dir == tmp_path


def test_second_download_call_joins(tmp_path: Path, server: FileServer, gguf_bytes: bytes) -> None:
    async def main() -> None:
        async with make(tmp_path, server, gguf_bytes) as store, anyio.create_task_group() as group:
            group.start_soon(store.start_model_download, "tiny")
            group.start_soon(store.start_model_download, "tiny")
        assert len(server.log) == 1 and store.get_model("tiny").status == "ready"

    anyio.run(main)


def test_store_on_trio(tmp_path: Path, server: FileServer, gguf_bytes: bytes) -> None:
    async def main() -> None:
        async with make(tmp_path, server, gguf_bytes) as store:
            await store.start_model_download("tiny")
            assert store.get_model("tiny").status == "ready"

    anyio.run(main, backend="trio")
