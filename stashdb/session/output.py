"""Catching what an execution prints: at the file descriptors in a worker, at sys.stdout in-process.

A worker owns its process, so its descriptors 1 and 2 point at two memory
files for good: what Python prints, what C extensions write and what child
processes (``os.system``) print all land there, in the order written, and are
read back after each execution. In-process, the host's descriptors are not
ours to take: `StreamCapture` swaps ``sys.stdout`` and ``sys.stderr`` only
(what other threads print meanwhile is caught too; C-level output is not).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator

__all__ = ["Captured", "DescriptorCapture", "StreamCapture"]

#: Output kept per stream and execution; past it the middle is cut, and said so.
MAX_OUTPUT = 8 * 1024 * 1024


class Captured:
    """The text an execution printed, once it has ended."""

    def __init__(self) -> None:
        self.stdout = ""
        self.stderr = ""


def _text(data: bytes) -> str:
    if len(data) > MAX_OUTPUT:
        half = MAX_OUTPUT // 2
        cut = len(data) - 2 * half
        data = data[:half] + f"\n… [{cut:,} bytes not kept] …\n".encode() + data[-half:]
    return data.decode("utf-8", errors="replace")


def _read(memory: int) -> str:
    """The text of a memory file; of a huge one, its start and end only (memory stays bounded)."""
    size = os.fstat(memory).st_size
    if size <= MAX_OUTPUT:
        return _text(os.pread(memory, size, 0))
    half = MAX_OUTPUT // 2
    head, tail = os.pread(memory, half, 0), os.pread(memory, half, size - half)
    note = f"\n… [{size - 2 * half:,} bytes not kept] …\n".encode()
    return (head + note + tail).decode("utf-8", errors="replace")


class DescriptorCapture:
    """Descriptors 1 and 2 of this process, pointed at memory files (a worker's, for good)."""

    def __init__(self) -> None:
        self._files = []
        for fd in (1, 2):
            memory = os.memfd_create(f"stashdb-fd{fd}", os.MFD_CLOEXEC)
            sys.stdout.flush() if fd == 1 else sys.stderr.flush()
            os.dup2(memory, fd)
            self._files.append(memory)
        # Python's streams write through to the descriptors, a line at a time, so
        # prints and a child process's output keep their order.
        self._streams = [
            io.TextIOWrapper(
                io.FileIO(fd, "w", closefd=False), encoding="utf-8", errors="backslashreplace",
                line_buffering=True,
            )
            for fd in (1, 2)
        ]
        sys.stdout, sys.stderr = self._streams

    @contextlib.contextmanager
    def capture(self) -> Iterator[Captured]:
        """Catch what is written to descriptors 1 and 2 inside the block."""
        for memory in self._files:  # what came before (a thread's print) is not this one's
            os.ftruncate(memory, 0)
            os.lseek(memory, 0, os.SEEK_SET)
        sys.stdout, sys.stderr = self._streams  # the last code may have replaced them
        captured = Captured()
        try:
            yield captured
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):  # the code may have closed or replaced it
                    stream.flush()
            captured.stdout, captured.stderr = (_read(m) for m in self._files)


class StreamCapture:
    """``sys.stdout`` and ``sys.stderr`` swapped for buffers during an execution (in-process)."""

    @contextlib.contextmanager
    def capture(self) -> Iterator[Captured]:
        """Catch what is written to ``sys.stdout`` and ``sys.stderr`` inside the block."""
        captured = Captured()
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                yield captured
            finally:
                captured.stdout = _text(out.getvalue().encode("utf-8", "replace"))
                captured.stderr = _text(err.getvalue().encode("utf-8", "replace"))
