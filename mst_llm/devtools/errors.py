"""The devtools' error type."""

from __future__ import annotations

from mst_llm import MSTError


class DevtoolsError(MSTError):
    """A source the devtools cannot open, or a request they refuse (time travel on a read-only page)."""
