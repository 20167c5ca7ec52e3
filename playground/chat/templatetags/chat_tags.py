from django import template

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
