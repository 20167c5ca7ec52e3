"""The tree view's markup, written in Python from a `tree.TreeLayout`, and the
per-route URL patterns that let a page link thousands of nodes or messages cheaply."""

from __future__ import annotations

from functools import cache

from django.conf import settings
from django.urls import reverse
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import slugify

from .models import ChatSession
from .tree import TreeLayout

# The SVG and one row per node, written here rather than by a template loop: at 2,000 nodes
# the template spent ~0.3 s on per-node tag work (a reverse() per link, filters, lookups).
# The markup is the same as the template wrote. Every user-supplied string (snippets, branch
# names) and every attribute value goes through `escape`; numbers are formatted from ints.

_PLACEHOLDER_A, _PLACEHOLDER_B = 900000001, 900000002  # ids no real id collides with in a URL


@cache
def url_pattern(name: str, first: str, second: str) -> str:
    """A route's URL with `{first}`/`{second}` where its two ids go, for str.format: one
    reverse() per route, not one per node or message (a page can link thousands)."""
    url = reverse(name, kwargs={first: _PLACEHOLDER_A, second: _PLACEHOLDER_B})
    return url.replace(str(_PLACEHOLDER_A), "{%s}" % first).replace(str(_PLACEHOLDER_B), "{%s}" % second)


_HIT_LABEL = {"n/a": "under minimum"}


@cache
def _hit_slug(hit: str) -> str:
    return escape(slugify(hit))


def tree_graph_html(*, layout: TreeLayout, session: ChatSession, csrf_token: str, page_messages: int | None = None) -> SafeString:
    """The tree view's graph (SVG edges and nodes) and its rows (a link per node), as HTML.

    A node's link opens the branch that shows it at `#msg-<id>`, with `?at=<id>` when the
    node is further above that branch's head than the branch page's window reaches, so the
    page opens a window at it. Nodes no branch shows get a form that opens one there.
    """
    limit = settings.PLAYGROUND_PAGE_MESSAGES if page_messages is None else page_messages
    branch_url = url_pattern("branch", "session_id", "branch_id")
    open_url = url_pattern("message-open", "session_id", "message_id")
    sid = int(session.pk)
    open_id = layout.open_branch.pk if layout.open_branch is not None else None
    by_id = {n.id: n for n in layout.nodes}
    head_depth = {b.pk: by_id[b.head_id].depth for b in layout.branches if b.head_id in by_id}
    csrf_input = f'<input type="hidden" name="csrfmiddlewaretoken" value="{escape(csrf_token)}">'
    width, height = int(layout.width), int(layout.height)

    out = [
        f'<svg class="tree-svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" aria-hidden="true">'
    ]
    for d, on_open in layout.edges:
        out.append(f'<path class="edge{" open" if on_open else ""}" d="{escape(d)}"></path>')
    for n in layout.nodes:
        classes = f"node node-{escape(n.role)}"
        if n.on_open_path:
            classes += " open"
        if n.heads:
            classes += " head"
        if n.hit:
            classes += f" hit-{_hit_slug(n.hit)}"
        out.append(f'<circle class="{classes}" cx="{int(n.cx)}" cy="{int(n.cy)}" r="{6 if n.heads else 4}"></circle>')
    out.append('</svg>\n<ol class="tree-rows">')
    for n in layout.nodes:
        nid = int(n.id)
        row = [
            f'<li class="tree-row{" on-open" if n.on_open_path else ""}" id="node-{nid}" data-node="{nid}" '
            f'data-branch="{int(n.branch_id) if n.branch_id else ""}">'
        ]
        if n.branch_id:
            href = branch_url.format(session_id=sid, branch_id=int(n.branch_id))
            if head_depth.get(n.branch_id, n.depth) - n.depth >= limit:
                href += f"?at={nid}"
            row.append(f'<a class="node-link" href="{href}#msg-{nid}">')
        else:
            row.append(
                f'<form class="inline" method="post" action="{open_url.format(session_id=sid, message_id=nid)}">{csrf_input}'
                '<button class="link node-link" type="submit" title="No branch shows this message: open one here">'
            )
        role = escape(n.role)
        row.append(
            f'<span class="node-role node-role-{role}">{"you" if n.role == "user" else "ai"}</span>'
            f'<span class="node-depth">#{int(n.depth) + 1}</span>'
            f'<span class="node-text">{escape(n.snippet) if n.snippet else "…"}</span>'
        )
        if n.hit:
            label = escape(_HIT_LABEL.get(n.hit, n.hit))
            row.append(f'<span class="cache-mark cache-{_hit_slug(n.hit)}" title="prompt cache for this turn">{label}</span>')
        row.append("</a>" if n.branch_id else "</button></form>")
        if n.status != "done":
            warn = "" if n.status in ("pending", "streaming") else " warn"
            row.append(f'<span class="badge{warn}">{escape(n.status)}</span>')
        for b in n.heads:
            current = " open" if open_id is not None and b.pk == open_id else ""
            row.append(f'<a class="head-tag{current}" href="{branch_url.format(session_id=sid, branch_id=int(b.pk))}">{escape(b.name)}</a>')
        row.append("</li>")
        out.append("".join(row))
    out.append("</ol>")
    # Safe: built only from escaped strings, ints and this function's own literals.
    return mark_safe("\n".join(out))
