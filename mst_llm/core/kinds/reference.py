"""References: ``t.Reference[X]`` and ``t.SafeReference[X]`` store the target's identifier and resolve it through
the tree's identifier index."""

from __future__ import annotations

from typing import Any

from mst_llm.core.kinds.base import Errors, Type, _kind, _show, _unwrap, _validate_node_value
from mst_llm.core.state.lifecycle import register_safe_ref
from mst_llm.core.state.node import Tree, tree_of
from mst_llm.errors import InvalidReferenceError


class ReferenceType(Type):
    """``t.Reference[X]``: stores the target's identifier, resolves it through the tree's identifier index."""

    def __init__(self, target: Type, safe: bool) -> None:
        self.target = target
        self.safe = safe
        self.is_safe_reference = safe

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"{'SafeReference' if self.safe else 'Reference'}[{self.target.name}]"

    def families(self) -> list[type]:
        models = _unwrap(self.target).models()
        if not models:
            raise TypeError(f"{self.name}: references must point to model types")
        return [member.cls for member in models]  # type: ignore[attr-defined]

    def reference(self) -> Any:
        return self

    def validate(self, value: Any, path: str, errors: Errors) -> None:
        families = self.families()
        if isinstance(value, tuple(families)):
            _validate_node_value(value, path, errors)
            if not errors and value._mst_identifier() is None:  # type: ignore[attr-defined]
                errors.append((path, f"cannot reference a {type(value).__name__} without an identifier"))
            return
        if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
            return
        errors.append((path, f"expected a {self.target.name} node or identifier, got {_kind(value)} {_show(value)}"))

    def create(self, value: Any) -> Any:
        if isinstance(value, (str, int)):
            return value
        id_field = type(value)._mst_id_field
        return getattr(value, id_field)


def reference_type_of(type_: Type) -> ReferenceType:
    reference = type_.reference()
    assert isinstance(reference, ReferenceType)
    return reference


def resolve_reference(holder: Any, type_: Type, ident: Any) -> Any:
    """The node an identifier stored in ``holder`` refers to (InvalidReferenceError if it is not in the tree)."""
    reference = reference_type_of(type_)
    tree = tree_of(holder)
    key = str(ident)
    for family in reference.families():
        index = tree.ids.get(family)
        if index is not None:
            target = index.get(key)
            if target is not None:
                if tree.dupes and (family, key) in tree.dupes:
                    raise InvalidReferenceError(
                        f"reference to {reference.target.name} {ident!r} is ambiguous: two nodes hold that "
                        "identifier (a transaction in progress; a commit refuses such a state)"
                    )
                return target
    raise InvalidReferenceError(
        f"reference to {reference.target.name} {ident!r} cannot be resolved: no such identifier in the tree"
    )


def is_resolvable(holder: Any, type_: Type, ident: Any) -> bool:
    try:
        resolve_reference(holder, type_, ident)
    except InvalidReferenceError:
        return False
    return True


def register_container_refs(tree: Tree | None, item_type: Type, holder: Any, key: Any, values: Any) -> None:
    base = item_type.reference()
    if base is None or not base.safe:
        return
    for value in values:
        slot, ident = value if isinstance(holder, dict) else (key, value)
        if ident is not None:
            register_safe_ref(tree, base, ident, holder, slot)
