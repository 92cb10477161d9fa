"""Reading PAM360 request inputs: INPUT_DATA from a form or a query, and multipart files."""

from __future__ import annotations

import email.policy
import json
from email.parser import BytesParser
from typing import Any
from urllib.parse import parse_qs


class MalformedRequest(ValueError):
    """The request cannot be read at all; answered with HTTP 400 and this message."""


def details_from_form(body: bytes) -> dict[str, Any]:
    """The `operation.Details` object of a form-encoded INPUT_DATA field."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedRequest("The request body is not UTF-8 text.") from exc
    return details_from_query(text)


def details_from_query(query: str) -> dict[str, Any]:
    """The `operation.Details` object of INPUT_DATA in a query string or form body."""
    values = parse_qs(query, keep_blank_values=True).get("INPUT_DATA")
    if not values:
        raise MalformedRequest("The request has no INPUT_DATA parameter.")
    try:
        input_data = json.loads(values[0])
    except json.JSONDecodeError as exc:
        raise MalformedRequest("INPUT_DATA is not valid JSON.") from exc

    operation = input_data.get("operation") if isinstance(input_data, dict) else None
    details = operation.get("Details") if isinstance(operation, dict) else None
    if not isinstance(details, dict):
        raise MalformedRequest('INPUT_DATA must be {"operation":{"Details":{...}}}.')
    return details


def multipart_file(content_type: str, body: bytes, field: str) -> bytes | None:
    """The content of file field `field` in a multipart/form-data body, or None if absent."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise MalformedRequest(f"Send multipart/form-data with a file field {field}.")
    # The email parser reads MIME multipart bodies; it only needs the Content-Type header.
    head = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1")
    message = BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise MalformedRequest("The multipart/form-data body cannot be read.")

    for part in message.walk():
        if part is message or part.get_param("name", header="content-disposition") != field:
            continue
        content = part.get_payload(decode=True)
        return content if isinstance(content, bytes) else b""
    return None
