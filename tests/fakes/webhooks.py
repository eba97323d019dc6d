"""Webhooks of the fake Cloud API (reference 4): payloads, signatures, sending, receiving.

Payloads follow the reference's shapes exactly (``object``/``entry``/``changes``/
``value`` with ``metadata``). Bodies are serialised once, the way Meta does (compact,
unicode escaped), and signed over those exact bytes:
``X-Hub-Signature-256: sha256=HMAC-SHA256(app secret, raw body)``.
`WebhookSender` delivers in background threads and retries non-200 replies with
backoff, as Meta does (for up to 7 days there; a few short tries here).
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

SIGNATURE_HEADER = "X-Hub-Signature-256"


def sign(body: bytes, app_secret: str) -> str:
    """The ``X-Hub-Signature-256`` value Meta sends for ``body``."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, header: str, app_secret: str) -> bool:
    """Whether ``header`` signs ``body`` with ``app_secret`` (constant-time compare)."""
    return hmac.compare_digest(header or "", sign(body, app_secret))


def serialise(payload: dict[str, Any]) -> bytes:
    """Meta's byte form: compact JSON with unicode escaped."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=True).encode()


def envelope(
    waba_id: str,
    display_number: str,
    phone_number_id: str,
    value: dict[str, Any],
    field_name: str = "messages",
) -> dict[str, Any]:
    """A ``whatsapp_business_account`` notification with one change."""
    metadata = {"display_phone_number": display_number, "phone_number_id": phone_number_id}
    change = {
        "field": field_name,
        "value": {"messaging_product": "whatsapp", "metadata": metadata, **value},
    }
    return {"object": "whatsapp_business_account", "entry": [{"id": waba_id, "changes": [change]}]}


def status_item(
    wamid: str,
    status: str,
    timestamp: int,
    recipient_id: str,
    *,
    callback_data: str | None = None,
    category: str | None = None,
    free: bool = False,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One ``statuses[]`` item: ``sent`` carries conversation and pricing (PMP)."""
    item: dict[str, Any] = {
        "id": wamid,
        "status": status,
        "timestamp": str(timestamp),
        "recipient_id": recipient_id,
    }
    if callback_data is not None:
        item["biz_opaque_callback_data"] = callback_data
    if status == "sent":
        origin = (category or "service").lower()
        item["conversation"] = {
            "id": hashlib.md5(
                f"{recipient_id}:{origin}".encode(), usedforsecurity=False
            ).hexdigest(),
            "expiration_timestamp": str(timestamp + 24 * 3600),
            "origin": {"type": origin},
        }
        item["pricing"] = {
            "billable": not free,
            "pricing_model": "PMP",
            "category": origin,
            "type": "free_customer_service" if free else "regular",
        }
    if error is not None:
        item["errors"] = [error]
    return item


def webhook_error(code: int, title: str, details: str) -> dict[str, Any]:
    """An ``errors[]`` item as found in ``failed`` statuses."""
    return {
        "code": code,
        "title": title,
        "message": title,
        "error_data": {"details": details},
        "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
    }


def inbound_text_value(
    wa_id: str, name: str, wamid: str, text: str, timestamp: int
) -> dict[str, Any]:
    """The ``value`` of an inbound text message."""
    return {
        "contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
        "messages": [
            {
                "from": wa_id,
                "id": wamid,
                "timestamp": str(timestamp),
                "type": "text",
                "text": {"body": text},
            }
        ],
    }


def user_preferences_value(wa_id: str, value: str, timestamp: int) -> dict[str, Any]:
    """The ``value`` of a marketing stop/resume (``user_preferences`` field)."""
    detail = "User requested to stop marketing messages" if value == "stop" else "User resumed"
    return {
        "contacts": [{"wa_id": wa_id}],
        "user_preferences": [
            {
                "wa_id": wa_id,
                "detail": detail,
                "category": "marketing_messages",
                "value": value,
                "timestamp": str(timestamp),
            }
        ],
    }


# ------------------------------------------------------------------------ sending


@dataclass
class Delivery:
    """One attempt to deliver a webhook: what was sent and what the app answered."""

    url: str
    body: bytes
    headers: dict[str, str]
    attempt: int
    status_code: int | None = None  # None: connection failed
    error: str | None = None


@dataclass(order=True)
class _Job:
    due: float
    seq: int
    url: str = field(compare=False)
    body: bytes = field(compare=False)
    secret: str = field(compare=False)
    attempt: int = field(compare=False, default=1)


class WebhookSender:
    """Delivers signed webhooks from background threads, at their due time, with retries."""

    def __init__(
        self,
        *,
        workers: int = 2,
        retries: int = 3,
        backoff: float = 0.2,
        timeout: float = 5.0,
        on_delivery: Callable[[Delivery], None] | None = None,
    ):
        self.retries, self.backoff = retries, backoff
        self.on_delivery = on_delivery
        self._heap: list[_Job] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._busy = 0
        self._stopped = False
        self._http = httpx.Client(timeout=timeout)
        self._threads = [
            threading.Thread(target=self._run, name=f"fake-wa-webhooks-{n}", daemon=True)
            for n in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, url: str, body: bytes, secret: str, delay: float = 0.0) -> None:
        """Queue ``body`` for ``url``, signed with ``secret``, after ``delay`` seconds."""
        job = _Job(time.monotonic() + delay, next(self._seq), url, body, secret)
        with self._cond:
            heapq.heappush(self._heap, job)
            self._cond.notify()

    def post(self, url: str, body: bytes, secret: str, attempt: int = 1) -> Delivery:
        """Deliver now, in this thread; returns the attempt."""
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, secret)}
        delivery = Delivery(url=url, body=body, headers=headers, attempt=attempt)
        try:
            delivery.status_code = self._http.post(url, content=body, headers=headers).status_code
        except httpx.HTTPError as exc:
            delivery.error = f"{type(exc).__name__}: {exc}"
        if self.on_delivery is not None:
            self.on_delivery(delivery)
        return delivery

    def idle(self) -> bool:
        """Nothing queued and nothing in flight."""
        with self._cond:
            return not self._heap and self._busy == 0

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Block until `idle` (True) or ``timeout`` seconds pass (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.idle():
                return True
            time.sleep(0.01)
        return self.idle()

    def close(self) -> None:
        """Stop the threads (queued webhooks are dropped)."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=2)
        self._http.close()

    def _next_job(self) -> _Job | None:
        with self._cond:
            while not self._stopped:
                now = time.monotonic()
                if self._heap and self._heap[0].due <= now:
                    self._busy += 1
                    return heapq.heappop(self._heap)
                wait = (self._heap[0].due - now) if self._heap else None
                self._cond.wait(timeout=wait)
            return None

    def _run(self) -> None:
        while (job := self._next_job()) is not None:
            try:
                delivery = self.post(job.url, job.body, job.secret, job.attempt)
                if delivery.status_code != 200 and job.attempt <= self.retries:
                    job.attempt += 1
                    job.due = time.monotonic() + self.backoff * 2 ** (job.attempt - 2)
                    with self._cond:
                        heapq.heappush(self._heap, job)
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()


# ---------------------------------------------------------------------- receiving


@dataclass
class Received:
    """A request the recorder received: the raw bytes and headers, untouched."""

    path: str
    body: bytes
    headers: dict[str, str]


class WebhookRecorder:
    """A tiny HTTP receiver on 127.0.0.1 that answers ``status`` and keeps every request."""

    def __init__(self, status: int = 200):
        self.status = status
        self.received: list[Received] = []
        self._lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with recorder._lock:
                    recorder.received.append(Received(self.path, body, dict(self.headers)))
                self.send_response(recorder.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    @property
    def url(self) -> str:
        """Where to send webhooks."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/webhooks/whatsapp"

    def payloads(self) -> list[dict[str, Any]]:
        """The received bodies, parsed."""
        with self._lock:
            return [json.loads(r.body) for r in self.received]

    def statuses(self) -> list[dict[str, Any]]:
        """Every ``statuses[]`` item received, in arrival order."""
        return [
            item
            for payload in self.payloads()
            for entry in payload.get("entry", [])
            for change in entry.get("changes", [])
            for item in change["value"].get("statuses", [])
        ]

    def wait_for(self, predicate: Callable[[WebhookRecorder], bool], timeout: float = 5.0) -> bool:
        """Poll until ``predicate(self)`` holds (True) or ``timeout`` passes (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            time.sleep(0.01)
        return predicate(self)

    def __enter__(self) -> WebhookRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
