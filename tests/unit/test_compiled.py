"""A `Compiled` query gives exactly what its queryset gives, for any values, on SQLite and on
PostgreSQL (money sums, datetimes, joined names, no rows); a parameter that never reaches
the SQL as a bound value is refused when the query is compiled, not silently ignored."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import signals
from django.db.models.functions import Now
from django.db.transaction import TransactionManagementError
from django.db.models import Count, Max, Sum
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from playground.chat.models import Branch, ChatSession, Message, Turn
from playground.compiled import Compiled, insert, save_fields
from tests.harness.postgres import pytest_on_postgresql

pytestmark = pytest.mark.django_db


def per_branch(session_id, since):
    return (
        Turn.objects.filter(session_id=session_id, requested_at__gte=since)
        .values("branch_id", "branch__name")
        .annotate(n=Count("id"), spent=Sum("cost_actual"), last=Max("requested_at"))
        .order_by("branch_id")
    )


PER_BRANCH = Compiled(per_branch, session_id=int, since=type(timezone.now()))


def make_turns(chat, owner, costs):
    branch = chat.branches.get()
    other = Branch.objects.create(session=chat, name="second")
    start = timezone.now() - timedelta(hours=1)
    for i, cost in enumerate(costs):
        message = Message.objects.create(session=chat, depth=0, role="assistant", status="done", branch=branch)
        Turn.objects.create(
            message=message, reply=message, session=chat, branch=branch if i % 2 else other, user=owner,
            provider=chat.provider, api=chat.api, model=chat.model, key_ref="none:", params={},
            requested_at=start + timedelta(minutes=i), finished_at=start + timedelta(minutes=i, seconds=3), cost_actual=cost,
        )
    return start


def test_rows_equal_the_querysets_for_every_value(owner, chat, make_session):
    # Amounts a float sum gets wrong in the 12th decimal: SQLite's converter must still apply.
    start = make_turns(chat, owner, [Decimal("0.1"), Decimal("0.000000000001"), Decimal("0.2"), None, Decimal("7.000000000009")])
    empty, _ = make_session(owner)
    for session_id, since in [
        (chat.pk, start - timedelta(days=1)), (chat.pk, start + timedelta(minutes=2)), (chat.pk, start + timedelta(days=1)),
        (empty.pk, start), (10**12, start),
    ]:
        expected = list(per_branch(session_id, since))
        assert PER_BRANCH.dicts(session_id=session_id, since=since) == expected
        assert PER_BRANCH.rows(session_id=session_id, since=since) == [tuple(d.values()) for d in expected]
    every = PER_BRANCH.dicts(session_id=chat.pk, since=start - timedelta(days=1))
    assert {d["branch__name"] for d in every} == {"main", "second"}
    assert sum((d["spent"] or 0 for d in every), Decimal(0)) == Decimal("7.300000000010")
    assert all(isinstance(d["spent"], Decimal) and d["last"].tzinfo is not None for d in every)


def test_one_statement_and_no_orm_build_after_the_first_call(owner, chat):
    start = make_turns(chat, owner, [Decimal("1")])
    PER_BRANCH.rows(session_id=chat.pk, since=start)
    built = []
    query = Compiled(lambda session_id: built.append(session_id) or Turn.objects.filter(session_id=session_id).values_list("id"),
                     session_id=int)
    with CaptureQueriesContext(connection) as queries:
        for _ in range(3):
            assert len(query.rows(session_id=chat.pk)) == 1
    assert len(queries) == 3 and len(built) == 2  # built twice (two sets of stand-ins), then never again


def test_instances_are_the_querysets_model_rows(owner, chat, make_session):
    other, _ = make_session(owner)
    query = Compiled(lambda owner_id, title: ChatSession.objects.filter(owner_id=owner_id, title=title).order_by("pk"),
                     owner_id=int, title=str)
    found = query.instances(owner_id=owner.pk, title=chat.title)
    expected = list(ChatSession.objects.filter(owner=owner, title=chat.title).order_by("pk"))
    assert [s.pk for s in found] == [chat.pk, other.pk] == [s.pk for s in expected]
    for got, want in zip(found, expected):
        assert {f.attname: getattr(got, f.attname) for f in ChatSession._meta.concrete_fields} == {
            f.attname: getattr(want, f.attname) for f in ChatSession._meta.concrete_fields}
        assert not got._state.adding and got._state.db == "default"
    assert query.instances(owner_id=owner.pk, title="no such title") == []
    # .only(): the other fields are deferred, as the queryset defers them.
    slim = Compiled(lambda pk: ChatSession.objects.filter(pk=pk).only("id", "title"), pk=int).instances(pk=chat.pk)[0]
    assert slim.get_deferred_fields() == ChatSession.objects.only("id", "title").get(pk=chat.pk).get_deferred_fields()
    with pytest.raises(ValueError, match="prefetch_related"):
        Compiled(lambda pk: Branch.objects.prefetch_related("session").filter(pk=pk), pk=int).instances(pk=1)


def fields_of(obj) -> dict:
    return {f.attname: getattr(obj, f.attname) for f in type(obj)._meta.concrete_fields if f.attname in obj.__dict__}


def test_select_related_rows_come_filled_in_as_the_querysets(owner, chat):
    """Forward (a branch's session, its nullable head) and reverse one-to-one (a message's
    turn), a missing related row as None, a deferred related column deferred: as the queryset."""
    make_turns(chat, owner, [Decimal("0.5")])
    main = chat.branches.get(name="main")
    headless = Branch.objects.create(session=chat, name="no head")
    main.head = Message.objects.filter(session=chat).first()
    main.save(update_fields=["head"])
    branches = Compiled(lambda session_id: Branch.objects.select_related("session", "head").filter(session_id=session_id).order_by("pk"),
                        session_id=int)
    got, want = branches.instances(session_id=chat.pk), list(
        Branch.objects.select_related("session", "head").filter(session_id=chat.pk).order_by("pk"))
    assert [b.pk for b in got] == [b.pk for b in want] and headless.pk in [b.pk for b in got]
    with CaptureQueriesContext(connection) as queries:
        for g, w in zip(got, want, strict=True):
            assert fields_of(g) == fields_of(w) and fields_of(g.session) == fields_of(w.session)
            assert (g.head and fields_of(g.head)) == (w.head and fields_of(w.head))
    assert len(queries) == 0  # all of it came with the one statement
    message = Message.objects.filter(session=chat, turn__isnull=False).first()
    bare = Message.objects.create(session=chat, depth=0, role="user", content="no turn", branch=main)
    shown = Compiled(lambda pk: Message.objects.select_related("turn").defer("turn__fingerprint").filter(pk=pk), pk=int)
    with_turn, without = shown.first(pk=message.pk), shown.first(pk=bare.pk)
    expected = Message.objects.select_related("turn").defer("turn__fingerprint").get(pk=message.pk)
    assert fields_of(with_turn.turn) == fields_of(expected.turn) and with_turn.turn.message is with_turn
    assert with_turn.turn.get_deferred_fields() == expected.turn.get_deferred_fields() == {"fingerprint"}
    with CaptureQueriesContext(connection) as queries, pytest.raises(Turn.DoesNotExist):
        without.turn  # noqa: B018 - known missing, as after select_related: no query
    assert len(queries) == 0


def test_a_parameter_the_sql_does_not_bind_as_itself_is_refused(chat):
    ignored = Compiled(lambda session_id: Turn.objects.values_list("id"), session_id=int)
    with pytest.raises(ValueError, match="session_id"):
        ignored.rows(session_id=chat.pk)
    # Bound once as itself and once changed ("%value%"): the changed one would stay the stand-in.
    changed = Compiled(lambda s: Turn.objects.filter(provider=s, model__contains=s).values_list("id"), s=str)
    with pytest.raises(ValueError, match="depends on the parameters"):
        changed.rows(s="gpt")
    # The SQL's shape depends on the value.
    shaped = Compiled(lambda n: Turn.objects.filter(attempt__gte=n).values_list("id")[: 1 + n % 2], n=int)
    with pytest.raises(ValueError, match="depends on the parameters"):
        shaped.rows(n=1)


def test_values_are_checked_before_they_are_bound(owner, chat):
    with pytest.raises(TypeError):
        PER_BRANCH.rows(session_id=chat.pk)  # one missing
    with pytest.raises(TypeError, match="session_id"):
        PER_BRANCH.rows(session_id=None, since=timezone.now())  # the ORM would say IS NULL; `= NULL` finds nothing
    with pytest.raises(TypeError, match="aware"):
        PER_BRANCH.rows(session_id=chat.pk, since=timezone.now().replace(tzinfo=None))
    with pytest.raises(TypeError):
        PER_BRANCH.rows(session_id=True, since=timezone.now())
    with pytest.raises(TypeError, match="model rows"):
        PER_BRANCH.instances(session_id=chat.pk, since=timezone.now())
    # An ordinary 32-bit primary key (auth's user) takes the stand-ins on every backend.
    user = Compiled(lambda pk: type(owner).objects.filter(pk=pk), pk=int)
    assert [u.pk for u in user.instances(pk=owner.pk)] == [owner.pk]


@pytest.mark.django_db(transaction=True)
def test_a_row_lock_outside_a_transaction_is_refused_as_the_orm_refuses_it(chat):
    lock = Compiled(lambda pk: ChatSession.objects.select_for_update().filter(pk=pk), pk=int)
    with transaction.atomic():
        assert [s.pk for s in lock.instances(pk=chat.pk)] == [chat.pk]
    if connection.features.has_select_for_update:
        with pytest.raises(TransactionManagementError):
            lock.instances(pk=chat.pk)
        with pytest.raises(TransactionManagementError):
            list(ChatSession.objects.select_for_update().filter(pk=chat.pk))


@pytest.mark.integration
def test_the_same_on_postgresql(tmp_path):
    if connection.vendor != "sqlite":
        pytest.skip("already running on PostgreSQL")
    pytest_on_postgresql(__file__, tmp_path)


def row_of(model, pk) -> dict:
    return model.objects.filter(pk=pk).values().get()


def test_an_insert_writes_the_row_save_writes(owner, chat):
    """Every column as `Model.objects.create` writes it (auto_now stamps, JSON, defaults,
    relations given as objects or ids), the id returned, the signals sent as save() sends them."""
    branch = chat.branches.get()
    parent = insert(Message(session=chat, depth=0, role="user", content="hi ✓ 'quoted'", branch=branch))
    reference = Message.objects.create(session=chat, depth=0, role="user", content="hi ✓ 'quoted'", branch=branch)
    assert parent.pk and not parent._state.adding and parent._state.db == "default"
    got, want = row_of(Message, parent.pk), row_of(Message, reference.pk)
    for column in ("id", "created_at"):
        got.pop(column), want.pop(column)
    assert got == want
    assert abs(Message.objects.get(pk=parent.pk).created_at - reference.created_at) < timedelta(seconds=5)
    seen = []
    receiver = lambda sender, instance, **kw: seen.append((kw.get("created"), instance.pk))  # noqa: E731
    signals.pre_save.connect(receiver, sender=Turn)
    signals.post_save.connect(receiver, sender=Turn)
    try:
        fields = dict(session=chat, branch=branch, user=owner, provider=chat.provider, api=chat.api, model=chat.model,
                      key_ref="none:", params={"system_prompt": "be brief", "temperature": 0.5, "nested": [1, {"a": None}]})
        reply = insert(Message(session=chat, parent=parent, depth=1, role="assistant", status="pending", branch=branch))
        turn = insert(Turn(message=reply, reply=reply, **fields))
        other = Message.objects.create(session=chat, parent=parent, depth=1, role="assistant", status="pending", branch=branch)
        expected = Turn.objects.create(message=other, reply=other, **fields)
    finally:
        signals.pre_save.disconnect(receiver, sender=Turn)
        signals.post_save.disconnect(receiver, sender=Turn)
    assert seen == [(None, None), (True, turn.pk), (None, None), (True, expected.pk)]
    got, want = row_of(Turn, turn.pk), row_of(Turn, expected.pk)
    for column in ("id", "message_id", "reply_id", "created_at"):
        got.pop(column), want.pop(column)
    assert got == want and Turn.objects.get(pk=turn.pk).message_id == reply.pk
    with pytest.raises(ValueError, match="new object"):
        insert(turn)
    with pytest.raises(ValueError, match="unsaved related object"):
        insert(Message(session=chat, parent=Message(session=chat, depth=0), depth=1, branch=branch))


def test_saving_some_fields_updates_them_and_only_them(owner, chat):
    branch = chat.branches.get()
    before = row_of(Branch, branch.pk)
    message = insert(Message(session=chat, depth=0, role="user", content="x", branch=branch))
    branch.head, branch.name = message, "renamed in memory only"
    save_fields(branch, "head", "updated_at")
    after = row_of(Branch, branch.pk)
    assert after["head_id"] == message.pk and after["name"] == before["name"] and after["updated_at"] > before["updated_at"]
    assert branch.updated_at == after["updated_at"]  # stamped on the object, as save() stamps it
    save_fields(branch, "name")
    assert row_of(Branch, branch.pk) == {**after, "name": "renamed in memory only"}  # no auto_now unless named
    gone = Branch(pk=10**12, session=chat, name="gone")
    with transaction.atomic():
        with pytest.raises(Branch.NotUpdated, match="did not affect any rows"):
            save_fields(gone, "name")
        assert transaction.get_rollback()  # as save() leaves it
    assert issubclass(Branch.NotUpdated, DatabaseError)
    with pytest.raises(ValueError, match="no primary key"):
        save_fields(Branch(session=chat, name="new"), "name")
    branch.name = Now()
    with pytest.raises(ValueError, match="expression"):
        save_fields(branch, "name")
    with pytest.raises(ValueError):
        save_fields(branch, "id")
    with pytest.raises(ValueError):
        save_fields(branch)


def test_a_failed_write_marks_the_transaction_for_rollback(owner, chat):
    with transaction.atomic():
        with pytest.raises(IntegrityError):
            insert(Message(session=chat, depth=None, role="user", content="x", branch=chat.branches.get()))  # NOT NULL
        assert transaction.get_rollback()
