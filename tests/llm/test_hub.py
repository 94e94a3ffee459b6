"""Hugging Face references, ``HF_TOKEN``, ``HF_HUB_OFFLINE`` and retries against a fake Hub on 127.0.0.1."""

from __future__ import annotations

import hashlib
import itertools
import logging
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mst_llm import DownloadHTTPError, HubError, ModelStoreError, OfflineError, get_snapshot
from mst_llm.llm import create_llm_store
from mst_llm.llm.download import Downloader, part_path, sidecar_path
from mst_llm.llm.hub import HubFile, HubReference, choose_file, parse_reference
from mst_llm.llm.persist import STATE_FILE
from mst_llm.llm.retry import backoff_delay, retry_after_seconds
from mst_llm.llm.store import LLMStore
from tests.llm.fake_hub import TOKEN, FakeHub
from tests.llm.http_server import Fault, serve

REPO = "tester/Tiny-GGUF"
Q8 = "tiny-Q8_0.gguf"
Q4 = "tiny-Q4_K_M.gguf"


def fast() -> Downloader:
    return Downloader(retries=3, backoff=0.01, max_backoff=0.05, stall_timeout=2, connect_timeout=2)


@pytest.fixture
def repo(hub: FakeHub, gguf_bytes: bytes) -> FakeHub:
    hub.add_repo(REPO, {Q8: gguf_bytes, Q4: gguf_bytes, "mmproj-tiny-Q8_0.gguf": b"projector"})
    return hub


def pull(models_dir: Path, reference: str, filename: str | None = None) -> tuple[LLMStore, dict]:  # type: ignore[type-arg]
    """Add and download a Hub model in a fresh store; the store (closed) and the model's snapshot."""

    async def main() -> tuple[LLMStore, dict]:  # type: ignore[type-arg]
        async with create_llm_store(models_dir, [], downloader=fast()) as store:
            info = await store.add_hub_model(reference, filename)
            await store.start_model_download(info.key)
            return store, dict(get_snapshot(info))

    return anyio.run(main)


# --- references and file choice -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M", ("bartowski/Llama-3.2-1B-Instruct-GGUF", "Q4_K_M")),
        ("huggingface.co/user/repo:iq4_xs", ("user/repo", "iq4_xs")),
        ("https://huggingface.co/user/my.repo", ("user/my.repo", None)),
        ("user/repo", ("user/repo", None)),
    ],
)
def test_references_in_ollamas_and_huggingface_forms(text: str, expected: tuple[str, str | None]) -> None:
    reference = parse_reference(text)
    assert (reference.repo, reference.quant, reference.filename, reference.revision) == (*expected, None, "main")


@pytest.mark.parametrize(
    ("text", "filename", "message"),
    [
        ("hf.co/user", None, "is not a Hugging Face repository"),
        ("hf.co/user/re po", None, "is not a Hugging Face repository"),
        ("hf.co/a/b/c", None, "is not a Hugging Face repository"),
        ("hf.co/user/../etc", None, "is not a Hugging Face repository"),
        ("hf.co/user/repo:Q4/x", None, "is not a quantization tag"),
        ("user/repo:Q4_K_M", "x.gguf", "not both"),
        ("user/repo", "notes.txt", "is not a .gguf file"),
        ("user/repo", "../x.gguf", "is not a .gguf file"),
    ],
)
def test_malformed_references_are_hub_errors(text: str, filename: str | None, message: str) -> None:
    with pytest.raises(HubError) as caught:
        parse_reference(text, filename)
    assert message in str(caught.value)


_USER = st.from_regex(r"[A-Za-z0-9](?:[A-Za-z0-9_]|-(?=[A-Za-z0-9_])){0,20}", fullmatch=True)
_NAME = st.from_regex(r"[A-Za-z0-9](?:[A-Za-z0-9_]|[-.](?=[A-Za-z0-9_])){0,20}", fullmatch=True)


@given(user=_USER, name=_NAME, quant=st.from_regex(r"[A-Za-z0-9_]{1,12}", fullmatch=True))
def test_a_reference_reads_back_from_its_ollama_name(user: str, name: str, quant: str) -> None:
    reference = HubReference(f"{user}/{name}", quant)
    assert parse_reference(str(reference)) == reference
    assert reference.file_url("a b.gguf").endswith(f"/{user}/{name}/resolve/main/a%20b.gguf")


def test_the_quant_tag_picks_a_file_case_insensitively() -> None:
    files = [HubFile(f"m-{quant}.gguf") for quant in ("Q4_K_M", "Q4_K_S", "IQ4_XS", "Q8_0")]
    files += [HubFile("mmproj-m-Q8_0.gguf"), HubFile("README.md")]
    assert choose_file(HubReference("u/r", "q4_k_m"), files).path == "m-Q4_K_M.gguf"
    assert choose_file(HubReference("u/r"), files).path == "m-Q4_K_M.gguf"  # the default
    assert choose_file(HubReference("u/r", "Q8_0"), files).path == "m-Q8_0.gguf"  # not the projector
    assert choose_file(HubReference("u/r", "iq4_xs"), files).path == "m-IQ4_XS.gguf"
    with pytest.raises(HubError, match=r"2 files match Q4_K: m-Q4_K_M.gguf, m-Q4_K_S.gguf"):
        choose_file(HubReference("u/r", "Q4_K"), files)
    with pytest.raises(HubError, match=r"has no Q2_K file; available: quantizations IQ4_XS, Q4_K_M, Q4_K_S, Q8_0$"):
        choose_file(HubReference("u/r", "Q2_K"), files)
    with pytest.raises(HubError, match=r"has no Q4_K_M file; available: quantizations Q8_0$"):
        choose_file(HubReference("u/r"), [HubFile("m-Q8_0.gguf")])
    with pytest.raises(HubError, match="has no GGUF file"):
        choose_file(HubReference("u/r"), [HubFile("model.safetensors")])


# --- retry policy ---------------------------------------------------------------------------------------------


@given(
    failures=st.integers(1, 200),
    base=st.floats(0.001, 10),
    cap=st.floats(0.001, 60),
    seed=st.integers(0, 2**32),
)
def test_backoff_is_jittered_within_the_upper_half_of_the_capped_exponential(
    failures: int, base: float, cap: float, seed: int
) -> None:
    ceiling = min(cap, base * 2 ** (failures - 1))
    delay = backoff_delay(failures, base, cap, random.Random(seed))
    assert ceiling / 2 <= delay <= ceiling


def test_backoff_is_random_not_lockstep() -> None:
    delays = {backoff_delay(3, 1.0, 10.0) for _ in range(20)}
    assert len(delays) > 10 and all(2.0 <= delay <= 4.0 for delay in delays)


@given(seconds=st.integers(0, 10**6))
def test_retry_after_in_seconds_or_as_an_http_date(seconds: int) -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert retry_after_seconds(str(seconds), now) == seconds
    date = format_datetime(now + timedelta(seconds=seconds), usegmt=True)
    assert retry_after_seconds(date, now) == seconds


def test_unreadable_or_past_retry_after() -> None:
    now = datetime(2026, 1, 2, tzinfo=UTC)
    assert retry_after_seconds(None, now) is None
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds("-3", now) is None
    assert retry_after_seconds(format_datetime(now - timedelta(hours=1), usegmt=True), now) == 0.0


def test_retry_delay_is_the_wait_or_none_to_give_up() -> None:
    """The one rule downloads and the Hub's API requests retry by."""
    downloader = Downloader(retries=2, backoff=0.2, max_backoff=0.4, max_retry_after=10)
    assert downloader.retry_delay(2, 10) == 10  # Retry-After, up to the limit
    assert downloader.retry_delay(1, 10.5) is None  # a longer one: give up at once
    assert downloader.retry_delay(3) is None and downloader.retry_delay(3, 1) is None  # the retries are used up
    assert 0.1 <= (downloader.retry_delay(1) or 0) <= 0.2 and 0.2 <= (downloader.retry_delay(2) or 0) <= 0.4


# --- against the fake Hub -------------------------------------------------------------------------------------


def test_pull_by_quant_adds_an_entry_with_the_hubs_size_and_sha256(
    repo: FakeHub, tmp_path: Path, gguf_bytes: bytes
) -> None:
    _, info = pull(tmp_path, "hf.co/tester/Tiny-GGUF:q8_0")
    assert info["key"] == "tiny-Q8_0" and info["status"] == "ready" and info["quantization"] == "Q8_0"
    assert info["size"] == len(gguf_bytes) and info["sha256"] == hashlib.sha256(gguf_bytes).hexdigest()
    assert info["url"] == f"{repo.endpoint}/{REPO}/resolve/main/{Q8}" and info["display_name"] == f"hf.co/{REPO}:Q8_0"
    assert (tmp_path / Q8).read_bytes() == gguf_bytes
    assert repo.requests("api/") == [f"api/models/{REPO}/tree/main?recursive=true"]
    assert repo.requests(REPO) == [f"{REPO}/resolve/main/{Q8}"]


def test_pull_by_file_name_and_the_entry_survives_a_restart(repo: FakeHub, tmp_path: Path, gguf_bytes: bytes) -> None:
    pull(tmp_path, REPO, Q4)

    async def reopen() -> dict:  # type: ignore[type-arg]
        async with create_llm_store(tmp_path, []) as store:
            return dict(get_snapshot(store.get_model("tiny-Q4_K_M")))

    restored = anyio.run(reopen)
    assert restored["status"] == "ready" and restored["url"].endswith(f"/resolve/main/{Q4}")
    assert restored["sha256"] == hashlib.sha256(gguf_bytes).hexdigest()
    (tmp_path / Q4).unlink()
    assert anyio.run(reopen)["status"] == "idle"  # remembered while a file was there; saved without one ...
    with pytest.raises(ModelStoreError, match="unknown model 'tiny-Q4_K_M'"):
        anyio.run(reopen)  # ... it is forgotten


def test_the_listing_is_read_page_by_page(hub: FakeHub, tmp_path: Path, gguf_bytes: bytes) -> None:
    files = {f"tiny-{quant}.gguf": gguf_bytes for quant in ("Q2_K", "Q3_K_M", "Q5_K_M", "Q6_K", "Q8_0")}
    hub.add_repo(REPO, files, pages=3)
    _, info = pull(tmp_path, f"hf.co/{REPO}:Q8_0")  # the last page lists it
    assert info["status"] == "ready"
    assert len(hub.requests("api/")) == 3


def test_a_wrong_sha256_from_the_hub_is_an_error_and_leaves_no_file(
    hub: FakeHub, tmp_path: Path, gguf_bytes: bytes
) -> None:
    hub.add_repo(REPO, {Q4: gguf_bytes}, sha256={Q4: "0" * 64})
    _, info = pull(tmp_path, REPO)
    assert info["status"] == "error" and "sha256" in info["error"] and "expected " + "0" * 64 in info["error"]
    assert not (tmp_path / Q4).exists() and not part_path(tmp_path / Q4).exists()
    assert not sidecar_path(tmp_path / Q4).exists()


@pytest.mark.parametrize(
    ("status", "message"),
    [(404, "was not found on"), (401, "is gated or private (HTTP 401); set HF_TOKEN"), (500, "HTTP 500")],
)
def test_api_errors_are_hub_errors(hub: FakeHub, tmp_path: Path, status: int, message: str) -> None:
    hub.server.fault(f"api/models/{REPO}/tree/main?recursive=true", Fault(times=None, status=status))
    with pytest.raises(HubError) as caught:
        pull(tmp_path, REPO)
    assert message in str(caught.value) and caught.value.status == status


@pytest.mark.parametrize(
    ("status", "token", "hint"),
    [
        (401, None, "the file is gated or private: set HF_TOKEN to a token with access"),
        (403, TOKEN, "the file is gated or private: the token in HF_TOKEN has no access to it"),
    ],
)
def test_a_hub_file_turned_away_says_what_to_do_about_the_token(
    repo: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, status: int, token: str | None, hint: str
) -> None:
    if token is not None:
        monkeypatch.setenv("HF_TOKEN", token)
    repo.server.fault(f"{REPO}/resolve/main/{Q8}", Fault(status=status))
    _, info = pull(tmp_path, f"hf.co/{REPO}:Q8_0")
    assert info["status"] == "error" and info["error"].endswith(f"HTTP {status} {_REASONS[status]}; {hint}")
    assert "catalog entry" not in info["error"] and (token is None or token not in info["error"])
    assert not (tmp_path / Q8).exists() and not part_path(tmp_path / Q8).exists()


_REASONS = {401: "Unauthorized", 403: "Forbidden"}


def test_a_file_turned_away_elsewhere_points_at_the_catalog_url(tmp_path: Path, gguf_bytes: bytes) -> None:
    with serve() as server:
        url = server.add("tiny.gguf", gguf_bytes)
        server.fault("tiny.gguf", Fault(status=403))

        async def main() -> str | None:
            entry = {"key": "t", "display_name": "T", "filename": "t.gguf", "url": url}
            async with create_llm_store(tmp_path, [entry], downloader=fast()) as store:
                await store.start_model_download("t")
                return store.get_model("t").error

        error = anyio.run(main)
    assert error == f"{url}: HTTP 403 Forbidden; check the URL in the catalog entry"


def test_the_token_goes_to_the_hub_only_and_is_never_shown(
    repo: FakeHub, tmp_path: Path, gguf_bytes: bytes, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    caplog.set_level(logging.DEBUG)
    with serve() as cdn:  # the Hub redirects the file to a CDN on another origin, as huggingface.co does
        cdn.add("blob", gguf_bytes)
        repo.server.fault(
            f"{REPO}/resolve/main/{Q8}", Fault(times=None, status=302, headers={"Location": cdn.url("blob")})
        )
        _, info = pull(tmp_path, f"hf.co/{REPO}:Q8_0")
        assert info["status"] == "ready"
        assert {entry.authorization for entry in repo.server.log} == {f"Bearer {TOKEN}"}
        assert [entry.authorization for entry in cdn.log] == [None]  # httpx drops it on the redirect
    shown = [caplog.text, str(info), (tmp_path / STATE_FILE).read_text()]
    repo.server.fault(f"api/models/{REPO}/tree/main?recursive=true", Fault(status=403))
    with pytest.raises(HubError) as caught:
        pull(tmp_path, REPO)
    shown.append(str(caught.value))
    assert str(caught.value).endswith("is gated or private (HTTP 403); the token in HF_TOKEN has no access to it")
    assert all(TOKEN not in text for text in shown)


def test_a_catalog_url_elsewhere_gets_no_token(
    tmp_path: Path, gguf_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("HF_ENDPOINT", "https://huggingface.co")
    with serve() as server:
        url = server.add("tiny.gguf", gguf_bytes)

        async def main() -> str:
            entry = {"key": "t", "display_name": "T", "filename": "t.gguf", "url": url}
            async with create_llm_store(tmp_path, [entry], downloader=fast()) as store:
                await store.start_model_download("t")
                return store.get_model("t").status

        assert anyio.run(main) == "ready"
        assert [entry.authorization for entry in server.log] == [None]


def test_offline_uses_what_is_downloaded_and_never_the_network(
    repo: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OfflineError, match=r"HF_HUB_OFFLINE is set and hf.co/tester/Tiny-GGUF:Q8_0 is not downloaded"):
        pull(tmp_path, f"hf.co/{REPO}:Q8_0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    pull(tmp_path, f"hf.co/{REPO}:Q8_0")
    requests = len(repo.server.log)
    monkeypatch.setenv("HF_HUB_OFFLINE", "true")

    async def offline() -> tuple[str, str]:
        async with create_llm_store(tmp_path, []) as store:
            info = await store.add_hub_model(f"hf.co/{REPO}:q8_0")
            with pytest.raises(OfflineError, match=r"installed from tester/Tiny-GGUF: tiny-Q8_0.gguf"):
                await store.add_hub_model(f"hf.co/{REPO}:Q4_K_M")
            return info.key, info.status

    assert anyio.run(offline) == ("tiny-Q8_0", "ready")
    assert len(repo.server.log) == requests


def test_offline_downloads_nothing(repo: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "ON")
    with pytest.raises(OfflineError) as caught:
        anyio.run(lambda: fast().download(f"{repo.endpoint}/{REPO}/resolve/main/{Q8}", tmp_path / Q8))
    assert caught.value.resumable and repo.server.log == [] and list(tmp_path.iterdir()) == []


@pytest.fixture
def limited(repo: FakeHub) -> Iterator[FakeHub]:
    """The Hub answers the listing and the file with 429 and ``Retry-After: 1`` once each."""
    for path in (f"api/models/{REPO}/tree/main?recursive=true", f"{REPO}/resolve/main/{Q8}"):
        repo.server.fault(path, Fault(status=429, headers={"Retry-After": "1"}))
    yield repo


def test_429_waits_as_long_as_retry_after_says(limited: FakeHub, tmp_path: Path) -> None:
    _, info = pull(tmp_path, f"hf.co/{REPO}:Q8_0")  # backoff alone would wait at most 0.05 s
    assert info["status"] == "ready"
    log = limited.server.log
    assert [entry.status for entry in log] == [429, 200, 429, 200]
    for first, second in ((log[0], log[1]), (log[2], log[3])):
        assert 1.0 <= second.time - first.time < 3.0


def test_a_retry_after_beyond_the_limit_gives_up_at_once(repo: FakeHub, tmp_path: Path) -> None:
    url = f"{REPO}/resolve/main/{Q8}"
    repo.server.fault(url, Fault(status=503, headers={"Retry-After": "3600"}))
    with pytest.raises(DownloadHTTPError, match=r"HTTP 503, and the server asks to wait 3600 s") as caught:
        anyio.run(lambda: fast().download(f"{repo.endpoint}/{url}", tmp_path / Q8))
    assert caught.value.resumable and caught.value.status == 503 and len(repo.server.log) == 1


def test_an_api_retry_after_beyond_the_limit_gives_up_at_once(hub: FakeHub, tmp_path: Path) -> None:
    hub.server.fault(f"api/models/{REPO}/tree/main?recursive=true", Fault(status=503, headers={"Retry-After": "3600"}))
    with pytest.raises(HubError, match="the Hub answered HTTP 503") as caught:
        pull(tmp_path, REPO)
    assert caught.value.status == 503 and len(hub.server.log) == 1


def test_503_without_retry_after_backs_off_with_bounded_jitter(repo: FakeHub, tmp_path: Path) -> None:
    url = f"{REPO}/resolve/main/{Q8}"
    repo.server.fault(url, Fault(times=3, status=503))
    downloader = Downloader(retries=3, backoff=0.2, max_backoff=0.4)
    anyio.run(lambda: downloader.download(f"{repo.endpoint}/{url}", tmp_path / Q8))
    times = [entry.time for entry in repo.server.log]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    # backoff 0.2, 0.4, 0.4 (capped); jitter keeps each wait in the upper half (+ a loaded machine's slack)
    for gap, ceiling in zip(gaps, (0.2, 0.4, 0.4), strict=True):
        assert ceiling / 2 <= gap < ceiling + 0.5


def test_a_file_already_on_disk_takes_the_hub_entry_and_is_checked(
    repo: FakeHub, tmp_path: Path, gguf_bytes: bytes
) -> None:
    (tmp_path / Q8).write_bytes(gguf_bytes)

    async def main() -> tuple[str | None, str, list[str]]:
        async with create_llm_store(tmp_path, []) as store:
            assert store.get_model("tiny-Q8_0").url is None  # found on disk, no source
            info = await store.add_hub_model(f"hf.co/{REPO}:Q8_0")
            again = await store.add_hub_model(f"{REPO}", Q8)
            assert again is info
            return info.url, info.status, [model.key for model in store.models]

    url, status, keys = anyio.run(main)
    assert url == f"{repo.endpoint}/{REPO}/resolve/main/{Q8}" and status == "ready" and keys == ["tiny-Q8_0"]
    assert repo.requests(REPO) == []  # nothing downloaded


def test_a_key_or_file_of_another_source_is_refused_and_nothing_changes(repo: FakeHub, tmp_path: Path) -> None:
    other = {"key": "tiny-Q8_0", "display_name": "Other", "filename": "other.gguf", "url": "https://example.org/o"}

    async def main() -> list[dict]:  # type: ignore[type-arg]
        async with create_llm_store(tmp_path, [other]) as store:
            before = [dict(model) for model in get_snapshot(store)["models"]]
            with pytest.raises(ModelStoreError, match=r"cannot add 'tiny-Q8_0' .* has that key or file name"):
                await store.add_hub_model(f"hf.co/{REPO}:Q8_0")
            assert [dict(model) for model in get_snapshot(store)["models"]] == before
            return before

    assert len(anyio.run(main)) == 1


def test_an_unreachable_hub_or_a_garbled_listing_is_a_hub_error(
    hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.server.add(f"api/models/{REPO}/tree/main?recursive=true", b"<html>busy</html>")
    with pytest.raises(HubError, match=r"tester/Tiny-GGUF: the Hub's file list is not JSON"):
        pull(tmp_path, REPO)
    with serve() as gone:
        closed = gone.url("").rstrip("/")
    monkeypatch.setenv("HF_ENDPOINT", closed)
    with pytest.raises(HubError, match=rf"cannot reach {closed} \(ConnectError\); check the network") as caught:
        pull(tmp_path, REPO)
    assert caught.value.status is None


def test_a_catalog_entry_with_the_same_url_is_used_and_learns_size_and_sha256(
    repo: FakeHub, tmp_path: Path, gguf_bytes: bytes
) -> None:
    entry = {"key": "tiny", "display_name": "Tiny", "filename": Q8, "url": f"{repo.endpoint}/{REPO}/resolve/main/{Q8}"}

    async def main() -> tuple[str, int | None, str | None, int]:
        async with create_llm_store(tmp_path, [entry]) as store:
            info = await store.add_hub_model(f"hf.co/{REPO}:Q8_0")
            return info.key, info.size, info.sha256, len(store.models)

    assert anyio.run(main) == ("tiny", len(gguf_bytes), hashlib.sha256(gguf_bytes).hexdigest(), 1)
