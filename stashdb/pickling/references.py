"""Which workspace names a pickle stream refers to: what it needs to come back.

A stored value that refers to a class of the workspace (``__main__.Point``)
comes back only if the snapshot holds that class too; one that is nothing but
a reference to its own name (a kind the pickler stores by reference, though no
other process can find it there) never comes back. Capture uses `refers_to`
to refuse storing such values as fine (`stashdb.workspace.capture`).

Streams that do not contain the workspace module's name at all, the common
case (arrays, frames, plain data), cost one search; the others are read opcode
by opcode (`pickletools`), or for very large ones searched for the pattern of
a global reference.
"""

from __future__ import annotations

import pickletools
import re
from collections import deque
from typing import Any

__all__ = ["refers_to"]

#: Streams up to this size are read exactly; larger ones are searched.
_EXACT_MAX = 1024 * 1024
_STRINGS = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"})
_NO_PUSH = frozenset({"FRAME", "PROTO", "STOP", "MARK", "POP", "POP_MARK"})
_GETS = frozenset({"BINGET", "LONG_BINGET", "GET"})
_PUTS = frozenset({"BINPUT", "LONG_BINPUT", "PUT"})


def refers_to(stream: Any, modules: frozenset[str]) -> frozenset[str]:
    """The top-level names of ``modules`` that ``stream`` refers to as globals."""
    encoded = [m.encode() for m in modules]
    if not any(re.search(re.escape(m), stream) for m in encoded):
        return frozenset()
    view = memoryview(stream)
    if view.nbytes <= _EXACT_MAX:
        return _exact(bytes(view), modules)
    return _searched(stream, encoded)


def _exact(data: bytes, modules: frozenset[str]) -> frozenset[str]:
    names: set[str] = set()
    memo: dict[int, Any] = {}
    last: deque[Any] = deque(maxlen=2)  # the last two values pushed (None: not a string)
    for op, arg, _ in pickletools.genops(data):
        name = op.name
        if name in _STRINGS:
            last.append(arg)
        elif name == "MEMOIZE":
            memo[len(memo)] = last[-1] if last else None
        elif name in _PUTS:
            memo[int(arg)] = last[-1] if last else None  # type: ignore[arg-type]
        elif name in _GETS:
            last.append(memo.get(int(arg)))  # type: ignore[arg-type]
        elif name == "STACK_GLOBAL":
            module, qualname = (last[0], last[1]) if len(last) == 2 else (None, None)
            if module in modules and isinstance(qualname, str):
                names.add(qualname.split(".")[0])
            last.append(None)
        elif name == "GLOBAL":
            module, _, qualname = str(arg).partition(" ")
            if module in modules:
                names.add(qualname.split(".")[0])
            last.append(None)
        elif name not in _NO_PUSH:
            last.append(None)
    return frozenset(names)


def _searched(stream: Any, encoded: list[bytes]) -> frozenset[str]:
    # SHORT_BINUNICODE module, [MEMOIZE], SHORT_BINUNICODE name, [MEMOIZE], STACK_GLOBAL:
    # how protocol 4 and 5 write a global the first time (later ones reuse the memo).
    names: set[str] = set()
    for module in encoded:
        pattern = re.compile(
            rb"\x8c" + bytes([len(module)]) + re.escape(module) + rb"\x94?\x8c(.)", re.DOTALL
        )
        for found in pattern.finditer(stream):
            length = found.group(1)[0]
            start = found.end()
            name = bytes(memoryview(stream)[start : start + length])
            names.add(name.decode("utf-8", "replace").split(".")[0])
    return frozenset(names)
