"""check_gguf on a good tiny model and on every kind of malformed file."""

from __future__ import annotations

from pathlib import Path

import pytest

from mst_llm import MSTError
from mst_llm.llm import GGUFValidationError, check_gguf
from tests.llm.gguf_factory import MALFORMED_KINDS, write_tiny_llama

# what each kind's message must say (lowercase fragments)
EXPECTED = {
    "missing": "does not exist",
    "directory": "is a directory",
    "fifo": "not a regular file",
    "unreadable": "not a regular file",  # a UNIX domain socket: open() refuses it, root included
    "empty": "empty",
    "random_bytes": "not a gguf file",
    "bad_magic": "not a gguf file",
    "bad_version": "unsupported gguf version 99",
    "truncated_header": "truncated",
    "truncated_kv": "metadata",
    "truncated_tensor_info": "tensor infos",
    "truncated_data": "tensor data",
    "absurd_kv_count": "absurd counts",
    "absurd_tensor_count": "absurd counts",
    "string_length_past_end": "1125899906842624 bytes needed",
    "bad_value_type": "not a valid ggufvaluetype",
    "tensor_data_past_end": "tensor data",
    "duplicate_tokens": "duplicate token string",
    "missing_byte_tokens": "byte tokens",
    "missing_architecture": "general.architecture",
    "missing_block_count": "llama.block_count",
    "zero_block_count": "block_count 0 is not between 1 and 512",
    "block_count_past_limit": "block_count 10000 is not between 1 and 512",
    "wrong_embedding_shape": "token_embd.weight",
}


def test_corpus_is_complete() -> None:
    assert set(EXPECTED) == set(MALFORMED_KINDS)
    assert len(MALFORMED_KINDS) >= 15


def test_good_model_metadata(tiny_model: Path) -> None:
    info = check_gguf(tiny_model)
    assert info.architecture == "llama"
    assert info.tokenizer == "llama"
    assert info.vocab_size == 302
    assert info.block_count == 2 and info.context_length == 256
    assert info.quantization == "ALL_F32"
    assert info.to_dict()["metadata"]["general.name"] == "tiny-llama"
    assert 100_000 < info.size < 500_000
    assert check_gguf(tiny_model) is info  # cached per (path, inode, size, mtime)


@pytest.mark.parametrize("kind", MALFORMED_KINDS)
def test_malformed_files_are_refused_with_a_clear_message(corpus: dict[str, Path], kind: str) -> None:
    with pytest.raises(GGUFValidationError) as raised:
        check_gguf(corpus[kind])
    assert isinstance(raised.value, MSTError)
    assert raised.value.path == str(corpus[kind])
    assert EXPECTED[kind] in str(raised.value).lower()


def test_block_count_must_match_the_layers_present(tmp_path: Path) -> None:
    path = write_tiny_llama(tmp_path / "three.gguf", block_count=3)  # the tensors hold 2 layers
    with pytest.raises(GGUFValidationError, match=r"block_count is 3 but the file has blk.0 to blk.1 \(2 layers\)"):
        check_gguf(path)
