"""The sandbox's lasting state: token, CA keys, imported CSRs and issued certificates."""

from __future__ import annotations

import json
import logging
import os
import secrets
import tempfile
import threading
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bot.sandbox import ca

logger = logging.getLogger(__name__)

FIRST_CSR_ID = 300
# Certificate IDs start far from CSR IDs so that mistaking one for the other shows at once.
FIRST_CERTIFICATE_ID = 1000
PRIVATE = 0o600
PUBLIC = 0o644


@dataclass(frozen=True)
class StoredCsr:
    """An imported CSR with what getCSRList shows about it."""

    csr_id: int
    pem: str
    domain_name: str
    key_algorithm: str
    key_strength: str
    created: str


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate the sandbox signed, and the name of the CA that signed it."""

    certificate_id: int
    common_name: str
    serial: str
    issuer: str
    pem: str


class SandboxState:
    """Everything the sandbox keeps in its data dir; one lock guards every change."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.lock = threading.RLock()
        data_dir.mkdir(parents=True, exist_ok=True)
        self.authorities = self._load_or_create_authorities()
        self._ensure_tls_certificate()
        tls_ca_pem = self.authorities[ca.TLS_CA_NAME].certificate_pem()
        write_atomically(self.ca_bundle, tls_ca_pem, PUBLIC)
        self._csrs: list[StoredCsr] = []
        self._certificates: list[IssuedCertificate] = []
        self._next_csr_id = FIRST_CSR_ID
        self._next_certificate_id = FIRST_CERTIFICATE_ID
        self._load_records()

    @property
    def ca_bundle(self) -> Path:
        return self.data_dir / "ca-bundle.pem"

    @property
    def tls_files(self) -> tuple[Path, Path]:
        """The HTTPS certificate and key files, as ssl.SSLContext.load_cert_chain wants them."""
        return self.data_dir / "tls-server.pem", self.data_dir / "tls-server.key"

    @property
    def _records_file(self) -> Path:
        return self.data_dir / "state.json"

    def stored_token(self) -> str:
        """The token kept in the data dir, made on first use."""
        path = self.data_dir / "token"
        with self.lock:
            token = path.read_text(encoding="utf-8").strip() if path.exists() else ""
            if token:
                return token
            token = secrets.token_hex(24)
            write_atomically(path, token.encode("ascii") + b"\n", PRIVATE)
            return token

    def add_csr(self, csr: x509.CertificateSigningRequest, created: datetime) -> int:
        algorithm, strength = ca.describe_key(csr)
        with self.lock:
            csr_id = self._next_csr_id
            pem = csr.public_bytes(serialization.Encoding.PEM).decode("ascii")
            created_text = created.strftime("%Y-%m-%d %H:%M:%S")
            stored = StoredCsr(csr_id, pem, ca.display_name(csr), algorithm, strength, created_text)
            self._csrs.append(stored)
            self._next_csr_id += 1
            self._save_records()
        return csr_id

    def csr(self, csr_id: int) -> StoredCsr | None:
        with self.lock:
            return next((stored for stored in self._csrs if stored.csr_id == csr_id), None)

    def csrs_newest_first(self) -> list[StoredCsr]:
        with self.lock:
            return list(reversed(self._csrs))

    @property
    def issued_count(self) -> int:
        with self.lock:
            return len(self._certificates)

    def add_certificate(self, common_name: str, issuer: str, certificate: x509.Certificate) -> int:
        pem = certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
        with self.lock:
            certificate_id = self._next_certificate_id
            serial = ca.serial_hex(certificate)
            issued = IssuedCertificate(certificate_id, common_name, serial, issuer, pem)
            self._certificates.append(issued)
            self._next_certificate_id += 1
            self._save_records()
        return certificate_id

    def find_certificate(self, common_name: str, serial: int) -> IssuedCertificate | None:
        """An issued certificate by common name (any case) and serial number."""
        wanted = common_name.casefold()
        with self.lock:
            for issued in self._certificates:
                if issued.common_name.casefold() == wanted and int(issued.serial, 16) == serial:
                    return issued
        return None

    def _load_or_create_authorities(self) -> dict[str, ca.CertificateAuthority]:
        names = (ca.ROOT_NAME, ca.INTERMEDIATE_NAME, ca.TLS_CA_NAME)
        if all(self._key_path(name).exists() for name in names):
            return {name: self._load_authority(name) for name in names}

        # A partial set (a first start that died half-way) is replaced whole, so that every
        # CA on disk belongs to the same chain.
        now = ca.utc_now()
        root = ca.create_root(ca.ROOT_NAME, now, ca.ROOT_YEARS)
        intermediate = ca.create_subordinate(ca.INTERMEDIATE_NAME, root, now, ca.INTERMEDIATE_YEARS)
        tls_ca = ca.create_root(ca.TLS_CA_NAME, now, ca.TLS_CA_YEARS)
        for authority in (tls_ca, root, intermediate):
            self._save_authority(authority)
        logger.info("Created the sandbox CAs in %s", self.data_dir)
        return {authority.name: authority for authority in (root, intermediate, tls_ca)}

    def _ensure_tls_certificate(self) -> None:
        """Issues the HTTPS certificate on first start, and again when it nears its end."""
        cert_path, key_path = self.tls_files
        now = ca.utc_now()
        if cert_path.exists() and key_path.exists():
            certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
            if certificate.not_valid_after_utc > now + timedelta(days=1):
                return

        key, certificate = ca.create_tls_server(self.authorities[ca.TLS_CA_NAME], now)
        write_atomically(key_path, ca.private_key_pem(key), PRIVATE)
        write_atomically(cert_path, certificate.public_bytes(serialization.Encoding.PEM), PUBLIC)

    def _key_path(self, name: str) -> Path:
        return self.data_dir / "ca" / f"{_file_stem(name)}.key"

    def _certificate_path(self, name: str) -> Path:
        return self.data_dir / "ca" / f"{_file_stem(name)}.pem"

    def _save_authority(self, authority: ca.CertificateAuthority) -> None:
        key_path = self._key_path(authority.name)
        key_path.parent.mkdir(mode=0o700, exist_ok=True)
        write_atomically(key_path, authority.key_pem(), PRIVATE)
        certificate_path = self._certificate_path(authority.name)
        write_atomically(certificate_path, authority.certificate_pem(), PUBLIC)

    def _load_authority(self, name: str) -> ca.CertificateAuthority:
        key = serialization.load_pem_private_key(self._key_path(name).read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{self._key_path(name)} does not hold an EC private key")
        pem = self._certificate_path(name).read_bytes()
        return ca.CertificateAuthority(name, key, x509.load_pem_x509_certificate(pem))

    def _load_records(self) -> None:
        if not self._records_file.exists():
            return
        records = json.loads(self._records_file.read_text(encoding="utf-8"))
        self._csrs = [StoredCsr(**row) for row in records["csrs"]]
        self._certificates = [IssuedCertificate(**row) for row in records["certificates"]]
        self._next_csr_id = records["next_csr_id"]
        self._next_certificate_id = records["next_certificate_id"]

    def _save_records(self) -> None:
        records = {
            "next_csr_id": self._next_csr_id,
            "next_certificate_id": self._next_certificate_id,
            "csrs": [asdict(stored) for stored in self._csrs],
            "certificates": [asdict(issued) for issued in self._certificates],
        }
        write_atomically(self._records_file, json.dumps(records, indent=1).encode("utf-8"), PUBLIC)


def write_atomically(path: Path, content: bytes, mode: int) -> None:
    """Writes a whole file or nothing: readers and crashes never see half of it."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as file:
            os.fchmod(file.fileno(), mode)
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _file_stem(name: str) -> str:
    return name.replace(" ", "-")
