"""Tree benchmark, run inside the app's environment (its database, its settings):

    python -m bench.app_tree '{"depths": [10, 1000, 10000], "tree_sizes": [200, 2000], "repeat": 7}'

* Fork and path at depth d: a session whose conversation is one chain d messages deep
  (alternating user/assistant, every assistant node with its Turn, like real sessions).
  `path`: what a user waits for, the chat page's window of the branch
  (`selectors.message_path_window` of the head, PLAYGROUND_PAGE_MESSAGES messages with their
  turns, or all d when d is smaller: see `rows`). `path_full`: `selectors.message_path`, the
  whole root-to-head path a generation job sends to the model (grows with d by nature).
  `earlier`: GET "Show earlier messages" from the top of the page's window. `fork`:
  `branching.branch_fork` at the head, and the fork view as the page posts it (POST
  .../m/<id>/fork/ with the open branch, HX-Request). `open_fork_page`: the new branch's page.
* Tree view: a session with S nodes shaped like real use (mostly continuing, ~15% forks from
  an earlier node, a branch on every leaf); GET /sessions/<id>/tree/ through Django's handler
  in-process (server time: middleware, queries, layout, template), and the layout alone.

Time is `perf_counter` around the call, median of `repeat` after one warm-up; queries are
counted with CaptureQueriesContext. Prints one JSON line. Parts whose code does not exist yet
are reported as {"status": "pending"}, never faked.
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import time


def _timed(fn, repeat: int):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    fn()  # warm-up: template compilation, first-query costs
    times, queries, result = [], [], None
    for _ in range(repeat):
        with CaptureQueriesContext(connection) as ctx:
            t = time.perf_counter()
            result = fn()
            times.append((time.perf_counter() - t) * 1000)
        queries.append(len(ctx.captured_queries))
    return {
        "ms_median": round(statistics.median(times), 2),
        "ms_min": round(min(times), 2),
        "ms_max": round(max(times), 2),
        "queries": max(queries),
        "repeat": repeat,
    }, result


def _reserve_ids(n: int) -> list[int]:
    """n fresh primary keys for chat_message, so a chain can be bulk-inserted parent-first."""
    from django.db import connection

    from playground.chat.models import Message

    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute("SELECT nextval(pg_get_serial_sequence('chat_message', 'id')) FROM generate_series(1, %s)", [n])
            return [row[0] for row in cur.fetchall()]
    start = (Message.objects.order_by("-id").values_list("id", flat=True).first() or 0) + 1000
    return list(range(start, start + n))


def _build(session, user, parents: list[int | None], words: int = 40):
    """Insert nodes with the given parent indexes (parent before child); returns the Messages."""
    from playground.chat.models import Message, Turn

    ids = _reserve_ids(len(parents))
    depth: list[int] = []
    msgs = []
    for i, p in enumerate(parents):
        d = 0 if p is None else depth[p] + 1
        depth.append(d)
        role = "user" if d % 2 == 0 else "assistant"
        text = f"node {i} at depth {d}: " + " ".join(f"word{(i * 7 + j) % 97}" for j in range(words))
        msgs.append(Message(id=ids[i], session=session, parent_id=None if p is None else ids[p], depth=d, role=role,
                            content=text, status="done"))
    Message.objects.bulk_create(msgs, batch_size=1000)
    Turn.objects.bulk_create(
        [Turn(message_id=m.id, session=session, user=user, provider="simulator", api="chat", model="gpt-4o-mini",
              cache_scope="session", usage_reported=True, prompt_tokens=100, cached_tokens=0, output_tokens=40)
         for m in msgs if m.role == "assistant"],
        batch_size=1000,
    )
    return msgs


def main() -> None:
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.urls import NoReverseMatch, reverse

    from playground.chat import branching, selectors
    from playground.chat.models import Branch, ChatSession

    cfg = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    depths = cfg.get("depths", [10, 1000, 10000])
    sizes = cfg.get("tree_sizes", [200, 2000])
    repeat = cfg.get("repeat", 7)
    page_repeat = cfg.get("page_repeat", 3)
    from django.db import connection

    user = get_user_model().objects.create_user(f"tree{random.randrange(10**9)}", password=None)
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    out: dict = {"db": connection.vendor, "depths": {}, "tree_view": {}}
    has_fork = hasattr(branching, "branch_fork")
    try:
        reverse("message-fork", kwargs={"session_id": 1, "message_id": 1})
        has_fork_view = True
    except NoReverseMatch:
        has_fork_view = False
    try:
        reverse("session-tree", kwargs={"session_id": 1})
        has_tree = True
    except NoReverseMatch:
        has_tree = False

    def new_session(title: str):
        chat = ChatSession.objects.create(owner=user, title=title, provider="simulator", model="gpt-4o-mini")
        main_branch = Branch.objects.create(session=chat, name="main")
        return chat, main_branch

    for d in depths:
        t = time.perf_counter()
        chat, main_branch = new_session(f"chain {d}")
        msgs = _build(chat, user, [None] + list(range(d - 1)))
        head = msgs[-1]
        main_branch.head_id = head.id
        main_branch.save(update_fields=["head"])
        row: dict = {"build_s": round(time.perf_counter() - t, 2)}
        if hasattr(selectors, "message_path_window"):
            from django.conf import settings

            limit = settings.PLAYGROUND_PAGE_MESSAGES
            path_fig, window = _timed(lambda: selectors.message_path_window(message_id=head.id, limit=limit), repeat)
            path_fig.update(rows=len(window.messages), limit=limit, more=window.more,
                            what="selectors.message_path_window: the chat page's last window")
            row["path"] = path_fig
            if window.more:
                earlier_url = reverse("message-earlier", kwargs={"session_id": chat.id, "message_id": window.messages[0].id})
                codes = []

                def earlier():
                    resp = client.get(earlier_url, HTTP_HX_REQUEST="true")
                    codes.append((resp.status_code, len(resp.content)))
                    return resp

                row["earlier"], _ = _timed(earlier, repeat)
                row["earlier"]["status"], row["earlier"]["bytes"] = codes[-1]
        full_fig, path = _timed(lambda: selectors.message_path(message_id=head.id), repeat)
        full_fig.update(rows=len(path), what="selectors.message_path: the whole path, as a generation sends it")
        row["path_full"] = full_fig
        if "path" not in row:
            row["path"] = full_fig
        if has_fork:
            from playground.chat.models import Message

            head_obj = Message.objects.get(pk=head.id)
            row["fork_service"], _ = _timed(
                lambda: branching.branch_fork(session=chat, message=head_obj, user=user, parent_branch=main_branch), repeat
            )
        else:
            row["fork_service"] = {"status": "pending", "why": "playground.chat.branching.branch_fork does not exist yet"}
        if has_fork_view:
            url = reverse("message-fork", kwargs={"session_id": chat.id, "message_id": head.id})
            statuses = []

            def fork_view():
                resp = client.post(url, {"branch": main_branch.id}, HTTP_HX_REQUEST="true")
                statuses.append(resp.status_code)
                return resp

            row["fork_view"], resp = _timed(fork_view, repeat)
            row["fork_view"]["status_codes"] = sorted(set(statuses))
            new_branch = Branch.objects.filter(session=chat).order_by("-id").first()
            page_url = reverse("branch", kwargs={"session_id": chat.id, "branch_id": new_branch.id})
            pages = []

            def open_page():
                resp = client.get(page_url)
                pages.append((resp.status_code, len(resp.content)))
                return resp

            row["open_fork_page"], _ = _timed(open_page, page_repeat if d < 10000 else 1)
            row["open_fork_page"]["status"] = pages[-1][0]
            row["open_fork_page"]["bytes"] = pages[-1][1]
        else:
            row["fork_view"] = {"status": "pending", "why": "no message-fork URL yet"}
        out["depths"][str(d)] = row

    rng = random.Random(7)
    for size in sizes:
        if not has_tree:
            out["tree_view"][str(size)] = {"status": "pending", "why": "no session-tree URL yet"}
            continue
        t = time.perf_counter()
        chat, main_branch = new_session(f"tree {size}")
        parents: list[int | None] = [None]
        for i in range(1, size):
            parents.append(i - 1 if rng.random() < 0.85 else rng.randrange(0, i - 1) if i > 1 else 0)
        msgs = _build(chat, user, parents, words=30)
        has_child = {p for p in parents if p is not None}
        leaves = [i for i in range(size) if i not in has_child]
        Branch.objects.filter(pk=main_branch.pk).update(head_id=msgs[leaves[-1]].id)
        Branch.objects.bulk_create([Branch(session=chat, name=f"b{k}", head_id=msgs[i].id, forked_from_id=msgs[i].id)
                                    for k, i in enumerate(leaves[:-1])])
        url = reverse("session-tree", kwargs={"session_id": chat.id}) + f"?branch={main_branch.id}"
        seen = []

        def tree_view():
            resp = client.get(url)
            seen.append((resp.status_code, len(resp.content)))
            return resp

        row = {"build_s": round(time.perf_counter() - t, 2), "nodes": size, "branches": len(leaves)}
        row["view"], _ = _timed(tree_view, repeat)
        row["view"]["status"], row["view"]["bytes"] = seen[-1]
        try:
            main_branch.refresh_from_db()
            row["layout_only"], _ = _timed(lambda: selectors.session_tree(session=chat, open_branch=main_branch), repeat)
        except (ImportError, AttributeError, TypeError) as exc:
            row["layout_only"] = {"status": "unavailable", "why": str(exc)}
        out["tree_view"][str(size)] = row
    print(json.dumps(out))


if __name__ == "__main__":
    main()
