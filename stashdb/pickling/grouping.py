"""Which names share references: a walk that ties names whose values share mutable objects.

Names tied together are pickled as one group, so that ``b is a`` still holds
after checkout (DESIGN.md, "Commit", step 3).
"""

from __future__ import annotations

import datetime
import enum
import gc
import sys
import types
from collections.abc import Mapping
from typing import Any

__all__ = ["find_groups"]

#: Types whose instances are never shared state worth tying names for.
_ATOMS = frozenset({int, float, complex, str, bytes, bool, type(None), type(Ellipsis), range})
#: Never entered, never tie names together (DESIGN.md: types, modules, functions).
_OPAQUE = (
    type,
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodDescriptorType,
    types.WrapperDescriptorType,
    types.MethodWrapperType,
    types.CodeType,
    types.FrameType,
)
#: Entered (they may hold shared mutable objects) but do not tie names themselves.
_IMMUTABLE_CONTAINERS = (tuple, frozenset)


def _never_ties() -> tuple[type, ...]:
    # Shared singletons that many unrelated values point at. numpy dtypes: every
    # float64 array refers to the same one (measured: the only object two
    # unrelated DataFrames share). Enum members and tzinfo objects: every value
    # holding Color.RED or a UTC timestamp would otherwise be one group.
    found: list[type] = [enum.Enum, datetime.tzinfo]
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        found.append(numpy.dtype)
    return tuple(found)


_SKIP, _ENTER, _TIE = 1, 2, 3


class _TypeKinds(dict[type, int]):
    """What the walk does with instances of each type, decided once per type."""

    def __init__(self, never_ties: tuple[type, ...]) -> None:
        super().__init__()
        self._never_ties = never_ties

    def learn(self, cls: type) -> int:
        if cls in _ATOMS or issubclass(cls, _OPAQUE) or issubclass(cls, self._never_ties):
            kind = _SKIP
        elif issubclass(cls, _IMMUTABLE_CONTAINERS):
            kind = _ENTER
        else:
            kind = _TIE
        self[cls] = kind
        return kind


def find_groups(values: Mapping[str, Any]) -> list[list[str]]:
    """Partition names so that names whose values share mutable objects are together.

    A walk over ``gc.get_referents`` that never enters classes, functions or
    modules, with the collector paused: fast, and unlike pickle memos it does not
    see class-level state (pandas' ``_metadata``) as sharing (DESIGN.md).

    Returns:
        Groups of names, each sorted, in order of first name.
    """
    names = list(values)
    parent = list(range(len(names)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)

    kinds = _TypeKinds(_never_ties())
    kind_of = kinds.get
    owner: dict[int, int] = {}  # id of a tying object -> index of the first name reaching it
    get_referents = gc.get_referents
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for i, name in enumerate(names):
            root = values[name]
            kind = kind_of(type(root)) or kinds.learn(type(root))
            if kind == _SKIP:
                continue
            if kind == _TIE:
                j = owner.setdefault(id(root), i)
                if j != i:
                    union(i, j)
                    continue
            seen: set[int] = set()  # immutable containers already entered for this name
            stack = [root]
            while stack:
                for ref in get_referents(stack.pop()):
                    kind = kind_of(type(ref)) or kinds.learn(type(ref))
                    if kind == _SKIP:
                        continue
                    rid = id(ref)
                    if kind == _TIE:
                        first = owner.get(rid)
                        if first is None:
                            owner[rid] = i
                        else:
                            if first != i:
                                # The other name's walk already went below this object.
                                union(i, first)
                            continue
                    elif rid in seen:
                        continue
                    else:
                        seen.add(rid)
                    stack.append(ref)
    finally:
        if was_enabled:
            gc.enable()

    groups: dict[int, list[str]] = {}
    for i, name in enumerate(names):
        groups.setdefault(find(i), []).append(name)
    return [sorted(g) for _, g in sorted(groups.items())]
