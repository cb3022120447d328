"""`stashdb ui`: the read-only web viewer, served by a real server process and driven by a
real headless Chromium (Debian's ``chromium``; `.ci/run` installs it).

Without a Chromium on the machine the browser tests skip, saying so; the HTTP
tests (token, Host, read-only, never unpickling) run everywhere.
"""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

import stashdb

pytest.importorskip("starlette", reason="the ui extra (pip install 'stashdb[ui]') is missing")

CHROMIUM = os.environ.get("STASHDB_TEST_CHROMIUM") or shutil.which("chromium")
SCREENSHOTS = os.environ.get("STASHDB_UI_SCREENSHOTS")  # a folder: keep each page's PNG


class Evil:
    """Unpickling this creates a file: the store holds a planted pickle."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> Any:
        return (open, (self.path, "w"))

    def __repr__(self) -> str:
        return "Evil()"


def build_store(path: Path, marker: Path) -> stashdb.Repo:
    """A small history: two branches, a tag, growing values, a skipped one, a planted pickle."""
    repo = stashdb.init(path)
    ns: dict[str, Any] = {"rows": list(range(10)), "model": {"score": 0.5}, "lr": 0.1}
    repo.commit("load data", namespace=ns)
    ns["rows"] = list(range(1000))
    ns["evil"] = Evil(str(marker))
    repo.commit("more rows", namespace=ns)
    repo.tag("cleaned")
    ns["lock"] = __import__("threading").Lock()
    ns["model"] = {"score": 0.7, "weights": list(range(5000))}
    repo.commit("train", namespace=ns)
    repo.branch("experiment", "cleaned")
    other = dict(ns, lr=0.01)
    del other["lock"]
    repo.commit("lower lr", namespace=other, branch="experiment")
    ns["rows"] = list(range(20000))
    del ns["lr"]
    repo.commit("all rows", namespace=ns)
    return repo


@pytest.fixture
def history(tmp_path: Path) -> tuple[stashdb.Repo, Path]:
    marker = tmp_path / "PWNED"
    repo = build_store(tmp_path / "store", marker)
    return repo, marker


@pytest.fixture
def viewer(history: tuple[stashdb.Repo, Path]) -> Iterator[stashdb.Viewer]:
    running = stashdb.ui(history[0], open_browser=False)
    try:
        yield running
    finally:
        running.stop()


def get(url: str, path: str, *, host: str | None = None, method: str = "GET",
        headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    """One request to the viewer, as a browser or a stranger would send it."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    sent = dict(headers or {})
    if host is not None:
        sent["Host"] = host
    conn.request(method, path, headers=sent)
    response = conn.getresponse()
    body = response.read().decode()
    conn.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, body


def token_of(viewer: stashdb.Viewer) -> str:
    return urlsplit(viewer.url).query.removeprefix("token=")


# -- who may look -------------------------------------------------------------------


def test_only_the_token_holder_on_this_host_may_read(viewer: stashdb.Viewer) -> None:
    token = token_of(viewer)
    assert urlsplit(viewer.url).hostname == "127.0.0.1"
    assert len(token) >= 32
    status, headers, body = get(viewer.url, f"/?token={token}")
    assert status == 200 and "load data" in body
    csp = headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "access-control-allow-origin" not in headers
    assert headers["x-content-type-options"] == "nosniff"
    assert "HttpOnly" in headers["set-cookie"] and "SameSite=Strict" in headers["set-cookie"]
    cookie = headers["set-cookie"].split(";")[0]

    for path in ["/", "/commit/HEAD", "/static/viewer.js", "/api/state", f"/?token={token}x"]:
        status, headers, body = get(viewer.url, path)
        assert status == 403, path
        assert "load data" not in body
        assert "content-security-policy" in headers
    # The cookie set from the tokenized URL lets the pages' links in, and the header does.
    assert get(viewer.url, "/commit/HEAD", headers={"Cookie": cookie})[0] == 200
    assert get(viewer.url, "/api/state", headers={"Authorization": f"token {token}"})[0] == 200
    # A page elsewhere whose name was rebound to 127.0.0.1 sends its own Host.
    port = urlsplit(viewer.url).port
    status, _, body = get(viewer.url, f"/?token={token}", host=f"evil.example:{port}")
    assert status == 403 and "Host" in body
    assert get(viewer.url, f"/?token={token}", host=f"localhost:{port}")[0] == 200


def test_another_host_only_when_asked_and_with_a_warning(tmp_path: Path) -> None:
    repo = stashdb.init(tmp_path / "s")
    repo.commit("x", namespace={"x": 1})
    with pytest.warns(UserWarning, match="anyone who can reach it"):
        running = stashdb.ui(repo, host="0.0.0.0", open_browser=False)
    try:
        token = token_of(running)
        port = urlsplit(running.url).port
        # Listening everywhere, it is reached by whatever name the machine has.
        assert get(running.url, f"/?token={token}", host=f"my-laptop:{port}")[0] == 200
        assert get(running.url, "/", host=f"my-laptop:{port}")[0] == 403
    finally:
        running.stop()
    done = subprocess.run(
        [sys.executable, "-m", "stashdb", "ui", "--no-browser", "--host", "203.0.113.9",
         "--store", str(tmp_path / "s")], capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 1  # not this machine's address: refused in one line
    assert "warning: the history viewer listens on 203.0.113.9" in done.stderr
    assert "cannot listen on 203.0.113.9" in done.stderr and "Traceback" not in done.stderr


def test_no_route_changes_the_store(viewer: stashdb.Viewer,
                                    history: tuple[stashdb.Repo, Path]) -> None:
    repo = history[0]
    before = (repo.resolve("main"), [r.commit_id for r in repo.branches()], repo.stats())
    token = token_of(viewer)
    for method in ["POST", "PUT", "DELETE", "PATCH"]:
        for path in ["/", "/commit/HEAD", "/api/state", "/store"]:
            status, _, body = get(viewer.url, f"{path}?token={token}", method=method)
            assert status == 405, (method, path)
            assert "read-only" in body
    assert (repo.resolve("main"), [r.commit_id for r in repo.branches()], repo.stats()) == before


def test_every_page_is_served_without_unpickling(
    viewer: stashdb.Viewer, history: tuple[stashdb.Repo, Path]
) -> None:
    repo, marker = history
    auth = {"Authorization": f"token {token_of(viewer)}"}
    commits = repo.log(all=True)
    names = {e.name for c in commits for e in repo.show(c.id).entries}
    assert "evil" in names
    paths = ["/", "/?branch=experiment", "/?name=evil", "/?name=rows", "/store",
             "/api/stats", "/api/state", "/diff/HEAD~2..HEAD", "/diff/cleaned..experiment"]
    paths += [f"/commit/{c.id}" for c in commits] + [f"/store?rev={c.id}" for c in commits]
    paths += [f"/diff/{c.id}" for c in commits if c.parents]
    paths += [f"/variable/{n}" for n in names] + [f"/variable/{n}?branch=experiment"
                                                   for n in names]
    for path in paths:
        status, _, body = get(viewer.url, path, headers=auth)
        assert status == 200, (path, body[:500])
    status, _, body = get(viewer.url, "/commit/HEAD", headers=auth)
    assert "Evil()" in body  # its preview, from the metadata
    assert "skipped" in body and "lock" in body
    assert not marker.exists()
    # The control: the stored pickle really is armed.
    stashdb.open(repo.url).at("HEAD", trust=True)["evil"]
    assert marker.exists()


def test_revs_in_the_url_and_clear_errors(viewer: stashdb.Viewer,
                                          history: tuple[stashdb.Repo, Path]) -> None:
    repo = history[0]
    auth = {"Authorization": f"token {token_of(viewer)}"}
    status, _, body = get(viewer.url, "/commit/HEAD~2", headers=auth)
    assert status == 200 and repo.resolve("HEAD~2") in body
    status, _, body = get(viewer.url, "/diff/cleaned..HEAD", headers=auth)
    assert status == 200 and "1 changed" not in body
    assert "changed" in body and "rows" in body and "removed" in body  # lr went
    status, _, body = get(viewer.url, "/commit/nosuchrev", headers=auth)
    assert status == 404 and "nosuchrev" in body
    status, _, body = get(viewer.url, "/?branch=nosuch", headers=auth)
    assert status == 404 and "nosuch" in body
    status, _, body = get(viewer.url, "/?page=two", headers=auth)
    assert status == 400 and "whole number" in body


def test_pages_of_a_long_history_and_filters(tmp_path: Path) -> None:
    repo = stashdb.init(tmp_path / "long")
    ns: dict[str, Any] = {"i": 0, "other": 0}
    base = repo.commit("start", namespace=ns)
    for n in range(1, 120):
        changed = {"i"} if n % 3 else {"other"}
        ns["i" if n % 3 else "other"] = n
        made = repo.commit_changes(base, changed, f"step {n}", namespace=ns)
        assert made is not None
        base = made
    running = stashdb.ui(repo, open_browser=False)
    try:
        auth = {"Authorization": f"token {token_of(running)}"}
        pages = []
        for page in (1, 2, 3):
            status, _, body = get(running.url, f"/?page={page}", headers=auth)
            assert status == 200
            pages.append(body.count('class="commit"'))
        assert pages == [50, 50, 20]
        assert 'rel="next"' in get(running.url, "/?page=1", headers=auth)[2]
        status, _, body = get(running.url, "/?name=other", headers=auth)
        assert body.count('class="commit"') == 40  # every third step, and start
        assert "step 3<" in body and "step 4<" not in body
    finally:
        running.stop()


def test_change_counts_in_sql_match_the_manifests(store_url: str) -> None:
    """The log's counts are computed in SQL; they must equal comparing entries in Python."""
    _compare_counts(stashdb.init(store_url))


def _compare_counts(repo: stashdb.Repo) -> None:
    shared = [1, 2, 3]
    ns: dict[str, Any] = {"a": 1, "b": shared, "c": shared, "os": os, "f": lambda: 1}
    repo.commit("one", namespace=ns)
    ns.update(a=2, lock=__import__("threading").Lock())
    del ns["f"]
    repo.commit("two", namespace=ns)
    ns["c"] = [1, 2, 3]  # equal value, no longer the same object as b
    ns["sys"] = sys
    del ns["os"]
    repo.commit("three", namespace=ns)
    repo.commit("same", namespace=ns)
    repo.branch("side", "HEAD~2")
    repo.commit("side", namespace={"z": 1}, branch="side")
    commits = repo.log(all=True)
    counted = repo.change_counts(commits)
    for commit in commits:
        if not commit.parents:
            expected = (len(repo.show(commit.id).entries), 0, 0)
        else:
            d = repo.diff(commit.parents[0], commit.id)
            expected = tuple(sum(c.status == s for c in d.changes)
                             for s in ("added", "changed", "removed"))
        got = counted[commit.id]
        assert (got.added, got.changed, got.removed) == expected, commit.message


def test_cli_refuses_a_taken_port_in_one_line(tmp_path: Path) -> None:
    repo = stashdb.init(tmp_path / "s")
    repo.commit("x", namespace={"x": 1})
    running = stashdb.ui(repo, open_browser=False)
    try:
        port = str(urlsplit(running.url).port)
        done = subprocess.run(
            [sys.executable, "-m", "stashdb", "ui", "--no-browser", "--port", port,
             "--store", str(tmp_path / "s")], capture_output=True, text=True, timeout=60,
        )
        assert done.returncode == 1
        assert done.stderr.strip().count("\n") == 0
        assert "cannot listen on 127.0.0.1:" in done.stderr and "Traceback" not in done.stderr
    finally:
        running.stop()
    assert not running.running


def test_the_cli_opens_the_browser_at_the_tokenized_url(tmp_path: Path) -> None:
    repo = stashdb.init(tmp_path / "s")
    repo.commit("x", namespace={"x": 1})
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.py"  # what $BROWSER names: the webbrowser module runs it
    browser.write_text(f"import sys; open({str(opened)!r}, 'w').write(sys.argv[1])\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "stashdb", "ui", "--store", str(tmp_path / "s")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "BROWSER": f"{sys.executable} {browser} %s"},
    )
    try:
        assert process.stdout is not None
        printed = [process.stdout.readline().strip() for _ in range(2)]
        url = printed[1]
        assert url.startswith("http://127.0.0.1:") and "?token=" in url
        deadline = time.monotonic() + 30
        while not (opened.exists() and opened.read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert opened.read_text() == url
        assert get(url, urlsplit(url).path + "?" + urlsplit(url).query)[0] == 200
    finally:
        process.terminate()
        process.wait(10)


def test_stash_ui_magic_serves_the_shells_store(tmp_path: Path) -> None:
    pytest.importorskip("IPython")
    code = textwrap.dedent(f"""
        import http.client, sys
        from urllib.parse import urlsplit
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance()
        shell.run_line_magic("load_ext", "stashdb")
        shell.run_line_magic("stash", "auto on --store {tmp_path / 'nb'}")
        shell.run_cell("x = 41")
        shell.run_cell("x += 1")
        shell.run_line_magic("stash", "ui --no-browser")
        magics = shell.magics_manager.registry["StashMagics"]
        viewer = magics.viewer
        commits = magics.session.repo.log(all=True)
        assert len(commits) >= 2, commits
        url = urlsplit(viewer.url)
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        conn.request("GET", "/?" + url.query)
        body = conn.getresponse().read().decode()
        assert body.count('class="commit"') == len(commits), body
        assert all(c.id in body for c in commits)
        shell.run_line_magic("stash", "ui --stop")
        assert not viewer.running
        print("OK")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "stashdb ui: http://127.0.0.1:" in done.stdout and "OK" in done.stdout


# -- in a real browser ----------------------------------------------------------------


@pytest.fixture
def browser() -> Iterator[Any]:
    if CHROMIUM is None:
        pytest.skip("no Chromium here: apt-get install chromium (or set STASHDB_TEST_CHROMIUM)")
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with playwright.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


def _page(browser: Any) -> tuple[Any, list[str]]:
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    return page, problems


def _shot(page: Any, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / f"ui-{name}.png"), full_page=True)


def test_click_through_every_page_in_a_browser(
    browser: Any, viewer: stashdb.Viewer, history: tuple[stashdb.Repo, Path]
) -> None:
    repo, marker = history
    page, problems = _page(browser)
    page.goto(viewer.url)
    rows = page.locator("#commits tr.commit")
    assert rows.count() == 5
    assert page.locator("svg.graph circle").count() == 5
    assert page.locator(".ref.tag", has_text="cleaned").count() == 1
    assert page.locator(".ref.branch", has_text="experiment").count() == 1
    _shot(page, "graph")

    page.locator("#commits a", has_text="train").click()
    page.wait_for_url("**/commit/*")
    assert page.locator("#commit-id").inner_text() == repo.resolve("HEAD~1")
    entries = page.locator("#entries tbody tr")
    assert entries.count() == len(repo.show("HEAD~1").entries)
    assert page.locator("#entries tr.skipped", has_text="lock").count() == 1
    _shot(page, "commit")

    page.locator("dl.facts a", has_text="diff").first.click()
    page.wait_for_url("**/diff/*")
    changed = page.locator("#changes tr.changed")
    assert changed.count() >= 1 and "model" in page.locator("#changes").inner_text()
    _shot(page, "diff")

    page.locator("#changes a", has_text="model").click()
    page.wait_for_url("**/variable/model*")
    assert page.locator("#versions tbody tr").count() == 2
    page.wait_for_function("() => window.Chart && Chart.getChart('size-chart') !== undefined")
    box = page.locator("#size-chart").bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 100
    points = page.evaluate("() => Chart.getChart('size-chart').data.datasets[0].data")
    assert points == [v.entry.size for v in reversed(repo.history("model")) if v.entry]
    _shot(page, "variable")

    page.locator("header nav a", has_text="Store").click()
    page.wait_for_url("**/store")
    page.wait_for_function("() => !document.getElementById('stats').dataset.loading")
    assert "×" in page.locator("#stat-ratio").inner_text()
    for chart in ("by-variable", "by-type"):
        assert page.evaluate(f"() => Chart.getChart('{chart}') !== undefined")
    assert page.locator("#objects tbody tr").count() >= 3
    _shot(page, "store")

    assert problems == []  # no script error, no CSP violation
    assert not marker.exists()


def test_the_graph_follows_a_notebook_as_it_snapshots(browser: Any, tmp_path: Path) -> None:
    """A real IPython shell with auto-snapshot commits; the open page updates without a reload."""
    pytest.importorskip("IPython")
    store = tmp_path / "nb"
    repo = stashdb.init(store)
    repo.commit("before the notebook", namespace={"seed": 1})
    running = stashdb.ui(repo, open_browser=False)
    try:
        page, problems = _page(browser)
        page.goto(running.url)
        assert page.locator("#commits tr.commit").count() == 1
        page.evaluate("() => { window.notReloaded = true; }")
        code = textwrap.dedent(f"""
            from IPython.core.interactiveshell import InteractiveShell
            shell = InteractiveShell.instance()
            shell.run_line_magic("load_ext", "stashdb")
            shell.run_line_magic("stash", "auto on --store {store}")
            for n in range(3):
                shell.run_cell(f"value_{{n}} = list(range({{n}} * 100))")
            shell.run_line_magic("stash", "status")
        """)
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=120, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        expected = len(stashdb.open(repo.url).log(all=True))
        assert expected >= 4  # the first, and a snapshot for each cell at least
        page.wait_for_function(
            f"() => document.querySelectorAll('#commits tr.commit').length === {expected}",
            timeout=20000,
        )
        assert page.evaluate("() => window.notReloaded === true && window.stashdbUpdates >= 1")
        assert problems == []
    finally:
        running.stop()


def test_a_viewer_stops_with_the_process_that_started_it(tmp_path: Path) -> None:
    repo = stashdb.init(tmp_path / "s")
    repo.commit("x", namespace={"x": 1})
    code = textwrap.dedent(f"""
        import os, stashdb
        viewer = stashdb.ui({str(tmp_path / 's')!r}, open_browser=False)
        print(viewer.process.pid, flush=True)
        os._exit(0)  # no atexit: as if killed
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    pid = int(done.stdout.split()[0])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, 9)
    raise AssertionError("the viewer outlived the process that started it")
