"""Conversations and messages screens (P8, P14).

Agents see only the conversations assigned to them (and their messages) unless a role
grants "view all conversations" (``can_view_all`` on Conversations: Tenant Admin has it,
Agent does not). Both layers apply it: a base filter here, and the ORM criteria that
`app.tenancy` adds for such requests. Message bodies and profile names are untrusted
input: templates autoescape them.
"""

from __future__ import annotations

from typing import Any

from flask_appbuilder.models.filters import BaseFilter
from flask_login import current_user
from sqlalchemy import select

from app.extensions import db
from app.models.conversation import Conversation, Message
from app.tenancy import TenantModelView, can_view_all_conversations
from app.views._format import ist
from app.views._scale import CappedCountInterface


class FilterAssignedConversations(BaseFilter):
    """Base filter: an agent's own conversations; everything with "view all"."""

    name = "Assigned to me"
    arg_name = "assigned_scope"

    def apply(self, query: Any, value: Any) -> Any:
        if can_view_all_conversations():
            return query
        return query.filter(self.model.assignee_id == current_user.id)


class FilterAssignedMessages(BaseFilter):
    """Base filter: messages of an agent's own conversations; all with "view all"."""

    name = "In my conversations"
    arg_name = "assigned_messages_scope"

    def apply(self, query: Any, value: Any) -> Any:
        if can_view_all_conversations():
            return query
        mine = select(Conversation.id).where(Conversation.assignee_id == current_user.id)
        return query.filter(self.model.conversation_id.in_(mine))


def conversation_messages(pk: Any) -> list[Message]:
    """The messages of conversation ``pk``, oldest first (for its show page)."""
    return list(
        db.session.scalars(
            select(Message)
            .where(Message.conversation_id == pk)
            .order_by(Message.created_at, Message.id)
        )
    )


class ConversationModelView(TenantModelView):
    datamodel = CappedCountInterface(Conversation)
    class_permission_name = "Conversations"
    route_base = "/conversations"
    list_title = "Conversations"
    show_title = "Conversation"
    edit_title = "Edit conversation"
    show_template = "woffice/conversation_show.html"
    # can_view_all: no endpoint; a role holding it sees every conversation of its tenant.
    base_permissions = ["can_list", "can_show", "can_edit", "can_view_all"]
    base_filters = [["assignee_id", FilterAssignedConversations, None]]
    base_order = ("last_message_at", "desc")
    list_columns = ["contact", "status", "assignee", "last_message_at"]
    show_columns = ["contact", "status", "assignee", "last_message_at", "created_at"]
    edit_columns = ["status", "assignee"]
    search_columns = ["status", "assignee", "last_message_at"]
    label_columns = {"last_message_at": "Last message", "created_at": "Opened"}
    formatters_columns = {"last_message_at": ist, "created_at": ist}
    edit_row_message = "Conversation saved."

    def __init__(self, **kwargs: Any) -> None:
        self.extra_args = {
            **(self.extra_args or {}),
            "conversation_messages": conversation_messages,
        }
        super().__init__(**kwargs)

    def pre_update(self, item: Conversation) -> None:
        super().pre_update(item)
        # Agents change the status of their conversations; only "view all" reassigns.
        # (The form sets the relationship; assignee_id follows only at flush.)
        assignee_id = item.assignee.id if item.assignee is not None else None
        if not can_view_all_conversations() and assignee_id != current_user.id:
            db.session.rollback()
            raise PermissionError("Only a tenant admin can reassign a conversation.")


class MessageModelView(TenantModelView):
    datamodel = CappedCountInterface(Message)
    class_permission_name = "Messages"
    route_base = "/messages"
    list_title = "Messages"
    show_title = "Message"
    base_permissions = ["can_list", "can_show"]
    base_filters = [["conversation_id", FilterAssignedMessages, None]]
    base_order = ("created_at", "desc")
    list_columns = ["conversation", "direction", "type", "body", "status", "created_at"]
    show_columns = [
        "conversation",
        "direction",
        "type",
        "body",
        "status",
        "wa_message_id",
        "sent_at",
        "delivered_at",
        "read_at",
        "failed_at",
        "error_code",
        "error_title",
        "created_at",
    ]
    search_columns = ["direction", "status", "type", "body", "created_at"]
    label_columns = {"created_at": "When", "wa_message_id": "WhatsApp message id"}
    formatters_columns = {
        "created_at": ist,
        "sent_at": ist,
        "delivered_at": ist,
        "read_at": ist,
        "failed_at": ist,
    }
