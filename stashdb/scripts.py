"""Run a Python script as ``__main__``, the way ``python SCRIPT ARGS…`` would, and keep its state.

Used by ``stashdb commit SCRIPT``: the script's globals are committed when it
ends, and also when it crashes, so that the state of a failed run is there to
inspect.
"""

from __future__ import annotations

import contextlib
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import CodeType
from typing import Any

from stashdb.errors import ScriptNotFound
from stashdb.workspace.main_module import main_module

__all__ = ["ScriptRun", "load_script", "running_script"]


@dataclass
class ScriptRun:
    """How a script run ended, with the globals it left."""

    namespace: dict[str, Any]
    exit_code: int  # what `python SCRIPT` would have exited with
    error: BaseException | None = None  # the exception that ended it, if any
    traceback: str | None = None  # formatted as Python prints it, without our frames

    @property
    def failure(self) -> str | None:
        """A short description of how it failed, for the commit message; None if it did not."""
        if self.error is not None:
            return f"{type(self.error).__name__}: {self.error}"
        if self.exit_code != 0:
            return f"exited with status {self.exit_code}"
        return None


def load_script(path: str | Path) -> CodeType:
    """The compiled script, before anything runs.

    Raises:
        ScriptNotFound: the file is missing, unreadable, or does not compile.
    """
    script = Path(path)
    try:
        source = script.read_bytes()
    except OSError as exc:
        raise ScriptNotFound(str(script), exc.strerror or str(exc)) from None
    try:
        return compile(source, str(script), "exec")
    except SyntaxError as exc:
        raise ScriptNotFound(str(script), f"line {exc.lineno}: {exc.msg}") from None
    except ValueError as exc:  # e.g. NUL bytes on some Pythons
        raise ScriptNotFound(str(script), str(exc)) from None


@contextlib.contextmanager
def running_script(
    path: str | Path, args: list[str], code: CodeType | None = None
) -> Iterator[ScriptRun]:
    """Run ``path`` as ``__main__`` with ``sys.argv[1:] = args``; yield its end state.

    Inside the ``with`` block the script's module is still ``__main__``, so its
    classes and functions resolve by name while they are committed.

    Raises:
        ScriptNotFound: the file is missing, unreadable, or does not compile (when
            ``code`` is not given).
    """
    script = Path(path)
    if code is None:
        code = load_script(script)
    saved_argv, saved_path0 = sys.argv, sys.path[0] if sys.path else None
    sys.argv = [str(script), *args]
    if sys.path:
        sys.path[0] = str(script.resolve().parent)
    with main_module() as module:
        module.__dict__["__file__"] = str(script)
        run = ScriptRun(module.__dict__, 0)
        try:
            exec(code, module.__dict__)
        except SystemExit as exc:
            run.exit_code = _exit_status(exc.code)
        except BaseException as exc:  # the script's own failure, Ctrl-C included
            run.error = exc
            run.exit_code = 130 if isinstance(exc, KeyboardInterrupt) else 1
            # Drop our own frame (the exec call) from what the user sees.
            tb = exc.__traceback__.tb_next if exc.__traceback__ else None
            run.traceback = "".join(traceback.format_exception(type(exc), exc, tb))
        try:
            yield run
        finally:
            sys.argv = saved_argv
            if saved_path0 is not None:
                sys.path[0] = saved_path0


def _exit_status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)  # as the interpreter does for sys.exit("message")
    return 1
