"""dill session and module files: import them as commits, export snapshots as them.

The formats users already have: `dill.dump_session` / `dill.dump_module` files
and sessionstash files (a dill pickle of a dict of names). Reading one runs
the pickles in it, like loading it with dill would: only read files you trust.
"""

from __future__ import annotations

import contextlib
import pickle
import sys
import types
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from stashdb.errors import StashError

__all__ = ["NotASessionFile", "main_module", "read_session", "write_module"]


class NotASessionFile(StashError):
    """A file given as a dill session or module file is not one."""

    def __init__(self, path: str, why: str) -> None:
        self.path = path
        self.why = why
        super().__init__(
            f"{path} is not a dill session file ({why}); give a file written by "
            "dill.dump_session, dill.dump_module or sessionstash.save_workspace"
        )


def read_session(path: str | Path) -> dict[str, Any]:
    """The names saved in a dill session/module file or a sessionstash file.

    Raises:
        NotASessionFile: missing, unreadable, or not such a file.
    """
    import dill

    file = Path(path)
    if not file.is_file():
        raise NotASessionFile(str(file), "no such file")
    try:
        # A module file (dump_session / dump_module) loads into a dict without
        # touching the running __main__.
        return dict(dill.load_module_asdict(str(file)))
    except Exception as module_error:
        try:
            with file.open("rb") as handle:
                loaded = dill.load(handle)
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
            raise NotASessionFile(str(file), f"{type(exc).__name__}: {exc}") from None
        except Exception as exc:
            raise NotASessionFile(
                str(file), f"{type(module_error).__name__}: {module_error}; {exc}"
            ) from None
    if not isinstance(loaded, dict) or not all(isinstance(k, str) for k in loaded):
        raise NotASessionFile(str(file), f"it holds a {type(loaded).__name__}, not a namespace")
    return loaded


@contextlib.contextmanager
def main_module(namespace: Mapping[str, Any] | None = None) -> Iterator[types.ModuleType]:
    """A fresh ``__main__`` module, in ``sys.modules`` for the duration.

    Values restored or pickled inside it refer to it as ``__main__``, as they
    would in a script of their own.
    """
    module = types.ModuleType("__main__")
    module.__dict__["__builtins__"] = __builtins__
    if namespace is not None:
        module.__dict__.update(namespace)
    previous = sys.modules.get("__main__")
    sys.modules["__main__"] = module
    try:
        yield module
    finally:
        if previous is not None:
            sys.modules["__main__"] = previous


def write_module(path: str | Path, module: types.ModuleType) -> None:
    """Save ``module`` (a `main_module`) so that ``dill.load_module(path)`` restores it.

    Raises:
        StashError: dill cannot write something so that it loads again (it only
            warns, e.g. for an Enum class defined in ``__main__``).
    """
    import warnings

    import dill

    with warnings.catch_warnings():
        warnings.simplefilter("error", dill.PicklingWarning)
        try:
            dill.dump_module(str(path), module=module)
        except dill.PicklingWarning as exc:
            Path(path).unlink(missing_ok=True)
            raise StashError(
                f"cannot write {path} for dill.load_module: {exc}; restore fewer names "
                "with --only, or use the stashdb API (stashdb.at) instead"
            ) from None
