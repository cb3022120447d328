"""The viewer's web app (Starlette + Jinja2): one route per page, all read-only.

Pages: ``/`` the commit graph (``?branch=``, ``?name=``, ``?page=``),
``/commit/REV``, ``/diff/A..B``, ``/variable/NAME`` (``?branch=``),
``/store`` (``?rev=``). ``/api/state`` and ``/api/stats`` answer the pages'
scripts. Revs are the CLI's (``HEAD~2``, ``cleaned``, a short id). Every page
is rendered from `stashdb.viewer.history.History`, metadata only; templates
escape every stored string (autoescape), and `stashdb.viewer.guard.Guard` sits
in front of all of it.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from stashdb import __version__
from stashdb.errors import (
    AmbiguousRevision,
    InvalidArguments,
    NameNotInSnapshot,
    RefNotFound,
    RevisionNotFound,
    StashError,
)
from stashdb.model import format_size
from stashdb.render.as_json import stats_json
from stashdb.viewer.history import History

__all__ = ["build_app"]

_HERE = Path(__file__).parent
#: Errors that mean "no such thing here": a 404 page that says which.
_NOT_FOUND = (AmbiguousRevision, NameNotInSnapshot, RefNotFound, RevisionNotFound)


def _when(moment: datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(_HERE / "templates"))
    env = templates.env
    env.autoescape = True
    env.filters["size"] = format_size
    env.filters["when"] = _when
    env.filters["tojson_data"] = lambda data: json.dumps(data).replace("</", "<\\/")
    env.globals["version"] = __version__
    return templates


# long: one short closure per route, over the history and templates they share
def build_app(history: History, location: str) -> Starlette:
    """The app serving ``history`` (``location``: the store, as shown in the header)."""
    templates = _templates()

    def page(request: Request, template: str, status: int = 200, **context: Any) -> Response:
        context.update(request=request, location=location)
        return templates.TemplateResponse(request, template, context, status_code=status)

    def number(request: Request, key: str, default: int) -> int:
        text = request.query_params.get(key)
        if text is None or text == "":
            return default
        if not text.isdigit():
            raise InvalidArguments(f"{key} must be a whole number, not {text!r}")
        return int(text)

    def graph(request: Request) -> Response:
        q = request.query_params
        data = history.graph(
            branch=q.get("branch") or None, name=q.get("name") or None,
            page=number(request, "page", 1),
        )
        template = "_rows.html" if q.get("fragment") else "graph.html"

        def link(**change: Any) -> str:
            params = {"branch": data.branch, "name": data.name, "page": data.page, **change}
            return "/?" + urlencode({k: v for k, v in params.items() if v})

        return page(request, template, graph=data, link=link, state=history.state(),
                    names=history.names() if template == "graph.html" else [])

    def commit(request: Request) -> Response:
        found, signer, counts = history.commit(request.path_params["rev"])
        return page(request, "commit.html", commit=found, signer=signer, counts=counts)

    def diff(request: Request) -> Response:
        revs = request.path_params.get("revs")
        if revs is None:  # the form: /diff?a=…&b=…
            a, b = request.query_params.get("a") or "HEAD~1", request.query_params.get("b")
            return RedirectResponse(f"/diff/{a}..{b or 'HEAD'}", status_code=303)
        a, dots, b = revs.partition("..")
        if not dots:
            a, b = f"{revs}~1", revs  # one rev: what it changed
        found = history.diff(a or "HEAD", b or "HEAD")
        shown = [c for c in found.changes if c.status != "unchanged"]
        return page(request, "diff.html", diff=found, changes=shown, a=a or "HEAD",
                    b=b or "HEAD", unchanged=len(found.changes) - len(shown))

    def variable(request: Request) -> Response:
        timeline = history.timeline(
            request.path_params["name"], request.query_params.get("branch") or None
        )
        return page(request, "variable.html", timeline=timeline,
                    branches=history.branches())

    def store(request: Request) -> Response:
        use = history.space(request.query_params.get("rev") or "HEAD")
        chart = {
            "variables": [[", ".join(names), stored] for names, _, _, stored in use.objects[:20]],
            "types": [[t, stored] for t, _, stored in use.by_type[:12]],
        }
        return page(request, "store.html", use=use, chart=chart)

    def state(request: Request) -> Response:
        return JSONResponse({"state": history.state()})

    def stats(request: Request) -> Response:
        found = history.stats()
        return JSONResponse({
            **stats_json(found),
            "text": {
                "stored": format_size(found.stored_bytes),
                "logical": format_size(found.logical_bytes),
                "raw": format_size(found.raw_bytes),
                "ratio": f"{found.dedup_ratio:.1f}×",
            },
        })

    async def not_found(request: Request, exc: Exception) -> Response:
        return page(request, "error.html", 404, title="Not found", message=str(exc))

    async def failed(request: Request, exc: Exception) -> Response:
        return page(request, "error.html", 500, title="The store could not be read",
                    message=str(exc))

    async def bad_request(request: Request, exc: Exception) -> Response:
        return page(request, "error.html", 400, title="Bad request", message=str(exc))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)  # Starlette's own: 404 for an unknown route
        return page(request, "error.html", exc.status_code, title="Not served",
                    message=str(exc.detail))

    handlers: dict[Any, Any] = {e: not_found for e in _NOT_FOUND}
    handlers[StashError] = failed
    handlers[InvalidArguments] = bad_request
    handlers[HTTPException] = http_error
    return Starlette(
        routes=[
            Route("/", graph),
            Route("/commit/{rev:path}", commit),
            Route("/diff", diff),
            Route("/diff/{revs:path}", diff),
            Route("/variable/{name:path}", variable),
            Route("/store", store),
            Route("/api/state", state),
            Route("/api/stats", stats),
            Mount("/static", StaticFiles(directory=str(_HERE / "static")), name="static"),
        ],
        exception_handlers=handlers,
    )
