"""The installed `signcsr-bot` command run as an operator runs it: a misconfiguration stops
`serve` with one line naming the variable; `sandbox` and `demo` need no variables at all."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from bot.slack.standin import SlackStandIn

BOT = Path(sys.executable).with_name("signcsr-bot")
BOT_TOKEN = "xoxb-cli-bot-token-never-shown-4d2a"
SIGNING_SECRET = "cli-signing-secret-never-shown-9b1c"
APP_TOKEN = "xapp-cli-app-token-never-shown-77e0"
PAM360_TOKEN = "cli-pam360-token-never-shown-3f6d"
DB_PASSWORD = "db-password-never-shown-5a8e"
SECRETS = (BOT_TOKEN, SIGNING_SECRET, APP_TOKEN, PAM360_TOKEN, DB_PASSWORD)
REQUIRED = {"SLACK_BOT_TOKEN", "PAM360_URL", "PAM360_AUTHTOKEN", "SIGNCSR_APPROVERS"}
SANDBOX_LINES = ("PAM360_URL=", "PAM360_AUTHTOKEN=", "PAM360_CA_BUNDLE=", "SIGNCSR_ROOTS=")


def scrubbed_env(home: Path, **variables: str) -> dict[str, str]:
    """An environment built from nothing: no SLACK_, PAM360_, SIGNCSR_ or proxy variables."""
    home.mkdir(exist_ok=True)
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), **variables}


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port that refuses connections: bound (so nobody else takes it) but not listening."""
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        yield bound.getsockname()[1]


@pytest.fixture
def serve_env(tmp_path: Path, closed_port: int) -> dict[str, str]:
    """A complete, valid configuration whose Slack is unreachable; each test changes a part.
    A wrongly accepted setting then fails fast, naming SLACK_API_URL instead of the setting."""
    return scrubbed_env(
        tmp_path / "home",
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_API_URL=f"http://127.0.0.1:{closed_port}/api/",
        PAM360_URL="https://pam360.example.com:8282",
        PAM360_AUTHTOKEN=PAM360_TOKEN,
        SIGNCSR_APPROVERS="UAPPROVER1",
        SIGNCSR_DATABASE=f"sqlite:///{tmp_path / 'signcsr.db'}",
    )


def run_bot(
    env: dict[str, str], *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs in the given directory, else in HOME: a stray relative path lands in tmp_path."""
    return subprocess.run(
        [str(BOT), *args],
        env=env,
        cwd=cwd or env["HOME"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def serve(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_bot(env, "serve", "--port", "0", "--host", "127.0.0.1", *args)


def the_one_line(finished: subprocess.CompletedProcess[str]) -> str:
    """The contract's answer to a misconfiguration: non-zero, one line on stderr, nothing else."""
    assert finished.returncode != 0, finished.stderr
    assert "Traceback" not in finished.stderr
    lines = finished.stderr.splitlines()
    assert len(lines) == 1, finished.stderr
    assert finished.stdout == ""
    for secret in SECRETS:
        assert secret not in lines[0]
    return lines[0]


def test_nothing_set_names_a_required_variable(tmp_path: Path) -> None:
    line = the_one_line(serve(scrubbed_env(tmp_path / "home")))

    named = [variable for variable in REQUIRED if variable in line]
    assert named and "required" in line


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SLACK_BOT_TOKEN", "notatoken"),
        ("PAM360_URL", "not a url"),
        ("PAM360_URL", "http://pam.example.com"),
        ("PAM360_CA_BUNDLE", "/nonexistent.pem"),
        ("PAM360_CA_BUNDLE", __file__),  # readable, but not PEM
        ("PAM360_URL", f"https://admin:{DB_PASSWORD}@pam.example.com"),
        ("SLACK_API_URL", "http://slack.com/api/"),
        ("SIGNCSR_APPROVAL_CHANNEL", "#pki-requests"),
        ("SIGNCSR_DEFAULT_DAYS", "900"),
        ("SIGNCSR_PENDING_HOURS", "inf"),
        ("SIGNCSR_ROOTS", "testroot=1a,TestRoot=2b"),
        ("PAM360_TIMEOUT", "abc"),
        ("SIGNCSR_APPROVERS", "bob"),
        ("SIGNCSR_MAX_DAYS", "-1"),
        ("SIGNCSR_ROOTS", "garbage"),
        ("SIGNCSR_ROOTS", '{"a": "zz"}'),
        ("LOG_LEVEL", "LOUD"),
        ("SLACK_APP_TOKEN", "xoxb-" + APP_TOKEN),
        ("SIGNCSR_DATABASE", f"not a url, with {DB_PASSWORD}"),
        ("SIGNCSR_DATABASE", f"postgresql://bot:{DB_PASSWORD}@127.0.0.1:1/signcsr"),
    ],
)
def test_bad_setting_is_named_in_one_line(
    serve_env: dict[str, str], variable: str, value: str
) -> None:
    serve_env[variable] = value

    line = the_one_line(serve(serve_env))

    assert variable in line
    assert "notatoken" not in line


@pytest.mark.parametrize("secret", [None, ""], ids=["unset", "empty"])
def test_http_mode_needs_the_signing_secret(serve_env: dict[str, str], secret: str | None) -> None:
    # An empty secret would be an HMAC key that anyone can sign requests with.
    del serve_env["SLACK_SIGNING_SECRET"]
    if secret is not None:
        serve_env["SLACK_SIGNING_SECRET"] = secret
    serve_env["SLACK_APP_TOKEN"] = APP_TOKEN

    line = the_one_line(serve(serve_env, "--http"))

    assert "SLACK_SIGNING_SECRET" in line


def test_unreachable_slack_names_slack_api_url(serve_env: dict[str, str]) -> None:
    line = the_one_line(serve(serve_env))

    assert "SLACK_API_URL" in line


def test_slack_refusing_the_bot_token_names_it(serve_env: dict[str, str]) -> None:
    with SlackStandIn(failures={"auth.test": "invalid_auth"}) as slack:
        serve_env["SLACK_API_URL"] = slack.api_url

        line = the_one_line(serve(serve_env))

        assert "SLACK_BOT_TOKEN" in line and "invalid_auth" in line
        assert [call.method for call in slack.calls] == ["auth.test"]


def test_slack_refusing_the_app_token_names_it_and_exits(serve_env: dict[str, str]) -> None:
    with SlackStandIn(failures={"apps.connections.open": "invalid_auth"}) as slack:
        serve_env.update(SLACK_API_URL=slack.api_url, SLACK_APP_TOKEN=APP_TOKEN)

        line = the_one_line(serve(serve_env))

    assert "SLACK_APP_TOKEN" in line and "invalid_auth" in line


def test_unopenable_database_names_signcsr_database(serve_env: dict[str, str]) -> None:
    with SlackStandIn() as slack:
        serve_env["SLACK_API_URL"] = slack.api_url
        serve_env["SIGNCSR_DATABASE"] = "sqlite:////nonexistent-dir/x.db"

        line = the_one_line(serve(serve_env))

    assert "SIGNCSR_DATABASE" in line


def test_port_in_use_is_one_line(serve_env: dict[str, str]) -> None:
    with SlackStandIn() as slack, socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        serve_env["SLACK_API_URL"] = slack.api_url
        port = str(taken.getsockname()[1])

        finished = run_bot(serve_env, "serve", "--http", "--host", "127.0.0.1", "--port", port)

    assert port in the_one_line(finished)


@pytest.mark.parametrize("command", ["serve", "sandbox"])
def test_a_port_out_of_range_is_refused_by_name(tmp_path: Path, command: str) -> None:
    finished = run_bot(scrubbed_env(tmp_path / "home"), command, "--port", "99999")

    assert finished.returncode == 2
    assert "Traceback" not in finished.stderr
    assert "--port: 99999 is not a port number" in finished.stderr


def test_a_data_dir_that_is_a_file_is_named(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "sandbox-data"
    not_a_dir.write_text("a file, not a folder")

    finished = run_bot(
        scrubbed_env(tmp_path / "home"), "sandbox", "--port", "0", "--data-dir", str(not_a_dir)
    )

    line = the_one_line(finished)
    assert f"data dir {not_a_dir}" in line
    assert "port" not in line


def test_comma_separated_approvers_are_accepted(serve_env: dict[str, str]) -> None:
    # pydantic-settings would read a list as JSON; past the settings, Slack is what fails.
    with SlackStandIn(failures={"auth.test": "invalid_auth"}) as slack:
        serve_env.update(SLACK_API_URL=slack.api_url, SIGNCSR_APPROVERS="U1,U2, SPKI")

        line = the_one_line(serve(serve_env))

    assert "SIGNCSR_APPROVERS" not in line
    assert "SLACK_BOT_TOKEN was refused" in line


def test_help_lists_the_commands(tmp_path: Path) -> None:
    finished = run_bot(scrubbed_env(tmp_path / "home"), "--help")

    assert finished.returncode == 0
    for command in ("serve", "sandbox", "demo"):
        assert command in finished.stdout


def operator_junk(home: Path) -> dict[str, str]:
    """Variables that would break `serve`; `demo` and `sandbox` must not read them."""
    return scrubbed_env(
        home,
        SIGNCSR_APPROVERS="bob",
        PAM360_URL="junk",
        SLACK_BOT_TOKEN="notatoken",
        SIGNCSR_DATABASE="sqlite:////nonexistent-dir/x.db",
        HTTPS_PROXY="http://127.0.0.1:9",
        HTTP_PROXY="http://127.0.0.1:9",
    )


def test_demo_needs_no_variables_and_writes_nothing_outside_its_temporary_dir(
    tmp_path: Path,
) -> None:
    cwd = tmp_path / "cwd"
    temporary = tmp_path / "tmp"
    cwd.mkdir()
    temporary.mkdir()
    env = operator_junk(tmp_path / "home") | {"TMPDIR": str(temporary)}

    finished = run_bot(env, "demo", cwd=cwd)

    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert "Demo passed" in finished.stdout
    assert list(cwd.iterdir()) == []
    assert list(temporary.iterdir()) == []


class Sandbox:
    """`signcsr-bot sandbox` in a subprocess, its stdout read line by line as it comes."""

    def __init__(self, env: dict[str, str], data_dir: Path) -> None:
        self.process = subprocess.Popen(
            [str(BOT), "sandbox", "--port", "0", "--data-dir", str(data_dir)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.stderr = ""

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def environment(self) -> dict[str, str]:
        """The four lines to paste into an environment file, once all have been printed."""
        found: dict[str, str] = {}
        while not all(name.rstrip("=") in found for name in SANDBOX_LINES):
            try:
                line = self.lines.get(timeout=20)
            except queue.Empty:
                raise AssertionError(f"the sandbox printed only {found}") from None
            name, sep, value = line.partition("=")
            if sep and line.startswith(SANDBOX_LINES):
                found[name] = value
        return found

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self.reader.join()
        if self.process.stderr is not None and not self.process.stderr.closed:
            self.stderr = self.process.stderr.read()
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()
        return code


@pytest.fixture
def start_sandbox() -> Iterator[type[Sandbox]]:
    started: list[Sandbox] = []

    def start(env: dict[str, str], data_dir: Path) -> Sandbox:
        sandbox = Sandbox(env, data_dir)
        started.append(sandbox)
        return sandbox

    yield start  # type: ignore[misc]
    for sandbox in started:
        sandbox.stop()


def answers_with_token(environment: dict[str, str]) -> int:
    """What a PAM360 client configured from the printed lines gets for a CSR list."""
    with requests.get(
        environment["PAM360_URL"] + "/api/pki/restapi/getCSRList",
        headers={"AUTHTOKEN": environment["PAM360_AUTHTOKEN"]},
        verify=environment["PAM360_CA_BUNDLE"],
        timeout=10,
    ) as answer:
        return answer.status_code


def test_sandbox_prints_a_working_environment(tmp_path: Path, start_sandbox: type[Sandbox]) -> None:
    sandbox = start_sandbox(operator_junk(tmp_path / "home"), tmp_path / "sandbox")

    environment = sandbox.environment()

    assert environment["PAM360_URL"].startswith("https://127.0.0.1:")
    assert not environment["PAM360_URL"].endswith(":0")
    assert Path(environment["PAM360_CA_BUNDLE"]).is_file()
    roots = dict(entry.split("=") for entry in environment["SIGNCSR_ROOTS"].split(","))
    assert set(roots) == {"testroot", "testintermediate"}
    assert len(environment["PAM360_AUTHTOKEN"]) >= 16
    assert answers_with_token(environment) == 200
    assert sandbox.stop() == 0
    assert "importCSR" in sandbox.stderr and "sandbox-ca01" in sandbox.stderr


def test_sandbox_uses_the_given_token(tmp_path: Path, start_sandbox: type[Sandbox]) -> None:
    env = scrubbed_env(tmp_path / "home", PAM360_AUTHTOKEN="given-token")
    sandbox = start_sandbox(env, tmp_path / "sandbox")

    environment = sandbox.environment()

    assert environment["PAM360_AUTHTOKEN"] == "given-token"
    assert answers_with_token(environment) == 200
    assert sandbox.stop() == 0


def serve_until_logged(env: dict[str, str], words: str) -> str:
    """Starts `serve --http`, reads its log until `words` appear, then stops it."""
    process = subprocess.Popen(
        [str(BOT), "serve", "--http", "--port", "0", "--host", "127.0.0.1"],
        env=env,
        cwd=env["HOME"],
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(30, process.kill)
    watchdog.start()
    seen = []
    try:
        assert process.stderr is not None
        for line in process.stderr:
            seen.append(line)
            if words in line:
                break
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        watchdog.cancel()
        process.kill()
        if process.stderr is not None:
            process.stderr.close()
    log = "".join(seen)
    assert words in log, log
    return log


def test_start_warns_when_pam360_cannot_be_used(
    serve_env: dict[str, str], closed_port: int
) -> None:
    with SlackStandIn() as slack:
        serve_env.update(SLACK_API_URL=slack.api_url, PAM360_URL=f"https://127.0.0.1:{closed_port}")

        log = serve_until_logged(serve_env, "PAM360 cannot be used yet")

    assert f"Could not connect to PAM360 at https://127.0.0.1:{closed_port}" in log
    assert "Traceback" not in log and PAM360_TOKEN not in log


def test_start_says_pam360_answers(
    serve_env: dict[str, str], tmp_path: Path, start_sandbox: type[Sandbox]
) -> None:
    sandbox = start_sandbox(scrubbed_env(tmp_path / "sandbox-home"), tmp_path / "sandbox")
    pam360 = sandbox.environment()
    with SlackStandIn() as slack:
        serve_env.update(
            SLACK_API_URL=slack.api_url,
            PAM360_URL=pam360["PAM360_URL"],
            PAM360_AUTHTOKEN=pam360["PAM360_AUTHTOKEN"],
            PAM360_CA_BUNDLE=pam360["PAM360_CA_BUNDLE"],
        )

        log = serve_until_logged(serve_env, "it lists 0 CSRs")

    assert f"PAM360 at {pam360['PAM360_URL']} answers" in log
