"""The ``mst-llm`` command line: one click group, one module per family of commands.

Errors are reported as one line on stderr with a non-zero exit status; ``--debug`` (before or after the command
name) shows the traceback instead.
"""

from __future__ import annotations

from mst_llm._extras import require_extra

require_extra("cli", "the mst-llm command", ("click", "rich", "starlette", "hypercorn"))

# ruff: noqa: E402  (the extra is checked before anything imports its packages)
from mst_llm.cli.common import main
from mst_llm.cli.demo import demo
from mst_llm.cli.devtools import devtools
from mst_llm.cli.generate import chat, run
from mst_llm.cli.replay import replay
from mst_llm.cli.store import inspect_file, ls, models, pull, rm, select, status

main.add_command(demo)
main.add_command(replay)
main.add_command(devtools)
main.add_command(models)
main.add_command(ls)
main.add_command(pull)
main.add_command(rm)
main.add_command(select)
main.add_command(status)
main.add_command(inspect_file)
main.add_command(run)
main.add_command(chat)

__all__ = ["main"]
