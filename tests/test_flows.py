"""Contract section 2: ``@flow`` async actions under asyncio and trio (via anyio)."""

from typing import Any, Literal

import anyio
import pytest

from mst_llm import (
    ProtectionError,
    ValidationError,
    action,
    add_middleware,
    apply_action,
    flow,
    get_parent,
    get_snapshot,
    model,
    on_action,
    on_patch,
    on_snapshot,
)
from mst_llm import types as t

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param


class Boom(Exception):
    pass


class Gate:
    """An awaitable step the test controls: the flow waits at ``fetch`` until ``release``."""

    def __init__(self, result: Any = None, error: BaseException | None = None) -> None:
        self.result = result
        self.error = error
        self.reached = anyio.Event()
        self.released = anyio.Event()
        self.calls = 0

    def release(self) -> None:
        self.released.set()

    async def fetch(self) -> Any:
        self.calls += 1
        self.reached.set()
        await self.released.wait()
        if self.error is not None:
            raise self.error
        return self.result


@model
class Item:
    id: t.Identifier
    value: int = 0

    @flow
    async def bump_later(self, gate: Gate) -> int:
        self.value += 1
        await gate.fetch()
        self.value += 10
        return self.value

    @flow
    async def poke_parent(self) -> None:
        self.value = 5
        await anyio.sleep(0)
        self.value = 6
        get_parent(self, 2).counter = 1


@model
class Store:
    status: Literal["idle", "busy", "done", "error"] = "idle"
    items: list[Item]
    log: list[str]
    counter: int = 0

    @action
    def note(self, text: str) -> None:
        self.log.append(text)

    @action
    def bump(self) -> None:
        self.counter += 1

    @flow
    async def load(self, gate: Gate) -> int:
        self.status = "busy"
        rows = await gate.fetch()
        self.items = rows
        self.status = "done"
        return len(rows)

    @flow
    async def load_safely(self, gate: Gate) -> str:
        self.status = "busy"
        try:
            await gate.fetch()
        except Boom as exc:
            self.status = "error"
            self.log.append(str(exc))
            return "failed"
        self.status = "done"
        return "ok"

    @flow
    async def fail_in_second_segment(self, gate: Gate) -> None:
        self.status = "busy"
        await gate.fetch()
        self.log.append("partial")
        self.counter = 99
        raise Boom("second segment")

    @flow
    async def fail_in_first_segment(self) -> None:
        self.counter = 5
        raise Boom("first segment")

    @flow
    async def invalid_in_second_segment(self, gate: Gate) -> None:
        self.counter = 1
        await gate.fetch()
        self.log.append("before invalid")
        self.status = "nonsense"

    @flow
    async def three_steps(self) -> str:
        self.log.append("one")
        await anyio.sleep(0)
        self.log.append("two")
        await anyio.sleep(0)
        self.log.append("three")
        return "finished"

    @flow
    async def no_awaits(self) -> int:
        self.counter += 1
        self.log.append("sync")
        return self.counter

    @flow
    async def uses_actions(self, gate: Gate) -> None:
        self.note("a")
        self.bump()
        await gate.fetch()
        self.note("b")
        self.bump()

    @flow
    async def idle_segment(self, gate: Gate) -> None:
        self.counter += 1
        await gate.fetch()
        # nothing changes in this segment
        await anyio.sleep(0)
        self.counter += 1

    @flow
    async def watch_cancel(self, gate: Gate, seen: list[Any]) -> None:
        self.status = "busy"
        try:
            await gate.fetch()
        except BaseException as exc:
            seen.append(exc)
            raise
        seen.append("after await")
        self.status = "done"

    @flow
    async def outer(self, gate: Gate) -> int:
        self.log.append("outer start")
        count = await self.load(gate)
        self.log.append(f"outer got {count}")
        return count * 10

    @flow
    async def outer_of_outer(self, gate: Gate) -> str:
        total = await self.outer(gate)
        self.log.append("top")
        return f"total={total}"

    @flow
    async def outer_catches_inner(self) -> str:
        self.log.append("before")
        try:
            await self.fail_in_first_segment()
        except Boom:
            self.log.append("caught")
        return "survived"

    @flow
    async def bump_child(self, gate: Gate) -> int:
        return await self.items[0].bump_later(gate)

    @flow
    async def tick(self, tag: str, gate: Gate) -> None:
        self.log.append(f"{tag}1")
        await gate.fetch()
        self.log.append(f"{tag}2")


ROWS = [{"id": "a", "value": 1}, {"id": "b", "value": 2}]


class Seen:
    def __init__(self, node: Any) -> None:
        self.snapshots: list[Any] = []
        self.patches: list[Any] = []
        on_snapshot(node, self.snapshots.append)
        on_patch(node, lambda p, _inv: self.patches.append(p))


async def start(tg: Any, awaitable_factory: Any, box: dict[str, Any]) -> None:
    async def runner() -> None:
        try:
            box["result"] = await awaitable_factory()
        except BaseException as exc:
            box["error"] = exc
            raise

    tg.start_soon(runner)


# --------------------------------------------------------------------------------------------------
# basics


async def test_flow_returns_value() -> None:
    store = Store.create()
    gate = Gate(ROWS)
    gate.release()
    assert await store.load(gate) == 2
    assert store.status == "done"
    assert [item.id for item in store.items] == ["a", "b"]


async def test_flow_without_awaits_is_one_transaction() -> None:
    store = Store.create()
    seen = Seen(store)
    assert await store.no_awaits() == 1
    assert len(seen.snapshots) == 1
    assert seen.snapshots[0] == get_snapshot(store)
    assert len(seen.patches) == 2


async def test_flow_with_checkpoints_commits_each_segment() -> None:
    store = Store.create()
    seen = Seen(store)
    assert await store.three_steps() == "finished"
    assert list(store.log) == ["one", "two", "three"]
    assert [list(s["log"]) for s in seen.snapshots] == [["one"], ["one", "two"], ["one", "two", "three"]]


async def test_each_segment_is_its_own_transaction() -> None:
    store = Store.create()
    seen = Seen(store)
    gate = Gate(ROWS)
    box: dict[str, Any] = {}
    async with anyio.create_task_group() as tg:
        await start(tg, lambda: store.load(gate), box)
        await gate.reached.wait()
        assert store.status == "busy"
        assert len(seen.snapshots) == 1
        assert seen.snapshots[0]["status"] == "busy"
        assert seen.patches == [{"op": "replace", "path": "/status", "value": "busy"}]
        gate.release()
    assert box["result"] == 2
    assert len(seen.snapshots) == 2
    assert seen.snapshots[1] == get_snapshot(store)
    second = seen.patches[1:]
    assert second[-1] == {"op": "replace", "path": "/status", "value": "done"}
    assert second[:-1]
    assert all(p["path"].startswith("/items") for p in second[:-1])


async def test_segment_patches_delivered_after_segment_ends() -> None:
    store = Store.create()
    statuses_at_delivery: list[str] = []
    on_patch(store, lambda p, _inv: statuses_at_delivery.append(store.status))
    gate = Gate(ROWS)
    gate.release()
    await store.load(gate)
    # the "/items" patches of the second segment are delivered after that segment set status "done"
    assert statuses_at_delivery[0] == "busy"
    assert len(statuses_at_delivery) >= 3
    assert set(statuses_at_delivery[1:]) == {"done"}


async def test_actions_called_inside_a_segment_join_its_transaction() -> None:
    store = Store.create()
    seen = Seen(store)
    gate = Gate()
    async with anyio.create_task_group() as tg:
        await start(tg, lambda: store.uses_actions(gate), {})
        await gate.reached.wait()
        assert len(seen.snapshots) == 1
        assert list(store.log) == ["a"]
        assert store.counter == 1
        gate.release()
    assert len(seen.snapshots) == 2
    assert list(store.log) == ["a", "b"]
    assert store.counter == 2


async def test_segment_without_changes_emits_no_snapshot() -> None:
    store = Store.create()
    seen = Seen(store)
    gate = Gate()
    gate.release()
    await store.idle_segment(gate)
    assert store.counter == 2
    assert [s["counter"] for s in seen.snapshots] == [1, 2]


async def test_flow_on_child_node() -> None:
    store = Store.create({"items": ROWS})
    seen = Seen(store)
    gate = Gate()
    box: dict[str, Any] = {}
    async with anyio.create_task_group() as tg:
        await start(tg, lambda: store.items[0].bump_later(gate), box)
        await gate.reached.wait()
        assert store.items[0].value == 2
        assert seen.patches == [{"op": "replace", "path": "/items/0/value", "value": 2}]
        gate.release()
    assert box["result"] == 12
    assert len(seen.snapshots) == 2


# --------------------------------------------------------------------------------------------------
# exceptions


async def test_exception_in_segment_rolls_back_only_that_segment() -> None:
    store = Store.create()
    seen = Seen(store)
    gate = Gate()
    gate.release()
    with pytest.raises(Boom, match="second segment"):
        await store.fail_in_second_segment(gate)
    assert store.status == "busy"
    assert list(store.log) == []
    assert store.counter == 0
    assert len(seen.snapshots) == 1
    assert seen.patches == [{"op": "replace", "path": "/status", "value": "busy"}]


async def test_exception_in_first_segment_rolls_back_and_propagates() -> None:
    store = Store.create()
    seen = Seen(store)
    with pytest.raises(Boom, match="first segment"):
        await store.fail_in_first_segment()
    assert store.counter == 0
    assert seen.snapshots == []
    assert seen.patches == []


async def test_validation_error_in_segment_rolls_back_that_segment() -> None:
    store = Store.create()
    gate = Gate()
    gate.release()
    with pytest.raises(ValidationError):
        await store.invalid_in_second_segment(gate)
    assert store.counter == 1
    assert list(store.log) == []
    assert store.status == "idle"


async def test_exception_from_awaited_call_can_be_caught_by_flow() -> None:
    store = Store.create()
    seen = Seen(store)
    gate = Gate(error=Boom("network down"))
    gate.release()
    assert await store.load_safely(gate) == "failed"
    assert store.status == "error"
    assert list(store.log) == ["network down"]
    assert len(seen.snapshots) == 2


async def test_uncaught_exception_from_await_keeps_earlier_segments() -> None:
    store = Store.create()
    gate = Gate(error=Boom("nope"))
    gate.release()
    with pytest.raises(Boom, match="nope"):
        await store.load(gate)
    assert store.status == "busy"
    assert list(store.items) == []


async def test_store_usable_after_failed_flow() -> None:
    store = Store.create()
    gate = Gate()
    gate.release()
    with pytest.raises(Boom):
        await store.fail_in_second_segment(gate)
    store.bump()
    assert store.counter == 1
    gate2 = Gate(ROWS)
    gate2.release()
    assert await store.load(gate2) == 2


# --------------------------------------------------------------------------------------------------
# cancellation


async def test_cancel_scope_cancel_stops_flow_at_current_await() -> None:
    store = Store.create()
    seen_exc: list[Any] = []
    gate = Gate(ROWS)
    async with anyio.create_task_group() as tg:
        await start(tg, lambda: store.watch_cancel(gate, seen_exc), {})
        await gate.reached.wait()
        tg.cancel_scope.cancel()
    assert len(seen_exc) == 1
    assert isinstance(seen_exc[0], anyio.get_cancelled_exc_class())
    assert store.status == "busy"


async def test_cancelled_flow_keeps_earlier_segments_and_skips_later_ones() -> None:
    store = Store.create()
    seen = Seen(store)
    gate = Gate(ROWS)
    async with anyio.create_task_group() as tg:
        await start(tg, lambda: store.load(gate), {})
        await gate.reached.wait()
        tg.cancel_scope.cancel()
    assert store.status == "busy"
    assert list(store.items) == []
    assert len(seen.snapshots) == 1
    assert seen.patches == [{"op": "replace", "path": "/status", "value": "busy"}]


async def test_move_on_after_cancels_flow() -> None:
    store = Store.create()
    gate = Gate(ROWS)  # never released
    with anyio.move_on_after(0.05) as scope:
        await store.load(gate)
    assert scope.cancelled_caught
    assert store.status == "busy"
    assert list(store.items) == []


async def test_cancel_own_scope_around_flow() -> None:
    store = Store.create()
    gate = Gate(ROWS)
    scope_box: dict[str, Any] = {}

    async def runner() -> None:
        with anyio.CancelScope() as scope:
            scope_box["scope"] = scope
            await store.load(gate)
        scope_box["done"] = True

    async with anyio.create_task_group() as tg:
        tg.start_soon(runner)
        await gate.reached.wait()
        scope_box["scope"].cancel()
    assert scope_box["done"] is True
    assert store.status == "busy"


async def test_tree_usable_and_protected_after_cancel() -> None:
    store = Store.create()
    gate = Gate(ROWS)
    with anyio.move_on_after(0.05):
        await store.load(gate)
    with pytest.raises(ProtectionError):
        store.status = "idle"
    store.note("after cancel")
    assert list(store.log) == ["after cancel"]
    gate2 = Gate(ROWS)
    gate2.release()
    assert await store.load(gate2) == 2
    assert store.status == "done"


# --------------------------------------------------------------------------------------------------
# flows awaiting flows


async def test_flow_awaits_another_flow_and_gets_its_result() -> None:
    store = Store.create()
    gate = Gate(ROWS)
    gate.release()
    assert await store.outer(gate) == 20
    assert list(store.log) == ["outer start", "outer got 2"]
    assert store.status == "done"


async def test_three_levels_of_flows() -> None:
    store = Store.create()
    gate = Gate(ROWS)
    gate.release()
    assert await store.outer_of_outer(gate) == "total=20"
    assert list(store.log) == ["outer start", "outer got 2", "top"]


async def test_outer_flow_can_catch_inner_flow_failure() -> None:
    store = Store.create()
    assert await store.outer_catches_inner() == "survived"
    assert store.counter == 0
    assert list(store.log) == ["before", "caught"]


async def test_flow_awaits_child_flow() -> None:
    store = Store.create({"items": ROWS})
    gate = Gate()
    gate.release()
    assert await store.bump_child(gate) == 12
    assert store.items[0].value == 12


async def test_nested_flow_intermediate_state_committed_while_waiting() -> None:
    store = Store.create()
    gate = Gate(ROWS)
    box: dict[str, Any] = {}
    async with anyio.create_task_group() as tg:
        await start(tg, lambda: store.outer(gate), box)
        await gate.reached.wait()
        snap = get_snapshot(store)
        assert snap["status"] == "busy"
        assert list(snap["log"]) == ["outer start"]
        gate.release()
    assert box["result"] == 20


async def test_concurrent_flows_interleave_segments() -> None:
    store = Store.create()
    seen = Seen(store)
    gate_a, gate_b = Gate(), Gate()
    async with anyio.create_task_group() as tg:
        await start(tg, lambda: store.tick("a", gate_a), {})
        await gate_a.reached.wait()
        await start(tg, lambda: store.tick("b", gate_b), {})
        await gate_b.reached.wait()
        gate_b.release()
        await anyio.sleep(0)
        await anyio.sleep(0)
        gate_a.release()
    assert sorted(store.log) == ["a1", "a2", "b1", "b2"]
    assert list(store.log)[:2] == ["a1", "b1"]
    assert len(seen.snapshots) == 4


# --------------------------------------------------------------------------------------------------
# protection between awaits


async def test_assignment_from_outside_while_flow_suspended_raises() -> None:
    store = Store.create()
    gate = Gate(ROWS)
    errors: list[Any] = []
    async with anyio.create_task_group() as tg:
        await start(tg, lambda: store.load(gate), {})
        await gate.reached.wait()
        for mutate in (
            lambda: setattr(store, "status", "idle"),
            lambda: store.log.append("sneaky"),
            lambda: setattr(store, "counter", 3),
        ):
            try:
                mutate()
            except ProtectionError as exc:
                errors.append(exc)
        gate.release()
    assert len(errors) == 3
    assert store.status == "done"
    assert list(store.log) == []
    assert store.counter == 0


async def test_child_assignment_while_flow_suspended_raises() -> None:
    store = Store.create({"items": ROWS})
    gate = Gate()
    async with anyio.create_task_group() as tg:
        await start(tg, lambda: store.items[0].bump_later(gate), {})
        await gate.reached.wait()
        with pytest.raises(ProtectionError):
            store.items[0].value = 100
        gate.release()
    assert store.items[0].value == 12


async def test_other_task_may_run_actions_while_flow_suspended() -> None:
    store = Store.create()
    seen = Seen(store)
    gate = Gate(ROWS)
    async with anyio.create_task_group() as tg:
        await start(tg, lambda: store.load(gate), {})
        await gate.reached.wait()
        store.note("meanwhile")
        assert len(seen.snapshots) == 2
        gate.release()
    assert list(store.log) == ["meanwhile"]
    assert store.status == "done"
    assert len(seen.snapshots) == 3


async def test_flow_does_not_unprotect_tree_after_finishing() -> None:
    store = Store.create()
    gate = Gate(ROWS)
    gate.release()
    await store.load(gate)
    with pytest.raises(ProtectionError):
        store.status = "idle"


async def test_flow_segment_may_not_change_parent() -> None:
    store = Store.create({"items": ROWS})
    with pytest.raises(ProtectionError):
        await store.items[0].poke_parent()
    assert store.items[0].value == 5
    assert store.counter == 0


@pytest.mark.anyio
async def test_cancellation_handled_in_the_flow_commits_its_cleanup(anyio_backend: str) -> None:
    @model
    class Job:
        status: str = "idle"

        @flow
        async def run(self) -> None:
            self.status = "running"
            try:
                await anyio.sleep(3600)
            except anyio.get_cancelled_exc_class():
                self.status = "cancelled"
                raise

    job = Job.create()
    patches: list[dict[str, Any]] = []
    on_patch(job, lambda patch, inverse: patches.append(patch))
    with anyio.move_on_after(0.01):
        await job.run()
    assert job.status == "cancelled"
    assert [patch["value"] for patch in patches] == ["running", "cancelled"]


@pytest.mark.anyio
async def test_middleware_sees_a_flow_call_with_its_arguments(anyio_backend: str) -> None:
    @model
    class Loader:
        value: int = 0

        @flow
        async def load(self, amount: int) -> int:
            await anyio.sleep(0)
            self.value = amount
            return amount

    loader = Loader.create()
    seen: list[tuple[str, tuple[Any, ...]]] = []

    def spy(call: Any, next_: Any) -> Any:
        seen.append((call.name, tuple(call.args)))
        return next_(call)

    add_middleware(loader, spy)
    assert await loader.load(7) == 7
    assert loader.value == 7
    assert seen == [("load", (7,))]


@model
class Greeter:
    greeting: str = ""

    @flow
    async def greet(self, name: str, *, punctuation: str = ".") -> None:
        await anyio.sleep(0)
        self.greeting = f"hello {name}{punctuation}"


async def test_a_flow_call_is_recorded_with_its_keyword_arguments_and_replays_with_them() -> None:
    greeter = Greeter.create()
    calls: list[dict[str, Any]] = []
    dispose = on_action(greeter, calls.append)
    await greeter.greet("ada", punctuation="!")
    dispose()
    assert calls == [{"name": "greet", "path": "", "args": ["ada"], "kwargs": {"punctuation": "!"}}]
    copy = Greeter.create()
    await apply_action(copy, calls[0])
    assert get_snapshot(copy) == get_snapshot(greeter) == {"greeting": "hello ada!"}
