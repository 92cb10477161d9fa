"""The `signcsr-bot` command: serve, sandbox, demo."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
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


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="signcsr-bot",
        description="Get CSRs stored in ManageEngine PAM360 signed, with approvals in Slack.",
    )
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the Slack app (Socket Mode or HTTP)")
    serve.add_argument(
        "--http", action="store_true", help="serve HTTP even if SLACK_APP_TOKEN is set"
    )
    serve.add_argument("--port", type=int, default=3000, help="HTTP port (default 3000)")
    serve.add_argument("--host", default="0.0.0.0", help="HTTP address (default 0.0.0.0)")  # noqa: S104

    sandbox = commands.add_parser("sandbox", help="run a PAM360-compatible sandbox with a real CA")
    sandbox.add_argument("--port", type=int, default=8282, help="HTTPS port (default 8282)")
    sandbox.add_argument(
        "--data-dir", type=Path, default=Path("sandbox-data"), help="state (default ./sandbox-data)"
    )

    commands.add_parser("demo", help="show the whole flow offline, with the sandbox")
    return top


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
    return service.wait()


def start(settings: Settings, host: str, port: int, app_token: str | None) -> Service:
    """Builds the bot and starts serving it; every failure becomes a StartupError."""
    from bot import serve as serving
    from bot.runtime import build_runtime

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


def slack_error(exc: SlackApiError) -> str:
    """Slack's error code (such as invalid_auth), which never holds the token."""
    return str(exc.response.get("error", "error")) if exc.response is not None else "error"


def sandbox(args: argparse.Namespace) -> int:
    from bot.sandbox.server import run

    configure_logging("WARNING")
    token = os.environ.get("PAM360_AUTHTOKEN") or None
    try:
        return run(args.port, args.data_dir, token)
    except OSError as exc:
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
