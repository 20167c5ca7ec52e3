"""The tree view's graph is written in Python (playground/chat/tree_markup.py tree_graph_html) for
speed; it must be the markup the template wrote (tree_graph_reference.html is that template),
escape everything users typed, and link far-up nodes into the branch page's window (`?at=`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.db import connection
from django.template import engines
from django.test.utils import CaptureQueriesContext

from playground.chat import selectors, tree_markup
from playground.chat.models import Branch, Message, Turn

pytestmark = pytest.mark.django_db

REFERENCE = Path(__file__).with_name("tree_graph_reference.html")
EVIL = "<script>alert('x')</script> & \"quotes\""


def _msg(chat, parent, role, content, *, status=Message.Status.DONE, hit=None):
    message = Message.objects.create(
        session=chat, parent=parent, depth=parent.depth + 1 if parent else 0, role=role, content=content, status=status
    )
    if hit is not None:
        Turn.objects.create(message=message, session=chat, user=chat.owner, provider="simulator", api="chat",
                            model="gpt-4o-mini", hit_class=hit)
    return message


def _small_tree(chat):
    """Every feature of a row: roots and forks, heads (two on one node), the open branch, a
    node no branch shows (a form), cache marks of each kind, statuses, hostile text."""
    main = chat.branches.get()
    u1 = _msg(chat, None, "user", f"**Plan** a [trip](https://example.com) {EVIL}")
    a1 = _msg(chat, u1, "assistant", "Sure: three days.", hit="miss")
    u2 = _msg(chat, a1, "user", "Cheaper?")
    a2 = _msg(chat, u2, "assistant", "Hostels.", hit="hit")
    u2b = _msg(chat, a1, "user", "Longer?")
    a2b = _msg(chat, u2b, "assistant", "", status=Message.Status.FAILED, hit="partial")
    a2c = _msg(chat, u2, "assistant", "Camping.", status=Message.Status.STREAMING, hit="n/a")
    _msg(chat, a1, "user", "orphan, on no branch")
    _msg(chat, None, "user", "")  # a second root, empty text
    main.head = a2
    main.name = f"main {EVIL}"
    main.save()
    side = Branch.objects.create(session=chat, name="side <b>", head=a2b, parent_branch=main)
    Branch.objects.create(session=chat, name="also side", head=a2b)
    Branch.objects.create(session=chat, name="live", head=a2c)
    return main, side


def _normal(html: str) -> str:
    return re.sub(r">\s+<", "><", str(html)).strip()


def _reference(layout, chat, branch) -> str:
    template = engines["django"].from_string(REFERENCE.read_text())
    return template.render({"tree": layout, "chat": chat, "branch": branch, "csrf_token": "TOKEN"})


@pytest.mark.parametrize("open_side", [False, True])
def test_graph_markup_equals_the_templates(chat, open_side):
    main, side = _small_tree(chat)
    open_branch = side if open_side else main
    layout = selectors.session_tree(session=chat, open_branch=open_branch)
    ours = tree_markup.tree_graph_html(layout=layout, session=chat, csrf_token="TOKEN")
    assert _normal(ours) == _normal(_reference(layout, chat, open_branch))
    # What the page must contain: a link per node, the form for the orphan, the marks.
    assert ours.count('<li class="tree-row') == len(layout.nodes) == 9
    assert ours.count("<circle ") == 9 and ours.count("<path ") == 7
    assert ours.count('name="csrfmiddlewaretoken" value="TOKEN"') == 2  # the orphan and the second root
    for mark in ("cache-hit", "cache-miss", "cache-partial", "cache-na"):
        assert f'class="cache-mark {mark}"' in ours
    assert ">under minimum<" in ours and '<span class="badge warn">failed</span>' in ours
    assert '<span class="badge">streaming</span>' in ours
    assert ours.count('class="head-tag open"') == 1


def test_user_text_is_escaped(chat):
    main, _ = _small_tree(chat)
    html = str(tree_markup.tree_graph_html(layout=selectors.session_tree(session=chat, open_branch=main), session=chat, csrf_token='"><x'))
    assert "<script>" not in html and "<b>" not in html and '"><x' not in html
    assert "main &lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;quotes&quot;" in html
    assert "side &lt;b&gt;" in html
    assert 'value="&quot;&gt;&lt;x"' in html


def test_tree_page_renders_the_graph_in_a_constant_number_of_queries(client, chat, owner):
    main, _ = _small_tree(chat)
    client.force_login(owner)
    url = f"/sessions/{chat.pk}/tree/?branch={main.pk}"
    small = client.get(url)
    assert small.status_code == 200
    page = small.content.decode()
    assert page.count('<li class="tree-row') == 9 and "<script>alert" not in page
    assert re.search(rf'class="head-tag open" href="/sessions/{chat.pk}/b/{main.pk}/">main &lt;script&gt;', page)
    with CaptureQueriesContext(connection) as before:
        client.get(url)
    # Ten times the nodes, the same queries.
    a = Message.objects.filter(session=chat, content="Hostels.").get()
    parent = a
    for i in range(90):
        parent = _msg(chat, parent, "user" if i % 2 == 0 else "assistant", f"more {i}")
    Branch.objects.filter(pk=main.pk).update(head=parent)
    with CaptureQueriesContext(connection) as after:
        resp = client.get(url)
    assert resp.content.decode().count('<li class="tree-row') == 99
    assert len(after.captured_queries) == len(before.captured_queries)


def test_nodes_above_the_branch_pages_window_link_with_at(chat, settings):
    settings.PLAYGROUND_PAGE_MESSAGES = 3
    main = chat.branches.get()
    nodes, parent = [], None
    for i in range(6):
        parent = _msg(chat, parent, "user" if i % 2 == 0 else "assistant", f"m{i}")
        nodes.append(parent)
    main.head = parent
    main.save()
    html = str(tree_markup.tree_graph_html(layout=selectors.session_tree(session=chat, open_branch=main), session=chat, csrf_token="t"))
    base = f"/sessions/{chat.pk}/b/{main.pk}/"
    for depth, node in enumerate(nodes):
        # The branch page shows depths 3..5; 0..2 need ?at= to be shown.
        expected = f'{base}?at={node.pk}#msg-{node.pk}' if depth < 3 else f"{base}#msg-{node.pk}"
        assert f'<a class="node-link" href="{expected}">' in html, depth
