"""Tenancy is enforced, not remembered (DESIGN.md, "Tenancy").

Every registered FAB view and API over a tenant-bound model (a `TenantOwned` model,
users, tenants) must use the tenant base: a new view that forgets it fails here.
"""

from __future__ import annotations

from flask_appbuilder.security.sqla.models import User
from sqlalchemy import inspect

from app.extensions import appbuilder
from app.models.mixins import TenantOwned
from app.tenancy import FilterTenantScope, TenantScopedMixin, is_tenant_owned


def _tenant_bound_views() -> list:
    return [
        view
        for view in appbuilder.baseviews
        if is_tenant_owned(getattr(getattr(view, "datamodel", None), "obj", None))
    ]


def test_every_view_over_a_tenant_model_uses_the_tenant_base(app):
    bound = _tenant_bound_views()
    names = {type(view).__name__ for view in bound}
    # The walk must find the known views, or it could pass on an empty list.
    assert {"TeamModelView", "PlatformUserModelView", "TenantsView"} <= names, names

    offenders = sorted(
        f"{type(view).__name__} ({view.datamodel.obj.__name__})"
        for view in bound
        if not isinstance(view, TenantScopedMixin)
    )
    assert not offenders, (
        "views over tenant-bound models must subclass TenantModelView / "
        f"TenantModelRestApi (app/tenancy.py): {offenders}"
    )


def test_the_tenant_base_was_applied_not_only_inherited(app):
    """Inheriting the mixin is not enough: its base filter and dropdown scopes must be set."""
    bound = _tenant_bound_views()
    assert bound
    for view in bound:
        name = type(view).__name__
        assert any(f[1] is FilterTenantScope for f in view.base_filters), (
            f"{name}: no tenant base filter (call _scope_tenant in __init__)"
        )
        for rel in inspect(view.datamodel.obj).relationships:
            if not issubclass(rel.mapper.class_, TenantOwned | User):
                continue
            for attr in (
                "add_form_query_rel_fields",
                "edit_form_query_rel_fields",
                "search_form_query_rel_fields",
            ):
                assert rel.key in (getattr(view, attr, None) or {}), (
                    f"{name}.{attr} does not scope the {rel.key!r} dropdown"
                )


def test_views_over_other_models_are_not_flagged(app):
    """The check is not vacuous: FAB's role view is registered and is not tenant-bound."""
    others = [
        type(view).__name__
        for view in appbuilder.baseviews
        if getattr(view, "datamodel", None) is not None and view not in _tenant_bound_views()
    ]
    assert "RoleHistoryModelView" in others
