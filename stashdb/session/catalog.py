"""Which branches of a store are sessions: a record per session among the store's settings.

A session's branch can have any name (``session/<id>`` by default), so the
store keeps a record of each (``meta`` key ``session:<xxh3-64 of the branch>``,
a JSON value; docs/format.md, "Session records"): when and where it started,
its working directory. `stashdb session list` reads them; the commits say
the rest (what each execution did, the state now).
"""

from __future__ import annotations

import json
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xxhash

from stashdb.repo import Repo
from stashdb.workspace.files import write_atomically

__all__ = ["RESET", "STARTED", "SessionRecord", "executions_so_far", "find", "record", "records"]

PREFIX = "session:"
#: Messages of the commits a session makes itself (the executions' are "[N] code").
STARTED = "session started"
FOUND_FILES = "the working directory's files, as the session found them"
RESET = "session reset"
_EXECUTION = re.compile(r"^\[(\d+)\]")


@dataclass(frozen=True)
class SessionRecord:
    """One session of a store, as recorded when it started."""

    branch: str
    created: float  # seconds since the epoch
    host: str
    workdir: str | None


def _key(branch: str) -> str:
    return PREFIX + xxhash.xxh3_64_hexdigest(branch.encode())


def record(repo: Repo, branch: str, workdir: str | None) -> SessionRecord:
    """Record that ``branch`` is a session's (kept if it was recorded before)."""
    found = find(repo, branch)
    if found is not None:
        return found
    made = SessionRecord(branch, time.time(), socket.gethostname(), workdir)
    value = {"branch": branch, "created": made.created, "host": made.host, "workdir": workdir}
    repo.set_note(_key(branch), json.dumps(value))
    return made


def _workdirs_file(repo: Repo) -> Path:
    return repo.keyring.directory / "session-workdirs.json"


def remember_workdir(repo: Repo, branch: str, workdir: str) -> None:
    """Note, on this machine, the working directory of ``branch``'s session in ``repo``."""
    path = _workdirs_file(repo)
    known = _read_workdirs(path)
    if known.get(f"{repo.url} {branch}") == workdir:
        return
    known[f"{repo.url} {branch}"] = workdir
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(temporary: str) -> None:
        Path(temporary).write_text(json.dumps(known))

    write_atomically(path, write)


def remembered_workdir(repo: Repo, branch: str) -> str | None:
    """The working directory this machine noted for ``branch``'s session, if any."""
    found = _read_workdirs(_workdirs_file(repo)).get(f"{repo.url} {branch}")
    return found if isinstance(found, str) else None


def _read_workdirs(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def find(repo: Repo, branch: str) -> SessionRecord | None:
    """The record of the session on ``branch``, or None."""
    return next((r for r in records(repo) if r.branch == branch), None)


def records(repo: Repo) -> list[SessionRecord]:
    """Every session recorded in the store, oldest first (unreadable records left out)."""
    found = []
    for value in repo.notes(PREFIX).values():
        try:
            data = json.loads(value)
            found.append(SessionRecord(
                str(data["branch"]), float(data["created"]), str(data.get("host", "")),
                None if data.get("workdir") is None else str(data["workdir"]),
            ))
        except (ValueError, KeyError, TypeError):
            continue  # a damaged record hides one session from the list, nothing more
    return sorted(found, key=lambda r: r.created)


def executions_so_far(repo: Repo, branch: str) -> int:
    """How many executions the session on ``branch`` has counted (since it started or reset)."""
    for commit in repo.log(branch=branch, limit=500):
        if commit.message == RESET:
            return 0
        match = _EXECUTION.match(commit.message)
        if match:
            return int(match.group(1))
    return 0
