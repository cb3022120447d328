"""Metadata as JSON, for ``--json`` and programs: the keys are a contract (docs/cli.md)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from stashdb.model import (
    Change,
    ChangeCounts,
    CheckoutReport,
    Commit,
    Diff,
    Entry,
    Ref,
    StoreStats,
    Version,
)
from stashdb.trust.policy import Signer

__all__ = [
    "checkout_json",
    "commit_json",
    "diff_json",
    "entry_json",
    "ref_json",
    "session_json",
    "signer_json",
    "stats_json",
    "version_json",
]


def _iso(when: datetime) -> str:
    return when.isoformat()


def entry_json(entry: Entry) -> dict[str, Any]:
    """One manifest entry, as ``show --json`` lists it."""
    return {
        "name": entry.name,
        "kind": entry.kind,
        "status": entry.status,
        "type": entry.type_name,
        "size": entry.size,
        "stored_size": entry.stored_size,
        "seconds": entry.seconds,
        "preview": entry.preview,
        "shape": entry.shape,
        "value": entry.literal,
        "reason": entry.reason,
        "module": entry.module,
        "version": entry.version,
        "object_id": entry.object_id,
        "group": list(entry.group),
    }


def signer_json(signer: Signer | None) -> dict[str, Any] | None:
    """Who signed a commit, as JSON (None: unsigned)."""
    if signer is None or signer.key_id is None:
        return None
    return {"key": signer.key_id, "name": signer.name, "trusted": signer.trusted}


def commit_json(
    commit: Commit, counts: ChangeCounts | None = None, *, entries: bool = False,
    signer: Signer | None = None,
) -> dict[str, Any]:
    """A commit as JSON (with its entries when ``entries``; with change counts if given)."""
    data: dict[str, Any] = {
        "id": commit.id,
        "short_id": commit.short_id,
        "message": commit.message,
        "time": _iso(commit.time),
        "branch": commit.branch,
        "parents": list(commit.parents),
        "tags": list(commit.tags),
        "user": commit.user,
        "host": commit.host,
        "python": commit.python,
        "dill": commit.dill,
        "packages": commit.packages,
        "chunks_written": commit.chunks_written,
        "bytes_written": commit.bytes_written,
    }
    if signer is not None:
        data["signed_by"] = signer_json(signer)
    if counts is not None:
        data["added"], data["changed"], data["removed"] = (
            counts.added,
            counts.changed,
            counts.removed,
        )
    if entries:
        data["stored"] = commit.stored
        data["reused"] = commit.reused
        data["skipped"] = [
            {"name": s.name, "type": s.type_name, "reason": s.reason} for s in commit.skipped
        ]
        data["entries"] = [entry_json(e) for e in commit.entries]
    return data


def _change_json(change: Change) -> dict[str, Any]:
    return {
        "name": change.name,
        "status": change.status,
        "old": entry_json(change.old) if change.old else None,
        "new": entry_json(change.new) if change.new else None,
        "old_value": change.old_value,
        "new_value": change.new_value,
    }


def diff_json(diff: Diff) -> dict[str, Any]:
    """A diff as JSON: the changes, and the names that did not change."""
    return {
        "a": diff.a.id,
        "b": diff.b.id,
        "changes": [_change_json(c) for c in diff.changes if c.status != "unchanged"],
        "unchanged": [c.name for c in diff.unchanged],
    }


def version_json(version: Version) -> dict[str, Any]:
    """One version of a variable as JSON."""
    return {
        "commit": commit_json(version.commit),
        "status": version.status,
        "entry": entry_json(version.entry) if version.entry else None,
    }


def ref_json(ref: Ref, head: str | None = None) -> dict[str, Any]:
    """A branch or tag as JSON; ``current`` is true for HEAD's branch."""
    return {
        "name": ref.name,
        "kind": ref.kind,
        "commit_id": ref.commit_id,
        "short_id": ref.commit_id[:8],
        "message": ref.message,
        "current": ref.name == head,
    }


def stats_json(stats: StoreStats) -> dict[str, Any]:
    """A store's counts and sizes as JSON."""
    return {
        "commits": stats.commits,
        "branches": stats.branches,
        "tags": stats.tags,
        "objects": stats.objects,
        "chunks": stats.chunks,
        "raw_bytes": stats.raw_bytes,
        "stored_bytes": stats.stored_bytes,
        "logical_bytes": stats.logical_bytes,
        "dedup_ratio": round(stats.dedup_ratio, 3),
    }


def checkout_json(report: CheckoutReport) -> dict[str, Any]:
    """What a checkout did, as JSON."""
    return {
        "commit": report.commit.id,
        "restored": report.restored,
        "needed": report.needed,
        "removed": report.removed,
        "kept": report.kept,
        "skipped": [
            {"name": s.name, "type": s.type_name, "reason": s.reason} for s in report.skipped
        ],
        "failed": [{"name": f.name, "reason": f.reason} for f in report.failed],
        "warnings": report.warnings,
    }


def session_json(
    branch: str, executions: int, tip: Commit | None, host: str, created: float,
    workdir: str | None,
) -> dict[str, Any]:
    """One session, for ``stashdb session list --json``."""
    return {
        "branch": branch, "executions": executions, "host": host,
        "created": _iso(datetime.fromtimestamp(created, tz=timezone.utc)),
        "workdir": workdir, "head": tip.id if tip else None,
        "last_active": _iso(tip.time) if tip else None,
        "last_step": tip.message if tip else None,
    }
