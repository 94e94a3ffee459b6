"""Serving the page: hypercorn (which runs on asyncio and trio) in a thread of its own, so ``serve`` works the
same from a synchronous program, an asyncio app or a trio app."""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import socket
import warnings
from typing import Any

import anyio
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config

from mst_llm.devtools.app import create_app
from mst_llm.devtools.source import Source, open_source

_LOOPBACK_NAMES = ["localhost", "127.0.0.1", "::1"]


def _allowed_hosts(host: str) -> list[str]:
    """Host header values to accept: the bound host (and loopback names); any, for a wildcard address."""
    if host == "localhost":
        return [host, *_LOOPBACK_NAMES]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return [host]
    if address.is_loopback:
        return [host, *_LOOPBACK_NAMES]
    return ["*"] if address.is_unspecified else [host]


def _quiet_cancellations(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """At shutdown hypercorn cancels open connections, which asyncio would report as errors in callbacks."""
    if not isinstance(context.get("exception"), asyncio.CancelledError):
        loop.default_exception_handler(context)


class DevtoolsServer:
    """A running devtools page: open ``url`` in a browser; ``close()`` stops it (also a context manager)."""

    def __init__(self, source: Source, host: str, port: int, *, allow_time_travel: bool) -> None:
        self.source = source
        self.token = secrets.token_urlsafe(24)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as listener:  # bound here, so port 0 is known now
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((host, port))
            listener.listen(128)
            self.port: int = listener.getsockname()[1]
            descriptor = listener.detach()  # hypercorn owns and closes it from here
        self.host = host
        name = f"[{host}]" if ":" in host else host
        self.url = f"http://{name}:{self.port}/?token={self.token}"
        hosts = _allowed_hosts(host)
        if "127.0.0.1" not in hosts:
            warnings.warn(
                f"the devtools page listens on {host}, not only on this machine: anyone who learns its URL "
                "(which holds the token) can read the state",
                stacklevel=3,
            )
        app = create_app(source, token=self.token, hosts=hosts, allow_time_travel=allow_time_travel)
        config = Config()
        config.bind = [f"fd://{descriptor}"]
        config.accesslog = None
        config.loglevel = "WARNING"  # not hypercorn's "Running on ...": the caller prints the URL with its token
        config.graceful_timeout = 0.2  # the event feeds never end by themselves
        self._portal_cm = start_blocking_portal("asyncio")
        self._portal: BlockingPortal | None = self._portal_cm.__enter__()
        self._stop = self._portal.call(anyio.Event)
        self._done = self._portal.start_task_soon(self._run, app, config)

    async def _run(self, app: Any, config: Config) -> None:
        asyncio.get_running_loop().set_exception_handler(_quiet_cancellations)
        await hypercorn_serve(app, config, shutdown_trigger=self._stop.wait)

    def close(self) -> None:
        """Stop serving, wait for the server to end and release the source (idempotent)."""
        if self._portal is None:
            return
        portal, self._portal = self._portal, None
        try:
            portal.call(self._stop.set)
            self._done.result(timeout=5)
        finally:
            self._portal_cm.__exit__(None, None, None)
            self.source.close()

    def __enter__(self) -> DevtoolsServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def serve(
    tree_or_source: Any, host: str = "127.0.0.1", port: int = 0, allow_time_travel: bool = False
) -> DevtoolsServer:
    """Serve the devtools page for a live tree, a SessionLog or a session-log path; returns at once.

    The page is read-only unless ``allow_time_travel`` (then it can drive a live tree to a past state with
    ``apply_snapshot``). Every request needs the random token in ``url``; binding anywhere but loopback warns.
    """
    source = open_source(tree_or_source)
    try:
        return DevtoolsServer(source, host, port, allow_time_travel=allow_time_travel)
    except BaseException:
        source.close()
        raise
