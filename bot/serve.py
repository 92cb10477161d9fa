"""Serving the app: Slack's HTTP events and /healthz under cheroot, or Socket Mode."""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from cheroot import wsgi
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.builtin import SocketModeClient

from bot.runtime import Runtime
from bot.slack.app import slack_error

logger = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"
SWEEP_SECONDS = 60
# Slack answers every ping at once; this many unanswered ping intervals mean it has gone away.
STALE_PINGS = 3
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def health_check(runtime: Runtime, socket: SocketModeHandler | None) -> tuple[int, dict[str, str]]:
    """200 when the store answers (and Slack answers on the socket); 503 naming what is not."""
    try:
        runtime.store.ping()
    except Exception as exc:
        return 503, {"status": "unavailable", "reason": f"store unreachable: {type(exc).__name__}"}
    trouble = socket_trouble(socket.client) if socket is not None else None
    if trouble is not None:
        return 503, {"status": "unavailable", "reason": trouble}
    mode = "socket" if socket is not None else "http"
    return 200, {"status": "ok", "mode": mode, "store": "ok"}


def socket_trouble(client: SocketModeClient) -> str | None:
    """Why the socket cannot carry Slack's events, or None when Slack answered a recent ping."""
    session = client.current_session
    if session is None or not session.is_active():
        return "Socket Mode is not connected to Slack"
    # A socket exists long after Slack has gone away (sends just fail), so only a pong counts;
    # the first comes a moment after connecting. It carries the ping's time.time(), not monotonic.
    answered = session.last_ping_pong_time
    if answered is None:
        return "Socket Mode has had no answer from Slack yet"
    silent = time.time() - answered
    if silent > STALE_PINGS * client.ping_interval:
        return f"Socket Mode has had no answer from Slack for {silent:.0f} seconds"
    return None


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


def sweep_until(runtime: Runtime, stop: threading.Event) -> None:
    """Expires old requests and marks abandoned signings unknown even when nobody uses the
    bot, so their messages stop offering buttons."""
    while True:
        try:
            runtime.listeners.refresh_swept()
        except Exception:
            logger.exception("sweeping old requests failed; trying again later")
        if stop.wait(SWEEP_SECONDS):
            return


class StartFailed(Exception):
    """Serving could not start; the message names the option or variable at fault."""


class Service:
    """The HTTP server and, in Socket Mode, the socket: `start()`, then `wait()` for a signal."""

    def __init__(self, runtime: Runtime, *, host: str, port: int, app_token: str | None) -> None:
        self.runtime = runtime
        self.host = host
        self.port = port
        self.socket = SocketModeHandler(runtime.app, app_token) if app_token else None
        self.server = http_server(wsgi_app(runtime, self.socket), host, port)
        self.stopping = threading.Event()
        self.sweeper = threading.Thread(
            target=sweep_until, args=(runtime, self.stopping), name="sweeper", daemon=True
        )

    def start(self) -> None:
        """Listens, then connects the socket; on failure everything started is stopped again
        (the socket's threads would otherwise keep the process alive)."""
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, lambda *_: self.stopping.set())
        try:
            self._listen()
            self._connect()
        except BaseException:
            self.stop()
            raise
        self.sweeper.start()

    def _listen(self) -> None:
        try:
            self.server.prepare()
        except OSError as exc:
            raise StartFailed(f"could not listen on {self.host}:{self.port}: {exc}") from None
        threading.Thread(target=self.server.serve, name="http", daemon=True).start()
        self.port = self.server.bind_addr[1]

    def _connect(self) -> None:
        if self.socket is None:
            logger.info("listening for Slack on http://%s:%d%s", self.host, self.port, EVENTS_PATH)
            return
        try:
            self.socket.connect()
        except SlackApiError as exc:
            raise StartFailed(f"SLACK_APP_TOKEN was refused by Slack: {slack_error(exc)}") from None
        except OSError as exc:
            url = self.runtime.settings.slack_api_url
            raise StartFailed(f"could not reach Slack at SLACK_API_URL ({url}): {exc}") from None
        # The client does not raise when the websocket fails: it logs and keeps retrying.
        if not self.socket.client.is_connected():
            logger.warning(
                "Socket Mode is not connected to Slack yet; retrying in the background, "
                "and /healthz on %s:%d answers 503 until it connects",
                self.host,
                self.port,
            )
            return
        logger.info("connected to Slack in Socket Mode; /healthz on %s:%d", self.host, self.port)

    def wait(self) -> int:
        """Serves until SIGINT or SIGTERM, then stops."""
        self.stopping.wait()
        logger.info("stopping")
        self.stop()
        return 0

    def stop(self) -> None:
        self.stopping.set()
        if self.sweeper.is_alive():
            self.sweeper.join()
        if self.socket is not None:
            self.socket.close()
        self.server.stop()
        self.runtime.close()
