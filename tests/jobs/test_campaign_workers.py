"""The sending pipeline in real worker processes (`flask woffice worker whatsapp`):
SIGKILL mid-campaign, a flushed Redis, two workers sharing the rate limit, cancel.

Worker processes cannot see the test's rolled-back transaction, so these tests build
their data with a session that really commits (a tenant of their own, deleted with all
its rows afterwards) and read results through it.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from rq.job import Job
from rq.serializers import JSONSerializer
from sqlalchemy import delete
from sqlalchemy.orm import Session

from app.extensions import db
from app.jobs import get_queue, redis_connection
from app.jobs.campaigns import send_campaign
from app.models.campaign import Campaign, CampaignStatus, RecipientStatus
from app.models.tenant import Tenant
from app.services import campaigns, sending, whatsapp
from app.services.rate_limit import default_burst
from tests.fakes.cloud_parts import FakeNumber
from tests.fakes.whatsapp_cloud import FakeCloudAPI
from tests.jobs.campaign_world import SECRET, TOKEN, add_contacts, by_status, launched, wire_tenant

ROOT = Path(__file__).resolve().parents[2]
FLASK = Path(sys.executable).parent / "flask"
S = RecipientStatus
SEND_JOB = f"{send_campaign.__module__}.{send_campaign.__qualname__}"


@dataclass
class World:
    """A committed tenant wired to a fake number, and worker processes to run."""

    session: Session
    tenant: Tenant
    fake: FakeCloudAPI
    env: dict[str, str]
    log_dir: Path
    workers: list[subprocess.Popen] = field(default_factory=list)

    def campaign(self, count: int, prefix: str) -> tuple[Campaign, list[str]]:
        tag, wa_ids = add_contacts(self.session, self.tenant.id, prefix, count)
        campaign = launched(self.session, self.tenant.id, [tag])
        self.session.commit()
        return campaign, wa_ids

    def enqueue(self, campaign: Campaign) -> str:
        job = get_queue("whatsapp").enqueue(SEND_JOB, campaign.id, tenant_id=self.tenant.id)
        return job.id

    def _flask(self, *args: str, **kwargs) -> subprocess.Popen:
        log = (self.log_dir / f"{args[1]}-{len(self.workers)}.log").open("w")
        return subprocess.Popen(
            [str(FLASK), "--app", "run", *args],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the work horse dies with it
            **kwargs,
        )

    def start_worker(self) -> subprocess.Popen:
        proc = self._flask("woffice", "worker", "whatsapp")
        self.workers.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
        """Signal the worker and its work horse (the whole process group)."""
        if proc.poll() is None:
            os.killpg(proc.pid, sig)
        proc.wait(timeout=20)

    def sweep(self) -> None:
        """`flask woffice sweep-campaigns`, as cron would run it."""
        proc = self._flask("woffice", "sweep-campaigns")
        assert proc.wait(timeout=60) == 0, self.logs()

    def apply_webhooks(self) -> None:
        """What the webhook intake does with the status webhooks Meta sends."""
        for item in list(self.fake.status_log):
            sending.apply_recipient_status(self.session, dict(item), self.tenant.id)
        self.session.commit()

    def status(self, campaign: Campaign) -> CampaignStatus:
        self.session.expire_all()
        return self.session.get(Campaign, campaign.id).status

    def logs(self) -> str:
        return "\n".join(p.read_text()[-3000:] for p in sorted(self.log_dir.glob("*.log")))


def wait_until(predicate: Callable[[], bool], world: World, timeout: float = 40) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        for proc in world.workers:
            assert proc.poll() is None or proc.returncode < 0, world.logs()
        time.sleep(0.05)
    pytest.fail(f"timed out; worker logs:\n{world.logs()}")


@pytest.fixture
def world(app, tmp_path) -> Iterator[World]:
    number = f"1009{secrets.randbelow(10**11):011d}"
    fake = FakeCloudAPI([FakeNumber(number, SECRET, TOKEN, mps=None)], seed=11).start()
    session = Session(bind=db.engine)
    tenant = Tenant(
        name="Sending Test Co",
        legal_name="Sending Test Co Pvt Ltd",
        slug=f"send-{number}",
        contact_email="ops@sending.example",
        contact_phone="+919800000000",
        address_line1="1 Test Road",
        city="Pune",
        state_code="27",
        postal_code="411001",
    )
    wire_tenant(tenant, number, 1000)
    session.add(tenant)
    session.commit()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("FLASK_") and k not in {"DATABASE_URL", "REDIS_URL"}
    }
    env.update(
        WOFFICE_ENV="testing",
        TEST_DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
        TEST_REDIS_URL=app.config["REDIS_URL"],
        WHATSAPP_API_BASE=fake.base_url,
        CAMPAIGN_CHUNK="40",
        CAMPAIGN_CLAIM_TIMEOUT_S="1",
        PYTHONUNBUFFERED="1",
    )
    world = World(session, tenant, fake, env, tmp_path)
    try:
        yield world
    finally:
        for proc in world.workers:
            world.kill(proc)
        fake.stop()
        whatsapp.close_http_clients()
        session.rollback()
        session.execute(delete(Tenant).where(Tenant.id == tenant.id))  # cascades
        session.commit()
        session.close()


@pytest.mark.parametrize("flush_redis", [False, True], ids=["sigkill", "sigkill+flushdb"])
def test_a_killed_worker_never_sends_twice(world, flush_redis):
    world.tenant.wa_messaging_limit_mps = 150
    world.session.commit()
    campaign, wa_ids = world.campaign(300, "9190" + ("1" if flush_redis else "0") + "00")
    world.enqueue(campaign)
    first = world.start_worker()
    wait_until(lambda: len(world.fake.accepted) >= 100, world)
    world.kill(first)  # SIGKILL mid-campaign: claims in flight, results unrecorded
    time.sleep(0.3)  # requests already on the wire finish at the fake
    killed_at = len(world.fake.accepted)
    assert killed_at < 300
    if flush_redis:
        redis_connection().flushdb()  # queued runs, coalescing keys and the bucket: gone
    stuck = by_status(world.session, campaign.id).get(S.sending, 0)
    world.apply_webhooks()  # sends that reached Meta are recognised by their callback data
    time.sleep(1.1)  # CAMPAIGN_CLAIM_TIMEOUT_S=1: the rest of the claims go stale
    world.start_worker()
    world.sweep()
    wait_until(lambda: world.status(campaign) == CampaignStatus.completed, world)

    assert world.fake.duplicates() == {}
    assert [world.fake.count(w, campaign.id) for w in wa_ids] == [1] * 300
    statuses = by_status(world.session, campaign.id)
    assert set(statuses) <= {S.sent, S.delivered, S.read} and sum(statuses.values()) == 300
    print(f"killed after {killed_at} accepted, {stuck} claims left in sending")


def test_two_workers_share_the_numbers_rate_limit(world):
    world.tenant.wa_messaging_limit_mps = 80
    world.session.commit()
    number = world.tenant.wa_phone_number_id
    world.fake.add_number(FakeNumber(number, SECRET, TOKEN, mps=80))  # Meta's own bucket too
    campaign, wa_ids = world.campaign(240, "919200")
    jobs = [world.enqueue(campaign), world.enqueue(campaign)]
    world.start_worker()
    world.start_worker()
    wait_until(lambda: world.status(campaign) == CampaignStatus.completed, world)

    busiest = world.fake.max_in_window(number)
    print(f"busiest second: {busiest} sends at an 80 mps cap")
    assert busiest <= 80 + default_burst(80)
    assert world.fake.outcomes.get("130429", 0) == 0  # Meta never had to refuse one
    assert world.fake.duplicates() == {}
    assert sum(world.fake.count(w, campaign.id) for w in wa_ids) == 240
    conn = redis_connection()
    sent = [
        Job.fetch(j, connection=conn, serializer=JSONSerializer).return_value()["sent"]
        for j in jobs
    ]
    assert all(n > 0 for n in sent) and sum(sent) == 240  # both workers sent


def test_cancel_stops_further_sends(world):
    world.tenant.wa_messaging_limit_mps = 100
    world.session.commit()
    campaign, wa_ids = world.campaign(300, "919300")
    world.enqueue(campaign)
    world.start_worker()
    wait_until(lambda: len(world.fake.accepted) >= 50, world)
    campaigns.set_status(
        world.session, world.session.get(Campaign, campaign.id), CampaignStatus.cancelled
    )
    world.session.commit()
    wait_until(lambda: S.sending not in by_status(world.session, campaign.id), world)
    time.sleep(1.0)

    sent = len(world.fake.accepted)
    statuses = by_status(world.session, campaign.id)
    assert sent < 300
    assert statuses == {S.sent: sent, S.cancelled: 300 - sent}
    assert world.fake.duplicates() == {}
