"""What a piece of code could have changed in a namespace, without running it again.

After each cell (or execution), a snapshot pickles only the names the code
could have changed: the names its code reads, assigns or deletes, the names
the functions and classes it uses refer to (a mutation made inside a function
the cell called), and any name whose binding changed. Everything else keeps its
entry from the previous snapshot without being pickled again
(`Repo.prepare_changes`). Code that runs a magic other than ``%time``,
``%timeit``, ``%prun`` or ``%stash`` could do anything: then the answer is
"everything".

Pure Python over the AST and the objects: no IPython import (IPython's
transformed cells call ``get_ipython().run_line_magic(...)``, which is read as
code), so the IPython extension and sessions share it.
"""

from __future__ import annotations

import ast
import functools
import sys
import types
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["CellTracker", "names_in_code", "reachable_names"]

#: Magics whose code argument is Python we can read (``%time x = f()``, ``%%timeit``).
_CODE_MAGICS = frozenset({"time", "timeit", "prun"})
#: Names through which code reaches variables it does not name (``exec("x.append(1)")``,
#: ``globals()["x"]``, ``sys.modules["__main__"].x``): code that uses them could
#: change anything, so the next snapshot captures everything.
DYNAMIC = frozenset({"exec", "eval", "compile", "globals", "vars", "locals", "__import__"})
_DYNAMIC_ATTRIBUTES = frozenset({"__dict__", "f_globals", "f_locals", "modules", "user_ns"})


def names_in_code(code: str) -> set[str] | None:
    """Every name the code mentions, or None when that cannot be known.

    Over-approximates on purpose (names inside function bodies, attribute
    bases): a name too many costs a pickling, a name too few loses a change.
    """
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if node.id in DYNAMIC:
                return None
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and node.attr in _DYNAMIC_ATTRIBUTES:
            return None
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            names.update(node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.alias):
            names.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.Call) and _magic_call(node):
            inner = _magic_code(node)
            if inner is None:
                return None  # %run, %load, %store -r …: could do anything
            if inner:
                found = names_in_code(inner)
                if found is None:
                    return None
                names |= found
    return names


def _magic_call(node: ast.Call) -> bool:
    func = node.func
    return (
        isinstance(func, ast.Attribute)
        and func.attr in ("run_line_magic", "run_cell_magic")
        and isinstance(func.value, ast.Call)
        and isinstance(func.value.func, ast.Name)
        and func.value.func.id == "get_ipython"
    )


def _magic_code(node: ast.Call) -> str | None:
    """The code a magic call runs ('' for %stash, which reports its own changes), or None."""
    args = [a.value if isinstance(a, ast.Constant) else None for a in node.args]
    if not args or not isinstance(args[0], str):
        return None
    name = args[0]
    if name == "stash":
        return ""
    if name not in _CODE_MAGICS:
        return None
    cell = node.func.attr == "run_cell_magic"  # type: ignore[attr-defined]
    code = args[2] if cell and len(args) > 2 else args[1] if len(args) > 1 else None
    return code if isinstance(code, str) else None


#: Containers up to this size are looked into for functions (`handlers["x"](…)`);
#: larger ones are taken to hold data.
_SMALL_CONTAINER = 1000
#: Objects looked at per cell while following functions; past it, the next
#: snapshot captures everything rather than risk missing a change.
_BUDGET = 20_000
#: Attributes through which wrappers reach what they wrap (functools.wraps,
#: lru_cache, numpy.vectorize, properties).
_WRAPPED = ("__wrapped__", "__func__", "func", "pyfunc", "fget", "fset", "fdel")


def _global_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def _closure_values(func: types.FunctionType) -> list[Any]:
    found = []
    for cell in func.__closure__ or ():
        try:
            found.append(cell.cell_contents)
        except ValueError:  # an empty cell
            continue
    return found


def _is_workspace(obj: Any, workspace: str) -> bool:
    return getattr(obj, "__module__", None) in (workspace, "__main__")


class _Follow:
    """Walks from a value to the code it can run, collecting the names that code can reach.

    A function reaches the globals its code names, and the objects its
    closure holds (matched to namespace names by identity); wrappers reach
    what they wrap; a class or an instance of a workspace class reaches its
    methods; a small container reaches its items.
    """

    def __init__(self, namespace: Mapping[str, Any]) -> None:
        self.namespace = namespace
        self.workspace = str(namespace.get("__name__", "__main__"))
        self.budget = _BUDGET
        self._seen: set[int] = set()
        self._by_id: dict[int, list[str]] | None = None

    def names_bound_to(self, obj: Any) -> list[str]:
        if self._by_id is None:
            self._by_id = {}
            for name, bound in self.namespace.items():
                self._by_id.setdefault(id(bound), []).append(name)
        return self._by_id.get(id(obj), [])

    def names(self, value: Any) -> set[str] | None:
        """Names ``value`` can reach when called; None: more than the budget allows."""
        found: set[str] = set()
        stack = [value]
        while stack:
            obj = stack.pop()
            if id(obj) in self._seen:
                continue
            self._seen.add(id(obj))
            self.budget -= 1
            if self.budget < 0:
                return None
            if obj is not value:
                found.update(self.names_bound_to(obj))
            stack.extend(self._inside(obj, found))
        return None if self.budget < 0 else found

    def _inside(self, obj: Any, found: set[str]) -> list[Any]:
        if isinstance(obj, types.FunctionType):
            names = _global_names(obj.__code__)
            if names & DYNAMIC or names & _DYNAMIC_ATTRIBUTES:
                self.budget = -1  # it can reach any name: nothing to follow, everything changed
            found |= names
            return [*_closure_values(obj), *self._wrapped(obj)]
        if isinstance(obj, (list, tuple, set, frozenset)):
            return list(obj) if len(obj) <= _SMALL_CONTAINER else []
        if isinstance(obj, dict):
            return list(obj.values()) if len(obj) <= _SMALL_CONTAINER else []
        if isinstance(obj, functools.partial):
            return [obj.func, *obj.args, *obj.keywords.values()]
        if isinstance(obj, types.MethodType):
            return [obj.__func__, obj.__self__]
        if isinstance(obj, type):
            if not _is_workspace(obj, self.workspace):
                return []
            return [a for klass in obj.__mro__ if _is_workspace(klass, self.workspace)
                    for a in vars(klass).values()]
        if isinstance(obj, (staticmethod, classmethod, property)):
            return self._wrapped(obj)
        if _is_workspace(type(obj), self.workspace):
            return [type(obj)]  # its methods (its own data is pickled with it)
        return self._wrapped(obj)  # lru_cache, vectorize …: what they wrap

    @staticmethod
    def _wrapped(obj: Any) -> list[Any]:
        inner = []
        for attr in _WRAPPED:
            try:
                found = getattr(obj, attr, None)
            except Exception:  # a property that raises: nothing to follow
                continue
            if callable(found):
                inner.append(found)
        return inner


def reachable_names(names: Iterable[str], namespace: Mapping[str, Any]) -> set[str] | None:
    """``names`` plus every namespace name the code they can run can reach.

    None when following them would look at more than `_BUDGET` objects: the
    caller then treats every name as changed.
    """
    follow = _Follow(namespace)
    seen = {n for n in names if n in namespace}
    todo = list(seen)
    while todo:
        reached = follow.names(namespace[todo.pop()])
        if reached is None:
            return None
        for ref in reached:
            if ref in namespace and ref not in seen:
                seen.add(ref)
                todo.append(ref)
    return seen


class CellTracker:
    """Which names of a namespace a cell could have changed."""

    def __init__(self, namespace: Mapping[str, Any]) -> None:
        self.namespace = namespace
        self._bindings: dict[str, int] = {}

    def _current(self) -> dict[str, int]:
        return {n: id(v) for n, v in self.namespace.items() if not n.startswith("_")}

    def before(self) -> None:
        """Note every name's binding before the cell runs (ids only: cheap)."""
        self._bindings = self._current()

    def changed(self, code: str) -> set[str] | None:
        """Names the cell that just ran could have changed; None: it could be any."""
        after = self._current()
        rebound = {n for n, i in after.items() if self._bindings.get(n) != i}
        rebound |= self._bindings.keys() - after.keys()
        mentioned = names_in_code(code)
        if mentioned is None:
            return None
        reached = reachable_names(mentioned | rebound, self.namespace)
        if reached is None:
            return None
        changed = rebound | reached
        return changed | sharing_memory(changed, self.namespace)


#: Past this many arrays in the namespace, memory sharing is not worked out: a cell
#: that changed an array could have changed any other; the snapshot takes them all.
_MOST_ARRAYS = 500


def sharing_memory(changed: set[str], namespace: Mapping[str, Any]) -> set[str]:
    """Names whose buffers may overlap those of ``changed`` names: they changed with them.

    ``v = arr[:3]`` then ``arr[:] = 1`` changes ``v`` too, though the cell never
    named it. numpy's bounds check (`numpy.may_share_memory`) is cheap; only
    arrays (and the arrays inside pandas objects) are compared, and only when
    numpy is already loaded.
    """
    numpy = sys.modules.get("numpy")
    if numpy is None:
        return set()
    arrays: dict[str, list[Any]] = {}
    for name, value in namespace.items():
        found = _arrays_of(value, numpy)
        if found:
            arrays[name] = found
    if len(arrays) > _MOST_ARRAYS:
        return set(arrays)
    touched = [a for n in changed if n in arrays for a in arrays[n]]
    return {
        name for name, own in arrays.items()
        if name not in changed
        and any(numpy.may_share_memory(a, b) for a in own for b in touched)
    }


def _arrays_of(value: Any, numpy: Any) -> list[Any]:
    if isinstance(value, numpy.ndarray):
        return [value]
    manager = getattr(value, "_mgr", None)  # pandas Series and DataFrame: their blocks
    if manager is not None and type(value).__module__.startswith("pandas"):
        try:
            return [a for a in manager.arrays if isinstance(a, numpy.ndarray)]
        except Exception:  # another pandas, another layout: nothing to compare
            return []
    return []
