"""URLs for the per-message tree actions, built without a `reverse()` per message: a branch
page can show thousands of messages, each with three or four action URLs."""

from functools import cache

from django import template
from django.urls import reverse

register = template.Library()

_SESSION, _MESSAGE = 900000001, 900000002  # placeholders no real id collides with in a URL


@cache
def _pattern(name: str) -> str:
    url = reverse(name, kwargs={"session_id": _SESSION, "message_id": _MESSAGE})
    return url.replace(str(_SESSION), "{session}").replace(str(_MESSAGE), "{message}")


@register.simple_tag
def message_url(name: str, message) -> str:
    """The URL of a message-scoped view (`message-fork`, `message-edit`, ...) for `message`."""
    return _pattern(name).format(session=message.session_id, message=message.pk)
