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
    _, err = proc.communicate(timeout=120)
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
    assert repo.history("x")[0].commit.id == made[2].id
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


# -- 2. a damaged chunk is written again by the next commit of its bytes ----------------------------


def _flip_a_byte(repo: stashdb.Repo, commit: stashdb.Commit, name: str) -> bytes:
    from sqlalchemy import select, update

    from stashdb.storage import schema

    oc, ch = schema.object_chunks.c, schema.chunks.c
    with raw_connection(repo) as conn:
        chunk = conn.execute(select(oc.chunk_id).where(
            oc.object_id == bytes.fromhex(commit.entry(name).object_id or ""),
            oc.part == 0)).scalars().first()
        data = bytes(conn.execute(select(ch.data).where(ch.id == chunk)).scalar_one())
        conn.execute(update(schema.chunks).where(ch.id == chunk)
                     .values(data=bytes([data[0] ^ 0xFF]) + data[1:]))
    return bytes(chunk)


@pytest.mark.parametrize("learned_by", ["a read", "verify"])
def test_once_a_chunk_is_known_bad_the_next_commit_writes_it_again(
    repo: stashdb.Repo, learned_by: str
) -> None:
    value = os.urandom(200_000)  # incompressible: stored raw
    first = repo.commit("first", namespace={"v": value, "n": 1})
    _flip_a_byte(repo, first, "v")
    if learned_by == "a read":
        with pytest.raises(stashdb.CorruptChunk):
            repo.at()["v"]
    else:
        assert not repo.verify().ok
    again = repo.commit("again", namespace={"v": value, "n": 2})  # the healthy value, again
    assert again.entry("v").status == "stored" and again.bytes_written >= 200_000
    assert repo.verify().ok  # the chunk was written anew: the first commit is whole too
    assert repo.at(first.id)["v"] == value and repo.at(again.id)["v"] == value
    third = repo.commit("third", namespace={"v": value, "n": 3})
    assert third.entry("v").status == "reused"  # healed: reused as usual from now on


def test_a_commit_that_meets_a_missing_chunk_writes_it_again(repo: stashdb.Repo) -> None:
    from sqlalchemy import delete

    from stashdb.storage import schema

    value = os.urandom(100_000)
    first = repo.commit("first", namespace={"v": value})
    chunk = _flip_a_byte(repo, first, "v")
    with raw_connection(repo) as conn:  # gone altogether, and nobody knows yet
        conn.execute(delete(schema.chunks).where(schema.chunks.c.id == chunk))
    again = repo.commit("again", namespace={"v": value})  # its final check finds the hole
    assert repo.verify().ok and repo.at(first.id)["v"] == value == repo.at(again.id)["v"]


def test_verify_repair_drops_what_cannot_be_read_and_a_commit_restores_it(
    tmp_path: Path,
) -> None:
    repo = stashdb.init(tmp_path)
    value = os.urandom(200_000)
    first = repo.commit("first", namespace={"v": value, "other": [1, 2]})
    _flip_a_byte(repo, first, "v")
    done = stashdb_cli("verify", "--repair", cwd=tmp_path, check=False)
    assert done.returncode == 1 and "damaged chunk" in done.stdout
    assert "dropped 1 damaged chunks and 1 objects" in done.stdout
    report = repo.verify()
    assert [p.kind for p in report.problems] == ["missing object"]  # honest, not garbage
    assert repo.at()["other"] == [1, 2]
    repo.commit("again", namespace={"v": value, "other": [1, 2]})
    assert repo.verify().ok and repo.at(first.id)["v"] == value


# -- 7. a checkout never drops values that no snapshot holds -----------------------------------------


def test_ipython_checkout_refuses_to_drop_unsaved_values_without_force(tmp_path: Path) -> None:
    pytest.importorskip("IPython")
    from conftest import shell_session

    cells = ["%load_ext stashdb", "x = 1", "%stash commit -m one", "x = 2",
             "c = 'hours of work'", "%stash checkout HEAD"]
    out = shell_session(tmp_path, cells, "[ns.get('x'), ns.get('c'), failed]")
    assert out == [2, "hours of work", ["%stash checkout HEAD"]]  # refused: x = 2 is unsaved
    out = shell_session(tmp_path, [*cells[:-1], "%stash checkout HEAD --force", "%stash status"],
                        "[ns.get('x'), ns.get('c'), failed]")
    assert out == [1, "hours of work", []]  # forced: x back to 1; c, never saved, stays


def test_ipython_checkout_with_auto_on_saves_unsaved_values_first(tmp_path: Path) -> None:
    pytest.importorskip("IPython")
    from conftest import shell_session

    cells = ["%load_ext stashdb", "%stash auto on --branch nb", "x = 1", "x = 2",
             "x = 3\nraise ValueError('a failed cell')", "%stash checkout nb~1", "%stash undo"]
    out = shell_session(tmp_path, cells, "[ns['x'], failed]")
    assert out == [3, [cells[4]]]  # undo brought back the failed cell's x, saved first
    messages = [c.message for c in stashdb.open(tmp_path).log(branch="nb")]
    assert messages[0] == "before checkout nb~1"


def test_a_script_checkout_keeps_its_own_imports_and_unsaved_names(tmp_path: Path) -> None:
    (tmp_path / "make.py").write_text("x = 1\nimport json\n")
    stashdb_cli("commit", "make.py", cwd=tmp_path)  # a snapshot another run made
    result = run_python(
        """
        import stashdb
        mine = "not in any snapshot"
        stashdb.checkout()
        print(stashdb.__name__, x, mine)  # the script's own import is still there
        """,
        tmp_path,
    )
    assert result.stdout.split() == ["stashdb", "1", "not", "in", "any", "snapshot"]


# -- 14. two IPython sessions never share a branch ----------------------------------------------


def test_two_ipython_sessions_started_in_the_same_second_get_their_own_branches() -> None:
    pytest.importorskip("IPython")
    from stashdb.ipython.shell import branch_for_session

    names = {branch_for_session({}) for _ in range(50)}
    assert len(names) == 50 and all(n.startswith("ipython/") for n in names)


# -- 15. undo after what the tracker cannot see, after views, after a prune -----------------------


def test_a_change_the_tracker_cannot_see_is_captured_and_undone(tmp_path: Path) -> None:
    pytest.importorskip("IPython")
    from conftest import shell_session

    cells = ["%load_ext stashdb", "%stash auto on --branch nb", "lst = [0]", "other = 1",
             "exec('lst.append(1)')", "globals()['lst'].append(2)", "%stash undo"]
    out = shell_session(tmp_path, cells, "[ns['lst'], ns['other'], failed]")
    assert out == [[0, 1], 1, []]  # undo took back exactly the last cell
    history = [v.entry.literal for v in stashdb.open(tmp_path).history("lst", branch="nb")
               if v.entry is not None]
    assert history[:3] == ["[0, 1, 2]", "[0, 1]", "[0]"]


def test_undo_restores_a_view_of_an_array_the_cell_changed(tmp_path: Path) -> None:
    pytest.importorskip("IPython")
    pytest.importorskip("numpy")
    from conftest import shell_session

    cells = ["%load_ext stashdb", "import numpy as np", "arr = np.zeros(10)\nv = arr[:3]",
             "%stash auto on --branch nb", "arr[:] = 1", "%stash undo"]
    out = shell_session(tmp_path, cells,
                        "[ns['arr'].tolist(), ns['v'].tolist(), failed]")
    assert out == [[0.0] * 10, [0.0] * 3, []]
    snap = stashdb.open(tmp_path).at("nb")
    assert snap["v"].tolist() == [1.0] * 3  # the cell's snapshot saw v change too


def test_undo_passes_over_snapshots_pruned_by_someone_else(tmp_path: Path) -> None:
    pytest.importorskip("IPython")
    from conftest import shell_session

    cells = ["%load_ext stashdb", "%stash auto on --branch nb", "x = 1", "x = 2", "x = 3",
             "import stashdb\nstashdb.open('.').prune('nb', keep_last=1, grace=0)",
             "%stash undo", "%stash undo"]
    # The prune kept the tip (x = 3); the cell's own snapshot came after it. The first
    # undo goes back to x = 3, passing over what is gone; the second has nothing left.
    out = shell_session(tmp_path, cells, "[ns['x'], 'stashdb' in ns, failed]")
    assert out == [3, True, ["%stash undo"]]  # a module is never removed


def test_redo_goes_forward_again(tmp_path: Path) -> None:
    pytest.importorskip("IPython")
    from conftest import shell_session

    cells = ["%load_ext stashdb", "%stash auto on --branch nb", "x = 1", "x = 2", "%stash undo",
             "%stash redo"]
    assert shell_session(tmp_path, cells, "[ns['x'], failed]") == [2, []]
    out = shell_session(tmp_path, [*cells, "%stash redo"], "[ns['x'], failed]")
    assert out == [2, ["%stash redo"]]  # nothing more to redo


def test_ipython_checkout_of_a_branch_leaves_the_store_head(tmp_path: Path) -> None:
    pytest.importorskip("IPython")
    from conftest import shell_session

    repo = stashdb.init(tmp_path)
    repo.commit("main", namespace={"x": 1})
    repo.branch("other")
    repo.commit("other", namespace={"x": 2}, branch="other")
    shell_session(tmp_path, ["%load_ext stashdb", "%stash checkout other --force"], "failed")
    assert stashdb.open(tmp_path).head == "main"


# -- 4. what is stored comes back; what cannot come back is not stored as fine ---------------------

KINDS = """
import dataclasses, enum, functools, threading, typing
import stashdb

@functools.lru_cache(maxsize=None)
def cached(v):
    return v * 2

@functools.cache
def cached2(v):
    return v + 1

T = typing.TypeVar("T", bound=int)
UserId = typing.NewType("UserId", int)
P = typing.ParamSpec("P")

class Box(typing.Generic[T]):
    def __init__(self, item: T):
        self.item = item

box = Box(3)

class Lazy:
    @functools.cached_property
    def value(self):
        return 42

lazy = Lazy()

class Perm(enum.Flag):
    R = 4
    W = 2
    X = 1

perm = Perm.R | Perm.W
Made = dataclasses.make_dataclass("Made", [("a", int)])
made = Made(1)

class Holder:
    lock = threading.Lock()  # this class cannot be stored …

held = Holder()  # … so neither can its instance: skipped, with the reason

class SelfRef:
    def __reduce__(self):
        return "selfref"  # a reference to its own name: no other process finds it

selfref = SelfRef()
made_commit = stashdb.commit("kinds")
"""

CHECK_KINDS = """
import json, stashdb
ns = {"__name__": "__main__"}
report = stashdb.checkout(namespace=ns)
print(json.dumps({
    "failed": [f.name for f in report.failed],
    "cached": ns["cached"](2), "cached2": ns["cached2"](2),
    "T": [ns["T"].__name__, ns["T"].__bound__ is int], "UserId": ns["UserId"](5),
    "P": ns["P"].__name__,
    "box": [isinstance(ns["box"], ns["Box"]), ns["box"].item],
    "lazy": [isinstance(ns["lazy"], ns["Lazy"]), ns["lazy"].value],
    "perm": [ns["perm"] is (ns["Perm"].R | ns["Perm"].W), ns["perm"].value],
    "made": [isinstance(ns["made"], ns["Made"]), ns["made"].a],
}))
"""


def test_kinds_that_used_to_fail_on_restore_now_come_back_in_a_fresh_process(
    tmp_path: Path,
) -> None:
    run_python(KINDS, tmp_path)
    commit = stashdb.open(tmp_path).show()
    skipped = {s.name: s.reason for s in commit.skipped}
    assert set(skipped) == {"Holder", "held", "selfref"}, skipped
    assert "needs __main__.Holder" in skipped["held"]
    assert "reference to __main__.selfref, itself" in skipped["selfref"]
    out = last_json(run_python(CHECK_KINDS, tmp_path))
    assert out == {
        "failed": [], "cached": 4, "cached2": 3, "T": ["T", True], "UserId": 5, "P": "P",
        "box": [True, 3], "lazy": [True, 42], "perm": [True, 6], "made": [True, 1],
    }


# -- 5. an instance restored without its class works, as at() gives it -------------------------------


def test_an_instance_checked_out_alone_brings_its_class_along(tmp_path: Path) -> None:
    run_python(
        """
        import stashdb
        from dataclasses import dataclass
        @dataclass
        class Point:
            x: int
            def moved(self):
                return Point(self.x + 1)
        p = Point(1)
        stashdb.commit()
        """,
        tmp_path,
    )
    result = run_python(
        """
        import json, stashdb
        report = stashdb.checkout(only=["p"])
        print(json.dumps([p == p, p.moved().x, report.restored, report.needed, str(report)]))
        """,
        tmp_path,
    )
    same, moved, restored, needed, text = last_json(result)
    assert same is True and moved == 2 and restored == ["p"] and needed == ["Point"]
    assert "Point, which they need" in text
    stashdb_cli("checkout", "HEAD", "--only", "p", "--to", "p.pkl", cwd=tmp_path)
    loaded = run_python(
        "import dill, json\nns = dill.load_module_asdict('p.pkl')\n"
        "print(json.dumps([ns['p'] == ns['p'], ns['p'].moved().x]))\n",
        tmp_path,
    )
    assert last_json(loaded) == [True, 2]


# -- 18. crafted metadata and other misleading output ----------------------------------------------


@pytest.mark.parametrize(("column", "value"), [
    ("packages", "not json"), ("packages", "[1, 2]"), ("time", "abc"), ("time", 1e300),
    ("bytes_written", "lots"),
])
def test_crafted_commit_metadata_is_one_clear_line(
    tmp_path: Path, column: str, value: object
) -> None:
    from sqlalchemy import text

    repo = stashdb.init(tmp_path)
    repo.commit("fine", namespace={"x": 1})
    with raw_connection(repo) as conn:  # plain SQL: no SQLAlchemy type to tidy it up
        conn.execute(text(f"UPDATE commits SET {column} = :value"), {"value": value})
    stashdb.close_all()
    for args in (["log"], ["show"], ["status"], ["checkout", "HEAD", "--only", "x", "--to", "f"]):
        done = stashdb_cli(*args, cwd=tmp_path, check=False)
        assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "damaged" in done.stderr and column in done.stderr
    with pytest.raises(stashdb.StoreDamaged, match=column):
        stashdb.open(tmp_path).show()
    problems = stashdb.open(tmp_path).verify().problems
    assert [p.kind for p in problems] == ["damaged row"] and column in problems[0].detail


def test_a_crafted_entry_and_a_dropped_table_are_one_clear_line(tmp_path: Path) -> None:
    from sqlalchemy import text

    repo = stashdb.init(tmp_path)
    repo.commit("fine", namespace={"x": 1})
    with raw_connection(repo) as conn:
        conn.execute(text("UPDATE entries SET size = 'big'"))
    done = stashdb_cli("show", cwd=tmp_path, check=False)
    assert done.returncode == 1 and "size" in done.stderr and "Traceback" not in done.stderr
    with raw_connection(repo) as conn:
        conn.execute(text("DROP TABLE entries"))
    stashdb.close_all()
    for args in (["show"], ["log"], ["checkout", "HEAD", "--to", "f"]):
        done = stashdb_cli(*args, cwd=tmp_path, check=False)
        assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "entries" in done.stderr and "Traceback" not in done.stderr


def test_a_missing_sqlite_file_says_so_and_creates_nothing(tmp_path: Path) -> None:
    for store in (str(tmp_path / "nope" / "x.db"), f"sqlite:///{tmp_path}/nope.db"):
        done = stashdb_cli("log", "--store", store, cwd=tmp_path, check=False)
        assert done.returncode == 1 and "no such file" in done.stderr
        assert "server" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_log_output_says_what_it_means(tmp_path: Path) -> None:
    repo = stashdb.init(tmp_path)
    assert stashdb_cli("log", "-n", "0", cwd=tmp_path).stdout == ""
    repo.commit("on a notebook branch", namespace={"x": 1}, branch="nb/analysis")
    out = stashdb_cli("log", cwd=tmp_path).stdout
    assert "no commits on branch main" in out and "nb/analysis" in out and "--all" in out
    out = stashdb_cli("log", "--all", cwd=tmp_path, env={"COLUMNS": "40"}).stdout
    assert "on a notebook branch"[:15] in out  # a narrow terminal keeps the message
    for command in ("commit", "show", "diff", "tag", "checkout", "history", "du", "branch"):
        usage = stashdb_cli(command, "--help", cwd=tmp_path, env={"COLUMNS": "100"}).stdout
        assert "<str>" not in usage and "{" not in usage and "<list" not in usage, usage


def test_commit_with_neither_a_script_nor_a_file_says_what_to_give(tmp_path: Path) -> None:
    done = stashdb_cli("commit", cwd=tmp_path, check=False)
    assert done.returncode == 1 and "give a script" in done.stderr and "not both" not in done.stderr


def test_a_mistyped_magic_prints_its_usage_once(tmp_path: Path) -> None:
    pytest.importorskip("IPython")
    code = """
        import contextlib, io, json
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance()
        shell.run_cell("%load_ext stashdb")
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            shell.run_cell("%stash bogus")
        print(json.dumps(out.getvalue()))
    """
    shown = last_json(run_python(code, tmp_path))
    assert shown.count("usage: %stash") <= 1 and "bogus" in shown, shown


# -- also expected: show REV:NAME, prune --dry-run, branch -m, reset, log A..B ----------------------


def test_show_rev_name_shows_one_variable_and_writes_it_as_a_plain_pickle(tmp_path: Path) -> None:
    import numpy as np

    repo = stashdb.init(tmp_path)
    shared = [1]
    repo.commit(namespace={"arr": np.arange(100_000), "words": ["a"] * 3, "x": shared,
                           "y": {"k": shared}})
    out = stashdb_cli("show", "HEAD:arr", cwd=tmp_path).stdout
    assert "numpy.ndarray" in out and "(100000,)" in out and "object" in out
    stashdb_cli("show", "HEAD:arr", "--to", "arr.pkl", cwd=tmp_path)
    loaded = run_python(
        "import pickle, sys\narr = pickle.load(open('arr.pkl', 'rb'))\n"
        "print(int(arr.sum()), 'stashdb' in sys.modules)\n", tmp_path)
    assert loaded.stdout.split() == [str(sum(range(100_000))), "False"]  # plain pickle
    done = stashdb_cli("show", "HEAD:x", "--to", "x.pkl", cwd=tmp_path, check=False)
    assert done.returncode == 1 and "together with" in done.stderr and not (tmp_path / "x.pkl").exists()
    done = stashdb_cli("show", "HEAD:nosuch", cwd=tmp_path, check=False)
    assert done.returncode == 1 and "not in snapshot" in done.stderr


def test_prune_dry_run_changes_nothing_and_many_drops_need_a_yes(tmp_path: Path) -> None:
    repo = stashdb.init(tmp_path)
    for i in range(15):
        repo.commit(f"c{i}", namespace={"x": i})
    out = stashdb_cli("prune", "--keep-last", "2", "--dry-run", cwd=tmp_path).stdout
    assert "would have dropped 13 commits" in out and len(repo.log()) == 15
    done = stashdb_cli("prune", "--keep-last", "2", cwd=tmp_path, check=False)  # not a terminal
    assert done.returncode == 1 and "--yes" in done.stderr and len(repo.log()) == 15
    stashdb_cli("prune", "--keep-last", "2", "--yes", cwd=tmp_path)
    assert len(repo.log()) == 2


def test_branch_rename_and_reset_keep_every_commit_reachable(tmp_path: Path) -> None:
    repo = stashdb.init(tmp_path)
    made = [repo.commit(f"c{i}", namespace={"x": i}) for i in range(3)]
    stashdb_cli("branch", "-m", "main", "trunk", cwd=tmp_path)
    assert repo.head == "trunk" and [b.name for b in repo.branches()] == ["trunk"]
    out = stashdb_cli("reset", "trunk", "HEAD~2", cwd=tmp_path).stdout
    assert made[2].id in out  # the tip it left, by its id
    assert repo.show("trunk").id == made[0].id and repo.at(made[2].id)["x"] == 2
    assert [c.message for c in repo.log(f"{made[0].id}..{made[2].id}")] == ["c2", "c1"]
    out = stashdb_cli("log", f"{made[0].id[:8]}..{made[2].id[:8]}", "--json", cwd=tmp_path)
    assert [c["message"] for c in json.loads(out.stdout)] == ["c2", "c1"]
