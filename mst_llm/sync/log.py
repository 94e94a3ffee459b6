"""``SessionLog.open("redis://host:port/db#stream")``: a replicated stream read like a session-log file.

The core finds this reader through the ``mst_llm.log_sources`` entry points (it imports no redis). The stream's
header and entries are copied into a private temporary file that the returned ``SessionLog`` reads and that
goes away with it.
"""

from __future__ import annotations

import os
import tempfile
import weakref

from redis import Redis
from redis import exceptions as redis_errors

from mst_llm import SessionLog, SessionLogError
from mst_llm.sync.stream import Keys, decode, redact, split_stream_url

READ_BATCH = 5000
HINT = " (the replicas keep a checkpoint instead; replicate with retain=None to keep every entry)"


def open_stream_log(url: str) -> SessionLog:
    """Read the whole stream named by ``url`` (``redis[s]://[user:password@]host:port/db#stream``)."""
    broker, stream = split_stream_url(url)
    secret = Redis.from_url(broker).connection_pool.connection_kwargs.get("password")
    keys = Keys(stream)
    fd, path = tempfile.mkstemp(prefix="mst_llm-stream-", suffix=".jsonl")
    try:
        with Redis.from_url(broker) as client, os.fdopen(fd, "wb") as file:
            header = client.get(keys.header)
            if header is None:
                raise SessionLogError(f"{redact(broker)}: there is no replicated stream {stream!r} (no header)")
            file.write(header + b"\n")
            seq = 0
            while True:
                rows = client.xrange(stream, f"{seq + 1}-0", "+", count=READ_BATCH)
                for entry_id, fields in rows:
                    entry = decode(entry_id, fields)
                    if entry.seq != seq + 1:
                        trimmed = f"entries {seq + 1}..{entry.seq - 1} were trimmed"
                        raise SessionLogError(f"{redact(broker)}#{stream}: {trimmed}{HINT}")
                    file.write(fields[b"e"].rstrip(b"\n") + b"\n")
                    seq = entry.seq
                if len(rows) < READ_BATCH:
                    break
            if seq < int(client.hget(keys.checkpoint, "seq") or 0):
                raise SessionLogError(f"{redact(broker)}#{stream}: entries up to {seq + 1} were trimmed{HINT}")
    except redis_errors.RedisError as error:
        os.unlink(path)
        text = str(error).replace(secret, "***") if secret else str(error)
        raise SessionLogError(f"cannot read {redact(broker)}#{stream}: {type(error).__name__}: {text}") from None
    except BaseException:
        os.unlink(path)
        raise
    log = SessionLog(path)
    weakref.finalize(log, os.unlink, path)
    return log
