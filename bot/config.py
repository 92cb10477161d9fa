"""Settings from the environment, validated once at start-up."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from cryptography import x509
from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

SLACK_ID = re.compile(r"^[UWS][A-Z0-9]+$")
# Public and private channels (C…, and G… for older private ones); a DM channel (D…).
CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{2,}$")
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


def normalise_serial(serial: str) -> str:
    """A CA serial as PAM360 shows it: lower-case hex, no colons or spaces, no 0x, and no
    leading zeros (openssl's 01:87:… is PAM360's 187…, the same number)."""
    cleaned = serial.strip().replace(":", "").replace(" ", "").lower()
    cleaned = cleaned.removeprefix("0x")
    if not cleaned or not re.fullmatch(r"[0-9a-f]+", cleaned):
        raise ValueError(f"{serial!r} is not a hexadecimal serial number")
    return cleaned.lstrip("0") or "0"


def split_ids(value: Any) -> Any:
    """Comma- or space-separated Slack IDs into a list; lists pass through."""
    if isinstance(value, str):
        return [part for part in re.split(r"[,\s]+", value) if part]
    return value


def parse_catalog(value: Any) -> Any:
    """`cn=serial,cn=serial` or a JSON object into {cn: serial}."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("{"):
        return json.loads(text, object_pairs_hook=_catalog_pairs)
    pairs = []
    for entry in filter(None, (part.strip() for part in text.split(","))):
        name, sep, serial = entry.rpartition("=")
        if not sep or not name.strip():
            raise ValueError(f"entry {entry!r} is not cn=serial")
        pairs.append((name.strip(), serial))
    return _catalog_pairs(pairs)


def _catalog_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Names are matched in any case, so two entries that differ only in case would make
    `root=` ambiguous; the later one must not silently win."""
    catalog: dict[str, Any] = {}
    seen: set[str] = set()
    for name, serial in pairs:
        if name.casefold() in seen:
            raise ValueError(f"CA {name!r} is listed twice; list each CA once")
        seen.add(name.casefold())
        catalog[name] = serial
    return catalog


def plain_url(value: str, example: str) -> str:
    """An http(s) URL without a user name or password: those would be shown wherever the
    URL is (logs, error messages in Slack), and neither PAM360 nor Slack takes them."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be a URL such as {example}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not hold a user name or password; give the plain URL")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        raise ValueError("must use https: the token must not cross the network in clear")
    return value.strip()


class Settings(BaseSettings):
    """Every variable of the contract. `Settings()` reads the environment;
    `Settings.from_values({...})` builds one from the given values alone (demo, tests)."""

    # A variable set to nothing (`SLACK_APP_TOKEN=` in an env file) counts as not set: an empty
    # signing secret would otherwise be a key that anyone can sign with.
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", env_ignore_empty=True)

    slack_bot_token: SecretStr
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"

    pam360_url: str
    pam360_authtoken: SecretStr
    pam360_org: str | None = None
    pam360_ca_bundle: Path | None = None
    pam360_timeout: float = Field(default=30.0, gt=0, le=600)

    signcsr_approvers: Annotated[list[str], NoDecode]
    signcsr_requesters: Annotated[list[str], NoDecode] = []
    signcsr_approval_channel: str | None = None
    signcsr_self_approval: bool = True
    signcsr_roots: Annotated[dict[str, str], NoDecode] = {}
    signcsr_pending_hours: float = Field(default=72.0, gt=0, le=24 * 365, allow_inf_nan=False)
    signcsr_max_days: int = Field(default=825, ge=1)
    signcsr_max_intermediate_days: int = Field(default=1825, ge=1)
    # After the limits, so that its check can see them.
    signcsr_default_days: int = Field(default=365, ge=1)
    signcsr_database: str = "sqlite:///signcsr.db"
    signcsr_command: str = "/signcsr"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> Settings:
        """Settings from `values` and defaults only: the environment is not read."""
        return _ValuesOnly(**values)

    @field_validator("slack_bot_token")
    @classmethod
    def _bot_token_shape(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith("xoxb-"):
            raise ValueError("must be a bot token starting with xoxb-")
        return value

    @field_validator("slack_signing_secret", "pam360_authtoken")
    @classmethod
    def _not_blank(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("must not be blank")
        return value

    @field_validator("slack_app_token")
    @classmethod
    def _app_token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith("xapp-"):
            raise ValueError("must be an app-level token starting with xapp-")
        return value

    @field_validator("slack_api_url")
    @classmethod
    def _slack_url(cls, value: str) -> str:
        url = plain_url(value, "https://slack.com/api/")
        return url if url.endswith("/") else url + "/"

    @field_validator("pam360_url")
    @classmethod
    def _pam360_url(cls, value: str) -> str:
        return plain_url(value, "https://pam360.example.com:8282").rstrip("/")

    @field_validator("pam360_ca_bundle")
    @classmethod
    def _readable_bundle(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        try:
            pem = value.read_bytes()
        except OSError as exc:
            raise ValueError(f"cannot read {value}: {exc.strerror}") from None
        try:
            # A system bundle holds old roots that cryptography warns about; this only asks
            # whether the file holds certificates at all.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                x509.load_pem_x509_certificates(pem)
        except ValueError:
            problem = f"{value} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
            raise ValueError(problem) from None
        return value

    @field_validator("signcsr_approval_channel")
    @classmethod
    def _channel_id(cls, value: str | None) -> str | None:
        if value is not None and not CHANNEL_ID.match(value):
            raise ValueError(
                f"{value!r} is not a channel ID: give the ID such as C0123ABCD (channel details,"
                " at the bottom of About), not the channel's name"
            )
        return value

    @field_validator("signcsr_default_days")
    @classmethod
    def _default_within_limit(cls, value: int, info: ValidationInfo) -> int:
        limit = info.data.get("signcsr_max_days")
        if limit is not None and value > limit:
            raise ValueError(f"{value} is more than SIGNCSR_MAX_DAYS ({limit})")
        return value

    @field_validator("signcsr_approvers", "signcsr_requesters", mode="before")
    @classmethod
    def _split_ids(cls, value: Any) -> Any:
        return split_ids(value)

    @field_validator("signcsr_approvers", "signcsr_requesters")
    @classmethod
    def _slack_ids(cls, value: list[str]) -> list[str]:
        wrong = [item for item in value if not SLACK_ID.match(item)]
        if wrong:
            raise ValueError(f"{', '.join(wrong)} is not a Slack user (U…, W…) or group (S…) ID")
        return value

    @field_validator("signcsr_approvers")
    @classmethod
    def _some_approver(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("needs at least one approver")
        return value

    @field_validator("signcsr_roots", mode="before")
    @classmethod
    def _parse_catalog(cls, value: Any) -> Any:
        return parse_catalog(value)

    @field_validator("signcsr_roots")
    @classmethod
    def _normalise_catalog(cls, value: dict[str, str]) -> dict[str, str]:
        return {name: normalise_serial(serial) for name, serial in value.items()}

    @field_validator("signcsr_database")
    @classmethod
    def _database_url(cls, value: str) -> str:
        # The URL may hold a password, so no message here repeats it.
        try:
            url = make_url(value)
            url.get_dialect().import_dbapi()
        except ArgumentError:
            raise ValueError("must be a SQLAlchemy URL such as sqlite:///signcsr.db") from None
        except ImportError as exc:
            raise ValueError(
                f"the driver for {url.drivername} is not installed ({exc.name})"
            ) from None
        return value

    @field_validator("signcsr_command")
    @classmethod
    def _command_name(cls, value: str) -> str:
        if not re.fullmatch(r"/[a-z0-9_-]{1,31}", value):
            raise ValueError("must look like /signcsr")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class _ValuesOnly(Settings):
    """Settings whose only source is the keyword arguments given."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def describe_error(exc: ValidationError) -> str:
    """One line naming the variable at fault, without echoing secret values."""
    error = exc.errors()[0]
    variable = str(error["loc"][0]).upper() if error["loc"] else "configuration"
    if error["type"] == "missing":
        return f"{variable} is required but not set"
    message = error["msg"].removeprefix("Value error, ")
    return f"{variable} is invalid: {message}"
