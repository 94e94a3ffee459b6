"""GGUF validation before llama.cpp sees a file.

llama.cpp trusts its input: some damaged files make it abort the whole process (duplicate token strings hit a
GGML_ASSERT, an SPM vocabulary without byte tokens terminates on non-ASCII input) and absurd counts make it
allocate wildly. `check_gguf` parses the file with the `gguf` package's reader, with every read bounded by the
file size, checks what llama.cpp relies on, and returns the metadata; any defect raises `GGUFValidationError`
with a message that names the problem and where it is.
"""

from __future__ import annotations

import os
import re
import stat
import struct
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Literal

import gguf
import numpy as np
import numpy.typing as npt

from mst_llm.errors import GGUFValidationError

SUPPORTED_VERSIONS = (2, 3)
HEADER_SIZE = 24  # magic, version, tensor count, kv count
MIN_KV_SIZE = 8 + 4 + 1  # key length, value type, smallest value
MIN_TENSOR_INFO_SIZE = 8 + 4 + 4 + 8  # name length, dimension count, type, offset
BYTE_TOKENS = frozenset(f"<0x{byte:02X}>".encode() for byte in range(256))
_CACHE_SIZE = 32
_cache: OrderedDict[tuple[str, int, int, int, int], GGUFInfo] = OrderedDict()


@dataclass(frozen=True)
class GGUFInfo:
    """What the GGUF header says about a model (only what a UI or a store needs; all JSON values)."""

    path: str
    size: int
    version: int
    tensor_count: int
    architecture: str
    name: str | None
    context_length: int | None
    embedding_length: int | None
    block_count: int | None
    vocab_size: int
    tokenizer: str | None
    file_type: int | None
    quantization: str | None
    parameter_count: int | None = None
    bos_token: str | None = None  # the texts of the special tokens chat templates write
    eos_token: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A plain JSON dict (for snapshots and `t.Frozen` fields)."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


class _PastEnd(Exception):
    def __init__(self, section: str, offset: int, need: int, size: int) -> None:
        super().__init__(f"{section}: {need} bytes needed at offset {offset}, but the file ends at {size}")


class _BoundedReader(gguf.GGUFReader):
    """The gguf reader with every read checked against the file size, and arrays read in one piece.

    The stock reader loops in Python over every array element (10 s for a 262k-token vocabulary) and, past the
    end of the file, reads empty arrays instead of failing (an absurd array length then loops for ever)."""

    def __init__(self, path: str, size: int) -> None:
        self.size = size
        self.section = "header"
        self.string_arrays: dict[int, list[bytes]] = {}
        super().__init__(path, "r")

    def _get(
        self,
        offset: int,
        dtype: npt.DTypeLike,
        count: int = 1,
        override_order: Literal["I", "S", "<"] | None = None,
    ) -> npt.NDArray[Any]:
        need = int(count) * np.dtype(dtype).itemsize
        if offset < 0 or need < 0 or offset + need > self.size:
            raise _PastEnd(self.section, offset, need, self.size)
        return super()._get(offset, dtype, count, override_order)

    def _get_field_parts(
        self, orig_offs: int, raw_type: int
    ) -> tuple[int, list[npt.NDArray[Any]], list[int], list[gguf.GGUFValueType]]:
        if raw_type != gguf.GGUFValueType.ARRAY:
            return super()._get_field_parts(orig_offs, raw_type)
        raw_itype = self._get(orig_offs, np.uint32)
        length = self._get(orig_offs + 4, np.uint64)
        item_type = gguf.GGUFValueType(int(raw_itype[0]))
        start, count = orig_offs + 12, int(length[0])
        if item_type == gguf.GGUFValueType.STRING:
            items, end = self._scan_strings(start, count)
            self.string_arrays[orig_offs] = items
            return end - orig_offs, [raw_itype, length], [], [gguf.GGUFValueType.ARRAY, item_type]
        scalar = self.gguf_scalar_to_np.get(item_type)
        if scalar is None:  # arrays of arrays: rare, small, leave them to the stock reader
            return super()._get_field_parts(orig_offs, raw_type)
        values = self._get(start, scalar, count)
        return 12 + int(values.nbytes), [raw_itype, length, values], [2], [gguf.GGUFValueType.ARRAY, item_type]

    def _scan_strings(self, offset: int, count: int) -> tuple[list[bytes], int]:
        buffer = self.data.data  # the memmap's buffer: slicing it copies only the slice
        items: list[bytes] = []
        unpack = struct.Struct("<Q").unpack_from
        for _ in range(count):
            if offset + 8 > self.size:
                raise _PastEnd(self.section, offset, 8, self.size)
            (length,) = unpack(buffer, offset)
            offset += 8
            if offset + length > self.size:
                raise _PastEnd(f"{self.section} (a string of {length} bytes)", offset, length, self.size)
            items.append(bytes(buffer[offset : offset + length]))
            offset += length
        return items, offset

    def _build_fields(self, offs: int, count: int) -> int:
        self.section = "metadata (key/value section)"
        return super()._build_fields(offs, count)

    def _build_tensor_info(self, offs: int, count: int) -> tuple[int, list[gguf.ReaderField]]:
        self.section = "tensor infos"
        return super()._build_tensor_info(offs, count)

    def _build_tensors(self, start_offs: int, fields: list[gguf.ReaderField]) -> None:
        self.section = "tensor data"
        super()._build_tensors(start_offs, fields)

    def strings(self, key: str) -> list[bytes] | None:
        """The items of a string-array field, or None when the key is absent or not a string array."""
        reader_field = self.fields.get(key)
        if reader_field is None:
            return None
        value_offset = reader_field.offset + 8 + len(key.encode()) + 4
        return self.string_arrays.get(value_offset)

    def scalar(self, key: str) -> Any:
        """A scalar or string field as a Python value, or None when absent or an array."""
        reader_field = self.fields.get(key)
        if reader_field is None or reader_field.types[0] == gguf.GGUFValueType.ARRAY:
            return None
        value = reader_field.parts[reader_field.data[0]]
        if reader_field.types[0] == gguf.GGUFValueType.STRING:
            return bytes(value).decode("utf-8", errors="replace")
        return value[0].item()


def check_gguf(path: str | os.PathLike[str], *, use_cache: bool = True) -> GGUFInfo:
    """Validate a GGUF model file and return its metadata; raise GGUFValidationError naming any defect.

    Results are cached per (path, inode, size, mtime), so validating a file again after a download is free."""
    name = os.fspath(path)
    try:
        status = os.stat(name)
    except FileNotFoundError:
        raise GGUFValidationError(name, "the file does not exist") from None
    except OSError as error:
        raise GGUFValidationError(name, f"cannot access the file: {error.strerror or error}") from None
    if stat.S_ISDIR(status.st_mode):
        raise GGUFValidationError(name, "is a directory, not a model file")
    if not stat.S_ISREG(status.st_mode):
        raise GGUFValidationError(name, "is not a regular file")
    key = (os.path.abspath(name), status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)
    if use_cache and key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    info = _check_contents(name, status.st_size)
    _cache[key] = info
    if len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)
    return info


def _check_contents(name: str, size: int) -> GGUFInfo:
    try:
        with open(name, "rb") as file:
            header = file.read(HEADER_SIZE)
    except PermissionError:
        raise GGUFValidationError(name, "the file is not readable (permission denied)") from None
    except OSError as error:
        raise GGUFValidationError(name, f"cannot read the file: {error.strerror or error}") from None
    _check_header(name, header, size)
    try:
        reader = _BoundedReader(name, size)
    except _PastEnd as error:
        raise GGUFValidationError(name, f"truncated or corrupt: {error}") from None
    except (ValueError, KeyError, IndexError, OverflowError, UnicodeDecodeError) as error:
        raise GGUFValidationError(name, f"corrupt GGUF structure: {error}") from None
    return _check_semantics(name, size, reader)


def _check_header(name: str, header: bytes, size: int) -> None:
    if size == 0:
        raise GGUFValidationError(name, "the file is empty")
    if header[:4] != gguf.GGUF_MAGIC.to_bytes(4, "little"):
        raise GGUFValidationError(name, f"not a GGUF file (magic {header[:4]!r}, expected b'GGUF')")
    if len(header) < HEADER_SIZE:
        raise GGUFValidationError(name, f"truncated: {size} bytes, the GGUF header alone needs {HEADER_SIZE}")
    version, tensor_count, kv_count = struct.unpack_from("<IQQ", header, 4)
    if version not in SUPPORTED_VERSIONS:
        raise GGUFValidationError(name, f"unsupported GGUF version {version} (supported: 2, 3)")
    room = size - HEADER_SIZE
    if kv_count * MIN_KV_SIZE > room or tensor_count * MIN_TENSOR_INFO_SIZE > room:
        raise GGUFValidationError(
            name, f"absurd counts: {kv_count} metadata keys and {tensor_count} tensors cannot fit in {size} bytes"
        )


LLAMA_MAX_LAYERS = 512  # llama.cpp's LLAMA_MAX_LAYERS: a larger block_count aborts the process
_BLOCK_TENSOR = re.compile(r"blk\.(\d+)\.")


def _check_blocks(name: str, block_count: Any, tensor_names: list[str]) -> None:
    """The declared layer count must be one llama.cpp accepts and match the ``blk.N`` tensors (llama.cpp aborts the
    process, not just the load, on a count of 0 or past its limit)."""
    if not isinstance(block_count, int) or not 1 <= block_count <= LLAMA_MAX_LAYERS:
        raise GGUFValidationError(name, f"block_count {block_count!r} is not between 1 and {LLAMA_MAX_LAYERS}")
    blocks = {int(match.group(1)) for tensor in tensor_names if (match := _BLOCK_TENSOR.match(tensor))}
    if blocks != set(range(block_count)):
        found = f"blk.0 to blk.{max(blocks)}" if blocks else "no blk.N tensors"
        raise GGUFValidationError(name, f"block_count is {block_count} but the file has {found} ({len(blocks)} layers)")


def _check_semantics(name: str, size: int, reader: _BoundedReader) -> GGUFInfo:
    architecture = reader.scalar("general.architecture")
    if not isinstance(architecture, str) or not architecture:
        raise GGUFValidationError(name, "required key 'general.architecture' is missing")
    required = [f"{architecture}.block_count", f"{architecture}.embedding_length", "tokenizer.ggml.model"]
    missing = [key for key in required if key not in reader.fields]
    tokens = reader.strings("tokenizer.ggml.tokens")
    if tokens is None:
        missing.append("tokenizer.ggml.tokens")
    if missing:
        raise GGUFValidationError(name, f"required keys missing: {', '.join(missing)}")
    assert tokens is not None
    _check_vocabulary(name, tokens, reader.scalar("tokenizer.ggml.model"))
    _check_blocks(name, reader.scalar(f"{architecture}.block_count"), [tensor.name for tensor in reader.tensors])
    for tensor in reader.tensors:
        if tensor.name == "token_embd.weight" and len(tensor.shape) >= 2 and int(tensor.shape[1]) != len(tokens):
            raise GGUFValidationError(
                name,
                f"tensor 'token_embd.weight' has shape {[int(n) for n in tensor.shape]} "
                f"but the vocabulary has {len(tokens)} tokens",
            )
    file_type = reader.scalar("general.file_type")
    parameter_count = reader.scalar("general.parameter_count")
    if not isinstance(parameter_count, int):
        parameter_count = sum(int(tensor.n_elements) for tensor in reader.tensors) or None
    return GGUFInfo(
        path=name,
        size=size,
        version=int(reader.fields["GGUF.version"].parts[0][0]),
        tensor_count=len(reader.tensors),
        architecture=architecture,
        name=reader.scalar("general.name"),
        context_length=reader.scalar(f"{architecture}.context_length"),
        embedding_length=reader.scalar(f"{architecture}.embedding_length"),
        block_count=reader.scalar(f"{architecture}.block_count"),
        vocab_size=len(tokens),
        tokenizer=reader.scalar("tokenizer.ggml.model"),
        file_type=file_type,
        quantization=_quantization(file_type),
        parameter_count=parameter_count,
        bos_token=_token_text(tokens, reader.scalar("tokenizer.ggml.bos_token_id")),
        eos_token=_token_text(tokens, reader.scalar("tokenizer.ggml.eos_token_id")),
        metadata=_scalars(reader),
    )


def _check_vocabulary(name: str, tokens: list[bytes], tokenizer: Any) -> None:
    if not tokens:
        raise GGUFValidationError(name, "the vocabulary is empty")
    unique = set(tokens)
    if len(unique) != len(tokens):
        seen: dict[bytes, int] = {}
        for index, token in enumerate(tokens):
            first = seen.setdefault(token, index)
            if first != index:
                text = token.decode("utf-8", errors="replace")
                raise GGUFValidationError(
                    name, f"duplicate token string {text!r} (ids {first} and {index}); llama.cpp aborts on it"
                )
    if tokenizer == "llama" and not unique >= BYTE_TOKENS:
        lacking = sorted(token.decode() for token in BYTE_TOKENS - unique)
        raise GGUFValidationError(
            name,
            f"the SPM vocabulary lacks {len(lacking)} of the 256 byte tokens (first: {lacking[0]}); "
            "llama.cpp aborts on non-ASCII input without them",
        )


def _token_text(tokens: list[bytes], token_id: Any) -> str | None:
    """The text of the token ``token_id`` names, or None when the id is absent or out of range."""
    if isinstance(token_id, int) and 0 <= token_id < len(tokens):
        return tokens[token_id].decode("utf-8", errors="replace")
    return None


def _quantization(file_type: Any) -> str | None:
    if not isinstance(file_type, int):
        return None
    try:
        return gguf.LlamaFileType(file_type).name.removeprefix("MOSTLY_")
    except ValueError:
        return None


def _scalars(reader: _BoundedReader) -> dict[str, Any]:
    """Every scalar and string key (arrays are left out: vocabularies are large)."""
    values: dict[str, Any] = {}
    for key in reader.fields:
        if key.startswith("GGUF."):
            continue
        value = reader.scalar(key)
        if value is not None:
            values[key] = value
    return values
