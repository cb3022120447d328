"""Files written whole or not at all: beside the target under another name, then renamed.

A full disk or a file size limit then leaves the old file as it was and no
half-written one, whatever the file is (a dill module file, one value's pickle).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["write_atomically"]


def write_atomically(path: str | os.PathLike[str], write: Callable[[str], None]) -> None:
    """Call ``write(temporary_path)``, then rename the result over ``path``.

    Raises:
        OSError: the file cannot be written (the old one, if any, is kept).
    """
    target = Path(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or ".")
    os.close(handle)
    try:
        write(temporary)
        # mkstemp made it private; give it the mode a new file (or the old one) has.
        os.chmod(temporary, target.stat().st_mode if target.exists() else _new_file_mode())
        os.replace(temporary, target)
    finally:
        Path(temporary).unlink(missing_ok=True)


def _new_file_mode() -> int:
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask
