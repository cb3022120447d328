"""A cheap guess of whether pickling some values is cheap, to pick how to snapshot them.

Pickling a few small values on the cell's thread costs about a millisecond and
gives every cell its own commit, in order; forking costs the page tables
(about 1 ms per GiB of arrays, 12 ms per GiB of small Python objects) but
never more, however big the values. The IPython extension pickles on the
cell's thread only what this module calls small; everything else is snapshotted
by a forked child (`stashdb.forked`). A wrong guess costs time, never data.
"""

from __future__ import annotations

import types
from collections.abc import Iterable, Mapping
from typing import Any

from stashdb.model import Entry
from stashdb.pickling.preview import type_name

__all__ = ["SMALL_BYTES", "all_immutable_scalars", "all_small"]

#: Values up to this many bytes (pickled, or in their buffers) count as small.
SMALL_BYTES = 256 * 1024
#: Containers up to this length are looked into; longer ones are not small.
_SMALL_LENGTH = 1000
_SCALARS = (type(None), bool, int, float, complex)


def all_small(values: Iterable[tuple[str, Any]], before: Mapping[str, Entry]) -> bool:
    """Whether every value is small enough to pickle on the cell's thread.

    ``before`` has the names' entries in the last snapshot: a value whose type
    is unchanged and whose pickle was small then counts as small now (a list
    that grew past `_SMALL_LENGTH` does not).
    """
    return all(_small(value, before.get(name)) for name, value in values)


def all_immutable_scalars(values: Iterable[Any]) -> bool:
    """Whether every value is a number, None, or a string or bytes under `SMALL_BYTES`.

    Exactly those types: a standard pickle brings them back equal, and being
    immutable, no other name can share them in a way a snapshot must keep.
    """
    for value in values:
        kind = type(value)
        if kind in (str, bytes):
            if len(value) > SMALL_BYTES:
                return False
        elif kind not in _SCALARS:
            return False
    return True


def _small(value: Any, entry: Entry | None) -> bool:
    if isinstance(value, (*_SCALARS, types.ModuleType)):
        return True
    if isinstance(value, (str, bytes, bytearray)):
        return len(value) <= SMALL_BYTES
    kind = type(value)
    buffers = hasattr(kind, "nbytes") or hasattr(kind, "memory_usage")
    if buffers and (kind.__module__ or "").startswith(("numpy", "pandas")):
        try:  # a DataFrame has no nbytes; its memory_usage (not deep) costs a sum per column
            nbytes = (value.nbytes if hasattr(kind, "nbytes")
                      else value.memory_usage(index=True, deep=False).sum())
            return int(nbytes) <= SMALL_BYTES and not _holds_objects(value)
        except Exception:  # an attribute that raises: not known to be small
            return False
    if isinstance(value, (list, tuple, set, frozenset, dict)):
        if len(value) > _SMALL_LENGTH:
            return False
        items = value.values() if isinstance(value, dict) else value
        if all(isinstance(v, _SCALARS) or (isinstance(v, str) and len(v) < 1024)
               for v in items):
            return True
    if isinstance(value, (types.FunctionType, type)):
        return True
    return (entry is not None and entry.kind == "value" and entry.type_name == type_name(value)
            and entry.size <= SMALL_BYTES)


def _holds_objects(value: Any) -> bool:
    dtype = getattr(value, "dtype", None)
    if dtype is not None:
        return bool(getattr(dtype, "hasobject", False))
    dtypes = getattr(value, "dtypes", None)  # a DataFrame: object columns hide their strings
    try:
        return any(getattr(d, "hasobject", False) for d in dtypes)  # type: ignore[union-attr]
    except TypeError:
        return True

