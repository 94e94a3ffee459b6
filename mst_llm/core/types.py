"""The type constructors that plain annotations cannot express, conventionally imported as ``t``:
``from mst_llm import types as t``.

They are ``Annotated`` aliases, so type checkers see plain ``str``/``int``/the target class, and mst_llm reads the
metadata. Everything else (``str``, ``X | None``, ``list[X]``, model classes, ...) is an ordinary annotation.
"""

from __future__ import annotations

from typing import Annotated, TypeAlias, TypeVar

from mst_llm.core.base.frozen import FrozenDict, FrozenList
from mst_llm.core.kinds.annotations import _FROZEN, _REFERENCE, _SAFE_REFERENCE, refinement, snapshot_processor
from mst_llm.core.kinds.base import MISSING, IdentifierType, Type, default, volatile
from mst_llm.core.kinds.value import custom

_T = TypeVar("_T")

Identifier: TypeAlias = Annotated[str, IdentifierType(numeric=False)]
IdentifierNumber: TypeAlias = Annotated[int, IdentifierType(numeric=True)]
Reference: TypeAlias = Annotated[_T, _REFERENCE]
SafeReference: TypeAlias = Annotated[_T, _SAFE_REFERENCE]
Frozen: TypeAlias = Annotated[_T, _FROZEN]

__all__ = [
    "MISSING",
    "Frozen",
    "FrozenDict",
    "FrozenList",
    "Identifier",
    "IdentifierNumber",
    "Reference",
    "SafeReference",
    "Type",
    "custom",
    "default",
    "refinement",
    "snapshot_processor",
    "volatile",
]
