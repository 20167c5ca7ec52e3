"""HTML fragments pushed over WebSockets, rendered from the same template partials as the
pages (one copy of the markup, autoescaped). chat/publish.py says which event sends which."""

from __future__ import annotations

from functools import cache

from django.template.loader import render_to_string
from django.utils.html import escape

from . import cost_selectors, selectors
from .models import ChatSession, FanOut, Message

TEMPLATE = "chat/session.html"
TREE_TEMPLATE = "chat/tree.html"
FANOUT_TEMPLATE = "chat/fanout.html"


def appended(*, messages: list[Message], branch_id: int, chat, replaced: tuple = ()) -> str:
    context = {"new_messages": messages, "branch_id": branch_id, "chat": chat, "replaced": replaced}
    return render_to_string(f"{TEMPLATE}#appended", context)


def message_replaced(*, message_id: int) -> str:
    message = selectors.message_shown(message_id=message_id)
    if message is None:
        raise Message.DoesNotExist(f"message {message_id} is gone")
    return render_to_string(f"{TEMPLATE}#message-oob", {"message": message, "seq": 0, "text": message.content})


# Stand-ins rendered through the `#delta` partial once, to find where its three values go
# (control characters: the partial's markup has none, and autoescaping leaves them as they are).
_ID, _SEQ, _TEXT = "\x01id\x01", "\x01seq\x01", "\x01text\x01"


@cache
def _delta_parts() -> tuple[str, str, str, str]:
    """The `#delta` partial cut at its three values: the markup stays in the template, and a
    frame costs a join instead of a template render (25 us, paid per frame of every reply)."""
    html = render_to_string(f"{TEMPLATE}#delta", {"message_id": _ID, "seq": _SEQ, "text": _TEXT})
    head, rest = html.split(_ID)
    middle, rest = rest.split(_SEQ)
    before_text, tail = rest.split(_TEXT)
    return head, middle, before_text, tail


def delta(message_id: int, seq: int, text: str) -> str:
    """One delta frame: the `#delta` partial with these values, the text escaped as the
    template escapes it (tests/unit/test_frame_sender.py checks both are the same)."""
    head, middle, before_text, tail = _delta_parts()
    return f"{head}{int(message_id)}{middle}{int(seq)}{before_text}{escape(text)}{tail}"


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
