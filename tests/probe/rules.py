"""The route side of the URL-map probe: which rules, which ids, which requests.

The rules come from ``app.url_map`` itself. For collection (one pytest case per rule,
so a failure names its route) they are listed by a child process: creating a second
app in the test process would register every FAB view again on the global
``appbuilder``. The probe checks that this list equals the live app's map.

A rule is probed when it has an id argument (an ``int`` converter, or a string one
named ``pk`` / ``*_id``). The ids substituted are those of the table the rule is about:

1. the argument's name (``key_id`` -> ``ab_api_key``, ...);
2. else the FAB view's ``datamodel.obj`` (ModelView, ModelRestApi, and the custom
   ``@expose`` routes of such views such as ``/campaigns/<int:pk>/launch``);
3. else a plain BaseView mapped here by endpoint;
4. else every id of every table of the other tenant (deduplicated).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from flask import Flask

ROOT = Path(__file__).resolve().parents[2]
ID_ARG = re.compile(r"^(pk|.+_id)$")
ALL = "*"  # the fallback: every id of the other tenant

# Argument names that say which table the id is from (plain BaseViews).
ARG_TABLES = {
    "key_id": "ab_api_key",
    "role_id": "tenant_role",
    "artifact_id": "privacy_artifact",
}
# Plain BaseViews (no datamodel) whose ``pk`` is a row of one table.
VIEW_TABLES = {"PrivacyRequestsView": "privacy_request"}

# Rules out of scope, each with why. Matched on the endpoint (``View.method``) or, for
# FAB's generic routes, on the method name alone (``*.download``).
ALLOW_LIST = {
    "static": "files of the app's static folder on disk: no tenant data",
    "appbuilder.static": "FAB's bundled CSS/JS: no tenant data",
    "security.static": "Flask-Security's bundled assets: no tenant data",
    "*.download": "FAB's upload-folder file download by file name: no model of the app "
    "has a file column (exports, PDFs and privacy packages live in the database and are "
    "probed on their own routes)",
    "OpenApi.get": "the OpenAPI document: describes routes, holds no rows",
    "SwaggerView.show": "Swagger UI page for the spec: no rows",
    "LocaleView.index": "language switch (/lang/<locale>): no rows",
    "UserStatsChartView.chart": "FAB's platform user-stats chart by a group-by column "
    "name, not an id (tenant users are refused by has_access)",
    "TenantRolesView.builtin": "the fixed description of a built-in role (same for every "
    "tenant), addressed by slug",
    "policy_notice.version": "the public privacy policy by version label: no tenant data",
    "invitation.accept": "the signed invitation token is the credential; no id to swap "
    "(tests/views/test_team.py forges and replays tokens)",
    "security.reset_password": "Flask-Security's signed reset token: no id to swap",
    "security.two_factor_setup_validate": "Flask-Security's signed 2FA setup token: no id",
    "privacy_public.confirm": "the public form's signed token: no id to swap "
    "(tests/views/test_privacy_public.py)",
    "privacy_public.done": "the public form's signed token: no id to swap",
    "PrivacyDownloadView.by_token": "signed download token naming artifact and subject; "
    "the session route /privacy/downloads/<int:artifact_id> is probed "
    "(tests/views/test_privacy_downloads.py tampers with tokens)",
    "QueuesView.requeue": "the platform-only RQ dashboard, by queue name and RQ job id "
    "(not table rows); tenant users are refused by has_access (tests/ops/test_queues.py)",
    "QueuesView.requeue_all": "the platform-only RQ dashboard, by queue name",
}


@dataclass(frozen=True)
class RuleSpec:
    """What collection knows of a rule (JSON-safe, from the child process)."""

    rule: str
    endpoint: str
    methods: tuple[str, ...]
    args: tuple[tuple[str, str], ...]  # (name, converter class name)

    @property
    def key(self) -> str:
        """Unique name of the case: two rules share a path with different methods."""
        return f"{'|'.join(self.methods)} {self.rule}"

    def id_args(self) -> list[str]:
        return [
            name
            for name, conv in self.args
            if conv == "IntegerConverter" or (conv == "UnicodeConverter" and ID_ARG.match(name))
        ]

    def has_int(self) -> bool:
        return any(conv == "IntegerConverter" for _, conv in self.args)

    def allowed_out(self) -> str | None:
        """Why the rule is out of scope, or None when it is probed."""
        method = self.endpoint.rsplit(".", 1)[-1]
        return ALLOW_LIST.get(self.endpoint) or ALLOW_LIST.get(f"*.{method}")


def specs_of(app: Flask) -> list[RuleSpec]:
    """Every rule of the map that takes arguments."""
    found = []
    for rule in app.url_map.iter_rules():
        if not rule.arguments:
            continue
        methods = tuple(sorted(rule.methods - {"HEAD", "OPTIONS"}))
        args = tuple(sorted((n, type(c).__name__) for n, c in rule._converters.items()))
        found.append(RuleSpec(rule.rule, rule.endpoint, methods, args))
    return sorted(found, key=lambda s: s.key)


_CHILD = """
import json, sys
from app import create_app
from config import TestingConfig
from tests.probe.rules import specs_of
specs = specs_of(create_app(TestingConfig))
json.dump([[s.rule, s.endpoint, s.methods, s.args] for s in specs], sys.stdout)
"""


def collected_specs() -> list[RuleSpec]:
    """The rule list for parametrization, from a fresh app in a child process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", _CHILD], cwd=ROOT, env=env, capture_output=True, check=True
    ).stdout
    return [
        RuleSpec(rule, endpoint, tuple(methods), tuple(tuple(a) for a in args))
        for rule, endpoint, methods, args in json.loads(out)
    ]


# --------------------------------------------------------------------------- tables


def table_of(app: Flask, spec: RuleSpec, arg: str) -> str:
    """The table whose ids go into ``arg`` of the rule (or ALL)."""
    if arg in ARG_TABLES:
        return ARG_TABLES[arg]
    view_name = spec.endpoint.split(".", 1)[0]
    view = next((v for v in app.appbuilder.baseviews if v.endpoint == view_name), None)
    model = getattr(getattr(view, "datamodel", None), "obj", None)
    if model is not None:
        return model.__table__.name
    return VIEW_TABLES.get(view_name, ALL)


def action_names(app: Flask, spec: RuleSpec) -> list[str]:
    """The actions a FAB view declares (for ``/action/<name>/<pk>``), else a dummy."""
    view_name = spec.endpoint.split(".", 1)[0]
    view = next((v for v in app.appbuilder.baseviews if v.endpoint == view_name), None)
    return sorted(getattr(view, "actions", {}) or {}) or ["probe"]


def urls_for(
    app: Flask, spec: RuleSpec, ids: dict[str, list[int]], platform: dict[str, list[int]]
) -> list[str]:
    """Every URL of the rule with the other tenant's ids, or, for a table no tenant owns,
    a few of its platform rows (one id argument per rule today; several would take the
    product, so the count is checked)."""
    id_args = spec.id_args()
    assert len(id_args) == 1, f"{spec.key}: {len(id_args)} id arguments, extend urls_for"
    (arg,) = id_args
    table = table_of(app, spec, arg)
    if table == ALL:
        values = sorted({i for v in ids.values() for i in v})
    else:
        # A table no tenant owns and that is empty: id 1 still walks the route.
        values = ids.get(table) or platform.get(table) or [1]
    urls = []
    if "name" in dict(spec.args):
        # FAB's generic /action/<name>/<pk> fetches the row (tenant-filtered) once,
        # before dispatching to the action: every id goes through that shared lookup
        # with the first action, and every action is tried with the first id.
        names = action_names(app, spec)
        pairs = [(names[0], v) for v in values] + [(n, values[0]) for n in names[1:]]
    else:
        pairs = [(None, v) for v in values]
    for name, value in pairs:
        url = spec.rule
        for arg_name, _ in spec.args:
            sub = str(value) if arg_name == arg else name
            url = re.sub(rf"<(?:[^:<>]+:)?{arg_name}>", str(sub), url)
        urls.append(url)
    return urls
