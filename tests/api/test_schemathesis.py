"""API fuzzing with schemathesis against the served OpenAPI spec (issue 9).

The spec is read from the app as a signed-in tenant admin (owner@acme.example), and every
GET operation of every API, plus the writes of the contact and tag APIs, is called with
generated requests (valid and invalid ones) through that session (cookie +
``X-CSRFToken``). The platform APIs, which refuse a tenant admin and are not in their
spec, are fuzzed with a platform admin's spec and session. The checks are the promise
of the REST API: no 5xx for any input, only status codes the spec declares, and bodies
and content types that match it. Everything runs inside the test's rolled-back
transaction, so fuzzed writes leave nothing behind.

Examples per operation are bounded (`EXAMPLES`) so the whole run stays under 90 s.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

OWNER = "owner@acme.example"
PLATFORM_ADMIN = "admin@xigmapro.example"
EXAMPLES = 6  # per operation and generation mode
WRITES = {"POST contact", "PUT contact", "POST tag", "PUT tag", "DELETE tag", "POST consent"}
PLATFORM_RESOURCES = {"tenant", "plan", "invoice", "credit_note", "payment", "privacy_request"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# The audit trail's API is fuzzed on its own (it is read-only and the largest table).
SEPARATE = {"audit"}


def resource_of(operation) -> str:
    parts = operation.path.split("/")
    if parts[-1] == "consent":
        return "consent"
    return parts[3] if len(parts) > 3 else ""


def fuzzed_as_owner(operation) -> bool:
    """Every GET, and the contact and tag writes (the other APIs are read-only)."""
    if resource_of(operation) in SEPARATE:
        return False
    method = operation.method.upper()
    return method == "GET" or f"{method} {resource_of(operation)}" in WRITES


def session_for(client, login, csrf_token, email: str) -> dict[str, str]:
    assert login(email).status_code == 302
    return {"X-CSRFToken": csrf_token("/account/")}


def load_operations(client, keep) -> list:
    spec = client.get("/api/v1/_openapi").get_json()
    schema = schemathesis.openapi.from_dict(spec)
    return [op for op in (r.ok() for r in schema.get_all_operations()) if keep(op)]


def fuzz_all(app, client, headers, operations) -> dict[str, str]:
    """Fuzz each operation in both generation modes; failures by operation."""
    failures: dict[str, str] = {}
    for operation in operations:
        modes = [GenerationMode.POSITIVE]
        if "{version}" not in operation.path:  # the spec's own URL has no invalid form
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:
            try:
                _fuzz(app, client, headers, operation, mode)
            except Unsatisfiable:
                if mode is GenerationMode.POSITIVE:
                    raise
                # No parameter and no body (GET /api/v1/menu/): nothing can be invalid.
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - reported together
                failures[f"{operation.label} [{mode.value}]"] = str(exc)[:1500]
    return failures


def _fuzz(app, client, headers, operation, mode) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case):
        response = case.call(session=client, headers=headers, app=app)
        case.validate_response(response, checks=CHECKS, headers=headers)

    run()


def report(failures: dict[str, str]) -> str:
    return "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())


def test_tenant_admin_fuzz_finds_no_server_error_and_no_spec_break(app, client, login, csrf_token):
    headers = session_for(client, login, csrf_token, OWNER)
    operations = load_operations(client, fuzzed_as_owner)
    labels = {op.label for op in operations}
    owner_apis = {"campaign", "campaign_recipient", "contact", "conversation", "message"}
    owner_apis |= {"my_invoice", "tag", "team", "template"}
    every_get = {f"GET /api/v1/{r}/{end}" for r in owner_apis for end in ("", "_info", "{pk}")}
    assert every_get <= labels, sorted(every_get - labels)
    assert {"POST /api/v1/contact/", "DELETE /api/v1/tag/{pk}"} <= labels
    assert not {label for label in labels if label.split("/")[3] in PLATFORM_RESOURCES}
    failures = fuzz_all(app, client, headers, operations)
    assert not failures, report(failures)


def test_platform_admin_fuzz_of_the_platform_apis(app, client, login, csrf_token):
    headers = session_for(client, login, csrf_token, PLATFORM_ADMIN)
    operations = load_operations(
        client,
        lambda op: op.method.upper() == "GET" and resource_of(op) in PLATFORM_RESOURCES,
    )
    assert len(operations) == 3 * len(PLATFORM_RESOURCES)
    failures = fuzz_all(app, client, headers, operations)
    assert not failures, report(failures)


def test_audit_api_fuzz(app, client, login, csrf_token):
    headers = session_for(client, login, csrf_token, OWNER)
    operations = load_operations(client, lambda op: resource_of(op) in SEPARATE)
    assert len(operations) == 3
    failures = fuzz_all(app, client, headers, operations)
    assert not failures, report(failures)
