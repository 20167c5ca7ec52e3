"""Template helpers of the lab page."""

from django import template

register = template.Library()


@register.simple_tag
def measured(live, row):
    """The live A/B copy that ran `row`'s scope and retention, if the latest run had one."""
    return live.for_row(row.scenario.scope, row.scenario.retention) if live else None
