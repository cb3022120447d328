"""Drop-in replacements for the tools users save sessions with: switch with one import line.

    from stashdb.compat import sessionstash    # was: import sessionstash
    from stashdb.compat import dill_session as dill   # was: import dill (for dump_module …)

`sessionstash` has ``save_workspace`` / ``load_workspace`` and the ``python -m
stashdb.compat.sessionstash save|load`` command; `dill_session` has
``dump_module``, ``load_module``, ``load_module_asdict`` (and ``dump_session``
/ ``load_session``). Their "file" is a stashdb store, so every save is a
commit and saving again writes only what changed; `storefile` is how a path
becomes a store. docs/migrating.md says what differs. Each submodule loads
on first use: importing this package imports nothing else.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["dill_session", "sessionstash"]


def __getattr__(name: str) -> ModuleType:
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
