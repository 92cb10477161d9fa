"""The Dockerfile, read statically (no Docker engine here) and its health check run for real."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
HEALTH_URL = "http://127.0.0.1:3000/healthz"

Instruction = tuple[str, str]


def instructions() -> list[Instruction]:
    """(KEYWORD, arguments) for each instruction, continuation lines joined, comments dropped."""
    result: list[Instruction] = []
    pending = ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        result.append((keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return result


def final_stage() -> list[Instruction]:
    """The instructions of the image that is run: from the last FROM on."""
    steps = instructions()
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def arguments_of(keyword: str, steps: list[Instruction] | None = None) -> list[str]:
    return [arguments for kw, arguments in (steps or final_stage()) if kw == keyword]


def only(keyword: str) -> str:
    found = arguments_of(keyword)
    assert len(found) == 1, f"expected one {keyword} in the final stage, found {found}"
    return found[0]


def exec_form(arguments: str) -> list[str]:
    """A JSON-array (exec form) argument list; shell form is refused."""
    assert arguments.startswith("["), f"use the exec (JSON) form: {arguments}"
    argv = json.loads(arguments)
    assert isinstance(argv, list) and all(isinstance(part, str) for part in argv)
    return argv


def environment() -> dict[str, str]:
    """ENV of the final stage, in both `K=V K2=V2` and legacy `K V` forms."""
    values: dict[str, str] = {}
    for arguments in arguments_of("ENV"):
        if "=" not in arguments.split(" ", 1)[0]:
            name, _, value = arguments.partition(" ")
            values[name] = value.strip()
            continue
        for pair in shlex.split(arguments):
            name, _, value = pair.partition("=")
            values[name] = value
    return values


def volumes() -> list[str]:
    found: list[str] = []
    for arguments in arguments_of("VOLUME"):
        found += json.loads(arguments) if arguments.startswith("[") else arguments.split()
    return found


def health_check_code() -> str:
    """The Python one-liner the HEALTHCHECK runs."""
    arguments = only("HEALTHCHECK")
    _, _, command = arguments.partition("CMD ")
    argv = exec_form(command.strip())
    assert argv[:2] == ["python", "-c"] and len(argv) == 3, argv
    return argv[2]


# The image -------------------------------------------------------------------------------


def test_every_stage_is_python_3_11_slim() -> None:
    bases = arguments_of("FROM", instructions())
    assert bases
    for base in bases:
        assert base.split()[0] == "python:3.11-slim", base


def test_package_is_installed_with_pip_without_cache() -> None:
    copies = " ".join(arguments_of("COPY", instructions()))
    for source in ("pyproject.toml", "README.md", "bot/"):
        assert source in copies, f"{source} is not copied into the build"
    runs = " ".join(arguments_of("RUN", instructions()))
    assert re.search(r"pip install --no-cache-dir \.(\s|$)", runs), runs


def test_runs_as_a_created_non_root_user() -> None:
    user = arguments_of("USER")[-1]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0, f"USER should be a numeric, non-root uid: {user}"
    assert not gid or (gid.isdigit() and int(gid) != 0), user
    runs = " ".join(arguments_of("RUN"))
    assert re.search(rf"useradd\b.*--uid {uid}\b", runs), f"no user with uid {uid} is created"


def test_environment_and_workdir() -> None:
    env = environment()
    assert env["PYTHONUNBUFFERED"] == "1"
    assert only("WORKDIR") == "/app"
    assert only("EXPOSE") == "3000"


def test_database_lives_on_the_declared_volume() -> None:
    url = make_url(environment()["SIGNCSR_DATABASE"])
    assert url.drivername == "sqlite"
    database = PurePosixPath(str(url.database))
    assert database.is_absolute(), f"{database} would land in WORKDIR, not on the volume"
    declared = [PurePosixPath(volume) for volume in volumes()]
    assert any(database.is_relative_to(volume) for volume in declared), (database, declared)


def test_volume_is_owned_by_the_runtime_user() -> None:
    uid = arguments_of("USER")[-1].partition(":")[0]
    runs = " ".join(arguments_of("RUN"))
    for volume in volumes():
        assert re.search(rf"chown {uid}(:\d+)? [^&]*{re.escape(volume)}\b", runs), volume


def test_default_command_serves() -> None:
    assert exec_form(only("CMD")) == ["signcsr-bot", "serve"]


def test_health_check_hits_healthz_on_the_default_port() -> None:
    arguments = only("HEALTHCHECK")
    assert "/healthz" in arguments
    code = health_check_code()
    assert code.count(HEALTH_URL) == 1, code
    compile(code, "<HEALTHCHECK>", "exec")


def ignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(path: str) -> bool:
    return any(fnmatch.fnmatch(path, pattern.removeprefix("**/")) for pattern in ignore_patterns())


@pytest.mark.parametrize(
    "path", [".venv", ".git", ".pytest_cache", "sandbox-data", "signcsr.db", ".env"]
)
def test_dockerignore_keeps_local_state_out(path: str) -> None:
    assert ignored(path)


@pytest.mark.parametrize("path", ["pyproject.toml", "README.md", "bot"])
def test_dockerignore_keeps_what_the_build_copies(path: str) -> None:
    assert not ignored(path)


# The health check, run against a local /healthz ------------------------------------------


@contextmanager
def healthz_server(status: int) -> Iterator[tuple[int, list[str]]]:
    """A local server answering GET /healthz with `status`; yields its port and the paths
    it was asked for."""
    paths: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            paths.append(self.path)
            code = status if self.path == "/healthz" else 404
            body = json.dumps({"status": "ok" if code == 200 else "unavailable"}).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], paths
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def run_health_check(port: int, **extra_env: str) -> subprocess.CompletedProcess[str]:
    code = health_check_code().replace(HEALTH_URL, f"http://127.0.0.1:{port}/healthz")
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(extra_env)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, env=env
    )


def test_health_check_passes_on_200() -> None:
    with healthz_server(200) as (port, paths):
        result = run_health_check(port)
    assert result.returncode == 0, result.stderr
    assert paths == ["/healthz"]


def test_health_check_fails_on_503() -> None:
    with healthz_server(503) as (port, paths):
        result = run_health_check(port)
    assert result.returncode != 0
    assert paths == ["/healthz"]


def test_health_check_fails_when_nothing_listens() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert run_health_check(port).returncode != 0


def test_health_check_ignores_proxy_settings() -> None:
    with healthz_server(200) as (port, paths):
        result = run_health_check(port, http_proxy="http://127.0.0.1:9")
    assert result.returncode == 0, result.stderr
    assert paths == ["/healthz"]
