"""Two sends on one branch at once: the second waits for the branch's lock, then sees what the
first committed. On PostgreSQL a row lock's wait rechecks only the locked rows, so the head the
send joined in is the one from before the wait (chat/services.py `message_send` reads it again)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections, transaction

from playground.chat import services
from playground.chat.errors import ChatError
from playground.chat.models import Branch, Message
from tests.harness.postgres import pytest_on_postgresql

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_send_that_waited_for_the_branch_sees_the_reply_started_meanwhile(owner, chat, make_key):
    if connection.vendor != "postgresql":
        pytest.skip("row locks: SQLite has none to wait for (test_..._on_postgresql runs this there)")
    make_key(owner, "sk-test-race-0123456789", provider=chat.provider)
    branch = chat.branches.get()
    first = Message.objects.create(session=chat, depth=0, role="user", content="hi", branch=branch)
    answer = Message.objects.create(session=chat, parent=first, depth=1, role="assistant", content="hello",
                                    status="done", branch=branch)
    Branch.objects.filter(pk=branch.pk).update(head=answer)
    locked, release, outcome = threading.Event(), threading.Event(), {}

    def other_send() -> None:
        """Holds the branch, as a send does, while it appends a message and a pending reply."""
        try:
            with transaction.atomic():
                Branch.objects.select_for_update().filter(pk=branch.pk).values_list("pk", flat=True).first()
                asked = Message.objects.create(session=chat, parent=answer, depth=2, role="user", content="and?", branch=branch)
                pending = Message.objects.create(session=chat, parent=asked, depth=3, role="assistant", status="pending",
                                                 branch=branch)
                Branch.objects.filter(pk=branch.pk).update(head=pending)
                locked.set()
                release.wait(10)
        finally:
            connections.close_all()

    def this_send() -> None:
        try:
            services.message_send(session=chat, branch=branch, user=owner, content="me too")
            outcome["sent"] = True
        except ChatError as exc:
            outcome["refused"] = str(exc)
        finally:
            connections.close_all()

    holder = threading.Thread(target=other_send)
    holder.start()
    try:
        assert locked.wait(10)
        sender = threading.Thread(target=this_send)
        sender.start()
        sender.join(1.0)
        assert sender.is_alive(), f"the send waits for the branch's lock: {outcome}"
    finally:
        release.set()
        holder.join(10)
    sender.join(10)
    assert "still streaming" in outcome.get("refused", ""), outcome
    assert not Message.objects.filter(session=chat, content="me too").exists()
    assert Message.objects.filter(session=chat, depth=0).count() == 1, "no second root"


def test_the_same_on_postgresql(tmp_path):
    if connection.vendor != "sqlite":
        pytest.skip("already running on PostgreSQL")
    pytest_on_postgresql(__file__, tmp_path)
