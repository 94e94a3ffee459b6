"""The state-tree core on its own: a small store shows actions, views, patches, snapshots and undo.

Run it with ``python examples/todos.py``; the main job (``make demo``) is ``mst-llm demo``.
"""

from __future__ import annotations

import json
from typing import Literal

from mst_llm import (
    ModelNode,
    ValidationError,
    action,
    apply_patch,
    get_snapshot,
    model,
    on_patch,
    on_snapshot,
    record_patches,
    view,
)
from mst_llm import types as t


@model
class Todo(ModelNode):
    id: t.Identifier
    title: str = ""
    done: bool = False
    tags: list[str]

    @action
    def toggle(self) -> None:
        self.done = not self.done


@model
class Store(ModelNode):
    todos: list[Todo]
    selected: t.SafeReference[Todo] | None = None
    filter: Literal["all", "open", "done"] = "all"

    @view
    def open_count(self) -> int:
        return sum(not todo.done for todo in self.todos)

    @action
    def add(self, id: str, title: str, *tags: str) -> None:
        self.todos.append(Todo(id=id, title=title, tags=list(tags)))

    @action
    def select(self, todo: Todo | None) -> None:
        self.selected = todo

    @action
    def remove(self, todo: Todo) -> None:
        self.todos.remove(todo)


def main() -> None:
    store = Store.create({"todos": [{"id": "spec", "title": "Write the spec"}]})
    on_patch(store, lambda patch, inverse: print("  patch  ", json.dumps(patch)))
    on_snapshot(store, lambda snapshot: print(f"  snapshot: {len(snapshot['todos'])} todos"))
    history = record_patches(store)

    print("add two todos, select one, toggle it:")
    store.add("code", "Write the code", "python")
    store.add("test", "Write the tests")
    store.select(store.todos[1])
    store.todos[1].toggle()
    print(f"open todos (a cached view): {store.open_count}")

    print("removing the selected todo clears the safe reference in the same transaction:")
    store.remove(store.todos[1])
    assert store.selected is None

    print("a wrong value is refused and changes nothing:")
    try:
        store.add("spec", "duplicate identifier")
    except ValidationError as error:
        print(f"  ValidationError: {error}")

    print("undo everything with the inverse patches (one transaction):")
    history.stop()
    apply_patch(store, list(reversed(history.inverse_patches)))
    print(json.dumps(get_snapshot(store), indent=2))


if __name__ == "__main__":
    main()
