"""Which names of a namespace a snapshot holds, and which it never touches.

``_``-prefixed names (``__builtins__``, IPython's ``_i1`` …) and IPython's own
are left out of every commit unless asked for by name, and a checkout never
removes them.
"""

from __future__ import annotations

import fnmatch
import sys
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from stashdb.errors import NameNotInNamespace

__all__ = ["IPYTHON_NAMES", "MAX_NAME", "excluded_by_default", "select_names", "shell_names"]

#: Names IPython puts in a user namespace; never committed unless asked for by name.
IPYTHON_NAMES = frozenset({"In", "Out", "exit", "quit", "get_ipython"})
#: Longest name a manifest holds (the entries.name column).
MAX_NAME = 255


def excluded_by_default(name: str, hidden: Collection[str] = ()) -> bool:
    """``_``-prefixed names (``__builtins__``, IPython's ``_i1`` …) and IPython's own."""
    return name.startswith("_") or name in IPYTHON_NAMES or name in hidden


def shell_names(namespace: Mapping[str, Any]) -> set[str]:
    """Names a running IPython shell put in ``namespace`` itself (its ``user_ns_hidden``).

    Covers what the static list cannot (IPython 8 adds its own ``open``), and
    only while they still hold IPython's objects: a user's own ``open`` counts.
    IPython is consulted only when it is already imported.
    """
    ipython = sys.modules.get("IPython")
    get_shell = getattr(ipython, "get_ipython", None)
    shell = get_shell() if get_shell is not None else None
    if shell is None or getattr(shell, "user_ns", None) is not namespace:
        return set()
    hidden = getattr(shell, "user_ns_hidden", {})
    return {n for n, v in hidden.items() if n in namespace and namespace[n] is v}


def select_names(
    namespace: Mapping[str, Any],
    only: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
) -> list[str]:
    """The names of ``namespace`` a commit stores, sorted.

    ``only`` and ``exclude`` are glob patterns. A default-excluded name is
    committed only when ``only`` names it exactly.

    Raises:
        NameNotInNamespace: an ``only`` pattern matches nothing.
    """
    only_list = [only] if isinstance(only, str) else list(only or [])
    exclude_list = [exclude] if isinstance(exclude, str) else list(exclude or [])
    hidden = shell_names(namespace)
    names = []
    unmatched = set(only_list)
    for name in namespace:
        if not isinstance(name, str):
            continue
        if only_list:
            hits = [p for p in only_list if p == name or fnmatch.fnmatchcase(name, p)]
            unmatched.difference_update(hits)
            if not hits or (excluded_by_default(name, hidden) and name not in only_list):
                continue
        elif excluded_by_default(name, hidden):
            continue
        if any(fnmatch.fnmatchcase(name, p) for p in exclude_list):
            continue
        names.append(name)
    if unmatched:
        raise NameNotInNamespace(sorted(unmatched))
    return sorted(names)
