"""The Cloud API's error codes in ONE table (reference §2) and the error they raise.

Errors are classified by the JSON ``error.code``, never by the HTTP status (copies of
Meta's table disagree on it): `ERROR_RULES` maps a code to a `RetryClass` (retry soon,
this recipient later, tomorrow, never) with a ``retry_after`` hint, `ERROR_FAMILIES`
covers ranges (132xxx template errors), and `classify` reads both. `WhatsAppError` is
raised for every failed call and built the same way from a failed status webhook's
``errors[]``.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from app.services.exceptions import WofficeError

_TITLE_PREFIX = re.compile(r"^\(#\d+\)\s*")


# ----------------------------------------------------------------- error classes


class RetryClass(enum.StrEnum):
    """What the caller may do after a failed call."""

    soon = "soon"  # transient: back off (seconds, with jitter) and try again
    recipient_later = "recipient_later"  # pair limit: this recipient only, after >= 6 s
    tomorrow = "tomorrow"  # per-user marketing cap: try again on a later day
    permanent = "permanent"  # never retry automatically; record code and title


@dataclass(frozen=True)
class ErrorRule:
    """How one error code is handled: retry class, delay hint (seconds), meaning."""

    retry: RetryClass
    retry_after: float | None
    meaning: str


def _rule(retry: RetryClass, retry_after: float | None, meaning: str) -> ErrorRule:
    return ErrorRule(retry, retry_after, meaning)


_SOON, _PAIR, _TOMORROW, _NEVER = (
    RetryClass.soon,
    RetryClass.recipient_later,
    RetryClass.tomorrow,
    RetryClass.permanent,
)

# THE table (reference 2, 3, 6). Codes absent from it fall to `classify`'s defaults.
ERROR_RULES: dict[int, ErrorRule] = {
    # Throughput and rate limits: back off and retry.
    130429: _rule(_SOON, 1.0, "Throughput (messages per second) of the number exceeded"),
    4: _rule(_SOON, 60.0, "Application call-rate limit reached"),
    80007: _rule(_SOON, 60.0, "WhatsApp Business Account rate limit reached"),
    131057: _rule(_SOON, 60.0, "Business account in maintenance (e.g. throughput upgrade)"),
    # Meta-side trouble: retry a few times.
    131000: _rule(_SOON, 2.0, "Something went wrong"),
    1: _rule(_SOON, 2.0, "Unknown API error"),
    131016: _rule(_SOON, 5.0, "Service unavailable"),
    2: _rule(_SOON, 5.0, "Service temporarily unavailable"),
    # Pair rate limit: only this recipient waits; others are unaffected.
    131056: _rule(_PAIR, 6.0, "Pair rate limit: too many messages to this user too fast"),
    # Per-user marketing cap: a later day.
    131049: _rule(_TOMORROW, 24 * 3600.0, "Per-user marketing limit (ecosystem engagement)"),
    # Authentication, permissions, account state: permanent until someone fixes them.
    0: _rule(_NEVER, None, "Authentication failed"),
    190: _rule(_NEVER, None, "Access token invalid or expired"),
    3: _rule(_NEVER, None, "Capability or permission issue"),
    10: _rule(_NEVER, None, "Permission denied"),
    368: _rule(_NEVER, None, "Temporarily blocked for policy violations"),
    131031: _rule(_NEVER, None, "Business account locked"),
    131042: _rule(_NEVER, None, "Payment method problem"),
    131030: _rule(_NEVER, None, "Recipient not in the test number's allowed list"),
    # Quality-based limits: retrying hurts the number's quality, so no automatic retry.
    131048: _rule(_NEVER, None, "Spam rate limit (message quality)"),
    131064: _rule(_NEVER, None, "Messaging limit after template-category violations"),
    # The recipient.
    131026: _rule(_NEVER, None, "Message undeliverable"),
    131047: _rule(_NEVER, None, "Re-engagement: more than 24 hours since the user's last message"),
    131050: _rule(_NEVER, None, "User stopped marketing messages from this business"),
    131051: _rule(_NEVER, None, "Unsupported message type"),
    # The request itself.
    100: _rule(_NEVER, None, "Invalid parameter"),
    131008: _rule(_NEVER, None, "Required parameter missing"),
    131009: _rule(_NEVER, None, "Parameter value not valid"),
    132000: _rule(_NEVER, None, "Template parameter count mismatch"),
    132001: _rule(_NEVER, None, "Template does not exist in that language or is not approved"),
    132015: _rule(_NEVER, None, "Template paused"),
    132016: _rule(_NEVER, None, "Template disabled"),
}
# Families: every 132xxx is a template problem, every 2xx a missing permission.
ERROR_FAMILIES: tuple[tuple[range, ErrorRule], ...] = (
    (range(132000, 133000), _rule(_NEVER, None, "Template error")),
    (range(200, 300), _rule(_NEVER, None, "Permission missing")),
)
# Failures without a known code. An unknown code is permanent (recorded with its code,
# never retried blindly) unless Meta flags it transient or the server failed (5xx): a
# caller's retry budget bounds those. A reply with no parsable error retries on 408,
# 429 and 5xx only.
UNKNOWN_TRANSIENT = _rule(_SOON, 5.0, "Unknown transient error")
UNKNOWN_PERMANENT = _rule(_NEVER, None, "Unknown error")
HTTP_TRANSIENT = _rule(_SOON, 2.0, "Server error without a parsable body")
HTTP_PERMANENT = _rule(_NEVER, None, "HTTP error without a parsable body")
TIMEOUT = _rule(_SOON, 1.0, "Timed out")
CONNECTION_FAILED = _rule(_SOON, 2.0, "Connection failed")
BAD_REPLY = _rule(_NEVER, None, "Unreadable success reply")


def classify(
    code: int | None, *, http_status: int | None = None, is_transient: bool | None = None
) -> ErrorRule:
    """The rule for an error code (or, with no code, for the bare HTTP status)."""
    if code is not None:
        rule = ERROR_RULES.get(code)
        if rule is None:
            rule = next((r for codes, r in ERROR_FAMILIES if code in codes), None)
        if rule is not None:
            return rule
        transient = bool(is_transient) or (http_status or 0) >= 500
        return UNKNOWN_TRANSIENT if transient else UNKNOWN_PERMANENT
    if http_status is not None and (http_status in (408, 429) or http_status >= 500):
        return HTTP_TRANSIENT
    return HTTP_PERMANENT


class WhatsAppNotConfiguredError(WofficeError):
    """The tenant has no business phone number id or no access token."""


class WhatsAppError(WofficeError):
    """A failed Cloud API call, classified by `classify`.

    ``ambiguous`` is True when the request may have reached Meta before it failed (a
    read timeout, a dropped connection, an unreadable 200): a retry could send twice.
    """

    def __init__(
        self,
        *,
        code: int | None,
        title: str,
        rule: ErrorRule,
        message: str = "",
        details: str | None = None,
        subcode: int | None = None,
        fbtrace_id: str | None = None,
        http_status: int | None = None,
        retry_after: float | None = None,
        ambiguous: bool = False,
    ):
        self.code, self.subcode, self.title = code, subcode, title
        self.message, self.details, self.fbtrace_id = message, details, fbtrace_id
        self.http_status, self.retry, self.ambiguous = http_status, rule.retry, ambiguous
        self.retry_after = retry_after if retry_after is not None else rule.retry_after
        super().__init__(str(self))

    def __str__(self) -> str:
        code = "transport" if self.code is None else f"#{self.code}"
        tail = f": {self.details}" if self.details else ""
        return f"WhatsApp error ({code}) {self.title}{tail} [retry={self.retry}]"

    @property
    def retryable(self) -> bool:
        """Whether any automatic retry is allowed (every class but permanent)."""
        return self.retry is not RetryClass.permanent

    @classmethod
    def from_reply(
        cls, http_status: int, error: Any, *, retry_after: float | None = None
    ) -> WhatsAppError:
        """From an error reply's ``error`` object (None or junk: classified by status)."""
        if not isinstance(error, Mapping):
            rule = classify(None, http_status=http_status)
            return cls(code=None, title=f"HTTP {http_status}", rule=rule, http_status=http_status)
        code = _int(error.get("code"))
        rule = classify(code, http_status=http_status, is_transient=error.get("is_transient"))
        message = str(error.get("message") or "")
        return cls(
            code=code,
            title=_title(error, message) or rule.meaning,
            rule=rule,
            message=message,
            details=_details(error.get("error_data")),
            subcode=_int(error.get("error_subcode")),
            fbtrace_id=error.get("fbtrace_id"),
            http_status=http_status,
            retry_after=retry_after,
        )

    @classmethod
    def from_webhook(cls, item: Mapping[str, Any]) -> WhatsAppError:
        """From one ``errors[]`` item of a webhook (e.g. a ``failed`` status)."""
        code = _int(item.get("code"))
        rule = classify(code)
        message = str(item.get("message") or "")
        return cls(
            code=code,
            title=_title(item, message) or rule.meaning,
            rule=rule,
            message=message,
            details=_details(item.get("error_data")),
        )

    @classmethod
    def from_transport(cls, exc: httpx.TransportError) -> WhatsAppError:
        """From a timeout or connection failure (the message names no URL or header)."""
        rule = TIMEOUT if isinstance(exc, httpx.TimeoutException) else CONNECTION_FAILED
        # Before a connection exists nothing was sent; after it, Meta may have the request.
        unsent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
        return cls(
            code=None,
            title=f"{rule.meaning} ({type(exc).__name__})",
            rule=rule,
            details=str(exc) or None,
            ambiguous=not unsent,
        )


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _title(error: Mapping[str, Any], message: str) -> str:
    title = error.get("title") or error.get("error_user_title") or _TITLE_PREFIX.sub("", message)
    return str(title)[:200]


def _details(error_data: Any) -> str | None:
    # An object for message-send errors, a plain string for template management (2).
    if isinstance(error_data, Mapping):
        return error_data.get("details")
    return str(error_data) if error_data else None


# ------------------------------------------------------------------ connections
