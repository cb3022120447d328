"""Who may talk to the viewer: the user's own browser, and no one else.

An ASGI middleware in front of every route, as Jupyter guards its server:

- the ``Host`` header must name the address served (a page elsewhere that
  rebinds its DNS name to 127.0.0.1 sends its own name: refused, 403);
  only a wildcard ``--host`` (0.0.0.0, ::) accepts any name, as it must;
- the request must carry the token: ``?token=`` (the URL the viewer opened),
  then a cookie set from it (HttpOnly, SameSite=Strict), or an
  ``Authorization: token …`` header; without it, 403;
- only GET and HEAD: the viewer changes nothing (405 for any other method);
- every response carries a strict Content-Security-Policy (scripts, styles,
  fetches and images from the viewer itself only; no frames, no inline code),
  ``nosniff``, no referrer and no caching. No CORS header is ever sent.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs

__all__ = ["CONTENT_SECURITY_POLICY", "Guard", "allowed_hosts"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)

_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


#: Addresses that listen on every interface: a browser may name the machine any way.
WILDCARDS = ("0.0.0.0", "::", "")


def allowed_hosts(host: str, port: int) -> set[str] | None:
    """The ``Host`` header values a browser sends for the address served (None: any,
    for a wildcard address, which ``--host`` alone chooses; the token still guards it)."""
    if host in WILDCARDS:
        return None
    names = {host}
    if host in ("127.0.0.1", "localhost"):
        names |= {"127.0.0.1", "localhost"}
    if host == "::1":
        names = {"[::1]"}
    return {f"{name}:{port}" for name in names}


class Guard:
    """The middleware: refuses what is not from the user's browser, marks what is."""

    def __init__(self, app: ASGIApp, token: str, hosts: set[str] | None) -> None:
        self.app = app
        self.token = token
        self.hosts = {h.lower() for h in hosts} if hosts is not None else None
        self.cookie = "stashdb-ui-" + hmac.new(token.encode(), b"cookie", "sha256").hexdigest()[:8]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.hosts is not None and headers.get("host", "").lower() not in self.hosts:
            await _refuse(send, 403, "This Host is not served here.")
            return
        given = self._token_of(scope, headers)
        if given is None or not hmac.compare_digest(given, self.token):
            await _refuse(send, 403, "A token is needed: open the URL `stashdb ui` printed.")
            return
        if scope["method"] not in ("GET", "HEAD"):
            await _refuse(send, 405, "The viewer is read-only.")
            return
        from_query = _query_token(scope) is not None

        async def marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = list(_HEADERS)
                if from_query:
                    extra.append((b"set-cookie", (
                        f"{self.cookie}={self.token}; HttpOnly; SameSite=Strict; Path=/"
                    ).encode()))
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, marked)

    def _token_of(self, scope: Scope, headers: dict[str, str]) -> str | None:
        found = _query_token(scope)
        if found is not None:
            return found
        auth = headers.get("authorization", "")
        if auth.lower().startswith("token "):
            return auth[6:].strip()
        cookies: SimpleCookie = SimpleCookie()
        try:
            cookies.load(headers.get("cookie", ""))
        except Exception:  # a malformed Cookie header is no token
            return None
        morsel = cookies.get(self.cookie)
        return morsel.value if morsel is not None else None


def _query_token(scope: Scope) -> str | None:
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
    return values[0] if values else None


async def _refuse(send: Send, status: int, text: str) -> None:
    body = f"{status}: {text}\n".encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()), *_HEADERS],
    })
    await send({"type": "http.response.body", "body": body})
