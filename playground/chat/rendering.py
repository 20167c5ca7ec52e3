"""HTML fragments pushed over WebSockets, rendered from the same template partials as the
pages (one copy of the markup, autoescaped)."""

from __future__ import annotations

from django.template.loader import render_to_string

from .models import Message

TEMPLATE = "chat/session.html"


def appended(*, messages: list[Message], branch_id: int, chat) -> str:
    return render_to_string(f"{TEMPLATE}#appended", {"new_messages": messages, "branch_id": branch_id, "chat": chat})


def message_replaced(*, message_id: int) -> str:
    message = Message.objects.select_related("turn").get(pk=message_id)
    return render_to_string(f"{TEMPLATE}#message-oob", {"message": message, "seq": 0, "text": message.content})


def delta(message_id: int, seq: int, text: str) -> str:
    return render_to_string(f"{TEMPLATE}#delta", {"message_id": message_id, "seq": seq, "text": text})


def snapshot(*, message_id: int, seq: int, text: str) -> str:
    return render_to_string(f"{TEMPLATE}#snapshot", {"message_id": message_id, "seq": seq, "text": text})
