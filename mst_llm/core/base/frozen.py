"""Immutable JSON containers used for snapshots and frozen values.

They subclass ``dict`` and ``list`` so that ``json.dumps`` and ``==`` treat them as the real thing at C speed.
"""

from __future__ import annotations

from typing import Any, NoReturn


def _immutable(self: object, *args: object, **kwargs: object) -> NoReturn:
    raise TypeError(f"{type(self).__name__} is immutable (snapshots and frozen values cannot be changed)")


class FrozenDict(dict[str, Any]):
    """A read-only dict."""

    __slots__ = ()
    __setitem__ = __delitem__ = _immutable
    clear = pop = popitem = setdefault = update = _immutable
    __ior__ = _immutable

    def __repr__(self) -> str:
        return dict.__repr__(self)

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenDict, (dict(self),))


class FrozenList(list[Any]):
    """A read-only list."""

    __slots__ = ()
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _immutable
    append = extend = insert = pop = remove = clear = sort = reverse = _immutable

    def __repr__(self) -> str:
        return list.__repr__(self)

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenList, (list(self),))


_new_dict = dict.__new__
_new_list = list.__new__
_dict_update = dict.update
_list_extend = list.extend
_list_setitem = list.__setitem__
_dict_setitem = dict.__setitem__


def frozen_dict(items: Any) -> FrozenDict:
    """Build a FrozenDict from a mapping or an iterable of pairs."""
    d: FrozenDict = _new_dict(FrozenDict)
    _dict_update(d, items)
    return d


def frozen_list(items: Any) -> FrozenList:
    """Build a FrozenList from an iterable."""
    lst: FrozenList = _new_list(FrozenList)
    _list_extend(lst, items)
    return lst


def freeze(value: Any) -> Any:
    """Deep-freeze a JSON-like value (dicts, lists and tuples become Frozen*; scalars stay)."""
    if isinstance(value, (FrozenDict, FrozenList)) or value is None or isinstance(value, (str, int, float)):
        return value
    if isinstance(value, dict):
        return frozen_dict((k, freeze(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return frozen_list(freeze(v) for v in value)
    raise TypeError(f"not a JSON value: {type(value).__name__}")
