"""REST APIs over contacts, tags, conversations and messages (issues 4 and 9).

Each is a `WofficeModelRestApi` (`app.views.api_base`: session auth with CSRF, writes
through the services, 400 rather than 500 for bad input, tenant scoping). Agents see
only their conversations and those conversations' messages: the same base filters as
the screens, backed by the ORM criteria of `app.tenancy`.
"""

from __future__ import annotations

from typing import Any

from flask import Response
from flask_appbuilder.api import expose, protect, safe
from flask_appbuilder.models.filters import BaseFilter
from flask_appbuilder.models.sqla.interface import SQLAInterface
from flask_appbuilder.security.decorators import permission_name
from flask_login import current_user
from marshmallow import RAISE, Schema, fields
from marshmallow.validate import Length, OneOf
from sqlalchemy import func, select

from app.extensions import db
from app.models.contact import ConsentAction, ConsentSource, Contact, Tag
from app.models.conversation import Conversation, ConversationStatus, Message
from app.models.user import AppUser
from app.services import contacts
from app.services.consent import record_consent
from app.services.exceptions import ValidationError
from app.services.tenant_roles import assignable_role_names
from app.services.users import stored_role_names
from app.views._scale import CappedCountInterface
from app.views.api_base import Text, WofficeModelRestApi
from app.views.conversation import FilterAssignedConversations, FilterAssignedMessages


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
        or not stored_role_names(db.session, user.id)
        & set(assignable_role_names(db.session, conversation.tenant_id))
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
