"""The LLM layer: a model store and llama-cpp-python models hosted in the state tree (extra ``mst-llm[llm]``)."""

from mst_llm._extras import require_extra

require_extra(
    "llm", "mst_llm.llm", ("llama_cpp", "gguf", "httpx", "httpcore", "pyee", "jinja2", "platformdirs", "filelock")
)

# ruff: noqa: E402  (the extra is checked before anything imports its packages)

from mst_llm.errors import ChatTemplateError, GGUFValidationError, InferenceError, WorkerDiedError
from mst_llm.llm.backend import Backend, Chunk, Finished, GenerateRequest, LoadCancelled, LoadInfo, default_config
from mst_llm.llm.catalog import DEFAULT_CATALOG, CatalogEntry, load_catalog
from mst_llm.llm.chat import ChatFormat, Message
from mst_llm.llm.download import Downloader, DownloadResult
from mst_llm.llm.env import LLM_ENV_KEY, LLMEnv, default_models_dir, llm_env
from mst_llm.llm.events import Event
from mst_llm.llm.gguf_check import GGUFInfo, check_gguf
from mst_llm.llm.model import (
    TRANSITIONS,
    GenerationResult,
    LlamaModel,
    LoadProgressEvent,
    ModelStatus,
    ProgressEvent,
    StateChangeEvent,
    StreamChunk,
)
from mst_llm.llm.model_info import ModelInfo
from mst_llm.llm.store import LLMStore, create_llm_store

__all__ = [
    "DEFAULT_CATALOG",
    "LLM_ENV_KEY",
    "TRANSITIONS",
    "Backend",
    "CatalogEntry",
    "ChatFormat",
    "ChatTemplateError",
    "Chunk",
    "DownloadResult",
    "Downloader",
    "Event",
    "Finished",
    "GGUFInfo",
    "GGUFValidationError",
    "GenerateRequest",
    "GenerationResult",
    "InferenceError",
    "LLMEnv",
    "LLMStore",
    "LlamaModel",
    "LoadCancelled",
    "LoadInfo",
    "LoadProgressEvent",
    "Message",
    "ModelInfo",
    "ModelStatus",
    "ProgressEvent",
    "StateChangeEvent",
    "StreamChunk",
    "WorkerDiedError",
    "check_gguf",
    "create_llm_store",
    "default_config",
    "default_models_dir",
    "llm_env",
    "load_catalog",
]
