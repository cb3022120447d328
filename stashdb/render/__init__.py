"""How stashdb shows things, for the command line and IPython alike: rich text and tables
for people, JSON for programs.

One renderer for every face: ``stashdb show`` and ``%stash show`` print the
same header and table, a checkout report is the same lines everywhere (the
text itself is `CheckoutReport.summary`, so ``print(report)`` in Python says
the same). Everything here formats metadata the library already returned;
nothing opens a store or unpickles a value. Stored strings are never read as
rich markup. JSON keys are a contract (docs/cli.md).

The faces: `stashdb.render.terminal` (rich text and tables),
`stashdb.render.as_json` (JSON) and `stashdb.render.layout` (where each commit
sits in a graph drawing, for the terminal and the web viewer alike); all are
imported from here.
"""

from stashdb.render.as_json import (
    checkout_json,
    commit_json,
    diff_json,
    entry_json,
    ref_json,
    session_json,
    signer_json,
    stats_json,
    version_json,
)
from stashdb.render.layout import GraphRow, graph_layout
from stashdb.render.terminal import (
    checkout_report,
    commit_header,
    commit_report,
    diff_table,
    du_table,
    entries_table,
    entry_detail,
    graph_lines,
    history_table,
    log_table,
    markup_safe,
    printable,
    refs_table,
    sessions_table,
    signer_text,
    snapshot_cost_lines,
)

__all__ = [
    "GraphRow",
    "checkout_json",
    "checkout_report",
    "commit_header",
    "commit_json",
    "commit_report",
    "diff_json",
    "diff_table",
    "du_table",
    "entries_table",
    "entry_detail",
    "entry_json",
    "graph_layout",
    "graph_lines",
    "history_table",
    "log_table",
    "markup_safe",
    "printable",
    "ref_json",
    "refs_table",
    "session_json",
    "sessions_table",
    "signer_json",
    "signer_text",
    "snapshot_cost_lines",
    "stats_json",
    "version_json",
]
