"""A fake WhatsApp Cloud API: a real HTTP server on 127.0.0.1 speaking the contract
of reference/whatsapp-cloud-api.md, for tests, benchmarks and the demo.

Endpoints (any ``/vNN.N/`` version):

* ``POST /{version}/{phone_number_id}/messages``: template and text sends, and
  mark-as-read (``{"status": "read", "message_id": ...}`` -> ``{"success": true}``).
* ``GET /{version}/{waba_id}/message_templates``: cursor paging (``limit``, ``after``,
  ``fields``), ``paging.next`` until the last page.
* ``POST /simulate/inbound`` ``{"phone_number_id", "from", "text", "name"}`` and
  ``POST /simulate/opt_out`` ``{"phone_number_id", "wa_id", "value": "stop"|"resume"}``
  push signed webhooks to the app; ``GET /_fake/stats`` shows what was accepted.

What a send goes through, in order: bearer token (else 190, HTTP 401); a known number
(else 100); a well-formed body (else 100); injected sync faults; the number's token
bucket (130429); the (number, recipient) pair bucket (131056); the template registry
(132001 unknown or not approved, 132015 paused, 132016 disabled, 132000 parameter
mismatch). An accepted send answers 200 with a ``wamid`` and then sends status
webhooks (sent, delivered, read; optionally duplicated and out of order) signed with the
number's app secret. (Only sends draw from the throughput bucket; Meta also counts
inbound messages.) Some failures come only by webhook, as on Meta (reference 2, 6):
free-form text outside the 24-hour window (131047), undeliverable recipients (131026),
marketing templates to opted-out users (131050), and faults injected as asynchronous.

Counting: every accepted send counts once per (recipient, campaign), the campaign being
read from ``biz_opaque_callback_data`` of the form ``campaign:<id>:recipient:<id>`` (see
`app.services.whatsapp.campaign_callback_data`); `duplicates` lists any pair sent twice.

Standalone (e.g. for ``make run``; the token may be ``*`` to accept any)::

    python -m tests.fakes.whatsapp_cloud --port 8899 \\
        --webhook-url http://127.0.0.1:5000/webhooks/whatsapp \\
        --phone 100000000000001:acme-demo-app-secret:<token>
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import random
import re
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from tests.fakes import webhooks as wh
from tests.fakes.cloud_parts import (
    FakeNumber,
    FakeTemplate,
    Fault,
    TokenBucket,
    default_templates,
    graph_error,
    webhook_error_parts,
)

WINDOW_SECONDS = 24 * 3600
TEXT_MAX = 4096
_PATH = re.compile(r"^/(v\d+\.\d+)/(\d+)/(messages|message_templates)$")
_CAMPAIGN = re.compile(r"^campaign:([^:]+)")
Reply = tuple[int, Any]  # (HTTP status, JSON-able body, or bytes for a non-JSON body)


@dataclass
class Accepted:
    """A send the fake accepted (answered 200 with ``wamid``)."""

    wamid: str
    phone_number_id: str
    to: str
    type: str
    campaign: str | None
    callback_data: str | None
    template: str | None
    category: str | None
    accepted_at: float
    request: dict[str, Any]  # the request body as received
    failed_code: int | None = None  # set when a ``failed`` webhook follows instead


class FakeCloudAPI:
    """The fake server and its state. Use as a context manager (or `start`/`stop`)."""

    def __init__(
        self,
        numbers: Iterable[FakeNumber] = (),
        *,
        webhook_url: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: tuple[float, float] = (0.0, 0.0),
        pair_rate: float | None = 1 / 6,
        pair_burst: float = 45,
        statuses: tuple[str, ...] = ("sent", "delivered", "read"),
        status_delay: float = 0.01,
        duplicate_rate: float = 0.0,
        reorder: bool = False,
        read_rate: float = 1.0,
        optout_async: bool = True,
        webhook_retries: int = 3,
        webhook_backoff: float = 0.2,
        webhook_workers: int = 2,
        page_size: int = 25,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
    ):
        self.webhook_url = webhook_url
        self.latency, self.pair_rate, self.pair_burst = latency, pair_rate, pair_burst
        self.statuses, self.status_delay = statuses, status_delay
        self.duplicate_rate, self.reorder, self.read_rate = duplicate_rate, reorder, read_rate
        self.optout_async, self.page_size, self.clock = optout_async, page_size, clock
        self.numbers: dict[str, FakeNumber] = {}
        self.templates: dict[str, list[FakeTemplate]] = {}
        self.faults: list[Fault] = []
        self.undeliverable: set[str] = set()
        self.accepted: list[Accepted] = []
        self.attempts: list[tuple[float, str, str]] = []  # (monotonic, number, outcome)
        self.outcomes: Counter[str] = Counter()
        self.status_log: list[dict[str, Any]] = []  # every status item generated
        self.deliveries: list[wh.Delivery] = []  # every webhook delivery attempt
        self._counts: Counter[tuple[str, str | None]] = Counter()
        self._windows: dict[tuple[str, str], float] = {}
        self._opted_out: set[tuple[str, str]] = set()  # (WABA id, wa_id)
        self._buckets: dict[str, TokenBucket] = {}
        self._pairs: dict[tuple[str, str], TokenBucket] = {}
        self._lock = threading.RLock()
        self._rng = random.Random(seed)
        self._ids = random.Random()  # wamid tails: apart from the seeded faults' draws
        self._seq = itertools.count(1)
        self.sender = wh.WebhookSender(
            workers=webhook_workers,
            retries=webhook_retries,
            backoff=webhook_backoff,
            on_delivery=self._delivered,
        )
        self._server = ThreadingHTTPServer((host, port), _Handler)
        self._server.daemon_threads = True
        self._server.request_queue_size = 1024
        self._server.fake = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-wa-cloud", daemon=True
        )
        for number in numbers:
            self.add_number(number)

    # --- lifecycle -----------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """What ``WHATSAPP_API_BASE`` should be set to."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeCloudAPI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self.sender.close()

    def __enter__(self) -> FakeCloudAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- configuration -------------------------------------------------------------

    def add_number(self, number: FakeNumber, templates: list[FakeTemplate] | None = None) -> None:
        """Register a business number (its WABA gets the default templates if new)."""
        with self._lock:
            self.numbers[number.phone_number_id] = number
            if number.mps is not None:
                burst = number.burst if number.burst is not None else number.mps
                self._buckets[number.phone_number_id] = TokenBucket(number.mps, burst)
            if templates is not None or number.business_account_id not in self.templates:
                self.templates[number.business_account_id] = (
                    default_templates() if templates is None else list(templates)
                )

    def inject(self, fault: Fault) -> Fault:
        """Add a fault for message sends; returns it (its ``fired`` counts firings)."""
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def open_window(self, phone_number_id: str, wa_id: str, at: float | None = None) -> None:
        """Record an inbound message from ``wa_id`` at ``at`` (now): the 24 h window."""
        with self._lock:
            self._windows[(phone_number_id, wa_id)] = self.clock() if at is None else at

    def window_open(self, phone_number_id: str, wa_id: str) -> bool:
        with self._lock:
            last = self._windows.get((phone_number_id, wa_id))
            return last is not None and self.clock() - last < WINDOW_SECONDS

    def set_opt_out(self, phone_number_id: str, wa_id: str, stopped: bool = True) -> None:
        """Mark ``wa_id`` as having stopped (or resumed) marketing from this business."""
        key = (self.numbers[phone_number_id].business_account_id, wa_id)
        with self._lock:
            (self._opted_out.add if stopped else self._opted_out.discard)(key)

    # --- what was sent -------------------------------------------------------------

    def count(self, to: str, campaign: str | int | None = None) -> int:
        """How many sends to ``to`` for ``campaign`` (None: not a campaign) were accepted."""
        with self._lock:
            return self._counts[(to, None if campaign is None else str(campaign))]

    def counts(self) -> dict[tuple[str, str | None], int]:
        with self._lock:
            return dict(self._counts)

    def duplicates(self) -> dict[tuple[str, str | None], int]:
        """(recipient, campaign) pairs accepted more than once."""
        return {k: n for k, n in self.counts().items() if n > 1}

    def max_in_window(
        self, phone_number_id: str, window: float = 1.0, accepted_only: bool = False
    ) -> int:
        """The most sends (attempts, or accepted only) in any ``window`` seconds."""
        with self._lock:
            times = [
                t
                for t, number, outcome in self.attempts
                if number == phone_number_id and (outcome == "ok" or not accepted_only)
            ]
        best, start = 0, 0
        for end, t in enumerate(times):
            while t - times[start] >= window:
                start += 1
            best = max(best, end - start + 1)
        return best

    def wait_for_webhooks(self, timeout: float = 5.0) -> bool:
        """Block until every queued webhook was delivered (or gave up)."""
        return self.sender.wait_idle(timeout)

    def stats(self) -> dict[str, Any]:
        """Accepted sends, outcomes, webhooks, counts, busiest second per number."""
        busiest = {n: self.max_in_window(n) for n in list(self.numbers)}
        with self._lock:
            counts = [{"to": to, "campaign": c, "count": n} for (to, c), n in self._counts.items()]
            return {
                "accepted": len(self.accepted),
                "outcomes": dict(self.outcomes),
                "webhooks": len(self.deliveries),
                "max_attempts_per_second": busiest,
                "counts": counts,
            }

    # --- simulating the customer ---------------------------------------------------

    def simulate_inbound(
        self, phone_number_id: str, wa_id: str, text: str, name: str = "Customer"
    ) -> tuple[str, wh.Delivery | None]:
        """An inbound text from ``wa_id``: opens the window and posts the signed webhook."""
        number = self.numbers[phone_number_id]
        self.open_window(phone_number_id, wa_id)
        wamid = self._wamid(phone_number_id, wa_id)
        value = wh.inbound_text_value(wa_id, name, wamid, text, int(self.clock()))
        return wamid, self._post_now(number, value)

    def simulate_opt_out(
        self, phone_number_id: str, wa_id: str, value: str = "stop"
    ) -> wh.Delivery | None:
        """The user stops (or resumes) marketing: updates the set, posts the webhook."""
        self.set_opt_out(phone_number_id, wa_id, stopped=value == "stop")
        number = self.numbers[phone_number_id]
        item = wh.user_preferences_value(wa_id, value, int(self.clock()))
        return self._post_now(number, item, field_name="user_preferences")

    def _post_now(
        self, number: FakeNumber, value: dict[str, Any], field_name: str = "messages"
    ) -> wh.Delivery | None:
        url = number.webhook_url or self.webhook_url
        payload = wh.envelope(
            number.business_account_id,
            number.display_phone_number,
            number.phone_number_id,
            value,
            field_name,
        )
        return self.sender.post(url, wh.serialise(payload), number.app_secret) if url else None

    # --- HTTP ----------------------------------------------------------------------

    def handle(self, method: str, raw_path: str, authorization: str, body: bytes) -> Reply:
        """Answer one request (called from the server's handler threads)."""
        url = urlsplit(raw_path)
        if method == "POST" and url.path.startswith("/simulate/"):
            return self._simulate(url.path, body)
        if method == "GET" and url.path == "/_fake/stats":
            return 200, self.stats()
        match = _PATH.match(url.path)
        if match is None:
            return graph_error(100, f"Unknown path components: {url.path}")
        low, high = self.latency
        if high > 0:
            time.sleep(low + (high - low) * self._random())
        version, object_id, edge = match.groups()
        scheme, _, token = authorization.partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else ""
        if edge == "messages" and method == "POST":
            return self._messages(object_id, token, body)
        if edge == "message_templates" and method == "GET":
            return self._list_templates(version, object_id, token, parse_qs(url.query))
        return graph_error(100, f"Unsupported {method} request.")

    def _simulate(self, path: str, body: bytes) -> Reply:
        try:
            data = json.loads(body or b"{}")
            if path == "/simulate/inbound":
                wamid, delivery = self.simulate_inbound(
                    str(data["phone_number_id"]),
                    str(data["from"]),
                    str(data.get("text") or "hi"),
                    str(data.get("name") or "Customer"),
                )
            elif path == "/simulate/opt_out":
                wamid = None
                delivery = self.simulate_opt_out(
                    str(data["phone_number_id"]), str(data["wa_id"]), data.get("value", "stop")
                )
            else:
                return 404, {"error": "unknown simulation"}
        except (ValueError, KeyError) as exc:
            return 400, {"error": f"bad simulation request: {exc}"}
        status = delivery.status_code if delivery else None
        return 200, {"wamid": wamid, "webhook_status": status}

    def _authorise(self, object_id: str, token: str, numbers: list[FakeNumber]) -> Reply | None:
        if not numbers:
            if any(n.accepts(token) for n in self.numbers.values()):
                detail = f"Object with ID '{object_id}' does not exist or lacks permissions."
                return graph_error(100, detail, subcode=33)
            return graph_error(190)
        if not any(n.accepts(token) for n in numbers):
            return graph_error(190)
        return None

    def _messages(self, number_id: str, token: str, raw: bytes) -> Reply:
        number = self.numbers.get(number_id)
        refused = self._authorise(number_id, token, [number] if number else [])
        if refused is not None or number is None:
            return refused or graph_error(190)
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError
        except ValueError:
            return graph_error(100, "The request body is not valid JSON.")
        if data.get("messaging_product") != "whatsapp":
            return graph_error(100, "The parameter messaging_product is required.")
        if data.get("status") == "read":
            if not str(data.get("message_id") or "").startswith("wamid."):
                return graph_error(100, "Invalid message_id.")
            return 200, {"success": True}
        invalid = _invalid_send(data)
        if invalid is not None:
            return graph_error(100, invalid)
        return self._send(number, data)

    def _send(self, number: FakeNumber, data: dict[str, Any]) -> Reply:
        to = str(data["to"]).lstrip("+")
        with self._lock:
            fault = next((f for f in self.faults if f.matches(to, self._rng.random())), None)
        if fault is not None and not fault.asynchronous:
            return self._refuse(number, str(fault.code), _fault_reply(fault))
        bucket = self._buckets.get(number.phone_number_id)
        if bucket is not None and not bucket.take():
            return self._refuse(number, "130429", graph_error(130429))
        if self.pair_rate is not None and not self._pair(number, to).take():
            return self._refuse(number, "131056", graph_error(131056, subcode=2494055))
        template = None
        if data["type"] == "template":
            template, problem = self._check_template(number, data["template"])
            if problem is not None:
                return self._refuse(number, str(problem[1]["error"]["code"]), problem)
        if not self.optout_async and self._stopped_marketing(number, to, template):
            return self._refuse(number, "131050", graph_error(131050))
        failure = self._async_failure(number, to, template, fault)
        return 200, self._accept(number, to, data, template, failure)

    def _refuse(self, number: FakeNumber, outcome: str, reply: Reply) -> Reply:
        with self._lock:
            self.attempts.append((time.monotonic(), number.phone_number_id, outcome))
            self.outcomes[outcome] += 1
        return reply

    def _pair(self, number: FakeNumber, to: str) -> TokenBucket:
        key = (number.phone_number_id, to)
        with self._lock:
            bucket = self._pairs.get(key)
            if bucket is None:
                bucket = self._pairs[key] = TokenBucket(self.pair_rate or 1.0, self.pair_burst)
            return bucket

    def _check_template(
        self, number: FakeNumber, spec: dict[str, Any]
    ) -> tuple[FakeTemplate | None, Reply | None]:
        name, language = spec.get("name"), (spec.get("language") or {}).get("code")
        with self._lock:
            found = next(
                (
                    t
                    for t in self.templates.get(number.business_account_id, [])
                    if t.name == name and t.language == language
                ),
                None,
            )
        if found is None:
            return None, graph_error(132001, f"template name ({name}) does not exist in {language}")
        if found.status != "APPROVED":
            code = {"PAUSED": 132015, "DISABLED": 132016}.get(found.status, 132001)
            return None, graph_error(code)
        params = [
            p
            for c in spec.get("components") or []
            if str(c.get("type", "")).lower() == "body"
            for p in c.get("parameters") or []
        ]
        if found.parameter_format == "NAMED":
            given = [p.get("parameter_name") for p in params]
            matches = sorted(map(str, given)) == sorted(found.variables)
        else:
            matches = len(params) == len(found.variables)
        if not matches:
            return None, graph_error(132000)
        return found, None

    def _stopped_marketing(
        self, number: FakeNumber, to: str, template: FakeTemplate | None
    ) -> bool:
        """A marketing template to a user who stopped marketing from this business."""
        if template is None or template.category != "MARKETING":
            return False
        with self._lock:
            return (number.business_account_id, to) in self._opted_out

    def _async_failure(
        self, number: FakeNumber, to: str, template: FakeTemplate | None, fault: Fault | None
    ) -> int | None:
        """The code of a failure reported only by webhook, after a 200, or None."""
        if fault is not None:
            return fault.code
        if to in self.undeliverable:
            return 131026
        if template is None and not self.window_open(number.phone_number_id, to):
            return 131047
        if self._stopped_marketing(number, to, template):
            return 131050
        return None

    def _accept(
        self,
        number: FakeNumber,
        to: str,
        data: dict[str, Any],
        template: FakeTemplate | None,
        failure: int | None,
    ) -> dict[str, Any]:
        callback = data.get("biz_opaque_callback_data")
        campaign = _CAMPAIGN.match(callback or "")
        message = Accepted(
            wamid=self._wamid(number.phone_number_id, to),
            phone_number_id=number.phone_number_id,
            to=to,
            type=data["type"],
            campaign=campaign.group(1) if campaign else None,
            callback_data=callback,
            template=template.name if template else None,
            category=template.category if template else None,
            accepted_at=self.clock(),
            request=data,
            failed_code=failure,
        )
        with self._lock:
            self.accepted.append(message)
            self._counts[(to, message.campaign)] += 1
            self.attempts.append((time.monotonic(), number.phone_number_id, "ok"))
            self.outcomes["ok"] += 1
        self._emit_statuses(number, message)
        reply_message: dict[str, Any] = {"id": message.wamid}
        if template is not None:
            reply_message["message_status"] = "accepted"
        return {
            "messaging_product": "whatsapp",
            "contacts": [{"input": str(data["to"]), "wa_id": to}],
            "messages": [reply_message],
        }

    def _emit_statuses(self, number: FakeNumber, message: Accepted) -> None:
        now = int(message.accepted_at)
        if message.failed_code is not None:
            title, details = webhook_error_parts(message.failed_code)
            error = wh.webhook_error(message.failed_code, title, details)
            events = [("failed", now + 1, error)]
        else:
            with self._lock:
                read = self._rng.random() < self.read_rate
            wanted = [("sent", now), ("delivered", now + 1)] + ([("read", now + 2)] if read else [])
            events = [(s, ts, None) for s, ts in wanted if s in self.statuses]
        with self._lock:
            if self.reorder:
                self._rng.shuffle(events)
            events += [e for e in list(events) if self._rng.random() < self.duplicate_rate]
        free = message.template is None  # free-form replies are free customer service
        url = number.webhook_url or self.webhook_url
        for position, (status, ts, error) in enumerate(events, start=1):
            item = wh.status_item(
                message.wamid,
                status,
                ts,
                message.to,
                callback_data=message.callback_data,
                category=message.category,
                free=free,
                error=error,
            )
            with self._lock:
                self.status_log.append(item)
            if url:
                payload = wh.envelope(
                    number.business_account_id,
                    number.display_phone_number,
                    number.phone_number_id,
                    {"statuses": [item]},
                )
                delay = self.status_delay * position
                self.sender.submit(url, wh.serialise(payload), number.app_secret, delay)

    def _list_templates(
        self, version: str, waba_id: str, token: str, query: dict[str, list[str]]
    ) -> Reply:
        numbers = [n for n in self.numbers.values() if n.business_account_id == waba_id]
        refused = self._authorise(waba_id, token, numbers)
        if refused is not None:
            return refused
        try:
            limit = max(1, min(int(query.get("limit", [self.page_size])[0]), 1000))
            after = query.get("after", [None])[0]
            start = _decode_cursor(after) if after else 0
        except ValueError:
            return graph_error(100, "Invalid limit or cursor.")
        fields = [f for f in query.get("fields", [""])[0].split(",") if f]
        with self._lock:
            templates = [t.as_graph() for t in self.templates.get(waba_id, [])]
        page = templates[start : start + limit]
        if fields:
            page = [{k: v for k, v in t.items() if k in fields or k == "id"} for t in page]
        end = start + len(page)
        paging: dict[str, Any] = {
            "cursors": {"before": _encode_cursor(start), "after": _encode_cursor(end)}
        }
        base = f"{self.base_url}/{version}/{waba_id}/message_templates?"
        keep = {"limit": limit, **({"fields": ",".join(fields)} if fields else {})}
        if end < len(templates):
            paging["next"] = base + urlencode({**keep, "after": _encode_cursor(end)})
        if start > 0:
            paging["previous"] = base + urlencode({**keep, "before": _encode_cursor(start)})
        return 200, {"data": page, "paging": paging}

    # --- helpers -------------------------------------------------------------------

    def _random(self) -> float:
        with self._lock:
            return self._rng.random()

    def _wamid(self, phone_number_id: str, to: str) -> str:
        # The counter makes it unique; the random tail only makes it look like Meta's.
        # Not `secrets`: a system call per send, and the GIL let go and re-taken.
        tail = f"{self._ids.getrandbits(48):012x}"
        raw = f"{phone_number_id}:{to}:{next(self._seq)}:{tail}".encode()
        return "wamid." + base64.b64encode(raw).decode().rstrip("=")

    def _delivered(self, delivery: wh.Delivery) -> None:
        with self._lock:
            self.deliveries.append(delivery)


def _invalid_send(data: dict[str, Any]) -> str | None:
    """Why a message body is malformed (error 100), or None."""
    kind = data.get("type") or "text"
    data["type"] = kind
    if not data.get("to"):
        return "The parameter to is required."
    if not isinstance(data.get(kind), dict):
        return f"The parameter {kind} is required."
    if kind == "text":
        body = data["text"].get("body")
        if not isinstance(body, str) or not body:
            return "The parameter text['body'] is required."
        if len(body) > TEXT_MAX:
            return f"Param text['body'] must be at most {TEXT_MAX} characters long."
    if kind == "template":
        spec = data["template"]
        if not spec.get("name") or not (spec.get("language") or {}).get("code"):
            return "The parameters template['name'] and template['language']['code'] are required."
    callback = data.get("biz_opaque_callback_data")
    if callback is not None and len(str(callback).encode()) > 512:
        return "Param biz_opaque_callback_data must be at most 512 bytes."
    return None


def _fault_reply(fault: Fault) -> Reply:
    if fault.code is None:
        status = fault.http_status or 502
        return status, f"<html><body>{status} Bad Gateway</body></html>".encode()
    status, body = graph_error(fault.code)
    return (fault.http_status or status), body


def _encode_cursor(index: int) -> str:
    return base64.urlsafe_b64encode(f"tpl:{index}".encode()).decode()


def _decode_cursor(cursor: str) -> int:
    raw = base64.urlsafe_b64decode(cursor.encode()).decode()
    if not raw.startswith("tpl:"):
        raise ValueError("bad cursor")
    return int(raw[4:])


class _Headers(dict):
    """A request's headers by lower-cased name (the last of repeated ones)."""

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients pool their connections
    disable_nagle_algorithm = True  # headers and body leave at once, no 40 ms stall
    wbufsize = 64 * 1024  # a reply is written once (flushed after each request)
    max_headers = 100
    _date: tuple[int, str] = (0, "")

    def parse_request(self) -> bool:
        """`BaseHTTPRequestHandler.parse_request` for the usual request, a ``GET`` or
        ``POST`` in HTTP/1.1, with the header block read line by line rather than by
        the email parser (the costliest step of a request); others go the standard way.
        """
        line = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = line.split()
        if len(words) != 3 or words[0] not in ("GET", "POST") or words[2] != "HTTP/1.1":
            return super().parse_request()
        self.command, self.path, self.request_version = words
        self.requestline, self.close_connection = line, True
        headers = _Headers()
        for _ in range(self.max_headers + 1):
            raw = self.rfile.readline(65537)
            if raw in (b"\r\n", b"\n", b""):
                break
            name, colon, value = str(raw, "iso-8859-1").partition(":")
            if len(raw) > 65536 or not colon or not name.strip():
                self.send_error(HTTPStatus.BAD_REQUEST, "Bad header line")
                return False
            headers[name.strip().lower()] = value.strip()
        else:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many headers")
            return False
        self.headers = headers  # type: ignore[assignment]
        self.close_connection = headers.get("connection", "").lower() == "close"
        if headers.get("expect", "").lower() == "100-continue":
            return self.handle_expect_100()
        return True

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The Date header, formatted once a second (not once a request)."""
        if timestamp is not None:
            return super().date_time_string(timestamp)
        now = int(time.time())
        cached = _Handler._date
        if cached[0] != now:
            cached = _Handler._date = (now, super().date_time_string(now))
        return cached[1]

    def handle_expect_100(self) -> bool:
        ok = super().handle_expect_100()
        self.wfile.flush()  # the interim reply leaves before the body is read
        return ok

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        fake: FakeCloudAPI = self.server.fake  # type: ignore[attr-defined]
        try:
            status, payload = fake.handle(
                method, self.path, self.headers.get("Authorization", ""), body
            )
        except Exception:  # a bug in the fake: answer like Meta's code 1, show it
            traceback.print_exc()
            status, payload = graph_error(1)
        if isinstance(payload, bytes):
            data, kind = payload, "text/html"
        else:
            data, kind = json.dumps(payload).encode(), "application/json"
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


# ------------------------------------------------------------------------ standalone


def parse_phone(spec: str) -> FakeNumber:
    """``id:app_secret:token[:waba_id[:mps]]`` (token ``*`` accepts any) -> FakeNumber."""
    parts = spec.split(":")
    if len(parts) < 2 or not parts[0].isdigit():
        raise argparse.ArgumentTypeError(f"--phone {spec!r}: id:app_secret[:token[:waba[:mps]]]")
    token = parts[2] if len(parts) > 2 and parts[2] else "*"
    waba = parts[3] if len(parts) > 3 else ""
    mps = float(parts[4]) if len(parts) > 4 else 80
    return FakeNumber(parts[0], parts[1], token, business_account_id=waba, mps=mps)


def main(argv: list[str] | None = None) -> None:
    """Run the fake until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.whatsapp_cloud")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8899)
    parser.add_argument("--webhook-url", default=None)
    parser.add_argument("--phone", type=parse_phone, action="append", default=[])
    parser.add_argument("--latency-ms", type=float, nargs=2, default=(0.0, 0.0))
    parser.add_argument("--fail", action="append", default=[], help="CODE[:RATE], e.g. 131000:0.1")
    parser.add_argument("--duplicate-rate", type=float, default=0.0)
    parser.add_argument("--reorder", action="store_true")
    parser.add_argument("--status-delay", type=float, default=0.5)
    args = parser.parse_args(argv)
    fake = FakeCloudAPI(
        args.phone,
        webhook_url=args.webhook_url,
        host=args.host,
        port=args.port,
        latency=(args.latency_ms[0] / 1000, args.latency_ms[1] / 1000),
        duplicate_rate=args.duplicate_rate,
        reorder=args.reorder,
        status_delay=args.status_delay,
    )
    for spec in args.fail:
        code, _, rate = spec.partition(":")
        fake.inject(Fault(int(code), rate=float(rate or 1.0)))
    fake.start()
    print(f"fake WhatsApp Cloud API on {fake.base_url}; webhooks to {args.webhook_url}")
    for number in fake.numbers.values():
        print(f"  number {number.phone_number_id}, WABA {number.business_account_id}")
    sys.stdout.flush()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    main()
