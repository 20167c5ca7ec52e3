"""The session list (issue 18 point 6) and "never two user turns in a row" (point 7), against a
real database and the real views (no upstream: jobs are captured, replies finished by hand).

* The list: most recent activity first (a send moves a session up; renaming or changing
  settings does not), each session's spend equal to its cost panel's total (Decimal, exact),
  search by title and message text with a snippet, ONE query at 3 sessions and at 40.
* Rename inline (the entry, the page's heading), delete with Undo (hidden at once, replies
  stopped, spend still counted), the purge after the Undo window (spend carried).
* Fork at one's own message opens above it with the message as the draft; a send after an
  unanswered message replaces it (the path never has two user messages in a row).

`test_the_same_on_postgresql` runs the module again on PostgreSQL (marked integration).
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from playground.chat import branching, budgets, cost_selectors, outbox, selectors, services, turns
from playground.chat.errors import ChatError
from playground.chat.models import ChatSession, DeletedSpend, Message, Turn
from playground.chat.outbox import TurnStarted
from tests.harness.postgres import pytest_on_postgresql

KEY = "sk-test-session-list-0001"
AMOUNTS = [Decimal("0.1"), Decimal("0.000000000001"), Decimal("123.456789012345"), Decimal("0.333333333333")]


@pytest.fixture(autouse=True)
def roomy_limits(settings):
    """Many sends in a few milliseconds: the per-user rate limits are not under test here."""
    settings.PLAYGROUND_USER_RPM = 10_000
    settings.PLAYGROUND_USER_CONCURRENCY = 10_000


@pytest.fixture
def alice(make_user):
    return make_user("alice", key=KEY)


@pytest.fixture
def new_chat(make_session, alice):
    def make(title: str | None = None, user=None):
        chat, branch = make_session(user or alice, provider="openai", model="gpt-4o-mini")
        if title:
            chat.title = title
            chat.save()
        return chat, branch

    return make


def send(chat, branch, user, text) -> Turn:
    branch.refresh_from_db()
    return services.message_send(session=chat, branch=branch, user=user, content=text)


def finish(turn: Turn, *, cost: Decimal | None = None, status="done", text="an answer", **fields) -> None:
    """End a turn as the generation job would."""
    now = timezone.now()
    values = {"requested_at": now, "finished_at": now, "billed": True, "usage_reported": True, "outcome": "ok",
              "prompt_tokens": 10, "cached_tokens": 0, "output_tokens": 5, **fields}
    if cost is not None:
        values |= {"price_known": True, "cost_actual": cost, "cost_uncached": cost * 2}
    Turn.objects.filter(pk=turn.pk).update(**values)
    Message.objects.filter(pk=turn.message_id).update(status=status, content=text)


def fail(turn: Turn) -> None:
    """The reply failed with nothing (e.g. a 500 before any token)."""
    finish(turn, status="failed", text="", billed=False, usage_reported=False, outcome="error", error_message="The provider had an error (500)")


def listed(user, query="") -> list[str]:
    return [s.title for s in selectors.session_list(user=user, query=query).sessions]


# --- order, spend, one query -----------------------------------------------------------------


@pytest.mark.django_db
def test_most_recent_activity_first_and_a_send_moves_a_session_up(alice, new_chat):
    a, a_main = new_chat("A")
    b, b_main = new_chat("B")
    c, _ = new_chat("C")
    finish(send(a, a_main, alice, "first"))
    finish(send(b, b_main, alice, "second"))
    Message.objects.filter(session=a).update(created_at=timezone.now() - timedelta(minutes=5))
    Message.objects.filter(session=b).update(created_at=timezone.now() - timedelta(minutes=3))
    ChatSession.objects.filter(pk=c.pk).update(created_at=timezone.now() - timedelta(hours=1))
    assert listed(alice) == ["B", "A", "C"]

    services.session_update(session=c, changes={"temperature": 0.5})  # settings are not activity
    services.session_rename(session=c, title="C renamed")  # nor is a rename
    assert listed(alice) == ["B", "A", "C renamed"]

    send(a, a_main, alice, "again")
    assert listed(alice) == ["A", "B", "C renamed"], "sending moves the session to the top"


@pytest.mark.django_db
def test_each_sessions_spend_is_its_cost_panels_total_in_decimal(alice, new_chat, make_user):
    a, a_main = new_chat("A")
    b, _ = new_chat("B")
    for amount in AMOUNTS:
        finish(send(a, a_main, alice, f"costs {amount}"), cost=amount)
    finish(send(a, a_main, alice, "unpriced"))  # usage but no price: left out, as the panel does
    send(a, a_main, alice, "still running")  # not finished: not counted yet
    other, other_main = new_chat("theirs", user=make_user("bob", key=KEY))
    finish(send(other, other_main, other.owner, "x"), cost=Decimal("9"))

    rows = {s.title: s for s in selectors.session_list(user=alice).sessions}
    panel = cost_selectors.session_panel(session=a).totals.money.actual
    assert isinstance(rows["A"].spend, Decimal)
    assert rows["A"].spend == panel == sum(AMOUNTS) == Decimal("123.890122345679")
    assert rows["B"].spend == Decimal(0)
    # The unpriced attempt is said, as the panel says it, not hidden in a bare total.
    assert rows["A"].unpriced and not rows["B"].unpriced
    assert cost_selectors.session_panel(session=a).totals.money.unpriced_count == 1
    assert "theirs" not in rows


def _sessions_with_turns(user, new_chat, n: int) -> None:
    for i in range(n):
        chat, main = new_chat(f"s{i}")
        finish(send(chat, main, user, f"message {i}"), cost=Decimal("0.001"))


@pytest.mark.django_db
@pytest.mark.parametrize("query", ["", "message", "s1"])
def test_the_list_is_one_query_at_3_sessions_and_at_40(alice, new_chat, make_user, query):
    _sessions_with_turns(alice, new_chat, 3)
    with CaptureQueriesContext(connection) as few:
        small = selectors.session_list(user=alice, query=query)
    bob = make_user("bob", key=KEY)
    _sessions_with_turns(bob, lambda title: new_chat(title, user=bob), 40)
    with CaptureQueriesContext(connection) as many:
        large = selectors.session_list(user=bob, query=query)
    assert len(few.captured_queries) == len(many.captured_queries) == 1
    assert len(large.sessions) >= (40 if query != "s1" else 11) and all(s.spend == Decimal("0.001") for s in large.sessions)
    assert small.sessions


@pytest.mark.django_db
def test_the_sidebar_costs_the_same_number_of_queries_at_3_sessions_and_at_40(client, alice, new_chat):
    _sessions_with_turns(alice, new_chat, 3)
    chat, main = new_chat("open one")
    client.force_login(alice)
    url = f"/sessions/{chat.pk}/b/{main.pk}/"
    client.get(url)
    with CaptureQueriesContext(connection) as few:
        assert client.get(url).status_code == 200
    _sessions_with_turns(alice, new_chat, 37)
    with CaptureQueriesContext(connection) as many:
        page = client.get(url).content.decode()
    assert len(few.captured_queries) == len(many.captured_queries)
    assert page.count('class="session-item') == 41
    assert "{#" not in page and "{%" not in page, "no template comment leaks into the page"


@pytest.mark.django_db
def test_the_list_shows_at_most_the_limit_and_says_so(alice, new_chat):
    for i in range(4):
        new_chat(f"s{i}")
    shown = selectors.session_list(user=alice, limit=3)
    assert len(shown.sessions) == 3 and shown.more
    assert not selectors.session_list(user=alice, limit=4).more


# --- search ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_search_finds_titles_and_message_text_with_a_snippet(alice, new_chat, make_user):
    trip, trip_main = new_chat("Trip to Lisbon")
    recipe, recipe_main = new_chat("Dinner")
    new_chat("Unrelated")
    long_text = "x " * 60 + "The SECRET sauce is 50% butter_and more " + "y " * 80
    send(recipe, recipe_main, alice, long_text)
    send(trip, trip_main, alice, "Where to eat? Something with a secret view.")
    bob_chat, bob_main = new_chat("Secret of bob", user=make_user("bob", key=KEY))
    send(bob_chat, bob_main, bob_chat.owner, "secret")

    assert set(listed(alice, "lisbon")) == {"Trip to Lisbon"}, "titles, case-insensitive"
    found = {s.title: s for s in selectors.session_list(user=alice, query="  secret ").sessions}
    assert set(found) == {"Trip to Lisbon", "Dinner"}, "message text; another user's sessions never"
    snippet = found["Dinner"].snippet
    assert snippet.match == "SECRET" and snippet.cut_start, "the match as written, with where it was"
    assert snippet.before.endswith("x The ") and snippet.after.startswith(" sauce is 50% butter_and")
    assert len(snippet.before) <= 40
    assert set(listed(alice, "50% butter_")) == {"Dinner"}, "% and _ are literal"
    assert listed(alice, "50%% butter") == []
    assert found["Trip to Lisbon"].snippet.match == "secret"


@pytest.mark.django_db
def test_the_search_box_answers_over_htmx_with_the_snippet_marked_and_escaped(client, alice, new_chat):
    chat, main = new_chat("Plain title")
    send(chat, main, alice, "before <b>needle</b> after")
    client.force_login(alice)
    html = client.get("/sessions/list/", {"q": "needle", "current": str(chat.pk)}, HTTP_HX_REQUEST="true").content.decode()
    assert 'id="session-list"' in html and "1 session matching “needle”" in html
    assert "before &lt;b&gt;<mark>needle</mark>&lt;/b&gt; after" in html
    assert 'aria-current="page"' in html
    assert "No session has “nothing here”" in client.get("/sessions/list/", {"q": "nothing here"}).content.decode()


# --- rename ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_rename_inline_saves_and_retitles_the_page_showing_it(client, alice, new_chat):
    chat, _ = new_chat("Old")
    other, _ = new_chat("Other")
    client.force_login(alice)
    form = client.get(f"/sessions/{chat.pk}/rename/?current={chat.pk}", HTTP_HX_REQUEST="true").content.decode()
    assert 'name="title" value="Old"' in form and "data-rename-cancel" in form

    resp = client.post(f"/sessions/{chat.pk}/rename/", {"title": "  New   name ", "current": str(chat.pk)}, HTTP_HX_REQUEST="true")
    html = resp.content.decode()
    assert resp.status_code == 200 and ChatSession.objects.get(pk=chat.pk).title == "New name"
    assert f'id="session-item-{chat.pk}"' in html and ">New name</span>" in html
    assert f'hx-swap-oob="innerHTML:#conv-title-{chat.pk}">New name<' in html, "the page's heading follows"
    assert "<title>New name · Prompt Cache Playground</title>" in html

    # Renamed from another session's page: no heading of this one to retitle there.
    html = client.post(f"/sessions/{chat.pk}/rename/", {"title": "Newer", "current": str(other.pk)}, HTTP_HX_REQUEST="true").content.decode()
    assert "conv-title" not in html and "<title>" not in html

    refused = client.post(f"/sessions/{chat.pk}/rename/", {"title": "   ", "current": str(chat.pk)}, HTTP_HX_REQUEST="true")
    assert refused.status_code == 422 and "A session needs a title" in refused.content.decode()
    assert 'role="alert"' in refused.content.decode()
    assert ChatSession.objects.get(pk=chat.pk).title == "Newer", "a refused rename loses nothing"
    with pytest.raises(ChatError, match="at most 120"):
        services.session_rename(session=chat, title="x" * 121)

    cancel = client.get(f"/sessions/{chat.pk}/item/?current={chat.pk}").content.decode()
    assert ">Newer</span>" in cancel and "session-item current" in cancel


@pytest.mark.django_db
def test_another_users_session_cannot_be_renamed_deleted_or_restored(client, alice, new_chat, make_user):
    chat, _ = new_chat("Mine")
    client.force_login(make_user("mallory"))
    assert client.post(f"/sessions/{chat.pk}/rename/", {"title": "pwned"}).status_code == 404
    assert client.post(f"/sessions/{chat.pk}/delete/").status_code == 404
    services.session_trash(session=chat)
    assert client.post(f"/sessions/{chat.pk}/restore/").status_code == 404
    assert client.get(f"/sessions/{chat.pk}/item/").status_code == 404


# --- delete, undo, purge ---------------------------------------------------------------------


@pytest.mark.django_db
def test_delete_hides_at_once_keeps_the_spend_and_undo_brings_it_back(client, alice, new_chat):
    chat, main = new_chat("Doomed")
    keep, _ = new_chat("Kept")
    finish(send(chat, main, alice, "paid"), cost=Decimal("0.25"))
    before = budgets.spend(user_id=alice.pk, provider="openai").total("daily")
    client.force_login(alice)

    resp = client.post(f"/sessions/{chat.pk}/delete/", {"current": str(keep.pk)}, HTTP_HX_REQUEST="true")
    html = resp.content.decode()
    assert resp.status_code == 200
    assert html.lstrip().startswith('<div id="session-undo"') and 'hx-swap-oob="true"' in html, "the entry is swapped for nothing"
    assert "Deleted “Doomed”." in html and f"/sessions/{chat.pk}/restore/" in html and "Undo" in html
    assert listed(alice) == ["Kept"]
    assert client.get(f"/sessions/{chat.pk}/").status_code == 404
    assert [s.pk for s, _ in cost_selectors.account_summary(user=alice)[1]] == [keep.pk]
    assert budgets.spend(user_id=alice.pk, provider="openai").total("daily") == before == Decimal("0.25")

    restored = client.post(f"/sessions/{chat.pk}/restore/", {"current": str(keep.pk)}, HTTP_HX_REQUEST="true").content.decode()
    assert 'id="session-list" aria-label="Sessions" hx-swap-oob="true"' in restored and ">Doomed</span>" in restored
    assert '<div id="session-undo" class="undo-slot" aria-live="polite" hx-swap-oob="true"></div>' in restored
    assert sorted(listed(alice)) == ["Doomed", "Kept"]
    assert client.get(f"/sessions/{chat.pk}/").status_code == 302
    assert client.post(f"/sessions/{chat.pk}/restore/").status_code == 404, "only a deleted session is restored"


@pytest.mark.django_db
def test_deleting_the_open_session_goes_home_where_undo_waits_once(client, alice, new_chat):
    chat, _ = new_chat("Open one")
    client.force_login(alice)
    resp = client.post(f"/sessions/{chat.pk}/delete/", {"current": str(chat.pk)}, HTTP_HX_REQUEST="true")
    assert resp.status_code == 200 and resp.headers["HX-Redirect"] == "/"
    home = client.get("/").content.decode()
    assert "Deleted “Open one”." in home and f'action="/sessions/{chat.pk}/restore/"' in home
    assert "Deleted “Open one”." not in client.get("/").content.decode(), "offered once"
    # Without JavaScript: a plain POST, then a plain form back.
    assert client.post(f"/sessions/{chat.pk}/restore/").status_code == 302
    assert listed(alice) == ["Open one"]
    # The settings drawer's "Delete this session" is a plain form: home, with the same Undo.
    resp = client.post(f"/sessions/{chat.pk}/delete/")
    assert resp.status_code == 302 and resp.headers["Location"] == "/"
    assert "Deleted “Open one”." in client.get("/").content.decode()


@pytest.mark.django_db
def test_the_purge_removes_only_sessions_past_undo_and_carries_their_spend(alice, new_chat, settings):
    settings.PLAYGROUND_SESSION_PURGE_SECONDS = 300
    old, old_main = new_chat("old")
    recent, _ = new_chat("recent")
    live, _ = new_chat("live")
    finish(send(old, old_main, alice, "paid"), cost=Decimal("0.5"))
    before = budgets.spend(user_id=alice.pk, provider="openai").total("daily")
    services.session_trash(session=old)
    services.session_trash(session=recent)
    ChatSession.objects.filter(pk=old.pk).update(deleted_at=timezone.now() - timedelta(seconds=301))

    assert services.sessions_purge() == 1
    assert set(ChatSession.objects.values_list("title", flat=True)) == {"recent", "live"}
    assert not Turn.objects.filter(session_id=old.pk).exists()
    assert DeletedSpend.objects.get(user=alice).amount == Decimal("0.5")
    assert budgets.spend(user_id=alice.pk, provider="openai").total("daily") == before == Decimal("0.5")
    assert services.sessions_purge() == 0, "the recent one can still be undone"
    from playground.chat import tasks

    ChatSession.objects.filter(pk=recent.pk).update(deleted_at=timezone.now() - timedelta(hours=1))
    assert tasks.purge_deleted() == 1, "the sweeper's task runs the purge"
    assert listed(alice) == ["live"]


@pytest.mark.django_db(transaction=True)
def test_deleting_stops_a_running_reply(alice, new_chat, emitted):
    chat, main = new_chat("Busy")
    queued = send(chat, main, alice, "queued")
    other, other_main = new_chat("Streaming")
    streaming = send(other, other_main, alice, "streaming")
    Message.objects.filter(pk=streaming.message_id).update(status="streaming")
    emitted.events.clear()

    services.session_trash(session=chat)
    services.session_trash(session=other)

    assert Message.objects.get(pk=queued.message_id).status == "stopped", "a queued reply never starts"
    assert Turn.objects.get(pk=streaming.pk).stop_requested
    assert "StopRequested" in emitted.names(), "a streaming one closes its upstream stream"
    services.session_trash(session=chat)  # twice (two tabs): nothing more happens
    services.session_restore(session=chat)
    assert Message.objects.get(pk=queued.message_id).status == "stopped", "Undo brings it back stopped, retryable"


# --- never two user turns in a row -----------------------------------------------------------


def roles(message_id) -> list[str]:
    return [m.role for m in selectors.message_path(message_id=message_id)]


def no_two_users_in_a_row(path_roles: list[str]) -> bool:
    return all(not (a == b == "user") for a, b in zip(path_roles, path_roles[1:]))


@pytest.mark.django_db
def test_fork_at_own_message_opens_above_it_with_the_message_to_edit(client, alice, new_chat):
    chat, main = new_chat("Forks")
    first = send(chat, main, alice, "first question")
    finish(first)
    second = send(chat, main, alice, "second question")
    finish(second)
    question = second.message.parent
    client.force_login(alice)

    resp = client.post(f"/sessions/{chat.pk}/m/{question.pk}/fork/", {"branch": main.pk}, HTTP_HX_REQUEST="true")
    url = resp.headers["HX-Redirect"]
    assert url.endswith(f"?draft={question.pk}")
    fork = chat.branches.get(pk=int(re.search(r"/b/(\d+)/", url).group(1)))
    assert fork.head_id == first.message_id, "the fork ends at the answer above the message, not at the message"
    page = client.get(url).content.decode()
    assert re.search(r"data-composer[^>]*>second question</textarea>", page), "the message waits in the composer"
    assert "Forked just above your message" in page
    assert page.count('class="msg msg-') == 2

    with outbox.capture(TurnStarted):
        edited = send(chat, fork, alice, "second question, better")
    assert edited.message.parent.parent_id == first.message_id, "a sibling of the original message"
    assert roles(edited.message_id) == ["user", "assistant", "user", "assistant"]
    # Forking at a reply is unchanged: the branch ends at it, the composer is empty.
    at_reply, draft = branching.message_fork(session=chat, message=first.message, user=alice)
    assert at_reply.head_id == first.message_id and draft is None


@pytest.mark.django_db
def test_fork_at_the_first_message_opens_an_empty_branch_with_it_to_edit(client, alice, new_chat):
    chat, main = new_chat("Root")
    finish(send(chat, main, alice, "hello"))
    root = Message.objects.get(session=chat, parent=None)
    branch, draft = branching.message_fork(session=chat, message=root, user=alice, parent_branch=main)
    assert branch.head_id is None and draft == root
    client.force_login(alice)
    page = client.get(f"/sessions/{chat.pk}/b/{branch.pk}/?draft={root.pk}").content.decode()
    assert re.search(r"data-composer[^>]*>hello</textarea>", page)
    with outbox.capture(TurnStarted):
        turn = send(chat, branch, alice, "hello again")
    assert roles(turn.message_id) == ["user", "assistant"]
    assert Message.objects.filter(session=chat, parent=None).count() == 2, "two roots: siblings"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("ending", ["failed", "stopped-before-a-word"])
def test_a_send_after_an_unanswered_message_replaces_it(alice, new_chat, emitted, ending):
    chat, main = new_chat("Failures")
    finish(send(chat, main, alice, "one"))
    lost = send(chat, main, alice, "two")
    if ending == "failed":
        fail(lost)
    else:
        services.turn_stop(turn=lost)  # stopped while queued: no text at all
    unanswered = lost.message.parent
    emitted.events.clear()

    turn = send(chat, main, alice, "two, again")

    new_question = turn.message.parent
    assert new_question.parent_id == unanswered.parent_id, "the new message takes the unanswered one's place"
    assert roles(turn.message_id) == ["user", "assistant", "user", "assistant"]
    appended = emitted.events[0]
    assert appended.replaced == ((unanswered.pk, False), (lost.message_id, False))
    html = outbox_html(appended)
    assert f'hx-swap-oob="delete:#thread-{main.pk} #msg-{unanswered.pk}"' in html
    assert f'hx-swap-oob="delete:#thread-{main.pk} #msg-{lost.message_id}"' in html
    assert "#sib-" not in html, "no arrows to remove: the page showed none"
    # The old exchange stays in the tree and can still be retried.
    assert Message.objects.filter(pk=lost.message_id).exists()
    services.turn_retry(turn=Turn.objects.get(pk=lost.pk), user=alice)


def outbox_html(event) -> str:
    from playground.chat import rendering

    return rendering.appended(messages=list(event.messages), branch_id=event.branch_id, chat=event.session, replaced=event.replaced)


@pytest.mark.django_db
def test_a_reply_with_text_is_answered_and_the_next_send_follows_it(alice, new_chat):
    chat, main = new_chat("Partial")
    cut = send(chat, main, alice, "one")
    finish(cut, status="incomplete", text="half an answer", outcome="cut")
    turn = send(chat, main, alice, "go on")
    assert turn.message.parent.parent_id == cut.message_id
    assert roles(turn.message_id) == ["user", "assistant", "user", "assistant"]


@pytest.mark.django_db
def test_the_page_says_what_the_next_send_does_after_a_failure(client, alice, new_chat):
    chat, main = new_chat("Explained")
    fail(send(chat, main, alice, "please answer"))
    main.refresh_from_db()
    client.force_login(alice)
    page = client.get(f"/sessions/{chat.pk}/b/{main.pk}/").content.decode()
    assert "Retry" in page and "it takes the unanswered one&#x27;s place" in page
    assert re.search(r"data-composer[^>]*>please answer</textarea>", page), "the unanswered message is back in the box"
    assert "Your last message got no answer" in page
    # The composer's prediction counts the request the send will make: without the unanswered message.
    unanswered = Message.objects.get(session=chat, role="user")
    assert turns.unanswered(main.head).pk == unanswered.pk
    assert client.post(f"/sessions/{chat.pk}/b/{main.pk}/predict/", {"content": "again"}).status_code == 200


@pytest.mark.django_db
def test_results_brought_back_are_not_treated_as_unanswered(alice, new_chat):
    chat, main = new_chat("Results")
    first = send(chat, main, alice, "q")
    finish(first)
    fork = branching.branch_fork(session=chat, message=first.message, user=alice, parent_branch=main)
    finish(send(chat, fork, alice, "sub"))
    returned = branching.branch_return(branch=fork, user=alice)
    turn = send(chat, main, alice, "now compare")
    assert turn.message.parent.parent_id == returned.pk, "the user continues after the results"


# --- the same on PostgreSQL ------------------------------------------------------------------


@pytest.mark.integration
def test_the_same_on_postgresql(tmp_path):
    """Runs this module's other tests against PostgreSQL (127.0.0.1:5432, user postgres)."""
    if connection.vendor != "sqlite":
        pytest.skip("already running on PostgreSQL")
    pytest_on_postgresql(__file__, tmp_path)
