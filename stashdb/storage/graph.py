"""Walks of the commit graph, each sure to end.

A damaged or hostile store can hold a loop in its history (a commit that is
its own parent, two that point at each other): every walk here remembers
where it has been, so it ends, and `cycles` finds such loops for `verify`.
The graph is ``{commit id: [parent ids, first parent first]}``, as
`stashdb.storage.queries.edges` reads it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

__all__ = ["Graph", "cycles", "first_parents", "reachable"]

Graph = Mapping[str, Sequence[str]]


def reachable(graph: Graph, starts: Iterable[str]) -> list[str]:
    """Every commit reachable from ``starts`` (themselves included), each once."""
    seen: dict[str, None] = {}
    stack = list(starts)
    while stack:
        commit_id = stack.pop()
        if commit_id in seen:
            continue
        seen[commit_id] = None
        stack.extend(graph.get(commit_id, ()))
    return list(seen)


def first_parents(graph: Graph, tip: str) -> list[str]:
    """The commits from ``tip`` back along first parents, newest first (a loop ends it)."""
    chain = [tip]
    seen = {tip}
    while True:
        parents = graph.get(chain[-1], ())
        if not parents or parents[0] in seen:
            return chain
        chain.append(parents[0])
        seen.add(parents[0])


def cycles(graph: Graph, nodes: Iterable[str]) -> list[list[str]]:
    """The loops among ``nodes``: each a list of commit ids, each loop once."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in nodes:
        if start in state:
            continue
        path: list[str] = []
        stack: list[tuple[str, int]] = [(start, 0)]
        while stack:
            node, index = stack.pop()
            if index == 0:
                state[node] = 1
                path.append(node)
            parents = graph.get(node, ())
            if index < len(parents):
                stack.append((node, index + 1))
                parent = parents[index]
                if state.get(parent) == 1:
                    found.append(path[path.index(parent) :])
                elif parent not in state:
                    stack.append((parent, 0))
            else:
                state[node] = 2
                path.pop()
    return found
