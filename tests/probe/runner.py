"""Send the probe's requests and judge each answer (the oracle).

A request is **failed** when:

* it answers 5xx (a crash is never an acceptable refusal);
* it answers 2xx and the body names the other tenant (any marker of `world.markers`,
  raw, HTML-escaped or inside JSON);
* it redirects and the flashed message names the other tenant (the page after the
  redirect would show it; the caller pops it with `flashed`);
* it writes (POST/PUT/DELETE) and any row the other tenant owns changed, whatever the
  status: a refused write must change nothing.

Expected answers are refusals: 404 mostly, or 403/401/302/405/400.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from dataclasses import dataclass, field

from flask.testing import FlaskClient
from werkzeug.datastructures import MultiDict

WRITES = frozenset({"POST", "PUT", "DELETE", "PATCH"})
# What a crafted write submits: field names common to the app's forms, so that a route
# missing its tenant check would get as far as saving (and the digest would see it).
FORM_FIELDS = {"name": "Probe hijack", "label": "Probe hijack", "first_name": "Probe"}
# APIs reject unknown fields (400), which would stop a write before the row lookup.
API_FIELDS = {"name": "Probe hijack"}


@dataclass
class Prober:
    """A signed-in user of one tenant, aiming at the other tenant."""

    email: str
    client: FlaskClient
    token: str  # the session's CSRF token
    tenant_id: int
    target_id: int
    markers: list[str]


@dataclass
class Outcome:
    """What one rule answered, over every prober, method and id."""

    requests: int = 0
    skipped: int = 0  # ids not sent: has_access had already refused the route
    seconds: float = 0.0
    statuses: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)


def send(prober: Prober, method: str, url: str):
    """One request as the prober: forms carry the CSRF token, API calls send JSON."""
    client = prober.client
    if url.startswith("/api/"):
        if method == "GET":
            return client.open(url, method=method, buffered=True)
        headers = {"X-CSRFToken": prober.token}
        return client.open(url, method=method, json=API_FIELDS, headers=headers, buffered=True)
    if method == "GET":
        return client.open(url, method=method, buffered=True)
    data = MultiDict([*FORM_FIELDS.items(), ("csrf_token", prober.token)])
    return client.open(url, method=method, data=data, buffered=True)


def named(text: str, markers: list[str]) -> list[str]:
    """The markers that appear in ``text`` (as is or HTML-escaped)."""
    return [m for m in markers if m in text or html.escape(m) in text]


def body_text(response) -> str:
    """The body as text; JSON is re-dumped unescaped so non-ASCII names compare."""
    text = response.get_data(as_text=True)
    if response.is_json:
        payload = response.get_json(silent=True)
        if payload is not None:
            text += json.dumps(payload, ensure_ascii=False)
    return text


def flashed(client: FlaskClient) -> str:
    """Pop the messages a redirect flashed (what the next page would show)."""
    with client.session_transaction() as session:
        return " ".join(str(message) for _cat, message in session.pop("_flashes", []))


def refused_by_permission(response, flash_text: str) -> bool:
    """FAB's ``has_access`` said no (403/401, or a redirect flashing "Access is
    Denied"): it decides before the view reads the id, so other ids add nothing."""
    status = response.status_code
    return status in (401, 403) or (300 <= status < 400 and "Access is Denied" in flash_text)


def judge(
    prober: Prober, method: str, url: str, response, changed: list[str], flash_text: str = ""
) -> list[str]:
    """Why this answer is a failure (empty: it is not)."""
    status = response.status_code
    where = f"{prober.email}: {method} {url} -> {status}"
    problems = []
    if status >= 500:
        problems.append(f"{where}: server error")
    if 200 <= status < 300:
        leaked = named(body_text(response), prober.markers)
        if leaked:
            problems.append(f"{where}: the body shows {leaked[:5]}")
    elif 300 <= status < 400:
        leaked = named(flash_text, prober.markers)
        if leaked:
            problems.append(f"{where}: the flashed message shows {leaked[:5]}")
    if changed:
        problems.append(f"{where}: changed the other tenant's {changed}")
    return problems
