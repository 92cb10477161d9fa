"""The real server: `signcsr-bot serve --http` in a subprocess against the Slack stand-in,
Socket Mode against a websocket stand-in, and /healthz's answers when the store or the socket
is down."""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from wsgiref.util import setup_testing_defaults

import pytest
from slack_bolt.adapter.socket_mode import SocketModeHandler

from bot.runtime import Runtime
from bot.serve import Service, wsgi_app
from bot.slack.standin import TEAM, SlackStandIn
from tests.conftest import (
    APPROVER,
    APPROVER_2,
    PAM360_TOKEN,
    SIGNING_SECRET,
    Bot,
    bot_settings,
    signed_headers,
    start_bot,
)
from tests.websocket_standin import SocketModeSlack, WebSocketStandIn

BOT = Path(sys.executable).with_name("signcsr-bot")
BOT_TOKEN = "xoxb-serve-bot-token-never-logged-1a2b"
FORGED_MARKER = "forged-body-must-not-be-logged"
APP_TOKEN = "xapp-serve-app-token"
STALE = re.compile(r"Socket Mode has had no answer from Slack for \d+ seconds")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Answer:
    status: int
    body: bytes
    content_type: str | None

    def json(self) -> Any:
        return json.loads(self.body)


def fetch(port: int, method: str, path: str, body: str = "", headers: Any = None) -> Answer:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request(method, path, body=body.encode(), headers=dict(headers or {}))
        response = connection.getresponse()
        return Answer(response.status, response.read(), response.getheader("Content-Type"))
    finally:
        connection.close()


def command_body(text: str, user: str, slack: SlackStandIn) -> str:
    return urlencode(
        {
            "team_id": TEAM,
            "channel_id": "CPKIREQUESTS",
            "user_id": user,
            "command": "/signcsr",
            "text": text,
            "response_url": slack.response_url(f"command-{user}"),
            "trigger_id": "1337.42.abcd",
        }
    )


@dataclass
class Server:
    """`signcsr-bot serve --http` on a free loopback port, its log in a file."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def wait_until_healthy(self, timeout: float = 20.0) -> Answer:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"serve exited: {self.log.read_text()}")
            try:
                answer = fetch(self.port, "GET", "/healthz")
            except OSError:
                time.sleep(0.05)
                continue
            if answer.status == 200:
                return answer
        raise AssertionError(f"/healthz never answered 200: {self.log.read_text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


@pytest.fixture
def server(tmp_path: Path, slack: SlackStandIn) -> Iterator[Server]:
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.api_url,
        # Nothing listens there: nothing in these tests may need PAM360.
        "PAM360_URL": f"https://127.0.0.1:{free_port()}",
        "PAM360_AUTHTOKEN": PAM360_TOKEN,
        "SIGNCSR_APPROVERS": f"{APPROVER},{APPROVER_2}",
        "SIGNCSR_ROOTS": "testroot=1879376424c",
        "SIGNCSR_DATABASE": f"sqlite:///{tmp_path / 'signcsr.db'}",
    }
    log = tmp_path / "serve.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [str(BOT), "serve", "--http", "--port", str(port), "--host", "127.0.0.1"],
            env=env,
            cwd=tmp_path,
            stdout=log_file,
            stderr=log_file,
        )
    started = Server(process, port, log)
    try:
        yield started
    finally:
        started.stop()


def test_http_server_answers_slack_and_stops_on_sigterm(
    server: Server, slack: SlackStandIn
) -> None:
    health = server.wait_until_healthy()
    assert health.content_type == "application/json"
    assert health.json() == {"status": "ok", "mode": "http", "store": "ok"}
    assert [call.method for call in slack.calls] == ["auth.test"]

    body = command_body("help", APPROVER, slack)
    helped = fetch(server.port, "POST", "/slack/events", body, signed_headers(body))
    assert helped.status == 200
    assert helped.json()["response_type"] == "ephemeral"
    assert "/signcsr" in helped.json()["text"] and "testroot" in helped.json()["text"]
    assert f"<@{APPROVER}>, <@{APPROVER_2}>" in helped.json()["text"]

    forged_body = command_body(f"303 root=testroot reason={FORGED_MARKER}", APPROVER, slack)
    forged = signed_headers(forged_body, secret="not-the-signing-secret")
    assert fetch(server.port, "POST", "/slack/events", forged_body, forged).status == 401
    stale = signed_headers(body, at=int(time.time()) - 6 * 60)
    assert fetch(server.port, "POST", "/slack/events", body, stale).status == 401
    assert fetch(server.port, "GET", "/no/such/path").status == 404
    assert fetch(server.port, "GET", "/slack/events").status == 404

    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=10) == 0
    log = server.log.read_text()
    assert "Traceback" not in log
    for secret in (BOT_TOKEN, SIGNING_SECRET, PAM360_TOKEN, FORGED_MARKER):
        assert secret not in log
    assert slack.calls_to("chat.postMessage") == []


def test_http_server_answers_while_another_request_is_in_flight(
    server: Server, slack: SlackStandIn
) -> None:
    server.wait_until_healthy()
    body = command_body("help", APPROVER, slack)
    head = [
        "POST /slack/events HTTP/1.1",
        f"Host: 127.0.0.1:{server.port}",
        *(f"{name}: {value}" for name, value in signed_headers(body).items()),
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    half = len(body) // 2

    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as slow:
        # Half a body: the worker thread reading it is held until the rest arrives.
        slow.sendall(("\r\n".join(head) + "\r\n\r\n" + body[:half]).encode())
        time.sleep(0.2)
        # A single-threaded server would answer only after the first request (or its
        # 10-second read timeout); 5 seconds is far more than a free worker needs.
        assert fetch(server.port, "GET", "/healthz").status == 200
        slow.sendall(body[half:].encode())
        answer = b"".join(iter(lambda: slow.recv(65536), b""))

    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 200")
    assert b"/signcsr" in rest.partition(b"\r\n\r\n")[2]


def call_wsgi(application: Callable[..., Iterable[bytes]], method: str, path: str) -> Answer:
    environ: dict[str, Any] = {"REQUEST_METHOD": method, "PATH_INFO": path}
    setup_testing_defaults(environ)
    started: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], *_: Any) -> None:
        started.extend([status, dict(headers)])

    body = b"".join(application(environ, start_response))
    return Answer(int(started[0].split()[0]), body, started[1].get("Content-Type"))


def test_healthz_is_503_when_the_store_is_unreachable(make_bot: Any, tmp_path: Path) -> None:
    folder = tmp_path / "store"
    folder.mkdir()
    bot: Bot = make_bot(signcsr_database=f"sqlite:///{folder / 'signcsr.db'}")
    application = wsgi_app(bot.runtime, None)
    assert call_wsgi(application, "GET", "/healthz").status == 200

    bot.runtime.store.engine.dispose()
    shutil.rmtree(folder)
    folder.write_text("a file where the store's folder was")
    answer = call_wsgi(application, "GET", "/healthz")

    assert answer.status == 503
    assert answer.content_type == "application/json"
    assert answer.json()["status"] == "unavailable"
    assert "store unreachable" in answer.json()["reason"]


def test_healthz_is_503_while_socket_mode_is_not_connected(
    make_bot: Any, slack: SlackStandIn
) -> None:
    bot: Bot = make_bot()
    calls_before = list(slack.calls)

    handler = SocketModeHandler(bot.runtime.app, "xapp-test")
    try:
        application = wsgi_app(bot.runtime, handler)
        health = call_wsgi(application, "GET", "/healthz")
        events = call_wsgi(application, "POST", "/slack/events")
    finally:
        handler.close()

    # Building the handler asked Slack nothing: it connects only when told to.
    assert slack.calls == calls_before
    assert health.status == 503
    assert health.json() == {
        "status": "unavailable",
        "reason": "Socket Mode is not connected to Slack",
    }
    assert events.status == 404


@pytest.fixture
def websocket() -> Iterator[WebSocketStandIn]:
    with WebSocketStandIn() as standin:
        yield standin


@pytest.fixture
def socket_slack(websocket: WebSocketStandIn) -> Iterator[SlackStandIn]:
    with SocketModeSlack(websocket_url=websocket.url) as standin:
        yield standin


@pytest.fixture
def socket_runtime(socket_slack: SlackStandIn, tmp_path: Path) -> Iterator[Runtime]:
    runtime = start_bot(socket_slack, bot_settings(socket_slack, tmp_path)).runtime
    yield runtime
    runtime.close()


@pytest.fixture
def service(socket_runtime: Runtime, websocket: WebSocketStandIn) -> Iterator[Service]:
    """A Socket Mode Service, not yet started; pytest gets its signal handlers back after."""
    saved = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    service = Service(socket_runtime, host="127.0.0.1", port=0, app_token=APP_TOKEN)
    try:
        yield service
    finally:
        # Slack hangs up first: the client's close otherwise waits out its 3-second read timeout.
        websocket.drop_connections()
        service.stop()
        for number, handler in saved.items():
            if handler is not None:
                signal.signal(number, handler)


def poll(ask: Callable[[], Answer], until: Callable[[Answer], bool], timeout: float = 10) -> Answer:
    """Asks again until the answer is as wanted; fails with the last answer at the deadline."""
    deadline = time.monotonic() + timeout
    answer = ask()
    while not until(answer):
        if time.monotonic() > deadline:
            raise AssertionError(f"still {answer.status}: {answer.body!r}")
        time.sleep(0.02)
        answer = ask()
    return answer


def serve_messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "bot.serve" and r.levelno == level]


def test_socket_mode_healthz_is_200_once_connected(
    service: Service,
    websocket: WebSocketStandIn,
    socket_slack: SlackStandIn,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="bot.serve")
    service.start()

    health = poll(lambda: fetch(service.port, "GET", "/healthz"), lambda a: a.status == 200)

    assert health.json() == {"status": "ok", "mode": "socket", "store": "ok"}
    assert len(socket_slack.calls_to("apps.connections.open")) == 1
    assert websocket.handshakes == 1 and websocket.pings >= 1
    assert fetch(service.port, "POST", "/slack/events").status == 404
    assert serve_messages(caplog, logging.WARNING) == []
    assert any(
        "connected to Slack in Socket Mode" in m for m in serve_messages(caplog, logging.INFO)
    )


def test_socket_mode_start_warns_while_the_websocket_fails(
    service: Service, websocket: WebSocketStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    websocket.drop_connections()
    caplog.set_level(logging.INFO, logger="bot.serve")
    service.start()

    health = fetch(service.port, "GET", "/healthz")

    assert websocket.handshakes == 0
    assert health.status == 503
    assert health.json()["reason"] == "Socket Mode is not connected to Slack"
    [warning] = serve_messages(caplog, logging.WARNING)
    assert "not connected to Slack yet" in warning and "503" in warning
    assert not any("connected to Slack" in m for m in serve_messages(caplog, logging.INFO))


def test_socket_mode_healthz_is_503_while_slack_leaves_pings_unanswered(
    socket_runtime: Runtime, websocket: WebSocketStandIn
) -> None:
    # Pings every half second: Slack's silence shows within seconds, not half a minute.
    handler = SocketModeHandler(socket_runtime.app, APP_TOKEN, ping_interval=0.5)
    application = wsgi_app(socket_runtime, handler)

    def health() -> Answer:
        return call_wsgi(application, "GET", "/healthz")

    try:
        handler.connect()
        connected = poll(health, lambda a: a.status == 200)
        websocket.stop_answering_pings()
        silent = poll(health, lambda a: a.status != 200)
        websocket.answer_pings()
        answering = poll(health, lambda a: a.status == 200)
    finally:
        websocket.drop_connections()  # see the service fixture
        handler.close()

    assert connected.json() == {"status": "ok", "mode": "socket", "store": "ok"}
    assert silent.status == 503
    # The socket is still there (the client only drops it later): the pongs are what stopped.
    assert STALE.fullmatch(silent.json()["reason"]), silent.json()
    assert answering.json()["mode"] == "socket"
