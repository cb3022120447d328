"""``stashdb ui``: a local, read-only web viewer of a store's commits, variables and diffs.

- `stashdb.viewer.history`: what each page shows, from the store's metadata only;
- `stashdb.viewer.guard`: the token, the Host check, read-only, the CSP;
- `stashdb.viewer.app`: the Starlette routes and their Jinja2 templates;
- `stashdb.viewer.launch`: `serve` (the CLI, blocking) and `ui` (Python and
  IPython: the server in its own process, so a kernel never pays for it).

The web stack (Starlette, uvicorn, Jinja2) is the ``stashdb[ui]`` extra and is
imported only by `serve`; Chart.js is served from ``static/`` (no CDN).
"""
