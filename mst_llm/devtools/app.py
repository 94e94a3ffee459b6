"""The page's HTTP side: a Starlette app with a JSON API, a server-sent-event feed and the static page, behind
a token check and a Host check (against DNS rebinding)."""

from __future__ import annotations

import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from string import Template
from typing import Any

import anyio
from anyio import to_thread
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from mst_llm import MSTError
from mst_llm.devtools.errors import DevtoolsError
from mst_llm.devtools.source import Source

STATIC = Path(__file__).parent / "static"
TOKEN_HEADER = "x-devtools-token"
FOLLOW_INTERVAL = 0.05  # seconds between looks at the log: new commits reach the page well within 200 ms


class TokenMiddleware:
    """Refuses every HTTP request and socket that lacks the token (query ``token`` or a header)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and not self._allowed(scope):
            response = JSONResponse({"error": "a valid token is required"}, status_code=403)
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _allowed(self, scope: Scope) -> bool:
        given = dict(scope["headers"]).get(TOKEN_HEADER.encode(), b"")
        for pair in scope.get("query_string", b"").split(b"&"):
            name, _, value = pair.partition(b"=")
            if name == b"token":
                given = value
        return hmac.compare_digest(given, self.token)


def _int(request: Request, name: str, default: int | None = None) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        if default is None:
            raise DevtoolsError(f"the query parameter {name!r} is required")
        return default
    try:
        return int(raw)
    except ValueError:
        raise DevtoolsError(f"{name} must be an integer, not {raw!r}") from None


def _endpoint(body: Callable[[Request], Any]) -> Callable[[Request], Awaitable[Response]]:
    """A JSON endpoint running ``body`` in a worker thread (log reads may take a while on big logs)."""

    async def endpoint(request: Request) -> Response:
        try:
            return JSONResponse(await to_thread.run_sync(body, request))
        except MSTError as error:
            return JSONResponse({"error": str(error)}, status_code=400)

    return endpoint


def create_app(source: Source, *, token: str, hosts: list[str], allow_time_travel: bool) -> Starlette:
    """The devtools app for ``source``; ``hosts``: the Host header values accepted (port excluded)."""
    page = Template((STATIC / "index.html").read_text(encoding="utf-8"))

    async def index(request: Request) -> Response:
        return HTMLResponse(page.substitute(token=token))

    def info(request: Request) -> dict[str, Any]:
        return {**source.info(), "time_travel": allow_time_travel and source.live}

    def travel(request: Request) -> dict[str, Any]:
        source.travel(_int(request, "seq"))
        return {"length": source.refresh()}

    travel_json = _endpoint(travel)

    async def travel_endpoint(request: Request) -> Response:
        if not (allow_time_travel and source.live):
            error = "this page is read-only (serve a live tree with allow_time_travel=True to drive it)"
            return JSONResponse({"error": error}, status_code=403)
        return await travel_json(request)

    async def events(request: Request) -> Response:
        """Server-sent events: the log's length whenever it grows (the page then fetches what it shows), and the
        session's start, which changes when an app starts a new session in the file (the page then loads afresh)."""

        async def stream() -> AsyncIterator[str]:
            sent: dict[str, Any] = {}
            while True:
                length = await to_thread.run_sync(source.refresh)
                now = {"length": length, "session": source.session}
                if now != sent:
                    sent = now
                    yield f"data: {json.dumps(now)}\n\n"
                await anyio.sleep(FOLLOW_INTERVAL)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    routes = [
        Route("/", index),
        Route("/api/info", _endpoint(info)),
        Route(
            "/api/entries",
            _endpoint(
                lambda r: source.entries(_int(r, "offset", 0), _int(r, "limit", 100), r.query_params.get("action", ""))
            ),
        ),
        Route("/api/state", _endpoint(lambda r: source.state(_int(r, "seq")))),
        Route("/api/diff", _endpoint(lambda r: source.diff(_int(r, "a"), _int(r, "b")))),
        Route("/api/who", _endpoint(lambda r: source.who(r.query_params.get("path", ""), _int(r, "limit", 100)))),
        Route("/api/llm", _endpoint(lambda r: source.llm(_int(r, "seq")))),
        Route("/api/travel", travel_endpoint, methods=["POST"]),
        Route("/api/events", events),
        Mount("/static", StaticFiles(directory=STATIC)),
    ]
    middleware = [
        Middleware(TrustedHostMiddleware, allowed_hosts=hosts),  # outermost: a rebinding attack never gets further
        Middleware(TokenMiddleware, token=token),
    ]
    return Starlette(routes=routes, middleware=middleware)
