"""Cross-tenant probe over the whole URL map (issue 9, "Proof from outside").

Every demo tenant user (both admins, both agents) and a member of a custom role of
each tenant signs in and requests every rule of ``app.url_map`` that takes an id, with
every method the rule allows, once for each row id of the *other* tenant. The rules,
tables, ids and identifying values are all derived (see `rules` and `world`), so a
route or table added later is probed without editing this file; a coverage test fails
when a rule with an id is neither probed nor on the commented allow-list.

The whole probe runs once, in one rolled-back transaction (`probe`), because signing
in costs an argon2 hash and building the rows takes a while; each rule then has its
own test case reading its outcome, so a failure names the route. `tests/views/
test_cross_tenant.py` stays the finer check of FAB's CRUD endpoints (own rows 200).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from flask import Flask
from sqlalchemy import select

from app.extensions import db
from app.jobs import redis_connection
from app.models import AppUser, Tenant
from tests.conftest import LoginHelper, RequestContextClient, form_csrf_token
from tests.probe import world
from tests.probe.rules import ALLOW_LIST, RuleSpec, collected_specs, specs_of, urls_for
from tests.probe.runner import (
    WRITES,
    Outcome,
    Prober,
    flashed,
    judge,
    refused_by_permission,
    send,
)

SPECS = collected_specs()
PROBED = [s for s in SPECS if s.allowed_out() is None]
PAIR = ("acme", "bharatfoods")
ROLES = ("owner", "agent", "custom-role")  # custom-role: see world.ensure_rows
PLATFORM_IDS = 3  # ids tried per platform table (see world.platform_ids)


@dataclass
class ProbeResult:
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    live: list[RuleSpec] = field(default_factory=list)
    ids: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    probers: list[str] = field(default_factory=list)
    control: list[str] = field(default_factory=list)  # the oracle's own self-test
    seconds: float = 0.0

    def statuses(self) -> Counter:
        return sum((o.statuses for o in self.outcomes.values()), Counter())


def _user(email: str) -> AppUser:
    stmt = select(AppUser).where(AppUser.email == email)
    return db.session.scalars(stmt.execution_options(skip_tenant_scope=True)).one()


def _sign_in(app: Flask, email: str, tenant: Tenant, target: Tenant) -> Prober:
    client = app.test_client()
    response = LoginHelper(client)(email)
    assert response.status_code == 302, f"{email} could not sign in"
    token = form_csrf_token(client, "/account/")
    return Prober(email, client, token, tenant.id, target.id, markers=[])


def _probe_as(app: Flask, prober: Prober, cat, ids, platform, result: ProbeResult) -> None:
    """Every probed rule, method and id of the other tenant, as one user."""
    before = world.digest(db.session, cat, prober.target_id)
    seen: set[tuple[str, str]] = set()
    for spec in PROBED:
        outcome = result.outcomes.setdefault(spec.key, Outcome())
        started = time.monotonic()
        urls = urls_for(app, spec, ids, platform)
        for method in spec.methods:
            for url in urls:
                if (method, url) in seen:
                    continue
                seen.add((method, url))
                response = send(prober, method, url)
                changed: list[str] = []
                if method in WRITES:
                    after = world.digest(db.session, cat, prober.target_id)
                    changed = sorted(t for t, h in after.items() if before.get(t) != h)
                    before = after
                flash_text = flashed(prober.client) if 300 <= response.status_code < 400 else ""
                outcome.requests += 1
                outcome.statuses[response.status_code] += 1
                outcome.failures += judge(prober, method, url, response, changed, flash_text)
                if refused_by_permission(response, flash_text):
                    # The user may not use this route at all: the id was never read.
                    outcome.skipped += len(urls) - urls.index(url) - 1
                    break
        outcome.seconds += time.monotonic() - started


def _self_test(app: Flask, prober: Prober, cat, own_ids) -> list[str]:
    """The oracle must flag a real exposure: the prober's OWN rows, judged with its
    own tenant's markers, are "leaks"; a write to its own row changes the digest."""
    own = world.markers(db.session, cat, prober.tenant_id, prober.target_id)
    mirror = Prober(prober.email, prober.client, prober.token, 0, prober.tenant_id, own)
    found = []
    contact = own_ids["contact"][0]
    for url in (f"/contacts/show/{contact}", f"/api/v1/contact/{contact}"):
        found += judge(mirror, "GET", url, send(mirror, "GET", url), [])
    before = world.digest(db.session, cat, prober.tenant_id)
    tag = own_ids["tag"][-1]
    response = send(mirror, "PUT", f"/api/v1/tag/{tag}")
    after = world.digest(db.session, cat, prober.tenant_id)
    changed = sorted(t for t, h in after.items() if before.get(t) != h)
    found += judge(mirror, "PUT", f"/api/v1/tag/{tag}", response, changed)
    return found


def run_probe(app: Flask) -> ProbeResult:
    result = ProbeResult(live=specs_of(app))
    tenants = {t.slug: t for t in db.session.scalars(select(Tenant).where(Tenant.slug.in_(PAIR)))}
    for slug in PAIR:
        world.ensure_rows(db.session, tenants[slug], _user(f"owner@{slug}.example"))
    db.session.commit()
    # Sign in first, so the login rows (login_event, tracking columns) exist and are
    # among the ids and in the digest baseline.
    probers = []
    for slug, other in (PAIR, PAIR[::-1]):
        for role in ROLES:
            email = f"{role}@{slug}.example"
            probers.append(_sign_in(app, email, tenants[slug], tenants[other]))
    cat = world.Catalogue.reflect(db.session)
    ids = {slug: world.owned_ids(db.session, cat, tenants[slug].id) for slug in PAIR}
    result.ids = ids
    platform = world.platform_ids(db.session, cat, PLATFORM_IDS)
    for prober in probers:
        prober.markers = world.markers(db.session, cat, prober.target_id, prober.tenant_id)
        other = next(s for s in PAIR if tenants[s].id == prober.target_id)
        assert f"owner@{other}.example" in prober.markers, prober.markers
        assert len(prober.markers) > 30, prober.markers
    result.probers = [p.email for p in probers]
    started = time.monotonic()
    for prober in probers:
        target = next(s for s in PAIR if tenants[s].id == prober.target_id)
        _probe_as(app, prober, cat, ids[target], platform, result)
    result.seconds = time.monotonic() - started
    result.control = _self_test(app, probers[0], cat, ids[PAIR[0]])
    return result


@pytest.fixture(scope="module")
def probe(app: Flask) -> Iterator[ProbeResult]:
    """Run the probe once inside its own outer transaction, rolled back at once.

    It mirrors conftest's per-test ``_db_transaction`` (whose function scope would
    otherwise rebind the session under a module-scoped fixture) and finishes before
    the first test body runs, so the tests only read the outcome.
    """
    with app.app_context():
        connection = db.engine.connect()
        connection.name = connection.dialect.name
        outer = connection.begin()
        factory = db.session.session_factory
        db.session.remove()
        factory.configure(bind=connection, join_transaction_mode="create_savepoint")
        app.test_client_class = RequestContextClient
        try:
            redis_connection().flushdb()
            result = run_probe(app)
        finally:
            db.session.remove()
            redis_connection().flushdb()
            outer.rollback()
            connection.close()
            factory.configure(bind=None, join_transaction_mode="conservative_savepoint")
            app.test_client_class = None
    yield result


# ----------------------------------------------------------------------------- tests


@pytest.mark.parametrize("key", [s.key for s in PROBED])
def test_rule_refuses_the_other_tenants_ids(probe, key):
    outcome = probe.outcomes[key]
    assert outcome.requests >= len(probe.probers), f"{key}: not probed (no row of its table?)"
    assert not outcome.failures, f"{len(outcome.failures)} failures:\n" + "\n".join(
        outcome.failures[:30]
    )


def test_every_rule_with_an_id_is_probed_or_allow_listed(probe):
    live = {s.key: s for s in probe.live}
    assert set(live) == {s.key for s in SPECS}, "collection saw another URL map"
    probed = {s.key for s in PROBED}
    for spec in live.values():
        if spec.has_int() or spec.id_args():
            assert spec.key in probed or spec.allowed_out(), f"{spec.key} is not probed"
        else:
            assert spec.allowed_out(), f"{spec.key} takes no id: allow-list it with why"
    unused = {
        reason
        for reason in ALLOW_LIST
        if not any(s.allowed_out() == ALLOW_LIST[reason] for s in live.values())
    }
    assert not unused, f"allow-list entries matching no rule: {unused}"
    # The plain BaseViews the brief names are among the probed rules.
    for rule in (
        "POST /campaigns/<int:pk>/launch",
        "GET|POST /team-roles/<int:role_id>/edit",
        "POST /api-keys/<int:key_id>/revoke",
        "GET /privacy/downloads/<int:artifact_id>",
        "GET /campaigns/<int:pk>/recipients.csv",
    ):
        assert rule in probed, rule


def test_the_other_tenant_has_rows_in_every_main_table(probe):
    for slug, ids in probe.ids.items():
        missing = [t for t in world.MAIN_TABLES if not ids.get(t)]
        assert not missing, f"{slug} has no rows in {missing}"


def test_the_oracle_flags_a_real_exposure(probe):
    """Without this the probe could pass by never recognising a leak."""
    text = "\n".join(probe.control)
    assert "/contacts/show/" in text and "/api/v1/contact/" in text, text
    assert "PUT /api/v1/tag/" in text and "changed the other tenant's [" in text, text
    assert "'tag'" in text.split("PUT /api/v1/tag/")[1], text


# Platform registers every signed-in user reads (P11, P24): no tenant owns their rows.
READABLE_BY_EVERYONE = {"GET /sub-processors/show/<pk>"}


def test_answer_histogram_has_no_leak_and_no_server_error(probe):
    statuses = probe.statuses()
    failures = [f for o in probe.outcomes.values() for f in o.failures]
    total = sum(statuses.values())
    skipped = sum(o.skipped for o in probe.outcomes.values())
    print(
        f"\nprobe: {total} requests ({skipped} more ids skipped after a permission refusal)"
        f" by {len(probe.probers)} users over {len(PROBED)} rules"
    )
    print(f"answers in {probe.seconds:.0f} s:", dict(sorted(statuses.items())))
    slowest = sorted(probe.outcomes.items(), key=lambda kv: -kv[1].seconds)[:8]
    ok = {
        k: dict(o.statuses) for k, o in probe.outcomes.items() if any(s < 300 for s in o.statuses)
    }
    print("rules answering 2xx (no marker in the body):", ok)
    print("slowest:", [(k, o.requests, round(o.seconds, 1)) for k, o in slowest])
    assert len(probe.probers) == len(PAIR) * len(ROLES)
    assert not [s for s in statuses if s >= 500], statuses
    assert not failures, f"{len(failures)} leaks, first: {failures[:10]}"
    # Refusals only: a 2xx would be an answer about the other tenant's row. The one
    # exception is the sub-processor register (P11): its rows belong to no tenant and
    # every signed-in user may read them, so its show page answers 200.
    answered = {k for k, o in probe.outcomes.items() if any(s < 300 for s in o.statuses)}
    assert answered <= READABLE_BY_EVERYONE, answered
    refusals = {302, 400, 401, 403, 404, 405}
    assert {s for s in statuses if s >= 300} <= refusals, statuses
