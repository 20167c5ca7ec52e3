from django import template
from django.utils import timezone

from playground.caching.pricing import format_usd
from playground.chat.markdown import render_markdown

register = template.Library()


@register.filter
def markdown(text: str):
    return render_markdown(text)


@register.filter
def usd(amount):
    return format_usd(amount)


@register.filter
def share(part, whole):
    """`part` as a percentage of `whole`, for display ("62%")."""
    if not whole or part is None:
        return "0%"
    return f"{100 * part / whole:.0f}%"


@register.filter
def pct(ratio):
    """A 0..1 ratio as a whole percentage ("62%")."""
    return f"{100 * (ratio or 0):.0f}%"


@register.filter
def since(moment):
    """How long ago an aware datetime was ("just now", "3 min ago")."""
    from django.utils import timezone

    delta = timezone.now() - moment
    return "just now" if delta.total_seconds() < 60 else f"{ago(delta)} ago"


@register.filter
def ago(delta):
    """A timedelta as a short idle time ("40 s", "3 min", "2 h")."""
    seconds = int(delta.total_seconds())
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"


@register.filter
def last_active(moment):
    """The session list's last activity, short ("just now", "4 min ago", "3 h ago", "2 d
    ago"), then the date."""
    if moment is None:
        return ""
    seconds = int((timezone.now() - moment).total_seconds())
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400:
        return f"{seconds // 3600} h ago"
    if seconds < 7 * 86400:
        return f"{seconds // 86400} d ago"
    return timezone.localtime(moment).strftime("%d %b %Y").lstrip("0")


@register.filter
def key_words(key, mode: str = "own"):
    """A prompt_cache_key named in words by its scope ("this session's key", "your user
    key"); `"listed"` for one of a session's keys shown side by side ("a branch's key")."""
    from playground.caching.reasons import key_words as words

    return words(key or None, own=None if mode == "listed" else True)
