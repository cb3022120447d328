"""The names stored pickles know stashdb's own objects by: part of format 1, and the old layout.

A stored pickle names a few of stashdb's own callables by module and name
(docs/format.md, "Object encoding"): ``stashdb.serialize.Group``,
``stashdb.serialize._make_enum``, ``stashdb.serialize._create_function``,
``stashdb.serialize._set_function_state`` and
``stashdb.reducers.strings_from_codes``. Every stashdb writes these names and
every later one must read them, wherever the code lives now (those two
modules were the package's layout when format 1 was written). `stored_as`
gives a callable its stored name and makes that name importable, so the C
pickler writes it; `find` resolves a stored name for the unpickler, importing
the module that defines it now.

A user's own values may hold stashdb objects too (a `VerifyReport` kept in a
notebook, a caught `InvalidRefName`): their pickles name the module the class
lived in when they were stored. `moved` finds where the classes of stashdb
0.1.0's flat layout live now, so those values restore as well.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["StoredModules", "find", "moved", "stored_as"]

#: Stored module name -> the module that defines its callables now.
_DEFINED_IN = {
    "stashdb.serialize": "stashdb.pickling.pickler",
    "stashdb.reducers": "stashdb.pickling.reducers",
}

#: Modules of stashdb 0.1.0's flat layout -> where their names may be now, in order.
_MOVED = {
    "stashdb.maintenance": ("stashdb.storage.maintenance",),
    "stashdb.store": ("stashdb.storage.commits", "stashdb.storage.store"),
    "stashdb.chunks": ("stashdb.storage.objects", "stashdb.storage.chunking"),
    "stashdb.chunking": ("stashdb.storage.chunking",),
    "stashdb.refs": ("stashdb.errors", "stashdb.storage.refs", "stashdb.model"),
    "stashdb.revs": ("stashdb.storage.revs",),
    "stashdb.serialize": ("stashdb.pickling.pickler", "stashdb.pickling.grouping"),
    "stashdb.reducers": ("stashdb.pickling.reducers",),
    "stashdb.preview": ("stashdb.pickling.preview",),
    "stashdb.workspace": (
        "stashdb.workspace.capture", "stashdb.workspace.loader", "stashdb.workspace.names",
        "stashdb.workspace.environment",
    ),
    "stashdb.dillfiles": (
        "stashdb.errors", "stashdb.workspace.dillfiles", "stashdb.workspace.main_module",
    ),
    "stashdb.scripts": ("stashdb.errors",),
    "stashdb.ipython": ("stashdb.ipython.shell", "stashdb.workspace.tracker"),
    "stashdb.db.engine": ("stashdb.storage.engine",),
    "stashdb.db.format": ("stashdb.storage.format",),
    "stashdb.db.schema": ("stashdb.storage.schema",),
    "stashdb.db.sqlite_reader": ("stashdb.storage.sqlite_driver",),
}

_T = TypeVar("_T", bound=Callable[..., Any])


def stored_as(module_name: str) -> Callable[[_T], _T]:
    """Decorate a callable that stored pickles refer to as ``module_name.<its name>``.

    ``module_name`` is one of the stored modules (``_DEFINED_IN``).
    """

    def register(obj: _T) -> _T:
        module = sys.modules.get(module_name)
        if module is None:
            module = types.ModuleType(module_name, f"Stored names of format 1: {__name__}.")
            sys.modules[module_name] = module
            # As an import would: dill looks a function's module up as an attribute.
            parent, _, child = module_name.rpartition(".")
            setattr(importlib.import_module(parent), child, module)
        obj.__module__ = module_name
        setattr(module, obj.__qualname__, obj)
        return obj

    return register


def find(module: str, name: str) -> Any | None:
    """The callable a stored pickle calls ``module.name``; None if it is not a stored name."""
    defined_in = _DEFINED_IN.get(module)
    if defined_in is None:
        return None
    importlib.import_module(defined_in)  # defining them registers their stored names
    return getattr(sys.modules[module], name, None)


def moved(module: str, name: str) -> Any | None:
    """Where ``module.name`` of stashdb 0.1.0's layout is now; None if nowhere we know."""
    for candidate in _MOVED.get(module, ()):
        found = getattr(importlib.import_module(candidate), name, None)
        if found is not None:
            return found
    return None


class StoredModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Makes ``import stashdb.serialize`` (and ``stashdb.reducers``) work in any process.

    So a stored pickle loads with plain ``pickle.load`` wherever stashdb is
    installed (``stashdb show REV:NAME --to FILE`` writes such files).
    Installed by ``import stashdb``; imports what defines the names only when
    one of the two modules is asked for.
    """

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        """A spec for the stored modules; None for every other module."""
        if fullname not in _DEFINED_IN:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: Any) -> types.ModuleType:
        """The stored module, made by importing the module that defines its names."""
        importlib.import_module(_DEFINED_IN[spec.name])
        return sys.modules[spec.name]

    def exec_module(self, module: types.ModuleType) -> None:
        """Nothing to run: the names are in it already."""

    @classmethod
    def install(cls) -> None:
        """Put the finder on ``sys.meta_path`` (once)."""
        if not any(isinstance(f, cls) for f in sys.meta_path):
            sys.meta_path.append(cls())
