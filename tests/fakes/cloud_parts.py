"""Building blocks of the fake Cloud API: numbers, templates, faults, rate buckets, errors.

The error catalogue here is the fake's own copy of what Meta sends (reference 2), kept
apart from the client's table on purpose: the client is tested against it, not against
itself.
"""

from __future__ import annotations

import functools
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# code -> (HTTP status, title, details). The HTTP status for 130429 follows YCloud's
# copy (429), the rest Meta's table copies (reference 2); clients must key on the code.
ERRORS: dict[int, tuple[int, str, str]] = {
    0: (401, "AuthException", "We were unable to authenticate the app user."),
    1: (400, "API Unknown", "Invalid request or possible server error."),
    2: (503, "API Service", "Temporary due to downtime or due to being overloaded."),
    4: (400, "API Too Many Calls", "The app has reached its API call rate limit."),
    10: (403, "Permission Denied", "Permission is either not granted or has been removed."),
    100: (400, "Invalid parameter", "Invalid parameter."),
    190: (401, "Access token has expired", "Invalid OAuth access token."),
    368: (403, "Temporarily blocked for policies violations", "The account is restricted."),
    80007: (400, "Rate limit issues", "The WhatsApp Business Account has reached its rate limit."),
    130429: (429, "Rate limit hit", "Cloud API message throughput has been reached."),
    131000: (500, "Something went wrong", "Message failed to send due to an unknown error."),
    131016: (503, "Service unavailable", "A service is temporarily unavailable."),
    131026: (400, "Message undeliverable", "Unable to deliver message."),
    131047: (
        400,
        "Re-engagement message",
        "Message failed to send because more than 24 hours have passed since the customer "
        "last replied to this number.",
    ),
    131048: (400, "Spam rate limit hit", "Message failed to send: restrictions on this number."),
    131049: (
        400,
        "This message was not delivered to maintain healthy ecosystem engagement.",
        "In order to maintain a healthy ecosystem engagement, the message failed to be delivered.",
    ),
    131050: (
        400,
        "Unable to deliver the message: the recipient stopped marketing messages",
        "This recipient has chosen to stop receiving marketing messages on WhatsApp from "
        "your business.",
    ),
    131056: (
        400,
        "(Business Account, Consumer Account) pair rate limit hit",
        "Message failed to send because there were too many messages sent from this phone "
        "number to the same phone number in a short period of time.",
    ),
    131057: (400, "Account in maintenance mode", "Business Account is in maintenance mode."),
    132000: (
        400,
        "Number of parameters does not match the expected number of params",
        "The number of variable parameter values does not match the template.",
    ),
    132001: (404, "Template name does not exist in the translation", "Template not found."),
    132015: (400, "Template is Paused", "Template is paused due to low quality."),
    132016: (400, "Template is Disabled", "Template has been permanently disabled."),
}


def graph_error(code: int, details: str | None = None, subcode: int | None = None) -> tuple:
    """(HTTP status, body) of a Graph error reply for ``code``, as Meta shapes it."""
    http_status, title, default_details = ERRORS.get(code, (400, f"Error {code}", ""))
    message = f"(#{code}) {title}"
    if code == 190:
        message = "Invalid OAuth access token - Cannot parse access token"
    error: dict[str, Any] = {
        "message": message,
        "type": "OAuthException",
        "code": code,
        "error_data": {"messaging_product": "whatsapp", "details": details or default_details},
        "fbtrace_id": "A" + secrets.token_urlsafe(16),
    }
    if subcode is not None:
        error["error_subcode"] = subcode
    return http_status, {"error": error}


def webhook_error_parts(code: int) -> tuple[str, str]:
    """(title, details) of ``code`` for a ``failed`` status webhook."""
    _status, title, details = ERRORS.get(code, (400, f"Error {code}", ""))
    return title, details


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` banked; thread-safe."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic):
        self.rate, self.capacity, self.clock = rate, max(burst, 1.0), clock
        self.tokens, self.updated = self.capacity, clock()
        self._lock = threading.Lock()

    def take(self) -> bool:
        """Take one token if there is one."""
        with self._lock:
            now = self.clock()
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return True
            return False


@dataclass
class FakeNumber:
    """A business phone number: its Graph id, app secret, token, WABA and throughput.

    ``access_token="*"`` accepts any non-empty bearer token (demo convenience only).
    ``mps=None`` disables the throughput bucket; ``burst`` defaults to one second's worth.
    """

    phone_number_id: str
    app_secret: str
    access_token: str
    business_account_id: str = ""
    display_phone_number: str = "15550001111"
    mps: float | None = 80
    burst: float | None = None
    webhook_url: str | None = None

    def __post_init__(self) -> None:
        if not self.business_account_id:
            # A digits-only WABA id derived from the number's id ("1000..1" -> "2000..1").
            self.business_account_id = "2" + self.phone_number_id[1:]

    def accepts(self, token: str) -> bool:
        """Whether ``token`` may act for this number."""
        if not token:
            return False
        return self.access_token == "*" or secrets.compare_digest(token, self.access_token)


_VARIABLE = re.compile(r"\{\{\s*([a-z0-9_]+)\s*\}\}")


@functools.lru_cache(maxsize=256)
def _variables(body: str) -> tuple[str, ...]:
    """A body's variables in order of first use (by text: bodies may be edited)."""
    return tuple(dict.fromkeys(_VARIABLE.findall(body)))


@dataclass
class FakeTemplate:
    """A message template of a WABA, listed in Graph's shape."""

    name: str
    language: str = "en_US"
    category: str = "UTILITY"
    status: str = "APPROVED"
    body: str = "Hello {{1}}"
    id: str = field(default_factory=lambda: str(10**15 + secrets.randbelow(10**15)))

    @property
    def variables(self) -> list[str]:
        """The body's variables, in order of first use."""
        return list(_variables(self.body))

    @property
    def parameter_format(self) -> str:
        names = self.variables
        return "POSITIONAL" if all(v.isdigit() for v in names) else "NAMED"

    def as_graph(self) -> dict[str, Any]:
        """The template as ``GET /message_templates`` returns it."""
        body: dict[str, Any] = {"type": "BODY", "text": self.body}
        if self.variables and self.parameter_format == "POSITIONAL":
            body["example"] = {"body_text": [[f"example{n}" for n in self.variables]]}
        elif self.variables:
            body["example"] = {
                "body_text_named_params": [
                    {"param_name": n, "example": f"example_{n}"} for n in self.variables
                ]
            }
        return {
            "id": self.id,
            "name": self.name,
            "language": self.language,
            "status": self.status,
            "category": self.category,
            "parameter_format": self.parameter_format,
            "components": [body],
        }


def default_templates() -> list[FakeTemplate]:
    """The templates every fake WABA starts with (the demo's too)."""
    return [
        FakeTemplate("order_shipped", body="Hi {{1}}, order {{2}} shipped.", category="UTILITY"),
        FakeTemplate(
            "festive_offer",
            category="MARKETING",
            body="Hi {{customer_name}}, {{discount}} off this week only!",
        ),
        FakeTemplate("welcome", category="MARKETING", body="Welcome to our store, {{1}}!"),
        FakeTemplate("login_code", category="AUTHENTICATION", body="Your code is {{1}}."),
        FakeTemplate("old_promo", category="MARKETING", status="PAUSED", body="Sale {{1}}"),
    ]


@dataclass
class Fault:
    """An injected failure for message sends.

    ``code=None`` answers ``http_status`` (default 502) with a non-JSON body.
    ``rate`` is the chance per matching send; ``times`` caps how often it fires;
    ``to`` limits it to one recipient. ``asynchronous`` accepts the send (200, wamid)
    and then reports a ``failed`` status webhook with ``code`` instead of answering it.
    """

    code: int | None
    rate: float = 1.0
    http_status: int | None = None
    times: int | None = None
    to: str | None = None
    asynchronous: bool = False
    fired: int = 0

    def matches(self, to: str, roll: float) -> bool:
        """Whether the fault fires for this send (and counts it when it does)."""
        if self.times is not None and self.fired >= self.times:
            return False
        if self.to is not None and self.to != to:
            return False
        if roll >= self.rate:
            return False
        self.fired += 1
        return True
