"""How the workspace's own definitions are stored by value, and rebuilt.

A class or function defined in the workspace cannot be pickled by reference
(a fresh process has no ``__main__.Point``): it is stored by value, with dill,
and everything else refers to it by its name in the snapshot. Some kinds need
help to come back as the same thing, and each gets a reducer here and a
rebuilding callable whose stored name is part of the format
(`stashdb.pickling.stored_names`; docs/format.md):

- functions whose globals are a plain dict (not a module's): bound to the
  namespace they are restored into (`_create_function`);
- Enum and Flag classes, rebuilt from their members (`_make_enum`);
- ``functools.lru_cache`` / ``functools.cache`` wrappers: the wrapped function
  by value, wrapped again on restore (the cache itself starts empty);
- ``typing.TypeVar``, ``ParamSpec`` and ``NewType``, which pickle as a reference
  to their own name;
- ``functools.cached_property`` (whose lock, in Python 3.11, cannot be pickled).

Which values count as the workspace's own is `is_workspace_defined`.
"""

from __future__ import annotations

import enum
import functools
import sys
import types
import typing
from collections.abc import Mapping
from typing import Any

from stashdb.pickling.stored_names import stored_as

__all__ = ["is_workspace_defined", "reduce_definition"]

_TYPE_VARIABLES: tuple[type, ...] = tuple(
    t for t in (getattr(typing, n, None) for n in ("TypeVar", "ParamSpec", "TypeVarTuple"))
    if isinstance(t, type)
)
_NEW_TYPE = typing.NewType if isinstance(typing.NewType, type) else None  # a class from 3.10
_LRU_WRAPPER = type(functools.lru_cache(maxsize=None)(lambda: None))


def is_workspace_defined(value: Any, module: str) -> bool:
    """Whether ``value`` is a definition of the workspace itself: stored by value, by name.

    Classes and functions whose module is the workspace's (or ``__main__``),
    also ``lru_cache`` wrappers and type variables defined there, and classes
    or functions no import can find (``dataclasses.make_dataclass`` gives its
    classes the module ``types``): pickled by reference, they would not come back.
    """
    if isinstance(value, (type, types.FunctionType)):
        home = getattr(value, "__module__", None)
        return home in (module, "__main__") or not _importable(value)
    if isinstance(value, (_LRU_WRAPPER, *_TYPE_VARIABLES)) or (
        _NEW_TYPE is not None and isinstance(value, _NEW_TYPE)
    ):
        return getattr(value, "__module__", None) in (module, "__main__")
    return False


def _importable(value: Any) -> bool:
    """Whether ``module.qualname`` finds ``value`` again (what pickling by reference needs)."""
    found: Any = sys.modules.get(str(getattr(value, "__module__", "")))
    for part in str(getattr(value, "__qualname__", "")).split("."):
        if found is None or part == "<locals>":
            return False
        found = getattr(found, part, None)
    return found is value


def reduce_definition(obj: Any, is_root: bool, namespace: Mapping[str, Any]) -> Any:
    """How dill should store ``obj``, when it is one of the kinds above; else NotImplemented.

    ``is_root``: it is the value being stored (not a reference to another name).
    """
    if isinstance(obj, functools.cached_property):
        return (functools.cached_property, (obj.func,))  # made anew: a fresh lock
    if is_root and isinstance(obj, enum.EnumMeta):
        return _reduce_enum_class(obj)
    if is_root and isinstance(obj, _LRU_WRAPPER):
        parameters = obj.cache_parameters()
        return (_lru_cached, (obj.__wrapped__, parameters["maxsize"], parameters["typed"]))
    if is_root and isinstance(obj, _TYPE_VARIABLES):
        return _reduce_type_variable(obj)
    if is_root and _NEW_TYPE is not None and isinstance(obj, _NEW_TYPE):
        return (_make_newtype, (obj.__name__, obj.__supertype__, obj.__module__))
    if type(obj) is types.FunctionType and obj.__globals__ is namespace and not _is_module_dict(
        namespace
    ):
        return _reduce_function(obj)
    return NotImplemented


def _is_module_dict(namespace: Mapping[str, Any]) -> bool:
    module = sys.modules.get(str(namespace.get("__name__", "")))
    return module is not None and getattr(module, "__dict__", None) is namespace


def _reduce_function(fn: types.FunctionType) -> Any:
    # dill copies the globals of a function whose namespace is a plain dict (not
    # a module's); this keeps them the live namespace ("ns" placeholder) instead.
    state = {
        "__qualname__": fn.__qualname__,
        "__module__": fn.__module__,
        "__doc__": fn.__doc__,
        "__kwdefaults__": fn.__kwdefaults__,
        "__annotations__": fn.__annotations__,
        "__dict__": fn.__dict__,
    }
    args = (fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
    return (_create_function, args, state, None, None, _set_function_state)


@stored_as("stashdb.serialize")
def _set_function_state(fn: types.FunctionType, state: dict[str, Any]) -> None:
    for key, value in state.items():
        if key == "__dict__":
            fn.__dict__.update(value)
        else:
            setattr(fn, key, value)


def _reduce_enum_class(cls: enum.EnumMeta) -> Any:
    # dill cannot store an Enum class defined in __main__ (its members refer back
    # to the class, and dill falls back to a by-name reference that a fresh
    # process cannot resolve). Rebuild it from its members and its own body.
    metaclass = type(cls)
    bases = cls.__bases__
    probe = metaclass("_probe", bases, metaclass.__prepare__("_probe", bases))
    internal = set(vars(probe)) - {"__doc__", "__module__", "__qualname__"}
    by_name: Mapping[str, Any] = cls.__members__
    members = [(name, member._value_) for name, member in by_name.items()]
    body = {
        key: value
        for key, value in vars(cls).items()
        if key not in internal and key not in cls.__members__
        # What the metaclass bound to the class itself (Flag's _iter_member_):
        # made again when the class is, and pickling it would recurse.
        and getattr(value, "__self__", None) is not cls
    }
    return (_make_enum, (metaclass, cls.__name__, bases, members, body))


@stored_as("stashdb.serialize")
def _make_enum(
    metaclass: type,
    name: str,
    bases: tuple[type, ...],
    members: list[tuple[str, Any]],
    body: dict[str, Any],
) -> Any:
    """Rebuild an Enum class stored by `_reduce_enum_class` (part of the stored format)."""
    namespace = metaclass.__prepare__(name, bases)
    for key, value in members:
        namespace[key] = value
    for key, value in body.items():
        namespace[key] = value
    return metaclass(name, bases, namespace)


# -- loading -----------------------------------------------------------------


@stored_as("stashdb.serialize")
def _create_function(
    fcode: types.CodeType,
    fglobals: dict[str, Any],
    fname: str | None = None,
    fdefaults: tuple[Any, ...] | None = None,
    fclosure: tuple[Any, ...] | None = None,
    fdict: dict[str, Any] | None = None,
    fkwdefaults: dict[str, Any] | None = None,
) -> types.FunctionType:
    """dill's `_create_function`, except that an empty globals dict is kept.

    dill replaces an empty globals dict by a new one (``fglobals or dict()``), so a
    function restored into an empty namespace would not see that namespace.
    """
    func = types.FunctionType(fcode, fglobals, fname, fdefaults, fclosure)
    if fdict is not None:
        func.__dict__.update(fdict)
    if fkwdefaults is not None:
        func.__kwdefaults__ = fkwdefaults
    return func




@stored_as("stashdb.serialize")
def _lru_cached(function: Any, maxsize: int | None, typed: bool) -> Any:
    """Wrap ``function`` in ``functools.lru_cache`` again (stored by `reduce_definition`)."""
    return functools.lru_cache(maxsize=maxsize, typed=typed)(function)


def _reduce_type_variable(var: Any) -> Any:
    kind = type(var).__name__
    constraints = tuple(getattr(var, "__constraints__", ()))
    bound = getattr(var, "__bound__", None)
    variance = (bool(getattr(var, "__covariant__", False)),
                bool(getattr(var, "__contravariant__", False)))
    made_in = var.__module__
    return (_make_type_variable, (kind, var.__name__, constraints, bound, *variance, made_in))


@stored_as("stashdb.serialize")
def _make_type_variable(
    kind: str,
    name: str,
    constraints: tuple[Any, ...],
    bound: Any,
    covariant: bool,
    contravariant: bool,
    module: str,
) -> Any:
    """A TypeVar, ParamSpec or TypeVarTuple like the one stored (its module too)."""
    maker = getattr(typing, kind)
    if kind == "TypeVarTuple":
        made = maker(name)
    elif kind == "ParamSpec":
        made = maker(name, bound=bound, covariant=covariant, contravariant=contravariant)
    else:
        made = maker(name, *constraints, bound=bound, covariant=covariant,
                     contravariant=contravariant)
    made.__module__ = module  # typing takes the caller's module: the unpickler's
    return made


@stored_as("stashdb.serialize")
def _make_newtype(name: str, supertype: Any, module: str) -> Any:
    """A ``typing.NewType`` like the one stored (its module too)."""
    new_type: Any = typing.NewType  # a call with a name known only now
    made = new_type(name, supertype)
    made.__module__ = module
    return made
