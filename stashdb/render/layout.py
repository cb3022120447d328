"""Where each commit sits in a drawing of the commit graph, like ``git log --graph``.

One layout for every face: the terminal draws it as ``* |`` characters
(`stashdb.render.terminal.graph_lines`), the web viewer as SVG lines. It is
computed from ids and parents only, so a history of 10,000 commits is laid out
before one page of it is loaded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["GraphRow", "graph_layout"]


@dataclass(frozen=True)
class GraphRow:
    """One commit's row: the lanes (commit ids awaited) across it, and its own lane."""

    commit_id: str
    column: int  # its lane, an index into ``lanes``
    lanes: tuple[str, ...]  # the lanes at this row, the commit's own included
    below: tuple[str, ...]  # the lanes under it: its parents have taken its place
    starts: bool  # nothing above leads to it (a branch tip)

    def sources(self, parents: Sequence[str] = ()) -> list[tuple[int, int]]:
        """``(lane here, lane below)`` for every line leaving this row downwards: lanes
        passing by, and the commit's lines to its ``parents`` (wherever their lanes are)."""
        lines = set()
        for j, lane in enumerate(self.below):
            if lane in self.lanes and self.lanes.index(lane) != self.column:
                lines.add((self.lanes.index(lane), j))  # a lane passing by
            if lane in parents or lane not in self.lanes:
                lines.add((self.column, j))  # a parent of this commit
        return sorted(lines)


def graph_layout(ids: Sequence[str], parents: Mapping[str, Sequence[str]]) -> list[GraphRow]:
    """The rows of ``ids`` (newest first), each commit's parents from ``parents``."""
    lanes: list[str] = []
    rows = []
    for commit_id in ids:
        starts = commit_id not in lanes
        if starts:
            lanes.append(commit_id)
        column = lanes.index(commit_id)
        across = tuple(lanes)
        own = parents.get(commit_id, ())
        lanes[column : column + 1] = [p for p in own[:1] if p not in lanes]
        lanes.extend(p for p in own[1:] if p not in lanes)
        rows.append(GraphRow(commit_id, column, across, tuple(lanes), starts))
    return rows
