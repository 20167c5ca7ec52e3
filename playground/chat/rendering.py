"""HTML fragments pushed over WebSockets, rendered from the same template partials as the
pages (one copy of the markup, autoescaped). chat/publish.py says which event sends which."""

from __future__ import annotations

from django.template.loader import render_to_string

from . import cost_selectors
from .models import ChatSession, FanOut, Message

TEMPLATE = "chat/session.html"
TREE_TEMPLATE = "chat/tree.html"
FANOUT_TEMPLATE = "chat/fanout.html"


def appended(*, messages: list[Message], branch_id: int, chat, replaced: tuple = ()) -> str:
    context = {"new_messages": messages, "branch_id": branch_id, "chat": chat, "replaced": replaced}
    return render_to_string(f"{TEMPLATE}#appended", context)


def message_replaced(*, message_id: int) -> str:
    message = Message.objects.select_related("turn").get(pk=message_id)
    return render_to_string(f"{TEMPLATE}#message-oob", {"message": message, "seq": 0, "text": message.content})


def delta(message_id: int, seq: int, text: str) -> str:
    # Numbers as strings: an int in a template is localized (number_format, the active
    # language through asgiref's Local), which was two thirds of this render, paid per frame.
    return render_to_string(f"{TEMPLATE}#delta", {"message_id": str(message_id), "seq": str(seq), "text": text})


def snapshot(*, message_id: int, seq: int, text: str) -> str:
    return render_to_string(f"{TEMPLATE}#snapshot", {"message_id": str(message_id), "seq": str(seq), "text": text})


def panel(*, session_id: int) -> str:
    # The partial needs only the id, and the panel's queries filter by it: no row to fetch.
    chat = ChatSession(pk=session_id)
    return render_to_string(f"{TEMPLATE}#panel", {"chat": chat, "panel": cost_selectors.session_panel(session=chat), "oob": True})


def live_turns(*, session_id: int) -> str:
    """The cost panel's in-progress rows (out of band): pushed once a checkpoint tick."""
    chat = ChatSession(pk=session_id)
    return render_to_string(f"{TEMPLATE}#live-turns", {"chat": chat, "live": cost_selectors.live_turns(session=chat), "oob": True})


def turn_ended(*, message_id: int, session_id: int) -> str:
    """A finished (or failed, stopped, swept) turn and the session's updated cost panel."""
    return message_replaced(message_id=message_id) + panel(session_id=session_id)


def regenerated(*, branch_id: int, old_id: int, message: Message, chat: ChatSession) -> str:
    """Tabs on the branch swap the old reply for the new one (other branches keep theirs)."""
    return render_to_string(
        f"{TREE_TEMPLATE}#regenerated", {"branch_id": branch_id, "old_id": old_id, "new_messages": [message], "chat": chat}
    )


def fanout_status(*, fanout: FanOut) -> str:
    return render_to_string(f"{FANOUT_TEMPLATE}#fanout-status", {"fanout": fanout, "oob": True})
