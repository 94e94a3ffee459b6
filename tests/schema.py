"""A realistic shared schema for the property tests, plus hypothesis strategies.

The schema exercises every kind of node the contract describes: models with identifiers, nested models
(required and nullable), lists of models and of primitives, a dict of models keyed by identifier, a
reference and a safe reference, a literal, an optional float and a frozen value.

The actions keep the tree within what the contract fully defines: todo identifiers stay unique (an action
that would create a duplicate raises ``DuplicateId`` instead, which doubles as a source of failing actions)
and a ``Todo.owner`` reference never dangles (removing a user clears the owners pointing at it first).

Strategies:

- ``store_snapshots()``: complete valid ``Store`` snapshots (every field present, so that
  ``get_snapshot(Store.create(s)) == s``).
- ``ops()`` / ``op_sequences()``: ``Op(name, args)`` values; ``run_op(store, op)`` calls the action.
  Indices are raw (sometimes out of range, so some actions raise and must roll back).
"""

from __future__ import annotations

import contextlib
from typing import Any, Literal, NamedTuple

from hypothesis import strategies as st

from mst_llm import ValidationError, action, apply_snapshot, detach, escape_json_path, get_snapshot, model
from mst_llm import types as t


class DuplicateId(Exception):
    """Raised by actions that would put two todos with the same identifier into the tree."""


class Boom(Exception):
    """Raised on purpose by actions that fail after changing things."""


@model
class Address:
    city: str = ""
    zip: str = ""


@model
class User:
    id: t.Identifier
    name: str = ""
    age: int = 0
    address: Address
    emails: list[str]

    @action
    def rename(self, name: str) -> None:
        self.name = name


@model
class Note:
    text: str = ""
    pinned: bool = False


@model
class Todo:
    id: t.Identifier
    title: str = ""
    done: bool = False
    priority: int = 0
    tags: list[str]
    note: Note | None = None
    owner: t.Reference[User] | None = None

    @action
    def rename(self, title: str) -> None:
        self.title = title

    @action
    def toggle(self) -> None:
        self.done = not self.done

    @action
    def add_tag(self, tag: str) -> None:
        self.tags.append(tag)

    @action
    def remove_tag(self, tag: str) -> None:
        self.tags.remove(tag)  # ValueError when absent -> the action fails

    @action
    def splice_tags(self, start: int, stop: int, tags: list[str]) -> None:
        self.tags[start:stop] = tags

    @action
    def sort_tags(self, reverse: bool) -> None:
        self.tags.sort(reverse=reverse)

    @action
    def set_note(self, note: dict[str, Any] | None) -> None:
        self.note = note

    @action
    def fail_after_rename(self, title: str) -> None:
        self.title = title
        raise Boom("nested failure")


@model
class Settings:
    theme: Literal["light", "dark", "system"] = "light"
    page_size: int = 20
    ratio: float | None = None
    extra: t.Frozen[dict] = None


@model
class Store:
    todos: list[Todo]
    users: dict[str, User]
    selected: t.SafeReference[Todo] | None = None
    status: Literal["idle", "busy", "done"] = "idle"
    settings: Settings
    score: float | None = None

    # ----------------------------------------------------------------------------------------- helpers
    # (plain methods are uncached views; they only read)

    def todo_ids(self) -> list[str]:
        return [todo.id for todo in self.todos]

    def find_todo(self, todo_id: str) -> Todo:
        for todo in self.todos:
            if todo.id == todo_id:
                return todo
        raise KeyError(todo_id)

    def _check_new_ids(self, snaps: list[dict[str, Any]], keep: list[str]) -> None:
        seen = set(keep)
        for snap in snaps:
            if snap["id"] in seen:
                raise DuplicateId(snap["id"])
            seen.add(snap["id"])

    # ----------------------------------------------------------------------------------------- todos

    @action
    def add_todo(self, snap: dict[str, Any]) -> None:
        self._check_new_ids([snap], self.todo_ids())
        self.todos.append(snap)

    @action
    def insert_todo(self, index: int, snap: dict[str, Any]) -> None:
        self._check_new_ids([snap], self.todo_ids())
        self.todos.insert(index, snap)

    @action
    def extend_todos(self, snaps: list[dict[str, Any]]) -> None:
        self._check_new_ids(snaps, self.todo_ids())
        self.todos.extend(snaps)

    @action
    def remove_todo(self, index: int) -> None:
        del self.todos[index]

    @action
    def pop_todo(self, index: int) -> None:
        self.todos.pop(index)

    @action
    def remove_todo_by_id(self, todo_id: str) -> None:
        self.todos.remove(self.find_todo(todo_id))

    @action
    def move_todo(self, src: int, dst: int) -> None:
        node = detach(self.todos[src])
        self.todos.insert(dst, node)

    @action
    def splice_todos(self, start: int, stop: int, snaps: list[dict[str, Any]]) -> None:
        ids = self.todo_ids()
        del ids[start:stop]
        self._check_new_ids(snaps, ids)
        self.todos[start:stop] = snaps

    @action
    def replace_todo(self, index: int, snap: dict[str, Any]) -> None:
        ids = self.todo_ids()
        del ids[index]
        self._check_new_ids([snap], ids)
        self.todos[index] = snap

    @action
    def set_todos(self, snaps: list[dict[str, Any]]) -> None:
        self._check_new_ids(snaps, [])
        self.todos = snaps

    @action
    def sort_todos(self, reverse: bool) -> None:
        self.todos.sort(key=lambda todo: (todo.title, todo.id), reverse=reverse)

    @action
    def reverse_todos(self) -> None:
        self.todos.reverse()

    @action
    def clear_todos(self) -> None:
        self.todos.clear()

    @action
    def rename_todo(self, index: int, title: str) -> None:
        self.todos[index].rename(title)

    @action
    def toggle_todo(self, index: int) -> None:
        self.todos[index].toggle()

    @action
    def toggle_all(self) -> None:
        for todo in self.todos:
            todo.toggle()

    @action
    def set_priority(self, index: int, priority: int) -> None:
        self.todos[index].priority = priority

    @action
    def add_tag(self, index: int, tag: str) -> None:
        self.todos[index].add_tag(tag)

    @action
    def remove_tag(self, index: int, tag: str) -> None:
        self.todos[index].remove_tag(tag)

    @action
    def splice_tags(self, index: int, start: int, stop: int, tags: list[str]) -> None:
        self.todos[index].splice_tags(start, stop, tags)

    @action
    def sort_tags(self, index: int, reverse: bool) -> None:
        self.todos[index].sort_tags(reverse)

    @action
    def clear_tags(self, index: int) -> None:
        self.todos[index].tags.clear()

    @action
    def set_note(self, index: int, note: dict[str, Any] | None) -> None:
        self.todos[index].set_note(note)

    @action
    def pin_note(self, index: int) -> None:
        note = self.todos[index].note
        if note is None:
            raise KeyError("no note")
        note.pinned = not note.pinned

    @action
    def apply_todo_snapshot(self, index: int, snap: dict[str, Any]) -> None:
        apply_snapshot(self.todos[index], snap)

    @action
    def set_owner(self, index: int, user_id: str | None) -> None:
        self.todos[index].owner = None if user_id is None else self.users[user_id]

    @action
    def select(self, todo_id: str | None) -> None:
        self.selected = None if todo_id is None else self.find_todo(todo_id)

    @action
    def select_index(self, index: int) -> None:
        self.selected = self.todos[index]

    # ----------------------------------------------------------------------------------------- users

    @action
    def _clear_owner(self, user_ids: list[str]) -> None:
        for todo in self.todos:
            if get_snapshot(todo)["owner"] in user_ids:
                todo.owner = None

    @action
    def add_user(self, snap: dict[str, Any]) -> None:
        self.users[snap["id"]] = snap

    @action
    def upsert_users(self, snaps: list[dict[str, Any]]) -> None:
        self.users.update({snap["id"]: snap for snap in snaps})

    @action
    def remove_user(self, user_id: str) -> None:
        self._clear_owner([user_id])
        del self.users[user_id]

    @action
    def pop_user(self, user_id: str) -> None:
        self._clear_owner([user_id])
        self.users.pop(user_id)

    @action
    def clear_users(self) -> None:
        self._clear_owner(list(self.users))
        self.users.clear()

    @action
    def rename_user(self, user_id: str, name: str) -> None:
        self.users[user_id].rename(name)

    @action
    def set_city(self, user_id: str, city: str) -> None:
        self.users[user_id].address.city = city

    @action
    def set_address(self, user_id: str, snap: dict[str, Any]) -> None:
        self.users[user_id].address = snap

    @action
    def add_email(self, user_id: str, email: str) -> None:
        self.users[user_id].emails.append(email)

    @action
    def apply_user_snapshot(self, user_id: str, snap: dict[str, Any]) -> None:
        apply_snapshot(self.users[user_id], snap)

    # ----------------------------------------------------------------------------------------- misc

    @action
    def set_status(self, status: str) -> None:
        self.status = status  # an invalid literal raises ValidationError

    @action
    def set_score(self, score: float | None) -> None:
        self.score = score

    @action
    def set_theme(self, theme: str) -> None:
        self.settings.theme = theme

    @action
    def set_page_size(self, page_size: Any) -> None:
        self.settings.page_size = page_size  # a wrong type raises ValidationError

    @action
    def set_ratio(self, ratio: float | None) -> None:
        self.settings.ratio = ratio

    @action
    def set_extra(self, extra: Any) -> None:
        self.settings.extra = extra

    @action
    def set_settings(self, snap: dict[str, Any]) -> None:
        self.settings = snap

    @action
    def apply_settings(self, snap: dict[str, Any]) -> None:
        apply_snapshot(self.settings, snap)

    @action
    def fail_after(self, index: int, title: str) -> None:
        """Changes several things, then fails: everything must roll back."""
        self.status = "busy"
        self.score = None if self.score is not None else 1.5
        if self.todos:
            self.todos[index % len(self.todos)].rename(title)
            self.todos.pop()
        self.settings.page_size += 1
        if not any(get_snapshot(todo)["owner"] for todo in self.todos):
            self.users.clear()
        raise Boom("fail_after")

    @action
    def try_nested(self, index: int, title: str) -> None:
        """A nested action that fails is rolled back even though its caller catches the error."""
        self.status = "done"
        with contextlib.suppress(Boom, IndexError):
            self.todos[index].fail_after_rename(title)
        self.settings.page_size = max(self.settings.page_size - 1, 0)


# --------------------------------------------------------------------------------------------------------
# Walking the tree (schema-specific, so the tests do not depend on `walk`'s exact node set)


def iter_nodes(store: Store) -> list[tuple[str, Any]]:
    """Every model, list and dict node of the tree with its expected JSON path."""
    out: list[tuple[str, Any]] = [("", store), ("/todos", store.todos)]
    for i, todo in enumerate(store.todos):
        p = f"/todos/{i}"
        out += [(p, todo), (p + "/tags", todo.tags)]
        if todo.note is not None:
            out.append((p + "/note", todo.note))
    out.append(("/users", store.users))
    for key, user in store.users.items():
        p = "/users/" + escape_json_path(key)
        out += [(p, user), (p + "/address", user.address), (p + "/emails", user.emails)]
    out.append(("/settings", store.settings))
    return out


# --------------------------------------------------------------------------------------------------------
# Strategies

TODO_IDS = ["t1", "t2", "t3", "t4", "t5", "t6", "t/7", "t~8", "~1t"]
USER_IDS = ["u1", "u2", "u3", "u/4", "u~5", "0"]
TAGS = ["a", "b", "c", "x/y", "~", "~1"]

small_text = st.one_of(st.sampled_from(["", "a", "b", "zz", "A/B", "~0"]), st.text(max_size=4))
small_int = st.integers(min_value=-3, max_value=50)
finite_float = st.floats(allow_nan=False, allow_infinity=False, width=64)
index = st.integers(min_value=-2, max_value=6)
tag = st.sampled_from(TAGS)
tags = st.lists(tag, max_size=4)

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-100, 100), finite_float, small_text)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(small_text, inner, max_size=3)),
    max_leaves=8,
)
frozen_value = st.one_of(st.none(), st.dictionaries(small_text, json_value, max_size=3))


def address_snapshots() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({"city": small_text, "zip": small_text})


def note_snapshots() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({"text": small_text, "pinned": st.booleans()})


def user_snapshot(user_id: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "id": st.just(user_id),
            "name": small_text,
            "age": small_int,
            "address": address_snapshots(),
            "emails": st.lists(small_text, max_size=2),
        }
    )


def todo_snapshot(todo_id: str, user_ids: list[str] | None = None) -> st.SearchStrategy[dict[str, Any]]:
    owners = st.sampled_from([None, *user_ids]) if user_ids else st.none()
    return st.fixed_dictionaries(
        {
            "id": st.just(todo_id),
            "title": small_text,
            "done": st.booleans(),
            "priority": small_int,
            "tags": tags,
            "note": st.one_of(st.none(), note_snapshots()),
            "owner": owners,
        }
    )


def settings_snapshots() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "theme": st.sampled_from(["light", "dark", "system"]),
            "page_size": small_int,
            "ratio": st.one_of(st.none(), finite_float, st.integers(-5, 5)),
            "extra": frozen_value,
        }
    )


@st.composite
def todo_lists(draw: st.DrawFn, user_ids: list[str] | None = None, max_size: int = 5) -> list[dict[str, Any]]:
    ids = draw(st.lists(st.sampled_from(TODO_IDS), unique=True, max_size=max_size))
    return [draw(todo_snapshot(i, user_ids)) for i in ids]


@st.composite
def store_snapshots(draw: st.DrawFn) -> dict[str, Any]:
    """A complete, valid Store snapshot (fields in declaration order)."""
    user_ids = draw(st.lists(st.sampled_from(USER_IDS), unique=True, max_size=3))
    users = {uid: draw(user_snapshot(uid)) for uid in user_ids}
    todos = draw(todo_lists(user_ids))
    selected = draw(st.sampled_from([None, *[td["id"] for td in todos]]))
    return {
        "todos": todos,
        "users": users,
        "selected": selected,
        "status": draw(st.sampled_from(["idle", "busy", "done"])),
        "settings": draw(settings_snapshots()),
        "score": draw(st.one_of(st.none(), finite_float)),
    }


class Op(NamedTuple):
    name: str
    args: tuple[Any, ...]

    def __repr__(self) -> str:
        return f"Op({self.name!r}, {self.args!r})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # hypothesis' pretty printer
        printer.text(repr(self))


def run_op(store: Store, op: Op) -> Any:
    return getattr(store, op.name)(*op.args)


# What the schema's actions raise on purpose (bad index/key, duplicate id, invalid value, Boom). Anything
# else escaping an action is a bug and fails the test.
EXPECTED_ERRORS = (IndexError, KeyError, ValueError, DuplicateId, Boom, ValidationError)


todo_id = st.sampled_from(TODO_IDS)
user_id = st.sampled_from(USER_IDS)
any_todo = todo_id.flatmap(todo_snapshot)
any_user = user_id.flatmap(user_snapshot)


def _op(name: str, *args: st.SearchStrategy[Any]) -> st.SearchStrategy[Op]:
    return st.tuples(*args).map(lambda a: Op(name, a))


def ops() -> st.SearchStrategy[Op]:
    """One action call on a Store. Some of them fail (bad index, duplicate id, invalid value, Boom)."""
    return st.one_of(
        _op("add_todo", any_todo),
        _op("insert_todo", index, any_todo),
        _op("extend_todos", todo_lists(max_size=2)),
        _op("remove_todo", index),
        _op("pop_todo", index),
        _op("remove_todo_by_id", todo_id),
        _op("move_todo", index, index),
        _op("splice_todos", index, index, todo_lists(max_size=2)),
        _op("replace_todo", index, any_todo),
        _op("set_todos", todo_lists()),
        _op("sort_todos", st.booleans()),
        _op("reverse_todos"),
        _op("clear_todos"),
        _op("rename_todo", index, small_text),
        _op("toggle_todo", index),
        _op("toggle_all"),
        _op("set_priority", index, small_int),
        _op("add_tag", index, tag),
        _op("remove_tag", index, tag),
        _op("splice_tags", index, index, index, tags),
        _op("sort_tags", index, st.booleans()),
        _op("clear_tags", index),
        _op("set_note", index, st.one_of(st.none(), note_snapshots())),
        _op("pin_note", index),
        _op("apply_todo_snapshot", index, any_todo),
        _op("set_owner", index, st.one_of(st.none(), user_id)),
        _op("select", st.one_of(st.none(), todo_id)),
        _op("select_index", index),
        _op("add_user", any_user),
        _op("upsert_users", st.lists(any_user, max_size=2)),
        _op("remove_user", user_id),
        _op("pop_user", user_id),
        _op("clear_users"),
        _op("rename_user", user_id, small_text),
        _op("set_city", user_id, small_text),
        _op("set_address", user_id, address_snapshots()),
        _op("add_email", user_id, small_text),
        _op("apply_user_snapshot", user_id, any_user),
        _op("set_status", st.sampled_from(["idle", "busy", "done", "bogus"])),
        _op("set_score", st.one_of(st.none(), finite_float)),
        _op("set_theme", st.sampled_from(["light", "dark", "system", "neon"])),
        _op("set_page_size", st.one_of(small_int, st.just("ten"), st.just(True), st.just(2.5))),
        _op("set_ratio", st.one_of(st.none(), finite_float, st.integers(-3, 3))),
        _op("set_extra", frozen_value),
        _op("set_settings", settings_snapshots()),
        _op("apply_settings", settings_snapshots()),
        _op("fail_after", st.integers(0, 5), small_text),
        _op("try_nested", index, small_text),
    )


def op_sequences(max_size: int = 12) -> st.SearchStrategy[list[Op]]:
    return st.lists(ops(), min_size=1, max_size=max_size)


class Captured(NamedTuple):
    snapshot: Any
    nodes: list[tuple[str, Any]]
    node_snapshots: list[Any]


def capture(store: Store) -> Captured:
    nodes = iter_nodes(store)
    return Captured(get_snapshot(store), nodes, [get_snapshot(node) for _, node in nodes])


def assert_unchanged(store: Store, before: Captured) -> None:
    """The tree is exactly as captured: equal snapshot, the same node objects at the same paths, alive."""
    from mst_llm import is_alive

    assert get_snapshot(store) == before.snapshot
    now = iter_nodes(store)
    assert [path for path, _ in now] == [path for path, _ in before.nodes]
    for (path, node), (_, old) in zip(now, before.nodes, strict=True):
        assert node is old, path
        assert is_alive(node), path
    for (path, node), snap in zip(before.nodes, before.node_snapshots, strict=True):
        assert get_snapshot(node) == snap, path
