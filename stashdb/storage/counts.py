"""How many names each commit added, changed and removed, counted in SQL.

The log shows ``+a ~c -r`` for every commit. Comparing two manifests in
Python builds every entry of both: for a page of 50 commits of a
1,000-variable history, 100,000 entries. Here the database compares the rows
(one join per commit on the manifest's primary key) and returns three numbers.
`Entry.same_value` is the rule; `_DIFFERS` is the same rule in SQL.
"""

from __future__ import annotations

from collections.abc import Sequence

from stashdb.storage.queries import SQL, batches, in_list

__all__ = ["change_counts"]


def _same(column: str) -> str:
    """SQL: the column is equal in ``c`` and ``p``, NULLs equal (portable to every backend)."""
    return f"(c.{column} = p.{column} OR (c.{column} IS NULL AND p.{column} IS NULL))"


#: SQL for `Entry.same_value` negated, 1 or 0, between manifest rows ``c`` and ``p``.
_DIFFERS = (
    "CASE WHEN c.kind <> p.kind THEN 1"
    f" WHEN c.kind = 'module' THEN CASE WHEN {_same('module')} THEN 0 ELSE 1 END"
    f" WHEN c.kind = 'skipped' THEN CASE WHEN {_same('type_name')} AND {_same('reason')}"
    " THEN 0 ELSE 1 END"
    " WHEN c.value_hash IS NOT NULL AND p.value_hash IS NOT NULL"
    " THEN CASE WHEN c.value_hash = p.value_hash THEN 0 ELSE 1 END"
    f" ELSE CASE WHEN {_same('object_id')} AND {_same('slot')} THEN 0 ELSE 1 END END"
)


def change_counts(sql: SQL, ids: Sequence[str]) -> dict[str, tuple[int, int, int]]:
    """``{commit id: (added, changed, removed)}`` against the first parent, counted in SQL.

    The same answer as comparing the two manifests with `Entry.same_value`,
    without loading them: a page of a 1,000-variable history would otherwise
    build 200,000 entries. Not for sealed stores (type and reason are sealed
    with a fresh nonce each, so equal ones compare unequal here).
    """
    counts: dict[str, list[int]] = {i: [0, 0, 0] for i in ids}
    sizes: dict[str, int] = {}  # names in the commit
    firsts: dict[str, str] = {}
    for batch in batches(list(counts)):
        cond, params = in_list("c.commit_id", batch)
        for r in sql.rows(
            "SELECT c.commit_id AS id, COUNT(*) AS n,"
            " SUM(CASE WHEN p.name IS NULL THEN 1 ELSE 0 END) AS added,"
            f" SUM(CASE WHEN p.name IS NULL THEN 0 ELSE {_DIFFERS} END) AS changed"
            " FROM entries c"
            " LEFT JOIN commit_parents cp ON cp.commit_id = c.commit_id AND cp.position = 0"
            " LEFT JOIN entries p ON p.commit_id = cp.parent_id AND p.name = c.name"
            f" WHERE {cond} GROUP BY c.commit_id",
            params,
        ):
            counts[r.id][0:2] = [int(r.added), int(r.changed)]
            sizes[r.id] = int(r.n)
        cond, params = in_list("commit_id", batch)
        rows = sql.rows(
            f"SELECT commit_id, parent_id FROM commit_parents WHERE position = 0 AND {cond}",
            params,
        )
        firsts.update((r.commit_id, r.parent_id) for r in rows)
    # What the parent had and the commit kept is (its names - added): the rest was removed.
    # Counting a manifest is a range scan; matching names again would be a lookup per name.
    parent_sizes: dict[str, int] = {}
    for batch in batches(sorted(set(firsts.values()))):
        cond, params = in_list("commit_id", batch)
        for r in sql.rows(
            f"SELECT commit_id, COUNT(*) AS n FROM entries WHERE {cond} GROUP BY commit_id",
            params,
        ):
            parent_sizes[r.commit_id] = int(r.n)
    for commit_id, parent in firsts.items():
        kept = sizes.get(commit_id, 0) - counts[commit_id][0]
        counts[commit_id][2] = parent_sizes.get(parent, 0) - kept
    return {i: (a, c, r) for i, (a, c, r) in counts.items()}
