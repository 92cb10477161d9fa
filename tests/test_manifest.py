"""The Slack app manifest: valid against Slack's schema, and in step with the code."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from slack_sdk import WebClient

from bot.config import Settings

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "manifest.yml"
SCHEMA = ROOT / "tests" / "fixtures" / "slack" / "manifest.schema.1.0.0.json"
SOURCE = ROOT / "bot"

# Every Slack Web API method the code may call, with the bot scope it needs (None: none).
SCOPE_OF_METHOD: dict[str, str | None] = {
    "auth_test": None,
    "chat_postMessage": "chat:write",
    "chat_postEphemeral": "chat:write",
    "chat_update": "chat:write",
    "usergroups_users_list": "usergroups:read",
    # Views need only a trigger_id, which comes with the slash command or an interaction.
    "views_open": None,
    "views_update": None,
    "views_push": None,
}

# Names of WebClient's Web API methods (chat_postMessage, …); BaseClient's generic
# api_call is not among them and is caught separately, since its method is a string.
WEB_API_METHODS = frozenset(name for name in vars(WebClient) if not name.startswith("_"))
ATTRIBUTE_CALL = re.compile(r"\.\s*([A-Za-z_]\w*)\s*\(")


def load_manifest() -> dict[str, Any]:
    with MANIFEST.open(encoding="utf-8") as stream:
        manifest = yaml.safe_load(stream)
    assert isinstance(manifest, dict)
    return manifest


def schema_validator() -> jsonschema.protocols.Validator:
    with SCHEMA.open(encoding="utf-8") as stream:
        schema = json.load(stream)
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema)


def schema_errors(manifest: dict[str, Any]) -> list[str]:
    errors = schema_validator().iter_errors(manifest)
    return [f"{'/'.join(map(str, e.absolute_path)) or '<top>'}: {e.message}" for e in errors]


def web_api_calls() -> dict[str, set[str]]:
    """Slack Web API methods called anywhere under bot/, each with the files calling it."""
    calls: dict[str, set[str]] = {}
    for path in sorted(SOURCE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for match in ATTRIBUTE_CALL.finditer(text):
            name = match.group(1)
            if name in WEB_API_METHODS or name == "api_call":
                calls.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return calls


def bot_scopes(manifest: dict[str, Any]) -> list[str]:
    scopes = manifest["oauth_config"]["scopes"]["bot"]
    assert isinstance(scopes, list)
    return scopes


def slash_command(manifest: dict[str, Any]) -> dict[str, Any]:
    commands = manifest["features"]["slash_commands"]
    assert len(commands) == 1, "the app has one slash command"
    command = commands[0]
    assert isinstance(command, dict)
    return command


# Slack's schema --------------------------------------------------------------------------


def test_manifest_is_valid_against_slacks_schema() -> None:
    assert schema_errors(load_manifest()) == []


def test_schema_validator_follows_the_declared_draft() -> None:
    assert type(schema_validator()) is jsonschema.Draft7Validator


def broken_scopes(manifest: dict[str, Any]) -> None:
    manifest["oauth_config"]["scopes"]["bot"] = "commands,chat:write"


def unknown_top_level_key(manifest: dict[str, Any]) -> None:
    manifest["bot_settings"] = {"always_online": True}


def unknown_slash_command_key(manifest: dict[str, Any]) -> None:
    slash_command(manifest)["escape"] = True


def overlong_usage_hint(manifest: dict[str, Any]) -> None:
    slash_command(manifest)["usage_hint"] = "x" * 1001


def command_without_slash(manifest: dict[str, Any]) -> None:
    slash_command(manifest)["command"] = "signcsr"


def interactivity_without_is_enabled(manifest: dict[str, Any]) -> None:
    del manifest["settings"]["interactivity"]["is_enabled"]


def missing_display_information(manifest: dict[str, Any]) -> None:
    del manifest["display_information"]


@pytest.mark.parametrize(
    "breakage",
    [
        broken_scopes,
        unknown_top_level_key,
        unknown_slash_command_key,
        overlong_usage_hint,
        command_without_slash,
        interactivity_without_is_enabled,
        missing_display_information,
    ],
)
def test_a_broken_manifest_fails_validation(breakage: Any) -> None:
    manifest = copy.deepcopy(load_manifest())
    breakage(manifest)
    assert schema_errors(manifest), f"{breakage.__name__} should not pass Slack's schema"


# What the code relies on ---------------------------------------------------------------


def test_slash_command_matches_the_settings_default() -> None:
    default = Settings.model_fields["signcsr_command"].default
    assert default == "/signcsr"
    assert slash_command(load_manifest())["command"] == default


def test_slash_command_escapes_mentions_and_channels() -> None:
    command = slash_command(load_manifest())
    assert command["should_escape"] is True
    assert command["description"] and command["usage_hint"]


def test_socket_mode_with_interactivity_and_a_bot_user() -> None:
    manifest = load_manifest()
    settings = manifest["settings"]
    assert settings["socket_mode_enabled"] is True
    assert settings["interactivity"] == {"is_enabled": True}
    assert settings["org_deploy_enabled"] is False
    assert settings["token_rotation_enabled"] is False
    assert manifest["features"]["bot_user"]["always_online"] is True
    assert manifest["display_information"]["name"] == "signcsr-bot"


def test_scan_finds_the_calls_the_app_makes() -> None:
    # Guards the scan itself: if it found nothing, the scope checks below would prove nothing.
    assert {"chat_postMessage", "chat_update", "usergroups_users_list"} <= set(web_api_calls())


def test_every_web_api_method_called_has_a_known_scope() -> None:
    unmapped = {
        name: files for name, files in web_api_calls().items() if name not in SCOPE_OF_METHOD
    }
    assert not unmapped, (
        f"bot/ calls Slack Web API methods {sorted(unmapped)} ({unmapped}) that "
        "SCOPE_OF_METHOD in tests/test_manifest.py does not know: add each with the bot scope "
        "its Slack reference page names (None if it needs none), and add that scope to "
        "oauth_config.scopes.bot in manifest.yml. Call methods by name, not through api_call."
    )


def scopes_the_code_needs(manifest: dict[str, Any]) -> set[str]:
    needed = {SCOPE_OF_METHOD.get(name) for name in web_api_calls()}
    if manifest["features"].get("slash_commands"):
        needed.add("commands")
    return {scope for scope in needed if scope is not None}


def test_manifest_grants_every_scope_the_code_needs() -> None:
    manifest = load_manifest()
    missing = scopes_the_code_needs(manifest) - set(bot_scopes(manifest))
    assert not missing, f"add {sorted(missing)} to oauth_config.scopes.bot in manifest.yml"


def test_manifest_requests_no_scope_that_nothing_uses() -> None:
    manifest = load_manifest()
    scopes = bot_scopes(manifest)
    assert len(scopes) == len(set(scopes)), "a scope is listed twice"
    unused = set(scopes) - scopes_the_code_needs(manifest)
    assert not unused, f"nothing in bot/ needs {sorted(unused)}: remove it from manifest.yml"


def test_manifest_asks_for_no_user_token() -> None:
    scopes = load_manifest()["oauth_config"]["scopes"]
    assert set(scopes) == {"bot"}


# The instructions for HTTP mode ----------------------------------------------------------


def comments() -> str:
    lines = MANIFEST.read_text(encoding="utf-8").splitlines()
    return "\n".join(line.strip() for line in lines if line.strip().startswith("#"))


def test_comments_explain_how_to_switch_to_http_request_urls() -> None:
    text = comments()
    assert "socket_mode_enabled: false" in text
    for key in ("url", "request_url", "message_menu_options_url"):
        assert re.search(rf"\b{key}: https://<host>/slack/events\b", text), key
    assert "SLACK_SIGNING_SECRET" in text
