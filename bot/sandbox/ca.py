"""The sandbox's certificate authorities: creating them and signing CSRs with them."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROOT_NAME = "testroot"
INTERMEDIATE_NAME = "testintermediate"
TLS_CA_NAME = "signcsr-bot sandbox TLS"

# CA lifetimes in calendar years, as CAs are described ("a 20-year root").
ROOT_YEARS = 20
INTERMEDIATE_YEARS = 10
TLS_CA_YEARS = 20
TLS_SERVER_DAYS = 825

# Backdating absorbs small clock differences between the sandbox and whoever checks a chain.
CA_BACKDATE = timedelta(hours=1)
LEAF_BACKDATE = timedelta(minutes=1)


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA's key and certificate, known by its common name."""

    name: str
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @property
    def serial_hex(self) -> str:
        return serial_hex(self.certificate)

    @property
    def not_after(self) -> datetime:
        return self.certificate.not_valid_after_utc

    def key_pem(self) -> bytes:
        return private_key_pem(self.key)

    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)


def serial_hex(certificate: x509.Certificate) -> str:
    """A serial as PAM360 shows it: lower-case hex, no separators."""
    return format(certificate.serial_number, "x")


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def new_key() -> ec.EllipticCurvePrivateKey:
    # EC keys are generated in microseconds, which keeps first starts and tests fast.
    return ec.generate_private_key(ec.SECP256R1())


def create_root(name: str, now: datetime, years: int) -> CertificateAuthority:
    """A self-signed CA with no path length limit."""
    key = new_key()
    subject = _ca_name(name)
    builder = _ca_builder(subject, subject, key, now, years, path_length=None)
    builder = builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
    )
    return CertificateAuthority(name, key, builder.sign(key, hashes.SHA256()))


def create_subordinate(
    name: str, issuer: CertificateAuthority, now: datetime, years: int
) -> CertificateAuthority:
    """A CA issued by `issuer` that may only issue end-entity certificates."""
    key = new_key()
    subject = _ca_name(name)
    builder = _ca_builder(subject, issuer.certificate.subject, key, now, years, path_length=0)
    builder = builder.add_extension(_authority_key_id(issuer), critical=False)
    return CertificateAuthority(name, key, builder.sign(issuer.key, hashes.SHA256()))


def create_tls_server(
    issuer: CertificateAuthority, now: datetime
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """The certificate the sandbox serves HTTPS with, valid for 127.0.0.1 and localhost."""
    key = new_key()
    not_before = now - LEAF_BACKDATE
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(issuer.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + timedelta(days=TLS_SERVER_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    )
    builder = _add_leaf_basics(builder, key.public_key(), issuer)
    builder = builder.add_extension(_key_usage(digital_signature=True), critical=True)
    return key, builder.sign(issuer.key, hashes.SHA256())


def issue_certificate(
    csr: x509.CertificateSigningRequest,
    issuer: CertificateAuthority,
    days: int,
    is_intermediate: bool,
    now: datetime,
) -> x509.Certificate:
    """Signs `csr` for `days` days (exactly) from one minute before `now`."""
    not_before = now - LEAF_BACKDATE
    builder = (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(issuer.certificate.subject)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + timedelta(days=days))
        .add_extension(_authority_key_id(issuer), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(csr.public_key()), critical=False)
    )
    alt_names = _requested_alt_names(csr)
    if alt_names is not None:
        builder = builder.add_extension(alt_names.value, critical=alt_names.critical)
    for extension, critical in _profile(csr, is_intermediate):
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(issuer.key, hashes.SHA256())


def issuer_end_date(issuer: CertificateAuthority) -> str:
    return issuer.not_after.strftime("%Y-%m-%d")


def fits_in_issuer(issuer: CertificateAuthority, days: int, now: datetime) -> bool:
    """Whether a certificate of `days` days issued now would end within the issuer's life."""
    remaining = issuer.not_after - (now - LEAF_BACKDATE)
    # Dividing timedeltas avoids building a date from a huge day count, which would overflow.
    return days <= remaining / timedelta(days=1)


def load_csr(data: bytes) -> x509.CertificateSigningRequest:
    """Reads a PEM or DER CSR; raises ValueError when it is neither."""
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_csr(data)
    return x509.load_der_x509_csr(data)


def describe_key(csr: x509.CertificateSigningRequest) -> tuple[str, str]:
    """The key algorithm and strength in bits, as getCSRList shows them."""
    key = csr.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", str(key.key_size)
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC", str(key.curve.key_size)
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "ED25519", "256"
    if isinstance(key, ed448.Ed448PublicKey):
        return "ED448", "456"
    return type(key).__name__.removesuffix("PublicKey").upper(), "-"


def display_name(csr: x509.CertificateSigningRequest) -> str:
    """The CSR's common name, else its first subject alternative name, else '-'."""
    common_names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if common_names:
        return str(common_names[0].value)
    alt_names = _requested_alt_names(csr)
    if alt_names is not None and len(alt_names.value) > 0:
        return str(next(iter(alt_names.value)).value)
    return "-"


def utc_now() -> datetime:
    return datetime.now(UTC)


def years_later(moment: datetime, years: int) -> datetime:
    """The same day and time `years` on; 29 February becomes the 28th in a common year."""
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:
        return moment.replace(year=moment.year + years, day=28)


def _ca_name(name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])


def _ca_builder(
    subject: x509.Name,
    issuer: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    now: datetime,
    years: int,
    path_length: int | None,
) -> x509.CertificateBuilder:
    not_before = now - CA_BACKDATE
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(years_later(not_before, years))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


def _add_leaf_basics(
    builder: x509.CertificateBuilder,
    public_key: ec.EllipticCurvePublicKey,
    issuer: CertificateAuthority,
) -> x509.CertificateBuilder:
    return (
        builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(_authority_key_id(issuer), critical=False)
    )


def _authority_key_id(issuer: CertificateAuthority) -> x509.AuthorityKeyIdentifier:
    issuer_key_id = issuer.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_key_id.value)


def _requested_alt_names(
    csr: x509.CertificateSigningRequest,
) -> x509.Extension[x509.SubjectAlternativeName] | None:
    try:
        extension = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return None
    if len(csr.subject) == 0 and not extension.critical:
        # RFC 5280: with an empty subject the alternative names must be marked critical.
        return x509.Extension(extension.oid, True, extension.value)
    return extension


def _profile(
    csr: x509.CertificateSigningRequest, is_intermediate: bool
) -> list[tuple[x509.ExtensionType, bool]]:
    """Basic constraints, key usage and extended key usage for a CA or an end entity."""
    if is_intermediate:
        return [
            (x509.BasicConstraints(ca=True, path_length=_requested_path_length(csr)), True),
            (_ca_key_usage(), True),
        ]
    server_and_client = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    encipherment = isinstance(csr.public_key(), rsa.RSAPublicKey)
    return [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (_key_usage(digital_signature=True, key_encipherment=encipherment), True),
        (x509.ExtendedKeyUsage(server_and_client), False),
    ]


def _requested_path_length(csr: x509.CertificateSigningRequest) -> int | None:
    """Path length 0 when the CSR asks for it; otherwise the CA is left unconstrained."""
    try:
        asked = csr.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return None
    return 0 if asked.ca and asked.path_length == 0 else None


def _ca_key_usage() -> x509.KeyUsage:
    return _key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True)


def _key_usage(
    digital_signature: bool = False,
    key_encipherment: bool = False,
    key_cert_sign: bool = False,
    crl_sign: bool = False,
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )
