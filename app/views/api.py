"""REST APIs over contacts, tags, conversations and messages (issues 4 and 9).

Every API goes through the tenant base (`TenantModelRestApi`) and adds, in
`WofficeModelRestApi`:

* **Session-cookie auth with CSRF.** The APIs accept FAB's browser login
  (``allow_browser_login``); FAB exempts every API blueprint from Flask-WTF's CSRF check,
  so a logged-in browser could be made to send a write from another site. A request
  authenticated by the session cookie must therefore carry the CSRF token in the
  ``X-CSRFToken`` header for POST/PUT/PATCH/DELETE (token-authenticated clients need
  none: a browser cannot attach their credentials cross-site).
* **Writes through the services.** POST and PUT load a plain marshmallow schema (unknown
  fields, ``tenant_id`` included, are refused) and call the same service rules as the
  screens; a broken rule answers 422 with ``{"message": {field: [reason]}}``.
* **No 500 for bad input.** Malformed JSON and rison answer 400, as do filter values the
  database cannot compare and out-of-range pages.

Agents see only their conversations and those conversations' messages: the same base
filters as the screens, backed by the ORM criteria of `app.tenancy`.
"""

from __future__ import annotations

from typing import Any

import prison
from flask import Response, request
from flask_appbuilder.api import expose, protect, safe
from flask_appbuilder.const import (
    API_FILTERS_RIS_KEY,
    API_PAGE_INDEX_RIS_KEY,
    API_PAGE_SIZE_RIS_KEY,
    API_URI_RIS_KEY,
)
from flask_appbuilder.exceptions import ApplyFilterException, FABException
from flask_appbuilder.models.filters import BaseFilter
from flask_appbuilder.models.sqla.interface import SQLAInterface
from flask_appbuilder.security.decorators import permission_name
from flask_login import current_user
from flask_security.utils import get_request_attr
from flask_wtf.csrf import CSRFError
from marshmallow import RAISE, Schema, fields
from marshmallow import ValidationError as SchemaValidationError
from marshmallow.validate import Length, OneOf
from prison.decoder import ParserException
from sqlalchemy import func, select
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError

from app.extensions import csrf, db
from app.models.contact import ConsentAction, ConsentSource, Contact, Tag
from app.models.conversation import Conversation, ConversationStatus, Message
from app.models.user import AppUser
from app.services import contacts
from app.services.consent import record_consent
from app.services.exceptions import ValidationError
from app.services.users import stored_role_names, tenant_role_names
from app.tenancy import TenantModelRestApi, current_tenant_id
from app.views._scale import CappedCountInterface
from app.views.conversation import FilterAssignedConversations, FilterAssignedMessages

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Operators whose value is a list; every other operator takes one scalar.
LIST_OPERATORS = frozenset({"in", "not_in", "rel_m_m"})
# Text operators: a number sent for them is searched as its digits.
TEXT_OPERATORS = frozenset({"sw", "nsw", "ew", "new", "ct", "nct", "contact_search"})
# Deeper pages are refused: OFFSET beyond this is a scan, not a use case.
MAX_OFFSET = 1_000_000
NO_TENANT = "Sign in as a user of the tenant this record belongs to."


class ApiArgumentError(FABException):
    """A list argument (filter value, page) the API refuses with a 400."""


def _no_nul(value: str) -> None:
    if "\x00" in value:
        raise SchemaValidationError("Must not contain NUL characters.")


class Text(fields.String):
    """A string field refusing NUL characters (PostgreSQL cannot store them)."""

    def __init__(self, *, max_length: int, **kwargs: Any) -> None:
        super().__init__(validate=[Length(max=max_length), _no_nul], **kwargs)


# ------------------------------------------------------------------------ base class


def refuse_unparsable_rison() -> Response | None:
    """Blueprint before_request: 400 for a ``q`` the rison parser crashes on.

    FAB's ``@rison`` catches only the parser's own ParserException; prison also raises
    RecursionError, IndexError, TypeError... on some inputs (``q=((``), which FAB's
    ``@safe`` turned into 500s.
    """
    value = request.args.get(API_URI_RIS_KEY)
    if not value:
        return None
    try:
        prison.loads(value)
    except ParserException:
        return None  # FAB's @rison answers it (or accepts it as JSON)
    except Exception:  # noqa: BLE001 - any crash of the parser means bad input
        return WofficeModelRestApi.response(400, message="Not a valid rison argument")
    return None


def require_csrf_for_session_writes() -> Response | None:
    """Blueprint before_request: a cookie-authenticated write needs the CSRF header."""
    if request.method not in UNSAFE_METHODS:
        return None
    if not current_user.is_authenticated or get_request_attr("fs_authn_via") != "session":
        return None  # token clients, or nobody: FAB's @protect answers 401/403
    try:
        csrf.protect()
    except CSRFError as exc:
        return WofficeModelRestApi.response(
            400, message=f"CSRF check failed: {exc.description} Send it as X-CSRFToken."
        )
    return None


class WofficeModelRestApi(TenantModelRestApi):
    """Tenant-scoped ModelRestApi whose writes go through services (subclasses)."""

    allow_browser_login = True
    page_size = 25
    max_page_size = 100
    # Plain marshmallow schemas for writes (set by subclasses that allow them).
    add_model_schema: Schema | None = None
    edit_model_schema: Schema | None = None

    def create_blueprint(self, appbuilder: Any, *args: Any, **kwargs: Any) -> Any:
        blueprint = super().create_blueprint(appbuilder, *args, **kwargs)
        blueprint.before_request(refuse_unparsable_rison)
        blueprint.before_request(require_csrf_for_session_writes)
        return blueprint

    # ------------------------------------------------------------------ reading

    def get_list_headless(self, **kwargs: Any) -> Response:
        args = kwargs.get("rison", {})
        page = args.get(API_PAGE_INDEX_RIS_KEY, 0) or 0
        _page, size = self._sanitize_page_args(0, args.get(API_PAGE_SIZE_RIS_KEY))
        if page < 0 or page * size > MAX_OFFSET:
            return self.response_400(message=f"page must be between 0 and {MAX_OFFSET // size}.")
        try:
            return super().get_list_headless(**kwargs)
        except (ApplyFilterException, StatementError) as exc:
            if isinstance(exc, DBAPIError) and not isinstance(exc, DataError):
                raise  # the database failed, not the request
            # Values the database cannot compare (e.g. text for a number): bad input.
            db.session.rollback()
            return self.response_400(message="Invalid filter value.")

    def _handle_filters_args(self, rison_args: dict[str, Any]) -> Any:
        allowed = self._filters.get_search_filters()
        for item in rison_args.get(API_FILTERS_RIS_KEY, []):
            _check_filter_value(item)
            # FAB silently ignores an unknown operator on a custom-filtered column.
            oprs = {f.arg_name for f in allowed.get(item.get("col"), [])}
            if item.get("opr") not in oprs:
                raise ApiArgumentError(f"Filter {item.get('col')!r}: unknown column or operator.")
        return super()._handle_filters_args(rison_args)

    # ------------------------------------------------------------------ writing

    def post_headless(self) -> Response:
        values = self._load(self.add_model_schema)
        if isinstance(values, Response):
            return values
        tenant_id = current_tenant_id()
        if tenant_id is None:
            return self.response_400(message=NO_TENANT)
        return self._write(lambda: self.create_item(tenant_id, values), 201)

    def put_headless(self, pk: Any) -> Response:
        item = self.datamodel.get(pk, self._base_filters)
        if item is None:
            return self.response_404()
        values = self._load(self.edit_model_schema)
        if isinstance(values, Response):
            return values
        return self._write(lambda: self.update_item(item, values), 200)

    def create_item(self, tenant_id: int, values: dict[str, Any]) -> Any:
        """Create the row from loaded ``values`` through a service (subclasses)."""
        raise NotImplementedError

    def update_item(self, item: Any, values: dict[str, Any]) -> Any:
        """Apply loaded ``values`` to ``item`` through a service (subclasses)."""
        raise NotImplementedError

    def _load(self, schema: Schema | None) -> dict[str, Any] | Response:
        if schema is None:
            return self.response_404()
        if not request.is_json:
            return self.response_400(message="Request is not JSON")
        data = request.get_json()  # malformed JSON: BadRequest, answered 400 by @safe
        if not isinstance(data, dict):
            return self.response_400(message="The body must be a JSON object.")
        try:
            return schema.load(data)
        except SchemaValidationError as err:
            return self.response_422(message=err.messages)

    def _write(self, action: Any, status: int) -> Response:
        try:
            item = action()
            db.session.commit()
        except ValidationError as exc:
            db.session.rollback()
            return self.response_422(message={exc.field or "_schema": [str(exc)]})
        except IntegrityError:
            db.session.rollback()
            return self.response_422(message={"_schema": ["Conflicts with an existing record."]})
        result = self.show_model_schema.dump(item, many=False)
        return self.response(status, id=item.id, result=result)


def _check_filter_value(item: Any) -> None:
    """Refuse filter values FAB would pass on unchecked (lists, objects, NULs)."""
    if not isinstance(item, dict):
        raise ApiArgumentError("Each filter is an object with col, opr and value.")
    value, opr = item.get("value"), item.get("opr")
    values = value if isinstance(value, list) and opr in LIST_OPERATORS else [value]
    for one in values:
        if not isinstance(one, str | int | float | bool):
            raise ApiArgumentError(f"Filter {item.get('col')!r}: unsupported value.")
        if isinstance(one, str) and "\x00" in one:
            raise ApiArgumentError("Filter values must not contain NUL characters.")
    if opr in TEXT_OPERATORS and isinstance(value, int | float) and not isinstance(value, bool):
        item["value"] = str(value)
    elif opr in TEXT_OPERATORS and not isinstance(value, str):
        raise ApiArgumentError(f"Filter {item.get('col')!r}: {opr} takes text.")


# -------------------------------------------------------------------------- contacts


class FilterContactSearch(BaseFilter):
    """``opr: contact_search``: name, email or a phone number typed in any format."""

    name = "Search"
    arg_name = "contact_search"

    def apply(self, query: Any, value: Any) -> Any:
        condition = contacts.search_condition(str(value))
        return query if condition is None else query.filter(condition)


class ContactWriteSchema(Schema):
    class Meta:
        unknown = RAISE

    phone = Text(max_length=40, required=True)
    display_name = Text(max_length=120, allow_none=True)
    email = Text(max_length=320, allow_none=True)
    notes = Text(max_length=10_000, allow_none=True)
    tags = fields.List(fields.Integer(strict=True), validate=Length(max=200))


class ConsentSchema(Schema):
    class Meta:
        unknown = RAISE

    action = fields.String(required=True, validate=OneOf([a.value for a in ConsentAction]))
    evidence = Text(max_length=2_000, allow_none=True)


def _tags(tenant_id: int, ids: list[int] | None) -> list[Tag] | None:
    """The tenant's tags with these ids; an id of another tenant is unknown here."""
    if ids is None:
        return None
    wanted = set(ids)
    found = list(
        db.session.scalars(select(Tag).where(Tag.tenant_id == tenant_id, Tag.id.in_(wanted)))
    )
    if len(found) != len(wanted):
        raise ValidationError("Unknown tag id.", "tags")
    return found


class ContactApi(WofficeModelRestApi):
    """Contacts: read for agents; create and update for tenant admins (no delete: erasing
    a person is a privacy request). Consent changes only through ``/<pk>/consent``."""

    datamodel = CappedCountInterface(Contact)
    resource_name = "contact"
    class_permission_name = "ContactApi"
    include_route_methods = {"get", "get_list", "info", "post", "put", "consent"}
    base_order = ("id", "asc")
    list_columns = [
        "id",
        "phone",
        "wa_id",
        "display_name",
        "profile_name",
        "email",
        "tags.id",
        "tags.name",
        "consent_state",
        "marketing_objection",
        "last_inbound_at",
    ]
    show_columns = [*list_columns, "notes", "created_at", "updated_at"]
    add_columns = edit_columns = ["phone", "display_name", "email", "notes", "tags"]
    add_model_schema = ContactWriteSchema()
    edit_model_schema = ContactWriteSchema(partial=True)
    search_columns = [
        "display_name",
        "profile_name",
        "phone",
        "email",
        "tags",
        "consent_state",
        "marketing_objection",
        "last_inbound_at",
        "created_at",
    ]
    search_filters = {"phone": [FilterContactSearch]}
    order_columns = [
        "id",
        "display_name",
        "phone",
        "consent_state",
        "last_inbound_at",
        "created_at",
    ]

    def create_item(self, tenant_id: int, values: dict[str, Any]) -> Contact:
        return contacts.create_contact(
            db.session,
            tenant_id,
            values["phone"],
            display_name=values.get("display_name"),
            email=values.get("email"),
            notes=values.get("notes"),
            tags=_tags(tenant_id, values.get("tags")) or (),
        )

    def update_item(self, item: Contact, values: dict[str, Any]) -> Contact:
        current = {
            "phone": item.phone or "",
            "display_name": item.display_name,
            "email": item.email,
            "notes": item.notes,
        }
        merged = {**current, **{k: v for k, v in values.items() if k in current}}
        return contacts.update_contact(
            db.session,
            item,
            merged["phone"],
            display_name=merged["display_name"],
            email=merged["email"],
            notes=merged["notes"],
            tags=_tags(item.tenant_id, values.get("tags")),
        )

    @expose("/<int:pk>/consent", methods=["POST"])
    @protect()
    @safe
    @permission_name("consent")
    def consent(self, pk: int) -> Response:
        """Append a consent event (source ``api``) to the contact's log
        ---
        post:
          parameters:
          - in: path
            schema:
              type: integer
            name: pk
          requestBody:
            required: true
            content:
              application/json:
                schema:
                  type: object
                  properties:
                    action:
                      type: string
                      enum: [opt_in, opt_out, resume, objection, objection_withdrawn]
                    evidence:
                      type: string
                  required: [action]
          responses:
            200:
              description: Consent recorded; the contact with its derived state
            400:
              $ref: '#/components/responses/400'
            404:
              $ref: '#/components/responses/404'
            422:
              $ref: '#/components/responses/422'
        """
        item = self.datamodel.get(pk, self._base_filters)
        if item is None:
            return self.response_404()
        values = self._load(ConsentSchema())
        if isinstance(values, Response):
            return values

        def append() -> Contact:
            record_consent(
                db.session,
                item,
                values["action"],
                ConsentSource.api,
                evidence=values.get("evidence"),
                actor_id=current_user.id,
            )
            return item

        return self._write(append, 200)


# ------------------------------------------------------------------------------ tags


class TagWriteSchema(Schema):
    class Meta:
        unknown = RAISE

    name = Text(max_length=60, required=True)


def _tag_name(tenant_id: int, name: str, exclude_id: int | None = None) -> str:
    """A tag name, stripped, not empty and unique (any case) within the tenant."""
    name = name.strip()
    if not name:
        raise ValidationError("Give the tag a name.", "name")
    stmt = select(Tag.id).where(Tag.tenant_id == tenant_id, func.lower(Tag.name) == name.lower())
    if exclude_id is not None:
        stmt = stmt.where(Tag.id != exclude_id)
    if db.session.execute(stmt.limit(1)).first():
        raise ValidationError("A tag with this name already exists.", "name")
    return name


class TagApi(WofficeModelRestApi):
    """Tags: read for agents; create, rename and delete for tenant admins."""

    datamodel = SQLAInterface(Tag)
    resource_name = "tag"
    class_permission_name = "TagApi"
    include_route_methods = {"get", "get_list", "info", "post", "put", "delete"}
    base_order = ("name", "asc")
    list_columns = show_columns = ["id", "name"]
    add_columns = edit_columns = ["name"]
    add_model_schema = edit_model_schema = TagWriteSchema()
    search_columns = ["name"]
    order_columns = ["id", "name"]

    def create_item(self, tenant_id: int, values: dict[str, Any]) -> Tag:
        tag = Tag(tenant_id=tenant_id, name=_tag_name(tenant_id, values["name"]))
        db.session.add(tag)
        db.session.flush()
        return tag

    def update_item(self, item: Tag, values: dict[str, Any]) -> Tag:
        item.name = _tag_name(item.tenant_id, values["name"], exclude_id=item.id)
        db.session.flush()
        return item


# --------------------------------------------------------------------- conversations


class ConversationWriteSchema(Schema):
    class Meta:
        unknown = RAISE

    status = fields.String(validate=OneOf([s.value for s in ConversationStatus]))
    assignee_id = fields.Integer(strict=True, allow_none=True)


def _assignee(conversation: Conversation, user_id: int) -> AppUser:
    """An active Agent or Tenant Admin of the conversation's tenant.

    :raises ValidationError: anyone else (another tenant's user, platform staff, ...).
    """
    user = db.session.get(AppUser, user_id)
    if (
        user is None
        or user.tenant_id != conversation.tenant_id
        or not user.active
        or not stored_role_names(db.session, user.id) & set(tenant_role_names())
    ):
        raise ValidationError(
            "Choose an active agent or tenant admin of this tenant.", "assignee_id"
        )
    return user


class ConversationApi(WofficeModelRestApi):
    """Conversations: agents read their own; tenant admins read all and set the status and
    the assignee."""

    datamodel = CappedCountInterface(Conversation)
    resource_name = "conversation"
    class_permission_name = "ConversationApi"
    include_route_methods = {"get", "get_list", "info", "put"}
    base_filters = [["assignee_id", FilterAssignedConversations, None]]
    base_order = ("id", "desc")
    list_columns = [
        "id",
        "contact.id",
        "contact.display_name",
        "contact.phone",
        "status",
        "assignee.id",
        "assignee.first_name",
        "assignee.last_name",
        "last_message_at",
    ]
    show_columns = [*list_columns, "created_at", "updated_at"]
    # The assignee is lazy-loaded, not joined: the guarantee layer's user criterion
    # renders the user table's own name, which breaks a join through FAB's alias.
    list_select_columns = [c for c in list_columns if not c.startswith("assignee.")]
    list_select_columns.append("assignee_id")
    show_select_columns = [*list_select_columns, "created_at", "updated_at"]
    add_columns = ["status"]  # no POST; keeps _info from listing every relation
    edit_columns = ["status", "assignee_id"]
    edit_model_schema = ConversationWriteSchema()
    search_columns = ["status", "assignee", "contact", "last_message_at"]
    order_columns = ["id", "status", "last_message_at"]

    def update_item(self, item: Conversation, values: dict[str, Any]) -> Conversation:
        if "status" in values:
            item.status = ConversationStatus(values["status"])
        if "assignee_id" in values:
            user_id = values["assignee_id"]
            item.assignee = None if user_id is None else _assignee(item, user_id)
        db.session.flush()
        return item


class MessageApi(WofficeModelRestApi):
    """Messages: read-only; agents see those of their own conversations."""

    datamodel = CappedCountInterface(Message)
    resource_name = "message"
    class_permission_name = "MessageApi"
    include_route_methods = {"get", "get_list", "info"}
    base_filters = [["conversation_id", FilterAssignedMessages, None]]
    base_order = ("id", "desc")
    list_columns = [
        "id",
        "conversation.id",
        "direction",
        "type",
        "body",
        "status",
        "wa_message_id",
        "created_at",
    ]
    show_columns = [
        *list_columns,
        "sent_at",
        "delivered_at",
        "read_at",
        "failed_at",
        "error_code",
        "error_title",
    ]
    add_columns = edit_columns = ["body"]
    search_columns = ["conversation", "direction", "status", "type", "body", "created_at"]
    order_columns = ["id", "created_at", "status"]


API_CLASSES = (ContactApi, TagApi, ConversationApi, MessageApi)
