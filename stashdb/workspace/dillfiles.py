"""dill session and module files: import them as commits, export snapshots as them.

The formats users already have: `dill.dump_session` / `dill.dump_module` files
and sessionstash files (a dill pickle of a dict of names). Reading one runs
the pickles in it, like loading it with dill would: only read files you trust.
"""

from __future__ import annotations

import pickle
import types
from pathlib import Path
from typing import Any

from stashdb.errors import ExportError, NotASessionFile
from stashdb.workspace.files import write_atomically

__all__ = ["read_session", "write_module"]


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


def write_module(path: str | Path, module: types.ModuleType) -> None:
    """Save ``module`` (a `stashdb.workspace.main_module.main_module`) for ``dill.load_module``.

    The file is written beside ``path`` under another name and renamed over it
    only once it is whole: a full disk or a file size limit leaves the old file
    as it was, and no half-written one.

    Raises:
        ExportError: dill cannot write something so that it loads again (it only
            warns, e.g. for an Enum class defined in ``__main__``).
        OSError: the file cannot be written (the old one, if any, is kept).
    """
    import warnings

    import dill

    def dump(temporary: str) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("error", dill.PicklingWarning)
            try:
                dill.dump_module(temporary, module=module)
            except dill.PicklingWarning as exc:
                raise ExportError(
                    str(path), f"dill.load_module could not read it back ({exc}); restore fewer "
                    "names, or read them with stashdb.at() instead"
                ) from None

    write_atomically(path, dump)
