"""The chat page shows a window of a branch, never the whole path: the last
PLAYGROUND_PAGE_MESSAGES messages at any depth, and "Show earlier messages" loads the window
above, until the root. Window boundaries (exactly K, K+1, 2K+1 messages), order, no
duplicates, no gaps, constant queries at any depth, pages opened at a message above the last
window (`?at=`), sibling arrows inside earlier windows, and ownership of the new endpoint."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from playground.chat import selectors
from playground.chat.models import Branch, Message, Turn

pytestmark = pytest.mark.django_db

K = 5  # a small window, so the boundaries are cheap to build


@pytest.fixture(autouse=True)
def small_window(settings):
    settings.PLAYGROUND_PAGE_MESSAGES = K


@pytest.fixture
def signed_in(client, owner):
    client.force_login(owner)
    return client


def _chain(chat, length: int, *, parent: Message | None = None, turns: bool = False) -> list[int]:
    """A user/assistant chain of `length` nodes under `parent` (or from the root), bulk-inserted
    with explicit ids; the session's main branch points at its last node."""
    start = (Message.objects.order_by("-id").values_list("id", flat=True).first() or 0) + 1
    base = parent.depth + 1 if parent else 0
    nodes = [
        Message(
            id=start + i,
            session=chat,
            parent_id=(start + i - 1) if i else (parent.pk if parent else None),
            depth=base + i,
            role=Message.Role.USER if (base + i) % 2 == 0 else Message.Role.ASSISTANT,
            content=f"message number {base + i}",
        )
        for i in range(length)
    ]
    Message.objects.bulk_create(nodes, batch_size=2000)
    if turns:
        Turn.objects.bulk_create(
            [Turn(message=m, session=chat, user=chat.owner, provider="simulator", api="chat", model="gpt-4o-mini",
                  fingerprint={"blocks": ["h"] * 50}) for m in nodes if m.role == Message.Role.ASSISTANT]
        )
    if parent is None:
        Branch.objects.filter(session=chat, name="main").update(head_id=nodes[-1].id)
    return [n.id for n in nodes]


def _main(chat) -> Branch:
    return chat.branches.get(name="main")


def _shown(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<article class="msg [^"]*" id="msg-(\d+)"', html)]


def _controls(html: str) -> list[str]:
    """The "Show earlier messages" URLs in a page or fragment, in order."""
    return [u.replace("&amp;", "&") for u in re.findall(r'hx-get="([^"]*/earlier/[^"]*)"', html)]


def _page(client, chat, branch, query: str = "") -> str:
    resp = client.get(f"/sessions/{chat.pk}/b/{branch.pk}/{query}")
    assert resp.status_code == 200
    return resp.content.decode()


def _load_all_earlier(client, html: str) -> list[int]:
    """Click every "Show earlier messages" like the browser does (each control is replaced
    in place by what it loads); return the message ids in the order the thread shows them."""
    # Model the thread as a list of tokens: message ids and control URLs.
    tokens = re.findall(r'<article class="msg [^"]*" id="msg-(\d+)"|hx-get="([^"]*/earlier/[^"]*)"', html)
    thread: list[object] = [int(m) if m else url.replace("&amp;", "&") for m, url in tokens]
    clicks = 0
    while any(isinstance(t, str) for t in thread):
        i = next(i for i, t in enumerate(thread) if isinstance(t, str))
        resp = client.get(thread[i], HTTP_HX_REQUEST="true")
        assert resp.status_code == 200
        fragment = resp.content.decode()
        assert "<html" not in fragment, "a fragment, not a page"
        new = [int(m) if m else url.replace("&amp;", "&")
               for m, url in re.findall(r'<article class="msg [^"]*" id="msg-(\d+)"|hx-get="([^"]*/earlier/[^"]*)"', fragment)]
        thread[i:i + 1] = new
        clicks += 1
        assert clicks < 100
    return thread  # type: ignore[return-value]


# --- the selector ------------------------------------------------------------------------------


@pytest.mark.parametrize("length, rows, more", [(K - 1, K - 1, False), (K, K, False), (K + 1, K, True), (2 * K + 1, K, True)])
def test_window_boundaries(chat, length, rows, more):
    ids = _chain(chat, length)
    window = selectors.message_path_window(message_id=ids[-1], limit=K)
    assert [m.id for m in window.messages] == ids[-rows:]
    assert window.more is more
    assert window.hidden == length - rows


def test_window_stops_above_a_depth(chat):
    ids = _chain(chat, 3 * K)
    # The gap between a window ending at depth 3 and one starting at depth 2K: depths 4..2K-1.
    window = selectors.message_path_window(message_id=ids[2 * K - 1], limit=K, above_depth=3)
    assert [m.depth for m in window.messages] == list(range(K, 2 * K))
    assert window.more and window.hidden == K - 4
    last = selectors.message_path_window(message_id=ids[K - 1], limit=K, above_depth=3)
    assert [m.depth for m in last.messages] == [4] and not last.more


def test_window_is_one_query_at_depth_10_and_10000_and_skips_fingerprints(chat):
    ids = _chain(chat, 10_001, turns=True)
    for head in (ids[10], ids[10_000]):
        with CaptureQueriesContext(connection) as captured:
            window = selectors.message_path_window(message_id=head, limit=100)
            for m in window.messages:  # what the page reads of each message
                _ = m.role, m.content, m.status, m.depth, getattr(m, "turn", None)
        assert len(captured.captured_queries) == 1, captured.captured_queries
        assert "fingerprint" not in captured.captured_queries[0]["sql"], "a turn's fingerprint grows with depth"
        assert len(window.messages) == min(head - ids[0] + 1, 100)
    assert [m.id for m in window.messages] == ids[-100:]


def test_full_path_is_lean_and_one_query(chat):
    ids = _chain(chat, 2001)
    with CaptureQueriesContext(connection) as captured:
        path = selectors.message_path(message_id=ids[-1])
    assert len(captured.captured_queries) == 1
    assert [m.id for m in path] == ids and [m.depth for m in path] == list(range(2001))
    assert (path[0].role, path[0].content, path[0].parent_id) == ("user", "message number 0", None)
    assert not isinstance(path[0], Message), "tuples of the columns a request needs, not model instances"
    assert selectors.message_path(message_id=None) == []


# --- the page and "Show earlier messages" ----------------------------------------------------------


def test_exactly_k_messages_show_without_a_control(signed_in, chat):
    ids = _chain(chat, K)
    html = _page(signed_in, chat, _main(chat))
    assert _shown(html) == ids and _controls(html) == []
    assert "earlier message" not in html


def test_k_plus_one_shows_the_last_k_and_loads_the_first(signed_in, chat):
    ids = _chain(chat, K + 1)
    html = _page(signed_in, chat, _main(chat))
    assert _shown(html) == ids[1:]
    assert _controls(html) == [f"/sessions/{chat.pk}/m/{ids[1]}/earlier/"]
    assert "1 earlier message not shown" in html
    # The control comes first in the thread, before the first message shown.
    thread = html[html.index('data-thread'):]
    assert thread.index("data-earlier") < thread.index(f'id="msg-{ids[1]}"')
    fragment = signed_in.get(_controls(html)[0], HTTP_HX_REQUEST="true").content.decode()
    assert _shown(fragment) == [ids[0]] and _controls(fragment) == []


def test_two_k_plus_one_loads_two_windows_in_order_without_duplicates(signed_in, chat):
    ids = _chain(chat, 2 * K + 1)
    html = _page(signed_in, chat, _main(chat))
    assert _shown(html) == ids[K + 1:]
    first = signed_in.get(_controls(html)[0], HTTP_HX_REQUEST="true").content.decode()
    assert _shown(first) == ids[1:K + 1], "the K messages right above the window, oldest first"
    assert _controls(first) == [f"/sessions/{chat.pk}/m/{ids[1]}/earlier/"]
    assert "1 earlier message not shown" in first
    second = signed_in.get(_controls(first)[0], HTTP_HX_REQUEST="true").content.decode()
    assert _shown(second) == [ids[0]] and _controls(second) == []
    assert _load_all_earlier(signed_in, html) == ids


def test_every_message_of_a_long_branch_is_reachable_once(signed_in, chat):
    ids = _chain(chat, 7 * K + 3)
    assert _load_all_earlier(signed_in, _page(signed_in, chat, _main(chat))) == ids


def test_earlier_costs_the_same_queries_at_any_depth(signed_in, chat, owner):
    ids = _chain(chat, 3001)
    counts = []
    for anchor in (ids[2 * K], ids[3000]):
        url = f"/sessions/{chat.pk}/m/{anchor}/earlier/"
        signed_in.get(url)
        with CaptureQueriesContext(connection) as captured:
            resp = signed_in.get(url, HTTP_HX_REQUEST="true")
        assert resp.status_code == 200 and len(_shown(resp.content.decode())) == K
        counts.append(len(captured.captured_queries))
    assert counts[0] == counts[1], counts


def test_siblings_inside_an_earlier_window_keep_their_arrows(signed_in, chat, owner):
    ids = _chain(chat, 3 * K)
    # An alternative reply to the message at depth 2 (an assistant node at depth 3 exists).
    at3 = Message.objects.get(pk=ids[3])
    Message.objects.create(session=chat, parent_id=ids[2], depth=3, role=at3.role, content="another reply")
    html = _page(signed_in, chat, _main(chat))
    assert 'id="sib-' not in html, "the sibling point is above the last window"
    thread = _load_all_earlier(signed_in, html)
    assert thread == ids
    fragment = signed_in.get(f"/sessions/{chat.pk}/m/{ids[K]}/earlier/", HTTP_HX_REQUEST="true").content.decode()
    assert re.search(rf'id="sib-{ids[3]}".*?<span class="sib-pos">1/2</span>', fragment, re.S)


def test_a_streaming_head_still_streams_in_the_window(signed_in, chat):
    ids = _chain(chat, 2 * K)
    Message.objects.filter(pk=ids[-1]).update(status=Message.Status.STREAMING, content="partial text")
    Turn.objects.create(message_id=ids[-1], session=chat, user=chat.owner, provider="simulator", api="chat", model="gpt-4o-mini")
    html = _page(signed_in, chat, _main(chat))
    assert f'id="body-{ids[-1]}" data-seq="0">partial text<' in html
    assert "● streaming" in html


# --- opened at a message above the last window (`?at=`: tree links and sibling arrows) ---------------


def test_page_opened_at_a_message_above_the_window_shows_it_and_everything_stays_reachable(signed_in, chat):
    ids = _chain(chat, 6 * K)
    target = ids[7]
    html = _page(signed_in, chat, _main(chat), f"?at={target}")
    shown = _shown(html)
    assert target in shown
    low = 7 - max(1, K // 10)
    assert shown == ids[low:low + K] + ids[-K:], "a window from just above the message, then the last window"
    controls = _controls(html)
    assert controls == [
        f"/sessions/{chat.pk}/m/{ids[low]}/earlier/",
        f"/sessions/{chat.pk}/m/{ids[-K]}/earlier/?after={ids[low + K - 1]}",
    ]
    assert f"{low} earlier messages not shown" in html
    assert f"{len(ids) - K - (low + K)} earlier messages not shown" in html
    assert _load_all_earlier(signed_in, html) == ids, "the gap fills in without repeating what the page shows"


def test_at_is_ignored_when_the_message_is_not_on_the_branch(signed_in, chat, owner, make_session):
    ids = _chain(chat, 4 * K)
    side = Message.objects.create(session=chat, parent_id=ids[3], depth=4, role="user", content="a side question")
    other, _ = make_session(owner)
    elsewhere = Message.objects.create(session=other, depth=0, role="user", content="another session")
    plain = _shown(_page(signed_in, chat, _main(chat)))
    for at in (side.pk, elsewhere.pk, ids[-1], 10**12, "x"):
        assert _shown(_page(signed_in, chat, _main(chat), f"?at={at}")) == plain == ids[-K:]


def test_open_redirects_to_the_message_with_at(signed_in, chat, owner):
    ids = _chain(chat, 4 * K)
    resp = signed_in.post(f"/sessions/{chat.pk}/m/{ids[2]}/open/", HTTP_HX_REQUEST="true")
    assert resp.status_code == 200
    url = resp["HX-Redirect"]
    assert url == f"/sessions/{chat.pk}/b/{_main(chat).pk}/?at={ids[2]}#msg-{ids[2]}"
    assert ids[2] in _shown(_page(signed_in, chat, _main(chat), f"?at={ids[2]}"))


# --- ownership -------------------------------------------------------------------------------------


def test_earlier_is_the_owners_only(client, chat, make_user, make_session):
    ids = _chain(chat, 3 * K)
    intruder = make_user("window-intruder")
    own, _ = make_session(intruder)
    mine = Message.objects.create(session=own, depth=0, role="user", content="intruder's own")
    url = f"/sessions/{chat.pk}/m/{ids[-1]}/earlier/"
    assert client.get(url).status_code == 302  # anonymous: to the sign-in page
    client.force_login(intruder)
    assert client.get(url).status_code == 404
    # Their own session with the owner's message id, or the owner's id as `after`: not found.
    assert client.get(f"/sessions/{own.pk}/m/{ids[-1]}/earlier/").status_code == 404
    client.force_login(chat.owner)
    resp = client.get(f"{url}?after={mine.pk}")
    assert resp.status_code == 404
    assert client.post(url).status_code == 405


def test_the_page_never_reads_fingerprints(signed_in, chat):
    """A turn's fingerprint grows with the conversation; neither the window nor the cost
    panel (which adds up every finished turn in the database) needs it."""
    from django.utils import timezone

    _chain(chat, 4 * K, turns=True)
    Turn.objects.filter(session=chat).update(requested_at=timezone.now(), finished_at=timezone.now(), usage_reported=True,
                                             prompt_tokens=100, cached_tokens=50, output_tokens=10)
    with CaptureQueriesContext(connection) as captured:
        html = _page(signed_in, chat, _main(chat))
    assert "<dt>requests</dt><dd>10</dd>" in html, "the panel counted the finished turns"
    window = [q["sql"] for q in captured.captured_queries if "RECURSIVE" in q["sql"]]
    money = [q["sql"] for q in captured.captured_queries if '"finished_at" IS NOT NULL' in q["sql"]]
    sidebar = [sql for sql in money if sql.startswith('SELECT "chat_chatsession"')]  # the session list's spend
    panel = [sql for sql in money if sql not in sidebar]
    assert len(window) == 1 and len(panel) == 4  # the window; the panel: sums, chart, key warmth (2)
    assert len(sidebar) == 1
    assert not [sql for sql in window + panel + sidebar if "fingerprint" in sql]
