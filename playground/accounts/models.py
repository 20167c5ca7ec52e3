"""Invitations: how people get an account on a deployment whose sign-up is closed."""

from __future__ import annotations

import secrets
from datetime import timedelta

from django.conf import settings
from django.db import models, transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode


def new_token() -> str:
    return secrets.token_urlsafe(32)


def default_expiry():
    return timezone.now() + timedelta(days=settings.PLAYGROUND_INVITE_DAYS)


class Invitation(models.Model):
    """One account's worth of sign-up, made by an admin: /signup/?invite=<token> works once,
    until `expires_at`, even when PLAYGROUND_SIGNUP_OPEN is off."""

    token = models.CharField(max_length=64, unique=True, default=new_token, editable=False)
    email = models.EmailField(blank=True, help_text="Whom it is for (optional); the new account gets this email address.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="invitations_made", editable=False
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(default=default_expiry)
    used_by = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="invitation", editable=False
    )
    used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Invitation for {self.email or 'anyone'} ({self.state})"

    @property
    def state(self) -> str:
        if self.used_at is not None:
            return "used"
        if self.expires_at <= timezone.now():
            return "expired"
        return "open"

    def signup_path(self) -> str:
        return reverse("signup") + "?" + urlencode({"invite": self.token})

    @transaction.atomic
    def redeem(self, form):
        """Create the account from a valid sign-up form, using this invitation up. Only one
        redemption can win (the claim is one conditional UPDATE); None when it was used or
        expired meanwhile, and then nothing is created."""
        now = timezone.now()
        claimed = Invitation.objects.filter(pk=self.pk, used_at__isnull=True, expires_at__gt=now).update(used_at=now)
        if not claimed:
            return None
        user = form.save(commit=False)
        if self.email:
            user.email = self.email
        user.save()
        Invitation.objects.filter(pk=self.pk).update(used_by=user)
        self.used_at, self.used_by = now, user
        return user
