"""Writes to a user's account: the reset email, and deleting the account with everything of theirs."""

from __future__ import annotations

from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.models import Session
from django.core.cache import cache
from django.db import transaction

from playground.chat.models import DeletedSpend, Message, Turn
from playground.chat.outbox import StopRequested, emit
from playground.providers.selectors import EPHEMERAL_CACHE_PREFIX, SESSION_KEYS

from .models import Invitation


def account_email_set(*, user, email: str) -> None:
    """The address password-reset links go to (empty: none, and no reset is possible)."""
    user.email = email
    user.save(update_fields=["email"])


def _signed_in_sessions(user) -> list[tuple[Session, dict]]:
    """Every stored browser session signed in as `user` (the database session store), decoded."""
    uid = str(user.pk)
    found = []
    for stored in Session.objects.iterator():
        data = stored.get_decoded()  # an unreadable session decodes to {}
        if data.get(SESSION_KEY) == uid:
            found.append((stored, data))
    return found


def account_delete(*, user) -> None:
    """Delete the account and, for real, everything of it, in one transaction.

    Cascades from the user row delete the stored keys (providers.ApiKey), chat sessions with
    their messages, branches, fan-outs and attempts, the budgets, the spend carried from
    deleted sessions (DeletedSpend: it only counted against this user's own caps), admin log
    entries, group and permission links; the invitation they used goes too. The
    browser sessions signed in as the user are deleted too (signed out everywhere), and the
    session-only keys they held are removed from the cache once the deletion has committed.
    Replies still streaming are told to stop, so no request keeps spending on their key.
    """
    with transaction.atomic():
        sessions = _signed_in_sessions(user)
        refs = [entry["ref"] for _, data in sessions for entry in (data.get(SESSION_KEYS) or {}).values()]
        running = Turn.objects.filter(
            user=user, message__status__in=[Message.Status.PENDING, Message.Status.STREAMING]
        ).values_list("pk", flat=True)
        for turn_id in running:
            emit(StopRequested(turn_id))
        Session.objects.filter(pk__in=[stored.pk for stored, _ in sessions]).delete()
        DeletedSpend.objects.filter(user=user).delete()  # cascades too; explicit: it must go
        # The invitation they signed up with holds their email; those they made are for others
        # and stay, without a maker (created_by is SET_NULL).
        Invitation.objects.filter(used_by=user).delete()
        user.delete()
        transaction.on_commit(lambda: cache.delete_many([EPHEMERAL_CACHE_PREFIX + ref for ref in refs]))
