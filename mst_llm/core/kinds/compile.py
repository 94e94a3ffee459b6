"""Per-class specialised functions for the per-node hot paths (validate a snapshot, build a node, take a
snapshot), generated once per model class like attrs generates ``__init__``: a loop over field specs costs
several times more than straight-line code with the field accessors bound as constants."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from mst_llm.core.base.frozen import frozen_dict
from mst_llm.core.kinds.base import MISSING, Type, _unwrap


def _exact(type_: Type) -> type | None:
    """The Python type whose exact instances are always valid for ``type_`` (fast-path check), if any."""
    return getattr(_unwrap(type_), "exact", None)


def _identity_create(type_: Type) -> bool:
    return bool(getattr(_unwrap(type_), "identity_create", False)) and not type_.is_node


def _compile(source: str, name: str, namespace: dict[str, Any]) -> Callable[..., Any]:
    exec(compile(source, f"<mst_llm {name}>", "exec"), namespace)
    return namespace[name]  # type: ignore[no-any-return]


def compile_validate(cls: Any, specs: Sequence[Any], unknown: Callable[..., None]) -> Callable[..., None]:
    """``validate(snapshot, path, errors)`` for the model class ``cls``."""
    namespace: dict[str, Any] = {"MISSING": MISSING, "unknown": unknown}
    lines = ["def validate(snapshot, path, errors):", "    get = snapshot.get", "    present = 0"]
    for index, spec in enumerate(specs):
        namespace[f"t{index}"] = spec.type
        suffix = "/" + spec.name
        call = f"t{index}.validate(v, path + {suffix!r}, errors)"
        lines += [f"    v = get({spec.name!r}, MISSING)", "    if v is MISSING:"]
        if spec.type.optional:
            lines.append("        pass")
        else:
            message = f"required field {spec.name!r} is missing"
            lines.append(f"        errors.append((path + {suffix!r}, {message!r}))")
        lines += ["    else:", "        present += 1"]
        exact = _exact(spec.type)
        if exact is bool:
            lines.append(f"        if v is not True and v is not False: {call}")
        elif exact is not None:
            namespace[f"x{index}"] = exact
            lines.append(f"        if type(v) is not x{index}: {call}")
        else:
            lines.append(f"        {call}")
    lines.append("    if present != len(snapshot): unknown(snapshot, path, errors)")
    return _compile("\n".join(lines), "validate", namespace)


def compile_build(
    cls: Any,
    specs: Sequence[Any],
    volatiles: Sequence[Any],
    finish: Callable[[Any], None] | None,
    adopt: Callable[..., None],
) -> Callable[[Any], Any]:
    """``build(snapshot)``: a new node of ``cls`` from a validated snapshot (children linked, not registered)."""
    namespace: dict[str, Any] = {"MISSING": MISSING, "new": object.__new__, "cls": cls, "adopt": adopt}
    lines = [
        "def build(snapshot):",
        "    node = new(cls)",
        "    node._parent = node._key = node._snap = node._dirty = node._obs = node._hooks = node._tree = None",
        "    node._views = None",
        "    get = snapshot.get",
    ]
    for index, spec in enumerate(specs):
        namespace[f"d{index}"] = spec.type.default_snapshot
        namespace[f"c{index}"] = spec.create
        namespace[f"s{index}"] = spec.set
        lines += [f"    v = get({spec.name!r}, MISSING)", "    if v is MISSING:", f"        v = d{index}()"]
        if _identity_create(spec.type):
            lines.append(f"    s{index}(node, v)")
        elif spec.is_node:
            lines += [
                f"    v = c{index}(v)",
                f"    s{index}(node, v)",
                f"    if v is not None: adopt(v, node, {spec.name!r})",
            ]
        else:
            lines.append(f"    s{index}(node, c{index}(v))")
    for index, spec in enumerate(volatiles):
        namespace[f"vs{index}"] = spec.set
        namespace[f"vi{index}"] = spec.volatile.initial
        lines.append(f"    vs{index}(node, vi{index}())")
    if finish is not None:
        namespace["finish"] = finish
        lines.append("    finish(node)")
    lines.append("    return node")
    return _compile("\n".join(lines), "build", namespace)


def compile_snapshot(specs: Sequence[Any]) -> Callable[[Any], Any]:
    """``snapshot(node)``: the node's FrozenDict snapshot, fields in declaration order (cached on the node)."""
    namespace: dict[str, Any] = {"frozen_dict": frozen_dict}
    items = []
    for index, spec in enumerate(specs):
        namespace[f"g{index}"] = spec.get
        if spec.plain:
            items.append(f"{spec.name!r}: g{index}(node)")
        else:
            namespace[f"n{index}"] = spec.snapshot
            items.append(f"{spec.name!r}: n{index}(g{index}(node))")
    source = "\n".join(
        [
            "def snapshot(node):",
            f"    snap = node._snap = frozen_dict({{{', '.join(items)}}})",
            "    return snap",
        ]
    )
    return _compile(source, "snapshot", namespace)
