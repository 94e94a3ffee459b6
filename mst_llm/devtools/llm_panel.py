"""The LLM panel: LlamaModel and LLMStore nodes found in a recorded state by their snapshot's fields (a log
keeps no types), and each model's tokens/s over the session."""

from __future__ import annotations

from functools import cache
from typing import Any

from mst_llm import SessionLog, escape_json_path, get_snapshot
from mst_llm.devtools.pointer import resolve
from mst_llm.llm import LlamaModel, LLMStore

MAX_POINTS = 300  # points per tokens/s chart (evenly thinned beyond that)


@cache
def _fields() -> tuple[frozenset[str], frozenset[str]]:
    """The snapshot keys of a LlamaModel and of an LLMStore, read from empty instances."""
    return (
        frozenset(get_snapshot(LlamaModel.create({"path": ""}))),
        frozenset(get_snapshot(LLMStore.create({"models": []}))),
    )


def find_llm_nodes(state: Any, path: str = "") -> tuple[list[str], list[str]]:
    """JSON pointers of the LlamaModel and LLMStore snapshots in ``state``."""
    models: list[str] = []
    stores: list[str] = []
    llama_fields, store_fields = _fields()
    if isinstance(state, dict):
        if state.keys() == llama_fields:
            models.append(path)
        elif state.keys() == store_fields:
            stores.append(path)
        children: Any = state.items()
    elif isinstance(state, list):
        children = enumerate(state)
    else:
        return models, stores
    for key, child in children:
        more_models, more_stores = find_llm_nodes(child, f"{path}/{escape_json_path(str(key))}")
        models += more_models
        stores += more_stores
    return models, stores


def tokens_per_second(log: SessionLog, model_path: str) -> list[dict[str, float]]:
    """``{seq, ts, value}`` each time a generation updated ``model_path``'s tokens_per_second."""
    target = f"{model_path}/tokens_per_second"
    points = [
        {"seq": entry.seq, "ts": entry.ts, "value": patch["value"]}
        for entry in log.changes_to(target)
        for patch in entry.patches
        if patch["path"] == target and "value" in patch
    ]
    step = max(1, -(-len(points) // MAX_POINTS))
    return points[::step]


def llm_panel(log: SessionLog, state: Any) -> dict[str, Any]:
    """The panel's data at ``state``; empty lists when the tree holds no LLM nodes."""
    model_paths, store_paths = find_llm_nodes(state)
    models = []
    for path in model_paths:
        node = resolve(state, path)
        fields = ("path", "state", "error", "load_progress", "tokens_generated", "tokens_per_second", "generations")
        models.append({"at": path, **{key: node[key] for key in fields}, "series": tokens_per_second(log, path)})
    stores = []
    for path in store_paths:
        node = resolve(state, path)
        rows = [
            {key: info.get(key) for key in ("key", "display_name", "status", "progress", "size", "error")}
            for info in node["models"]
        ]
        stores.append({"at": path, "selected": node["selected_model_key"], "models": rows})
    return {"models": models, "stores": stores}
