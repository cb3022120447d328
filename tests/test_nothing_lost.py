"""Nothing lost, part two: the defects found by trying stashdb as a new user (and an attacker)
would, one regression test (or more) each, numbered as in the issue."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import stashdb
from conftest import last_json, raw_connection, run_python

AWKWARD_DIRS = ["we?ird#dir%20x", "proj?v2", "pct%41dir", "with space", "naïve ☃", "a:b@c"]


def stashdb_cli(*args: str, cwd: Path, env: dict[str, str] | None = None,
                check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "stashdb", *args], cwd=cwd, capture_output=True, text=True,
        env={**os.environ, "STASHDB_URL": "", **(env or {})}, timeout=120,
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done


# -- 1. paths are used literally ----------------------------------------------------------


@pytest.mark.parametrize("name", AWKWARD_DIRS)
def test_the_command_line_stores_in_a_directory_whatever_its_name(
    tmp_path: Path, name: str
) -> None:
    work = tmp_path / "parent" / name
    work.mkdir(parents=True)
    (work / "s.py").write_text("x = 41\n")
    done = stashdb_cli("commit", "s.py", cwd=work)
    assert str(work / ".stashdb") in done.stderr  # "created a new store in …"
    assert (work / ".stashdb" / "stash.db").is_file()
    assert sorted(p.name for p in (tmp_path / "parent").iterdir()) == [name]  # nothing beside
    assert "x" in stashdb_cli("show", "--json", cwd=work).stdout
    # A store named by its path, from elsewhere, and through STASHDB_URL.
    assert stashdb_cli("log", "--store", str(work), cwd=tmp_path).returncode == 0
    db = work / ".stashdb" / "stash.db"
    shown = stashdb_cli("show", "--json", cwd=tmp_path, env={"STASHDB_URL": str(db)})
    assert json.loads(shown.stdout)["entries"][0]["name"] == "x"


@pytest.mark.parametrize("name", AWKWARD_DIRS)
def test_the_api_opens_the_directory_it_was_given(
    tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / name
    work.mkdir()
    monkeypatch.chdir(work)
    repo = stashdb.init(".")
    assert Path(repo.location) == work / ".stashdb"
    repo.commit(namespace={"x": 1})
    stashdb.close_all()
    assert stashdb.open(".").at()["x"] == 1 and stashdb.open(work).at()["x"] == 1
    assert stashdb.open(work / ".stashdb" / "stash.db").at()["x"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_the_ipython_extension_uses_a_store_path_literally(tmp_path: Path) -> None:
    pytest.importorskip("IPython")
    target = tmp_path / "we?ird#dir%20x"
    target.mkdir()
    code = f"""
        import json
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance()
        for cell in ["%load_ext stashdb", "%stash auto on --branch nb --store {target}", "x = 7"]:
            assert shell.run_cell(cell).success, cell
        print(json.dumps(True))
    """
    run_python(code, tmp_path)
    assert stashdb.open(target).at("nb")["x"] == 7
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("script_")) == [
        target.name
    ]


# -- 13. the Python API honours STASHDB_URL ------------------------------------------------


def test_the_python_api_honours_stashdb_url(tmp_path: Path) -> None:
    team = stashdb.init(tmp_path / "team")
    stashdb.close_all()
    (tmp_path / "elsewhere").mkdir()
    code = "import stashdb\nx = 5\nstashdb.commit('via the environment')\n"
    script = tmp_path / "elsewhere" / "s.py"
    script.write_text(code)
    subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path / "elsewhere", check=True, timeout=60,
        env={**os.environ, "STASHDB_URL": team.url},
    )
    assert not (tmp_path / "elsewhere" / ".stashdb").exists()
    assert [c.message for c in stashdb.open(team.url).log()] == ["via the environment"]
    done = stashdb_cli("log", "--json", cwd=tmp_path / "elsewhere", env={"STASHDB_URL": team.url})
    assert json.loads(done.stdout)[0]["message"] == "via the environment"


# -- 10. a tag cannot pass for a commit id ---------------------------------------------------


def test_ref_names_that_read_as_commit_ids_are_refused(repo: stashdb.Repo) -> None:
    first = repo.commit("one", namespace={"x": 1})
    for name in (first.id[:7], "cafe", "DEADBEEF", first.id):
        with pytest.raises(stashdb.InvalidRefName, match="commit id"):
            repo.tag(name)
        with pytest.raises(stashdb.InvalidRefName, match="commit id"):
            repo.branch(name)
    repo.tag("cafe-1")  # not only hex digits: a name
    assert [t.name for t in repo.tags()] == ["cafe-1"]


def test_a_ref_that_is_also_a_commit_id_prefix_is_ambiguous(repo: stashdb.Repo) -> None:
    from sqlalchemy import insert

    from stashdb.storage import schema

    first = repo.commit("one", namespace={"x": 1})
    second = repo.commit("two", namespace={"x": 2})
    with raw_connection(repo) as conn:  # a store made before such names were refused
        conn.execute(insert(schema.refs).values(
            name=first.id[:8], kind="tag", commit_id=second.id, message=None, time=0.0))
    with pytest.raises(stashdb.AmbiguousRevision) as info:
        repo.show(first.id[:8])
    message = str(info.value)
    assert "tag" in message and second.id[:8] in message and first.id[:8] in message
    with pytest.raises(stashdb.AmbiguousRevision):
        repo.checkout(first.id[:8], namespace={})
    assert repo.show(first.id).message == "one"  # the full id is never ambiguous


# -- 11. stored strings never drive the terminal -----------------------------------------------


ESC = "\x1b]0;pwned\x07\x1b[2J"


def _hostile_store(path: Path) -> stashdb.Repo:
    from sqlalchemy import update

    from stashdb.storage import schema

    repo = stashdb.init(path)
    repo.commit(f"message {ESC}", namespace={f"name{ESC}": 1, "x": [1]})
    repo.commit("second", namespace={f"name{ESC}": 2, "x": [1, 2]})
    with raw_connection(repo) as conn:  # a store someone sent you
        conn.execute(update(schema.refs).values(name=f"main{ESC}"))
        conn.execute(update(schema.meta).where(schema.meta.c.key == "HEAD")
                     .values(value=f"main{ESC}"))
        conn.execute(update(schema.commits).values(user=f"u{ESC}", host=f"h{ESC}"))
        conn.execute(update(schema.entries).values(type_name=f"t{ESC}"))
    return repo


def test_the_command_line_shows_stored_control_characters_as_escapes(tmp_path: Path) -> None:
    repo = _hostile_store(tmp_path)
    head = repo.show("HEAD").id
    outputs = []
    for args in (["log"], ["log", "--all", "--graph"], ["show"], ["show", head[:8]],
                 ["branch"], ["diff", "HEAD~1"], ["history", f"name{ESC}"], ["status"],
                 ["du"], ["verify"], ["checkout", "HEAD", "--only", f"nosuch{ESC}"]):
        done = stashdb_cli(*args, cwd=tmp_path, check=False)
        outputs.append(done.stdout + done.stderr)
        assert "\x1b" not in done.stdout + done.stderr, args
        assert "\x07" not in done.stdout + done.stderr, args
    assert any("\\x1b" in out for out in outputs)  # shown, not dropped


def test_ipython_shows_stored_control_characters_as_escapes(tmp_path: Path) -> None:
    pytest.importorskip("IPython")
    _hostile_store(tmp_path)
    code = """
        import contextlib, io, json
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance()
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            for cell in ["%load_ext stashdb", "%stash log", "%stash show", "%stash diff HEAD~1",
                         "%stash history 'name'", "%stash status"]:
                shell.run_cell(cell)
        print(json.dumps(out.getvalue()))
    """
    shown = last_json(run_python(code, tmp_path))
    assert "\x1b" not in shown and "\\x1b" in shown


# -- 12. commit --branch checks the name, before running the script -------------------------------


@pytest.mark.parametrize("branch", ["HEAD", "bad name", "../../x", f"x{ESC}", "-x", "cafe"])
def test_commit_to_a_branch_with_an_impossible_name_is_refused_before_the_script_runs(
    tmp_path: Path, branch: str
) -> None:
    (tmp_path / "s.py").write_text("open('ran', 'w').close()\nx = 1\n")
    stashdb.init(tmp_path)
    done = stashdb_cli("commit", f"--branch={branch}", "s.py", cwd=tmp_path, check=False)
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "not a valid branch" in done.stderr
    assert not (tmp_path / "ran").exists()  # the script never ran
    assert stashdb.open(tmp_path).branches() == []


def test_commit_to_a_tag_says_it_is_a_tag_and_keeps_the_run(tmp_path: Path) -> None:
    repo = stashdb.init(tmp_path)
    repo.commit("first", namespace={"x": 1})
    repo.tag("v1")
    with pytest.raises(stashdb.NotABranch, match="it is a tag"):
        repo.commit("to the tag", namespace={"x": 2}, branch="v1")
    (tmp_path / "s.py").write_text("open('ran', 'w').close()\nx = 2\n")
    done = stashdb_cli("commit", "--branch", "v1", "s.py", cwd=tmp_path, check=False)
    assert done.returncode == 1 and "it is a tag" in done.stderr
    assert not (tmp_path / "ran").exists()
    assert [c.message for c in repo.log(all=True)] == ["first"]


# -- 16. writing a file does not switch branches ---------------------------------------------------


def test_checkout_of_a_branch_into_a_file_or_a_merge_keeps_head(tmp_path: Path) -> None:
    repo = stashdb.init(tmp_path)
    repo.commit("main", namespace={"x": 1})
    repo.branch("side")
    repo.commit("on side", namespace={"x": 2}, branch="side")
    stashdb_cli("checkout", "side", "--to", "state.pkl", cwd=tmp_path)
    assert repo.head == "main"
    repo.checkout("side", namespace={}, merge=True)
    repo.checkout("side", namespace={}, only=["x"])
    assert repo.head == "main"
    repo.checkout("side", namespace={})  # an exact checkout of a branch moves HEAD
    assert repo.head == "side"


# -- 17. a Repo in a namespace is stored without its password --------------------------------------


def test_a_repo_in_a_namespace_is_stored_without_its_password(tmp_path: Path) -> None:
    from sqlalchemy.engine import make_url

    from conftest import postgres_schema, postgres_url

    with postgres_schema(postgres_url()) as url:
        secret = make_url(url).set(password="s3cr3t-pw").render_as_string(hide_password=False)
        team = stashdb.init(secret)  # the server trusts every login: any password works
        team.commit(namespace={"store": team})
        with raw_connection(team) as conn:
            from sqlalchemy import select

            from stashdb.storage import schema

            blobs = b"".join(bytes(d) for d in conn.execute(select(schema.chunks.c.data)).scalars())
        assert b"s3cr3t-pw" not in blobs
        ns: dict[str, Any] = {}
        team.checkout(namespace=ns)
        assert "s3cr3t-pw" not in ns["store"].url and ns["store"].at()["store"] is not None


# -- 6. errors found after the script ran do not lose the run -------------------------------------


def test_a_commit_that_fails_after_the_run_saves_the_state_elsewhere(tmp_path: Path) -> None:
    stashdb.init(tmp_path)
    (tmp_path / "s.py").write_text("result = sum(range(10))\n")
    done = stashdb_cli("commit", "--only", "nosuch", "s.py", cwd=tmp_path, check=False)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "nosuch" in lines[0] and "saved in" in lines[0], done.stderr
    rescued = lines[0].split("saved in ")[1].split(" instead")[0]
    assert stashdb.open(rescued).at()["result"] == 45  # nothing of the run is lost
    assert stashdb.open(tmp_path).log() == []  # and nothing went to the store asked for


def test_a_store_that_is_a_file_fails_before_the_script_runs(tmp_path: Path) -> None:
    (tmp_path / ".stashdb").write_text("not a directory")
    (tmp_path / "s.py").write_text("open('ran', 'w').close()\n")
    done = stashdb_cli("commit", "s.py", cwd=tmp_path, check=False)
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert ".stashdb" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "ran").exists()


def _immutable(*paths: Path) -> None:
    for path in paths:
        if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
            pytest.skip("this machine cannot make a file read-only for root (chattr +i)")


def _mutable(*paths: Path) -> None:
    for path in paths:
        subprocess.run(["chattr", "-i", str(path)], capture_output=True)


def test_a_read_only_store_fails_before_the_script_runs_and_says_so(tmp_path: Path) -> None:
    repo = stashdb.init(tmp_path)
    repo.commit("before", namespace={"x": 1})
    stashdb.close_all()
    store = tmp_path / ".stashdb"
    (tmp_path / "s.py").write_text("open('ran', 'w').close()\nx = 2\n")
    _immutable(store / "stash.db", store)
    try:
        done = stashdb_cli("commit", "s.py", cwd=tmp_path, check=False)
        assert stashdb.open(tmp_path).at()["x"] == 1  # still readable
    finally:
        _mutable(store, store / "stash.db")
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "read-only" in done.stderr and "free some space" not in done.stderr
    assert not (tmp_path / "ran").exists()


def test_a_read_only_team_store_fails_before_the_script_runs(tmp_path: Path) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from conftest import postgres_schema, postgres_url

    with postgres_schema(postgres_url()) as url:
        stashdb.init(url).commit("before", namespace={"x": 1})
        schema_name = make_url(url).query["options"].split("=")[1]
        admin = create_engine(url)
        with admin.begin() as conn:
            conn.execute(text(
                "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'stashdb_reader')"
                " THEN CREATE ROLE stashdb_reader LOGIN; END IF; END $$"))
            conn.execute(text(f'GRANT USAGE ON SCHEMA "{schema_name}" TO stashdb_reader'))
            conn.execute(text(
                f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema_name}" TO stashdb_reader'))
        admin.dispose()
        reader_url = make_url(url).set(username="stashdb_reader").render_as_string(
            hide_password=False)
        (tmp_path / "s.py").write_text("open('ran', 'w').close()\nx = 2\n")
        try:
            done = stashdb_cli("commit", "--store", reader_url, "s.py", cwd=tmp_path, check=False)
        finally:
            stashdb.close_all()
            with create_engine(url).begin() as conn:
                conn.execute(text(f'REVOKE ALL ON ALL TABLES IN SCHEMA "{schema_name}" '
                                  "FROM stashdb_reader"))
                conn.execute(text(f'REVOKE USAGE ON SCHEMA "{schema_name}" FROM stashdb_reader'))
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "read-only" in done.stderr and "free some space" not in done.stderr
    assert not (tmp_path / "ran").exists()


# -- 8. checkout --to FILE never leaves a truncated file ------------------------------------------


def test_checkout_to_a_file_past_the_file_size_limit_keeps_the_old_file(tmp_path: Path) -> None:
    import resource

    repo = stashdb.init(tmp_path)
    repo.commit("big", namespace={"blob": os.urandom(3_000_000)})
    good = tmp_path / "state.pkl"
    good.write_bytes(b"the good file")

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))

    done = subprocess.run(
        [sys.executable, "-m", "stashdb", "checkout", "HEAD", "--to", str(good)],
        cwd=tmp_path, capture_output=True, text=True, preexec_fn=cap, timeout=120,
        env={**os.environ, "STASHDB_URL": ""},
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert good.read_bytes() == b"the good file"  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == [".stashdb", "state.pkl"]  # no leftovers


# -- 9. `stashdb commit SCRIPT` is `python SCRIPT` ----------------------------------------------------


def test_a_script_that_forks_commits_once_the_parents_state(tmp_path: Path) -> None:
    (tmp_path / "s.py").write_text(
        "import os\nwho = 'parent'\npid = os.fork()\nif pid == 0:\n    who = 'child'\n"
        "else:\n    os.waitpid(pid, 0)\n"
    )
    stashdb_cli("commit", "s.py", cwd=tmp_path)
    repo = stashdb.open(tmp_path)
    assert len(repo.log()) == 1 and repo.at()["who"] == "parent"


def test_a_script_s_threads_are_joined_before_its_state_is_taken(tmp_path: Path) -> None:
    (tmp_path / "s.py").write_text(
        "import threading, time\nresults = [0]\n"
        "def work():\n    time.sleep(0.5)\n    results.extend(range(1, 5))\n"
        "threading.Thread(target=work).start()\n"
        "threading.Thread(target=time.sleep, args=(60,), daemon=True).start()  # not waited for\n"
    )
    stashdb_cli("commit", "s.py", cwd=tmp_path)
    assert stashdb.open(tmp_path).at()["results"] == [0, 1, 2, 3, 4]


def test_a_script_s_file_is_absolute_as_python_makes_it(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "s.py").write_text("where = __file__\n")
    stashdb_cli("commit", "sub/s.py", cwd=tmp_path)
    assert stashdb.open(tmp_path).at()["where"] == str(tmp_path / "sub" / "s.py")


def test_os_exit_commits_the_state_and_keeps_the_exit_status(tmp_path: Path) -> None:
    (tmp_path / "s.py").write_text("import os\nx = 41\nos._exit(4)\nx = 0\n")
    done = stashdb_cli("commit", "s.py", cwd=tmp_path, check=False)
    assert done.returncode == 4
    assert "os._exit(4)" in done.stderr and "committed" in done.stderr
    repo = stashdb.open(tmp_path)
    assert repo.at()["x"] == 41 and "os._exit(4)" in repo.log()[0].message


def test_ctrl_c_while_committing_exits_130_and_says_what_was_committed(tmp_path: Path) -> None:
    import signal
    import time

    (tmp_path / "s.py").write_text(
        "import os, sys\nblob = os.urandom(400_000_000)\nprint('ran', flush=True)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "stashdb", "commit", "s.py"], cwd=tmp_path, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "STASHDB_URL": ""},
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ran"
    time.sleep(0.3)  # into the commit: pickling, hashing, writing 400 MB
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    repo = stashdb.open(tmp_path)
    assert repo.verify().ok
    if "nothing was committed" in err:
        assert repo.log() == []
    else:
        assert repo.log()[0].short_id in err


# -- 3. a loop in the history ends every walk, and verify reports it -----------------------------


def _loop_history(repo: stashdb.Repo, shape: str) -> list[stashdb.Commit]:
    from sqlalchemy import delete, insert

    from stashdb.storage import schema

    made = [repo.commit(f"c{i}", namespace={"x": i}) for i in range(3)]
    p = schema.commit_parents
    with raw_connection(repo) as conn:  # a damaged or hostile store
        if shape == "self":  # the first commit is its own parent
            conn.execute(insert(p).values(commit_id=made[0].id, position=0, parent_id=made[0].id))
        else:  # c0 and c2 point at each other
            conn.execute(delete(p).where(p.c.commit_id == made[0].id))
            conn.execute(insert(p).values(commit_id=made[0].id, position=0, parent_id=made[2].id))
    return made


@pytest.mark.parametrize("shape", ["self", "pair"])
def test_history_walks_end_on_a_loop_and_verify_reports_it(repo: stashdb.Repo, shape: str) -> None:
    made = _loop_history(repo, shape)
    assert {c.id for c in repo.log()} == {c.id for c in made}
    assert {c.id for c in repo.log(all=True)} == {c.id for c in made}
    assert [v.commit.id for v in repo.history("x")][0] == made[2].id
    assert repo.change_counts(repo.log())
    report = repo.verify()
    assert not report.ok
    cycle = [p for p in report.problems if p.kind == "history cycle"]
    assert len(cycle) == 1 and made[0].id[:8] in str(cycle[0])
    report = repo.prune(keep_last=1)  # ends, and drops no commit of the loop's wrongly
    assert repo.at()["x"] == 2


def test_the_command_line_ends_on_a_loop_too(tmp_path: Path) -> None:
    repo = stashdb.init(tmp_path)
    _loop_history(repo, "pair")
    for args in (["log"], ["log", "--graph", "--all"], ["history", "x"], ["status"]):
        assert stashdb_cli(*args, cwd=tmp_path).returncode == 0
    done = stashdb_cli("verify", cwd=tmp_path, check=False)
    assert done.returncode == 1 and "history cycle" in done.stdout
