"""Where a snapshot is made and read: user, host, Python and dill versions, packages.

Recorded with every commit (`Origin`), and compared on checkout: a snapshot
written by another Python or dill may not load the same (`version_warnings`).
"""

from __future__ import annotations

import functools
import getpass
import platform
import socket
import sys
import warnings

from stashdb.errors import VersionMismatchWarning
from stashdb.model import Commit, Origin

__all__ = ["dill_version", "origin", "version_warnings"]


def origin(workspace: str, packages: dict[str, str]) -> Origin:
    """Who and where a commit is made: user, host, Python and dill versions, packages."""
    try:
        user = getpass.getuser()
    except Exception:  # no login name (some containers)
        user = "unknown"
    return Origin(
        workspace=workspace,
        user=user,
        host=socket.gethostname(),
        python=platform.python_version(),
        dill=dill_version(),
        packages=dict(packages),
    )


@functools.cache
def dill_version() -> str:
    """dill's version, without importing dill (~40 ms) when it is not loaded yet."""
    # dill's own attribute when it is loaded; otherwise the package metadata
    # (~20 ms, once).
    dill = sys.modules.get("dill")
    if dill is not None and getattr(dill, "__version__", None):
        return str(dill.__version__)
    from importlib.metadata import version

    return version("dill")


def version_warnings(commit: Commit) -> list[str]:
    """Differences between the Python/dill that wrote ``commit`` and the running ones."""
    found = []
    ours = platform.python_version()
    if commit.python.split(".")[:2] != ours.split(".")[:2]:
        found.append(
            f"snapshot {commit.short_id} was written by Python {commit.python}, this is {ours}"
        )
    # dill's version matters only for values dill unpickled; when dill is not
    # loaded in this process there were none (and looking it up costs ~30 ms).
    dill = dill_version() if "dill" in sys.modules else commit.dill
    if commit.dill != dill:
        found.append(
            f"snapshot {commit.short_id} was written with dill {commit.dill}, this is {dill}"
        )
    for message in found:
        warnings.warn(message, VersionMismatchWarning, stacklevel=_outside_stashdb())
    return found


def _outside_stashdb() -> int:
    """The stacklevel of the first frame that is not stashdb's own: the user's call."""
    package = __name__.split(".")[0] + "."
    frame, level = sys._getframe(1), 1
    while frame is not None and str(frame.f_globals.get("__name__", "")).startswith(package):
        frame, level = frame.f_back, level + 1  # type: ignore[assignment]
    return level
