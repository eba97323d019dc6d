"""Campaign jobs (queue ``whatsapp``): sending and the sweeper (DESIGN "Jobs").

* `send_campaign` claims chunks of due recipients, commits the claims, sends them with
  bounded concurrency under the tenant number's shared rate limit, records the results
  and commits, until nothing is due or its time budget (half the queue's timeout) is
  spent; then it enqueues its next run (now, or when the next retry is due). It keeps
  about ``CAMPAIGN_AHEAD_S`` (a second) of chunks claimed ahead of the wire: while they
  are sent, the next is claimed (and committed) and the oldest finished one recorded,
  so the database work, or a stall of it shorter than that, never leaves the rate
  unused. An
  account- or template-level error (expired token, template paused...) pauses the
  campaign rather than failing every recipient with it. Between
  chunks, and every ``STATUS_POLL_S`` during one, it re-reads the campaign's status: a
  pause or cancel stops it, and recipients not yet sent are put back (or cancelled).
* `sweep_campaigns` (cron, every ``CAMPAIGN_SWEEP_INTERVAL_S``; `flask woffice cron`)
  releases stale claims, starts scheduled campaigns whose time has come (exactly once:
  `campaigns.launch` locks the row and refuses a campaign no longer scheduled),
  completes finished campaigns, and enqueues `send_campaign` wherever work is due. So a
  killed worker, a lost job or a flushed Redis delays sending but never loses it.

Call `schedule_sending(campaign_id, tenant_id)` after launching or resuming a campaign:
it enqueues one coalesced run once the transaction commits.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import timedelta

from flask import current_app

from app.extensions import db
from app.jobs import enqueue_after_commit, get_queue, redis_connection, release_coalesced
from app.jobs._runtime import job
from app.models.campaign import Campaign, CampaignStatus
from app.models.tenant import Tenant
from app.services import audit, campaign_recording, campaigns, sending
from app.services.exceptions import ValidationError
from app.services.rate_limit import LocalBucket, SlotBatcher, number_bucket
from app.services.whatsapp import (
    WhatsAppClient,
    WhatsAppError,
    campaign_callback_data,
    client_for_tenant,
)
from app.tenancy import tenant_scope

log = logging.getLogger(__name__)

STATUS_POLL_S = 1.0  # how often a running chunk re-reads the campaign status
MAX_INLINE_WAIT_S = 15.0  # a retry due sooner than this is waited for, not re-enqueued
SWEEP_KEY = "campaign-sweep"  # coalescing key of the sweeper's runs (`flask woffice cron`)


def send_key(campaign_id: int) -> str:
    """The coalescing key of a campaign's sending runs."""
    return f"campaign-send:{campaign_id}"


def schedule_sending(campaign_id: int, tenant_id: int) -> None:
    """Have a `send_campaign` run once this transaction commits (coalesced)."""
    enqueue_after_commit(
        "whatsapp", send_campaign, campaign_id, tenant_id=tenant_id, coalesce=send_key(campaign_id)
    )


def _enqueue_later(campaign_id: int, tenant_id: int, delay: float) -> None:
    if redis_connection() is None:
        return  # inline mode: the sweeper (or the next action) picks it up
    func = f"{send_campaign.__module__}.{send_campaign.__qualname__}"
    queue = get_queue("whatsapp")
    if delay <= 0:
        queue.enqueue(func, campaign_id, tenant_id=tenant_id)
    else:
        queue.enqueue_in(timedelta(seconds=delay), func, campaign_id, tenant_id=tenant_id)


class ChunkSender:
    """Sends claimed recipients in a thread pool; each send waits for a rate token.

    Only the HTTP calls run in the threads; every database access stays in the
    calling thread (one session, one connection).
    """

    def __init__(self, client: WhatsAppClient, bucket, campaign: Campaign, threads: int):
        self.client, self.bucket, self.campaign_id = client, bucket, campaign.id
        # Plain values: the threads must never touch ORM objects (lazy loads, expiry).
        self.template = sending.TemplateSpec.of(campaign.template)
        self.pool = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="wa-send")
        self.stop = threading.Event()

    def close(self) -> None:
        self.pool.shutdown(wait=True)

    def _one(self, recipient: sending.Claimed) -> sending.Outcome:
        outcome = sending.Outcome(recipient)
        if self.stop.is_set():
            return outcome
        self.bucket.acquire()
        if self.stop.is_set():
            return outcome
        body, components = sending.template_arguments(self.template, recipient.parameters)
        try:
            result = self.client.send_template(
                recipient.wa_id,
                self.template.name,
                self.template.language,
                body=body,
                components=components,
                callback_data=campaign_callback_data(self.campaign_id, recipient.id),
            )
            outcome.wamid = result.wamid
        except WhatsAppError as exc:
            outcome.error = exc
            if campaign_recording.halts_campaign(exc):
                self.stop.set()  # the rest of the chunk would fail the same way
        except ValueError as exc:
            outcome.invalid = str(exc)
        return outcome

    def submit(self, claimed: list[sending.Claimed]) -> list[Future]:
        """Start sending a chunk in the pool (behind any chunk still going)."""
        return [self.pool.submit(self._one, r) for r in claimed]

    def collect(self, futures: list[Future]) -> list[sending.Outcome]:
        """Wait for a submitted chunk, re-reading the campaign status every
        ``STATUS_POLL_S``: a pause or cancel stops it (the rest stays unattempted)."""
        pending = set(futures)
        while pending:
            _done, pending = wait(pending, timeout=STATUS_POLL_S)
            if pending and not self.stop.is_set() and not self._still_sending():
                self.stop.set()
        return [f.result() for f in futures]

    def send(self, claimed: list[sending.Claimed]) -> list[sending.Outcome]:
        """Send a chunk and wait for it."""
        return self.collect(self.submit(claimed))

    def _still_sending(self) -> bool:
        status = sending.campaign_status(db.session, self.campaign_id)
        db.session.commit()  # end the read's transaction: nothing to keep open while waiting
        return status == CampaignStatus.sending


def _bucket(tenant: Tenant) -> SlotBatcher:
    conn = redis_connection()
    mps = tenant.wa_messaging_limit_mps
    if conn is None:
        return SlotBatcher(LocalBucket(mps))
    return SlotBatcher(number_bucket(conn, tenant.wa_phone_number_id or str(tenant.id), mps))


@job
def send_campaign(campaign_id: int, tenant_id: int | None = None) -> dict[str, int]:
    """Send a campaign's due recipients for up to half the queue's timeout.

    Safe to run twice or concurrently: each recipient is claimed by one run only.
    """
    release_coalesced(send_key(campaign_id))
    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None or campaign.tenant_id != tenant_id:
        return {"sent": 0}
    config = current_app.config
    budget = config["JOB_TIMEOUTS"].get("whatsapp", 60) / 2
    deadline = time.monotonic() + budget
    counts: Counter[str] = Counter()
    tenant = db.session.get(Tenant, tenant_id)
    client = client_for_tenant(tenant)
    sender = ChunkSender(client, _bucket(tenant), campaign, config["CAMPAIGN_SEND_CONCURRENCY"])
    # At most a second's worth per chunk, and about CAMPAIGN_AHEAD_S of them claimed
    # ahead of the wire (at least one besides the chunk being sent): claims stay young
    # (far inside CAMPAIGN_CLAIM_TIMEOUT_S) and few are hoarded.
    mps = tenant.wa_messaging_limit_mps
    chunk = max(min(int(config["CAMPAIGN_CHUNK"]), math.ceil(mps)), 1)
    depth = 1 + max(1, math.ceil(float(config["CAMPAIGN_AHEAD_S"]) * mps / chunk))
    try:
        _send_loop(campaign, tenant_id, sender, chunk, depth, deadline, counts)
    finally:
        sender.close()
    counts["completed"] = sending.complete_finished(db.session, campaign_id)
    return dict(counts)


def _send_loop(
    campaign: Campaign,
    tenant_id: int,
    sender: ChunkSender,
    chunk: int,
    depth: int,
    deadline: float,
    counts: Counter[str],
) -> None:
    """Claim, send and record chunks, up to ``depth`` of them submitted at once (the
    next ones are claimed while the first are on the wire, the oldest recorded as it
    finishes), until nothing is due, the budget is spent or it stops."""
    in_flight: deque[list[Future]] = deque()
    while True:
        claimed: list[sending.Claimed] = []
        go_on = (
            not sender.stop.is_set()
            and time.monotonic() < deadline
            and sending.campaign_status(db.session, campaign.id) == CampaignStatus.sending
        )
        if go_on:
            claimed = sending.claim(db.session, campaign, chunk)
        db.session.commit()  # the claims are durable before any request leaves
        if claimed:
            in_flight.append(sender.submit(claimed))
            if len(in_flight) < depth:
                continue  # claim further ahead before waiting on the wire
        if in_flight:
            _record(campaign, sender, in_flight.popleft(), counts)
            continue
        # Nothing on the wire and every claim recorded: decide what comes next.
        sender.stop.clear()
        if sending.campaign_status(db.session, campaign.id) != CampaignStatus.sending:
            break
        if time.monotonic() >= deadline:
            _enqueue_later(campaign.id, tenant_id, 0)
            break
        if go_on and not _wait_for_retries(campaign, tenant_id, deadline):
            break


def _record(
    campaign: Campaign, sender: ChunkSender, futures: list[Future], counts: Counter[str]
) -> None:
    """Record a chunk's outcomes and commit; pause the campaign on an account error."""
    outcomes = sender.collect(futures)
    result = campaign_recording.record(db.session, campaign, outcomes, template=sender.template)
    counts.update(result)
    if result["halted"]:
        _pause(campaign)
    db.session.commit()


def _pause(campaign: Campaign) -> None:
    """Pause a campaign whose account, number or template refuses every send."""
    try:
        campaigns.set_status(db.session, campaign, CampaignStatus.paused)
    except ValidationError:
        return  # already paused or cancelled meanwhile
    audit.record("campaign.paused", campaign, session=db.session, reason="whatsapp_error")


def _wait_for_retries(campaign: Campaign, tenant_id: int, deadline: float) -> bool:
    """Nothing due now: sleep until the next retry if it is soon (True), else enqueue
    a later run (False). False too when nothing is pending at all."""
    due = sending.next_due(db.session, campaign)
    db.session.commit()
    if due is None:
        return False
    delay = max(0.0, (due - sending.utcnow()).total_seconds())
    if delay > MAX_INLINE_WAIT_S or time.monotonic() + delay >= deadline:
        _enqueue_later(campaign.id, tenant_id, delay + 0.5)
        return False
    time.sleep(max(delay, 0.05))
    return True


@job
def sweep_campaigns() -> dict[str, int]:
    """Release stale claims, start due scheduled campaigns, complete finished ones and
    enqueue sending wherever recipients are due (idempotent; runs unscoped)."""
    now = sending.utcnow()
    released = sending.release_stale_claims(db.session, now)
    started = 0
    for campaign in campaigns.scheduled_due(db.session, now):
        with tenant_scope(campaign.tenant_id):
            try:
                with db.session.begin_nested():
                    campaigns.launch(db.session, campaign)
                started += 1
            except ValidationError as exc:  # started by a concurrent sweep, or unusable
                log.info("campaign %s not started: %s", campaign.id, exc)
    completed = sending.complete_finished(db.session)
    due = sending.campaigns_with_due_work(db.session, now)
    for campaign_id, tenant_id in due:
        schedule_sending(campaign_id, tenant_id)
    return {"released": released, "started": started, "completed": completed, "enqueued": len(due)}
