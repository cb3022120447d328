"""Safe, bounded descriptions of values, computed at commit time.

What `log`, `show`, `diff` and `history` print comes from here and is stored in
plain columns, so browsing a store never unpickles anything (format rule 7).
"""

from __future__ import annotations

import reprlib
import types
from dataclasses import dataclass
from typing import Any

__all__ = ["Description", "describe", "type_name"]

PREVIEW_CHARS = 200
#: Built-in values whose exact repr is at most this long are kept for diffs.
LITERAL_CHARS = 200
_LITERAL_ITEMS = 50

_repr = reprlib.Repr()
_repr.maxstring = 80
_repr.maxother = 80
_repr.maxlist = _repr.maxtuple = _repr.maxset = _repr.maxfrozenset = _repr.maxdict = 8
_repr.maxlevel = 3

_LITERAL_ATOMS = (int, float, complex, str, bytes, bool, type(None))


@dataclass(frozen=True)
class Description:
    """What browsing shows of a value: its type, a preview, its shape, its exact repr if small."""

    type_name: str
    preview: str
    shape: str | None = None
    literal: str | None = None


def type_name(value: Any) -> str:
    """``module.Qualname`` of a value's type (just ``Qualname`` for built-ins)."""
    cls = type(value)
    module = getattr(cls, "__module__", "builtins")
    qualname = getattr(cls, "__qualname__", cls.__name__)
    return qualname if module == "builtins" else f"{module}.{qualname}"


def _clip(text: str, limit: int = PREVIEW_CHARS) -> str:
    text = " ".join(text.split()) if "\n" in text else text
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe(value: Any) -> Description:
    """Type, preview, shape and (for small built-ins) the exact repr of ``value``."""
    name = type_name(value)
    try:
        special = _describe_known(value)
        if special is not None:
            preview, shape = special
            return Description(name, _clip(preview), shape)
        literal = _literal(value)
        preview = literal if literal is not None else _clip(_repr.repr(value))
        return Description(name, preview, _len_shape(value), literal)
    except Exception as exc:  # a user's __repr__ may raise anything
        return Description(name, f"<{name} (repr failed: {type(exc).__name__})>")


def _len_shape(value: Any) -> str | None:
    if isinstance(value, (list, tuple, dict, set, frozenset, str, bytes, bytearray)):
        return f"({len(value)},)"
    return None


def _describe_known(value: Any) -> tuple[str, str | None] | None:
    module = type(value).__module__ or ""
    if isinstance(value, types.ModuleType):
        version = getattr(value, "__version__", None)
        return f"<module {value.__name__!r}{' ' + str(version) if version else ''}>", None
    if isinstance(value, type):
        return f"<class {value.__module__}.{value.__qualname__}>", None
    if isinstance(value, types.FunctionType):
        return f"<function {value.__qualname__}>", None
    if module.startswith("numpy") and hasattr(value, "shape") and hasattr(value, "dtype"):
        shape = tuple(value.shape)
        head = ""
        if value.dtype.kind in "biufcmMS?" and value.size:
            head = " " + _repr.repr(value.ravel()[:6].tolist())
        return f"array(shape={shape}, dtype={value.dtype}){head}", str(shape)
    if module.startswith("pandas"):
        cls = type(value).__name__
        if cls == "DataFrame":
            columns = [f"{c}: {t}" for c, t in list(value.dtypes.items())[:10]]
            more = " …" if value.shape[1] > 10 else ""
            return f"DataFrame {value.shape[0]}×{value.shape[1]} [{', '.join(columns)}{more}]", str(
                value.shape
            )
        if cls == "Series":
            return f"Series {len(value)} {value.dtype} name={value.name!r}", str(value.shape)
        if hasattr(value, "shape"):
            return f"{cls} {value.shape}", str(value.shape)
    return None


def _literal(value: Any) -> str | None:
    """The exact repr of a small value made only of built-in types, else None."""
    budget = [_LITERAL_ITEMS]

    def plain(v: Any, depth: int) -> bool:
        budget[0] -= 1
        if budget[0] < 0 or depth > 4:
            return False
        t = type(v)
        if t in _LITERAL_ATOMS:
            return not (t in (str, bytes) and len(v) > LITERAL_CHARS)
        if t in (list, tuple, set, frozenset):
            return all(plain(x, depth + 1) for x in v)
        if t is dict:
            return all(plain(k, depth + 1) and plain(x, depth + 1) for k, x in v.items())
        return False

    if not plain(value, 0):
        return None
    text = repr(value)
    return text if len(text) <= LITERAL_CHARS else None
