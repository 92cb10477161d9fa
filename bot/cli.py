"""The `signcsr-bot` command: serve, sandbox, demo."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from logging.handlers import MemoryHandler
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError
from slack_bolt.error import BoltError
from slack_sdk.errors import SlackApiError
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from bot.config import Settings, describe_error

if TYPE_CHECKING:
    from bot.serve import Service

logger = logging.getLogger(__name__)


class StartupError(Exception):
    """A problem that stops the bot from starting; printed as one line, no traceback."""


def port_number(text: str) -> int:
    """A TCP port, 0 meaning any free one."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (0 to 65535)")
    return port


SERVE_HELP = """Runs the Slack app: Socket Mode when SLACK_APP_TOKEN is set, else HTTP
(POST /slack/events). Both serve GET /healthz on --port. Settings come from the environment:
SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET (HTTP), PAM360_URL, PAM360_AUTHTOKEN, SIGNCSR_APPROVERS
and the optional variables that README.md lists."""
SANDBOX_HELP = """Runs a PAM360-compatible server over HTTPS on 127.0.0.1, with a real CA
(testroot, testintermediate and an emulated Microsoft CA), and prints the PAM360_* and
SIGNCSR_ROOTS lines that point the bot at it. Its token is PAM360_AUTHTOKEN when set."""
DEMO_HELP = """Shows the whole flow offline: starts the sandbox and a Slack stand-in, asks for a
signature, approves it, and verifies the certificate. Needs no variables; exits 0 on success."""


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="signcsr-bot",
        description="Get CSRs stored in ManageEngine PAM360 signed, with approvals in Slack.",
    )
    top.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve", help="run the Slack app (Socket Mode or HTTP)", description=SERVE_HELP
    )
    serve.add_argument(
        "--http", action="store_true", help="serve HTTP even if SLACK_APP_TOKEN is set"
    )
    serve.add_argument("--port", type=port_number, default=3000, help="port (default 3000)")
    every_address = "0.0.0.0"  # noqa: S104 (a server in a container listens on all of them)
    serve.add_argument("--host", default=every_address, help="HTTP address (default 0.0.0.0)")

    sandbox = commands.add_parser(
        "sandbox", help="run a PAM360-compatible sandbox with a real CA", description=SANDBOX_HELP
    )
    sandbox.add_argument(
        "--port", type=port_number, default=8282, help="HTTPS port, 0 for any (default 8282)"
    )
    sandbox.add_argument(
        "--data-dir", type=Path, default=Path("sandbox-data"), help="state (default ./sandbox-data)"
    )

    commands.add_parser(
        "demo", help="show the whole flow offline, with the sandbox", description=DEMO_HELP
    )
    return top


def package_version() -> str:
    try:
        return version("signcsr-bot")
    except PackageNotFoundError:
        return "(not installed)"


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@contextmanager
def held_log(level: str) -> Iterator[None]:
    """Holds log records while the bot starts. A failed start then shows its one line alone
    (slack_sdk logs each failed try at ERROR); at DEBUG the held records are shown as well."""
    root = logging.getLogger()
    shown = root.handlers
    holder = MemoryHandler(capacity=1_000_000, flushLevel=logging.CRITICAL + 1, flushOnClose=False)
    root.handlers = [holder]
    try:
        yield
    except BaseException:
        if level != "DEBUG":
            holder.buffer.clear()
        raise
    finally:
        root.handlers = shown
        for record in holder.buffer:
            root.handle(record)
        holder.close()


def serve(args: argparse.Namespace) -> int:
    try:
        settings = Settings()
    except ValidationError as exc:
        raise StartupError(describe_error(exc)) from None
    configure_logging(settings.log_level)
    app_token = None if args.http else settings.slack_app_token
    if app_token is None and settings.slack_signing_secret is None:
        raise StartupError("SLACK_SIGNING_SECRET is required in HTTP mode but not set")

    token = app_token.get_secret_value() if app_token else None
    with held_log(settings.log_level):
        service = start(settings, args.host, args.port, token)
    # In the background: a slow PAM360 must not hold up serving Slack.
    checker = threading.Thread(target=service.runtime.check_pam360, name="pam360-check")
    checker.daemon = True
    checker.start()
    return service.wait()


def start(settings: Settings, host: str, port: int, app_token: str | None) -> Service:
    """Builds the bot and starts serving it; every failure becomes a StartupError."""
    from bot import serve as serving
    from bot.runtime import build_runtime
    from bot.slack.app import slack_error

    try:
        runtime = build_runtime(settings)
    except SlackApiError as exc:
        raise StartupError(f"SLACK_BOT_TOKEN was refused by Slack: {slack_error(exc)}") from None
    except (ArgumentError, SQLAlchemyError) as exc:
        reason = str(exc).splitlines()[0]
        raise StartupError(f"SIGNCSR_DATABASE could not be opened: {reason}") from None
    except BoltError as exc:
        # Bolt turns a refused auth.test into a BoltError raised while handling the SlackApiError.
        if isinstance(exc.__context__, SlackApiError):
            refused = slack_error(exc.__context__)
            raise StartupError(f"SLACK_BOT_TOKEN was refused by Slack: {refused}") from None
        raise StartupError(f"could not start: {exc}") from None
    except OSError as exc:
        raise StartupError(
            f"could not reach Slack at SLACK_API_URL ({settings.slack_api_url}): {exc}"
        ) from None
    except Exception as exc:
        raise StartupError(f"could not start: {type(exc).__name__}: {exc}") from None

    service = serving.Service(runtime, host=host, port=port, app_token=app_token)
    try:
        service.start()
    except serving.StartFailed as exc:
        raise StartupError(str(exc)) from None
    except Exception as exc:
        raise StartupError(f"could not start: {type(exc).__name__}: {exc}") from None
    return service


def sandbox(args: argparse.Namespace) -> int:
    from bot.sandbox.server import run

    configure_logging("WARNING")
    token = os.environ.get("PAM360_AUTHTOKEN") or None
    try:
        return run(args.port, args.data_dir, token)
    except OSError as exc:
        # A file named in the error is the data dir's; without one it is the port's.
        if exc.filename is not None:
            raise StartupError(
                f"sandbox could not use its data dir {args.data_dir}: {exc.strerror}:"
                f" {exc.filename}"
            ) from None
        raise StartupError(f"sandbox could not start on port {args.port}: {exc}") from None


def demo(_args: argparse.Namespace) -> int:
    from bot.demo import run_demo

    return run_demo()


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    handlers = {"serve": serve, "sandbox": sandbox, "demo": demo}
    try:
        return handlers[args.command](args)
    except StartupError as exc:
        print(f"signcsr-bot: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
