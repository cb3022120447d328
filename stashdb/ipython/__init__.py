"""IPython and Jupyter: the ``%stash`` magic, a snapshot after every cell, and undo.

Load it with ``%load_ext stashdb`` (or ``c.InteractiveShellApp.extensions =
["stashdb"]`` in a profile). Imported only then: ``import stashdb`` never
imports IPython. `shell` keeps one shell's state (no IPython import);
`magics` is the magic itself. What a cell could have changed is
`stashdb.workspace.tracker`, shared with sessions.
"""

from stashdb.ipython.magics import load_ipython_extension, unload_ipython_extension

__all__ = ["load_ipython_extension", "unload_ipython_extension"]
