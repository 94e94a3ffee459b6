"""What the replica tests in one process share: settling replicas, the stream's state, entries of others."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mst_llm import SessionLog
from mst_llm.sync import Replica

from .broker import Broker


async def settle(*replicas: Replica) -> None:
    for _ in range(2):  # a second round: what one replica's sync published, the others apply
        for replica in replicas:
            await replica.sync(timeout=20)


def replay(broker: Broker, stream: str) -> Any:
    log = SessionLog.open(f"{broker.url}#{stream}")
    return log.snapshot_at(len(log))


def append_foreign(broker: Broker, stream: str, patches: Iterable[dict[str, Any]], lose: Iterable[int] = ()) -> None:
    """Append entries 1, 2, ... as another replica would (one patch each, no action) in one transaction, so that
    one XREAD reads them all; then delete the entries ``lose`` names, as a broker without AOF loses them."""
    with broker.client() as client, client.pipeline(transaction=True) as together:
        for seq, patch in enumerate(patches, start=1):
            line = SessionLog.entry_line(seq, 0, None, [patch], [])
            together.xadd(stream, {"e": line, "o": b"elsewhere/1"}, id=f"{seq}-0")
        lost = [f"{seq}-0" for seq in lose]
        if lost:
            together.xdel(stream, *lost)
        together.execute()
