"""The names stored pickles know stashdb's own callables by: part of format 1.

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
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["find", "stored_as"]

#: Stored module name -> the module that defines its callables now.
_DEFINED_IN = {
    "stashdb.serialize": "stashdb.pickling.pickler",
    "stashdb.reducers": "stashdb.pickling.reducers",
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
    """The callable a stored pickle calls ``module.name``; None if it is not a stored name.

    Raises:
        AttributeError: ``module`` is a stored module, but has no such name.
    """
    defined_in = _DEFINED_IN.get(module)
    if defined_in is None:
        return None
    importlib.import_module(defined_in)  # defining them registers their stored names
    return getattr(sys.modules[module], name)
