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
