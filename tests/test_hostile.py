"""The hostile-values catalogue: each value round-trips or is skipped with a reason.

No value may fail a commit as a whole or hang it; a neighbour stored beside it
must always come back.
"""

from __future__ import annotations

import array
import asyncio
import collections
import contextlib
import ctypes
import decimal
import fractions
import functools
import hashlib
import io
import mmap
import re
import signal
import socket
import sqlite3
import sys
import tempfile
import threading
import types
import weakref
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

import stashdb

SIDE_EFFECTS: list[str] = []


class ReduceRaises:
    def __reduce__(self) -> Any:
        raise RuntimeError("refuses to be pickled")


class GetstateRaises:
    def __getstate__(self) -> Any:
        raise ValueError("no state for you")


class ReduceWithSideEffect:
    def __init__(self) -> None:
        self.value = 7

    def __reduce__(self) -> Any:
        SIDE_EFFECTS.append("reduced")
        return (ReduceWithSideEffect, ())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ReduceWithSideEffect)


class ReprRaises:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ReprRaises)


class HugeRepr:
    def __repr__(self) -> str:
        return "x" * 20_000_000

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HugeRepr)


class Anything:
    """A proxy-like object that answers every attribute, including pickle's."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: self


class Slotted:
    __slots__ = ("a", "b")

    def __init__(self) -> None:
        self.a = 1  # b left unset

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Slotted) and other.a == self.a


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def _generator() -> Iterator[int]:
    yield 1


async def _coroutine() -> int:
    return 1


async def _async_generator() -> Any:
    yield 1


def _frame() -> types.FrameType:
    return sys._getframe()


def _traceback() -> types.TracebackType | None:
    try:
        raise ValueError("boom")
    except ValueError as exc:
        return exc.__traceback__


def _exception_with_traceback() -> BaseException:
    try:
        raise KeyError("missing")
    except KeyError as exc:
        return exc


def _finished_thread() -> threading.Thread:
    thread = threading.Thread(target=lambda: None)
    thread.start()
    thread.join()
    return thread


def _deep(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def _deep_dict(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"k": value}
    return value


def _self_list() -> list[Any]:
    value: list[Any] = [1]
    value.append(value)
    return value


def _self_dict() -> dict[str, Any]:
    value: dict[str, Any] = {}
    value["me"] = value
    return value


def _mutual() -> Node:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return a


def _weak_value_dict() -> weakref.WeakValueDictionary[str, Any]:
    return weakref.WeakValueDictionary({"node": _KEEP})


_KEEP = Node()
_OPEN: list[Any] = []


def _kept(value: Any) -> Any:
    _OPEN.append(value)
    return value


def _mmap() -> mmap.mmap:
    return _kept(mmap.mmap(-1, 4096))


def _open_file() -> Any:
    return _kept(tempfile.TemporaryFile())


def _socket() -> socket.socket:
    return _kept(socket.socket())


def _sqlite() -> sqlite3.Connection:
    return _kept(sqlite3.connect(":memory:"))


# name -> (make the value, what must happen: "stored", "skipped", or "either")
CATALOGUE: dict[str, tuple[Callable[[], Any], str]] = {
    "generator": (_generator, "skipped"),
    "generator_expression": (lambda: (i for i in range(3)), "skipped"),
    "coroutine": (lambda: _kept(_coroutine()), "skipped"),
    "async_generator": (_async_generator, "skipped"),
    "lock": (threading.Lock, "skipped"),
    "rlock": (threading.RLock, "skipped"),
    "condition": (threading.Condition, "skipped"),
    "event": (threading.Event, "skipped"),
    "thread": (_finished_thread, "skipped"),
    "socket": (_socket, "skipped"),
    "open_file": (_open_file, "skipped"),
    "sqlite_connection": (_sqlite, "skipped"),
    "weakref": (lambda: weakref.ref(_KEEP), "either"),
    "weak_value_dict": (_weak_value_dict, "either"),
    "frame": (_frame, "skipped"),
    "traceback": (_traceback, "skipped"),
    "exception_with_traceback": (_exception_with_traceback, "stored"),
    "reduce_raises": (ReduceRaises, "skipped"),
    "getstate_raises": (GetstateRaises, "skipped"),
    "reduce_side_effect": (ReduceWithSideEffect, "stored"),
    "repr_raises": (ReprRaises, "stored"),
    "huge_repr": (HugeRepr, "stored"),
    "anything_proxy": (Anything, "either"),
    "deep_list_100k": (lambda: _deep(100_000), "skipped"),
    "deep_dict_100k": (lambda: _deep_dict(100_000), "skipped"),
    "self_referencing_list": (_self_list, "stored"),
    "self_referencing_dict": (_self_dict, "stored"),
    "mutual_references": (_mutual, "stored"),
    "zlib_compressobj": (zlib.compressobj, "skipped"),
    "hashlib_sha256": (lambda: hashlib.sha256(b"x"), "skipped"),
    "memoryview": (lambda: memoryview(b"abc"), "skipped"),
    "mmap": (_mmap, "skipped"),
    "ctypes_int": (lambda: ctypes.c_int(5), "either"),
    "array_array": (lambda: array.array("d", [1.5, 2.5]), "stored"),
    "compiled_regex": (lambda: re.compile(r"\d+"), "stored"),
    "bytes_io": (lambda: io.BytesIO(b"in memory"), "either"),
    "slots_partly_set": (Slotted, "stored"),
    "partial": (lambda: functools.partial(int, base=2), "stored"),
    "object_array_with_lock": (
        lambda: np.array([threading.Lock(), 1], dtype=object), "skipped"),
    "frame_with_lock_column": (
        lambda: pd.DataFrame({"lock": [threading.Lock()]}), "skipped"),
    "very_large_bytes": (lambda: b"\x07" * 300_000_000, "stored"),
    "event_loop": (asyncio.new_event_loop, "skipped"),
    "module_object": (lambda: types.ModuleType("made_up"), "skipped"),
    "decimal_context": (decimal.getcontext, "either"),
    "fraction": (lambda: fractions.Fraction(1, 3), "stored"),
    "ordered_dict_self": (lambda: collections.OrderedDict(x=1), "stored"),
    "exit_stack": (contextlib.ExitStack, "either"),
}


@pytest.fixture(scope="module")
def shared_repo(tmp_path_factory: pytest.TempPathFactory) -> stashdb.Repo:
    return stashdb.init(tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="module", autouse=True)
def _close_resources() -> Iterator[None]:
    yield
    for resource in _OPEN:
        with contextlib.suppress(Exception):
            resource.close()


def _timeout(signum: int, frame: Any) -> None:
    raise TimeoutError("the commit hung")


def test_the_catalogue_is_large_enough() -> None:
    assert len(CATALOGUE) >= 30


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_hostile_value_round_trips_or_is_skipped_with_a_reason(
    shared_repo: stashdb.Repo, name: str
) -> None:
    make, expected = CATALOGUE[name]
    value = make()
    neighbour = {"answer": 42}
    previous = signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(120)  # a real signal: a hung commit fails the test, not the suite
    try:
        commit = shared_repo.commit(name, namespace={name: value, "neighbour": neighbour})
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)

    entry = commit.entry(name)
    assert commit.entry("neighbour").status in {"stored", "reused"}
    if entry.kind == "skipped":
        assert expected in {"skipped", "either"}, f"{name} was skipped: {entry.reason}"
        assert entry.reason and entry.type_name
        assert name in [s.name for s in commit.skipped]
    else:
        assert expected in {"stored", "either"}, f"{name} was stored but cannot be"
        assert len(entry.preview) <= 200
        restored = shared_repo.at(commit.id)[name]
        assert type(restored) is type(value) or expected == "either"
        if expected == "stored" and name not in _NOT_COMPARABLE:
            assert _same(restored, value), name
    assert shared_repo.at(commit.id)["neighbour"] == neighbour


_NOT_COMPARABLE = {
    "exception_with_traceback", "self_referencing_list", "self_referencing_dict",
    "mutual_references", "compiled_regex", "partial",
}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, array.array):
        return a.tolist() == b.tolist()
    return bool(a == b)


def test_structures_that_refer_to_themselves_keep_their_shape(shared_repo: stashdb.Repo) -> None:
    commit = shared_repo.commit(
        namespace={"lst": _self_list(), "dct": _self_dict(), "node": _mutual()}
    )
    snapshot = shared_repo.at(commit.id)
    assert snapshot["lst"][1] is snapshot["lst"]
    assert snapshot["dct"]["me"] is snapshot["dct"]
    node = snapshot["node"]
    assert node.other.other is node


def test_reduce_side_effects_run_but_do_not_break_the_commit(shared_repo: stashdb.Repo) -> None:
    SIDE_EFFECTS.clear()
    commit = shared_repo.commit(namespace={"v": ReduceWithSideEffect()})
    assert commit.stored == ["v"] or commit.reused == ["v"]
    assert SIDE_EFFECTS  # it ran (pickling calls __reduce__); the commit still succeeded
