"""When to try an HTTP request again: which statuses are transient, ``Retry-After``, and jittered backoff.

Hand-written on the standard library (a Retry-After header is seconds or an HTTP date, ``email.utils`` parses
the date): the download's retry loop resumes a file and counts failures its own way, so a retry library would
only supply these two formulas.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

_JITTER = random.Random()
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
"""HTTP statuses worth retrying: timeouts, rate limits (429) and server errors (503: overloaded)."""


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """How long a ``Retry-After`` header asks to wait (RFC 9110: delay seconds or an HTTP date), never negative;
    None when the header is absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP date is always GMT; parsedate leaves "-0000" naive
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def backoff_delay(failures: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """The wait before retry number ``failures`` (1, 2, ...): exponential, ``base * 2**(failures-1)`` capped at
    ``cap``, with "equal jitter": a uniformly random point in the upper half, so clients that failed together do not
    retry together, and none retries at once."""
    ceiling = min(cap, base * 2.0 ** min(failures - 1, 64))
    return ceiling / 2 + (rng or _JITTER).uniform(0, ceiling / 2)


__all__ = ["RETRYABLE_STATUS", "backoff_delay", "retry_after_seconds"]
