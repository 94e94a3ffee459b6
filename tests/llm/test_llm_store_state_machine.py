"""Stateful property test of LLMStore against a real HTTP server on 127.0.0.1 with injected faults.

Rules: initialize (re-scan), download (optionally with faults queued for that one download: 404, 500, a dropped
connection after N bytes), download of content that does not match the catalog's sha256, cancel of a download
stalled mid-way (keeping the partial or not), cancel while idle, delete, select, and truncating a ready model's
file followed by a re-scan. Every rule runs its coroutines to completion with ``anyio.run`` so it stays synchronous.

Invariants after every step: every status is legal and agrees with the files on disk (a ready model's file exists
with the expected size and recorded sha256, an idle one has no file, ``resumable_bytes`` matches the partial on
disk, nothing is downloading between steps, no temporary files linger), the selection names an existing model or
None, and the patches seen so far replay onto a store created from the initial snapshot to the live snapshot.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import anyio
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from hypothesis.stateful import initialize as first

from mst_llm import apply_patch, get_snapshot, on_patch
from mst_llm.llm.download import Downloader, part_path, partial_bytes, sidecar_path
from mst_llm.llm.locks import LOCK_DIR
from mst_llm.llm.model_info import TRANSITIONS
from mst_llm.llm.persist import STATE_FILE
from mst_llm.llm.store import LLMStore, create_llm_store
from tests.llm.gguf_factory import write_tiny_llama
from tests.llm.http_server import Fault, FileServer, serve

KEYS = ("a", "b")
"""``a`` has size and sha256 in the catalog; ``b`` only its size (its hash is recorded on first download)."""


def _tiny(seed: int) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        return write_tiny_llama(Path(tmp) / "m.gguf", seed=seed).read_bytes()


GOOD = {"a": _tiny(0), "b": _tiny(1)}
BOGUS = _tiny(2)  # a valid GGUF file of the same size whose sha256 matches neither catalog entry
assert all(len(data) == len(BOGUS) for data in GOOD.values())
SIZE = len(BOGUS)

FAULT = st.one_of(
    st.builds(lambda: ("404", Fault(times=None, status=404))),
    st.builds(lambda times: ("500", Fault(times=times, status=500)), st.sampled_from([1, None])),
    st.builds(
        lambda after, times: ("drop", Fault(times=times, drop_after=after)),
        st.integers(min_value=0, max_value=SIZE - 1),
        st.integers(min_value=1, max_value=2),
    ),
)


def _run(fn: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return anyio.run(fn)


class LLMStoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="llm-sm-"))
        self.models_dir = self.tmp / "models"
        self._serving = serve()
        self.server: FileServer = self._serving.__enter__()
        for key, data in GOOD.items():
            self.server.add(f"{key}.gguf", data)
        entries = [
            {
                "key": key,
                "display_name": key.upper(),
                "filename": f"{key}.gguf",
                "url": self.server.url(f"{key}.gguf"),
                "size": SIZE,
                "sha256": hashlib.sha256(GOOD[key]).hexdigest() if key == "a" else None,
            }
            for key in KEYS
        ]
        downloader = Downloader(retries=1, backoff=0.001, max_backoff=0.01, stall_timeout=10, connect_timeout=5)
        self.store: LLMStore = create_llm_store(self.models_dir, entries, downloader=downloader, save_interval=0)
        self.initial = get_snapshot(self.store)
        self.patches: list[Any] = []
        self.replica = LLMStore.create(self.initial)
        self.replayed = 0
        on_patch(self.store, lambda patch, inverse: self.patches.append(patch))

    # --- helpers ---------------------------------------------------------------------------------------------

    def final(self, key: str) -> Path:
        return self.models_dir / f"{key}.gguf"

    def download(self, key: str) -> None:
        _run(lambda: self.store.start_model_download(key))

    # --- rules -----------------------------------------------------------------------------------------------

    @first()
    def initialize(self) -> None:
        _run(self.store.initialize)
        assert self.store.is_initialized and self.store.error is None

    @rule()
    def reinitialize(self) -> None:
        """A re-scan: ready models stay ready; an error without a file on disk becomes idle (nothing to show)."""
        before = {info.key: (info.status, info.resumable_bytes) for info in self.store.models}
        _run(self.store.initialize)
        assert self.store.is_initialized and self.store.error is None
        for info in self.store.models:
            status, resumable = before[info.key]
            assert info.resumable_bytes == resumable
            if status == "ready" or (status == "error" and not self.final(info.key).exists()):
                assert info.status == {"ready": "ready", "error": "idle"}[status]

    @rule(key=st.sampled_from(KEYS), faults=st.lists(FAULT, max_size=2))
    def download_with_faults(self, key: str, faults: list[tuple[str, Fault]]) -> None:
        info = self.store.get_model(key)
        was_ready = info.status == "ready"
        blocked = not was_ready and self.final(key).exists()  # a bad file must be deleted first
        requests = len(self.server.log)
        name = f"{key}.gguf"
        for _, fault in faults:
            self.server.fault(name, fault)
        try:
            self.download(key)
        finally:
            self.server.faults.pop(name, None)
        kinds = [kind for kind, _ in faults]
        event(f"download {'+'.join(kinds) or 'clean'} from {'ready' if was_ready else 'other'}: {info.status}")
        if was_ready:
            assert info.status == "ready" and len(self.server.log) == requests  # nothing to do
        elif blocked:
            assert info.status == "error" and "exists" in (info.error or "") and len(self.server.log) == requests
        elif not kinds:
            assert info.status == "ready", info.error
        elif kinds[0] == "404":
            assert info.status == "error" and "404" in (info.error or "") and info.resumable_bytes == 0
        elif info.status == "error":
            assert info.error and ("500" in kinds or "drop" in kinds)

    @rule(key=st.sampled_from(KEYS))
    def download_wrong_content(self, key: str) -> None:
        info = self.store.get_model(key)
        if info.status == "ready":
            return
        name = f"{key}.gguf"
        self.server.files[name] = BOGUS
        try:
            self.download(key)
        finally:
            self.server.files[name] = GOOD[key]
        outcome: str = info.status  # (mypy narrowed the status before the download)
        event(f"wrong content {key}: {outcome}")
        if outcome == "error":
            assert info.resumable_bytes == 0 and not part_path(self.final(key)).exists()
        elif outcome == "ready":  # no hash known yet: the bogus file's hash is recorded
            assert info.sha256 == hashlib.sha256(BOGUS).hexdigest()

    @rule(key=st.sampled_from(KEYS), keep=st.booleans(), after=st.integers(min_value=0, max_value=SIZE - 1))
    def cancel_stalled_download(self, key: str, keep: bool, after: int) -> None:
        info = self.store.get_model(key)
        if info.status == "ready" or self.final(key).exists():
            return
        name = f"{key}.gguf"
        self.server.fault(name, Fault(stall_after=after, stall_s=1.0))
        requests = len(self.server.log)

        async def main() -> None:
            async with anyio.create_task_group() as group:
                group.start_soon(self.store.start_model_download, key)
                with anyio.fail_after(5):
                    while len(self.server.log) == requests or self.server.log[-1].sent < min(after, SIZE - 1):
                        await anyio.sleep(0.002)
                    await anyio.sleep(0.01)
                assert info.status == "downloading" and self.store.downloading_model is info
                start = time.monotonic()
                await self.store.cancel_model_download(key, keep_partial=keep)
                assert time.monotonic() - start < 1.0

        try:
            _run(main)
        finally:
            self.server.faults.pop(name, None)
        assert info.status == "idle" and info.progress == 0.0
        assert part_path(self.final(key)).exists() == keep
        event(f"cancelled mid-download, partial kept={keep}")

    @rule(key=st.sampled_from(KEYS), keep=st.booleans())
    def cancel_idle(self, key: str, keep: bool) -> None:
        before = partial_bytes(self.final(key))
        _run(lambda: self.store.cancel_model_download(key, keep_partial=keep))
        assert partial_bytes(self.final(key)) == (before if keep else 0)

    @rule(key=st.sampled_from(KEYS))
    def delete(self, key: str) -> None:
        _run(lambda: self.store.delete_model(key))
        info = self.store.get_model(key)
        assert info.status == "idle" and info.resumable_bytes == 0 and self.store.selected_model_key != key
        assert not self.final(key).exists() and not part_path(self.final(key)).exists()

    @rule(key=st.none() | st.sampled_from(KEYS))
    def select(self, key: str | None) -> None:
        self.store.select_model(key)
        assert self.store.selected_model_key == key

    @precondition(lambda self: any(self.final(key).exists() for key in KEYS))
    @rule(key=st.sampled_from(KEYS))
    def truncate_file_and_rescan(self, key: str) -> None:
        path = self.final(key)
        if not path.exists():
            return
        with open(path, "r+b") as handle:
            handle.truncate(SIZE // 2)
        _run(self.store.initialize)
        info = self.store.get_model(key)
        assert info.status == "error" and "size" in (info.error or "")

    # --- invariants ------------------------------------------------------------------------------------------

    @invariant()
    def statuses_match_disk(self) -> None:
        assert not self.store.context.active and self.store.downloading_model is None
        for info in self.store.models:
            assert info.status in TRANSITIONS and info.status != "downloading"
            assert info.key in KEYS  # no stray models were invented
            final = self.final(info.key)
            if info.status == "ready":
                data = final.read_bytes()
                assert info.path == str(final) and info.progress == 100.0 and info.error is None
                assert len(data) == SIZE and hashlib.sha256(data).hexdigest() == info.sha256
                assert info.architecture == "llama"
            elif info.status == "idle":
                assert not final.exists() and info.path is None and info.error is None
            elif info.status == "error":
                assert info.error
            assert info.resumable_bytes == partial_bytes(final), (info.key, info.resumable_bytes)
            if info.resumable_bytes:
                assert sidecar_path(final).exists() and info.status != "ready"
        if self.models_dir.exists():
            allowed = {STATE_FILE, LOCK_DIR}
            allowed |= {f"{key}.gguf{suffix}" for key in KEYS for suffix in ("", ".part", ".part.json")}
            names = {path.name for path in self.models_dir.iterdir()}
            # the state file is saved in a worker thread, maybe now, through a temp file of its own
            saving = {name for name in names if name.startswith(f"{STATE_FILE}.") and name.endswith(".tmp")}
            assert len(saving) <= 1 and names - saving <= allowed, names - saving - allowed

    @invariant()
    def selection_is_valid(self) -> None:
        key = self.store.selected_model_key
        assert key is None or key in KEYS
        assert (self.store.selected_model is None) == (key is None)

    @invariant()
    def patches_replay(self) -> None:
        apply_patch(self.replica, self.patches[self.replayed :])
        self.replayed = len(self.patches)
        assert get_snapshot(self.replica) == get_snapshot(self.store)

    def teardown(self) -> None:
        try:
            _run(self.store.close)
            replica = LLMStore.create(self.initial)
            apply_patch(replica, self.patches)
            assert get_snapshot(replica) == get_snapshot(self.store)
        finally:
            self._serving.__exit__(None, None, None)
            shutil.rmtree(self.tmp, ignore_errors=True)


LLMStoreMachine.TestCase.settings = settings(
    max_examples=20,
    stateful_step_count=10,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_llm_store = LLMStoreMachine.TestCase
