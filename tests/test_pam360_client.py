"""Tests for the PAM360 client: the requests it sends, the answers it reads, and the words a
person reads when something goes wrong. PAM360 is faked at the HTTP layer: `responses` where
it can answer, a real local server where only a socket can show the failure."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import logging
import os
import socket
import ssl
import threading
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from urllib3.exceptions import MaxRetryError, NewConnectionError

from bot.pam360.client import PAM360Client, Transport
from bot.pam360.errors import (
    AuthenticationRefused,
    ConnectionFailed,
    HTTPStatusError,
    NotJSON,
    OutcomeUnknown,
    PAM360Error,
    PAM360Failure,
    PAM360Refused,
    TimedOut,
    TLSVerificationFailed,
    UnsendableRequest,
)
from bot.pam360.models import MSCASigning, RootSigning

BASE = "https://pam360.example.com:8282"
API = BASE + "/api/pki/restapi/"
TOKEN = "tok-7f3a9c-DO-NOT-LEAK-41e2"
TIMEOUT = 0.3
ATTEMPTS = 3
CSR_PEM = (Path(__file__).parent / "fixtures" / "csr" / "ec-p256.csr").read_bytes()

ROOT_SIGNING = RootSigning(
    csr_id=303, root_name="testroot", root_serial="1879376424c", days=100, intermediate=True
)
EXPECTED_ROOT_INPUT = {
    "operation": {
        "Details": {
            "signType": "signWithRoot",
            "rootCertificateCommonName": "testroot",
            "rootCertificateSerialNumber": "1879376424c",
            "Validity": 100,
            "isIntermediate": "true",
            "CSR_ID": "303",
        }
    }
}
SIGNED_SAMPLE = {
    "result": {
        "message": "Certificate csrtest successfully signed with mytestcert.",
        "status": "Success",
    },
    "name": "SignCSR",
    "details": [{"commonName": "csrtest", "Certificate_ID": 309, "serialNumber": "b7d5fcb7"}],
}
LOGIN_PAGE = "<!DOCTYPE html><html><head><title>PAM360 Login</title></head><body></body></html>"
PEM_CHAIN = (
    "-----BEGIN CERTIFICATE-----\nMIIBleaf\n-----END CERTIFICATE-----\n"
    "-----BEGIN CERTIFICATE-----\nMIIBroot\n-----END CERTIFICATE-----\n"
)


@pytest.fixture(autouse=True)
def _hermetic_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # A proxy would swallow requests meant for 127.0.0.1, and REQUESTS_CA_BUNDLE would stand
    # in for the trust a test means to choose.
    for name in list(os.environ):
        if name.lower().endswith("_proxy") or name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
            monkeypatch.delenv(name)


@pytest.fixture
def make_client() -> Iterator[Callable[..., PAM360Client]]:
    """Builds clients with short timeouts and no retry pause, and closes them afterwards."""
    clients: list[PAM360Client] = []

    def make(base_url: str = BASE, **options: Any) -> PAM360Client:
        options = {"timeout": TIMEOUT, "attempts": ATTEMPTS, "retry_pause": 0, **options}
        client = PAM360Client(Transport(base_url, TOKEN, **options))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client: Callable[..., PAM360Client]) -> PAM360Client:
    return make_client()


@pytest.fixture
def pam360() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


def form_fields(body: str | bytes | None) -> dict[str, list[str]]:
    text = body.decode() if isinstance(body, bytes) else body or ""
    return parse_qs(text, strict_parsing=True)


def sent_input_data(call: Any) -> Any:
    fields = form_fields(call.request.body)
    assert list(fields) == ["INPUT_DATA"]
    assert len(fields["INPUT_DATA"]) == 1
    return json.loads(fields["INPUT_DATA"][0])


def answer(
    mock: responses.RequestsMock,
    operation: str,
    body: Any = None,
    *,
    method: str = "POST",
    status: int = 200,
    content_type: str = "application/json",
) -> None:
    text = body if isinstance(body, str) else json.dumps(body)
    mock.add(method, API + operation, body=text, status=status, content_type=content_type)


def refused_connection(url: str) -> requests.ConnectionError:
    """What requests raises when the TCP connection is refused."""
    refusal = NewConnectionError(None, "[Errno 111] Connection refused")  # type: ignore[arg-type]
    return requests.ConnectionError(MaxRetryError(None, url, refusal))  # type: ignore[arg-type]


def failed(message: str) -> dict[str, Any]:
    return {"result": {"status": "Failed", "message": message}}


def csr_list(*rows: dict[str, Any], nested: bool = True) -> dict[str, Any]:
    listing = {"GeneratedList": list(rows), "totalRows": len(rows)}
    success = {"status": "Success", "message": "CSR list fetched"}
    if nested:
        return {"result": success, "name": "GetCSRList", "details": listing}
    return {"result": success, "name": "GetCSRList", **listing}


def row(csr_id: int | str, domain: str) -> dict[str, Any]:
    return {
        "CSR_ID": csr_id,
        "DOMAIN_NAME": domain,
        "KEYALGORITHM": "EC",
        "KEY_STRENGTH": "256",
        "CREATED_BY": "admin",
        "CREATED_DATE": "Jan 2, 2025 10:00",
    }


# ---------------------------------------------------------------------------------------------
# A real local server, for failures only a socket can show.


def read_request(conn: socket.socket) -> bytes:
    """The request's head and its Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


Handler = Callable[[socket.socket, threading.Event], None]


class LocalServer:
    """Accepts one connection at a time on 127.0.0.1, records each request it reads, then lets
    its handler answer (or not)."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self._handler = handler
        self._tls = tls
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.stopping = threading.Event()
        self.connections = 0
        self.requests: list[bytes] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        scheme = "https" if self._tls else "http"
        return f"{scheme}://127.0.0.1:{self._listener.getsockname()[1]}"

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                raw, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            with raw:
                self._answer(raw)

    def _answer(self, raw: socket.socket) -> None:
        raw.settimeout(2)
        conn = raw
        with contextlib.suppress(OSError):
            if self._tls:
                conn = self._tls.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
                conn.do_handshake()
            self.requests.append(read_request(conn))
            self._handler(conn, self.stopping)
        conn.close()

    def stop(self) -> None:
        self.stopping.set()
        self._thread.join(5)
        self._listener.close()


def drop(conn: socket.socket, stopping: threading.Event) -> None:
    """Read the request, then close without a word."""


def reset(conn: socket.socket, stopping: threading.Event) -> None:
    """Read the request, then abort the connection with a TCP reset."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


def broken_record(conn: socket.socket, stopping: threading.Event) -> None:
    """Read the request over TLS, then answer in the clear: a TLS error after sending."""
    with socket.socket(fileno=os.dup(conn.fileno())) as plain:
        plain.sendall(b"HTTP/1.1 200 OK\r\n\r\n")


def stall(conn: socket.socket, stopping: threading.Event) -> None:
    """Read the request, then say nothing until the test ends."""
    stopping.wait(5)


def stall_in_body(conn: socket.socket, stopping: threading.Event) -> None:
    """Send the head and part of the body, then nothing more."""
    conn.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
    )
    stopping.wait(5)


def reply(status: str, body: str, content_type: str = "application/json") -> Handler:
    payload = body.encode()
    head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
    head += f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"

    def send(conn: socket.socket, stopping: threading.Event) -> None:
        conn.sendall(head.encode() + payload)

    return send


@pytest.fixture
def serve() -> Iterator[Callable[..., LocalServer]]:
    servers: list[LocalServer] = []

    def start(handler: Handler, tls: ssl.SSLContext | None = None) -> LocalServer:
        server = LocalServer(handler, tls)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pam360 test server")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "server.pem", folder / "server.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls(tls_files: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*tls_files)
    return context


@pytest.fixture
def ca_bundle(tls_files: tuple[Path, Path]) -> Path:
    return tls_files[0]


@pytest.fixture
def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# ---------------------------------------------------------------------------------------------
# signCSR as sent


def test_sign_csr_sends_one_form_field_with_the_documented_json(
    client: PAM360Client, pam360: responses.RequestsMock
) -> None:
    answer(pam360, "signCSR", SIGNED_SAMPLE)

    client.sign_csr(ROOT_SIGNING)

    (call,) = pam360.calls
    assert call.request.method == "POST"
    assert call.request.url == BASE + "/api/pki/restapi/signCSR"
    assert call.request.headers["AUTHTOKEN"] == TOKEN
    assert "orgName" not in call.request.headers
    assert call.request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert sent_input_data(call) == EXPECTED_ROOT_INPUT


def test_sign_csr_on_the_wire(make_client: Callable[..., PAM360Client], serve: Any) -> None:
    server = serve(reply("200 OK", json.dumps(SIGNED_SAMPLE)))

    make_client(server.url, org="Acme PKI").sign_csr(ROOT_SIGNING)

    server.stop()
    (request,) = server.requests
    head, _, body = request.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /api/pki/restapi/signCSR HTTP/1.1"
    assert f"AUTHTOKEN: {TOKEN}".encode() in lines
    assert b"orgName: Acme PKI" in lines
    assert b"Content-Type: application/x-www-form-urlencoded" in lines
    assert json.loads(form_fields(body)["INPUT_DATA"][0]) == EXPECTED_ROOT_INPUT


@pytest.mark.parametrize(
    ("configured", "per_call", "sent"),
    [
        (None, None, None),
        ("Acme", None, "Acme"),
        (None, "Subsidiary", "Subsidiary"),
        ("Acme", "Subsidiary", "Subsidiary"),
    ],
)
def test_org_name_header_only_when_configured_and_per_call_org_wins(
    make_client: Callable[..., PAM360Client],
    pam360: responses.RequestsMock,
    configured: str | None,
    per_call: str | None,
    sent: str | None,
) -> None:
    answer(pam360, "signCSR", SIGNED_SAMPLE)
    answer(pam360, "getCSRList", csr_list(), method="GET")
    client = make_client(org=configured)

    client.sign_csr(ROOT_SIGNING, org=per_call)
    client.list_csrs(org=per_call)

    for call in pam360.calls:
        assert call.request.headers.get("orgName") == sent


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        (None, {}),
        (365, {"Validity": 365}),
    ],
)
def test_msca_signing_sends_server_ca_template_and_validity_only_when_given(
    client: PAM360Client, pam360: responses.RequestsMock, days: int | None, expected: dict
) -> None:
    answer(pam360, "signCSR", SIGNED_SAMPLE)
    signing = MSCASigning(
        csr_id=42, server="sandbox-ca01", ca="Sandbox Issuing CA", template="WebServer", days=days
    )

    client.sign_csr(signing)

    assert sent_input_data(pam360.calls[0]) == {
        "operation": {
            "Details": {
                "signType": "MSCA",
                "serverName": "sandbox-ca01",
                "caName": "Sandbox Issuing CA",
                "templateName": "WebServer",
                "CSR_ID": "42",
                **expected,
            }
        }
    }


def test_names_with_quotes_backslashes_and_unicode_survive_the_json(
    client: PAM360Client, pam360: responses.RequestsMock
) -> None:
    answer(pam360, "signCSR", SIGNED_SAMPLE)
    root = 'Ops "Root" CA \\ Zürich — 東京 {"x": 1}'
    signing = MSCASigning(csr_id=7, server='ca"01\\', ca=root, template="Web\nServer")

    client.sign_csr(RootSigning(csr_id=7, root_name=root, root_serial="ab", days=1))
    client.sign_csr(signing)

    first, second = (sent_input_data(call)["operation"]["Details"] for call in pam360.calls)
    assert first["rootCertificateCommonName"] == root
    assert first["isIntermediate"] == "false"
    assert (second["serverName"], second["caName"]) == ('ca"01\\', root)
    assert second["templateName"] == "Web\nServer"


# ---------------------------------------------------------------------------------------------
# signCSR answers


def test_documented_success_sample_becomes_a_sign_result(
    client: PAM360Client, pam360: responses.RequestsMock
) -> None:
    answer(pam360, "signCSR", SIGNED_SAMPLE)

    result = client.sign_csr(ROOT_SIGNING)

    assert result.message == "Certificate csrtest successfully signed with mytestcert."
    assert result.common_name == "csrtest"
    assert result.certificate_id == 309
    assert result.serial_number == "b7d5fcb7"


def test_success_without_details_keeps_the_message(
    client: PAM360Client, pam360: responses.RequestsMock
) -> None:
    answer(pam360, "signCSR", {"result": {"status": "Success", "message": "Signed."}})

    result = client.sign_csr(ROOT_SIGNING)

    assert result.message == "Signed."
    assert (result.common_name, result.certificate_id, result.serial_number) == (None,) * 3


@pytest.mark.parametrize(
    ("sent", "read"),
    [
        ("309", 309),
        ("", None),
        ("n/a", None),
        (309.0, 309),
        (" 309 ", 309),
        (309.5, None),
        (True, None),
        ("²", None),
        ("-", None),
    ],
)
def test_a_certificate_id_in_an_odd_shape_does_not_hide_the_signing(
    client: PAM360Client, pam360: responses.RequestsMock, sent: Any, read: int | None
) -> None:
    signed = {**SIGNED_SAMPLE, "details": [{"commonName": "csrtest", "Certificate_ID": sent}]}
    answer(pam360, "signCSR", signed)

    assert client.sign_csr(ROOT_SIGNING).certificate_id == read
    assert len(pam360.calls) == 1


def test_details_as_one_object_instead_of_a_list_keeps_the_certificate(
    client: PAM360Client, pam360: responses.RequestsMock
) -> None:
    # PAM360 answers getCSRList in more than one shape; signCSR's details may vary too.
    details = {"commonName": "csrtest", "Certificate_ID": 309, "serialNumber": "b7d5fcb7"}
    answer(pam360, "signCSR", {**SIGNED_SAMPLE, "details": details})

    result = client.sign_csr(ROOT_SIGNING)

    assert (result.common_name, result.certificate_id, result.serial_number) == (
        "csrtest",
        309,
        "b7d5fcb7",
    )
    assert len(pam360.calls) == 1


@pytest.mark.parametrize("odd", [{"value": "csrtest"}, ["csrtest"], True, 1.5])
def test_a_name_or_serial_that_is_not_text_is_left_out_not_shown_as_a_repr(
    client: PAM360Client, pam360: responses.RequestsMock, odd: Any
) -> None:
    details = [{"commonName": odd, "Certificate_ID": 309, "serialNumber": odd}]
    answer(pam360, "signCSR", {**SIGNED_SAMPLE, "details": details})

    result = client.sign_csr(ROOT_SIGNING)

    assert (result.common_name, result.serial_number) == (None, None)
    assert result.certificate_id == 309
    assert len(pam360.calls) == 1


def test_a_serial_number_sent_as_a_json_number_is_kept_as_text(
    client: PAM360Client, pam360: responses.RequestsMock
) -> None:
    details = [{"commonName": "csrtest", "Certificate_ID": 309, "serialNumber": 1234}]
    answer(pam360, "signCSR", {**SIGNED_SAMPLE, "details": details})

    assert client.sign_csr(ROOT_SIGNING).serial_number == "1234"


# ---------------------------------------------------------------------------------------------
# Failures, in the words a person reads


def test_failed_status_carries_pam360s_message(
    client: PAM360Client, pam360: responses.RequestsMock
) -> None:
    answer(pam360, "signCSR", failed("CSR with ID 303 does not exist."))

    with pytest.raises(PAM360Refused) as caught:
        client.sign_csr(ROOT_SIGNING)

    assert str(caught.value) == "PAM360 said: CSR with ID 303 does not exist."
    assert caught.value.pam360_message == "CSR with ID 303 does not exist."
    assert isinstance(caught.value, PAM360Failure)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (failed("Invalid AUTHTOKEN"), "application/json"),
        ("", "text/plain"),
    ],
)
def test_401_is_an_authentication_refusal_naming_the_variable(
    client: PAM360Client, pam360: responses.RequestsMock, body: Any, content_type: str
) -> None:
    answer(pam360, "signCSR", body, status=401, content_type=content_type)

    with pytest.raises(AuthenticationRefused) as caught:
        client.sign_csr(ROOT_SIGNING)

    assert "PAM360_AUTHTOKEN" in str(caught.value)
    assert len(pam360.calls) == 1


def test_failed_status_about_the_token_is_an_authentication_refusal(
    client: PAM360Client, pam360: responses.RequestsMock
) -> None:
    answer(pam360, "getCSRList", failed("AUTHTOKEN is invalid"), method="GET")

    with pytest.raises(AuthenticationRefused, match=r"PAM360_AUTHTOKEN.*AUTHTOKEN is invalid"):
        client.list_csrs()


@pytest.mark.parametrize("operation", ["signCSR", "getCSRList"])
def test_html_login_page_is_not_json_and_names_the_url_variable(
    client: PAM360Client, pam360: responses.RequestsMock, operation: str
) -> None:
    method = "POST" if operation == "signCSR" else "GET"
    answer(pam360, operation, LOGIN_PAGE, method=method, content_type="text/html")

    with pytest.raises(NotJSON) as caught:
        client.sign_csr(ROOT_SIGNING) if operation == "signCSR" else client.list_csrs()

    words = str(caught.value)
    assert "HTML page" in words
    assert "PAM360_URL" in words
    assert BASE in words


def test_json_that_is_not_an_object_is_not_json(
    client: PAM360Client, pam360: responses.RequestsMock
) -> None:
    answer(pam360, "getCSRList", [1, 2], method="GET")

    with pytest.raises(NotJSON, match="something other than JSON"):
        client.list_csrs()


@pytest.mark.parametrize(
    ("status", "body", "content_type", "words"),
    [
        (404, "Not Found", "text/plain", "answered HTTP 404 Not Found."),
        (500, "Internal error", "text/plain", "answered HTTP 500 Internal Server Error."),
        (500, "<html>oops</html>", "text/html", "answered HTTP 500 Internal Server Error."),
        (503, "<html>down</html>", "text/html", "answered HTTP 503 Service Unavailable."),
    ],
)
def test_http_error_status_on_a_listing(
    client: PAM360Client,
    pam360: responses.RequestsMock,
    status: int,
    body: str,
    content_type: str,
    words: str,
) -> None:
    answer(pam360, "getCSRList", body, method="GET", status=status, content_type=content_type)

    with pytest.raises(HTTPStatusError) as caught:
        client.list_csrs()

    assert str(caught.value) == f"PAM360 at {BASE} {words}"
    assert caught.value.status_code == status
    assert len(pam360.calls) == 1


def test_html_404_points_at_the_url_variable(
    client: PAM360Client, pam360: responses.RequestsMock
) -> None:
    answer(pam360, "getCSRList", LOGIN_PAGE, method="GET", status=404, content_type="text/html")

    with pytest.raises(NotJSON, match=r"HTML page \(HTTP 404\).*PAM360_URL"):
        client.list_csrs()


def test_error_status_with_a_pam360_message_carries_the_message(
    client: PAM360Client, pam360: responses.RequestsMock
) -> None:
    answer(pam360, "signCSR", failed("Validity exceeds the root's"), status=400)

    with pytest.raises(PAM360Refused, match="PAM360 said: Validity exceeds the root's"):
        client.sign_csr(ROOT_SIGNING)


@pytest.mark.parametrize("status", [500, 502, 504])
def test_sign_csr_gateway_status_is_an_unknown_outcome_sent_once(
    client: PAM360Client, pam360: responses.RequestsMock, status: int
) -> None:
    answer(pam360, "signCSR", "<html>Bad gateway</html>", status=status, content_type="text/html")

    with pytest.raises(OutcomeUnknown) as caught:
        client.sign_csr(ROOT_SIGNING)

    assert not isinstance(caught.value, PAM360Failure)
    assert f"HTTP {status} came back" in str(caught.value)
    assert "may have signed" in str(caught.value)
    assert len(pam360.calls) == 1


def test_a_500_with_pam360s_own_failure_is_a_refusal(
    client: PAM360Client, pam360: responses.RequestsMock
) -> None:
    answer(pam360, "signCSR", failed("Root certificate not found"), status=500)

    with pytest.raises(PAM360Refused, match="PAM360 said: Root certificate not found"):
        client.sign_csr(ROOT_SIGNING)
    assert len(pam360.calls) == 1


@pytest.mark.parametrize("status", [502, 504])
def test_a_gateway_status_is_unknown_even_with_a_failure_body(
    client: PAM360Client, pam360: responses.RequestsMock, status: int
) -> None:
    answer(pam360, "signCSR", failed("upstream timed out"), status=status)

    with pytest.raises(OutcomeUnknown):
        client.sign_csr(ROOT_SIGNING)


NOT_PAM360_JSON = "an answer that is not PAM360's JSON came back"
WITHOUT_STATUS = "an answer without a result status came back"
EMPTY = "an empty answer (HTTP 200) came back"
CUT_SHORT = '{"result": {"status": "Succ'
UNCLEAR_200 = {
    "empty-json": ("", "application/json", EMPTY),
    "blank-text": (" \r\n", "text/plain", EMPTY),
    "empty-html": ("", "text/html", EMPTY),
    "cut-short-json": (CUT_SHORT, "application/json", NOT_PAM360_JSON),
    "cut-short-text": (
        '{"result": {"status": "Success"}, "details": [{',
        "text/plain",
        NOT_PAM360_JSON,
    ),
    "cut-short-untyped": (CUT_SHORT, "", NOT_PAM360_JSON),
    # JSON labelled as HTML is still JSON, cut short; a login page never opens with "{".
    "cut-short-labelled-html": (CUT_SHORT, "text/html", NOT_PAM360_JSON),
    "array": ("[1, 2]", "application/json", NOT_PAM360_JSON),
    "string": ('"Success"', "application/json", NOT_PAM360_JSON),
    "empty-object": ("{}", "application/json", WITHOUT_STATUS),
    "no-result": ('{"name": "SignCSR", "details": []}', "application/json", WITHOUT_STATUS),
    "result-not-object": ('{"result": "Success"}', "application/json", WITHOUT_STATUS),
    "no-status": (
        '{"result": {"message": "Certificate signed."}}',
        "application/json",
        WITHOUT_STATUS,
    ),
    "empty-status": ('{"result": {"status": ""}}', "application/json", WITHOUT_STATUS),
    "null-status": ('{"result": {"status": null}}', "application/json", WITHOUT_STATUS),
    "boolean-status": ('{"result": {"status": true}}', "application/json", WITHOUT_STATUS),
}


@pytest.mark.parametrize(("body", "content_type", "words"), UNCLEAR_200.values(), ids=UNCLEAR_200)
def test_sign_csr_200_without_a_clear_answer_is_unknown_and_sent_once(
    client: PAM360Client, pam360: responses.RequestsMock, body: str, content_type: str, words: str
) -> None:
    # PAM360 may have signed: calling it a failure would invite a second certificate.
    answer(pam360, "signCSR", body, content_type=content_type)

    with pytest.raises(OutcomeUnknown) as caught:
        client.sign_csr(ROOT_SIGNING)

    assert not isinstance(caught.value, PAM360Failure)
    assert caught.value.what_happened == words
    assert str(caught.value) == (
        f"No clear answer: {words} after the request was sent to PAM360 at {BASE}, so"
        " PAM360 may have signed the CSR. Check PAM360's certificates before asking again."
    )
    assert len(pam360.calls) == 1


def test_sign_csr_success_json_labelled_as_html_is_a_success(
    client: PAM360Client, pam360: responses.RequestsMock
) -> None:
    answer(pam360, "signCSR", SIGNED_SAMPLE, content_type="text/html")

    assert client.sign_csr(ROOT_SIGNING).certificate_id == 309
    assert len(pam360.calls) == 1


@pytest.mark.parametrize("status", [201, 204])
def test_sign_csr_other_2xx_with_an_empty_body_is_unknown(
    client: PAM360Client, pam360: responses.RequestsMock, status: int
) -> None:
    answer(pam360, "signCSR", "", status=status)

    with pytest.raises(OutcomeUnknown, match=rf"an empty answer \(HTTP {status}\) came back"):
        client.sign_csr(ROOT_SIGNING)
    assert len(pam360.calls) == 1


def test_sign_csr_200_plain_text_is_not_json(
    client: PAM360Client, pam360: responses.RequestsMock
) -> None:
    # Text that is no JSON at all, not even cut short: the contract counts it a failure.
    answer(pam360, "signCSR", "Service Unavailable", content_type="text/plain")

    with pytest.raises(NotJSON, match=r"something other than JSON \(HTTP 200\)"):
        client.sign_csr(ROOT_SIGNING)
    assert len(pam360.calls) == 1


@pytest.mark.parametrize("content_type", ["text/html", "text/html; charset=UTF-8"])
def test_sign_csr_200_html_page_is_still_not_json(
    client: PAM360Client, pam360: responses.RequestsMock, content_type: str
) -> None:
    # A login or proxy page: the request never reached PAM360's API, so nothing was signed.
    answer(pam360, "signCSR", "  " + LOGIN_PAGE, content_type=content_type)

    with pytest.raises(NotJSON, match=r"answered an HTML page \(HTTP 200\).*PAM360_URL"):
        client.sign_csr(ROOT_SIGNING)
    assert len(pam360.calls) == 1


@pytest.mark.parametrize(
    ("body", "content_type", "error", "words"),
    [
        ("", "application/json", NotJSON, "something other than JSON (HTTP 200)"),
        ('{"result": {"status": "Succ', "application/json", NotJSON, "something other than"),
        ("[1, 2]", "application/json", NotJSON, "something other than JSON (HTTP 200)"),
        ("{}", "application/json", PAM360Refused, "PAM360 answered no status."),
        ('{"result": {"message": "Done."}}', "application/json", PAM360Refused, "Done."),
    ],
)
def test_a_listing_200_without_a_clear_answer_stays_a_failure(
    client: PAM360Client,
    pam360: responses.RequestsMock,
    body: str,
    content_type: str,
    error: type[PAM360Failure],
    words: str,
) -> None:
    # A listing changes nothing, so asking again is safe: no unknown outcome there.
    answer(pam360, "getCSRList", body, method="GET", content_type=content_type)

    with pytest.raises(error) as caught:
        client.list_csrs()
    assert words in str(caught.value)


@pytest.mark.parametrize(
    ("status", "body", "content_type", "error", "words"),
    [
        (400, "", "text/plain", HTTPStatusError, "answered HTTP 400 Bad Request."),
        (400, '{"result": {"sta', "application/json", HTTPStatusError, "HTTP 400"),
        (404, LOGIN_PAGE, "text/html", NotJSON, "an HTML page (HTTP 404)"),
        (403, "", "text/plain", AuthenticationRefused, "PAM360_AUTHTOKEN"),
        (403, "{}", "application/json", AuthenticationRefused, "PAM360_AUTHTOKEN"),
        (409, failed("CSR already signed"), "application/json", PAM360Refused, "already"),
    ],
)
def test_sign_csr_4xx_without_a_clear_body_is_still_a_failure(
    client: PAM360Client,
    pam360: responses.RequestsMock,
    status: int,
    body: Any,
    content_type: str,
    error: type[PAM360Failure],
    words: str,
) -> None:
    answer(pam360, "signCSR", body, status=status, content_type=content_type)

    with pytest.raises(error) as caught:
        client.sign_csr(ROOT_SIGNING)
    assert words in str(caught.value)
    assert len(pam360.calls) == 1


@pytest.mark.parametrize("body", ["", "{", "{}", '{"result": {"message": "oops"}}'])
def test_sign_csr_500_without_pam360s_failure_is_unknown(
    client: PAM360Client, pam360: responses.RequestsMock, body: str
) -> None:
    answer(pam360, "signCSR", body, status=500)

    with pytest.raises(OutcomeUnknown, match="HTTP 500 came back"):
        client.sign_csr(ROOT_SIGNING)
    assert len(pam360.calls) == 1


def test_sign_csr_redirect_is_not_followed_and_keeps_the_token_home(
    client: PAM360Client, pam360: responses.RequestsMock
) -> None:
    pam360.assert_all_requests_are_fired = False
    login = "https://sso.example.net/login"
    pam360.add("POST", API + "signCSR", status=307, headers={"Location": login})
    pam360.add("POST", login, json=SIGNED_SAMPLE)
    pam360.add("GET", login, json=SIGNED_SAMPLE)

    with pytest.raises(NotJSON, match="PAM360_URL"):
        client.sign_csr(ROOT_SIGNING)

    assert [call.request.url for call in pam360.calls] == [API + "signCSR"]


def test_redirect_on_a_listing_is_not_followed(
    client: PAM360Client, pam360: responses.RequestsMock
) -> None:
    pam360.add("GET", API + "getCSRList", status=302, headers={"Location": "/login.do"})

    with pytest.raises(NotJSON, match=r"\(HTTP 302\)"):
        client.list_csrs()

    assert len(pam360.calls) == 1


def test_tls_failure_names_the_url_and_the_ca_bundle_variable(
    make_client: Callable[..., PAM360Client], serve: Any, tls: ssl.SSLContext
) -> None:
    server = serve(reply("200 OK", json.dumps(SIGNED_SAMPLE)), tls)
    client = make_client(server.url)

    with pytest.raises(TLSVerificationFailed) as caught:
        client.sign_csr(ROOT_SIGNING)

    assert server.url in str(caught.value)
    assert "PAM360_CA_BUNDLE" in str(caught.value)
    server.stop()
    assert server.requests == []
    assert server.connections == 1


def test_configured_ca_bundle_verifies_the_server(
    make_client: Callable[..., PAM360Client], serve: Any, tls: ssl.SSLContext, ca_bundle: Path
) -> None:
    server = serve(reply("200 OK", json.dumps(SIGNED_SAMPLE)), tls)

    result = make_client(server.url, ca_bundle=ca_bundle).sign_csr(ROOT_SIGNING)

    assert result.certificate_id == 309


def test_requests_ca_bundle_in_the_environment_does_not_override_the_configured_bundle(
    make_client: Callable[..., PAM360Client],
    serve: Any,
    tls: ssl.SSLContext,
    ca_bundle: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "no-such-bundle.pem"))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(tmp_path / "no-such-bundle.pem"))
    listing = serve(reply("200 OK", json.dumps(csr_list(row(303, "csrtest")))), tls)
    signing = serve(reply("200 OK", json.dumps(SIGNED_SAMPLE)), tls)

    listed = make_client(listing.url, ca_bundle=ca_bundle).list_csrs()
    signed = make_client(signing.url, ca_bundle=ca_bundle).sign_csr(ROOT_SIGNING)

    assert [entry.csr_id for entry in listed.entries] == [303]
    assert signed.common_name == "csrtest"


@pytest.mark.parametrize("operation", ["getCSRList", "signCSR"])
def test_connection_refused_is_retried_then_a_connection_failure(
    make_client: Callable[..., PAM360Client],
    closed_port_url: str,
    caplog: pytest.LogCaptureFixture,
    operation: str,
) -> None:
    client = make_client(closed_port_url)

    with pytest.raises(ConnectionFailed) as caught:
        client.sign_csr(ROOT_SIGNING) if operation == "signCSR" else client.list_csrs()

    assert str(caught.value) == (
        f"Could not connect to PAM360 at {closed_port_url}: check PAM360_URL and that PAM360"
        " is running and reachable from the bot."
    )
    retries = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == ATTEMPTS - 1
    assert all(record.levelno == logging.WARNING for record in retries)


@pytest.mark.parametrize(("method", "operation"), [("GET", "getCSRList"), ("POST", "signCSR")])
def test_refused_connection_is_sent_attempts_times(
    client: PAM360Client, pam360: responses.RequestsMock, method: str, operation: str
) -> None:
    pam360.add(method, API + operation, body=refused_connection(API + operation))

    with pytest.raises(ConnectionFailed):
        client.sign_csr(ROOT_SIGNING) if operation == "signCSR" else client.list_csrs()

    assert len(pam360.calls) == ATTEMPTS


def test_refused_then_answered_succeeds(
    client: PAM360Client, pam360: responses.RequestsMock
) -> None:
    pam360.add("POST", API + "signCSR", body=refused_connection(API + "signCSR"))
    answer(pam360, "signCSR", SIGNED_SAMPLE)

    assert client.sign_csr(ROOT_SIGNING).serial_number == "b7d5fcb7"
    assert len(pam360.calls) == 2


def test_connect_timeout_is_retried_then_timed_out(
    client: PAM360Client, pam360: responses.RequestsMock
) -> None:
    pam360.add("POST", API + "signCSR", body=requests.exceptions.ConnectTimeout("connect"))

    with pytest.raises(TimedOut, match="PAM360_TIMEOUT"):
        client.sign_csr(ROOT_SIGNING)

    assert len(pam360.calls) == ATTEMPTS


def test_read_timeout_on_a_listing_is_timed_out_and_not_retried(
    make_client: Callable[..., PAM360Client], serve: Any
) -> None:
    server = serve(stall)

    with pytest.raises(TimedOut) as caught:
        make_client(server.url).list_csrs()

    assert str(caught.value) == (
        f"PAM360 at {server.url} did not answer within 0.3 seconds (PAM360_TIMEOUT)."
    )
    server.stop()
    assert len(server.requests) == 1


def test_timeout_while_the_body_is_read_is_timed_out(
    make_client: Callable[..., PAM360Client], serve: Any
) -> None:
    server = serve(stall_in_body)

    with pytest.raises(TimedOut, match="PAM360_TIMEOUT"):
        make_client(server.url).list_csrs()


@pytest.mark.parametrize(
    ("handler", "words"),
    [
        (stall, "no answer came within 0.3 seconds after the request was sent"),
        (stall_in_body, "no answer came within 0.3 seconds after the request was sent"),
        (drop, "the connection was dropped after the request was sent"),
        (reset, "the connection was dropped after the request was sent"),
    ],
)
def test_sign_csr_without_a_clear_answer_is_unknown_and_sent_once(
    make_client: Callable[..., PAM360Client], serve: Any, handler: Handler, words: str
) -> None:
    server = serve(handler)

    with pytest.raises(OutcomeUnknown) as caught:
        make_client(server.url).sign_csr(ROOT_SIGNING)

    assert words in str(caught.value)
    assert server.url in str(caught.value)
    assert "Check PAM360's certificates before asking again" in str(caught.value)
    server.stop()
    assert len(server.requests) == 1
    assert server.connections == 1
    assert b"POST /api/pki/restapi/signCSR " in server.requests[0]


@pytest.mark.parametrize("handler", [drop, reset, stall, broken_record])
def test_sign_csr_over_tls_without_a_clear_answer_is_unknown_and_sent_once(
    make_client: Callable[..., PAM360Client],
    serve: Any,
    tls: ssl.SSLContext,
    ca_bundle: Path,
    handler: Handler,
) -> None:
    # A TLS error after the request went out is not a certificate refusal: PAM360 may have
    # signed.
    server = serve(handler, tls)

    with pytest.raises(OutcomeUnknown):
        make_client(server.url, ca_bundle=ca_bundle).sign_csr(ROOT_SIGNING)

    server.stop()
    assert len(server.requests) == 1
    assert server.connections == 1


def test_tls_error_after_sending_a_listing_is_a_connection_failure_not_a_certificate_one(
    make_client: Callable[..., PAM360Client], serve: Any, tls: ssl.SSLContext, ca_bundle: Path
) -> None:
    server = serve(broken_record, tls)

    with pytest.raises(ConnectionFailed, match="PAM360_URL"):
        make_client(server.url, ca_bundle=ca_bundle).list_csrs()

    server.stop()
    assert len(server.requests) == 1


@pytest.mark.parametrize("org", ["東京支社", "Acme\r\nX-Injected: 1", " leading"])
def test_an_org_name_http_cannot_carry_is_refused_before_sending(
    client: PAM360Client, pam360: responses.RequestsMock, org: str
) -> None:
    with pytest.raises(UnsendableRequest, match="orgName"):
        client.sign_csr(ROOT_SIGNING, org=org)

    assert len(pam360.calls) == 0


def test_a_url_requests_cannot_use_is_a_connection_failure_not_an_unknown_outcome(
    make_client: Callable[..., PAM360Client],
) -> None:
    with pytest.raises(ConnectionFailed, match="PAM360_URL"):
        make_client("pam360.example.com:8282").sign_csr(ROOT_SIGNING)


# ---------------------------------------------------------------------------------------------
# getCSRList, importCSR, getCertificate


@pytest.mark.parametrize("nested", [True, False], ids=["under-details", "top-level"])
def test_csr_list_rows_with_numeric_or_text_ids(
    client: PAM360Client, pam360: responses.RequestsMock, nested: bool
) -> None:
    listing = csr_list(row(303, "csrtest"), row("304", "www.example.com"), nested=nested)
    answer(pam360, "getCSRList", listing, method="GET")

    csrs = client.list_csrs()

    assert [(entry.csr_id, entry.domain_name) for entry in csrs.entries] == [
        (303, "csrtest"),
        (304, "www.example.com"),
    ]
    assert csrs.total_rows == 2
    first = csrs.entries[0]
    assert (first.key_algorithm, first.key_strength, first.created_by) == ("EC", "256", "admin")
    assert csrs.find(304) is csrs.entries[1]
    assert csrs.find(999) is None
    (call,) = pam360.calls
    assert call.request.method == "GET"
    assert call.request.headers["AUTHTOKEN"] == TOKEN


def test_csr_list_takes_pam360s_total_and_skips_rows_without_an_id(
    client: PAM360Client, pam360: responses.RequestsMock
) -> None:
    listing = csr_list(row(303, "csrtest"), {"DOMAIN_NAME": "no id"}, row("x", "bad id"))
    listing["details"]["totalRows"] = "120"
    answer(pam360, "getCSRList", listing, method="GET")

    csrs = client.list_csrs()

    assert [entry.csr_id for entry in csrs.entries] == [303]
    assert csrs.total_rows == 120


def test_empty_csr_list(client: PAM360Client, pam360: responses.RequestsMock) -> None:
    answer(pam360, "getCSRList", {"result": {"status": "Success", "message": ""}}, method="GET")

    csrs = client.list_csrs()

    assert csrs.entries == []
    assert csrs.total_rows == 0


def test_import_csr_uploads_the_file_and_finds_the_new_id(
    client: PAM360Client, pam360: responses.RequestsMock
) -> None:
    before = csr_list(row(400, "csrtest"), row(12, "other"))
    after = csr_list(row(400, "csrtest"), row(12, "other"), row(310, "csrtest"), row(500, "x"))
    answer(pam360, "getCSRList", before, method="GET")
    answer(pam360, "importCSR", {"result": {"status": "Success", "message": "CSR imported"}})
    answer(pam360, "getCSRList", after, method="GET")

    entry = client.import_csr(CSR_PEM)

    # 400 is newer but was there before: the same subject imported earlier.
    assert (entry.csr_id, entry.domain_name) == (310, "csrtest")
    upload = pam360.calls[1].request
    assert upload.method == "POST"
    assert upload.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    assert upload.headers["AUTHTOKEN"] == TOKEN
    body = upload.body if isinstance(upload.body, bytes) else str(upload.body).encode()
    assert b'name="CSR"' in body
    assert CSR_PEM in body


def test_import_csr_takes_the_newest_when_every_id_was_listed_before(
    client: PAM360Client, pam360: responses.RequestsMock
) -> None:
    listing = csr_list(row(303, "csrtest"), row(305, "csrtest"))
    answer(pam360, "getCSRList", listing, method="GET")
    answer(pam360, "importCSR", {"result": {"status": "Success", "message": "CSR imported"}})
    answer(pam360, "getCSRList", listing, method="GET")

    assert client.import_csr(CSR_PEM).csr_id == 305


def test_import_csr_refused_by_pam360(client: PAM360Client, pam360: responses.RequestsMock) -> None:
    answer(pam360, "getCSRList", csr_list(), method="GET")
    answer(pam360, "importCSR", failed("The CSR is invalid."))

    with pytest.raises(PAM360Refused, match=r"The CSR is invalid\."):
        client.import_csr(CSR_PEM)


def test_import_csr_not_listed_afterwards(
    client: PAM360Client, pam360: responses.RequestsMock
) -> None:
    answer(pam360, "getCSRList", csr_list(), method="GET")
    answer(pam360, "importCSR", {"result": {"status": "Success", "message": "CSR imported"}})
    answer(pam360, "getCSRList", csr_list(row(1, "someone-else")), method="GET")

    with pytest.raises(PAM360Refused, match="csrtest but does not list it"):
        client.import_csr(CSR_PEM)


def test_get_certificate_sends_input_data_and_returns_the_pem(
    client: PAM360Client, pam360: responses.RequestsMock
) -> None:
    answer(pam360, "getCertificate", PEM_CHAIN, method="GET", content_type="text/plain")

    pem = client.get_certificate("csrtest", "b7d5fcb7")

    assert pem == PEM_CHAIN
    (call,) = pam360.calls
    assert call.request.method == "GET"
    assert call.request.headers["AUTHTOKEN"] == TOKEN
    url = urlsplit(call.request.url)
    assert url.path == "/api/pki/restapi/getCertificate"
    query = parse_qs(url.query, strict_parsing=True)
    assert list(query) == ["INPUT_DATA"]
    assert json.loads(query["INPUT_DATA"][0]) == {
        "operation": {
            "Details": {"common_name": "csrtest", "serial_number": "b7d5fcb7", "fileType": "PEM"}
        }
    }


def test_get_certificate_failure_answer_is_a_refusal(
    client: PAM360Client, pam360: responses.RequestsMock
) -> None:
    answer(pam360, "getCertificate", failed("No certificate found"), method="GET")

    with pytest.raises(PAM360Refused, match="PAM360 said: No certificate found"):
        client.get_certificate("csrtest", "b7d5fcb7")


def test_get_certificate_success_without_a_pem_is_a_refusal(
    client: PAM360Client, pam360: responses.RequestsMock
) -> None:
    answer(pam360, "getCertificate", {"result": {"status": "Success"}}, method="GET")

    with pytest.raises(PAM360Refused, match="no PEM certificate came back for csrtest"):
        client.get_certificate("csrtest", "b7d5fcb7")


def test_get_certificate_401(client: PAM360Client, pam360: responses.RequestsMock) -> None:
    answer(pam360, "getCertificate", failed("Invalid token"), method="GET", status=401)

    with pytest.raises(AuthenticationRefused, match="PAM360_AUTHTOKEN"):
        client.get_certificate("csrtest", "b7d5fcb7")


# ---------------------------------------------------------------------------------------------
# The token stays secret


class Setting:
    """What a failure scenario needs: a mocked PAM360, local servers, and client options."""

    def __init__(
        self,
        pam360: responses.RequestsMock,
        serve: Callable[..., LocalServer],
        tls: ssl.SSLContext,
        ca_bundle: Path,
        closed_port_url: str,
    ) -> None:
        self.pam360 = pam360
        self.serve = serve
        self.tls = tls
        self.ca_bundle = ca_bundle
        self.closed_port_url = closed_port_url

    def answer(self, operation: str, body: Any, **options: Any) -> dict[str, Any]:
        answer(self.pam360, operation, body, **options)
        return {}

    def server(
        self, handler: Handler, *, secure: bool = False, trusted: bool = False
    ) -> dict[str, Any]:
        server = self.serve(handler, self.tls if secure else None)
        return {"base_url": server.url, "ca_bundle": self.ca_bundle if trusted else None}


def sign(client: PAM360Client) -> object:
    return client.sign_csr(ROOT_SIGNING, org="Acme")


def list_csrs(client: PAM360Client) -> object:
    return client.list_csrs()


Scenario = tuple[Callable[[Setting], dict[str, Any]], Callable[[PAM360Client], object]]
FAILURES: dict[str, Scenario] = {
    "failed-status": (lambda s: s.answer("signCSR", failed("CSR 303 is unknown")), sign),
    "401": (lambda s: s.answer("signCSR", failed("bad token"), status=401), sign),
    "login-page": (
        lambda s: s.answer("getCSRList", LOGIN_PAGE, method="GET", content_type="text/html"),
        list_csrs,
    ),
    "404": (
        lambda s: s.answer(
            "getCSRList", "nope", method="GET", status=404, content_type="text/plain"
        ),
        list_csrs,
    ),
    "500-listing": (
        lambda s: s.answer(
            "getCSRList", "boom", method="GET", status=500, content_type="text/plain"
        ),
        list_csrs,
    ),
    "502-sign": (lambda s: s.answer("signCSR", "gw", status=502, content_type="text/plain"), sign),
    "504-sign": (lambda s: s.answer("signCSR", "gw", status=504, content_type="text/plain"), sign),
    "tls": (lambda s: s.server(drop, secure=True), sign),
    "refused": (lambda s: {"base_url": s.closed_port_url}, sign),
    "read-timeout-listing": (lambda s: s.server(stall), list_csrs),
    "read-timeout-sign": (lambda s: s.server(stall), sign),
    "dropped-sign": (lambda s: s.server(drop), sign),
    "reset-sign-tls": (lambda s: s.server(reset, secure=True, trusted=True), sign),
    "broken-record-tls": (lambda s: s.server(broken_record, secure=True, trusted=True), sign),
}


@pytest.mark.parametrize("kind", list(FAILURES))
def test_the_token_appears_in_no_log_record_error_or_repr(
    kind: str,
    make_client: Callable[..., PAM360Client],
    pam360: responses.RequestsMock,
    serve: Callable[..., LocalServer],
    tls: ssl.SSLContext,
    ca_bundle: Path,
    closed_port_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    prepare, act = FAILURES[kind]
    options = prepare(Setting(pam360, serve, tls, ca_bundle, closed_port_url))
    pam360.assert_all_requests_are_fired = bool(pam360.registered())
    if "base_url" in options:
        pam360.add_passthru(options["base_url"])
    client = make_client(**options)

    with pytest.raises(PAM360Error) as caught:
        act(client)

    error = caught.value
    shown = [str(error), repr(error), "".join(traceback.format_exception(error))]
    shown += [repr(client), repr(client.transport), caplog.text]
    shown += [record.getMessage() for record in caplog.records]
    assert caplog.records, "the scenario logs nothing, so it proves nothing"
    for text in shown:
        assert TOKEN not in text
