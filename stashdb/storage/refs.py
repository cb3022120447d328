"""Ref names: which names a branch or tag may have, and the branch of a new store.

Branches and tags share one namespace, so a name always means one thing in a
rev. A name must not be mistaken for anything else a rev can be: ``HEAD``, a
``REV~N`` expression, an option on the command line. The reads of refs are in
`stashdb.storage.queries`, their writes in `stashdb.storage.commits`.
"""

from __future__ import annotations

import re

from stashdb.errors import InvalidRefName
from stashdb.storage.revs import looks_like_an_id

__all__ = ["DEFAULT_BRANCH", "check_name"]

#: The branch of a new store.
DEFAULT_BRANCH = "main"

_VALID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-/]{0,254}$")


def check_name(name: str) -> None:
    """Raise `InvalidRefName` unless ``name`` can be a branch or tag.

    Raises:
        InvalidRefName: the name holds other characters, is ``HEAD``, ends with
            ``.`` or ``/``, holds ``..``, or looks like a commit id.
    """
    if not isinstance(name, str) or not _VALID.match(name) or name == "HEAD" or name.endswith(
        (".", "/")
    ) or ".." in name:
        raise InvalidRefName(name)
    if looks_like_an_id(name):
        raise InvalidRefName(name, "it would read as a commit id: hex digits only")
