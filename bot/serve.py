"""Serving the app: Slack's HTTP events and /healthz under cheroot, or Socket Mode."""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Callable, Iterable
from typing import Any

from cheroot import wsgi
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.wsgi import SlackRequestHandler

from bot.runtime import Runtime

logger = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def health_check(runtime: Runtime, socket: SocketModeHandler | None) -> tuple[int, dict[str, str]]:
    """200 when the store answers (and the socket is connected); 503 naming what is not."""
    try:
        runtime.store.ping()
    except Exception as exc:
        return 503, {"status": "unavailable", "reason": f"store unreachable: {type(exc).__name__}"}
    if socket is not None and not socket.client.is_connected():
        return 503, {"status": "unavailable", "reason": "Socket Mode is not connected to Slack"}
    mode = "socket" if socket is not None else "http"
    return 200, {"status": "ok", "mode": mode, "store": "ok"}


def wsgi_app(runtime: Runtime, socket: SocketModeHandler | None) -> WSGIApp:
    """GET /healthz always; POST /slack/events only over HTTP (in Socket Mode events come
    through the socket)."""
    slack = None if socket is not None else SlackRequestHandler(runtime.app, path=EVENTS_PATH)

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == HEALTH_PATH and environ.get("REQUEST_METHOD") == "GET":
            status, body = health_check(runtime, socket)
            payload = json.dumps(body).encode()
            start_response(
                "200 OK" if status == 200 else "503 Service Unavailable",
                [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))],
            )
            return [payload]
        if slack is not None:
            return slack(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"Not Found"]

    return application


def http_server(application: WSGIApp, host: str, port: int) -> wsgi.Server:
    """A multi-threaded production WSGI server; bound by the caller's `prepare()`."""
    return wsgi.Server((host, port), application, numthreads=16, server_name="signcsr-bot")


def run(runtime: Runtime, *, host: str, port: int, app_token: str | None) -> int:
    """Serves until SIGINT or SIGTERM."""
    socket = SocketModeHandler(runtime.app, app_token) if app_token else None
    server = http_server(wsgi_app(runtime, socket), host, port)
    server.prepare()
    stop = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: stop.set())

    thread = threading.Thread(target=server.serve, name="http", daemon=True)
    thread.start()
    if socket is not None:
        socket.connect()
        logger.info(
            "connected to Slack in Socket Mode; /healthz on %s:%d", host, server.bind_addr[1]
        )
    else:
        logger.info("listening for Slack on http://%s:%d%s", host, server.bind_addr[1], EVENTS_PATH)
    stop.wait()

    logger.info("stopping")
    if socket is not None:
        socket.close()
    server.stop()
    runtime.close()
    return 0
