"""The PAM360 operations the sandbox answers, in PAM360's own answer shapes."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

from bot.sandbox import ca
from bot.sandbox.state import SandboxState

logger = logging.getLogger(__name__)

SIGN_CSR = "SignCSR"
GET_CSR_LIST = "GetCSRList"
IMPORT_CSR = "ImportCSR"
GET_CERTIFICATE = "GetCertificate"

# The emulated Microsoft CA: one server, one CA and one template.
MSCA_SERVER = "sandbox-ca01"
MSCA_CA = "Sandbox Issuing CA"
MSCA_TEMPLATE = "WebServer"
MSCA_DAYS = 365

NOT_A_CSR = "The file is not a valid certificate signing request."
BAD_CSR_SIGNATURE = "The CSR's signature does not verify; it was not imported."


class OperationFailed(Exception):
    """PAM360 refused the operation; the message says why, in words."""


@dataclass(frozen=True)
class SignOrder:
    """What a signCSR request asks for, once read and checked."""

    csr_id: int
    issuer: ca.CertificateAuthority
    days: int
    is_intermediate: bool
    signed_with: str


def result(message: str, status: str = "Success") -> dict[str, str]:
    return {"message": message, "status": status}


def failure(message: str, name: str | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"result": result(message, "Failed")}
    if name is not None:
        answer["name"] = name
    return answer


class PamApi:
    """signCSR, getCSRList, importCSR and getCertificate over the sandbox's state."""

    def __init__(self, state: SandboxState, clock: Callable[[], datetime] = ca.utc_now) -> None:
        self.state = state
        self.clock = clock

    def sign_csr(self, details: Mapping[str, Any]) -> dict[str, Any]:
        order = self._read_order(details)
        common_name, certificate_id, serial = self._issue(order)
        logger.info(
            "Signed CSR %d with %s for %d days: serial %s",
            order.csr_id, order.issuer.name, order.days, serial,
        )  # fmt: skip
        message = f"Certificate {common_name} successfully signed with {order.signed_with}."
        issued = {
            "commonName": common_name,
            "Certificate_ID": certificate_id,
            "serialNumber": serial,
        }
        return {"result": result(message), "name": SIGN_CSR, "details": [issued]}

    def _issue(self, order: SignOrder) -> tuple[str, int, str]:
        """Signs the ordered CSR; answers its common name, Certificate_ID and serial."""
        with self.state.lock:
            csr = self._stored_csr(order.csr_id)
            now = self.clock()
            if not ca.fits_in_issuer(order.issuer, order.days, now):
                raise OperationFailed(
                    f"Validity of {order.days} days would end after the issuer "
                    f"{order.issuer.name} expires on {ca.issuer_end_date(order.issuer)}."
                )
            certificate = ca.issue_certificate(
                csr, order.issuer, order.days, order.is_intermediate, now
            )
            common_name = ca.display_name(csr)
            certificate_id = self.state.add_certificate(common_name, order.issuer.name, certificate)
        return common_name, certificate_id, ca.serial_hex(certificate)

    def csr_list(self) -> dict[str, Any]:
        rows = [
            {
                "CSR_ID": stored.csr_id,
                "DOMAIN_NAME": stored.domain_name,
                "KEYALGORITHM": stored.key_algorithm,
                "KEY_STRENGTH": stored.key_strength,
                "CREATED_BY": "admin",
                "CREATED_DATE": stored.created,
            }
            for stored in self.state.csrs_newest_first()
        ]
        return {
            "result": result("CSR list fetched successfully."),
            "name": GET_CSR_LIST,
            "details": {"GeneratedList": rows, "totalRows": len(rows)},
        }

    def import_csr(self, content: bytes) -> dict[str, Any]:
        # Real PAM360 answers without the new CSR_ID; clients find it in getCSRList.
        self.add_csr(content)
        return {"result": result("CSR imported successfully."), "name": IMPORT_CSR}

    def add_csr(self, content: bytes) -> int:
        """Stores a CSR whose signature verifies and returns its new CSR_ID."""
        try:
            csr = ca.load_csr(content)
            ca.describe_key(csr)
            signature_ok = csr.is_signature_valid
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise OperationFailed(NOT_A_CSR) from exc
        if not signature_ok:
            raise OperationFailed(BAD_CSR_SIGNATURE)

        csr_id = self.state.add_csr(csr, self.clock())
        logger.info("Imported CSR %d for %s", csr_id, ca.display_name(csr))
        return csr_id

    def certificate_chain(self, details: Mapping[str, Any]) -> bytes:
        """The PEM of a certificate followed by its issuers up to the root."""
        common_name = _text(details, "common_name")
        serial_text = _text(details, "serial_number")
        file_type = str(details.get("fileType", "PEM"))
        if file_type.upper() != "PEM":
            raise OperationFailed(f"fileType {file_type} is not supported; ask for PEM.")

        serial = _serial_number(serial_text)
        chain = None if serial is None else self._find_chain(common_name, serial)
        if chain is None:
            raise OperationFailed(
                f"No certificate named {common_name} with serial number {serial_text} was found."
            )
        return b"".join(chain)

    def _find_chain(self, common_name: str, serial: int) -> list[bytes] | None:
        for authority in self._signing_authorities():
            named = authority.name.casefold() == common_name.casefold()
            if named and authority.certificate.serial_number == serial:
                return self._chain_from(authority)
        issued = self.state.find_certificate(common_name, serial)
        if issued is None:
            return None
        issuer = self.state.authorities[issued.issuer]
        return [issued.pem.encode("ascii"), *self._chain_from(issuer)]

    def _chain_from(self, authority: ca.CertificateAuthority) -> list[bytes]:
        """The PEMs of `authority` and of each CA above it, up to its root."""
        by_subject = {known.certificate.subject: known for known in self._signing_authorities()}
        pems = [authority.certificate_pem()]
        while authority.certificate.issuer != authority.certificate.subject:
            authority = by_subject[authority.certificate.issuer]
            pems.append(authority.certificate_pem())
        return pems

    def _signing_authorities(self) -> list[ca.CertificateAuthority]:
        """The CAs PAM360 users see; the TLS CA only serves the sandbox's own HTTPS."""
        return [self.state.authorities[name] for name in (ca.ROOT_NAME, ca.INTERMEDIATE_NAME)]

    def _read_order(self, details: Mapping[str, Any]) -> SignOrder:
        sign_type = details.get("signType")
        if sign_type == "signWithRoot":
            return self._root_order(details)
        if sign_type == "MSCA":
            return self._msca_order(details)
        raise OperationFailed(f"Unknown signType {sign_type}; use signWithRoot or MSCA.")

    def _root_order(self, details: Mapping[str, Any]) -> SignOrder:
        days = _integer(details, "Validity")
        if days < 1:
            raise OperationFailed("Validity must be at least 1 day.")
        is_intermediate = _boolean(details, "isIntermediate")
        csr_id = _integer(details, "CSR_ID")
        name = _text(details, "rootCertificateCommonName")
        serial_text = _text(details, "rootCertificateSerialNumber")
        issuer = next((known for known in self._signing_authorities() if known.name == name), None)
        if issuer is None or _serial_number(serial_text) != issuer.certificate.serial_number:
            raise OperationFailed(f"No CA named {name} with serial number {serial_text} was found.")
        return SignOrder(csr_id, issuer, days, is_intermediate, name)

    def _msca_order(self, details: Mapping[str, Any]) -> SignOrder:
        expected = {"serverName": MSCA_SERVER, "caName": MSCA_CA, "templateName": MSCA_TEMPLATE}
        labels = {"serverName": "server", "caName": "CA", "templateName": "template"}
        for key, known in expected.items():
            asked = _text(details, key)
            if asked != known:
                raise OperationFailed(f"Unknown Microsoft CA {labels[key]} {asked}.")
        csr_id = _integer(details, "CSR_ID")
        # The template decides the validity, as a Microsoft CA does; Validity is ignored.
        issuer = self.state.authorities[ca.INTERMEDIATE_NAME]
        return SignOrder(csr_id, issuer, MSCA_DAYS, False, MSCA_CA)

    def _stored_csr(self, csr_id: int) -> x509.CertificateSigningRequest:
        stored = self.state.csr(csr_id)
        if stored is None:
            raise OperationFailed(f"No CSR found with ID {csr_id}.")
        return ca.load_csr(stored.pem.encode("ascii"))


def _text(details: Mapping[str, Any], key: str) -> str:
    value = details.get(key)
    if value is None or value == "":
        raise OperationFailed(f"{key} is missing.")
    return str(value)


def _integer(details: Mapping[str, Any], key: str) -> int:
    value = details.get(key)
    if value is None:
        raise OperationFailed(f"{key} is missing.")
    # bool is an int in Python, but true is not a number of days or an ID.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise OperationFailed(f"{key} must be a whole number, not {value!r}.")


def _boolean(details: Mapping[str, Any], key: str) -> bool:
    value = details.get(key, False)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise OperationFailed(f"{key} must be true or false, not {value!r}.")


def _serial_number(text: str) -> int | None:
    """A hex serial in any case, with or without colons; None when it is not hex."""
    try:
        return int(text.replace(":", "").strip(), 16)
    except ValueError:
        return None
