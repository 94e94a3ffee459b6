"""Tiny GGUF llama models for tests, written with the `gguf` package, and a corpus of malformed ones.

`write_tiny_llama(path)` writes a 2-layer llama with random weights and an SPM vocabulary (the 256 byte tokens
plus a few word pieces): about 0.2 MB, loads in milliseconds and generates (random) text. Its keyword arguments
produce the semantic defects; `write_malformed(directory, kind)` produces every kind in `MALFORMED_KINDS`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from collections.abc import Iterable
from pathlib import Path

import gguf
import numpy as np

N_EMBD = 32
N_HEAD = 4
N_FF = 64
N_LAYER = 2
N_CTX = 256
HEADER_SIZE = 24  # magic, version, tensor count, kv count
WORDS = ["the", "a", "model", "state", "tree", "token", "hello", "world", "is", "and", "of", "to"]


def spm_vocab(*, byte_tokens: bool = True, duplicate: bool = False) -> tuple[list[str], list[int]]:
    """Token strings and types: <unk>, <s>, </s>, the byte tokens, then word pieces."""
    tokens = ["<unk>", "<s>", "</s>"]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    if byte_tokens:
        tokens += [f"<0x{byte:02X}>" for byte in range(256)]
        types += [gguf.TokenType.BYTE] * 256
    pieces = ["\u2581", *"abcdefghijklmnopqrstuvwxyz.,!?", *(f"\u2581{word}" for word in WORDS)]
    if duplicate:
        pieces.append("\u2581the")
    tokens += pieces
    types += [gguf.TokenType.NORMAL] * len(pieces)
    return tokens, [int(kind) for kind in types]


def write_tiny_llama(
    path: str | os.PathLike[str],
    *,
    seed: int = 0,
    byte_tokens: bool = True,
    duplicate_token: bool = False,
    skip_keys: Iterable[str] = (),
    embd_rows: int | None = None,
    chat_template: str | None = None,
    block_count: int = N_LAYER,
    fill: float | None = None,
) -> Path:
    """Write a tiny llama GGUF model; the keyword arguments introduce the defects llama.cpp chokes on (or, for
    ``chat_template``, the ``tokenizer.chat_template`` an instruction-tuned model carries). ``block_count`` is the
    declared layer count; the tensors always hold ``N_LAYER`` layers. ``fill`` makes every weight that value (NaN
    or inf: a well-formed file that only llama.cpp's ``check_tensors`` validation refuses)."""
    path = Path(path)
    skip = set(skip_keys)
    rng = np.random.default_rng(seed)
    tokens, types = spm_vocab(byte_tokens=byte_tokens, duplicate=duplicate_token)
    n_vocab = len(tokens)
    writer = gguf.GGUFWriter(str(path), arch="llama")
    if "general.architecture" in skip:
        writer.kv_data[0].pop("general.architecture")
    keys = {
        "general.name": lambda: writer.add_name("tiny-llama"),
        "llama.context_length": lambda: writer.add_context_length(N_CTX),
        "llama.embedding_length": lambda: writer.add_embedding_length(N_EMBD),
        "llama.block_count": lambda: writer.add_block_count(block_count),
        "llama.feed_forward_length": lambda: writer.add_feed_forward_length(N_FF),
        "llama.rope.dimension_count": lambda: writer.add_rope_dimension_count(N_EMBD // N_HEAD),
        "llama.attention.head_count": lambda: writer.add_head_count(N_HEAD),
        "llama.attention.head_count_kv": lambda: writer.add_head_count_kv(N_HEAD),
        "llama.attention.layer_norm_rms_epsilon": lambda: writer.add_layer_norm_rms_eps(1e-5),
        "general.file_type": lambda: writer.add_file_type(0),
        "tokenizer.ggml.model": lambda: writer.add_tokenizer_model("llama"),
        "tokenizer.ggml.tokens": lambda: writer.add_token_list(tokens),
        "tokenizer.ggml.scores": lambda: writer.add_token_scores([0.0] * 3 + [-float(i) for i in range(n_vocab - 3)]),
        "tokenizer.ggml.token_type": lambda: writer.add_token_types(types),
        "tokenizer.ggml.unknown_token_id": lambda: writer.add_unk_token_id(0),
        "tokenizer.ggml.bos_token_id": lambda: writer.add_bos_token_id(1),
        "tokenizer.ggml.eos_token_id": lambda: writer.add_eos_token_id(2),
    }
    for key, add in keys.items():
        if key not in skip:
            add()
    if chat_template is not None:
        writer.add_chat_template(chat_template)

    def weight(*shape: int) -> np.ndarray:
        if fill is not None:
            return np.full(shape, fill, dtype=np.float32)
        return (rng.standard_normal(shape) * 0.2).astype(np.float32)

    def norm() -> np.ndarray:
        return np.full(N_EMBD, 1.0 if fill is None else fill, dtype=np.float32)

    writer.add_tensor("token_embd.weight", weight(embd_rows or n_vocab, N_EMBD))
    writer.add_tensor("output_norm.weight", norm())
    writer.add_tensor("output.weight", weight(n_vocab, N_EMBD))
    for layer in range(N_LAYER):
        prefix = f"blk.{layer}"
        writer.add_tensor(f"{prefix}.attn_norm.weight", norm())
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"{prefix}.{name}.weight", weight(N_EMBD, N_EMBD))
        writer.add_tensor(f"{prefix}.ffn_norm.weight", norm())
        writer.add_tensor(f"{prefix}.ffn_gate.weight", weight(N_FF, N_EMBD))
        writer.add_tensor(f"{prefix}.ffn_up.weight", weight(N_FF, N_EMBD))
        writer.add_tensor(f"{prefix}.ffn_down.weight", weight(N_EMBD, N_FF))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


# --- the malformed corpus ------------------------------------------------------------------------------------


def _layout(path: Path) -> dict[str, int]:
    """Offsets in a good file: end of the KV section, end of the tensor infos, the first tensor's offset field."""
    reader = gguf.GGUFReader(str(path))
    first = reader.tensors[0].field
    name_len = int(first.parts[0][0])
    n_dims = int(first.parts[2][0])
    return {
        "kv_end": first.offset,
        "infos_end": reader.tensors[-1].field.offset + sum(int(part.nbytes) for part in reader.tensors[-1].field.parts),
        "first_tensor_offset_field": first.offset + 8 + name_len + 4 + 8 * n_dims + 4,
    }


def _patch(path: Path, offset: int, fmt: str, value: int) -> None:
    data = bytearray(path.read_bytes())
    struct.pack_into(fmt, data, offset, value)
    path.write_bytes(bytes(data))


def _truncate(path: Path, size: int) -> None:
    path.write_bytes(path.read_bytes()[:size])


MALFORMED_KINDS = [
    "missing",
    "directory",
    "fifo",
    "unreadable",
    "empty",
    "random_bytes",
    "bad_magic",
    "bad_version",
    "truncated_header",
    "truncated_kv",
    "truncated_tensor_info",
    "truncated_data",
    "absurd_kv_count",
    "absurd_tensor_count",
    "string_length_past_end",
    "bad_value_type",
    "tensor_data_past_end",
    "duplicate_tokens",
    "missing_byte_tokens",
    "missing_architecture",
    "missing_block_count",
    "zero_block_count",  # llama.cpp aborts the process (SIGABRT) on these two
    "block_count_past_limit",
    "wrong_embedding_shape",
]


def _bind_unix_socket(path: Path) -> None:
    """Leave a UNIX domain socket file at `path` (bound from its directory: socket paths are limited to ~107 bytes)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server, contextlib.chdir(path.parent):
        server.bind(path.name)


def write_malformed(directory: str | os.PathLike[str], kind: str) -> Path:
    """Write one malformed model of `kind` (see MALFORMED_KINDS) into `directory` and return its path."""
    directory = Path(directory)
    path = directory / f"{kind}.gguf"
    semantic = {
        "duplicate_tokens": {"duplicate_token": True},
        "missing_byte_tokens": {"byte_tokens": False},
        "missing_architecture": {"skip_keys": ["general.architecture"]},
        "missing_block_count": {"skip_keys": ["llama.block_count"]},
        "zero_block_count": {"block_count": 0},
        "block_count_past_limit": {"block_count": 10_000},
        "wrong_embedding_shape": {"embd_rows": 100},
    }
    if kind == "missing":
        return path
    if kind == "directory":
        path.mkdir()
        return path
    if kind == "fifo":
        os.mkfifo(path)
        return path
    if kind == "unreadable":  # a UNIX domain socket: open() refuses it (ENXIO) for every user, root included
        _bind_unix_socket(path)
        return path
    if kind == "empty":
        path.write_bytes(b"")
        return path
    if kind == "random_bytes":
        path.write_bytes(np.random.default_rng(1).bytes(4096))
        return path
    if kind in semantic:
        return write_tiny_llama(path, **semantic[kind])  # type: ignore[arg-type]
    write_tiny_llama(path)
    layout = _layout(path)
    size = path.stat().st_size
    if kind == "bad_magic":
        path.write_bytes(b"GGUX" + path.read_bytes()[4:])
    elif kind == "bad_version":
        _patch(path, 4, "<I", 99)
    elif kind == "truncated_header":
        _truncate(path, 10)
    elif kind == "truncated_kv":
        _truncate(path, layout["kv_end"] // 2)
    elif kind == "truncated_tensor_info":
        _truncate(path, (layout["kv_end"] + layout["infos_end"]) // 2)
    elif kind == "truncated_data":
        _truncate(path, size - 1000)
    elif kind == "absurd_kv_count":
        _patch(path, 16, "<Q", 2**62)
    elif kind == "absurd_tensor_count":
        _patch(path, 8, "<Q", 2**40)
    elif kind == "string_length_past_end":
        _patch(path, HEADER_SIZE, "<Q", 2**50)  # the first key's length
    elif kind == "bad_value_type":
        key_length = struct.unpack_from("<Q", path.read_bytes(), HEADER_SIZE)[0]
        _patch(path, HEADER_SIZE + 8 + key_length, "<I", 99)
    elif kind == "tensor_data_past_end":
        _patch(path, layout["first_tensor_offset_field"], "<Q", size * 4)
    else:
        raise ValueError(f"unknown malformed kind {kind!r}")
    return path
