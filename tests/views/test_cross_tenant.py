"""Cross-tenant requests: tenant A's admin asks for tenant B's (and platform) rows.

The URLs are built by walking every registered view and API over a tenant-bound model,
so a new view is covered without editing this file (DESIGN.md, "Tenancy"). Each case
logs in as owner@acme.example and requests every row-level endpoint the view exposes:

* with B's ids (users of bharatfoods, the tenant itself) and platform users' ids: 404
  when A may use that endpoint, 403 or 404 when not; never 200, never B's data, and
  nothing of B changes;
* with A's own ids: 200 where A may use the endpoint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from flask_appbuilder.api import ModelRestApi
from flask_appbuilder.baseviews import BaseCRUDView
from flask_appbuilder.charts.views import BaseChartView
from flask_appbuilder.security.sqla.models import User, assoc_user_role
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from app.extensions import appbuilder, db
from app.models import AppUser, Tenant
from app.tenancy import is_tenant_owned

OWNER = "owner@acme.example"
KINDS = ("show", "edit", "edit_post", "delete", "action", "action_post")


@dataclass(frozen=True)
class Case:
    view: str
    method: str
    url: str
    permission: str
    class_permission: str
    data: tuple[tuple[str, str], ...] = ()
    row: tuple[str, str] = ("", "")  # (model, pk): two views may delete the same row

    def __str__(self) -> str:
        return f"{self.view}: {self.method.upper()} {self.url} {dict(self.data) or ''}".strip()


# ------------------------------------------------------------------------------ walk


def tenant_bound_views() -> list:
    return [
        view
        for view in appbuilder.baseviews
        if is_tenant_owned(getattr(getattr(view, "datamodel", None), "obj", None))
    ]


def row_ids(model: type, whose: str, a_id: int, b_id: int) -> list:
    """Primary keys of ``model`` rows of tenant A ("own"), tenant B or the platform."""
    if issubclass(model, Tenant):
        return {"own": [a_id], "tenant_b": [b_id], "platform": []}[whose]
    column = model.tenant_id
    if whose == "platform":
        if not issubclass(model, User):
            return []  # only users exist outside every tenant
        where = column.is_(None)
    else:
        where = column == (a_id if whose == "own" else b_id)
    pk = model.__mapper__.primary_key[0]
    stmt = select(pk).where(where).order_by(pk).execution_options(skip_tenant_scope=True)
    return list(db.session.scalars(stmt))


def cases_for(view, kind: str, pk) -> list[Case]:
    """The requests of ``kind`` for row ``pk`` that ``view`` exposes (base_permissions)."""
    exposed = set(view.base_permissions or [])
    name, perm_view = type(view).__name__, view.class_permission_name
    base = view.route_base
    found: list[Case] = []

    def add(method: str, url: str, permission: str, data=()) -> None:
        if permission in exposed:
            row = (view.datamodel.obj.__name__, str(pk))
            found.append(Case(name, method, url, permission, perm_view, tuple(data), row))

    if isinstance(view, ModelRestApi):
        api = {
            "show": ("get", "can_get"),
            "edit_post": ("put", "can_put"),
            "delete": ("delete", "can_delete"),
        }
        if kind in api:
            method, permission = api[kind]
            add(method, f"{base}/{pk}", permission)
        return found
    if not isinstance(view, BaseCRUDView):
        return found  # charts and the like have no row-level endpoints
    if kind == "show":
        add("get", f"{base}/show/{pk}", "can_show")
    elif kind == "edit":
        add("get", f"{base}/edit/{pk}", "can_edit")
    elif kind == "edit_post":
        add("post", f"{base}/edit/{pk}", "can_edit", [("first_name", "Hijacked")])
    elif kind == "delete":
        add("post", f"{base}/delete/{pk}", "can_delete")
    elif kind in ("action", "action_post"):
        for action_name, item in sorted(view.actions.items()):
            permission = view.get_action_permission_name(action_name)
            if kind == "action" and item.single:
                add("post", f"{base}/action/{action_name}/{pk}", permission)
            if kind == "action_post" and item.multiple:
                add(
                    "post",
                    f"{base}/action_post",
                    permission,
                    [("action", action_name), ("rowid", str(pk))],
                )
    return found


def all_cases(kind: str, whose: str, a_id: int, b_id: int) -> list[Case]:
    cases = []
    for view in tenant_bound_views():
        for pk in row_ids(view.datamodel.obj, whose, a_id, b_id):
            cases.extend(cases_for(view, kind, pk))
    return cases


# ---------------------------------------------------------------------------- checks


def granted(user: AppUser) -> set[tuple[str, str]]:
    return {
        (pv.permission.name, pv.view_menu.name) for role in user.roles for pv in role.permissions
    }


def snapshot(a_id: int) -> dict[str, list]:
    """Every row, outside tenant A, of every model a view exposes (plus user-role links)."""
    state: dict[str, list] = {}
    for model in {view.datamodel.obj for view in tenant_bound_views()}:
        table = model.__table__
        column = table.c.id if issubclass(model, Tenant) else table.c.tenant_id
        stmt = select(table).where((column != a_id) | column.is_(None))
        state[table.name] = sorted(map(repr, db.session.execute(stmt)))
    foreign_users = select(AppUser.id).where(
        (AppUser.tenant_id != a_id) | AppUser.tenant_id.is_(None)
    )
    links = select(assoc_user_role).where(assoc_user_role.c.user_id.in_(foreign_users))
    state["ab_user_role"] = sorted(map(repr, db.session.execute(links)))
    return state


def foreign_markers(a_id: int) -> list[str]:
    """Text that must never appear on a page rendered for tenant A."""
    users = db.session.scalars(
        select(AppUser.email)
        .where((AppUser.tenant_id != a_id) | AppUser.tenant_id.is_(None))
        .execution_options(skip_tenant_scope=True)
    ).all()
    tenants = db.session.scalars(
        select(Tenant).where(Tenant.id != a_id).execution_options(skip_tenant_scope=True)
    ).all()
    return [*users, *(t.name for t in tenants), *(t.contact_email for t in tenants)]


def send(client, case: Case, token: str, follow: bool = False):
    data = MultiDict([*case.data, ("csrf_token", token)]) if case.method != "get" else None
    if case.method in ("put", "delete") and case.url.startswith("/api/"):
        # Cookie-authenticated API writes must carry the CSRF token as a header.
        headers = {"X-CSRFToken": token}
        return client.open(case.url, method=case.method.upper(), json={}, headers=headers)
    return client.open(case.url, method=case.method.upper(), data=data, follow_redirects=follow)


@pytest.fixture
def as_owner(client, login, user_by_email):
    assert login(OWNER).status_code == 302
    return user_by_email(OWNER)


@pytest.fixture
def token(as_owner, csrf_token) -> str:
    """The owner's CSRF token (one per session, good for every form)."""
    return csrf_token("/account/")


# ----------------------------------------------------------------------------- tests


@pytest.mark.parametrize("whose", ["tenant_b", "platform"])
@pytest.mark.parametrize("kind", KINDS)
def test_other_tenants_rows_answer_404(client, as_owner, token, tenant_a, tenant_b, kind, whose):
    cases = all_cases(kind, whose, tenant_a.id, tenant_b.id)
    assert cases, f"no {kind} endpoint over {whose} rows: the walk found nothing"
    allowed = granted(as_owner)
    markers = foreign_markers(tenant_a.id)
    before = snapshot(tenant_a.id)

    failures = []
    for case in cases:
        response = send(client, case, token)
        permitted = (case.permission, case.class_permission) in allowed
        expected = {404} if permitted else {403, 404}
        if response.status_code not in expected:
            failures.append(f"{case}: {response.status_code}, expected {sorted(expected)}")
        body = response.get_data(as_text=True)
        leaked = [m for m in markers if m in body]
        if leaked:
            failures.append(f"{case}: the page shows {leaked}")
    assert not failures, "\n".join(failures)
    assert snapshot(tenant_a.id) == before, "a cross-tenant request changed another tenant"


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "edit_post"])
def test_own_rows_answer_200_where_allowed(client, as_owner, token, tenant_a, tenant_b, kind):
    cases = all_cases(kind, "own", tenant_a.id, tenant_b.id)
    assert cases, f"no {kind} endpoint over tenant A's rows"
    allowed = granted(as_owner)

    failures, permitted_cases, deleted = [], 0, set()
    for case in cases:
        permitted = (case.permission, case.class_permission) in allowed
        response = send(client, case, token, follow=permitted)
        if permitted:
            permitted_cases += 1
            # A row another view (screen or API) already deleted is gone: 404.
            expected = {404} if kind == "delete" and case.row in deleted else {200}
            if kind == "delete" and response.status_code == 200:
                deleted.add(case.row)
        else:
            # Refused: FAB's has_access answers 403; its action endpoints redirect with
            # "Access is Denied".
            expected = {302, 403} if "action" in case.url else {403}
        if response.status_code not in expected:
            failures.append(f"{case}: {response.status_code}, expected {sorted(expected)}")
    assert not failures, "\n".join(failures)
    if kind in ("show", "edit", "action", "action_post"):
        assert permitted_cases, f"the tenant admin should be allowed some {kind} endpoint"


def test_list_pages_never_show_another_tenants_rows(client, as_owner, tenant_a):
    allowed = granted(as_owner)
    markers = foreign_markers(tenant_a.id)
    assert "owner@bharatfoods.example" in markers and "admin@xigmapro.example" in markers
    listed = 0
    for view in tenant_bound_views():
        if isinstance(view, BaseChartView):
            urls, permission = [f"{view.route_base}/chart/"], "can_chart"
        elif isinstance(view, ModelRestApi):
            urls, permission = [f"{view.route_base}/"], "can_get"
        else:
            urls = [
                f"{view.route_base}/list/",
                f"{view.route_base}/list/?psize_{type(view).__name__}=100",
            ]
            # Searching for B's rows must not find them either.
            if "email" in (getattr(view, "search_columns", None) or []):
                urls += [
                    f"{view.route_base}/list/?_flt_2_email=bharatfoods",
                    f"{view.route_base}/list/?_flt_2_email=xigmapro",
                ]
            permission = "can_list"
        for url in urls:
            response = client.get(url)
            if (permission, view.class_permission_name) not in allowed:
                assert response.status_code == 403, url
                continue
            assert response.status_code == 200, url
            listed += 1
            body = response.get_data(as_text=True)
            assert [m for m in markers if m in body] == [], url
    assert listed >= 2, "the tenant admin should list at least the team"
    team = client.get("/team/list/").get_data(as_text=True)
    assert "agent@acme.example" in team and OWNER in team


def test_crafted_edit_of_another_tenants_user_changes_nothing(
    client, as_owner, token, user_by_email, tenant_a
):
    before = snapshot(tenant_a.id)
    page = client.get("/team/add").get_data(as_text=True)
    admin_role = re.search(r'<option value="(\d+)">Tenant Admin</option>', page).group(1)
    for email in ("agent@bharatfoods.example", "admin@xigmapro.example"):
        victim = user_by_email(email)
        response = client.post(
            f"/team/edit/{victim.id}",
            data={
                "first_name": "Hijacked",
                "last_name": "Account",
                "phone": "",
                "roles": admin_role,
                "csrf_token": token,
            },
        )
        assert response.status_code == 404
    db.session.expire_all()
    assert user_by_email("agent@bharatfoods.example").first_name == "Anil"
    assert [r.name for r in user_by_email("agent@bharatfoods.example").roles] == ["Agent"]
    assert snapshot(tenant_a.id) == before


@pytest.mark.parametrize("action", ["deactivate", "reactivate"])
def test_crafted_action_post_with_another_tenants_ids_changes_nothing(
    client, as_owner, token, user_by_email, tenant_a, action
):
    b_owner = user_by_email("owner@bharatfoods.example")
    b_agent = user_by_email("agent@bharatfoods.example")
    platform = user_by_email("billing@xigmapro.example")
    own_agent = user_by_email("agent@acme.example")
    before = snapshot(tenant_a.id)
    for rowids in (
        [b_agent.id],
        [b_owner.id, b_agent.id],
        [platform.id],
        [own_agent.id, b_agent.id],  # one foreign id spoils the whole request
    ):
        response = client.post(
            "/team/action_post",
            data={"action": action, "rowid": [str(i) for i in rowids], "csrf_token": token},
        )
        assert response.status_code == 404, rowids
    db.session.expire_all()
    assert snapshot(tenant_a.id) == before
    assert user_by_email("agent@bharatfoods.example").active is True
    assert user_by_email("agent@acme.example").active is True


def test_crafted_actions_that_do_not_exist_or_do_not_fit_are_404(
    client, as_owner, token, user_by_email
):
    own_agent = user_by_email("agent@acme.example")
    unknown = client.post(
        "/team/action_post",
        data={"action": "delete_everything", "rowid": str(own_agent.id), "csrf_token": token},
    )
    assert unknown.status_code == 404
    # "resend" is a single-row action: the multi-row endpoint does not take it.
    resend = client.post(
        "/team/action_post",
        data={"action": "resend", "rowid": str(own_agent.id), "csrf_token": token},
    )
    assert resend.status_code == 404
    single_unknown = client.post(
        f"/team/action/delete_everything/{own_agent.id}", data={"csrf_token": token}
    )
    assert single_unknown.status_code == 404


@pytest.mark.parametrize(
    ("email", "url"),
    [
        ("admin@xigmapro.example", "/plans/action/no_such_action/1"),
        ("admin@xigmapro.example", "/sub-processors/action/no_such_action/1"),
        ("owner@acme.example", "/plans/action/probe/1"),
        ("owner@acme.example", "/incidents/action/probe/1"),
    ],
)
def test_an_unknown_action_is_404_on_every_view(client, login, csrf_token, email, url):
    """FAB read an unknown action's permission before anything else: a 500 (issue 9)."""
    assert login(email).status_code == 302
    token = csrf_token("/account/")
    assert client.post(url, data={"csrf_token": token}).status_code == 404
    assert client.get(url).status_code == 404
    posted = client.post(
        url.split("/action/")[0] + "/action_post",
        data={"action": "no_such_action", "rowid": ["1"], "csrf_token": token},
    )
    assert posted.status_code == 404
