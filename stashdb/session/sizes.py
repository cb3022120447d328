"""Sizes as users write them: ``512MB``, ``1.5 GiB``, ``2_000_000``."""

from __future__ import annotations

import re

from stashdb.errors import InvalidArguments

__all__ = ["size_in_bytes"]

_UNITS = {
    "": 1, "b": 1,
    "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
    "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4,
}
_SIZE = re.compile(r"^\s*([0-9][0-9_]*(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*$")


def size_in_bytes(value: int | str) -> int:
    """Bytes of a size given as a number or a string with a unit (KB = 1000, KiB = 1024).

    Raises:
        InvalidArguments: not a size, or not more than 0.
    """
    if isinstance(value, bool):
        raise InvalidArguments(f"{value!r} is not a size")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str):
        match = _SIZE.match(value)
        unit = match.group(2).lower() if match else None
        if match is None or unit not in _UNITS:
            raise InvalidArguments(
                f"{value!r} is not a size: give bytes, or a number with a unit "
                "(KB, MB, GB, KiB, MiB, GiB)"
            )
        size = int(float(match.group(1).replace("_", "")) * _UNITS[unit])
    else:
        raise InvalidArguments(f"a size must be a number of bytes or a string, not {value!r}")
    if size <= 0:
        raise InvalidArguments(f"a size must be more than 0 bytes, not {value!r}")
    return size
