"""A drop-in for dill's session functions: ``from stashdb.compat import dill_session``.

``dump_module``, ``load_module`` and ``load_module_asdict`` (and the
deprecated ``dump_session`` / ``load_session``) with the signatures,
defaults and return values of ``dill.session`` (dill 0.3.6 and later)::

    from stashdb.compat import dill_session as dill

    squared = lambda x: x*x
    dill.dump_module()          # __main__, as a commit in the store /tmp/session.pkl
    ...
    dill.load_module()          # in a new process: squared(2) == 4

What differs, on purpose:

- The file is a stashdb store (one SQLite file): every dump is a commit,
  dumping again writes only the values that changed, and ``stashdb log
  --store /tmp/session.pkl`` lists the dumps.
- A value that cannot be pickled (a generator, an open connection) is
  skipped and the rest is stored, with a ``dill.PicklingWarning`` naming each
  one and why; dill fails the whole dump (and leaves a truncated file).
  Values stashdb never stores are skipped the same way: locks, threads and
  open files are live resources of one process.
- ``refimported`` is accepted and changes nothing: modules are stored as
  module entries and importable functions and classes by reference anyway;
  an imported data object (``from html.entities import html5``) is stored by
  value. Pickler and unpickler options (``**kwds``) do not apply to a store:
  they are ignored, with a warning.
- Loading checks that the commit was signed by a key you trust before it
  unpickles anything (docs/security.md); ``trust=True`` (an argument dill
  does not have) loads a store someone else wrote without that check.
- Wrong arguments raise `stashdb.InvalidArguments` where dill raises
  ``TypeError`` or ``ValueError``.

A stream (``io.BytesIO``) is not a store: it is written and read by dill
itself, as before. A path that holds an old dill session or module file (or
a sessionstash file) still loads: it is unpickled as dill would, so load only
files you trust.
"""

from __future__ import annotations

import builtins
import importlib
import os
import pathlib
import sys
import tempfile
import types
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Union

from stashdb.errors import InvalidArguments

if TYPE_CHECKING:
    from stashdb.repo import Repo

__all__ = [
    "dump_module",
    "dump_session",
    "load_module",
    "load_module_asdict",
    "load_session",
]

#: dill's default file: ``session.pkl`` in the temporary directory.
TEMPDIR = pathlib.PurePath(tempfile.gettempdir())

PathLike = Union[str, "os.PathLike[str]"]


def _default(filename: Any) -> Any:
    return str(TEMPDIR / "session.pkl") if filename is None else filename


def _renamed(kwds: dict[str, Any], old: str, new: str, given: object) -> Any:
    """dill's handling of a renamed argument: a pending-deprecation warning, not both."""
    if old not in kwds:
        return given
    message = f"The argument {old!r} has been renamed {new!r}"
    if old == "byref":
        message += " to distinguish it from dill.settings['byref']"
    warnings.warn(message + ".", PendingDeprecationWarning, stacklevel=3)
    if given:  # the defaults are None and False
        raise InvalidArguments(f"both {new!r} and {old!r} arguments were used")
    return kwds.pop(old)


def _ignored(kwds: dict[str, Any], what: str) -> None:
    if kwds:
        warnings.warn(
            f"{what} options {', '.join(sorted(kwds))} do not apply to a stashdb store; "
            "ignored", UserWarning, stacklevel=3,
        )


def _as_module(module: types.ModuleType | str | None) -> types.ModuleType:
    if module is None:
        return sys.modules["__main__"]
    if isinstance(module, str):
        return importlib.import_module(module)
    if not isinstance(module, types.ModuleType):
        raise InvalidArguments(f"{module!r} is not a module")
    return module


def dump_module(
    filename: PathLike | None = None,
    module: types.ModuleType | str | None = None,
    refimported: bool = False,
    **kwds: Any,
) -> None:
    """Save the state of ``__main__`` (or of another module) as a commit in the store ``filename``.

    Args:
        filename: the store's path (default: ``session.pkl`` in the temporary
            directory), created if missing; an old dill file there is replaced,
            as dill overwrites it. A writable stream is written by dill itself.
        module: a module, or the name of an importable one (default: ``__main__``).
        refimported: accepted for dill's sake; stashdb stores imported modules,
            functions and classes by reference anyway.
        **kwds: dill's renamed arguments ``main`` and ``byref`` (with its
            pending-deprecation warning); pickler options are ignored.

    Values that cannot be pickled are skipped, with a ``dill.PicklingWarning``
    naming each one and why; the rest is stored.

    Raises:
        InvalidArguments: ``module`` is not a module, or old and new argument
            names are both given.
        NotAStore: ``filename`` is some other SQLite database.
    """
    refimported = _renamed(kwds, "byref", "refimported", refimported)
    module = _renamed(kwds, "main", "module", module)
    main = _as_module(module)
    if hasattr(filename, "write"):
        import dill

        dill.dump_module(filename, module=main, refimported=refimported, **kwds)
        return
    _ignored(kwds, "pickler")
    import dill

    from stashdb.compat.storefile import open_for_saving, warn_skipped

    repo = open_for_saving(_default(filename))
    made = repo.commit(f"dump_module {main.__name__}", namespace=main.__dict__)
    warn_skipped(made, _default(filename), dill.PicklingWarning, stacklevel=2)


def dump_session(
    filename: PathLike | None = None,
    main: types.ModuleType | str | None = None,
    byref: bool = False,
    **kwds: Any,
) -> None:
    """Deprecated: `dump_module` (with a ``PendingDeprecationWarning``, as dill gives)."""
    warnings.warn("dump_session() has been renamed dump_module()", PendingDeprecationWarning,
                  stacklevel=2)
    dump_module(filename, module=main, refimported=byref, **kwds)


def load_module(
    filename: PathLike | None = None,
    module: types.ModuleType | str | None = None,
    *,
    trust: bool = False,
    **kwds: Any,
) -> types.ModuleType | None:
    """Update ``__main__`` (or the module saved, or ``module``) with the latest commit there.

    Saved names are set on the module; its other names stay. With no
    ``module``, the module saved is updated: ``__main__``; an importable
    module, imported first; or a module-type object, made anew.

    Args:
        filename: the store's path (default: ``session.pkl`` in the temporary
            directory). A dill session or module file, a sessionstash file or
            a readable stream is read as dill reads it: only files you trust.
        module: the module to update, or the name of an importable one; it must
            be the one saved (same name).
        trust: load a commit even if it is not signed by a key you trust (a
            store someone else wrote), as dill loads any file.
        **kwds: dill's renamed argument ``main``; unpickler options are passed
            to dill for its files and ignored for a store.

    Returns:
        The module, unless it is ``__main__`` or was given as ``module`` (then None).

    Raises:
        InvalidArguments: ``module`` is not the module saved, or not a module.
        NotASessionFile: ``filename`` is missing, or neither a store nor a dill file.
        UntrustedSnapshot: the latest commit is not signed by a key you trust.
    """
    module = _renamed(kwds, "main", "module", module)
    repo = _store_or_none(filename)
    if repo is None:
        return _load_file(_default(filename), module, kwds)
    _ignored(kwds, "unpickler")
    from stashdb.compat.storefile import warn_not_restored

    latest = repo.show()
    target = _target(module, latest.workspace)
    with _registered(target):
        report = repo.checkout(latest.id, namespace=target.__dict__, merge=True, trust=trust)
    warn_not_restored(report, _default(filename), stacklevel=2)
    return None if target is sys.modules.get("__main__") or target is module else target


def load_session(
    filename: PathLike | None = None,
    main: types.ModuleType | str | None = None,
    **kwds: Any,
) -> None:
    """Deprecated: `load_module`, returning None (with a ``PendingDeprecationWarning``, as dill)."""
    warnings.warn("load_session() has been renamed load_module().", PendingDeprecationWarning,
                  stacklevel=2)
    load_module(filename, module=main, **kwds)


def load_module_asdict(
    filename: PathLike | None = None, update: bool = False, *, trust: bool = False, **kwds: Any
) -> dict[str, Any]:
    """The latest commit at ``filename`` as a module's dictionary; no running module changes.

    The dictionary is that of a new module named like the one saved, holding
    ``__builtins__`` and the saved names, and ``__session__``: ``filename``.

    Args:
        filename: as for `load_module`.
        update: start from a copy of the saved module's current state (imported
            first if need be), as dill does.
        trust: as for `load_module`.
        **kwds: unpickler options, passed to dill for its files and ignored for
            a store (``module`` is refused, as dill refuses it).

    Raises:
        InvalidArguments: ``module`` was given.
        NotASessionFile, UntrustedSnapshot: as for `load_module`.
    """
    if "module" in kwds:
        raise InvalidArguments("'module' is an invalid keyword argument for load_module_asdict()")
    repo = _store_or_none(filename)
    if repo is None:
        return _load_file_asdict(_default(filename), update, kwds)
    _ignored(kwds, "unpickler")
    from stashdb.compat.storefile import warn_not_restored

    latest = repo.show()
    main = _fresh(latest.workspace, update)
    with _registered(main, replace=True):
        report = repo.checkout(latest.id, namespace=main.__dict__, merge=True, trust=trust)
    warn_not_restored(report, _default(filename), stacklevel=2)
    main.__dict__["__session__"] = str(_default(filename))
    return main.__dict__


# -- helpers -------------------------------------------------------------------


def _store_or_none(filename: Any) -> Repo | None:
    if hasattr(filename, "read"):
        return None
    from stashdb.compat.storefile import find_store

    return find_store(_default(filename))


def _target(module: types.ModuleType | str | None, name: str) -> types.ModuleType:
    """The module a load updates: ``module``, else the module named ``name`` (made if need be)."""
    if module is not None:
        target = _as_module(module)
        if target.__name__ != name:
            raise InvalidArguments(
                f"can't update module {target.__name__!r} with the saved state of module {name!r}"
            )
        return target
    if name == "__main__":
        return sys.modules["__main__"]
    imported = _importable(name)
    return imported if imported is not None else types.ModuleType(name)


def _importable(name: str) -> types.ModuleType | None:
    """The module ``name`` if it is imported or importable; None for a module-type object's name."""
    if name in sys.modules:
        return sys.modules[name]
    from importlib.util import find_spec

    try:
        found = find_spec(name) is not None
    except (ImportError, ValueError):
        found = False
    return importlib.import_module(name) if found else None


def _fresh(name: str, update: bool) -> types.ModuleType:
    """A new module named ``name``: empty but for builtins, or with ``update`` a copy of it."""
    main = types.ModuleType(name)
    if update:
        current = sys.modules.get(name) or importlib.import_module(name)
        main.__dict__.update(current.__dict__)
    else:
        main.__dict__["__builtins__"] = builtins
    return main


@contextmanager
def _registered(module: types.ModuleType, *, replace: bool = False) -> Iterator[None]:
    """``module`` findable by its name while values are unpickled into it, as dill does.

    A module-type object is in ``sys.modules`` for the duration only; with
    ``replace``, so is ``module`` in place of the module of that name.
    """
    name = module.__name__
    previous = sys.modules.get(name)
    if previous is module or (previous is not None and not replace):
        yield
        return
    sys.modules[name] = module
    try:
        yield
    finally:
        if previous is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = previous


def _is_module_file(filename: Any) -> bool:
    """Whether ``filename`` starts as a dill module file does (dill's own test, on 256 bytes)."""
    from pickletools import genops

    try:
        with open(filename, "rb") as handle:
            head = handle.read(256)
    except OSError:
        return False
    found_import = False
    try:
        for opcode, arg, _ in genops(head):
            if not found_import:
                found_import = opcode.name in ("GLOBAL", "SHORT_BINUNICODE") and str(
                    arg
                ).endswith("_import_module")
            elif opcode.name in ("UNICODE", "BINUNICODE", "SHORT_BINUNICODE"):
                return True
    except ValueError:  # the 256 bytes end inside an opcode
        pass
    return False


def _load_file(
    filename: Any, module: types.ModuleType | str | None, kwds: dict[str, Any]
) -> types.ModuleType | None:
    """`load_module` of a stream or of a file that is not a store: as dill loads it."""
    import dill

    if hasattr(filename, "read") or _is_module_file(filename):
        return dill.load_module(filename, module=module, **kwds)
    # A sessionstash file (a pickled dict of names) has no module: __main__'s, or module.
    from stashdb.compat.storefile import loaded_names
    from stashdb.workspace.dillfiles import read_session

    target = _as_module(module)
    target.__dict__.update(loaded_names(read_session(filename)))
    return None


def _load_file_asdict(filename: Any, update: bool, kwds: dict[str, Any]) -> dict[str, Any]:
    """`load_module_asdict` of a stream or of a file that is not a store: as dill loads it."""
    import dill

    if hasattr(filename, "read") or _is_module_file(filename):
        return dill.load_module_asdict(filename, update=update, **kwds)
    from stashdb.compat.storefile import loaded_names
    from stashdb.workspace.dillfiles import read_session

    main = _fresh("__main__", update)
    main.__dict__.update(loaded_names(read_session(filename)))
    main.__dict__["__session__"] = str(filename)
    return main.__dict__
