"""Corrections to FAB's OpenAPI description of a `WofficeModelRestApi` (issue 9).

FAB writes its operations' responses in docstrings that do not match what the API
answers: string ids where they are integers, the input schema as the result of a write,
objects where ``_info`` has arrays, error bodies without a required ``message``, and no
403/405. `WofficeModelRestApi.add_api_spec` applies these after FAB; the schemathesis
run (tests/api/test_schemathesis.py) is what finds the next difference.
"""

from __future__ import annotations

from typing import Any

from apispec import APISpec


def _ok_body(operation: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON schema of an operation's 2xx answer, when FAB wrote it inline."""
    for status in ("200", "201"):
        content = operation.get("responses", {}).get(status, {}).get("content", {})
        schema = content.get("application/json", {}).get("schema")
        if isinstance(schema, dict) and "properties" in schema:
            return schema
    return None


MESSAGE_BODY = {
    "type": "object",
    "properties": {"message": {"type": "string"}},
    "required": ["message"],
}
# A 422's message is a text or, for a refused body, {field: [reasons]} (nested for lists).
MESSAGE_OR_FIELDS_BODY = {
    "type": "object",
    "properties": {"message": {"anyOf": [{"type": "string"}, {"type": "object"}]}},
    "required": ["message"],
}
EXTRA_RESPONSES = {"405": "Method not allowed"}


def correct_components(api_spec: APISpec) -> None:
    """Shared error responses: every one has a message; a 422's may be per field."""
    responses = api_spec.components.responses
    for status, description in EXTRA_RESPONSES.items():
        responses.setdefault(status, {"description": description})
    for status, response in responses.items():
        body = MESSAGE_OR_FIELDS_BODY if status == "422" else MESSAGE_BODY
        response["content"] = {"application/json": {"schema": body}}


def correct_operation(
    operation: dict[str, Any], method: str, has_pk: bool, show_ref: dict[str, str]
) -> None:
    """Correct FAB's description of one operation of a `WofficeModelRestApi`.

    Ids are integers (FAB says strings); writes answer with the show schema (FAB names
    the input schema); ``_info`` lists fields in arrays (FAB says objects); every
    operation may answer 403 (a role without the permission), and those with a
    ``{pk}`` 404 (no such row, or a pk that is not a number) and 405 (a method the
    API does not offer on that row, e.g. DELETE on a read-only one).
    """
    responses = operation.setdefault("responses", {})
    wanted = ["400", "401", "403"] + (["404", "405"] if has_pk else [])
    for status in wanted:
        responses.setdefault(status, {"$ref": f"#/components/responses/{status}"})
    body = _ok_body(operation)
    if body is None:
        return
    props = body["properties"]
    if "ids" in props:
        props["ids"]["items"] = {"type": "integer"}
    if "id" in props:
        props["id"]["type"] = "integer"
    if method in ("post", "put") and "result" in props:
        props["result"] = dict(show_ref)
    for key in ("add_columns", "edit_columns"):
        if key in props:
            props[key] = {"type": "array", "items": {"type": "object"}}
