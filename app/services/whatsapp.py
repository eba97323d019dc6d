"""WhatsApp Cloud API client over httpx (contract: reference/whatsapp-cloud-api.md §1, §2, §5).

* **Connections** are pooled: one `httpx.Client` per process and base URL
  (`http_client`), shared by every `WhatsAppClient` and thread; a forked RQ work horse
  gets its own, never its parent's sockets. Every call has explicit connect/read/write/
  pool timeouts. Its transport is `app.services.whatsapp_http.Wire`, and message sends
  take the wire's own path with a request head built once per client (`_post`): the
  httpx layers cost more CPU per request than one worker can spare at 1,000 sends/s.
* **Errors** are classified by the JSON ``error.code``, never by the HTTP status (copies
  of Meta's table disagree on it), through ONE table, `ERROR_RULES`, read by `classify`
  (both in `app.services.whatsapp_errors`, re-exported here).
  Each failure raises `WhatsAppError` carrying a `RetryClass` and a ``retry_after`` hint.
  The same classification serves the ``errors[]`` of ``failed`` status webhooks
  (`WhatsAppError.from_webhook`).
* **The access token** goes only into the ``Authorization`` header of requests to the
  configured base URL. It is never put in a URL, a log line, a repr or an exception;
  template paging follows cursors on our own URL rather than Meta's ``paging.next``
  (which may carry an ``access_token`` and could point elsewhere).
* **Tracing**: campaign sends carry ``biz_opaque_callback_data`` in the form
  ``campaign:<campaign id>:recipient:<recipient id>`` (`campaign_callback_data`), which
  Meta echoes in status webhooks and the local fake counts by.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from flask import current_app, has_app_context

from app.models.tenant import Tenant

# Re-exported: callers import the error types from here.
from app.services.whatsapp_errors import BAD_REPLY, HTTP_PERMANENT
from app.services.whatsapp_errors import ERROR_RULES as ERROR_RULES
from app.services.whatsapp_errors import RetryClass as RetryClass
from app.services.whatsapp_errors import WhatsAppError as WhatsAppError
from app.services.whatsapp_errors import WhatsAppNotConfiguredError as WhatsAppNotConfiguredError
from app.services.whatsapp_errors import classify as classify
from app.services.whatsapp_http import DEFAULT_TIMEOUT as DEFAULT_TIMEOUT
from app.services.whatsapp_http import POOL_LIMITS as POOL_LIMITS
from app.services.whatsapp_http import USER_AGENT, Wire, origin_of, request_head
from app.services.whatsapp_http import close_http_clients as close_http_clients
from app.services.whatsapp_http import http_client as http_client

log = logging.getLogger(__name__)

DEFAULT_API_BASE = "https://graph.facebook.com"
# v25.0 (2026-02-18, available until 2028-07-29): what pywa targets (reference 7).
DEFAULT_API_VERSION = "v25.0"
TEXT_MAX = 4096
CALLBACK_DATA_MAX_BYTES = 512
TEMPLATE_FIELDS = "id,name,status,category,language,components,parameter_format"
MAX_TEMPLATE_PAGES = 1000
_VERSION = re.compile(r"^v?(\d+)(?:\.(\d+))?$")
_CALLBACK = re.compile(r"^campaign:(\d+):recipient:(\d+)$")


# ----------------------------------------------------------------------- client


@dataclass(frozen=True)
class SendResult:
    """An accepted send (not yet delivered: status webhooks tell the rest)."""

    wamid: str
    wa_id: str | None = None
    input: str | None = None
    message_status: str | None = None


def normalize_version(version: str) -> str:
    """``"25"``, ``"25.0"`` or ``"v25.0"`` -> ``"v25.0"``."""
    match = _VERSION.match(version.strip())
    if not match:
        raise ValueError(f"not a Graph API version: {version!r}")
    return f"v{match.group(1)}.{match.group(2) or 0}"


def normalize_to(to: str) -> str:
    """A recipient as Meta's examples send it: country code and digits, no ``+``."""
    to = str(to)
    if to.isdigit() and 7 <= len(to) <= 15:
        return to  # already so (a campaign's stored wa_id)
    digits = re.sub(r"[\s\-().]", "", to).removeprefix("+")
    if not digits.isdigit() or not 7 <= len(digits) <= 15:
        raise ValueError("recipient must be a phone number with its country code")
    return digits


def campaign_callback_data(campaign_id: int, recipient_id: int) -> str:
    """``biz_opaque_callback_data`` tracing a campaign recipient through webhooks."""
    return f"campaign:{int(campaign_id)}:recipient:{int(recipient_id)}"


def parse_campaign_callback_data(value: str | None) -> tuple[int, int] | None:
    """(campaign id, recipient id) from `campaign_callback_data`'s form, else None."""
    match = _CALLBACK.match(value or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def body_component(params: Sequence[str] | Mapping[str, str]) -> dict[str, Any]:
    """A template ``body`` component: positional (a list) or named (a mapping)."""
    if isinstance(params, Mapping):
        items = [{"type": "text", "parameter_name": k, "text": str(v)} for k, v in params.items()]
    else:
        items = [{"type": "text", "text": str(v)} for v in params]
    return {"type": "body", "parameters": items}


class WhatsAppClient:
    """One business number's Cloud API calls, over the process's pooled connection."""

    def __init__(
        self,
        access_token: str,
        phone_number_id: str,
        *,
        business_account_id: str | None = None,
        base_url: str = DEFAULT_API_BASE,
        version: str = DEFAULT_API_VERSION,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        http: httpx.Client | None = None,
    ):
        if not access_token or not phone_number_id:
            raise WhatsAppNotConfiguredError("an access token and a phone number id are needed")
        self._token = access_token
        self.phone_number_id = str(phone_number_id)
        self.business_account_id = business_account_id
        self.version = normalize_version(version)
        self.timeout = timeout
        self._http = http or http_client(base_url)
        # The send path of the process's pooled client: its wire, with the request line
        # and headers built once (the generic httpx path builds them per request).
        self._wire: Wire | None = getattr(self._http, "wire", None)
        base = self._http.base_url
        self._origin = origin_of(base)
        self._base_path = base.raw_path.decode("ascii")  # ends with "/"
        self._send_headers = (
            ("Host", base.netloc.decode("ascii")),
            ("Accept", "*/*"),
            ("User-Agent", self._http.headers.get("User-Agent", USER_AGENT)),
            ("Authorization", f"Bearer {access_token}"),
            ("Content-Type", "application/json"),
        )
        self._heads: dict[str, bytes] = {}  # request heads by path, built once

    def __repr__(self) -> str:
        return f"<WhatsAppClient number={self.phone_number_id} {self.version} token=***>"

    # --- sending -------------------------------------------------------------------

    def send_template(
        self,
        to: str,
        name: str,
        language: str,
        *,
        body: Sequence[str] | Mapping[str, str] | None = None,
        components: Sequence[Mapping[str, Any]] = (),
        callback_data: str | None = None,
    ) -> SendResult:
        """Send an approved template; ``body`` fills its variables (list or names).

        :raises WhatsAppError: on any failure, classified.
        :raises ValueError: for a bad recipient, a string body, or callback data over 512 B.
        """
        if isinstance(body, str):
            raise ValueError("body takes a list of values or a mapping of names, not a string")
        template: dict[str, Any] = {"name": name, "language": {"code": language}}
        parts = ([body_component(body)] if body else []) + [dict(c) for c in components]
        if parts:
            template["components"] = parts
        return self._send(to, "template", template, callback_data)

    def send_text(
        self,
        to: str,
        text: str,
        *,
        preview_url: bool = False,
        reply_to: str | None = None,
        callback_data: str | None = None,
    ) -> SendResult:
        """Send a free-form text (only inside the 24-hour window; else 131047 follows).

        :raises WhatsAppError: on any failure, classified.
        :raises ValueError: for an empty or over-long text or a bad recipient.
        """
        if not text or len(text) > TEXT_MAX:
            raise ValueError(f"text must be 1 to {TEXT_MAX} characters")
        extra = {"context": {"message_id": reply_to}} if reply_to else {}
        content = {"preview_url": bool(preview_url), "body": text}
        return self._send(to, "text", content, callback_data, extra)

    def mark_as_read(self, message_id: str) -> bool:
        """Mark an inbound message read (blue ticks); True when Meta says success.

        :raises WhatsAppError: on any failure, classified.
        """
        payload = {"messaging_product": "whatsapp", "status": "read", "message_id": message_id}
        reply = self._request("POST", f"{self.phone_number_id}/messages", json=payload)
        return bool(reply.get("success"))

    def _send(
        self,
        to: str,
        kind: str,
        content: dict[str, Any],
        callback_data: str | None,
        extra: Mapping[str, Any] | None = None,
    ) -> SendResult:
        payload: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": normalize_to(to),
            "type": kind,
            kind: content,
            **(extra or {}),
        }
        if callback_data is not None:
            if len(callback_data.encode()) > CALLBACK_DATA_MAX_BYTES:
                raise ValueError("biz_opaque_callback_data is limited to 512 bytes")
            payload["biz_opaque_callback_data"] = callback_data
        reply = self._request("POST", f"{self.phone_number_id}/messages", json=payload)
        try:
            message = reply["messages"][0]
            contact = (reply.get("contacts") or [{}])[0]
            return SendResult(
                wamid=str(message["id"]),
                wa_id=contact.get("wa_id"),
                input=contact.get("input"),
                message_status=message.get("message_status"),
            )
        except (KeyError, IndexError, TypeError, AttributeError):
            # A 200 without a message id: Meta may well have accepted it. Not retried.
            raise WhatsAppError(
                code=None, title=BAD_REPLY.meaning, rule=BAD_REPLY, ambiguous=True
            ) from None

    # --- templates -----------------------------------------------------------------

    def iter_templates(
        self,
        business_account_id: str | None = None,
        *,
        fields: str = TEMPLATE_FIELDS,
        limit: int = 100,
    ) -> Iterator[dict[str, Any]]:
        """Every message template of the WABA, following cursors across all pages.

        :raises WhatsAppError: on any failure, classified.
        :raises WhatsAppNotConfiguredError: without a business account id.
        """
        waba = business_account_id or self.business_account_id
        if not waba:
            raise WhatsAppNotConfiguredError("no WhatsApp Business Account id")
        params: dict[str, Any] = {"fields": fields, "limit": limit}
        seen: set[str] = set()
        for _page in range(MAX_TEMPLATE_PAGES):
            reply = self._request("GET", f"{waba}/message_templates", params=params)
            yield from reply.get("data") or []
            after = _next_cursor(reply.get("paging") or {})
            if after is None or after in seen:
                return
            seen.add(after)
            params = {**params, "after": after}
        raise WhatsAppError(
            code=None, title="Too many template pages", rule=HTTP_PERMANENT, ambiguous=False
        )

    def list_templates(
        self, business_account_id: str | None = None, **kwargs: Any
    ) -> list[dict[str, Any]]:
        """`iter_templates` as a list."""
        return list(self.iter_templates(business_account_id, **kwargs))

    # --- transport -----------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        url = f"/{self.version}/{path}"
        try:
            if self._wire is not None and method == "POST" and kwargs.keys() == {"json"}:
                status, retry_after, content = self._post(url, kwargs["json"])
            else:
                headers = {"Authorization": f"Bearer {self._token}"}
                response = self._http.request(
                    method, url, headers=headers, timeout=self.timeout, **kwargs
                )
                status, content = response.status_code, response.content
                retry_after = response.headers.get("Retry-After")
        except httpx.TransportError as exc:
            error = WhatsAppError.from_transport(exc)
            log.warning("whatsapp %s %s: %s", method, url, error)
            # `from None`: the httpx exception holds the request, headers and all.
            raise error from None
        try:
            body = json.loads(content)
        except ValueError:
            body = None
        success = 200 <= status < 300
        if success and isinstance(body, dict) and "error" not in body:
            return body
        if success:
            raise WhatsAppError(code=None, title=BAD_REPLY.meaning, rule=BAD_REPLY, ambiguous=True)
        error = WhatsAppError.from_reply(
            status,
            body.get("error") if isinstance(body, dict) else None,
            retry_after=_retry_after(retry_after),
        )
        log.info("whatsapp %s %s: %s", method, url, error)
        raise error

    def _post(self, url: str, payload: Any) -> tuple[int, str | None, bytes]:
        """POST JSON on the wire: (status, Retry-After, body). As httpx's ``json=``."""
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        head = self._heads.get(url)
        if head is None:
            target = self._base_path + url.lstrip("/")
            try:
                head = request_head("POST", target, self._send_headers)
            except ValueError:  # a line break in the token: nothing was sent
                rule = ERROR_RULES[190]
                raise WhatsAppError(code=190, title=rule.meaning, rule=rule) from None
            self._heads[url] = head
        assert self._wire is not None
        reply = self._wire.post(self._origin, head, body.encode(), self.timeout)
        return reply.status, reply.retry_after, reply.content


def _next_cursor(paging: Mapping[str, Any]) -> str | None:
    """The ``after`` cursor, when Meta says there is a next page (``paging.next``)."""
    if not paging.get("next"):
        return None
    after = (paging.get("cursors") or {}).get("after")
    if after:
        return str(after)
    query = httpx.URL(str(paging["next"])).params
    return query.get("after")


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: ignore, the rule's hint applies


def api_settings(config: Mapping[str, Any] | None = None) -> tuple[str, str, httpx.Timeout]:
    """(base URL, version, timeout) from app config, defaults where unset."""
    if config is None:
        config = current_app.config if has_app_context() else {}
    timeout = httpx.Timeout(
        connect=float(config.get("WHATSAPP_CONNECT_TIMEOUT") or DEFAULT_TIMEOUT.connect),
        read=float(config.get("WHATSAPP_READ_TIMEOUT") or DEFAULT_TIMEOUT.read),
        write=DEFAULT_TIMEOUT.write,
        pool=DEFAULT_TIMEOUT.pool,
    )
    base = config.get("WHATSAPP_API_BASE") or DEFAULT_API_BASE
    return base, config.get("WHATSAPP_API_VERSION") or DEFAULT_API_VERSION, timeout


def client_for_tenant(tenant: Tenant, config: Mapping[str, Any] | None = None) -> WhatsAppClient:
    """A client for the tenant's business number, with its decrypted access token.

    :raises WhatsAppNotConfiguredError: no phone number id or no access token.
    :raises SecretDecryptionError: the stored token opens with no configured key.
    """
    token = tenant.wa_access_token
    if not tenant.wa_phone_number_id or not token:
        raise WhatsAppNotConfiguredError(
            f"{tenant.name}: set the WhatsApp phone number id and access token first"
        )
    base, version, timeout = api_settings(config)
    return WhatsAppClient(
        token,
        tenant.wa_phone_number_id,
        business_account_id=tenant.wa_business_account_id,
        base_url=base,
        version=version,
        timeout=timeout,
    )
