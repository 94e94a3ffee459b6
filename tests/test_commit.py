"""The public commit seam: ``on_commit(node, listener)`` and the immutable ``Commit`` record."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest

from mst_llm import (
    Commit,
    SessionLog,
    action,
    apply_action,
    apply_patch,
    flow,
    get_snapshot,
    model,
    on_commit,
    on_patch,
    on_snapshot,
    record_session,
    unprotect,
)


@model
class Todo:
    title: str = ""
    done: bool = False

    @action
    def toggle(self) -> None:
        self.done = not self.done


@model
class Store:
    todos: list[Todo]
    count: int = 0

    @action
    def add(self, title: str) -> None:
        self.todos.append({"title": title})

    @action
    def fail(self) -> None:
        self.count += 1
        raise RuntimeError("rolled back")

    @action
    def set_count(self, value: int) -> None:
        self.count = value

    @flow
    async def load(self, titles: list[str]) -> None:
        self.count = -1
        for title in titles:
            await anyio.sleep(0)
            self.todos.append({"title": title})
        await anyio.sleep(0)
        self.count = len(titles)


def test_one_commit_per_changing_transaction_with_its_patches_and_call() -> None:
    store = Store.create({"todos": []})
    commits: list[Commit] = []
    on_commit(store, commits.append)
    before = time.time()
    store.add("a")
    store.set_count(0)  # the same value: nothing changed, no commit
    store.todos[0].toggle()
    assert [commit.seq for commit in commits] == [1, 2]
    first, second = commits
    assert first.action == {"name": "add", "path": "", "args": ["a"]}
    assert first.patches == ({"op": "add", "path": "/todos/0", "value": {"title": "a", "done": False}},)
    assert first.inverse_patches == ({"op": "remove", "path": "/todos/0"},)
    assert second.action == {"name": "toggle", "path": "/todos/0", "args": []}
    assert first.flow is None
    assert before <= first.started_at <= first.committed_at <= second.started_at <= time.time()


def test_a_listener_below_the_root_sees_paths_relative_to_its_node_and_the_tree_seq() -> None:
    store = Store.create({"todos": [{"title": "a"}]})
    store.set_count(3)  # seq 1, not below the todo
    todo_commits: list[Commit] = []
    on_commit(store.todos[0], todo_commits.append)
    store.todos[0].toggle()  # seq 2
    assert [(commit.seq, commit.patches) for commit in todo_commits] == [
        (2, ({"op": "replace", "path": "/done", "value": True},))
    ]
    assert todo_commits[0].action == {"name": "toggle", "path": "", "args": []}


def test_rolled_back_transactions_deliver_nothing_and_take_no_seq() -> None:
    store = Store.create({"todos": []})
    commits: list[Commit] = []
    on_commit(store, commits.append)
    with pytest.raises(RuntimeError):
        store.fail()
    store.add("a")
    assert [commit.seq for commit in commits] == [1]


def test_commit_observers_run_after_patch_and_snapshot_listeners() -> None:
    store = Store.create({"todos": []})
    order: list[str] = []
    on_commit(store, lambda commit: order.append("commit"))
    on_patch(store, lambda patch, inverse: order.append("patch"))
    on_snapshot(store, lambda snapshot: order.append("snapshot"))
    store.add("a")
    assert order == ["patch", "snapshot", "commit"]


def test_a_commit_is_immutable() -> None:
    store = Store.create({"todos": []})
    commits: list[Commit] = []
    on_commit(store, commits.append)
    store.add("a")
    with pytest.raises(AttributeError):
        commits[0].seq = 5  # type: ignore[misc]
    with pytest.raises(AttributeError):
        commits[0].patches = ()  # type: ignore[misc]
    assert isinstance(commits[0].patches, tuple)


def test_bare_changes_and_apply_patch_are_commits_too() -> None:
    store = Store.create({"todos": []})
    unprotect(store)
    commits: list[Commit] = []
    on_commit(store, commits.append)
    store.count = 4
    apply_patch(store, {"op": "replace", "path": "/count", "value": 5})
    assert [commit.action for commit in commits] == [
        None,
        {"name": "@APPLY_PATCHES", "path": "", "args": [[{"op": "replace", "path": "/count", "value": 5}]]},
    ]
    assert get_snapshot(store)["count"] == 5


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_every_segment_of_a_flow_carries_the_flow(backend: str) -> None:
    store = Store.create({"todos": []})
    commits: list[Commit] = []
    on_commit(store, commits.append)
    anyio.run(store.load, ["a", "b"], backend=backend)
    flows: list[Any] = [commit.flow for commit in commits]
    assert [entry["segment"] for entry in flows] == [1, 2, 3, 4]
    assert {entry["name"] for entry in flows} == {"load"}
    assert len({entry["id"] for entry in flows}) == 1
    assert commits[0].action == {"name": "load", "path": "", "args": [["a", "b"]]}
    anyio.run(store.load, ["c"], backend=backend)
    assert commits[-1].flow is not None and commits[-1].flow["id"] != flows[0]["id"]


@model
class Folder:
    files: list[str]

    @flow
    async def fill(self, names: list[str], *, prefix: str = "") -> None:
        for name in names:
            await anyio.sleep(0)
            self.files.append(prefix + name)


@model
class Drive:
    folders: list[Folder]


def test_each_segment_names_the_whole_flow_call_relative_to_the_listener() -> None:
    drive = Drive.create({"folders": [{"files": []}, {"files": []}]})
    folder = drive.folders[1]
    on_root: list[Commit] = []
    on_folder: list[Commit] = []
    below: list[Commit] = []
    on_commit(drive, on_root.append)
    on_commit(folder, on_folder.append)
    on_commit(folder.files, below.append)  # inside the flow's node: the flow's call has no path from here
    anyio.run(lambda: folder.fill(["a", "b"], prefix="x-"))
    assert [commit.action for commit in on_root] == [None, None]  # the first segment changed nothing
    run_id = on_root[0].flow["id"] if on_root[0].flow else None
    call = {"name": "fill", "id": run_id, "args": [["a", "b"]], "kwargs": {"prefix": "x-"}}
    assert [commit.flow for commit in on_root] == [
        {**call, "segment": segment, "path": "/folders/1"} for segment in (2, 3)
    ]
    assert [commit.flow for commit in on_folder] == [{**call, "segment": segment, "path": ""} for segment in (2, 3)]
    assert [commit.flow for commit in below] == [
        {"name": "fill", "id": run_id, "segment": segment} for segment in (2, 3)
    ]
    assert [commit.patches[0]["path"] for commit in below] == ["/0", "/1"]


@model
class Line:
    text: str = ""

    @action
    def set_text(self, text: str) -> None:
        self.text = text

    @flow
    async def type_text(self, text: str) -> None:
        await anyio.sleep(0)
        self.text = text


@model
class Page:
    lines: list[Line]


def test_a_commit_names_the_action_where_its_node_was_when_the_call_started() -> None:
    """``Commit.action`` is built when first read; a node that moved since is still named where the call found
    it, as the commit's patches name the change where it happened (it was named where the node is now)."""
    page = Page.create({"lines": [{"text": "a"}, {"text": "b"}, {"text": "c"}]})
    commits: list[Commit] = []
    on_commit(page, commits.append)
    page.lines[2].set_text("C")
    apply_patch(page, {"op": "remove", "path": "/lines/0"})  # /lines/2 moves to /lines/1
    assert commits[0].patches[0]["path"] == "/lines/2/text"
    assert commits[0].action == {"name": "set_text", "path": "/lines/2", "args": ["C"]}
    replayed = Page.create({"lines": [{"text": "a"}, {"text": "b"}, {"text": "c"}]})
    apply_action(replayed, commits[0].action)
    assert [line.text for line in replayed.lines] == ["a", "b", "C"]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_every_segment_of_a_flow_names_the_flow_where_its_node_was_when_it_started(backend: str) -> None:
    page = Page.create({"lines": [{"text": "a"}, {"text": "b"}, {"text": "c"}]})
    commits: list[Commit] = []
    on_commit(page, commits.append)
    anyio.run(page.lines[2].type_text, "C", backend=backend)
    apply_patch(page, {"op": "remove", "path": "/lines/0"})  # /lines/2 moves to /lines/1
    (segment,) = [commit for commit in commits if commit.flow is not None and commit.patches]
    assert segment.patches[0]["path"] == "/lines/2/text"
    assert segment.flow is not None and segment.flow["path"] == "/lines/2" and segment.flow["segment"] == 2


def test_commit_line_is_the_entry_a_session_log_holds(tmp_path: Any) -> None:
    store = Store.create({"todos": [{"title": "a"}]})
    commits: list[Commit] = []
    on_commit(store, commits.append)
    with record_session(store, tmp_path / "s.jsonl"):
        store.todos[0].toggle()
        store.add("b")
    written = (tmp_path / "s.jsonl").read_bytes().splitlines(keepends=True)[1:]
    assert [SessionLog.commit_line(seq, commit) for seq, commit in enumerate(commits, 1)] == written
    assert SessionLog.open(tmp_path / "s.jsonl").entry(1).action == {"name": "toggle", "path": "/todos/0", "args": []}
