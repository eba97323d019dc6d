"""Tenant isolation: the one place the rule lives (DESIGN.md, "Tenancy").

Two layers:

* **Visible layer** - `TenantModelView` / `TenantModelRestApi`: every FAB view over a
  tenant-owned model subclasses them. They filter lists and single-row fetches to the
  current tenant, stamp ``tenant_id`` on add (never a form field) and scope the
  dropdowns of related fields (FAB's ``base_filters`` alone do not).
* **Guarantee layer** - `install_orm_guards()`: a ``do_orm_execute`` hook adds
  ``with_loader_criteria`` for every tenant-owned model to every ORM statement run in a
  tenant scope, and a ``before_flush`` hook stamps ``tenant_id`` on new rows and refuses
  to flush a row, or a link to a row, of another tenant. A forgotten filter cannot leak.

A request of a tenant user runs in that tenant's scope; platform staff run unscoped.
Jobs and CLI commands enter a scope explicitly with ``tenant_scope(tenant_id)``.
Core/bulk SQL bypasses the ORM hooks: use `scoped()` and pass ``tenant_id`` explicitly.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from flask import abort, current_app, g, request
from flask_appbuilder import ModelView, expose
from flask_appbuilder.api import ModelRestApi
from flask_appbuilder.models.filters import BaseFilter
from flask_appbuilder.security.sqla.models import User
from flask_login import current_user
from sqlalchemy import Select, event, inspect, select
from sqlalchemy.orm import ORMExecuteState, Session, with_loader_criteria

from app.models.audit import AuditEvent
from app.models.conversation import Conversation, Message
from app.models.mixins import TenantOwned, audit_name
from app.models.tenant import Tenant
from app.models.user import AppUser

T = TypeVar("T")

# None = unscoped (platform staff, unscoped CLI); an int = that tenant only.
_scope: ContextVar[int | None] = ContextVar("woffice_tenant_scope", default=None)
# Agents without "view all conversations": the user whose conversations (and their
# messages) are the only ones visible; None = no such restriction.
_assignee: ContextVar[int | None] = ContextVar("woffice_conversation_assignee", default=None)


class TenantIsolationError(RuntimeError):
    """A write would cross a tenant boundary."""


def current_tenant_id() -> int | None:
    """The tenant of the running request or job; None when unscoped."""
    return _scope.get()


@contextmanager
def tenant_scope(tenant_id: int | None) -> Iterator[None]:
    """Run the block as ``tenant_id`` (None: unscoped, for platform work)."""
    token = _scope.set(tenant_id)
    try:
        yield
    finally:
        _scope.reset(token)


def enter_request_scope() -> None:
    """before_request: scope the request to the logged-in user's tenant."""
    tenant_id = getattr(current_user, "tenant_id", None) if current_user else None
    g._tenant_scope_token = _scope.set(tenant_id)
    assignee = None
    if tenant_id is not None and not can_view_all_conversations():
        assignee = current_user.id
    g._assignee_scope_token = _assignee.set(assignee)


def can_view_all_conversations() -> bool:
    """The current user's roles grant "view all conversations" (agents' do not)."""
    if "user" not in g:  # FAB's has_access reads g.user (set by its before_request)
        g.user = current_user
    return bool(current_app.appbuilder.sm.has_access("can_view_all", "Conversations"))


def conversation_assignee_scope() -> int | None:
    """The user id conversations are restricted to in this request (None: all)."""
    return _assignee.get()


@contextmanager
def assignee_scope(user_id: int | None) -> Iterator[None]:
    """Run the block seeing only ``user_id``'s conversations (None: no restriction)."""
    token = _assignee.set(user_id)
    try:
        yield
    finally:
        _assignee.reset(token)


def leave_request_scope(_exc: BaseException | None = None) -> None:
    """teardown_request: restore the scope the request started with."""
    token = g.pop("_tenant_scope_token", None)
    if token is not None:
        _scope.reset(token)
    token = g.pop("_assignee_scope_token", None)
    if token is not None:
        _assignee.reset(token)


def is_tenant_owned(model: type) -> bool:
    """True for models whose rows belong to exactly one tenant."""
    return isinstance(model, type) and issubclass(model, TenantOwned | User | Tenant | AuditEvent)


def scoped(stmt: Select, model: type, tenant_id: int) -> Select:
    """Explicitly filter a statement to one tenant (for Core/bulk paths and reports)."""
    return stmt.where(model.tenant_id == tenant_id)


def get_for_tenant(session: Session, model: type[T], ident: Any, tenant_id: int) -> T:
    """Fetch one row of ``tenant_id`` or abort 404 (cf. Redash get_by_id_and_org)."""
    obj = session.get(model, ident)
    if obj is None or obj.tenant_id != tenant_id:
        abort(404)
    return obj


# --------------------------------------------------------------------------- ORM layer


def _add_tenant_criteria(state: ORMExecuteState) -> None:
    tenant_id = _scope.get()
    if tenant_id is None or state.execution_options.get("skip_tenant_scope"):
        return
    if not (state.is_select or state.is_update or state.is_delete):
        return
    # Lazy and column loads inherit the criteria from the statement that loaded the
    # parent (SQLAlchemy's filter_public recipe), so they need nothing more.
    if state.is_column_load or state.is_relationship_load:
        return
    state.statement = state.statement.options(
        with_loader_criteria(
            TenantOwned, lambda cls: cls.tenant_id == tenant_id, include_aliases=True
        ),
        # Users: a tenant sees its own team only, never platform staff. On AppUser
        # (FAB's User has no tenant_id attribute): a mapped attribute is adapted to
        # aliases, a Table column was not (a join on an aliased user failed).
        with_loader_criteria(AppUser, lambda cls: cls.tenant_id == tenant_id, include_aliases=True),
        with_loader_criteria(Tenant, lambda cls: cls.id == tenant_id, include_aliases=True),
        with_loader_criteria(
            AuditEvent, lambda cls: cls.tenant_id == tenant_id, include_aliases=True
        ),
    )
    assignee = _assignee.get()
    if assignee is not None:
        # Plain expressions (not lambdas): the assignee is a bound parameter.
        mine = select(Conversation.id).where(Conversation.assignee_id == assignee)
        state.statement = state.statement.options(
            with_loader_criteria(
                Conversation, Conversation.assignee_id == assignee, include_aliases=True
            ),
            with_loader_criteria(
                Message, Message.conversation_id.in_(mine.scalar_subquery()), include_aliases=True
            ),
        )


def _row_tenant(obj: Any) -> tuple[bool, int | None]:
    """(is tenant-bound, tenant id) of an ORM object."""
    if isinstance(obj, Tenant):
        return True, obj.id
    if isinstance(obj, TenantOwned) or (isinstance(obj, User) and hasattr(obj, "tenant_id")):
        return True, obj.tenant_id
    return False, None


def _guard_flush(session: Session, _ctx: Any, _instances: Any) -> None:
    tenant_id = _scope.get()
    if tenant_id is None:
        for obj in session.new:
            if isinstance(obj, TenantOwned) and obj.tenant_id is None:
                raise TenantIsolationError(
                    f"{type(obj).__name__} has no tenant_id and no tenant scope is active"
                )
        return
    for obj in list(session.new):
        if isinstance(obj, TenantOwned | User) and getattr(obj, "tenant_id", None) is None:
            obj.tenant_id = tenant_id
    for obj in list(session.new) + list(session.dirty) + list(session.deleted):
        bound, owner = _row_tenant(obj)
        if bound and owner != tenant_id:
            raise TenantIsolationError(f"refusing to write {type(obj).__name__} of another tenant")
        if obj in session.deleted:
            continue
        _guard_links(obj, tenant_id)


def _guard_links(obj: Any, tenant_id: int) -> None:
    state = inspect(obj)
    for rel in state.mapper.relationships:
        if rel.key in state.unloaded:
            continue
        value = state.attrs[rel.key].loaded_value
        targets = value if isinstance(value, list | set | tuple) else [value]
        for target in targets:
            if target is None or not hasattr(target, "__mapper__"):
                continue
            bound, owner = _row_tenant(target)
            if bound and owner is not None and owner != tenant_id:
                raise TenantIsolationError(
                    f"refusing to link {type(obj).__name__} to a row of another tenant"
                )
            if isinstance(obj, User) and rel.key == "roles":
                _guard_role(state.session, target, tenant_id)


def _guard_role(session: Session, role: Any, tenant_id: int) -> None:
    """In a tenant's scope a user may hold only the built-in tenant roles and that
    tenant's own roles (issue 8): never a platform role or another tenant's."""
    if role.name in current_app.config["TENANT_ROLES"]:
        return
    from app.services.tenant_roles import owning_tenant

    if role.id is None or owning_tenant(session, role.id) != tenant_id:
        raise TenantIsolationError(f"a tenant cannot grant the role {role.name!r}")


def install_orm_guards(session_class: type[Session]) -> None:
    """Attach the guarantee layer to a Session class (idempotent)."""
    if not event.contains(session_class, "do_orm_execute", _add_tenant_criteria):
        event.listen(session_class, "do_orm_execute", _add_tenant_criteria)
        event.listen(session_class, "before_flush", _guard_flush)


# ------------------------------------------------------------------------ visible layer


class FilterTenantScope(BaseFilter):
    """Base filter: rows of the current tenant; everything for platform staff."""

    name = "Tenant scope"
    arg_name = "tenant_scope"

    def apply(self, query: Any, value: Any) -> Any:
        tenant_id = current_tenant_id()
        if tenant_id is None:
            return query
        # A Tenant row belongs to itself (a tenant sees its own record only).
        column = self.model.id if issubclass(self.model, Tenant) else self.model.tenant_id
        return query.filter(column == tenant_id)


def _rel_field_filters(datamodel: Any) -> dict[str, list]:
    """Dropdown filters for every relation to a tenant-owned model."""
    filters: dict[str, list] = {}
    for rel in inspect(datamodel.obj).relationships:
        target = rel.mapper.class_
        if issubclass(target, TenantOwned | User):
            filters[rel.key] = [["tenant_id", FilterTenantScope, None]]
    return filters


class _CopyingValidators(dict):
    """FAB appends its built-in validators to the list it gets for a column; handing out
    copies keeps the add and edit forms from appending to one shared list (which showed
    every built-in error twice)."""

    def get(self, key: Any, default: Any = None) -> Any:
        value = super().get(key, default)
        return list(value) if isinstance(value, list) else value


class TenantScopedMixin:
    """Shared by the tenant base view and API: filters, stamping, scoped dropdowns."""

    datamodel: Any
    base_filters: list

    def _scope_tenant(self) -> None:
        self.validators_columns = _CopyingValidators(
            getattr(self, "validators_columns", None) or {}
        )
        self.base_filters = [["tenant_id", FilterTenantScope, None], *self.base_filters]
        rel_filters = _rel_field_filters(self.datamodel)
        for attr in (
            "add_query_rel_fields",
            "edit_query_rel_fields",
            "search_query_rel_fields",
        ):
            merged = {**rel_filters, **(getattr(self, attr, None) or {})}
            setattr(self, attr, merged)
        for attr in (
            "add_form_query_rel_fields",
            "edit_form_query_rel_fields",
            "search_form_query_rel_fields",
        ):
            merged = {**rel_filters, **(getattr(self, attr, None) or {})}
            setattr(self, attr, merged)

    def pre_add(self, item: Any) -> None:
        tenant_id = current_tenant_id()
        if tenant_id is not None and hasattr(item, "tenant_id"):
            item.tenant_id = tenant_id
        elif isinstance(item, TenantOwned) and item.tenant_id is None:
            abort(400, "Choose the tenant this record belongs to.")


def _blank_none(value: Any) -> Any:
    return "" if value is None else value


class TenantModelView(TenantScopedMixin, ModelView):
    """Base of every FAB ModelView over a tenant-owned model (enforced by a test).

    Its show page adds the object's audit history (newest first).
    """

    show_template = "woffice/show.html"

    def __init__(self, **kwargs: Any) -> None:
        self.base_filters = list(self.base_filters or [])
        self._scope_tenant()
        self.extra_args = {
            **(self.extra_args or {}),
            "history_type": audit_name(self.datamodel.obj),
        }
        super().__init__(**kwargs)
        # Empty values show as blank, not as the word "None" (FAB's default).
        formatters = dict(self.formatters_columns or {})
        for column in [*self.list_columns, *self.show_columns]:
            formatters.setdefault(column, _blank_none)
        self.formatters_columns = formatters

    # FAB's action endpoints fetch rows WITHOUT the base filters (and crash on an
    # unknown action or a None row): refuse unknown actions and out-of-scope rows first.
    @expose("/action/<string:name>/<pk>", methods=["GET", "POST"])
    def action(self, name: str, pk: str) -> Any:
        self._require_action_rows(name, [pk], single=True)
        return super().action(name, pk)

    @expose("/action_post", methods=["POST"])
    def action_post(self) -> Any:
        name = request.form.get("action", "")
        self._require_action_rows(name, request.form.getlist("rowid"), single=False)
        return super().action_post()

    def _get_or_404(self, pk: Any) -> Any:
        """The row ``pk`` within the base filters (tenant, agent scope), else 404."""
        try:
            pk = int(pk)
        except (TypeError, ValueError):
            abort(404)
        found = self.datamodel.get(pk, self._base_filters)
        if found is None:
            abort(404)
        return found

    def _require_action_rows(self, name: str, pks: list[str], *, single: bool) -> None:
        """404 for an unknown action, a wrong arity, or a row outside the tenant."""
        found = self.actions.get(name)
        if found is None or not (found.single if single else found.multiple):
            abort(404)
        for pk in pks:
            pk_value = self._deserialize_pk_if_composite(pk)
            if self.datamodel.get(pk_value, self._base_filters) is None:
                abort(404)


class TenantModelRestApi(TenantScopedMixin, ModelRestApi):
    """Base of every FAB ModelRestApi over a tenant-owned model (enforced by a test)."""

    def __init__(self) -> None:
        self.base_filters = list(self.base_filters or [])
        self._scope_tenant()
        super().__init__()
