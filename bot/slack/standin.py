"""A local stand-in for Slack's Web API that records every call: for the demo and the tests."""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

logger = logging.getLogger(__name__)

BOT_USER = "UBOTSIGNCSR"
TEAM = "T0SANDBOX"


@dataclass(frozen=True)
class Call:
    """One Web API call (`method` such as chat.postMessage) or one POST to a response_url
    (`method` "response_url")."""

    method: str
    args: dict[str, Any]
    path: str = ""


@dataclass
class SlackStandIn:
    """Answers Slack Web API methods as Slack would; failures and group members are set by
    the caller. Listening on 127.0.0.1, on a free port unless told otherwise."""

    groups: dict[str, list[str]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    failing_channels: dict[str, str] = field(default_factory=dict)
    on_call: Callable[[Call], None] | None = None
    calls: list[Call] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Condition()
        self._ts = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None

    @property
    def api_url(self) -> str:
        assert self._server is not None, "start() the stand-in first"
        return f"http://127.0.0.1:{self._server.server_address[1]}/api/"

    def response_url(self, name: str = "command") -> str:
        return self.api_url.replace("/api/", f"/respond/{name}")

    def start(self) -> SlackStandIn:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, name="slack-standin", daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> SlackStandIn:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [call for call in self.calls if call.method == method]

    def wait_for(
        self,
        method: str,
        count: int = 1,
        timeout: float = 10.0,
        where: Callable[[Call], bool] | None = None,
    ) -> list[Call]:
        """Waits until `count` matching calls have arrived; the listeners run after the ack."""

        def matching() -> list[Call]:
            return [c for c in self.calls if c.method == method and (where is None or where(c))]

        with self._lock:
            if not self._lock.wait_for(lambda: len(matching()) >= count, timeout=timeout):
                raise AssertionError(f"{count} × {method} not seen; calls: {self.calls}")
            return matching()

    def answer(self, call: Call) -> dict[str, Any]:
        """What Slack would answer to `call`."""
        # Shown before it is recorded: whoever waits for the call then sees it printed.
        if self.on_call is not None:
            self.on_call(call)
        with self._lock:
            self.calls.append(call)
            self._lock.notify_all()
        error = self.failures.get(call.method) or self._channel_failure(call)
        if error:
            return {"ok": False, "error": error}
        return self._success(call)

    def _channel_failure(self, call: Call) -> str | None:
        if call.method not in ("chat.postMessage", "chat.update"):
            return None
        return self.failing_channels.get(str(call.args.get("channel", "")))

    def _success(self, call: Call) -> dict[str, Any]:
        args = call.args
        if call.method == "auth.test":
            return {"ok": True, "user_id": BOT_USER, "team_id": TEAM, "bot_id": "BSIGNCSR"}
        if call.method in ("chat.postMessage", "chat.update"):
            ts = args.get("ts") or f"1700000000.{next(self._ts):06d}"
            return {"ok": True, "channel": args.get("channel"), "ts": ts}
        if call.method == "usergroups.users.list":
            group = str(args.get("usergroup", ""))
            if group not in self.groups:
                return {"ok": False, "error": "no_such_subteam"}
            return {"ok": True, "users": self.groups[group]}
        if call.method in ("views.open", "views.update", "views.push"):
            return {"ok": True, "view": {"id": "VSTANDIN", **json_field(args.get("view"))}}
        return {"ok": True}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode()
                args = parse_body(raw, self.headers.get("Content-Type", ""))
                if self.path.startswith("/api/"):
                    call = Call(self.path.removeprefix("/api/").split("?")[0], args, self.path)
                    body = json.dumps(standin.answer(call)).encode()
                else:
                    standin.answer(Call("response_url", args, self.path))
                    body = b"ok"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                logger.debug("slack stand-in: " + format, *args)

        return Handler


def json_field(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            loaded = json.loads(value)
        except ValueError:
            return {}
        return loaded if isinstance(loaded, dict) else {}
    return value if isinstance(value, dict) else {}


def parse_body(raw: str, content_type: str) -> dict[str, Any]:
    """Slack's SDK sends JSON or form bodies; nested form fields hold JSON text."""
    if "json" in content_type:
        loaded = json.loads(raw or "{}")
        return loaded if isinstance(loaded, dict) else {}
    args: dict[str, Any] = dict(parse_qsl(raw))
    for name in ("blocks", "view", "attachments"):
        if isinstance(args.get(name), str):
            with contextlib.suppress(ValueError):
                args[name] = json.loads(args[name])
    return args
