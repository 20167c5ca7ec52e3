"""URLs for the per-message tree actions, built without a `reverse()` per message: a branch
page can show thousands of messages, each with three or four action URLs."""

from django import template

from playground.chat.tree_markup import url_pattern

register = template.Library()


@register.simple_tag
def message_url(name: str, message) -> str:
    """The URL of a message-scoped view (`message-fork`, `message-edit`, ...) for `message`."""
    return url_pattern(name, "session_id", "message_id").format(session_id=message.session_id, message_id=message.pk)
