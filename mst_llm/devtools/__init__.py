"""Devtools: the state tree, its timeline, any past state and diffs, in a browser page.

``serve(tree_or_source)`` serves a live tree, a ``SessionLog`` or a session-log path; ``mst-llm devtools``
does the same from the command line.
"""

from mst_llm._extras import require_extra

require_extra("devtools", "mst_llm.devtools", ("starlette", "hypercorn"))

# ruff: noqa: E402  (the extra is checked before anything imports its packages)
from mst_llm.devtools.errors import DevtoolsError
from mst_llm.devtools.server import DevtoolsServer, serve

__all__ = ["DevtoolsError", "DevtoolsServer", "serve"]
