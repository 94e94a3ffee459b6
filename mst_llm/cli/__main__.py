"""``python -m mst_llm.cli``: the ``mst-llm`` command without its console script."""

from mst_llm.cli import main

main(prog_name="mst-llm")
