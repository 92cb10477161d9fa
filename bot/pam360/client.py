"""PAM360's PKI REST API: a transport that owns the HTTP session, and one method per endpoint."""

from __future__ import annotations

import json
import logging
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import requests
from cryptography import x509
from cryptography.x509.oid import NameOID
from pydantic import SecretStr, ValidationError
from urllib3.exceptions import NewConnectionError, ReadTimeoutError
from urllib3.util.ssl_match_hostname import CertificateError

from bot.pam360.errors import (
    AuthenticationRefused,
    ConnectionFailed,
    HTTPStatusError,
    NotJSON,
    OutcomeUnknown,
    PAM360Failure,
    PAM360Refused,
    TimedOut,
    TLSVerificationFailed,
    UnsendableRequest,
)
from bot.pam360.models import CSREntry, CSRList, Signing, SignResult

logger = logging.getLogger(__name__)

API_PATH = "/api/pki/restapi/"
# Statuses from a gateway (or a crashing PAM360) that say nothing about whether PAM360 acted.
UNCLEAR_STATUSES = {500, 502, 504}
AUTH_STATUSES = {401, 403}
NOT_PAM360_JSON = "an answer that is not PAM360's JSON came back"


# Raised by requests while it builds the request, so nothing has gone out yet.
NOT_BUILT = (
    requests.exceptions.InvalidURL,
    requests.exceptions.InvalidSchema,
    requests.exceptions.MissingSchema,
    requests.exceptions.URLRequired,
    requests.exceptions.InvalidHeader,
)
# A certificate PAM360's TLS handshake showed and we refused: the request was never sent. Other
# TLS errors (a connection ending abruptly, a broken record) also strike while the answer is
# awaited, after the request went out, so they say nothing about what PAM360 received.
CERTIFICATE_REFUSED = (ssl.SSLCertVerificationError, CertificateError)


def wrapped(exc: BaseException) -> Iterator[BaseException]:
    """The exception and those nested in it: requests and urllib3 wrap the original failure
    in `args[0]` and `reason`."""
    current: BaseException | None = exc
    seen: set[int] = set()
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        reason = getattr(current, "reason", None)
        first = current.args[0] if current.args else None
        current = reason if isinstance(reason, BaseException) else None
        if current is None and isinstance(first, BaseException):
            current = first


def nothing_was_sent(exc: requests.RequestException) -> bool:
    """True when the request certainly never reached PAM360, so sending it again is safe."""
    if isinstance(exc, (requests.exceptions.ConnectTimeout, *NOT_BUILT)):
        return True
    if isinstance(exc, requests.exceptions.SSLError):
        return any(isinstance(inner, CERTIFICATE_REFUSED) for inner in wrapped(exc))
    if not isinstance(exc, requests.ConnectionError):
        return False
    return any(isinstance(inner, NewConnectionError) for inner in wrapped(exc))


def timed_out(exc: requests.RequestException) -> bool:
    """True for a read timeout, also the one requests reports as a ConnectionError when it
    strikes while the body is read."""
    if isinstance(exc, requests.exceptions.Timeout):
        return True
    return any(isinstance(inner, ReadTimeoutError) for inner in wrapped(exc))


def sendable_header(value: str) -> bool:
    """http.client sends header values as Latin-1 and requests refuses line breaks."""
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return not value[:1].isspace() and "\r" not in value and "\n" not in value


def result_of(body: Any) -> dict[str, Any]:
    """PAM360's `result` object (status and message) of a JSON answer; empty when missing."""
    result = body.get("result") if isinstance(body, dict) else None
    return result if isinstance(result, dict) else {}


def said_no(response: requests.Response) -> bool:
    """A 500 that carries PAM360's own failure result: PAM360 itself answered, and refused.
    A gateway's 502 or 504 never speaks for PAM360."""
    if response.status_code != 500:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    status = str(result_of(body).get("status", ""))
    return bool(status) and status.lower() != "success"


def unclear_success(response: requests.Response) -> str:
    """What came back, when a 2xx to signCSR says neither yes nor no; "" when it is clear."""
    text = response.text.strip()
    if not text:
        return f"an empty answer (HTTP {response.status_code}) came back"
    try:
        body = response.json()
    except ValueError:
        # JSON cut short may be PAM360's answer; other text (a login or proxy page) is not
        # JSON at all, which the contract counts as a failure: the API never saw the request.
        return NOT_PAM360_JSON if text.startswith(("{", "[")) else ""
    if not isinstance(body, dict):
        return NOT_PAM360_JSON
    status = result_of(body).get("status")
    if not isinstance(status, str) or not status.strip():
        return "an answer without a result status came back"
    return ""


class Transport:
    """Owns the session, base URL, AUTHTOKEN, TLS trust, timeout and the one response check."""

    def __init__(
        self,
        base_url: str,
        token: SecretStr | str,
        *,
        org: str | None = None,
        ca_bundle: Path | None = None,
        timeout: float = 30.0,
        attempts: int = 3,
        retry_pause: float = 0.5,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token if isinstance(token, SecretStr) else SecretStr(token)
        self.org = org
        # Passed on every call: a session-level `verify` loses to REQUESTS_CA_BUNDLE.
        self._verify: str | bool = str(ca_bundle) if ca_bundle else True
        self.timeout = timeout
        self.attempts = max(1, attempts)
        self.retry_pause = retry_pause
        self._session = requests.Session()

    def __repr__(self) -> str:
        return f"Transport(base_url={self.base_url!r}, org={self.org!r})"

    def close(self) -> None:
        self._session.close()

    def url(self, operation: str) -> str:
        return self.base_url + API_PATH + operation

    def call(
        self,
        method: str,
        operation: str,
        *,
        org: str | None = None,
        once: bool = False,
        **kwargs: Any,
    ) -> requests.Response:
        """Sends one request. Retries only failures that certainly sent nothing; `once` marks
        a call that must never be repeated once it may have reached PAM360."""
        url = self.url(operation)
        headers = self._headers(org or self.org)
        send = self._fresh_sender() if once else self._session.request
        for attempt in range(1, self.attempts + 1):
            try:
                logger.debug("PAM360 %s %s (attempt %d)", method, operation, attempt)
                return send(
                    method,
                    url,
                    headers=headers,
                    timeout=self.timeout,
                    verify=self._verify,
                    # Following a redirect would carry the AUTHTOKEN header to wherever it
                    # points (requests strips only Authorization) and could resend signCSR.
                    allow_redirects=False,
                    **kwargs,
                )
            except requests.RequestException as exc:
                error = self._translate(exc, url, once)
                if not nothing_was_sent(exc) or attempt == self.attempts:
                    raise error from None
                if isinstance(exc, (requests.exceptions.SSLError, *NOT_BUILT)):
                    raise error from None
                logger.warning("PAM360 %s failed before sending; retrying: %s", operation, error)
                time.sleep(self.retry_pause * attempt)
        raise AssertionError("unreachable: the loop returns or raises")

    def _headers(self, org: str | None) -> dict[str, str]:
        """AUTHTOKEN and, when there is one, orgName; refused here if they cannot be sent."""
        token = self._token.get_secret_value()
        if not sendable_header(token):
            raise UnsendableRequest(
                "PAM360_AUTHTOKEN holds characters that cannot be sent in an HTTP header."
            )
        headers = {"AUTHTOKEN": token}
        if org:
            if not sendable_header(org):
                raise UnsendableRequest(
                    f"The organization name {org!r} cannot be sent in PAM360's orgName header:"
                    " it must be Latin-1 text on one line."
                )
            headers["orgName"] = org
        return headers

    def _fresh_sender(self) -> Callable[..., requests.Response]:
        """A request function on a new connection: a pooled connection that the server has
        already closed would fail after sending and leave a signCSR's outcome unknown."""

        def send(method: str, url: str, **kwargs: Any) -> requests.Response:
            with requests.Session() as session:
                return session.request(method, url, **kwargs)

        return send

    def _translate(
        self, exc: requests.RequestException, url: str, once: bool
    ) -> PAM360Failure | OutcomeUnknown:
        if isinstance(exc, requests.exceptions.SSLError) and nothing_was_sent(exc):
            return TLSVerificationFailed(self.base_url)
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            return TimedOut(self.base_url, self.timeout)
        if nothing_was_sent(exc):
            return ConnectionFailed(self.base_url)
        if once:
            what = f"no answer came within {self.timeout:g} seconds"
            if isinstance(exc, requests.exceptions.SSLError):
                what = "the TLS connection failed"
            elif not timed_out(exc):
                what = "the connection was dropped"
            return OutcomeUnknown(self.base_url, what)
        if timed_out(exc):
            return TimedOut(self.base_url, self.timeout)
        return ConnectionFailed(self.base_url)

    def check(self, response: requests.Response, *, once: bool = False) -> dict[str, Any]:
        """PAM360's JSON answer when its status is Success; our own error otherwise."""
        if once:
            self._refuse_unclear(response)
        body = self._json_body(response)
        result = result_of(body)
        status = str(result.get("status", ""))
        message = str(result.get("message", ""))
        if response.status_code in AUTH_STATUSES:
            raise AuthenticationRefused(message)
        if response.status_code >= 400:
            if message:
                raise PAM360Refused(message, status or str(response.status_code))
            raise HTTPStatusError(self.base_url, response.status_code, response.reason or "")
        if status.lower() != "success":
            if "authtoken" in message.lower() or "authenticat" in message.lower():
                raise AuthenticationRefused(message)
            raise PAM360Refused(message, status or "no status")
        return body

    def _refuse_unclear(self, response: requests.Response) -> None:
        """Raises OutcomeUnknown when the answer to a `once` call may hide a signing."""
        # Calling such an answer a failure would invite a second request, and a second
        # certificate.
        what = ""
        if response.status_code in UNCLEAR_STATUSES and not said_no(response):
            what = f"HTTP {response.status_code} came back"
        elif 200 <= response.status_code < 300:
            what = unclear_success(response)
        if what:
            raise OutcomeUnknown(self.base_url, what)

    def _json_body(self, response: requests.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            if response.status_code in AUTH_STATUSES:
                raise AuthenticationRefused() from None
            # A server error page says nothing about PAM360_URL; a 4xx HTML page may well
            # be a web server that is not PAM360.
            html = "html" in self._content_type(response).lower()
            if response.status_code >= 500 or (response.status_code >= 400 and not html):
                raise HTTPStatusError(
                    self.base_url, response.status_code, response.reason or ""
                ) from None
            raise NotJSON(
                self.base_url, response.status_code, self._content_type(response)
            ) from None
        if not isinstance(body, dict):
            raise NotJSON(self.base_url, response.status_code, self._content_type(response))
        return body

    @staticmethod
    def _content_type(response: requests.Response) -> str:
        return response.headers.get("Content-Type", "")


def csr_common_name(pem: bytes) -> str:
    """The name PAM360 lists a CSR under: its subject's CN, else its first DNS name."""
    csr = x509.load_pem_x509_csr(pem)
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if names:
        return str(names[0].value)
    try:
        sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ""
    dns = sans.get_values_for_type(x509.DNSName)
    return dns[0] if dns else ""


def text_or_none(value: Any) -> str | None:
    """Text PAM360 may send as a JSON string or number; None for anything else, not a repr."""
    if isinstance(value, bool):
        return None
    return str(value) if isinstance(value, (str, int)) else None


def int_or_none(value: Any) -> int | None:
    """A number PAM360 may send as a JSON number (309 or 309.0) or as text; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    # isdecimal, not isdigit: int() refuses digits such as "²" that isdigit accepts.
    if isinstance(value, str) and value.strip().isdecimal():
        return int(value.strip())
    return None


def first_detail(details: Any) -> dict[str, Any]:
    """signCSR's certificate details: documented as a list of one object, also seen bare."""
    if isinstance(details, dict):
        return details
    if isinstance(details, list) and details and isinstance(details[0], dict):
        return details[0]
    return {}


def csr_entry(row: Any) -> CSREntry | None:
    """One getCSRList row, or None for a row without a usable CSR_ID: no request can name
    it, and it must not hide the rows that can be used."""
    try:
        return CSREntry.model_validate(row)
    except ValidationError:
        logger.warning("PAM360 listed a CSR without a usable CSR_ID; it is left out")
        return None


def input_data(details: dict[str, Any]) -> str:
    """PAM360's INPUT_DATA: the operation's details wrapped as PAM360 expects, as JSON."""
    return json.dumps({"operation": {"Details": details}}, ensure_ascii=False)


class PAM360Client:
    """The PAM360 endpoints this bot uses, each returning a typed answer."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    def __repr__(self) -> str:
        return f"PAM360Client({self.transport!r})"

    @property
    def url(self) -> str:
        return self.transport.base_url

    def close(self) -> None:
        self.transport.close()

    def sign_csr(self, signing: Signing, *, org: str | None = None) -> SignResult:
        """POST signCSR, exactly once: a call that may have reached PAM360 is never resent."""
        response = self.transport.call(
            "POST",
            "signCSR",
            org=org,
            once=True,
            data={"INPUT_DATA": input_data(signing.details())},
        )
        body = self.transport.check(response, once=True)
        message = str(body["result"].get("message", ""))
        first = first_detail(body.get("details"))
        return SignResult(
            message=message,
            common_name=text_or_none(first.get("commonName")),
            # Read leniently: the CSR is signed by now, an odd ID must not hide that.
            certificate_id=int_or_none(first.get("Certificate_ID")),
            serial_number=text_or_none(first.get("serialNumber")),
        )

    def list_csrs(self, *, org: str | None = None) -> CSRList:
        """GET getCSRList: every CSR stored in PAM360, as PAM360 orders them."""
        body = self.transport.check(self.transport.call("GET", "getCSRList", org=org))
        # Seen both at the top level and under "details"; accept either.
        details = body.get("details")
        holder: dict[str, Any] = details if isinstance(details, dict) else body
        rows = holder.get("GeneratedList") or []
        entries = [entry for entry in map(csr_entry, rows) if entry is not None]
        total = int_or_none(holder.get("totalRows"))
        return CSRList(entries=entries, total_rows=len(entries) if total is None else total)

    def import_csr(self, pem: bytes, *, filename: str = "request.csr") -> CSREntry:
        """POST importCSR, then find the new CSR's ID: PAM360's answer does not carry it."""
        before = {entry.csr_id for entry in self.list_csrs().entries}
        files = {"CSR": (filename, pem, "application/pkcs10")}
        self.transport.check(self.transport.call("POST", "importCSR", files=files))

        domain = csr_common_name(pem)
        listed = [entry for entry in self.list_csrs().entries if entry.domain_name == domain]
        if not listed:
            raise PAM360Refused(f"PAM360 took the CSR for {domain} but does not list it.")
        # Newest first, preferring an ID that was not there before: the same subject may
        # already have been imported earlier.
        return max(listed, key=lambda entry: (entry.csr_id not in before, entry.csr_id))

    def get_certificate(self, common_name: str, serial: str) -> str:
        """GET getCertificate as PEM: the certificate first, then its issuers."""
        details = {"common_name": common_name, "serial_number": serial, "fileType": "PEM"}
        response = self.transport.call(
            "GET", "getCertificate", params={"INPUT_DATA": input_data(details)}
        )
        if response.ok and "BEGIN CERTIFICATE" in response.text:
            return response.text
        self.transport.check(response)
        raise PAM360Refused(f"no PEM certificate came back for {common_name}")


def build_client(
    url: str,
    token: SecretStr | str,
    *,
    org: str | None = None,
    ca_bundle: Path | None = None,
    timeout: float = 30.0,
) -> PAM360Client:
    return PAM360Client(Transport(url, token, org=org, ca_bundle=ca_bundle, timeout=timeout))
