"""The PAM360 sandbox, driven over HTTPS the way PAM360 clients call it."""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bot.sandbox.server import Sandbox

FIXTURES = Path(__file__).parent / "fixtures" / "csr"
REPO_ROOT = Path(__file__).parent.parent
API = "/api/pki/restapi/"
AUTH_FAILED = {
    "result": {
        "message": "Authentication failed: the AUTHTOKEN is invalid or missing.",
        "status": "Failed",
    }
}


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    with Sandbox(tmp_path / "sandbox", port=0) as running:
        yield running


class Pam:
    """Calls one sandbox the way a PAM360 client does."""

    def __init__(self, sandbox: Sandbox, token: str | None = None) -> None:
        self.sandbox = sandbox
        self.headers = {"AUTHTOKEN": sandbox.token if token is None else token, "orgName": "x"}

    def get(self, operation: str, **params: str) -> requests.Response:
        url = self.sandbox.url + API + operation
        return requests.get(
            url, params=params, headers=self.headers, verify=str(self.sandbox.ca_bundle), timeout=10
        )

    def post(self, operation: str, **kwargs: Any) -> requests.Response:
        url = self.sandbox.url + API + operation
        return requests.post(
            url, headers=self.headers, verify=str(self.sandbox.ca_bundle), timeout=10, **kwargs
        )

    def import_csr(self, content: bytes) -> dict[str, Any]:
        response = self.post("importCSR", files={"CSR": ("request.csr", content)})
        answer: dict[str, Any] = response.json()
        return answer

    def csr_rows(self) -> list[dict[str, Any]]:
        details = self.get("getCSRList").json()["details"]
        assert details["totalRows"] == len(details["GeneratedList"])
        rows: list[dict[str, Any]] = details["GeneratedList"]
        return rows

    def import_and_find(self, content: bytes, domain_name: str) -> int:
        assert self.import_csr(content)["result"]["status"] == "Success"
        return next(row["CSR_ID"] for row in self.csr_rows() if row["DOMAIN_NAME"] == domain_name)

    def sign(self, **details: Any) -> dict[str, Any]:
        form = {"INPUT_DATA": json.dumps({"operation": {"Details": details}})}
        response = self.post("signCSR", data=form)
        assert response.headers["Content-Type"] == "application/json"
        answer: dict[str, Any] = response.json()
        return answer

    def sign_with_root(self, csr_id: int | str, root: str, days: int | str, **more: Any) -> Any:
        return self.sign(
            signType="signWithRoot",
            rootCertificateCommonName=root,
            rootCertificateSerialNumber=self.sandbox.roots.get(root, "01"),
            Validity=days,
            isIntermediate=more.pop("isIntermediate", "false"),
            CSR_ID=str(csr_id),
            **more,
        )

    def certificate(self, common_name: str, serial: str) -> requests.Response:
        details = {"common_name": common_name, "serial_number": serial, "fileType": "PEM"}
        return self.get(
            "getCertificate", INPUT_DATA=json.dumps({"operation": {"Details": details}})
        )

    def chain(self, common_name: str, serial: str) -> list[x509.Certificate]:
        response = self.certificate(common_name, serial)
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "application/x-pem-file"
        return x509.load_pem_x509_certificates(response.content)


def fixture_csr(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def alt_names(item: x509.Certificate | x509.CertificateSigningRequest) -> Any:
    try:
        return item.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None


def extension(certificate: x509.Certificate, kind: type[x509.ExtensionType]) -> Any:
    return certificate.extensions.get_extension_for_class(kind).value


def failure_message(answer: dict[str, Any]) -> str:
    assert answer["result"]["status"] == "Failed"
    message: str = answer["result"]["message"]
    return message


@pytest.mark.parametrize(
    ("file", "domain_name", "root", "days", "intermediate"),
    [
        ("rsa2048-sans.csr", "api.payments.example.com", "testintermediate", 100, "false"),
        ("ec-p256.csr", "csrtest", "testroot", 30, False),
        ("ed25519.csr", "edge-gw-01.internal.example", "testintermediate", "365", "false"),
        ("rsa4096-intermediate.csr", "Example Issuing CA 2", "testroot", 1825, "true"),
        ("ec-p384-utf8.csr", "café.example.com", "testintermediate", 10, "false"),
    ],
)
def test_signed_certificate_matches_csr_and_chains_to_the_ca(
    sandbox: Sandbox, file: str, domain_name: str, root: str, days: Any, intermediate: Any
) -> None:
    pam = Pam(sandbox)
    csr = x509.load_pem_x509_csr(fixture_csr(file))
    csr_id = pam.import_and_find(fixture_csr(file), domain_name)

    answer = pam.sign_with_root(csr_id, root, days, isIntermediate=intermediate)

    assert answer["result"] == {
        "message": f"Certificate {domain_name} successfully signed with {root}.",
        "status": "Success",
    }
    assert answer["name"] == "SignCSR"
    issued = answer["details"][0]
    assert issued["commonName"] == domain_name
    assert isinstance(issued["Certificate_ID"], int)

    certificate, *issuers = pam.chain(domain_name, issued["serialNumber"])
    issuer = sandbox.ca_certificate(root)
    assert issuers[0] == issuer
    assert issuers[-1] == sandbox.ca_certificate("testroot")
    certificate.verify_directly_issued_by(issuer)
    assert issued["serialNumber"] == format(certificate.serial_number, "x")
    assert certificate.subject == csr.subject
    assert alt_names(certificate) == alt_names(csr)
    assert (certificate.not_valid_after_utc - certificate.not_valid_before_utc).days == int(days)
    assert_profile(certificate, csr, issuer, is_ca=intermediate in ("true", True))


def assert_profile(
    certificate: x509.Certificate,
    csr: x509.CertificateSigningRequest,
    issuer: x509.Certificate,
    is_ca: bool,
) -> None:
    constraints = extension(certificate, x509.BasicConstraints)
    assert constraints.ca is is_ca
    if is_ca:
        # The intermediate CSR fixture asks for path length 0.
        assert constraints.path_length == 0
        assert extension(certificate, x509.KeyUsage).key_cert_sign
    else:
        usages = set(extension(certificate, x509.ExtendedKeyUsage))
        assert usages == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
        assert extension(certificate, x509.KeyUsage).digital_signature
    issuer_key_id = extension(issuer, x509.SubjectKeyIdentifier).digest
    assert extension(certificate, x509.AuthorityKeyIdentifier).key_identifier == issuer_key_id
    own_key_id = x509.SubjectKeyIdentifier.from_public_key(csr.public_key())
    assert extension(certificate, x509.SubjectKeyIdentifier) == own_key_id


def test_csr_list_shows_imports_newest_first(sandbox: Sandbox) -> None:
    pam = Pam(sandbox)
    for file in ("rsa2048-sans.csr", "ec-p384-utf8.csr", "ed25519.csr"):
        assert pam.import_csr(fixture_csr(file)) == {
            "result": {"message": "CSR imported successfully.", "status": "Success"},
            "name": "ImportCSR",
        }

    answer = pam.get("getCSRList").json()

    assert answer["result"] == {"message": "CSR list fetched successfully.", "status": "Success"}
    assert answer["name"] == "GetCSRList"
    rows = answer["details"]["GeneratedList"]
    assert answer["details"]["totalRows"] == 3
    ids = [row["CSR_ID"] for row in rows]
    assert ids == sorted(ids, reverse=True) and ids[0] == ids[2] + 2
    described = [(row["DOMAIN_NAME"], row["KEYALGORITHM"], row["KEY_STRENGTH"]) for row in rows]
    assert described == [
        ("edge-gw-01.internal.example", "ED25519", "256"),
        ("café.example.com", "EC", "384"),
        ("api.payments.example.com", "RSA", "2048"),
    ]
    assert {row["CREATED_BY"] for row in rows} == {"admin"}
    assert all(row["CREATED_DATE"] for row in rows)


def test_csr_without_common_name_is_listed_by_its_first_alt_name(sandbox: Sandbox) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    names = x509.SubjectAlternativeName([x509.DNSName("only-san.example.com")])
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(names, critical=True)
        .sign(key, hashes.SHA256())
    )
    csr_id = sandbox.import_csr_pem(csr.public_bytes(serialization.Encoding.DER))
    pam = Pam(sandbox)

    answer = pam.sign_with_root(csr_id, "testintermediate", 7)

    assert pam.csr_rows()[0]["DOMAIN_NAME"] == "only-san.example.com"
    assert answer["details"][0]["commonName"] == "only-san.example.com"


def test_msca_issues_a_365_day_leaf_from_the_intermediate(sandbox: Sandbox) -> None:
    pam = Pam(sandbox)
    csr_id = pam.import_and_find(fixture_csr("ec-p256.csr"), "csrtest")

    answer = pam.sign(
        signType="MSCA",
        serverName="sandbox-ca01",
        caName="Sandbox Issuing CA",
        templateName="WebServer",
        CSR_ID=csr_id,
        Validity=30,
    )

    assert answer["result"]["status"] == "Success", answer
    certificate, *issuers = pam.chain("csrtest", answer["details"][0]["serialNumber"])
    certificate.verify_directly_issued_by(sandbox.ca_certificate("testintermediate"))
    assert (certificate.not_valid_after_utc - certificate.not_valid_before_utc).days == 365
    assert not extension(certificate, x509.BasicConstraints).ca
    assert len(issuers) == 2


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("serverName", "ca02", "server ca02"),
        ("caName", "Other CA", "CA Other CA"),
        ("templateName", "CodeSigning", "template CodeSigning"),
    ],
)
def test_msca_refuses_unknown_names(sandbox: Sandbox, field: str, value: str, named: str) -> None:
    pam = Pam(sandbox)
    csr_id = pam.import_and_find(fixture_csr("ec-p256.csr"), "csrtest")
    details = {
        "serverName": "sandbox-ca01",
        "caName": "Sandbox Issuing CA",
        "templateName": "WebServer",
        "CSR_ID": str(csr_id),
    }

    answer = pam.sign(signType="MSCA", **(details | {field: value}))

    assert failure_message(answer) == f"Unknown Microsoft CA {named}."
    assert answer["name"] == "SignCSR"


def test_validity_past_the_issuers_end_is_refused_naming_the_date(sandbox: Sandbox) -> None:
    pam = Pam(sandbox)
    csr_id = pam.import_and_find(fixture_csr("ec-p256.csr"), "csrtest")
    end = sandbox.ca_certificate("testintermediate").not_valid_after_utc

    answer = pam.sign_with_root(csr_id, "testintermediate", 9000)

    assert failure_message(answer) == (
        "Validity of 9000 days would end after the issuer testintermediate expires on "
        f"{end:%Y-%m-%d}."
    )
    root_end = sandbox.ca_certificate("testroot").not_valid_after_utc
    huge = pam.sign_with_root(csr_id, "testroot", 10**12)
    assert failure_message(huge).endswith(f"testroot expires on {root_end:%Y-%m-%d}.")


def test_validity_up_to_the_issuers_end_is_accepted(sandbox: Sandbox) -> None:
    pam = Pam(sandbox)
    csr_id = pam.import_and_find(fixture_csr("ec-p256.csr"), "csrtest")
    issuer = sandbox.ca_certificate("testintermediate")
    days = (issuer.not_valid_after_utc - issuer.not_valid_before_utc - timedelta(days=1)).days

    answer = pam.sign_with_root(csr_id, "testintermediate", days)

    assert answer["result"]["status"] == "Success", answer


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"CSR_ID": "999"}, "No CSR found with ID 999."),
        ({"Validity": 0}, "Validity must be at least 1 day."),
        ({"Validity": "ten"}, "Validity must be a whole number, not 'ten'."),
        ({"isIntermediate": "maybe"}, "isIntermediate must be true or false, not 'maybe'."),
        ({"signType": "selfSign"}, "Unknown signType selfSign; use signWithRoot or MSCA."),
        (
            {"rootCertificateSerialNumber": "abc"},
            "No CA named testroot with serial number abc was found.",
        ),
        (
            {"rootCertificateCommonName": "otherroot"},
            "No CA named otherroot with serial number SERIAL was found.",
        ),
    ],
)
def test_sign_refusals_say_why(sandbox: Sandbox, change: dict[str, Any], message: str) -> None:
    pam = Pam(sandbox)
    csr_id = pam.import_and_find(fixture_csr("ec-p256.csr"), "csrtest")
    details = {
        "signType": "signWithRoot",
        "rootCertificateCommonName": "testroot",
        "rootCertificateSerialNumber": sandbox.roots["testroot"],
        "Validity": 30,
        "isIntermediate": "false",
        "CSR_ID": str(csr_id),
    }

    answer = pam.sign(**(details | change))

    assert failure_message(answer) == message.replace("SERIAL", sandbox.roots["testroot"])
    assert answer["name"] == "SignCSR"


def test_serial_matches_in_any_case_with_colons(sandbox: Sandbox) -> None:
    pam = Pam(sandbox)
    csr_id = pam.import_and_find(fixture_csr("ec-p256.csr"), "csrtest")
    serial = sandbox.roots["testroot"].upper()
    with_colons = ":".join(serial[i : i + 2] for i in range(0, len(serial), 2))

    answer = pam.sign(
        signType="signWithRoot",
        rootCertificateCommonName="testroot",
        rootCertificateSerialNumber=with_colons,
        Validity="5",
        isIntermediate=False,
        CSR_ID=csr_id,
    )

    assert answer["result"]["status"] == "Success", answer


@pytest.mark.parametrize(
    ("file", "message"),
    [
        ("ec-p256-bad-signature.csr", "The CSR's signature does not verify; it was not imported."),
        ("not-a-csr.csr", "The file is not a valid certificate signing request."),
    ],
)
def test_import_refuses_what_is_not_a_good_csr(sandbox: Sandbox, file: str, message: str) -> None:
    pam = Pam(sandbox)

    answer = pam.import_csr(fixture_csr(file))

    assert failure_message(answer) == message
    assert answer["name"] == "ImportCSR"
    assert pam.csr_rows() == []
    with pytest.raises(ValueError, match="not"):
        sandbox.import_csr_pem(fixture_csr(file))


def test_import_without_a_csr_file_is_a_bad_request(sandbox: Sandbox) -> None:
    pam = Pam(sandbox)

    wrong_field = pam.post("importCSR", files={"FILE": ("a.csr", fixture_csr("ec-p256.csr"))})
    not_multipart = pam.post("importCSR", data={"CSR": "x"})

    assert wrong_field.status_code == 400
    assert failure_message(wrong_field.json()) == "The request has no file field CSR."
    assert not_multipart.status_code == 400
    assert failure_message(not_multipart.json())


@pytest.mark.parametrize(
    "form", [{}, {"INPUT_DATA": "{not json"}, {"INPUT_DATA": '{"operation": []}'}]
)
def test_malformed_sign_requests_are_bad_requests(sandbox: Sandbox, form: dict[str, str]) -> None:
    response = Pam(sandbox).post("signCSR", data=form)

    assert response.status_code == 400
    assert failure_message(response.json())
    assert response.json()["name"] == "SignCSR"


@pytest.mark.parametrize("token", ["wrong", "", None])
@pytest.mark.parametrize(
    ("method", "operation"),
    [("POST", "signCSR"), ("GET", "getCSRList"), ("POST", "importCSR"), ("GET", "getCertificate")],
)
def test_requests_without_the_token_are_refused(
    sandbox: Sandbox, method: str, operation: str, token: str | None
) -> None:
    headers = {} if token is None else {"AUTHTOKEN": token}

    response = requests.request(
        method,
        sandbox.url + API + operation,
        headers=headers,
        verify=str(sandbox.ca_bundle),
        timeout=10,
    )

    assert response.status_code == 401
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == AUTH_FAILED


def test_unknown_paths_and_wrong_methods_fail(sandbox: Sandbox) -> None:
    pam = Pam(sandbox)

    unknown = pam.get("getResources")
    wrong_method = pam.get("signCSR")

    assert unknown.status_code == 404
    assert failure_message(unknown.json())
    assert wrong_method.status_code == 405
    assert failure_message(wrong_method.json()) == f"Call {API}signCSR with POST."


def test_ca_certificates_can_be_fetched(sandbox: Sandbox) -> None:
    pam = Pam(sandbox)
    root = sandbox.ca_certificate("testroot")
    intermediate = sandbox.ca_certificate("testintermediate")

    assert pam.chain("testroot", sandbox.roots["testroot"]) == [root]
    assert pam.chain("testintermediate", sandbox.roots["testintermediate"]) == [
        intermediate,
        root,
    ]
    intermediate.verify_directly_issued_by(root)
    assert extension(intermediate, x509.BasicConstraints).path_length == 0
    assert intermediate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        "testintermediate"
    )


@pytest.mark.parametrize(("name", "years"), [("testroot", 20), ("testintermediate", 10)])
def test_cas_last_their_calendar_years(sandbox: Sandbox, name: str, years: int) -> None:
    certificate = sandbox.ca_certificate(name)
    start, end = certificate.not_valid_before_utc, certificate.not_valid_after_utc

    assert end.year - start.year == years
    # 29 February has no twin in a common year; the 28th stands in for it.
    assert (end.month, end.day) in {(start.month, start.day), (2, 28)}
    assert end.time() == start.time()
    assert extension(certificate, x509.BasicConstraints).ca


def test_unknown_certificate_is_a_failure_naming_it(sandbox: Sandbox) -> None:
    response = Pam(sandbox).certificate("nothing.example.com", "abc123")

    assert response.headers["Content-Type"] == "application/json"
    assert failure_message(response.json()) == (
        "No certificate named nothing.example.com with serial number abc123 was found."
    )


def test_concurrent_imports_get_distinct_ids(sandbox: Sandbox) -> None:
    pam = Pam(sandbox)
    content = fixture_csr("ec-p256.csr")

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: pam.import_csr(content), range(16)))

    assert all(answer["result"]["status"] == "Success" for answer in answers)
    ids = [row["CSR_ID"] for row in pam.csr_rows()]
    assert len(set(ids)) == 16
    assert max(ids) - min(ids) == 15


def test_restart_keeps_ids_token_cas_and_certificates(tmp_path: Path) -> None:
    with Sandbox(tmp_path, port=0) as first:
        pam = Pam(first)
        csr_id = pam.import_and_find(fixture_csr("ec-p256.csr"), "csrtest")
        issued = pam.sign_with_root(csr_id, "testroot", 20)["details"][0]
        token, roots = first.token, first.roots

    with Sandbox(tmp_path, port=0) as second:
        pam = Pam(second)
        assert (second.token, second.roots) == (token, roots)
        certificate, root = pam.chain("csrtest", issued["serialNumber"])
        certificate.verify_directly_issued_by(root)
        next_id = pam.import_and_find(fixture_csr("ed25519.csr"), "edge-gw-01.internal.example")
        again = pam.sign_with_root(csr_id, "testroot", 20)["details"][0]

    assert next_id == csr_id + 1
    assert again["Certificate_ID"] == issued["Certificate_ID"] + 1


def test_keys_are_private_and_an_explicit_token_wins(tmp_path: Path) -> None:
    with Sandbox(tmp_path, port=0, token="operator-token") as sandbox:
        answer = Pam(sandbox, token="operator-token").get("getCSRList")

    assert answer.status_code == 200
    assert not (tmp_path / "token").exists()
    for key_file in tmp_path.rglob("*.key"):
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(list(tmp_path.rglob("*.key"))) == 4


def test_the_token_stays_out_of_the_log(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="bot.sandbox")
    with Sandbox(tmp_path, port=0) as sandbox:
        pam = Pam(sandbox)
        csr_id = pam.import_and_find(fixture_csr("ec-p256.csr"), "csrtest")
        pam.sign_with_root(csr_id, "testroot", 3)
        Pam(sandbox, token="a-wrong-guess").get("getCSRList")

    assert "GET /api/pki/restapi/getCSRList" in caplog.text
    assert "Signed CSR" in caplog.text
    assert sandbox.token not in caplog.text
    assert "a-wrong-guess" not in caplog.text


def test_stop_ends_kept_alive_connections(tmp_path: Path) -> None:
    sandbox = Sandbox(tmp_path, port=0)
    sandbox.start()
    with requests.Session() as session:
        session.headers["AUTHTOKEN"] = sandbox.token
        url = sandbox.url + API + "getCSRList"
        assert session.get(url, verify=str(sandbox.ca_bundle), timeout=10).status_code == 200

        sandbox.stop()

        with pytest.raises(requests.exceptions.ConnectionError):
            session.get(url, verify=str(sandbox.ca_bundle), timeout=10)


def test_a_port_in_use_is_reported(sandbox: Sandbox, tmp_path: Path) -> None:
    port = int(sandbox.url.rsplit(":", 1)[1])

    with pytest.raises(OSError, match=f"Port {port} on 127.0.0.1 is already in use"):
        Sandbox(tmp_path / "other", port=port).start()


def test_tls_is_refused_without_the_bundle(sandbox: Sandbox) -> None:
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(sandbox.url + API + "getCSRList", timeout=10)
    # A client that gave up on the handshake must not stop the server from answering.
    with socket.create_connection(("127.0.0.1", int(sandbox.url.rsplit(":", 1)[1]))):
        assert Pam(sandbox).get("getCSRList").status_code == 200


def test_run_prints_the_environment_lines_and_stops_on_sigterm(tmp_path: Path) -> None:
    script = (
        "import sys; from pathlib import Path; from bot.sandbox.server import run; "
        "sys.exit(run(0, Path(sys.argv[1]), None))"
    )
    environment = os.environ | {"PYTHONPATH": str(REPO_ROOT)}
    command = [sys.executable, "-c", script, str(tmp_path)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=environment) as process:
        # The watchdog keeps a hung child from hanging the test run.
        watchdog = threading.Timer(20, process.kill)
        watchdog.start()
        try:
            assert process.stdout is not None
            lines = [process.stdout.readline().rstrip("\n") for _ in range(5)]
            process.terminate()
            assert process.wait(timeout=10) == 0
        finally:
            watchdog.cancel()
            process.kill()

    assert lines[0].startswith("# ")
    values = dict(line.split("=", 1) for line in lines[1:])
    assert list(values) == ["PAM360_URL", "PAM360_AUTHTOKEN", "PAM360_CA_BUNDLE", "SIGNCSR_ROOTS"]
    assert values["PAM360_URL"].startswith("https://127.0.0.1:")
    assert values["PAM360_AUTHTOKEN"] == (tmp_path / "token").read_text().strip()
    assert Path(values["PAM360_CA_BUNDLE"]) == tmp_path / "ca-bundle.pem"
    roots = dict(pair.split("=") for pair in values["SIGNCSR_ROOTS"].split(","))
    assert list(roots) == ["testroot", "testintermediate"]
    assert all(serial == serial.lower() and ":" not in serial for serial in roots.values())
