"""The sandbox's HTTPS server: PAM360's REST paths in front of a real CA."""

from __future__ import annotations

import contextlib
import errno
import hmac
import json
import logging
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any
from urllib.parse import SplitResult, urlsplit

from cryptography import x509

from bot.sandbox import api, ca
from bot.sandbox.api import OperationFailed, PamApi, failure
from bot.sandbox.forms import (
    MalformedRequest,
    details_from_form,
    details_from_query,
    multipart_file,
)
from bot.sandbox.state import SandboxState

logger = logging.getLogger(__name__)

API_PREFIX = "/api/pki/restapi/"
MAX_BODY_BYTES = 1024 * 1024
# How long an idle or slow connection may hold a worker thread.
CONNECTION_TIMEOUT = 30
# How often the accept loop checks for stop(); stopping waits up to this long.
STOP_POLL_SECONDS = 0.05
AUTH_FAILED = failure("Authentication failed: the AUTHTOKEN is invalid or missing.")


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status, content type and body."""

    status: int
    content_type: str
    body: bytes


def json_reply(status: int, answer: dict[str, Any]) -> Reply:
    return Reply(status, "application/json", json.dumps(answer).encode("utf-8"))


@dataclass(frozen=True)
class Route:
    """One PAM360 operation: its HTTP method, its answer name and how to answer it."""

    method: str
    name: str
    answer: Callable[[PamHandler, SplitResult, bytes], Reply]


def _sign_csr(handler: PamHandler, url: SplitResult, body: bytes) -> Reply:
    return json_reply(200, handler.server.pam.sign_csr(details_from_form(body)))


def _csr_list(handler: PamHandler, url: SplitResult, body: bytes) -> Reply:
    return json_reply(200, handler.server.pam.csr_list())


def _import_csr(handler: PamHandler, url: SplitResult, body: bytes) -> Reply:
    content = multipart_file(handler.headers.get("Content-Type", ""), body, "CSR")
    if content is None:
        raise MalformedRequest("The request has no file field CSR.")
    return json_reply(200, handler.server.pam.import_csr(content))


def _certificate(handler: PamHandler, url: SplitResult, body: bytes) -> Reply:
    chain = handler.server.pam.certificate_chain(details_from_query(url.query))
    return Reply(200, "application/x-pem-file", chain)


ROUTES = {
    "signCSR": Route("POST", api.SIGN_CSR, _sign_csr),
    "getCSRList": Route("GET", api.GET_CSR_LIST, _csr_list),
    "importCSR": Route("POST", api.IMPORT_CSR, _import_csr),
    "getCertificate": Route("GET", api.GET_CERTIFICATE, _certificate),
}


def _route_for(path: str) -> Route | None:
    if not path.startswith(API_PREFIX):
        return None
    return ROUTES.get(path[len(API_PREFIX) :])


class PamHandler(BaseHTTPRequestHandler):
    """Checks the AUTHTOKEN, then answers one PAM360 operation."""

    server: PamServer
    protocol_version = "HTTP/1.1"
    server_version = "PAM360-sandbox"
    timeout = CONNECTION_TIMEOUT
    # Headers and body go out in separate writes; Nagle would hold the body back ~40 ms.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")

    def log_message(self, format: str, *args: Any) -> None:
        # The standard access log goes to stderr; ours goes to the logger, at DEBUG.
        logger.debug("%s " + format, self.address_string(), *args)

    def _answer(self, method: str) -> None:
        try:
            reply = self._reply(method)
        except Exception:
            logger.exception("The sandbox failed to answer %s %s", method, self.path)
            reply = json_reply(500, failure("The sandbox failed; see its log."))
        self._send(reply)

    def _reply(self, method: str) -> Reply:
        body = self._read_body()
        if body is None:
            self.close_connection = True
            return json_reply(400, failure(f"Send a Content-Length of at most {MAX_BODY_BYTES}."))
        if not self._authorized():
            return json_reply(401, AUTH_FAILED)

        url = urlsplit(self.path)
        route = _route_for(url.path)
        if route is None:
            return json_reply(404, failure(f"There is no PAM360 API at {url.path}."))
        if route.method != method:
            return json_reply(405, failure(f"Call {url.path} with {route.method}.", route.name))
        try:
            return route.answer(self, url, body)
        except MalformedRequest as exc:
            return json_reply(400, failure(str(exc), route.name))
        except OperationFailed as exc:
            # PAM360 reports refusals with HTTP 200 and a failed status.
            return json_reply(200, failure(str(exc), route.name))

    def _read_body(self) -> bytes | None:
        """The request body, or None when its length is missing, malformed or too large."""
        if "Transfer-Encoding" in self.headers:
            return None
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            return None
        if not 0 <= length <= MAX_BODY_BYTES:
            return None
        return self.rfile.read(length)

    def _authorized(self) -> bool:
        given = self.headers.get("AUTHTOKEN")
        if given is None:
            return False
        # http.server decodes headers as Latin-1, so encoding back gives the bytes sent.
        return hmac.compare_digest(given.encode("latin-1"), self.server.token.encode("utf-8"))

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(reply.body)


class PamServer(ThreadingHTTPServer):
    """A threaded HTTPS server; TLS handshakes run in each connection's own thread."""

    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], pam: PamApi, token: str, tls: ssl.SSLContext
    ) -> None:
        self.pam = pam
        self.token = token
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, PamHandler)
        try:
            # Deferring the handshake keeps a slow client from stalling the accept loop.
            self.socket = tls.wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False
            )
        except BaseException:
            self.server_close()
            raise

    def finish_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        try:
            self._serve_connection(request, client_address)
        finally:
            with self._connections_lock:
                self._connections.discard(request)

    def _serve_connection(self, request: ssl.SSLSocket, client_address: Any) -> None:
        request.settimeout(CONNECTION_TIMEOUT)
        try:
            request.do_handshake()
        except (ssl.SSLError, OSError) as exc:
            logger.debug("TLS handshake with %s failed: %s", client_address[0], exc)
            return
        super().finish_request(request, client_address)

    def close_connections(self) -> None:
        """Ends kept-alive connections, so that no client is answered after stop()."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            # The plain socket's shutdown: the worker thread still owns the TLS state.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(connection, socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("Connection from %s failed", client_address[0], exc_info=True)


class Sandbox:
    """A PAM360-compatible HTTPS server with its CAs and state kept in `data_dir`."""

    def __init__(
        self, data_dir: Path, port: int = 8282, token: str | None = None, host: str = "127.0.0.1"
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.port = port
        self.host = host
        self._state = SandboxState(self.data_dir)
        self.token = token or self._state.stored_token()
        self._pam = PamApi(self._state)
        self._server: PamServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("The sandbox has no URL until it is started.")
        return f"https://{self.host}:{self._server.server_address[1]}"

    @property
    def ca_bundle(self) -> Path:
        return self._state.ca_bundle

    @property
    def roots(self) -> dict[str, str]:
        """Each signing CA's common name and serial, as PAM360 shows serials."""
        names = (ca.ROOT_NAME, ca.INTERMEDIATE_NAME)
        return {name: self._state.authorities[name].serial_hex for name in names}

    def env_lines(self) -> list[str]:
        roots = ",".join(f"{name}={serial}" for name, serial in self.roots.items())
        return [
            f"PAM360_URL={self.url}",
            f"PAM360_AUTHTOKEN={self.token}",
            f"PAM360_CA_BUNDLE={self.ca_bundle}",
            f"SIGNCSR_ROOTS={roots}",
        ]

    @property
    def issued_count(self) -> int:
        """How many certificates the sandbox has signed, over its whole life."""
        return self._state.issued_count

    def ca_certificate(self, common_name: str) -> x509.Certificate:
        if common_name not in self.roots:
            raise KeyError(f"The sandbox has no CA named {common_name}.")
        return self._state.authorities[common_name].certificate

    def import_csr_pem(self, pem: bytes) -> int:
        """Imports a CSR as importCSR does and returns its new CSR_ID; ValueError if refused."""
        try:
            return self._pam.add_csr(pem)
        except OperationFailed as exc:
            raise ValueError(str(exc)) from exc

    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("The sandbox is already started.")
        self._server = self._bind()
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            args=(STOP_POLL_SECONDS,),
            name="pam360-sandbox",
            daemon=True,
        )
        self._thread.start()
        logger.info("PAM360 sandbox listening on %s", self.url)

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.close_connections()
        if thread is not None:
            thread.join()
        logger.info("PAM360 sandbox stopped")

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _bind(self) -> PamServer:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.minimum_version = ssl.TLSVersion.TLSv1_2
        certificate_file, key_file = self._state.tls_files
        tls.load_cert_chain(certificate_file, key_file)
        try:
            return PamServer((self.host, self.port), self._pam, self.token, tls)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                message = f"Port {self.port} on {self.host} is already in use."
                raise OSError(exc.errno, message) from exc
            raise


def next_steps() -> str:
    """How to give the sandbox a CSR, and the names its Microsoft CA answers to."""
    return "\n".join(
        [
            "# To import a CSR (its CSR_ID then shows in getCSRList):",
            '#   curl --cacert "$PAM360_CA_BUNDLE" -H "AUTHTOKEN: $PAM360_AUTHTOKEN" \\',
            '#     -F CSR=@my.csr "$PAM360_URL/api/pki/restapi/importCSR"',
            f"# Its Microsoft CA: server {api.MSCA_SERVER}, CA {api.MSCA_CA!r},"
            f" template {api.MSCA_TEMPLATE} ({api.MSCA_DAYS}-day certificates).",
        ]
    )


def run(port: int, data_dir: Path, token: str | None) -> int:
    """Serves the sandbox until SIGINT or SIGTERM, after printing its environment lines."""
    stop_signals = (signal.SIGINT, signal.SIGTERM)
    stopping: list[int] = []

    def request_stop(signum: int, frame: FrameType | None) -> None:
        # Only a list append here: a signal handler must not wait on locks.
        stopping.append(signum)

    previous = {signum: signal.signal(signum, request_stop) for signum in stop_signals}
    try:
        with Sandbox(data_dir, port=port, token=token) as sandbox:
            print(f"# PAM360 sandbox on {sandbox.url}; Ctrl-C stops it. Environment:", flush=True)
            for line in sandbox.env_lines():
                print(line, flush=True)
            # The next steps go to stderr: stdout stays a clean environment file.
            print(next_steps(), file=sys.stderr, flush=True)
            while not stopping:
                time.sleep(0.2)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0
