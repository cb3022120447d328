"""One stored value as a standalone pickle file, written without unpickling anything.

``stashdb show REV:NAME --to FILE`` hands a colleague (or a tool) one value as
a plain pickle. Browsing never unpickles, so neither does this: the stored
stream is rewritten opcode by opcode, each out-of-band buffer put back in
line (``NEXT_BUFFER`` becomes ``BYTEARRAY8`` with the buffer's bytes) and the
frames dropped (their lengths would be wrong; they are optional). The result
loads with ``pickle.load`` in any Python with the value's own packages
(numpy, pandas …) installed, and stashdb where the value uses one of its
stored names (a column of repeated strings).

Only what the C pickler stored on its own can be written so: a value that
refers to the workspace (its classes and functions, dill's streams), or that
is stored with other names as a group, is refused, with what to do instead.
"""

from __future__ import annotations

import pickletools
from typing import Any

from stashdb.errors import ExportError

__all__ = ["standalone"]

#: Opcodes that mean the stream needs more than plain pickle to load.
_NEEDS_A_LOADER = frozenset({"PERSID", "BINPERSID"})


def standalone(path: str, pickler: str, parts: list[Any], *, grouped: bool) -> bytes:
    """The bytes of a pickle that loads the stored value by itself.

    Raises:
        ExportError: the value cannot be loaded without stashdb's own unpickler.
    """
    if pickler != "pickle":
        raise ExportError(path, "it was stored with dill, for code of the workspace")
    if grouped:
        raise ExportError(path, "it is stored together with the names it shares objects with")
    stream, *buffers = (bytes(memoryview(p).cast("B")) for p in parts)
    out = bytearray()
    used = 0
    for op, _, position in pickletools.genops(stream):
        assert position is not None  # genops over bytes always knows where it is
        end = _end_of(stream, op, position)
        if op.name in _NEEDS_A_LOADER:
            raise ExportError(path, "it refers to names of the workspace")
        if op.name == "FRAME":
            continue
        if op.name == "NEXT_BUFFER":
            buffer = buffers[used]
            used += 1
            out += b"\x96" + len(buffer).to_bytes(8, "little") + buffer  # BYTEARRAY8
            continue
        out += stream[position:end]
    return bytes(out)


def _end_of(stream: bytes, op: Any, position: int) -> int:
    """Where the opcode at ``position`` ends (its code byte and its argument)."""
    if op.arg is None:
        return position + 1
    reader = _Reader(stream, position + 1)
    op.arg.reader(reader)
    return reader.position


class _Reader:
    """A file-like view of ``stream`` from ``position``, counting what the opcode reads."""

    def __init__(self, stream: bytes, position: int) -> None:
        self.stream, self.position = stream, position

    def read(self, n: int) -> bytes:
        data = self.stream[self.position : self.position + n]
        self.position += len(data)
        return data

    def readline(self) -> bytes:
        end = self.stream.index(b"\n", self.position) + 1
        data = self.stream[self.position : end]
        self.position = end
        return data
