"""The stashdb command line, through typer's CliRunner (in process) and as real processes."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import stashdb
from conftest import last_json, run_python
from stashdb.cli import app

ROOT = Path(__file__).resolve().parents[1]

TRAIN = """
import sys
from dataclasses import dataclass

@dataclass
class Model:
    w: float
    def predict(self, x):
        return self.w * x

epochs = int(sys.argv[sys.argv.index("--epochs") + 1]) if "--epochs" in sys.argv else 1
losses = []
model = Model(0.5)
for epoch in range(epochs):
    losses.append(round(1.0 / (epoch + 1), 3))
    if "--crash" in sys.argv and epoch == 1:
        raise RuntimeError("diverged at epoch 1")
print("trained", epochs)
"""


class Cli:
    """Runs stashdb commands in process, in a project directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.runner = CliRunner(env={"STASHDB_URL": None, "COLUMNS": "80"})

    def __call__(self, *args: str, code: int = 0, input: str | None = None) -> Any:
        result = self.runner.invoke(app, list(args), input=input)
        assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "--json").stdout)

    def fails(self, *args: str) -> str:
        """Run a command a user got wrong: exit 1, one line on stderr, no traceback."""
        result = self(*args, code=1)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert "Traceback" not in result.stderr and lines[0].startswith("stashdb: error: ")
        return lines[0]


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    (tmp_path / "train.py").write_text(TRAIN)
    return Cli(tmp_path)


@pytest.fixture
def project(cli: Cli) -> Cli:
    """A store with two runs of train.py: `baseline` (3 epochs) and HEAD (5 epochs)."""
    cli("init")
    cli("commit", "-m", "baseline", "train.py", "--epochs", "3")
    cli("commit", "train.py", "--epochs", "5", "-m", "longer")
    return cli


# -- init and commit ---------------------------------------------------------------


def test_init_creates_and_then_reports_an_existing_store(cli: Cli) -> None:
    assert "Initialized empty stashdb store" in cli("init").stdout
    assert (cli.root / ".stashdb" / "stash.db").is_file()
    assert "Reinitialized existing" in cli("init", str(cli.root)).stdout


def test_commit_runs_the_script_as_main_with_its_arguments(project: Cli) -> None:
    head = stashdb.show(repo=project.root)
    assert head.message == "longer"
    assert stashdb.at(repo=project.root)["losses"] == [1.0, 0.5, 0.333, 0.25, 0.2]
    model = stashdb.at(repo=project.root)["model"]
    assert model.predict(4) == 2.0 and type(model).__name__ == "Model"
    assert stashdb.at(repo=project.root)["sys"] is sys


def test_a_crashing_script_is_committed_with_its_partial_state(project: Cli) -> None:
    result = project("commit", "-m", "risky", "train.py", "--epochs", "5", "--crash", code=1)
    assert "RuntimeError: diverged at epoch 1" in result.stderr
    assert "Traceback" in result.stderr and "train.py" in result.stderr
    head = stashdb.show(repo=project.root)
    assert head.message == "risky [failed: RuntimeError: diverged at epoch 1]"
    assert stashdb.at(repo=project.root)["losses"] == [1.0, 0.5]
    assert stashdb.at(repo=project.root)["epoch"] == 1


def test_a_script_exiting_non_zero_passes_its_status_on(cli: Cli) -> None:
    (cli.root / "quits.py").write_text("import sys\nresult = 7\nsys.exit(3)\n")
    cli("commit", "quits.py", code=3)
    assert "exited with status 3" in stashdb.show(repo=cli.root).message


def test_commit_imports_dill_and_sessionstash_files(cli: Cli) -> None:
    run_python(
        """
        import dill, sessionstash
        x = 41
        items = {"a": [1, 2]}
        add = lambda v: v + x
        dill.dump_session("session.pkl")
        x = 43
        dill.dump_module("module.pkl")
        sessionstash.save_workspace("stash.pkl", namespace={"y": 2, "z": [3]})
        """,
        cli.root,
    )
    out = cli.json("commit", "--from", "session.pkl", "-m", "from dill")
    assert out["message"] == "from dill" and {"x", "items", "add"} <= set(out["stored"])
    assert stashdb.at(repo=cli.root)["add"](1) == 42
    cli("commit", "--from", "module.pkl")
    assert stashdb.at(repo=cli.root)["add"](1) == 44
    cli("commit", "--from", "stash.pkl")
    assert stashdb.show(repo=cli.root).names == ["y", "z"]
    assert stashdb.show(repo=cli.root).message == "imported stash.pkl"


def test_commit_json_reports_each_name(project: Cli) -> None:
    out = project.json("commit", "train.py", "--epochs", "5")
    assert out["stored"] == [] and "losses" in out["reused"] and out["bytes_written"] == 0
    assert {"id", "short_id", "message", "time", "branch", "parents", "entries"} <= set(out)


# -- browsing -------------------------------------------------------------------------


def test_log_lists_commits_with_their_changes(project: Cli) -> None:
    out = project("log").stdout
    lines = out.strip().splitlines()
    assert lines[0].split() == ["commit", "time", "signed", "refs", "message", "changes"]
    assert "longer" in lines[1] and "+0 ~3 -0" in lines[1] and "root@" not in lines[0]
    assert all("untrusted" not in line and "unsigned" not in line for line in lines)
    assert "baseline" in lines[2] and re.search(r"\+\d+ ~0 -0", lines[2])
    assert len(project("log", "-n", "1").stdout.strip().splitlines()) == 2


def test_log_json_has_the_documented_keys(project: Cli) -> None:
    project("tag", "v1", "HEAD~1")
    entries = project.json("log")
    assert [e["message"] for e in entries] == ["longer", "baseline"]
    for key in ("id", "short_id", "message", "time", "branch", "parents", "tags",
                "added", "changed", "removed", "signed_by"):
        assert key in entries[0]
    assert entries[0]["signed_by"]["trusted"] is True
    assert entries[1]["tags"] == ["v1"] and entries[0]["parents"] == [entries[1]["id"]]
    assert entries[0]["changed"] == 3


def test_log_of_branches_and_the_graph(project: Cli) -> None:
    project("branch", "side", "HEAD~1")
    stashdb.commit("on side", namespace={"x": 1}, branch="side", repo=project.root)
    assert [e["message"] for e in project.json("log", "--branch", "side")] == [
        "on side", "baseline"]
    assert len(project.json("log", "--all")) == 3
    graph = project("log", "--all", "--graph").stdout.splitlines()[1:]
    assert graph[0].startswith("*") and graph[1].startswith("| *")


def test_show_lists_every_name_with_status_and_preview(project: Cli) -> None:
    out = project("show", "HEAD~1").stdout
    assert "baseline" in out
    assert re.search(r"losses\s+list\s+\S+ B\s+stored\s+\[1.0, 0.5, 0.333\]", out)
    data = project.json("show")
    assert {e["name"] for e in data["entries"]} >= {"losses", "model", "Model", "epochs"}
    losses = next(e for e in data["entries"] if e["name"] == "losses")
    assert losses["value"] == "[1.0, 0.5, 0.333, 0.25, 0.2]" and losses["status"] == "stored"


def test_diff_shows_old_and_new_values(project: Cli) -> None:
    out = project("diff", "HEAD~1").stdout
    assert re.search(r"~\s+epochs\s+int\s+.*3 → 5", out)
    data = project.json("diff", "HEAD~1", "HEAD")
    epochs = next(c for c in data["changes"] if c["name"] == "epochs")
    assert (epochs["status"], epochs["old_value"], epochs["new_value"]) == ("changed", "3", "5")
    assert "model" in data["unchanged"]
    assert "no differences" in project("diff", "HEAD", "HEAD").stdout


def test_history_of_one_variable(project: Cli) -> None:
    out = project("history", "epochs").stdout
    assert "changed" in out and "added" in out
    versions = project.json("history", "epochs")
    assert [(v["status"], v["entry"]["value"]) for v in versions] == [
        ("changed", "5"), ("added", "3")]
    assert "is in no commit" in project("history", "nothing").stdout


def test_tags_and_branches_list_create_delete(project: Cli) -> None:
    assert "tag good" in project("tag", "good", "HEAD~1", "-m", "the good one").stdout
    assert [t["name"] for t in project.json("tag")] == ["good"]
    assert project.json("tag")[0]["message"] == "the good one"
    project("branch", "exp")
    branches = {b["name"]: b for b in project.json("branch")}
    assert set(branches) == {"exp", "main"} and branches["main"]["current"]
    assert "* " in project("branch").stdout
    assert "deleted tag good" in project("tag", "-d", "good").stdout
    project("branch", "-d", "exp")
    assert project.json("tag") == [] and [b["name"] for b in project.json("branch")] == ["main"]


def test_status_and_du(project: Cli) -> None:
    out = project("status").stdout
    assert "branch   main at" in out and "commits  2" in out
    status = project.json("status")
    assert status["branch"] == "main" and status["commits"] == 2
    assert status["head"]["message"] == "longer" and status["dedup_ratio"] > 1
    du = project("du").stdout
    assert "losses" in du and "█" in du and "dedup ratio" in du
    usage = project.json("du", "HEAD~1")
    assert usage["stored_size"] == sum(o["stored_size"] for o in usage["objects"])
    assert {"names", "type", "size", "stored_size"} <= set(usage["objects"][0])


def test_output_fits_80_columns(project: Cli) -> None:
    stashdb.commit(
        "a very long message " * 10,
        namespace={"a_rather_long_variable_name_indeed_" * 3: "x" * 500, "n": 1},
        repo=project.root,
    )
    for command in (["log"], ["show"], ["diff", "HEAD~1"], ["du"], ["status"], ["history", "n"]):
        for line in project(*command).stdout.splitlines():
            assert len(line) <= 80, (command, line)


def test_browsing_commands_never_unpickle(cli: Cli) -> None:
    from test_browse import LOADED, Tripwire

    LOADED.clear()
    stashdb.commit("one", namespace={"t": Tripwire("a")}, repo=cli.root)
    stashdb.commit("two", namespace={"t": Tripwire("b")}, repo=cli.root)
    for command in (["log"], ["show"], ["diff", "HEAD~1"], ["history", "t"], ["status"], ["du"]):
        cli(*command)
        cli(*command, "--json")
    assert LOADED == []


# -- checkout ---------------------------------------------------------------------------


def test_checkout_only_to_a_file_that_dill_loads(project: Cli) -> None:
    target = project.root / "state.pkl"
    project("checkout", "HEAD~1", "--only", "model,losses", "--to", str(target))
    result = run_python(
        f"""
        import dill, json
        dill.load_module({str(target)!r})
        print(json.dumps([losses, model.predict(2), "epochs" in globals()]))
        """,
        project.root,
    )
    assert last_json(result) == [[1.0, 0.5, 0.333], 1.0, False]


def test_checkout_json(project: Cli) -> None:
    out = project.json("checkout", "HEAD", "--only", "epochs", "--only", "losses", "--to",
                       str(project.root / "x.pkl"))
    assert out["restored"] == ["epochs", "losses"] and out["failed"] == []


def test_checkout_into_a_shell(project: Cli) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "stashdb", "checkout", "HEAD~1", "--only", "losses"],
        cwd=project.root, input="print('total', sum(losses))\n", capture_output=True,
        text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "total 1.833" in result.stdout


# -- errors -------------------------------------------------------------------------------


def test_user_errors_are_one_line_and_exit_1(project: Cli, tmp_path: Path) -> None:
    (tmp_path / "not-a-store.db").write_text("hello")
    assert "unknown revision 'nope'" in project.fails("show", "nope")
    assert "not in snapshot" in project.fails(
        "checkout", "HEAD", "--only", "nope", "--to", "x.pkl")
    assert "is not a stashdb store" in project.fails(
        "log", "--store", str(tmp_path / "not-a-store.db"))
    assert "is not a stashdb store" in project.fails("log", "--store", str(tmp_path / "nowhere"))
    project("tag", "keep")
    assert "already exists" in project.fails("tag", "keep")
    assert "not a dill session file" in project.fails("commit", "--from", "train.py")
    assert "no such file" in project.fails("commit", "--from", "missing.pkl")
    assert "cannot run missing.py" in project.fails("commit", "missing.py")
    assert "give a script" in project.fails("commit")
    assert "not both" in project.fails("checkout", "HEAD", "--shell", "--to", "x.pkl")
    assert "no branch named 'nope'" in project.fails("history", "x", "--branch", "nope")


def test_verify_gc_and_prune(project: Cli) -> None:
    assert "ok: everything is sound" in project("verify").stdout
    assert project.json("verify")["ok"] is True
    assert project.json("gc") == {"objects": 0, "chunks": 0, "bytes": 0}
    assert "--keep-last" in project.fails("prune")
    older = stashdb.show("HEAD~1", repo=project.root).id
    assert project.json("prune", "--keep-last", "1")["dropped"] == [older]
    assert len(project.json("log")) == 1


def test_no_store_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    assert "no stashdb store found" in Cli(empty).fails("log")


def test_ambiguous_short_id(cli: Cli) -> None:
    repo = stashdb.init(cli.root)
    seen: set[str] = set()
    while True:
        prefix = repo.commit(namespace={"n": len(seen)}).id[:4]
        if prefix in seen:
            break
        seen.add(prefix)
    assert "is ambiguous" in cli.fails("show", prefix)


def test_debug_shows_the_traceback(project: Cli) -> None:
    result = project.runner.invoke(app, ["show", "nope", "--debug"])
    assert isinstance(result.exception, stashdb.RevisionNotFound)


def test_store_option_after_the_command_and_from_the_environment(
    project: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert len(project.json("log", "--store", str(project.root))) == 2
    runner = CliRunner(env={"STASHDB_URL": str(project.root / ".stashdb" / "stash.db")})
    result = runner.invoke(app, ["log", "--json"])
    assert result.exit_code == 0 and len(json.loads(result.stdout)) == 2


def test_version(cli: Cli) -> None:
    assert cli("--version").stdout.strip() == f"stashdb {stashdb.__version__}"


def test_every_command_has_help_with_an_example_and_a_docs_section(cli: Cli) -> None:
    docs = (ROOT / "docs" / "cli.md").read_text()
    names = [c.name or c.callback.__name__ for c in app.registered_commands]  # type: ignore[union-attr]
    assert {"init", "commit", "log", "show", "diff", "history", "tag", "branch", "checkout",
            "status", "du", "verify", "gc", "prune"} <= set(names)
    for group in app.registered_groups:  # `stashdb session list` …
        sub = group.typer_instance
        assert sub is not None
        names += [f"{group.name} {c.name or c.callback.__name__}"  # type: ignore[union-attr]
                  for c in sub.registered_commands]
    assert {"repl", "session list", "session show", "session log", "session resume"} <= set(names)
    for name in names:
        help_text = cli(*name.split(), "--help").stdout
        assert "Example: stashdb " + name in " ".join(help_text.split()), name
        assert f"## `stashdb {name}" in docs, name


# -- progress -------------------------------------------------------------------------------


def test_progress_shows_on_a_terminal_only(project: Cli) -> None:
    quiet = project("commit", "train.py")
    assert "committing" not in quiet.stdout + quiet.stderr
    main, child = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "stashdb", "commit", "train.py"],
        cwd=project.root, stdin=child, stdout=child, stderr=child, close_fds=True,
        env={**os.environ, "TERM": "xterm", "COLUMNS": "80"},
    )
    os.close(child)
    seen = b""
    while True:
        ready, _, _ = select.select([main], [], [], 60)
        if not ready:
            break
        try:
            data = os.read(main, 4096)
        except OSError:
            break
        if not data:
            break
        seen += data
    proc.wait(timeout=60)
    os.close(main)
    assert proc.returncode == 0
    assert b"committing" in seen


# -- real processes ---------------------------------------------------------------------------


def _installed_stashdb() -> str:
    found = shutil.which("stashdb", path=str(Path(sys.executable).parent))
    assert found, "the stashdb console script is not installed next to this Python"
    return found


@pytest.mark.parametrize("command", ["console-script", "python -m stashdb"])
def test_a_session_as_real_processes(tmp_path: Path, command: str) -> None:
    base = [_installed_stashdb()] if command == "console-script" else [
        sys.executable, "-m", "stashdb"]
    (tmp_path / "train.py").write_text(TRAIN)

    env = {k: v for k, v in os.environ.items() if k != "STASHDB_URL"}

    def run(*args: str) -> str:
        result = subprocess.run([*base, *args], cwd=tmp_path, capture_output=True, text=True,
                                timeout=120, env=env)
        assert result.returncode == 0, result.stderr
        return result.stdout

    run("init")
    run("commit", "-m", "first", "train.py", "--epochs", "2")
    run("commit", "-m", "second", "train.py", "--epochs", "4")
    assert [c["message"] for c in json.loads(run("log", "--json"))] == ["second", "first"]
    assert "2 → 4" in run("diff", "HEAD~1")
    run("tag", "first-run", "HEAD~1")
    run("checkout", "first-run", "--only", "losses", "--to", "losses.pkl")
    loaded = run_python(
        """
        import dill, json
        dill.load_module("losses.pkl")
        print(json.dumps(losses))
        """,
        tmp_path,
    )
    assert last_json(loaded) == [1.0, 0.5]


def test_every_command_on_each_backend(cli: Cli, store_url: str) -> None:
    """The same session against a SQLite file and a PostgreSQL schema, by --store URL."""
    s = ["--store", store_url]
    cli("commit", *s, "-m", "two", "train.py", "--epochs", "2")
    cli("commit", *s, "-m", "four", "train.py", "--epochs", "4")
    assert [c["message"] for c in cli.json("log", *s)] == ["four", "two"]
    assert "2 → 4" in cli("diff", "HEAD~1", *s).stdout
    assert [v["status"] for v in cli.json("history", "epochs", *s)] == ["changed", "added"]
    cli("tag", "first", "HEAD~1", *s)
    cli("branch", "side", *s)
    assert cli.json("show", "first", *s)["message"] == "two"
    target = cli.root / f"{store_url.split(':')[0]}.pkl"
    cli("checkout", "first", "--only", "losses", "--to", str(target), *s)
    assert target.is_file()
    assert cli.json("status", *s)["commits"] == 2
    assert cli.json("du", *s)["stored_size"] > 0
    assert cli.json("verify", *s)["ok"] is True
    assert cli.json("gc", *s)["objects"] == 0
    assert cli.json("prune", "--keep-last", "5", *s)["dropped"] == []
    assert "nothing to do" in cli("migrate", *s).stdout
    env_runner = CliRunner(env={"STASHDB_URL": store_url})
    assert len(json.loads(env_runner.invoke(app, ["log", "--json"]).stdout)) == 2


def test_a_script_that_does_not_compile_is_one_line(cli: Cli) -> None:
    (cli.root / "bad.py").write_text("x = 1\nif x\n")
    assert "line 2" in cli.fails("commit", "bad.py")
    assert "-n" in cli("log", "-n", "-1", code=2).stderr


def test_checkout_to_a_file_dill_cannot_write_says_so(cli: Cli) -> None:
    (cli.root / "colors.py").write_text(
        "import enum\nclass Color(enum.Enum):\n    RED = 1\nfavourite = Color.RED\n"
    )
    cli("commit", "colors.py")
    assert "cannot write" in cli.fails("checkout", "HEAD", "--to", "out.pkl")
    assert not (cli.root / "out.pkl").exists()
