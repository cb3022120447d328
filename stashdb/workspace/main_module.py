"""A fresh ``__main__`` module to restore into, or to run a script in.

Values restored or pickled inside it refer to it as ``__main__``, as they would
in a script of their own: a script run by ``stashdb commit SCRIPT``, a
snapshot checked out into a shell or written for ``dill.load_module``.
"""

from __future__ import annotations

import contextlib
import sys
import types
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["main_module"]


@contextlib.contextmanager
def main_module(namespace: Mapping[str, Any] | None = None) -> Iterator[types.ModuleType]:
    """A fresh ``__main__`` module, in ``sys.modules`` for the duration.

    Values restored or pickled inside it refer to it as ``__main__``, as they
    would in a script of their own.
    """
    module = types.ModuleType("__main__")
    module.__dict__["__builtins__"] = __builtins__
    if namespace is not None:
        module.__dict__.update(namespace)
    previous = sys.modules.get("__main__")
    sys.modules["__main__"] = module
    try:
        yield module
    finally:
        if previous is not None:
            sys.modules["__main__"] = previous
