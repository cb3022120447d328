"""Metadata as rich text and tables, for people at a terminal or in IPython.

Stored strings are never read as rich markup (`printable`, `markup_safe`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from rich.console import Console, ConsoleOptions, RenderResult
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from stashdb.model import (
    ChangeCounts,
    CheckoutReport,
    Commit,
    Diff,
    Entry,
    Ref,
    SnapshotCost,
    Version,
    format_size,
)
from stashdb.render.layout import graph_layout
from stashdb.trust.policy import Signer

__all__ = [
    "checkout_report",
    "commit_header",
    "commit_report",
    "diff_table",
    "du_table",
    "entries_table",
    "entry_detail",
    "graph_lines",
    "history_table",
    "log_table",
    "markup_safe",
    "printable",
    "refs_table",
    "sessions_table",
    "signer_text",
    "snapshot_cost_lines",
]


# -- stored strings on a terminal -----------------------------------------------------

#: Bidirectional-text controls: they reorder what a terminal shows (a name can
#: look like another). Shown as escapes like the C0 and C1 control characters.
_BIDI = frozenset(range(0x202A, 0x202F)) | frozenset(range(0x2066, 0x206A)) | {0x200E, 0x200F}


def printable(text: object) -> str:
    """``text`` with its control characters shown as escapes (``\\x1b``), newlines and tabs kept.

    Every string that comes from a store (names, messages, branches, types,
    previews, users, hosts) goes through this before it reaches a terminal: a
    store someone sent you must not be able to move the cursor, retitle the
    window or rewrite what you see.
    """
    value = str(text)
    if value.isprintable():
        return value
    out = []
    for ch in value:
        code = ord(ch)
        if ch in "\n\t" or (ch.isprintable() and code not in _BIDI):
            out.append(ch)
        elif code < 0x100:
            out.append(f"\\x{code:02x}")
        else:
            out.append(f"\\u{code:04x}")
    return "".join(out)


def markup_safe(text: object) -> str:
    """``text`` made `printable` and escaped for rich markup, for an f-string that has markup."""
    return escape(printable(text))


def _text(value: object, style: str | None = None) -> Text:
    return Text(printable(value), style=style or "")


def signer_text(signer: Signer) -> str:
    """Who signed a commit, in a few words: ``alice@lab``, ``unsigned``, ``untrusted 3f2a9c1d``."""
    if signer.key_id is None:
        return "unsigned"
    if not signer.trusted:
        return f"untrusted {signer.key_id[:8]}"
    return signer.name or signer.key_id[:8]


# -- reports ------------------------------------------------------------------


def commit_report(commit: Commit) -> Text:
    """What a commit did: ``[branch id] message``, counts, then each skipped name."""
    first, counts, *skipped = commit.summary()
    text = Text()
    text.append("[")
    text.append(printable(commit.branch), style="bold")
    text.append(" ")
    text.append(commit.short_id, style="yellow")
    text.append(printable(f"] {first.split('] ', 1)[1]}") + f"\n{counts}")
    for line in skipped:
        text.append("\n")
        text.append(printable(line), style="red")
    return text


def commit_header(commit: Commit, signer: Signer | None = None) -> Text:
    """The head of ``show``: id, branch, tags, date, author, signer, versions, message."""
    text = Text()
    text.append("commit ")
    text.append(printable(commit.id), style="yellow")
    text.append(printable(f"  ({commit.branch})"))
    if commit.tags:
        text.append(printable(f"  tags: {', '.join(commit.tags)}"))
    when = f"{commit.time.astimezone():%Y-%m-%d %H:%M:%S %z}"
    text.append(printable(f"\ndate   {when}   by {commit.user}@{commit.host}"))
    if signer is not None:
        if signer.key_id is None:
            text.append("\nsigned ")
            text.append("no: unsigned (checkout needs trust)", style="red")
        elif signer.trusted:
            text.append(printable(f"\nsigned by {signer.name} (key {signer.key_id})"))
        else:
            text.append("\nsigned ")
            text.append(printable(f"by key {signer.key_id}, not trusted here"), style="red")
    text.append(printable(f"\npython {commit.python}, dill {commit.dill}"))
    text.append(printable(f"\n\n    {commit.message or '(no message)'}\n"))
    return text


def entry_detail(entry: Entry, commit: Commit) -> Text:
    """Everything known about one name of a snapshot, without unpickling it."""
    rows = [
        ("name", entry.name), ("commit", f"{commit.id} ({commit.branch})"),
        ("type", entry.type_name), ("kind", f"{entry.kind}, {entry.status}"),
        ("pickled", f"{format_size(entry.size)} ({entry.size:,} bytes)"),
        ("stored", f"{format_size(entry.stored_size)} ({entry.stored_size:,} bytes)"),
        ("pickling", f"{entry.seconds:.3f} s"),
    ]
    rows += [(label, value) for label, value in (
        ("shape", entry.shape), ("object", entry.object_id), ("module", entry.module),
        ("version", entry.version), ("skipped", entry.reason),
        ("shares with", ", ".join(entry.group) or None),
    ) if value]
    rows.append(("value" if entry.literal else "preview", entry.literal or entry.preview))
    return _text("\n".join(f"{label:<12} {value}" for label, value in rows))


def checkout_report(report: CheckoutReport, title: str | None = None) -> Text:
    """A checkout's `CheckoutReport.summary`, names left as they were in red, warnings in yellow."""
    first, *rest = report.summary(title)
    text = _text(first)
    for line in rest:
        text.append("\n")
        text.append(printable(line), style="yellow" if line.startswith("  warning") else "red")
    return text


# -- tables -------------------------------------------------------------------


def _local(when: datetime) -> str:
    return when.astimezone().strftime("%Y-%m-%d %H:%M")


class _Rows:
    """Rows of a table with one flexible column that takes what the others leave.

    rich shrinks every no-wrap column when a line is too long, even to nothing;
    fixing the other columns at their content width keeps names and ids whole
    and cuts only the flexible column (previews, messages) with an ellipsis.
    Plain strings are shown as they are, never read as rich markup.
    """

    def __init__(self, *columns: tuple[str, dict[str, Any]]) -> None:
        self.columns = columns
        flexible = [i for i, (_, options) in enumerate(columns) if options.get("flex")]
        self.flexible = flexible[0] if flexible else len(columns) - 1
        self.rows: list[list[Text]] = []

    def add_row(self, *cells: Any) -> None:
        """Add a row: plain values are shown as text (printable, never as markup)."""
        self.rows.append([c if isinstance(c, Text) else _text(c) for c in cells])

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
        widths = {}
        for i, (title, column_options) in enumerate(self.columns):
            if i != self.flexible:
                cap = column_options.get("max_width") or 10_000
                widths[i] = min(cap, max([len(title), *(row[i].cell_len for row in self.rows)]))
        shown = list(range(len(self.columns)))

        def room() -> int:  # what the flexible column gets (two spaces between columns)
            fixed = sum(widths[i] for i in shown if i != self.flexible)
            return options.max_width - fixed - 2 * (len(shown) - 1)

        # On a narrow terminal, columns marked "drop" go (lowest first) before the
        # flexible one (the message, the preview) is cut to nothing.
        droppable = sorted((o["drop"], i) for i, (_, o) in enumerate(self.columns) if "drop" in o)
        while room() < _FLEX_MIN and droppable:
            shown.remove(droppable.pop(0)[1])
        for i in shown:
            title, options_of_column = self.columns[i]
            column = {k: v for k, v in options_of_column.items() if k not in ("flex", "drop")}
            if i == self.flexible:
                column["max_width"] = max(10, room())
            else:
                column.pop("max_width", None)
                column["min_width"] = column["max_width"] = widths[i]
            table.add_column(title, no_wrap=True, overflow="ellipsis", **column)
        for row in self.rows:
            table.add_row(*(row[i] for i in shown))
        yield table


#: Fewest cells the flexible column keeps before other columns are dropped.
_FLEX_MIN = 24


def _table(*columns: tuple[str, dict[str, Any]]) -> _Rows:
    """Columns are ``(title, options)``; ``{"flex": True}`` marks the flexible one.

    Without a flexible column, the last one is.
    """
    return _Rows(*columns)


def _status(entry: Entry) -> Text:
    if entry.kind == "skipped":
        return _text(f"skipped: {entry.reason}", "red")
    if entry.kind == "module":
        return Text("module", style="cyan")
    return Text(entry.status, style="green" if entry.status == "stored" else "dim")


def _counts(counts: ChangeCounts | None) -> Text:
    if counts is None:
        return Text("")
    text = Text()
    text.append(f"+{counts.added}", style="green")
    text.append(f" ~{counts.changed}", style="yellow")
    text.append(f" -{counts.removed}", style="red")
    return text


def _refs(commit: Commit, branch_tips: dict[str, list[str]]) -> Text:
    text = Text()
    names = branch_tips.get(commit.id, [])
    if names:
        text.append(printable(", ".join(names)), style="bold green")
    for tag in commit.tags:
        if text:
            text.append(", ")
        text.append(printable(f"tag: {tag}"), style="bold yellow")
    if not text:
        text.append(printable(commit.branch), style="dim")
    return text


def graph_lines(commits: Sequence[Commit]) -> list[str]:
    """An ASCII graph column, one cell per commit (newest first), like ``git log --graph``."""
    rows = graph_layout([c.id for c in commits], {c.id: c.parents for c in commits})
    return [
        " ".join("*" if i == row.column else "|" for i in range(len(row.lanes))) for row in rows
    ]


def log_table(
    commits: Sequence[Commit],
    counts: dict[str, ChangeCounts],
    branch_tips: dict[str, list[str]],
    graph: bool = False,
    signers: dict[str, Signer] | None = None,
) -> _Rows:
    """Commits as a table, newest first (with ``graph``, a graph column like git's)."""
    columns: list[tuple[str, dict[str, Any]]] = [
        ("commit", {"style": "yellow"}),
        ("time", {"drop": 1}),
        ("signed", {"max_width": 16, "drop": 4}),
        ("refs", {"max_width": 20, "drop": 2}),
        ("message", {"flex": True}),
        ("changes", {"justify": "right", "drop": 3}),
    ]
    if graph:
        columns.insert(0, ("", {}))
    table = _table(*columns)
    cells = graph_lines(commits) if graph else []
    for i, commit in enumerate(commits):
        signer = (signers or {}).get(commit.id)
        signed = signer_text(signer) if signer is not None else ""
        row: list[Any] = [
            commit.short_id,
            _local(commit.time),
            Text(signed, style="red") if signer is not None and not signer.trusted else signed,
            _refs(commit, branch_tips),
            commit.message or Text("(no message)", style="dim"),
            _counts(counts.get(commit.id)),
        ]
        if graph:
            row.insert(0, cells[i])
        table.add_row(*row)
    return table


def entries_table(entries: Iterable[Entry]) -> _Rows:
    """A snapshot's entries: name, type, size, status, preview."""
    table = _table(
        ("name", {"style": "bold", "max_width": 20}),
        ("type", {"max_width": 18, "drop": 2}),
        ("size", {"justify": "right", "drop": 1}),
        ("status", {"max_width": 18, "drop": 3}),
        ("preview", {}),
    )
    for e in entries:
        size = "" if e.kind != "value" else format_size(e.size)
        table.add_row(e.name, e.type_name, size, _status(e), e.literal or e.preview)
    return table


def diff_table(diff: Diff) -> _Rows:
    """Names added (+), removed (-) and changed (~), with their values old → new."""
    table = _table(
        ("", {}),
        ("name", {"style": "bold", "max_width": 20}),
        ("type", {"max_width": 16}),
        ("size", {"justify": "right"}),
        ("value", {}),
    )
    marks = {"added": ("+", "green"), "removed": ("-", "red"), "changed": ("~", "yellow")}
    for c in diff.changes:
        if c.status == "unchanged":
            continue
        mark, style = marks[c.status]
        entry = c.new or c.old
        assert entry is not None
        if c.old is not None and c.new is not None:
            size = f"{format_size(c.old.size)} → {format_size(c.new.size)}"
            value = f"{c.old_value or c.old.preview} → {c.new_value or c.new.preview}"
        else:
            size = format_size(entry.size) if entry.kind == "value" else ""
            value = entry.literal or entry.preview
        table.add_row(Text(mark, style=style), c.name, entry.type_name, size, value)
    return table


def history_table(versions: Sequence[Version]) -> _Rows:
    """The versions of one variable, newest first."""
    table = _table(
        ("commit", {"style": "yellow"}),
        ("time", {}),
        ("", {}),
        ("type", {"max_width": 16}),
        ("size", {"justify": "right"}),
        ("value", {}),
    )
    for v in versions:
        e = v.entry
        table.add_row(
            v.commit.short_id,
            _local(v.commit.time),
            v.status,
            e.type_name if e else "",
            format_size(e.size) if e and e.kind == "value" else "",
            (e.literal or e.preview) if e else Text("(removed)", style="dim"),
        )
    return table


def refs_table(refs: Sequence[Ref], head: str | None) -> _Rows:
    """Branches or tags; ``*`` marks the current branch."""
    table = _table(("", {}), ("name", {"style": "bold"}), ("commit", {"style": "yellow"}),
                   ("message", {}))
    for ref in refs:
        table.add_row("*" if ref.name == head else "", ref.name, ref.commit_id[:8],
                      ref.message or "")
    return table


def sessions_table(rows: Sequence[tuple[str, int, Commit | None, str]]) -> _Rows:
    """Sessions (``branch, executions, tip commit, host``) for ``stashdb session list``."""
    table = _table(
        ("branch", {"style": "bold", "max_width": 30}),
        ("executions", {"justify": "right"}),
        ("last active", {"drop": 2}),
        ("host", {"drop": 1, "max_width": 16}),
        ("last step", {"flex": True}),
    )
    for branch, executions, tip, host in rows:
        table.add_row(
            branch, str(executions), _local(tip.time) if tip else "",
            host, (tip.message if tip else "") or Text("(gone)", style="dim"),
        )
    return table


def du_table(rows: Sequence[tuple[str, str, int, int]], width: int = 20) -> _Rows:
    """Storage by stored object (``names, type, pickled, stored``), largest first, with bars."""
    table = _table(
        ("name", {"style": "bold", "max_width": 24}),
        ("type", {"max_width": 18}),
        ("pickled", {"justify": "right"}),
        ("stored", {"justify": "right"}),
        ("", {}),
    )
    largest = max((stored for *_, stored in rows), default=0) or 1
    for names, type_name, size, stored in rows:
        bar = "█" * max(1, round(width * stored / largest)) if stored else ""
        table.add_row(names, type_name, format_size(size), format_size(stored),
                      Text(bar, style="cyan"))
    return table


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 10 else f"{seconds:.1f} s"


def snapshot_cost_lines(cost: SnapshotCost) -> list[str]:
    """Where the last automatic snapshot's time went (``%stash status``, ``stashdb status``)."""
    where = ("a forked child" if cost.background == "fork"
             else "the cell's thread, written on the writer thread")
    lines = [
        f"last snapshot  {_ms(cost.in_cell)} in the cell; {_ms(cost.total)} in {where}"
        + (f" (after waiting {_ms(cost.waited)} for the one before)" if cost.waited > 0.0005
           else ""),
        f"  fingerprinting {_ms(cost.fingerprinting)}, grouping {_ms(cost.grouping)}, "
        f"pickling {_ms(cost.pickling)}, hashing {_ms(cost.hashing)}, "
        f"writing {_ms(cost.writing)}",
        f"  {cost.checked} names checked: {cost.pickled} pickled, "
        f"{cost.proved_unchanged} proved unchanged by fingerprint"
        + (f"; the child held {format_size(cost.child_memory)} of its own"
           if cost.child_memory else ""),
    ]
    if cost.merged:
        lines.append(f"  it took the place of {cost.merged} snapshots that had not begun")
    lines.append(f"  made {cost.commit[:8]}" if cost.commit else "  nothing had changed: no commit")
    return lines
