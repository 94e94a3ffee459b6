"""Replicated trees over Redis Streams (``pip install mst-llm[redis]``; Redis 6.2 or newer).

``async with replicate(tree, "redis://127.0.0.1:6379/0", "app") as replica:`` keeps ``tree`` equal to every
other replica of the stream ``app``; see docs/replication.md.
"""

from mst_llm._extras import require_extra

require_extra("redis", "mst_llm.sync", ("redis",))

# ruff: noqa: E402  (the extra is checked before anything imports its packages)

from mst_llm.sync.log import StreamLog, open_stream_log
from mst_llm.sync.replica import Conflict, Replica, ReplicaStatus, replicate
from mst_llm.sync.stream import BadEntryError, ConflictError, SyncError, redact

__all__ = [
    "BadEntryError",
    "Conflict",
    "ConflictError",
    "Replica",
    "ReplicaStatus",
    "StreamLog",
    "SyncError",
    "open_stream_log",
    "redact",
    "replicate",
]
