"""How a replicated tree lies in Redis: the keys, entries as read, the scripts, and URLs without credentials.

A stream ``S`` holds one entry per committed transaction, id ``<seq>-0``, fields ``e`` (the session-log entry,
JSON) and ``o`` (the origin tag ``<replica>/<n>``, so a replica recognises its own entries after a lost reply).
Next to it: ``S:header`` (the session-log header, with the snapshot at seq 0) and ``S:checkpoint`` (a hash:
``seq`` and ``data``, a session-log checkpoint line). Keys share the stream's name, so a hash tag in it
(``{app}``) keeps them in one slot of a Redis Cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

import orjson

from mst_llm import MSTError

SCHEMES = ("redis", "rediss")


class SyncError(MSTError):
    """Replication failed: the broker is unreachable or refused us, or the stream does not fit the tree."""


class ConflictError(SyncError):
    """A pending local transaction lost a race and could not be re-run on the winners' state."""


class BadEntryError(SyncError):
    """A stream entry is not a session-log entry, or its patches do not apply; it was skipped."""


def redact(url: str) -> str:
    """``url`` with any user name and password replaced by ``***``: the only form of a URL we print."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port is not None else "")
    return SplitResult(parts.scheme, netloc, parts.path, parts.query, parts.fragment).geturl()


def password(url: str) -> str | None:
    """The password in ``url`` as the broker receives it (percent-decoded, as redis-py decodes it): what
    :func:`scrub` hides."""
    secret = urlsplit(url).password
    return None if secret is None else unquote(secret)


def scrub(message: object, secret: str | None) -> str:
    """``str(message)`` (an error from the broker or its client) with ``secret`` (from :func:`password`) replaced
    by ``***``."""
    text = str(message)
    return text.replace(secret, "***") if secret else text


def split_stream_url(url: str) -> tuple[str, str]:
    """``redis://host:port/db#stream`` -> (the broker URL, the stream name)."""
    broker, sep, fragment = url.partition("#")
    if urlsplit(broker).scheme not in SCHEMES:
        raise SyncError(f"not a redis:// or rediss:// URL: {redact(broker)}")
    if not sep or not fragment:
        raise SyncError(f"the URL names no stream: add #STREAM to {redact(broker)}")
    return broker, unquote(fragment)


@dataclass(frozen=True, slots=True)
class Keys:
    stream: str

    @property
    def header(self) -> str:
        return f"{self.stream}:header"

    @property
    def checkpoint(self) -> str:
        return f"{self.stream}:checkpoint"


def entry_seq(entry_id: bytes | str) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.partition("-")[0])


@dataclass(frozen=True, slots=True)
class Entry:
    """One stream entry as read: its seq, origin tag and raw session-log entry (JSON, parsed by ``parse`` only
    when it is applied: a replica's own entries come back to it and are not parsed)."""

    seq: int
    origin: str
    raw: bytes | None


def decode(entry_id: bytes | str, fields: dict[Any, Any]) -> Entry:
    """Split one stream entry into its seq, origin tag and raw body."""
    raw_origin = fields.get(b"o", b"")
    origin = raw_origin.decode(errors="replace") if isinstance(raw_origin, bytes) else str(raw_origin)
    raw = fields.get(b"e")
    return Entry(entry_seq(entry_id), origin, raw if isinstance(raw, bytes) else None)


def parse(entry: Entry) -> dict[str, Any] | str:
    """The session-log entry of ``entry``, or why it is garbage (a string)."""
    if entry.raw is None:
        return "it has no field 'e'"
    try:
        body = orjson.loads(entry.raw)
    except orjson.JSONDecodeError:
        return "it is not JSON in field 'e'"
    if not isinstance(body, dict) or not isinstance(body.get("patches"), list):
        return "it is not a session-log entry (no list of patches)"
    if body.get("seq") != entry.seq:
        return f"it is numbered {body.get('seq')!r}, not {entry.seq}"
    return body


# Append a batch on top of seq ARGV[1]: the first XADD with an explicit id is refused by Redis itself when the
# stream's top is not below it (someone else took that seq), and then nothing is appended; once it succeeds the
# others follow it in the same script, so a batch lands whole or not at all. ARGV: base, then (entry, origin)s.
APPEND = """
local base = tonumber(ARGV[1])
local n = (#ARGV - 1) / 2
for i = 1, n do
  local ok = redis.pcall('XADD', KEYS[1], (base + i) .. '-0', 'e', ARGV[2 * i], 'o', ARGV[2 * i + 1])
  if type(ok) == 'table' and ok.err then
    if i == 1 then return 0 end
    return redis.error_reply(ok.err)
  end
end
return n
"""

# The first replica on an empty stream writes the header and the checkpoint at seq 0, once.
INIT = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  redis.call('HSET', KEYS[2], 'seq', '0', 'data', ARGV[2])
  return 1
end
return 0
"""

# A newer checkpoint replaces the stored one; then the entries older than ARGV[3] (a stream id) are trimmed.
CHECKPOINT = """
local stored = redis.call('HGET', KEYS[1], 'seq')
if stored and tonumber(stored) >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'seq', ARGV[1], 'data', ARGV[2])
if ARGV[3] ~= '' then redis.call('XTRIM', KEYS[2], 'MINID', ARGV[3]) end
return 1
"""
