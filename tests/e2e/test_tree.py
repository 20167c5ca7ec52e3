"""The conversation tree over real HTTP and WebSockets, in both deployment modes: forks,
edit-and-resend, regenerate, siblings, the switcher, rename, the tree view, fan-out with a
join, return to parent, and isolation. The wire test checks what the simulator received."""

from __future__ import annotations

import asyncio
import html as htmllib
import re
import time

from tests.conftest import new_user
from tests.harness.client import collect
from tests.harness.page import messages

# --- helpers: what the browser would click ---------------------------------------------------


def _redirect(resp) -> str:
    assert resp.status_code == 200, (resp.status_code, resp.text[:500])
    return resp.headers["HX-Redirect"]


def _branch_of(url: str) -> int:
    return int(re.search(r"/b/(\d+)/", url).group(1))


def fork(user, session_id, message_id, branch_id=None) -> int:
    data = {"branch": branch_id} if branch_id else {}
    return _branch_of(_redirect(user.post(f"/sessions/{session_id}/m/{message_id}/fork/", data)))


def edit(user, session_id, message_id, content, branch_id=None) -> int:
    data = {"content": content, **({"branch": branch_id} if branch_id else {})}
    return _branch_of(_redirect(user.post(f"/sessions/{session_id}/m/{message_id}/edit/", data)))


def regenerate(user, session_id, message_id, branch_id=None) -> int:
    data = {"branch": branch_id} if branch_id else {}
    return _branch_of(_redirect(user.post(f"/sessions/{session_id}/m/{message_id}/regenerate/", data)))


def fanout(user, session_id, message_id, prompts, *, branch_id, join=True, copies=""):
    data = {"prompts": "\n".join(prompts), "copies": copies, "branch": branch_id}
    if join:
        data["join"] = "on"
    return user.post(f"/sessions/{session_id}/m/{message_id}/fanout/", data)


def say(user, session_id, branch_id, text) -> str:
    resp = user.send(session_id, branch_id, text)
    assert resp.status_code == 200, resp.text[:500]
    return user.wait_idle(session_id, branch_id)


def thread(html: str) -> list[tuple[int, str, str]]:
    """(id, role, text) of the messages shown in the branch's thread, in order."""
    return [(m.id, m.role, m.body) for m in messages(html)]


def sibling_positions(html: str) -> dict[int, str]:
    """message id -> "2/3" for every message with sibling arrows."""
    return {int(mid): pos for mid, pos in re.findall(r'id="sib-(\d+)".*?<span class="sib-pos">(\d+/\d+)</span>', html, re.S)}


def chat_requests(sim) -> list[dict]:
    return [r for r in sim.requests() if r["path"] == "/v1/chat/completions"]


def sent_messages(request: dict) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in request["body"]["messages"] if m["role"] != "system"]


def counts(app, session_id) -> tuple[int, int, int]:
    return (
        app.query("SELECT count(*) FROM chat_message WHERE session_id = %s", (session_id,))[0][0],
        app.query("SELECT count(*) FROM chat_branch WHERE session_id = %s", (session_id,))[0][0],
        app.query("SELECT count(*) FROM chat_fanout WHERE session_id = %s", (session_id,))[0][0],
    )


def numbers(n: int) -> str:
    return " ".join(str(i) for i in range(1, n + 1))


# --- forks, siblings, switcher, rename, tree ---------------------------------------------------


def test_fork_at_several_depths_shares_the_prefix_and_copies_nothing(app, user, sim):
    sim.configure(reply_mode="echo")
    session_id, main = user.new_session(provider="simulator")
    for text in ("one", "two", "three"):
        say(user, session_id, main, text)
    main_thread = thread(user.page(session_id, main))
    assert [t for _, _, t in main_thread] == ["one", "one", "two", "two", "three", "three"]
    before = counts(app, session_id)

    forks = {}
    for depth in (0, 3, 5):
        forks[depth] = fork(user, session_id, main_thread[depth][0], main)
        shown = thread(user.page(session_id, forks[depth]))
        # At a reply, the fork shows the path up to it; at one of the user's own messages, up to
        # just above it (the message waits in the composer: tests/e2e/test_session_list.py).
        upto = depth + 1 if main_thread[depth][1] == "assistant" else depth
        assert shown == main_thread[:upto], f"the fork at #{depth + 1} shows exactly the path up to it"
    messages_after, branches_after, _ = counts(app, session_id)
    assert messages_after == before[0], "forking copies no message"
    assert branches_after == before[1] + 3

    # Named in words from the message each starts at: at a reply, after its question.
    names = {d: re.search(r'<strong class="branch-name">([^<]*)</strong>', user.page(session_id, b)).group(1) for d, b in forks.items()}
    assert names == {0: "one", 3: "after: two", 5: "after: three"}, names

    # Continue the shallow fork: it diverges from main, which does not change.
    say(user, session_id, forks[3], "four on a fork")
    # Its first message names it (a name the user chose would be kept).
    assert re.search(r'<strong class="branch-name">four on a fork</strong>', user.page(session_id, forks[3]))
    assert [t for _, _, t in thread(user.page(session_id, forks[3]))] == ["one", "one", "two", "two", "four on a fork", "four on a fork"]
    main_page = user.page(session_id, main)
    assert thread(main_page) == main_thread
    # The switcher lists every branch and marks the open one.
    names = re.findall(r'<ul class="switcher-list"[^>]*>(.*?)</ul>', main_page, re.S)[0]
    assert names.count("<li>") == 4
    assert re.search(rf'href="/sessions/{session_id}/b/{main}/" class="current" aria-current="page">main<', main_page)
    # Siblings: main's "three" and the fork's "four on a fork" are the two children of reply #4.
    three_id = main_thread[4][0]
    assert sibling_positions(main_page)[three_id] == "1/2"
    fork_page = user.page(session_id, forks[3])
    four_id = thread(fork_page)[4][0]
    assert sibling_positions(fork_page)[four_id] == "2/2"
    # The arrow opens a branch that shows the sibling.
    resp = user.post(f"/sessions/{session_id}/m/{three_id}/open/", htmx=False)
    assert resp.status_code == 302
    opened = _branch_of(resp.headers["location"])
    assert three_id in [m for m, _, _ in thread(user.page(session_id, opened))]


def test_edit_and_resend_makes_a_sibling_branch_and_leaves_the_original(app, user, sim):
    sim.configure(reply_mode="echo")
    session_id, main = user.new_session(provider="simulator")
    say(user, session_id, main, "first")
    say(user, session_id, main, "second")
    original = thread(user.page(session_id, main))
    second_id = original[2][0]

    edited = edit(user, session_id, second_id, "second, edited", main)
    assert edited != main
    page = user.wait_idle(session_id, edited)
    shown = thread(page)
    assert [t for _, _, t in shown] == ["first", "first", "second, edited", "second, edited"]
    assert shown[:2] == original[:2] and shown[2][0] != second_id
    assert sibling_positions(page)[shown[2][0]] == "2/2"
    main_page = user.page(session_id, main)
    assert thread(main_page) == original, "the original branch is unchanged"
    assert sibling_positions(main_page)[second_id] == "1/2"
    # Named after the message it starts at, not "edit 2".
    assert re.search(r'<strong class="branch-name">second, edited</strong>', page)
    # An empty edit is refused with the form and its error, nothing created.
    before = counts(app, session_id)
    resp = user.post(f"/sessions/{session_id}/m/{second_id}/edit/", {"content": "  "})
    assert resp.status_code == 422 and "Type a message first." in resp.text
    assert counts(app, session_id) == before


def test_regenerate_makes_a_sibling_reply(app, user, sim):
    sim.configure(reply_mode="prose", reply_tokens=12)
    session_id, main = user.new_session(provider="simulator")
    say(user, session_id, main, "question")
    (u1, _, _), (a1, _, _) = thread(user.page(session_id, main))

    # On the open branch whose head it is: the branch moves to the new reply, and tabs on
    # this branch swap the old reply for the new one (tabs on other branches keep theirs).
    async def regenerate_watching():
        async with user.socket(session_id) as ws:
            assert regenerate(user, session_id, a1, main) == main
            return await collect(ws, until=f'hx-swap-oob="delete:#thread-{main} #msg-{a1}"')

    frames = asyncio.run(regenerate_watching())
    assert f'hx-swap-oob="beforeend:#thread-{main}"' in frames[-1]
    page = user.wait_idle(session_id, main)
    shown = thread(page)
    assert [m for m, _, _ in shown][0] == u1 and shown[1][0] != a1 and shown[1][1] == "assistant"
    a2 = shown[1][0]
    assert sibling_positions(page)[a2] == "2/2"
    assert len(chat_requests(sim)) == 2

    # An older reply that no branch shows: regenerating it makes a new branch.
    regen_branch = regenerate(user, session_id, a1, main)
    assert regen_branch != main
    page = user.wait_idle(session_id, regen_branch)
    shown = thread(page)
    assert shown[0][0] == u1 and shown[1][0] not in (a1, a2)
    assert sibling_positions(page)[shown[1][0]] == "3/3"
    assert thread(user.page(session_id, main))[1][0] == a2, "main still shows its reply"


def test_rename_and_tree_view_and_node_links(app, user, sim):
    sim.configure(reply_mode="echo")
    session_id, main = user.new_session(provider="simulator")
    say(user, session_id, main, "alpha")
    say(user, session_id, main, "beta")
    (u1, _, _), (a1, _, _), (u2, _, _), (a2, _, _) = thread(user.page(session_id, main))
    side = fork(user, session_id, a1, main)
    say(user, session_id, side, "gamma")
    regenerate(user, session_id, a2, main)  # main moves to a new reply; a2 is left on no branch
    user.wait_idle(session_id, main)

    resp = user.post(f"/sessions/{session_id}/b/{main}/rename/", {"name": "  trunk <b>  "})
    assert resp.status_code == 200 and "trunk &lt;b&gt;" in resp.text and 'id="branch-bar"' in resp.text
    resp = user.post(f"/sessions/{session_id}/b/{main}/rename/", {"name": " "})
    assert resp.status_code == 422 and "A branch needs a name." in resp.text

    page = user.get(f"/sessions/{session_id}/tree/?branch={side}").text
    nodes = re.findall(r'<li class="tree-row[^"]*" id="node-(\d+)" data-node="\d+" data-branch="(\d*)"', page)
    node_ids = [int(n) for n, _ in nodes]
    all_ids = [r[0] for r in app.query("SELECT id FROM chat_message WHERE session_id = %s ORDER BY id", (session_id,))]
    assert sorted(node_ids) == all_ids and len(node_ids) == 7
    assert node_ids[:2] == [u1, a1], "depth-first from the root"
    assert re.search(rf'class="head-tag open" href="/sessions/{session_id}/b/{side}/">gamma<', page), "the open branch is marked"
    assert f'class="head-tag" href="/sessions/{session_id}/b/{main}/">trunk &lt;b&gt;<' in page
    assert len(re.findall(r"<circle ", page)) == 7 and len(re.findall(r"<path ", page)) == 6
    # Clicking a node on a branch opens a branch that shows it.
    target = dict(nodes)[str(u2)]
    assert target
    resp = user.get(f"/sessions/{session_id}/b/{target}/")
    assert resp.status_code == 200 and u2 in [m for m, _, _ in thread(resp.text)]
    # a2 is on no branch: its node is a form that opens a new branch at it.
    assert dict(nodes)[str(a2)] == ""
    assert f'action="/sessions/{session_id}/m/{a2}/open/"' in page
    resp = user.post(f"/sessions/{session_id}/m/{a2}/open/", htmx=False)
    opened = _branch_of(resp.headers["location"])
    assert [m for m, _, _ in thread(user.page(session_id, opened))] == [u1, a1, u2, a2]


# --- the wire: each branch sends exactly its path ------------------------------------------------


def test_each_branch_sends_exactly_its_root_to_head_path(app, user, sim):
    sim.configure(reply_mode="echo")
    session_id, main = user.new_session(provider="simulator", system_prompt="Be brief.")
    last_request: dict[int, dict] = {}

    def after(branch_id):
        user.wait_idle(session_id, branch_id)
        last_request[branch_id] = chat_requests(sim)[-1]

    for text in ("a", "b", "c"):
        user.send(session_id, main, text)
        after(main)
    shown = thread(user.page(session_id, main))
    side = fork(user, session_id, shown[1][0], main)  # after the first reply
    user.send(session_id, side, "side question")
    after(side)
    deep = fork(user, session_id, shown[3][0], main)
    user.send(session_id, deep, "deep question")
    after(deep)
    edited = edit(user, session_id, shown[2][0], "b, edited", main)
    after(edited)
    regen = regenerate(user, session_id, shown[5][0], main)
    assert regen == main
    after(main)
    user.send(session_id, edited, "after the edit")
    after(edited)

    for branch_id, request in last_request.items():
        path = thread(user.page(session_id, branch_id))
        expected = [(role, text) for _, role, text in path[:-1]]  # everything above the head reply
        assert sent_messages(request) == expected, f"branch {branch_id}"
        assert request["body"]["messages"][0] == {"role": "system", "content": "Be brief."}
    keys = {r["body"]["prompt_cache_key"] for r in chat_requests(sim)}
    assert len(keys) == 1, "under the session scope every branch shares one cache key"


# --- fan-out and join ------------------------------------------------------------------------------


def _fanout_reply_ids(user, url: str) -> list[int]:
    page = user.get(url).text
    cols = re.findall(r'<section class="fanout-col" id="col-(\d+)".*?</section>', page, re.S)
    assert cols
    return [m.id for m in messages(page) if m.role == "assistant"]


def test_fanout_streams_four_replies_in_parallel_and_joins_them(app, user, sim):
    sim.configure(reply_mode="echo")
    session_id, main = user.new_session(provider="simulator", system_prompt="Shared context. " * 40)
    say(user, session_id, main, "Here is the problem.")
    origin = thread(user.page(session_id, main))[-1][0]
    prefix = [(role, text) for _, role, text in thread(user.page(session_id, main))]
    sim.clear_requests()
    sim.configure(reply_mode="numbered", reply_tokens=40, tokens_per_second=20, first_token_delay=0)
    prompts = ["part one", "part two", "part three", "part four"]

    async def run():
        async with user.socket(session_id) as ws:
            started = time.monotonic()
            url = _redirect(fanout(user, session_id, origin, prompts, branch_id=main))
            reply_ids = _fanout_reply_ids(user, url)
            frames, done = [], set()
            while len(done) < 4 or "Results from" not in "".join(frames[-3:]):
                frame = await asyncio.wait_for(ws.recv(), 30)
                frames.append(frame)
                for mid in reply_ids:
                    if f'id="msg-{mid}"' in frame and 'hx-swap-oob="true"' in frame:
                        done.add(mid)
            return url, reply_ids, frames, time.monotonic() - started

    url, reply_ids, frames, elapsed = asyncio.run(run())
    assert len(reply_ids) == 4
    # Overlap: every reply's first delta arrives before any reply's last delta.
    firsts, lasts = {}, {}
    for index, frame in enumerate(frames):
        for mid in re.findall(r'hx-swap-oob="beforeend:#body-(\d+)"', frame):
            firsts.setdefault(int(mid), index)
            lasts[int(mid)] = index
    assert set(firsts) == set(reply_ids)
    assert max(firsts.values()) < min(lasts.values()), "the four replies streamed at the same time"
    assert elapsed < 7, f"4 × 2 s replies took {elapsed:.1f}s: not parallel"
    requests = chat_requests(sim)
    assert len(requests) == 4
    arrivals = [r["received_at"] for r in requests]
    assert max(arrivals) - min(arrivals) < 1.0
    assert len({r["body"]["prompt_cache_key"] for r in requests}) == 1, "one key for the shared prefix"
    assert sorted(sent_messages(r)[-1][1] for r in requests) == sorted(prompts)
    for r in requests:
        assert sent_messages(r)[:-1] == prefix, "each child = the shared prefix + its own prompt"

    page = user.get(url).text
    assert page.count("msg-assistant status-done") == 4
    assert "Joined:" in page
    join_rows = app.query("SELECT id, content FROM chat_message WHERE session_id = %s AND source_fanout_id IS NOT NULL", (session_id,))
    assert len(join_rows) == 1
    join_id, content = join_rows[0]
    names = [htmllib.unescape(n) for n in re.findall(r'<h2><a href="[^"]+">([^<]+)</a></h2>', page)]
    assert len(names) == 4
    positions = [content.index(f"“{name}”") for name in names]
    assert positions == sorted(positions), "answers quoted in child order"
    assert content.count("> " + numbers(40)) == 4
    main_page = user.page(session_id, main)
    last = messages(main_page)[-1]
    assert last.id == join_id and last.role == "user"
    assert "open the fan-out" in last.html


def test_join_still_happens_when_a_child_fails_and_names_it(app, user, sim):
    sim.configure(reply_mode="echo")
    session_id, main = user.new_session(provider="simulator")
    say(user, session_id, main, "Split this.")
    origin = thread(user.page(session_id, main))[-1][0]
    sim.configure(reply_mode="numbered", reply_tokens=10, tokens_per_second=50, first_token_delay=0)
    sim.add_fault(status=500)
    url = _redirect(fanout(user, session_id, origin, ["a", "b", "c", "d"], branch_id=main))
    deadline = time.monotonic() + 30
    while True:
        rows = app.query("SELECT content FROM chat_message WHERE session_id = %s AND source_fanout_id IS NOT NULL", (session_id,))
        if rows:
            break
        assert time.monotonic() < deadline, "no join message"
        time.sleep(0.2)
    content = rows[0][0]
    page = user.get(url).text
    columns = re.findall(r'<section class="fanout-col" id="col-\d+" aria-label="([^"]+)">(.*?)</section>', page, re.S)
    failed = [htmllib.unescape(name) for name, body in columns if "msg-assistant status-failed" in body]
    assert len(columns) == 4 and len(failed) == 1
    assert f"“{failed[0]}” (failed: The provider had an error (500)" in content, content
    assert content.count("> " + numbers(10)) == 3
    assert "Joined:" in page


def test_fanout_above_the_operator_limit_is_refused_and_creates_nothing(app, user, sim):
    sim.configure(reply_mode="echo")
    session_id, main = user.new_session(provider="simulator")
    say(user, session_id, main, "go")
    origin = thread(user.page(session_id, main))[-1][0]
    before = counts(app, session_id)
    resp = fanout(user, session_id, origin, [f"p{i}" for i in range(9)], branch_id=main)
    assert resp.status_code == 422
    assert "Fan-out is limited to 8 branches on this server; you asked for 9. Nothing was sent." in htmllib.unescape(resp.text)
    resp = fanout(user, session_id, origin, ["same prompt"], branch_id=main, copies="50")
    assert resp.status_code == 422 and "you asked for 50" in resp.text
    assert counts(app, session_id) == before
    assert len(chat_requests(sim)) == 1


def test_fanout_copies_sends_one_prompt_to_n_branches(app, user, sim):
    sim.configure(reply_mode="echo")
    session_id, main = user.new_session(provider="simulator")
    say(user, session_id, main, "go")
    origin = thread(user.page(session_id, main))[-1][0]
    url = _redirect(fanout(user, session_id, origin, ["try this"], branch_id=main, join=False, copies="3"))
    deadline = time.monotonic() + 20
    while "status-pending" in (page := user.get(url).text) or "status-streaming" in page:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert [m.body for m in messages(page)] == ["try this"] * 6
    assert "Join the answers into the parent branch" in page
    fanout_id = int(re.search(r"/fanout/(\d+)/", url).group(1))
    resp = user.post(f"/sessions/{session_id}/fanout/{fanout_id}/join/")
    assert resp.status_code == 200 and "Joined:" in resp.text
    assert user.post(f"/sessions/{session_id}/fanout/{fanout_id}/join/").status_code == 409
    assert messages(user.page(session_id, main))[-1].body.startswith("Results from fan-out")


# --- return to parent ------------------------------------------------------------------------------


def test_return_to_parent_brings_the_final_answer_back_quoted(app, user, sim):
    sim.configure(reply_mode="echo")
    session_id, main = user.new_session(provider="simulator")
    say(user, session_id, main, "the big question")
    answer_id = thread(user.page(session_id, main))[-1][0]
    child = fork(user, session_id, answer_id, main)
    page = user.page(session_id, child)
    assert "Return answer to “main”" in page
    say(user, session_id, child, "the <sub> question")
    requests_before = len(chat_requests(sim))

    resp = user.post(f"/sessions/{session_id}/b/{child}/return/")
    assert _branch_of(_redirect(resp)) == main
    main_page = user.wait_idle(session_id, main)
    last = messages(main_page)[-1]
    assert last.role == "user" and last.status == "done"
    assert last.body.startswith("Result from branch “the <sub> question”")  # named after its first message
    assert "> the <sub> question" in last.body
    assert "the &lt;sub&gt; question" in last.html, "the quoted answer is escaped text"
    assert f'href="/sessions/{session_id}/b/{child}/"' in last.html
    assert len(chat_requests(sim)) == requests_before, "returning does not start a reply"
    # The parent continues with the result in its context.
    say(user, session_id, main, "now combine")
    assert sent_messages(chat_requests(sim)[-1])[-2][1].startswith("Result from branch “the <sub> question”")
    # A branch without a parent cannot return.
    assert user.post(f"/sessions/{session_id}/b/{main}/return/").status_code == 409


# --- isolation -------------------------------------------------------------------------------------


def test_another_users_ids_are_404_and_change_nothing(app, user, sim):
    sim.configure(reply_mode="echo")
    session_id, main = user.new_session(provider="simulator")
    say(user, session_id, main, "mine")
    u1, a1 = [m for m, _, _ in thread(user.page(session_id, main))]
    child = fork(user, session_id, a1, main)
    url = _redirect(fanout(user, session_id, a1, ["x"], branch_id=main, join=False))
    fanout_id = int(re.search(r"/fanout/(\d+)/", url).group(1))
    user.wait_idle(session_id, child)
    time.sleep(0.5)
    before = counts(app, session_id)
    requests_before = len(chat_requests(sim))

    other = new_user(app)
    other_session, other_branch = other.new_session(provider="simulator")
    posts = [
        (f"/sessions/{session_id}/m/{a1}/fork/", {}),
        (f"/sessions/{session_id}/m/{a1}/open/", {}),
        (f"/sessions/{session_id}/m/{u1}/edit/", {"content": "stolen"}),
        (f"/sessions/{session_id}/m/{a1}/regenerate/", {}),
        (f"/sessions/{session_id}/m/{a1}/fanout/", {"prompts": "x"}),
        (f"/sessions/{session_id}/b/{child}/return/", {}),
        (f"/sessions/{session_id}/b/{main}/rename/", {"name": "pwned"}),
        (f"/sessions/{session_id}/fanout/{fanout_id}/join/", {}),
        # their own session with my message / branch ids
        (f"/sessions/{other_session}/m/{a1}/fork/", {}),
        (f"/sessions/{other_session}/m/{a1}/fanout/", {"prompts": "x"}),
        (f"/sessions/{other_session}/b/{child}/return/", {}),
        (f"/sessions/{other_session}/m/{a1}/fork/?branch={main}", {"branch": main}),
    ]
    for path, data in posts:
        assert other.post(path, data).status_code == 404, path
    for path in (
        f"/sessions/{session_id}/tree/",
        f"/sessions/{session_id}/fanout/{fanout_id}/",
        f"/sessions/{session_id}/m/{u1}/edit/",
        f"/sessions/{session_id}/m/{a1}/fanout/",
        f"/sessions/{other_session}/fanout/{fanout_id}/",
        f"/sessions/{other_session}/tree/?branch={main}",
        f"/messages/{a1}/",
        f"/sessions/{session_id}/m/{a1}/earlier/",
        f"/sessions/{other_session}/m/{a1}/earlier/",
    ):
        assert other.get(path).status_code == 404, path
    # Their own fork with my branch as the "current" one is refused too.
    assert other.post(f"/sessions/{other_session}/b/{other_branch}/send/", {"content": "hi"}).status_code == 200
    other.wait_idle(other_session, other_branch)
    their_msg = thread(other.page(other_session, other_branch))[-1][0]
    assert other.post(f"/sessions/{other_session}/m/{their_msg}/fork/", {"branch": main}).status_code == 404
    assert counts(app, session_id) == before
    assert len([r for r in chat_requests(sim)]) == requests_before + 1  # only their own send
    assert "pwned" not in user.page(session_id, main)
    # The owner can re-read a finished message (what a page does once its socket is open).
    resp = user.get(f"/messages/{a1}/")
    assert resp.status_code == 200 and f'id="msg-{a1}" hx-swap-oob="true"' in resp.text


# --- a long branch: the page shows a window, "Show earlier messages" loads the rest ------------


def _earlier_urls(html: str) -> list[str]:
    return [htmllib.unescape(u) for u in re.findall(r'hx-get="([^"]*/earlier/[^"]*)"', html)]


def test_a_long_branch_page_shows_a_window_and_loads_earlier_windows(app, user, sim):
    """250 messages deep: the page renders the last 100 (PLAYGROUND_PAGE_MESSAGES), each
    "Show earlier messages" the 100 above, oldest first, with no message twice; sending still
    appends and streams, and the model still gets the whole conversation."""
    sim.configure(reply_mode="echo")
    session_id, main = user.new_session(provider="simulator")
    ids = app.insert_chain(session_id, main, 250)
    page = user.page(session_id, main)
    assert [m for m, _, _ in thread(page)] == ids[-100:]
    assert "150 earlier messages not shown" in page
    seen = [m for m, _, _ in thread(page)]
    urls = _earlier_urls(page)
    loads = 0
    while urls:
        assert len(urls) == 1
        resp = user.get(urls[0], headers={"HX-Request": "true"})
        assert resp.status_code == 200 and "<html" not in resp.text
        shown = [m for m, _, _ in thread(resp.text)]
        assert len(shown) == (100 if loads == 0 else 50)
        seen = shown + seen
        urls = _earlier_urls(resp.text)
        loads += 1
    assert loads == 2 and seen == ids, "every message once, in path order"

    # The branch goes on as usual at the bottom of the window.
    say(user, session_id, main, "and one more")
    page = user.page(session_id, main)
    shown = thread(page)
    assert [t for _, _, t in shown[-2:]] == ["and one more", "and one more"]
    assert [m for m, _, _ in shown[:-2]] == ids[-98:]
    sent = sent_messages(chat_requests(sim)[-1])
    assert len(sent) == 251 and sent[0] == ("user", "long branch message 0") and sent[-1] == ("user", "and one more")

    # A link to a message far above the window (tree view, sibling arrows) opens a window at it.
    resp = user.get(f"/sessions/{session_id}/b/{main}/?at={ids[20]}")
    assert resp.status_code == 200
    around = [m for m, _, _ in thread(resp.text)]
    assert ids[20] in around and around[:100] == ids[10:110]
    assert _earlier_urls(resp.text)[1].endswith(f"?after={ids[109]}")


def test_fanout_page_renders_its_headers_markdown_and_names_columns_by_prompt(app, user, sim):
    sim.configure(reply_mode="echo")
    session_id, main = user.new_session(provider="simulator")
    say(user, session_id, main, "Compare **Lisbon** and `Porto` <script>x()</script>")
    origin = thread(user.page(session_id, main))[-1][0]
    url = _redirect(fanout(user, session_id, origin, ["Which is cheaper?", "Which has better food?"], branch_id=main, join=False))
    page = user.get(url).text
    header = re.search(r'<blockquote class="fanout-origin">(.*?)</blockquote>', page, re.DOTALL).group(1)
    assert "<strong>Lisbon</strong>" in header and "<code>Porto</code>" in header, header
    assert "<script>" not in header, "rendered through the sanitizer"
    names = [htmllib.unescape(n) for n in re.findall(r'<h2><a href="[^"]+">([^<]+)</a></h2>', page)]
    assert names == ["Which is cheaper?", "Which has better food?"]
