"""The request form: `/signcsr` alone opens it; its answers go through the command's checks."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from bot.commands import FIELD_NAMES, MAX_REASON_CHARS
from bot.config import Settings
from bot.pam360.models import CSREntry
from bot.slack.messages import Block, clip, escape

FORM_CALLBACK = "signcsr_form"
CSR_SELECT_ACTION = "signcsr_csr_select"
OPTION_LIMIT = 100
OPTION_TEXT_LIMIT = 75
OPTION_VALUE_LIMIT = 150
# Errors about no particular field are shown on the first input of the form.
FIRST_BLOCK = "csr"
LEFT_EMPTY = {
    "csr": "Pick the CSR to sign (type part of its name or its ID).",
    "root": "Pick the CA that signs it, or choose a Microsoft CA under Sign with.",
}


def plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text}


def input_block(
    block_id: str, label: str, element: dict[str, Any], hint: str | None = None
) -> Block:
    """An optional input: which fields a request needs depends on its sign type, so the
    form's answers are checked by the command's rules, not by Slack."""
    block: Block = {
        "type": "input",
        "block_id": block_id,
        "optional": True,
        "label": plain(label),
        "element": {"action_id": block_id, **element},
    }
    if hint:
        block["hint"] = plain(hint)
    return block


def text_element(max_length: int = 200, placeholder: str | None = None) -> dict[str, Any]:
    element: dict[str, Any] = {"type": "plain_text_input", "max_length": max_length}
    if placeholder:
        element["placeholder"] = plain(placeholder)
    return element


def csr_block(from_list: bool) -> Block:
    """A type-to-search select over PAM360's CSRs (it serves hundreds), or a number field
    when PAM360's list cannot be read."""
    if from_list:
        element = {
            "type": "external_select",
            "min_query_length": 0,
            "placeholder": plain("Search by domain name or CSR ID"),
        }
        block = input_block("csr", "CSR in PAM360", element)
        block["element"]["action_id"] = CSR_SELECT_ACTION
        return block
    element = {"type": "number_input", "is_decimal_allowed": False, "min_value": "1"}
    hint = "PAM360's CSR list could not be read; type the CSR ID as PAM360 shows it."
    return input_block("csr", "CSR ID", element, hint)


def ca_blocks(catalog: Mapping[str, str]) -> list[Block]:
    """A select over the catalog when Slack can hold it (100 options, values of 150
    characters), else a text field checked against the catalog on submission."""
    if catalog and len(catalog) <= OPTION_LIMIT and max(map(len, catalog)) <= OPTION_VALUE_LIMIT:
        options = [{"text": plain(clip(cn, OPTION_TEXT_LIMIT)), "value": cn} for cn in catalog]
        root = input_block("root", "CA", {"type": "static_select", "options": options})
        serial_hint = "Leave empty to use the catalog's serial."
    elif catalog:
        root = input_block("root", "CA common name", text_element(), "A CA from the catalog.")
        serial_hint = "Leave empty to use the catalog's serial."
    else:
        root = input_block("root", "CA common name", text_element(placeholder="testroot"))
        serial_hint = "The CA's serial number in hex, as PAM360 shows it."
    return [root, input_block("serial", "CA serial", text_element(128), serial_hint)]


def sign_type_block() -> Block:
    options = [
        {"text": plain("PAM360 root or intermediate CA"), "value": "root"},
        {"text": plain("Microsoft CA (through PAM360)"), "value": "msca"},
    ]
    element = {"type": "radio_buttons", "options": options, "initial_option": options[0]}
    return input_block("type", "Sign with", element)


def msca_blocks() -> list[Block]:
    hint = "Only for a Microsoft CA."
    return [
        input_block("server", "Microsoft CA server", text_element(), hint),
        input_block("ca", "Microsoft CA name", text_element(), hint),
        input_block("template", "Certificate template", text_element(), hint),
    ]


def form_view(settings: Settings, metadata: Mapping[str, str | None], from_list: bool) -> Block:
    """The whole modal."""
    days = {
        "type": "number_input",
        "is_decimal_allowed": False,
        "min_value": "1",
        "initial_value": str(settings.signcsr_default_days),
    }
    intermediate = {
        "type": "checkboxes",
        "options": [{"text": plain("Intermediate CA certificate (CA:TRUE)"), "value": "yes"}],
    }
    limits = (
        f"At most {settings.signcsr_max_days} days,"
        f" {settings.signcsr_max_intermediate_days} for an intermediate."
    )
    blocks = [
        csr_block(from_list),
        sign_type_block(),
        *ca_blocks(settings.signcsr_roots),
        input_block("days", "Validity in days", days, limits),
        input_block("intermediate", "Intermediate", intermediate),
        *msca_blocks(),
        input_block(
            "org", "PAM360 organization", text_element(100), "Leave empty for the default."
        ),
        input_block(
            "reason", "Reason", text_element(MAX_REASON_CHARS, "What the certificate is for")
        ),
    ]
    return {
        "type": "modal",
        "callback_id": FORM_CALLBACK,
        "title": plain("Sign a CSR"),
        "submit": plain("Ask to sign"),
        "close": plain("Cancel"),
        "private_metadata": json.dumps(dict(metadata)),
        "blocks": blocks,
    }


def origin(view: Mapping[str, Any]) -> dict[str, Any]:
    """Where the form was opened from, as `form_view` put it in the view's metadata; empty
    when the metadata is missing or not ours."""
    try:
        metadata = json.loads(view.get("private_metadata") or "{}")
    except ValueError:
        return {}
    if not isinstance(metadata, dict):
        return {}
    return {key: value for key, value in metadata.items() if isinstance(value, str)}


def field_values(state: Mapping[str, Mapping[str, Any]], default_days: int) -> dict[str, str]:
    """The form's answers as the command's raw fields; empty means not given."""
    fields: dict[str, str] = {}
    for name in FIELD_NAMES:
        for element in (state.get(name) or {}).values():
            fields[name] = element_value(element)
    # The days field comes filled with the default. Left so for a Microsoft CA, it asks for
    # nothing: the template decides, and Validity goes to PAM360 only when asked for.
    if fields.get("type") == "msca" and fields.get("days") == str(default_days):
        fields["days"] = ""
    return fields


def element_value(element: Mapping[str, Any]) -> str:
    kind = element.get("type")
    if kind in ("static_select", "external_select", "radio_buttons"):
        selected = element.get("selected_option") or {}
        return str(selected.get("value") or "")
    if kind == "checkboxes":
        return "yes" if element.get("selected_options") else "no"
    return str(element.get("value") or "").strip()


def form_error(field: str | None, problem: str, fields: Mapping[str, str]) -> dict[str, Any]:
    """The answer that keeps the form open with the problem under its field. A required
    field left empty gets the form's own words, not the command's `root=` syntax."""
    block = field if field in FIELD_NAMES else FIRST_BLOCK
    if block in LEFT_EMPTY and not fields.get(block):
        problem = LEFT_EMPTY[block]
    return {"response_action": "errors", "errors": {block: problem}}


def csr_options(entries: Iterable[CSREntry], query: str) -> list[dict[str, Any]]:
    """The CSRs matching what the person typed, as select options: the one whose ID was
    typed first (it must not fall past the option limit), then the others newest first."""
    query = query.strip().lower()
    matching = [
        entry
        for entry in entries
        if not query or query in entry.domain_name.lower() or query in str(entry.csr_id)
    ]
    matching.sort(key=lambda entry: (str(entry.csr_id) != query, -entry.csr_id))
    return [
        {"text": plain(option_text(entry)), "value": str(entry.csr_id)}
        for entry in matching[:OPTION_LIMIT]
    ]


def option_text(entry: CSREntry) -> str:
    key = " ".join(part for part in (entry.key_algorithm, entry.key_strength) if part)
    name = entry.domain_name or "(no name)"
    suffix = f" · CSR {entry.csr_id}" + (f" · {key}" if key else "")
    return clip(name, OPTION_TEXT_LIMIT - len(suffix)) + suffix


def form_failed_note(error: str, usage_line: str) -> str:
    return (
        f"I could not open the request form ({escape(error)}). Type the request instead:\n"
        f"`{escape(usage_line)}`"
    )
