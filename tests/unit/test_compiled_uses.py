"""Every read that became a `Compiled` query gives what the queryset it replaced gave (kept
here verbatim as the reference): a send's limit counts, a reply's cache history, the message a
turn's end swaps in, a key reference the app never wrote, a branch page's session and branch,
a send's branch lock, a reply's claim, and a request's session row."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.sessions.backends.db import SessionStore as DjangoSessionStore
from django.db import transaction
from django.db.models import Count, Q
from django.http import Http404
from django.template.loader import render_to_string
from django.utils import timezone

from playground.accounts.sessions import SessionStore
from playground.chat import generation, insight, rendering, selectors, turns
from playground.chat.models import Branch, Message, Turn
from playground.providers.registry import providers
from playground.providers.selectors import key_plaintext
from tests.harness.postgres import pytest_on_postgresql

pytestmark = pytest.mark.django_db


def add_turn(chat, user, *, status="done", created_ago=timedelta(0), requested_ago=None, provider=None, fingerprint=None,
             with_turn=True):
    message = Message.objects.create(session=chat, depth=0, role="assistant", status=status, content="a reply",
                                     branch=chat.branches.get())
    if not with_turn:
        return message
    requested = timezone.now() - requested_ago if requested_ago is not None else None
    turn = Turn.objects.create(message=message, reply=message, session=chat, branch=chat.branches.get(), user=user,
                               provider=provider or chat.provider, api=chat.api, model=chat.model, key_ref="none:",
                               params={}, requested_at=requested, fingerprint=fingerprint, prompt_tokens=1500, cached_tokens=1024)
    Turn.objects.filter(pk=turn.pk).update(created_at=timezone.now() - created_ago)
    return message


def old_counts(user):
    started = Q(created_at__gte=timezone.now() - timedelta(minutes=1))
    running = Q(message__status__in=[Message.Status.PENDING, Message.Status.STREAMING])
    counts = Turn.objects.filter(started | running, user=user).aggregate(recent=Count("pk", filter=started), running=Count("pk", filter=running))
    return counts["recent"], counts["running"]


def new_counts(user):
    rows = turns._COUNTS.rows(user_id=user.pk, since=timezone.now() - timedelta(minutes=1))
    return rows[0] if rows else (0, 0)


def test_the_limit_counts(owner, chat, make_user):
    nobody = make_user("nobody")
    assert new_counts(nobody) == old_counts(nobody) == (0, 0)
    add_turn(chat, owner, status="done", created_ago=timedelta(minutes=5))  # neither
    assert new_counts(owner) == old_counts(owner) == (0, 0)
    add_turn(chat, owner, status="done")  # recent
    add_turn(chat, owner, status="streaming", created_ago=timedelta(minutes=5))  # running
    add_turn(chat, owner, status="pending")  # both
    assert new_counts(owner) == old_counts(owner) == (2, 2)
    assert new_counts(nobody) == (0, 0)


def old_history(*, provider, user_id, before, exclude_turn):
    rows = Turn.objects.filter(provider=provider.slug, fingerprint__isnull=False, requested_at__lt=before,
                               requested_at__gte=before - insight.EXTENDED_HISTORY_WINDOW)
    if provider.cache_rules != "llama":
        rows = rows.filter(user_id=user_id)
    if exclude_turn is not None:
        rows = rows.exclude(pk=exclude_turn)
    return list(rows.order_by("-requested_at").values_list("fingerprint", flat=True)[:insight.HISTORY_LIMIT])


def test_the_cache_history(owner, chat, make_user, make_session):
    other = make_user("other")
    other_chat, _ = make_session(other)
    for i, ago in enumerate([timedelta(minutes=3), timedelta(hours=2), timedelta(days=2), timedelta(seconds=5)]):
        add_turn(chat, owner, requested_ago=ago, fingerprint={"n": i})
        add_turn(other_chat, other, requested_ago=ago, fingerprint={"other": i})
    add_turn(chat, owner, requested_ago=timedelta(minutes=1))  # no fingerprint
    excluded = Turn.objects.filter(session=chat, fingerprint={"n": 0}).get().pk
    before = timezone.now()
    for provider in providers().values():
        shared = provider.cache_rules == "llama"
        for exclude in (None, excluded):
            params = {"provider": provider.slug, "before": before, "since": before - insight.EXTENDED_HISTORY_WINDOW,
                      "exclude": exclude or -1, **({} if shared else {"user_id": owner.pk})}
            got = [fp for (fp,) in insight._HISTORY[shared].rows(**params)]
            assert got == old_history(provider=provider, user_id=owner.pk, before=before, exclude_turn=exclude)
    openai_like = next(p for p in providers().values() if p.cache_rules != "llama" and p.slug == chat.provider)
    got = [fp for (fp,) in insight._HISTORY[False].rows(provider=openai_like.slug, before=before,
                                                        since=before - insight.EXTENDED_HISTORY_WINDOW, exclude=-1, user_id=owner.pk)]
    assert got == [{"n": 3}, {"n": 0}, {"n": 1}]  # newest first, two days ago is out of the window, other users' never


@pytest.mark.parametrize("with_turn", [True, False])
def test_the_message_a_turns_end_swaps_in(owner, chat, with_turn):
    message = add_turn(chat, owner, requested_ago=timedelta(seconds=3), fingerprint={"big": list(range(50))}, with_turn=with_turn)
    old = Message.objects.select_related("turn").get(pk=message.pk)
    new = selectors.message_shown(message_id=message.pk)
    assert {f.attname: getattr(new, f.attname) for f in Message._meta.concrete_fields} == {
        f.attname: getattr(old, f.attname) for f in Message._meta.concrete_fields}
    if with_turn:
        shown = [f.attname for f in Turn._meta.concrete_fields if f.name not in ("fingerprint", "llama_prefix")]
        assert {a: getattr(new.turn, a) for a in shown} == {a: getattr(old.turn, a) for a in shown}
        assert new.turn.message is new
    else:
        with pytest.raises(Turn.DoesNotExist):
            new.turn  # noqa: B018 - as after select_related, with no queries
    expected = render_to_string("chat/session.html#message-oob", {"message": old, "seq": 0, "text": old.content})
    assert rendering.message_replaced(message_id=message.pk) == expected
    assert selectors.message_shown(message_id=10**12) is None
    with pytest.raises(Message.DoesNotExist):
        rendering.message_replaced(message_id=10**12)


@pytest.mark.parametrize("ref", ["db:", "db:abc", "db:-3", "db:99999999999999999999", "db:1e3", "db:٣"])
def test_a_key_reference_the_app_never_wrote_finds_no_key(owner, make_key, ref):
    make_key(owner, "sk-test-compiled-0123456789")
    with pytest.raises(LookupError):
        key_plaintext(user_id=owner.pk, key_ref=ref)


def test_a_stored_key_is_found_by_its_owner_only(owner, make_key, make_user):
    key = make_key(owner, "sk-test-compiled-0123456789")
    assert key_plaintext(user_id=owner.pk, key_ref=f"db:{key.pk}") == "sk-test-compiled-0123456789"
    with pytest.raises(LookupError):
        key_plaintext(user_id=make_user("thief").pk, key_ref=f"db:{key.pk}")


def fields(obj) -> dict:
    return {f.attname: getattr(obj, f.attname) for f in type(obj)._meta.concrete_fields}


def test_a_branch_pages_session_and_branch(owner, chat, make_user, make_session):
    branch = chat.branches.get()
    old = Branch.objects.select_related("session").get(pk=branch.pk, session_id=chat.pk, session__owner=owner, session__deleted_at__isnull=True)
    got_chat, got_branch = selectors.session_branch_get(session_id=chat.pk, branch_id=branch.pk, user=owner)
    assert fields(got_branch) == fields(old) and fields(got_chat) == fields(old.session) and got_branch.session is got_chat
    other, other_branch = make_session(owner)
    stranger = make_user("stranger")
    for session_id, branch_id, user in [
        (chat.pk, branch.pk, stranger), (other.pk, branch.pk, owner), (chat.pk, other_branch.pk, owner),
        (chat.pk, 2**63, owner), (2**64, branch.pk, owner), (-(2**63) - 1, branch.pk, owner),
    ]:
        with pytest.raises(Http404):
            selectors.session_branch_get(session_id=session_id, branch_id=branch_id, user=user)
    chat.deleted_at = timezone.now()
    chat.save(update_fields=["deleted_at"])
    with pytest.raises(Http404):
        selectors.session_branch_get(session_id=chat.pk, branch_id=branch.pk, user=owner)


def test_a_branch_lock_reads_the_branch_and_its_head(owner, chat):
    # The head committed by a transaction the lock waited for (the re-read in lock_branch):
    # tests/unit/test_send_race.py, two connections on PostgreSQL.
    branch = chat.branches.get()
    with transaction.atomic():
        assert turns.lock_branch(branch.pk).head is None
    message = add_turn(chat, owner)
    Branch.objects.filter(pk=branch.pk).update(head=message)
    with transaction.atomic():
        locked = turns.lock_branch(branch.pk)
        assert fields(locked) == fields(Branch.objects.get(pk=branch.pk)) and fields(locked.head) == fields(message)
    with transaction.atomic(), pytest.raises(Branch.DoesNotExist):
        turns.lock_branch(10**12)


def test_a_replys_claim(owner, chat):
    message = add_turn(chat, owner, status="pending")
    with transaction.atomic():
        old = Turn.objects.select_for_update(of=("self",)).select_related("message").filter(pk=message.turn.pk).first()
        new = generation._CLAIM.first(turn_id=message.turn.pk)
    assert fields(new) == fields(old) and fields(new.message) == fields(old.message)
    with transaction.atomic():
        assert generation._CLAIM.first(turn_id=10**12) is None


def test_a_requests_session_row(owner):
    store = SessionStore()
    store["_auth_user_id"], store["note"] = str(owner.pk), "kept"
    store.create()
    assert SessionStore(store.session_key).load() == DjangoSessionStore(store.session_key).load() == {"_auth_user_id": str(owner.pk), "note": "kept"}
    store.get_model_class().objects.filter(session_key=store.session_key).update(expire_date=timezone.now() - timedelta(seconds=1))
    for expired in (SessionStore(store.session_key), DjangoSessionStore(store.session_key)):
        assert expired.load() == {} and expired.session_key is None  # unknown or expired: a new session
    unknown = SessionStore("x" * 32)
    assert unknown.load() == {} and unknown.session_key is None


@pytest.mark.integration
def test_the_same_on_postgresql(tmp_path):
    from django.db import connection

    if connection.vendor != "sqlite":
        pytest.skip("already running on PostgreSQL")
    pytest_on_postgresql(__file__, tmp_path)
