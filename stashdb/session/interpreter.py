"""Running one piece of code in a namespace, as a REPL does: statements, then a value.

The last statement, when it is an expression, is evaluated apart so its repr
is the execution's value. Top-level ``await`` works (the code is compiled with
``PyCF_ALLOW_TOP_LEVEL_AWAIT`` and run on the interpreter's own event loop,
kept from one execution to the next). ``await increment(…)`` of a host
callback works too though a callback returns its result directly: such awaits
are rewritten to await a finished coroutine. The code's source is registered
with `linecache`, so tracebacks show its lines, also of functions it defined
and a later execution calls.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import linecache
import traceback
import types
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from stashdb.session.results import ErrorInfo

__all__ = ["Interpreter", "Outcome", "awaitable"]

#: The name through which rewritten awaits reach `awaitable` (in the code's builtins).
AWAITABLE = "__stashdb_awaitable__"
#: Longest repr kept as an execution's value; the rest is cut, and said so.
_MAX_VALUE = 100_000


@dataclass(frozen=True)
class Outcome:
    """What running the code did: its value's repr, or the exception it raised."""

    value: str | None
    error: ErrorInfo | None
    exception: BaseException | None = None  # the exception itself, for the runtime to judge


async def _finished(value: Any) -> Any:
    return value


def awaitable(value: Any) -> Any:
    """``value`` itself if it can be awaited, else a coroutine that returns it."""
    return value if inspect.isawaitable(value) else _finished(value)


class _AwaitCallbacks(ast.NodeTransformer):
    """``await name(…)`` of a callback becomes ``await __stashdb_awaitable__(name(…))``."""

    def __init__(self, callbacks: Collection[str]) -> None:
        self.callbacks = callbacks

    def visit_Await(self, node: ast.Await) -> ast.AST:
        self.generic_visit(node)
        call = node.value
        if (
            isinstance(call, ast.Call)
            and isinstance(call.func, ast.Name)
            and call.func.id in self.callbacks
        ):
            wrapped = ast.Call(ast.Name(AWAITABLE, ast.Load()), [call], [])
            return ast.copy_location(ast.Await(ast.copy_location(wrapped, call)), node)
        return node


class Interpreter:
    """Runs code in one namespace, keeping an event loop for top-level ``await``."""

    def __init__(self, namespace: dict[str, Any], callbacks: Collection[str] = ()) -> None:
        self.namespace = namespace
        self.callbacks = callbacks
        self._loop: asyncio.AbstractEventLoop | None = None

    def run(self, code: str, filename: str) -> Outcome:
        """Run ``code``; never raises for what the code raises (the outcome says it)."""
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        try:
            body, last = self._compile(code, filename)
        except (SyntaxError, ValueError, OverflowError, RecursionError) as exc:
            return Outcome(None, _error_info(exc, skip_frames=True), exc)
        try:
            self._run(body)
            result = self._run(last) if last is not None else None
        except BaseException as exc:  # the code's own (SystemExit, KeyboardInterrupt too)
            return Outcome(None, _error_info(exc), exc)
        return Outcome(_shown(result), None)

    def close(self) -> None:
        """Close the event loop (the interpreter can still run code: it makes another)."""
        if self._loop is not None:
            self._loop.close()
            self._loop = None

    def _compile(self, code: str, filename: str) -> tuple[types.CodeType, types.CodeType | None]:
        tree = ast.parse(code, filename, "exec")
        if self.callbacks:
            tree = ast.fix_missing_locations(_AwaitCallbacks(self.callbacks).visit(tree))
        flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            expression = ast.Expression(tree.body.pop().value)  # type: ignore[attr-defined]
            last = compile(expression, filename, "eval", flags=flags, dont_inherit=True)
        body = compile(tree, filename, "exec", flags=flags, dont_inherit=True)
        return body, last

    def _run(self, code: types.CodeType) -> Any:
        result = eval(code, self.namespace)
        if code.co_flags & inspect.CO_COROUTINE:  # top-level await: a coroutine to drive
            if self._loop is None or self._loop.is_closed():
                self._loop = asyncio.new_event_loop()
            result = self._loop.run_until_complete(result)
        return result


def _shown(result: Any) -> str | None:
    if result is None:
        return None
    try:
        text = repr(result)
    except Exception as exc:  # a broken __repr__ must not fail the execution
        return f"<repr of {type(result).__name__} failed: {exc!r}>"
    if len(text) > _MAX_VALUE:
        return text[:_MAX_VALUE] + f"… [{len(text) - _MAX_VALUE:,} more characters]"
    return text


def _error_info(exc: BaseException, *, skip_frames: bool = False) -> ErrorInfo:
    """The exception as text, without the frames of this module (the user's code only)."""
    tb = exc.__traceback__
    while tb is not None and (skip_frames or tb.tb_frame.f_code.co_filename == __file__):
        tb = tb.tb_next
    lines = traceback.format_exception(type(exc), exc, tb)
    try:
        message = str(exc)
    except Exception:  # a broken __str__
        message = f"<{type(exc).__name__}>"
    return ErrorInfo(type(exc).__name__, message, "".join(lines))
