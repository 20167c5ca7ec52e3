"""The conversation tree against a real database: O(1) forks, one-query paths and siblings
at any depth, the tree layout, and the join/return services (no upstream involved)."""

from __future__ import annotations

import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from playground.chat import branching, selectors, services, tree, turns
from playground.chat.errors import ChatError
from playground.chat.models import Branch, ChatSession, FanOut, Message

pytestmark = pytest.mark.django_db


def _chain(chat, length: int) -> list[int]:
    """A straight user/assistant chain of `length` nodes (depth 0..length-1), bulk-inserted
    with explicit ids so each node can name its parent."""
    start = (Message.objects.order_by("-id").values_list("id", flat=True).first() or 0) + 1
    nodes = [
        Message(
            id=start + i,
            session=chat,
            parent_id=start + i - 1 if i else None,
            depth=i,
            role=Message.Role.USER if i % 2 == 0 else Message.Role.ASSISTANT,
            content=f"m{i}",
        )
        for i in range(length)
    ]
    Message.objects.bulk_create(nodes, batch_size=2000)
    return [n.id for n in nodes]


def _msg(chat, parent, role, content, branch=None, status=Message.Status.DONE):
    return Message.objects.create(
        session=chat, parent=parent, depth=parent.depth + 1 if parent else 0, role=role, content=content, branch=branch, status=status
    )


def _count(fn) -> tuple[int, object]:
    with CaptureQueriesContext(connection) as captured:
        result = fn()
    return len(captured.captured_queries), result


def test_fork_and_path_cost_the_same_at_depth_10_and_10000(chat, owner):
    ids = _chain(chat, 10_001)
    shallow = Message.objects.get(pk=ids[10])
    deep = Message.objects.get(pk=ids[10_000])
    assert (shallow.depth, deep.depth) == (10, 10_000)

    fork_shallow_queries, shallow_branch = _count(lambda: branching.branch_fork(session=chat, message=shallow, user=owner))
    fork_deep_queries, deep_branch = _count(lambda: branching.branch_fork(session=chat, message=deep, user=owner))
    print(f"\nfork queries: depth 10 = {fork_shallow_queries}, depth 10,000 = {fork_deep_queries}")
    assert fork_shallow_queries == fork_deep_queries == 1  # one INSERT: named after the user message's own words
    assert deep_branch.name == "m10000"
    # At a reply: one read of the question it answers (for the name), one INSERT; at any depth.
    at_reply = [_count(lambda m=m: branching.branch_fork(session=chat, message=m, user=owner))[0]
                for m in Message.objects.filter(pk__in=[ids[11], ids[9_999]])]
    assert at_reply == [2, 2]
    assert deep_branch.head_id == deep.pk and deep_branch.forked_from_id == deep.pk
    assert Message.objects.filter(session=chat).count() == 10_001, "a fork copies nothing"

    path_shallow_queries, shallow_path = _count(lambda: selectors.branch_path(branch=shallow_branch))
    path_deep_queries, deep_path = _count(lambda: selectors.branch_path(branch=deep_branch))
    print(f"path queries: depth 10 = {path_shallow_queries}, depth 10,000 = {path_deep_queries}")
    assert path_shallow_queries == path_deep_queries == 1
    assert [m.id for m in shallow_path] == ids[:11]
    assert [m.id for m in deep_path] == ids

    sib_shallow, _ = _count(lambda: selectors.path_siblings(session=chat, path=shallow_path))
    sib_deep, _ = _count(lambda: selectors.path_siblings(session=chat, path=deep_path))
    assert sib_shallow == sib_deep == 1


def test_branch_page_query_count_does_not_grow_with_depth(client, chat, owner):
    ids = _chain(chat, 10_001)
    shallow = branching.branch_fork(session=chat, message=Message.objects.get(pk=ids[10]), user=owner)
    deep = branching.branch_fork(session=chat, message=Message.objects.get(pk=ids[10_000]), user=owner)
    client.force_login(owner)
    counts = {}
    for label, branch in (("10", shallow), ("10,000", deep)):
        url = f"/sessions/{chat.pk}/b/{branch.pk}/"
        client.get(url)  # warm caches (templates, providers)
        started = time.monotonic()
        with CaptureQueriesContext(connection) as captured:
            resp = client.get(url)
        assert resp.status_code == 200
        counts[label] = len(captured.captured_queries)
        print(f"\npage at depth {label}: {counts[label]} queries, {time.monotonic() - started:.2f}s")
    assert counts["10"] == counts["10,000"]


def test_siblings_positions_in_one_query(chat, owner):
    main = chat.branches.get()
    u1 = _msg(chat, None, "user", "hello", main)
    a1 = _msg(chat, u1, "assistant", "first answer", main)
    a2 = _msg(chat, u1, "assistant", "second answer")
    a3 = _msg(chat, u1, "assistant", "third answer")
    u2 = _msg(chat, a2, "user", "follow-up")
    path = [u1, a2, u2]
    queries, sibs = _count(lambda: selectors.path_siblings(session=chat, path=path))
    assert queries == 1
    assert set(sibs) == {a2.id}
    assert (sibs[a2.id].position, sibs[a2.id].count) == (2, 3)
    assert (sibs[a2.id].prev_id, sibs[a2.id].next_id) == (a1.id, a3.id)
    # roots are siblings too (an edited first message)
    u1b = _msg(chat, None, "user", "hello again")
    sibs = selectors.path_siblings(session=chat, path=[u1b])
    assert (sibs[u1b.id].position, sibs[u1b.id].count, sibs[u1b.id].prev_id) == (2, 2, u1.id)


def test_branch_showing_prefers_the_most_recent_branch_containing_the_node(chat, owner):
    main = chat.branches.get()
    u1 = _msg(chat, None, "user", "q", main)
    a1 = _msg(chat, u1, "assistant", "a", main)
    u2 = _msg(chat, a1, "user", "q2", main)
    main.head = u2
    main.save()
    assert selectors.branch_showing(session=chat, message_id=a1.id) == main
    other = Branch.objects.create(session=chat, name="other", head=a1)
    assert selectors.branch_showing(session=chat, message_id=a1.id) == other  # most recently updated
    assert selectors.branch_showing(session=chat, message_id=u2.id) == main
    orphan = _msg(chat, u1, "assistant", "unreached")
    assert selectors.branch_showing(session=chat, message_id=orphan.id) is None
    opened = branching.branch_open_at(session=chat, message=orphan, user=owner)
    # Named in words after the question the reply answers, not "fork 3 (from #2)".
    assert opened.head_id == orphan.id and opened.name == "after: q"


def test_tree_layout_lanes_rows_and_open_path(chat, owner):
    main = chat.branches.get()
    u1 = _msg(chat, None, "user", "root question that is quite a bit longer than forty characters", main)
    a1 = _msg(chat, u1, "assistant", "answer", main)
    u2 = _msg(chat, a1, "user", "main follow-up", main)
    u2b = _msg(chat, a1, "user", "forked follow-up")
    a2b = _msg(chat, u2b, "assistant", "forked answer")
    main.head = u2
    main.save()
    fork = Branch.objects.create(session=chat, name="fork 2", head=a2b, parent_branch=main)
    queries, layout = _count(lambda: selectors.session_tree(session=chat, open_branch=fork))
    assert queries == 3  # messages, branches, fan-outs
    rows = {n.id: n for n in layout.nodes}
    assert [n.id for n in layout.nodes] == [u1.id, a1.id, u2.id, u2b.id, a2b.id]  # depth-first
    assert rows[u1.id].lane == rows[a1.id].lane == rows[u2.id].lane == 0
    assert rows[u2b.id].lane == rows[a2b.id].lane == 1
    assert rows[u1.id].snippet.endswith("…") and len(rows[u1.id].snippet) == tree.SNIPPET_CHARS + 1
    assert [b.name for b in rows[a2b.id].heads] == ["fork 2"] and rows[a2b.id].is_open_head
    assert rows[u1.id].on_open_path and rows[a2b.id].on_open_path and not rows[u2.id].on_open_path
    assert rows[u2.id].branch_id == main.id and rows[u1.id].branch_id == fork.id  # open branch first
    assert len(layout.edges) == 4 and layout.lanes == 2


def test_tree_layout_reuses_lanes_and_handles_a_deep_chain(chat):
    _chain(chat, 3000)
    queries, layout = _count(lambda: selectors.session_tree(session=chat, open_branch=None))
    assert queries == 3 and layout.lanes == 1 and len(layout.nodes) == 3000


def test_fanout_prompt_parsing():
    assert tree.fanout_prompts_parse(text="a\n\n b \n", copies="") == ["a", "b"]
    assert tree.fanout_prompts_parse(text="one prompt\nsecond line", copies="3", limit=8) == ["one prompt\nsecond line"] * 3
    with pytest.raises(ChatError, match="limited to 8 branches"):
        tree.fanout_prompts_parse(text="x", copies="9", limit=8)
    with pytest.raises(ChatError, match="whole number"):
        tree.fanout_prompts_parse(text="x", copies="lots", limit=8)


def test_rename_validates(chat):
    branch = chat.branches.get()
    assert branching.branch_rename(branch=branch, name="  a   better  name ").name == "a better name"
    with pytest.raises(ChatError):
        branching.branch_rename(branch=branch, name="   ")
    with pytest.raises(ChatError):
        branching.branch_rename(branch=branch, name="x" * 81)


def test_return_to_parent_quotes_the_answer_as_plain_text(chat, owner, django_capture_on_commit_callbacks):
    main = chat.branches.get()
    u1 = _msg(chat, None, "user", "q", main)
    a1 = _msg(chat, u1, "assistant", "a", main)
    main.head = a1
    main.save()
    fork = branching.branch_fork(session=chat, message=a1, user=owner, parent_branch=main)
    u2 = _msg(chat, a1, "user", "sub-question", fork)
    a2 = _msg(chat, u2, "assistant", "line one\n</p><script>alert(1)</script>\n\nline three", fork)
    fork.head = a2
    fork.save()
    with django_capture_on_commit_callbacks(execute=False):
        returned = branching.branch_return(branch=fork, user=owner)
    main.refresh_from_db()
    assert main.head_id == returned.id and returned.parent_id == a1.id and returned.role == "user"
    assert returned.source_branch_id == fork.id
    assert returned.content.startswith(f"Result from branch “{fork.name}”:\n\n> line one\n> </p><script>")
    assert "\n>\n> line three" in returned.content
    from django.template.loader import render_to_string

    html = render_to_string("chat/session.html#message", {"message": returned, "seq": 0, "text": returned.content})
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert f"/sessions/{chat.pk}/b/{fork.pk}/" in html


def test_join_happens_once_and_names_failed_children(chat, owner, django_capture_on_commit_callbacks):
    main = chat.branches.get()
    u1 = _msg(chat, None, "user", "q", main)
    a1 = _msg(chat, u1, "assistant", "a", main)
    main.head = a1
    main.save()
    fanout = FanOut.objects.create(session=chat, parent_branch=main, origin=a1, join=True, name="fan-out 2")
    replies = []
    for i, status in enumerate([Message.Status.DONE, Message.Status.FAILED, Message.Status.STREAMING], start=1):
        child = Branch.objects.create(session=chat, name=f"fan-out 2.{i}", forked_from=a1, parent_branch=main, fanout=fanout)
        prompt = _msg(chat, a1, "user", f"p{i}", child)
        reply = _msg(chat, prompt, "assistant", f"answer {i}" if status == "done" else "", child, status=status)
        child.head = reply
        child.save()
        replies.append(reply)
    assert branching.fanout_finished(fanout_id=fanout.pk) is None, "waits while a reply runs"
    Message.objects.filter(pk=replies[2].pk).update(status=Message.Status.DONE, content="answer 3")
    with django_capture_on_commit_callbacks(execute=False):
        joined = branching.fanout_finished(fanout_id=fanout.pk)
        again = branching.fanout_finished(fanout_id=fanout.pk)
        fanout.refresh_from_db()
        third = branching.fanout_join(fanout=fanout)
    assert joined is not None and again is None and third is None
    assert Message.objects.filter(source_fanout=fanout).count() == 1
    text = joined.content
    assert text.index("fan-out 2.1") < text.index("fan-out 2.2") < text.index("fan-out 2.3")
    assert "> answer 1" in text and "> answer 3" in text
    assert "“fan-out 2.2” (failed" in text
    main.refresh_from_db()
    assert main.head_id == joined.id and joined.parent_id == a1.id


def test_a_swept_child_completes_the_join(chat, owner, settings, django_capture_on_commit_callbacks):
    """A worker that died mid-reply never fires its chord: the stale sweep joins instead."""
    from datetime import timedelta

    from django.utils import timezone

    from playground.chat.models import Turn

    main = chat.branches.get()
    u1 = _msg(chat, None, "user", "q", main)
    a1 = _msg(chat, u1, "assistant", "a", main)
    main.head = a1
    main.save()
    fanout = FanOut.objects.create(session=chat, parent_branch=main, origin=a1, join=True, name="fan-out 2")
    started = []
    for i in (1, 2):
        child = Branch.objects.create(session=chat, name=f"fan-out 2.{i}", forked_from=a1, parent_branch=main, fanout=fanout)
        prompt = _msg(chat, a1, "user", f"p{i}", child)
        turn = turns.turn_for(parent=prompt, session=chat, branch=child, user=owner, key_ref="ref")
        child.head = turn.message
        child.save()
        started.append(turn)
    Message.objects.filter(pk=started[0].message_id).update(status=Message.Status.DONE, content="first answer")
    long_ago = timezone.now() - timedelta(seconds=settings.PLAYGROUND_STALE_STREAM_SECONDS + 5)
    Message.objects.filter(pk=started[1].message_id).update(status=Message.Status.STREAMING, content="half")
    Turn.objects.filter(pk=started[1].pk).update(heartbeat_at=long_ago)
    with django_capture_on_commit_callbacks(execute=False):
        assert services.turns_sweep_stale(session_id=chat.pk) == 1
    joined = Message.objects.get(source_fanout=fanout)
    assert "> first answer" in joined.content
    assert "“fan-out 2.2” (incomplete: The worker stopped responding" in joined.content and "> half" in joined.content


def test_join_now_while_pending_joins_with_what_finished(chat, owner, django_capture_on_commit_callbacks):
    main = chat.branches.get()
    u1 = _msg(chat, None, "user", "q", main)
    a1 = _msg(chat, u1, "assistant", "a", main)
    main.head = a1
    main.save()
    fanout = FanOut.objects.create(session=chat, parent_branch=main, origin=a1, join=False, name="fan-out 2")
    for i, status in enumerate([Message.Status.DONE, Message.Status.STREAMING], start=1):
        child = Branch.objects.create(session=chat, name=f"fan-out 2.{i}", forked_from=a1, parent_branch=main, fanout=fanout)
        prompt = _msg(chat, a1, "user", f"p{i}", child)
        _msg(chat, prompt, "assistant", f"answer {i}", child, status=status)
    with django_capture_on_commit_callbacks(execute=False):
        assert branching.fanout_join_request(fanout=fanout, user=owner) is None  # first press: join when done
        fanout.refresh_from_db()
        assert fanout.join and fanout.joined_at is None
        joined = branching.fanout_join_request(fanout=fanout, user=owner)  # second press: now
    assert "> answer 1" in joined.content and "still running" in joined.content
    fanout.refresh_from_db()
    with pytest.raises(ChatError, match="already joined"):
        branching.fanout_join_request(fanout=fanout, user=owner)


def test_branch_names_are_words_from_the_message_they_start_at(chat, owner):
    main = chat.branches.get()
    u1 = _msg(chat, None, "user", "Plan   a trip\nto Lisbon for three days in the spring, please", main)
    a1 = _msg(chat, u1, "assistant", "Day one: Alfama.", main)
    assert branching.words_of(u1.content) == "Plan a trip to Lisbon for three days in…"
    assert len(branching.words_of("x" * 200)) == branching.LABEL_CHARS + 1  # no space to cut at: cut hard, "…"
    fork = branching.branch_fork(session=chat, message=a1, user=owner)
    assert fork.name == "after: Plan a trip to Lisbon for three…"
    # Its first message names it; a later one does not, nor does a name the user chose.
    assert branching.name_after_first_send(branch=fork, head=a1, content="Make it Porto instead.")
    assert fork.name == "Make it Porto instead."
    assert not branching.name_after_first_send(branch=fork, head=a1, content="And Braga?")
    chosen = branching.branch_fork(session=chat, message=a1, user=owner, name="my plan")
    assert not branching.name_after_first_send(branch=chosen, head=a1, content="Porto") and chosen.name == "my plan"
    # At your own message: the branch is named after that message (the draft it opens with).
    at_own, draft = branching.message_fork(session=chat, message=u1, user=owner)
    assert draft == u1 and at_own.name == "Plan a trip to Lisbon for three days in…"


def test_fanout_status_reread_shows_a_join_that_ended_before_the_socket(chat, owner, client):
    """A fan-out page that rendered "Join pending" re-reads its status once its socket opens:
    a join that ended in between sent its frame to nobody."""
    main = chat.branches.get()
    u1 = _msg(chat, None, "user", "q", main)
    a1 = _msg(chat, u1, "assistant", "a", main)
    fanout = FanOut.objects.create(session=chat, parent_branch=main, origin=a1, join=True, name="fan-out 2")
    client.force_login(owner)
    url = f"/sessions/{chat.pk}/fanout/{fanout.pk}/status/"
    page = client.get(f"/sessions/{chat.pk}/fanout/{fanout.pk}/").content.decode()
    assert "Join pending" in page and f'data-status-url="{url}"' in page
    joined = _msg(chat, a1, "user", "all answers", main)
    FanOut.objects.filter(pk=fanout.pk).update(join_message=joined)
    status = client.get(url).content.decode()
    assert 'hx-swap-oob="true"' in status and "Joined:" in status and "data-status-url" not in status


@pytest.mark.parametrize("text, label", [
    ("## Plan\n\nExplain **prompt caching** in a list:\n\n- one\n- two\n\n```python\nprint('hi')\n```",
     "Plan Explain prompt caching in a list: one two print('hi')"),
    ("> quoted `code` and [a link](https://example.com \"t\") ~~old~~ new", "quoted code and a link old new"),
    ("1. first\n2) second\n   * nested", "first second nested"),
    ("What is 2*3*4 and 2**10? Rename snake_case in *.py, not __init__", "What is 2*3*4 and 2**10? Rename snake_case in *.py, not __init__"),
    ("#hashtag a < b & c", "#hashtag a < b & c"),
])
def test_a_label_is_a_messages_words_without_its_markdown(text, label):
    assert branching.plain_words(text) == label


def test_a_session_is_titled_after_its_first_message_without_markdown(owner, make_key, make_session):
    make_key(owner, "sk-test-title-0123456789abcd")
    chat, branch = make_session(owner)
    services.message_send(session=chat, branch=branch, user=owner, content="## Plan **A**\n\n- fly\n- then drive")
    assert ChatSession.objects.get(pk=chat.pk).title == "Plan A fly then drive"
    other, other_branch = make_session(owner)
    services.message_send(session=other, branch=other_branch, user=owner, content="```\n```")
    assert ChatSession.objects.get(pk=other.pk).title == "New session"  # nothing but a fence: no words to name it by
