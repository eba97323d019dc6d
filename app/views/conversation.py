"""Conversations and messages screens (P8, P14).

Agents see only the conversations assigned to them (and their messages) unless a role
grants "view all conversations" (``can_view_all`` on Conversations: Tenant Admin has it,
Agent does not). Both layers apply it: a base filter here, and the ORM criteria that
`app.tenancy` adds for such requests. Message bodies and profile names are untrusted
input: templates autoescape them.

Replying (``can_reply``): the show page offers free-form text inside the contact's
24-hour window and an approved template otherwise; `app.services.replies` checks the
rules again on every POST. The Cloud API call is made in the request, after the pending
message is committed and before the outcome is, so the agent sees the result at once and
no transaction waits on WhatsApp. Only a tenant's own team replies: platform staff, who
may read every tenant's conversations, cannot speak for a business.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flask import abort, flash, redirect, request, url_for
from flask_appbuilder import expose
from flask_appbuilder.models.filters import BaseFilter
from flask_appbuilder.security.decorators import has_access
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select

from app.extensions import db
from app.models.campaign import MessageTemplate
from app.models.conversation import Conversation, Message
from app.services import audit, replies
from app.services.campaigns import mapping_key, template_variables
from app.services.templates import render_template_text
from app.tenancy import TenantModelView, can_view_all_conversations, current_tenant_id
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


@dataclass
class ReplyPanel:
    """What the show page offers for replying to one conversation."""

    window_open: bool
    closes_at: datetime | None
    form: FlaskForm
    templates: list[MessageTemplate] = field(default_factory=list)
    chosen: MessageTemplate | None = None
    variables: list[tuple[str, str, str]] = field(default_factory=list)  # key, name, part
    preview: str = ""


def reply_panel(conversation: Conversation, chosen_id: Any = None) -> ReplyPanel:
    """The reply form of the show page: text in the window, else a template to fill."""
    contact = conversation.contact
    panel = ReplyPanel(
        window_open=replies.window_open(contact),
        closes_at=replies.window_closes_at(contact),
        form=FlaskForm(),
    )
    if panel.window_open:
        return panel
    panel.templates = replies.sendable_templates(db.session, conversation.tenant_id)
    panel.chosen = next((t for t in panel.templates if str(t.id) == str(chosen_id)), None)
    if panel.chosen is not None:
        panel.variables = [
            (mapping_key(part, name), name, part) for part, name in template_variables(panel.chosen)
        ]
        panel.preview = render_template_text(panel.chosen.components)
    return panel


class ConversationModelView(TenantModelView):
    datamodel = CappedCountInterface(Conversation, eager=("contact", "assignee"))
    class_permission_name = "Conversations"
    route_base = "/conversations"
    list_title = "Conversations"
    show_title = "Conversation"
    edit_title = "Edit conversation"
    show_template = "woffice/conversation_show.html"
    # can_view_all: no endpoint; a role holding it sees every conversation of its tenant.
    # can_reply: send a text or template reply from the show page (`reply`).
    base_permissions = ["can_list", "can_show", "can_edit", "can_view_all", "can_reply"]
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

    @expose("/show/<pk>", methods=["GET"])
    @has_access
    def show(self, pk: Any) -> Any:
        """FAB's show page plus the reply panel (for the tenant's team with can_reply)."""
        conversation = self._get_or_404(pk)
        panel = None
        if self._may_reply():
            panel = reply_panel(conversation, request.args.get("template"))
        widgets = self._show(conversation.id)
        return self.render_template(
            self.show_template,
            pk=conversation.id,
            title=self.show_title,
            widgets=widgets,
            related_views=self._related_views,
            reply=panel,
        )

    @expose("/<int:pk>/reply", methods=["POST"])
    @has_access
    def reply(self, pk: int) -> Any:
        """Send the agent's text (in the window) or template; the outcome is flashed."""
        conversation = self._get_or_404(pk)
        back = redirect(url_for(".show", pk=conversation.id))
        if not self._may_reply():
            abort(403)
        if not FlaskForm().validate_on_submit():
            abort(400, description="The form expired; reload the page and try again.")
        try:
            prepared = self._prepare(conversation)
        except replies.ReplyRefusedError as exc:
            db.session.rollback()
            audit.record("conversation.reply_refused", conversation, reason=exc.reason)
            db.session.commit()
            flash(str(exc), "danger")
            return back
        db.session.commit()  # the pending message exists before the request leaves
        delivery = replies.deliver(prepared)  # no row is read or written during the call
        replies.record_delivery(db.session, prepared, delivery)
        db.session.commit()
        if delivery.wamid:
            flash("Message sent to WhatsApp.", "success")
        else:
            flash(replies.failure_message(delivery), "danger")
        return back

    def _prepare(self, conversation: Conversation) -> replies.PreparedReply:
        if request.form.get("kind") == "template":
            try:
                template_id = int(request.form.get("template_id", ""))
            except ValueError:
                raise replies.ReplyRefusedError(
                    "Choose one of the approved templates.", "template_not_approved"
                ) from None
            values = {
                key.removeprefix("var-"): value
                for key, value in request.form.items()
                if key.startswith("var-")
            }
            return replies.prepare_template_reply(db.session, conversation, template_id, values)
        return replies.prepare_text_reply(db.session, conversation, request.form.get("text", ""))

    def _may_reply(self) -> bool:
        """A tenant user whose roles grant can_reply (platform staff never reply)."""
        return current_tenant_id() is not None and bool(
            self.appbuilder.sm.has_access("can_reply", self.class_permission_name)
        )

    def pre_update(self, item: Conversation) -> None:
        super().pre_update(item)
        # Agents change the status of their conversations; only "view all" reassigns.
        # (The form sets the relationship; assignee_id follows only at flush.)
        assignee_id = item.assignee.id if item.assignee is not None else None
        if not can_view_all_conversations() and assignee_id != current_user.id:
            db.session.rollback()
            raise PermissionError("Only a tenant admin can reassign a conversation.")


class MessageModelView(TenantModelView):
    datamodel = CappedCountInterface(Message, eager=("conversation",))
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
