"""What one execution of a session gives back: its output, value, error and commit."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stashdb.errors import ExecutionFailed

__all__ = ["ErrorInfo", "ExecutionResult"]


@dataclass(frozen=True)
class ErrorInfo:
    """The exception the code of an execution raised, as text (it never crosses as an object)."""

    type: str  # its class name: "ZeroDivisionError"
    message: str  # str() of it
    traceback: str  # formatted as Python prints it, our own frames left out


@dataclass(frozen=True)
class ExecutionResult:
    """One execution: what it printed, its value, its error, and the commit of the state after.

    ``value`` is the repr of a trailing expression, as a REPL shows it (None
    when there is none, or it is None). ``commit`` is the id of the commit the
    state equals after a successful execution (with autocommit; an execution
    that changed nothing gives the commit the state already equalled), None
    after a failed one. ``warnings`` say what could not be stored, what a
    recovery restored, and what a restore could not bring back.
    """

    ok: bool
    stdout: str
    stderr: str
    value: str | None
    error: ErrorInfo | None
    duration_s: float
    execution_count: int
    commit: str | None
    warnings: list[str] = field(default_factory=list)

    def raise_for_error(self) -> ExecutionResult:
        """Raise `ExecutionFailed` if the code raised; else return this result."""
        if self.error is not None:
            raise ExecutionFailed(self.error.type, self.error.message, self.error.traceback)
        return self

    def as_dict(self) -> dict[str, Any]:
        """The result as plain data (JSON-ready), for services that pass it on."""
        return {
            "ok": self.ok, "stdout": self.stdout, "stderr": self.stderr, "value": self.value,
            "error": None if self.error is None else {
                "type": self.error.type, "message": self.error.message,
                "traceback": self.error.traceback,
            },
            "duration_s": self.duration_s, "execution_count": self.execution_count,
            "commit": self.commit, "warnings": list(self.warnings),
        }
