"""An account's life after sign-up: change the password, reset it by an emailed link, set the
email the link goes to, and delete the account with everything of it.

The password views are Django's own (its token generator, its "never say whether that email
exists" reset form, the session kept signed in after a change) with the app's templates.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_POST

from . import services
from .forms import AccountDeleteForm, EmailForm
from .mail import email_enabled

SETTINGS_PAGE = "accounts/settings.html"


class PasswordChangeView(auth_views.PasswordChangeView):
    template_name = "accounts/password_change.html"
    success_url = reverse_lazy("password_change_done")


class PasswordChangeDoneView(auth_views.PasswordChangeDoneView):
    template_name = "accounts/password_change_done.html"


class PasswordResetView(auth_views.PasswordResetView):
    template_name = "accounts/password_reset.html"
    email_template_name = "accounts/password_reset_email.txt"
    subject_template_name = "accounts/password_reset_subject.txt"

    def get_context_data(self, **kwargs):
        return {**super().get_context_data(**kwargs), "email_enabled": email_enabled()}


class PasswordResetDoneView(auth_views.PasswordResetDoneView):
    template_name = "accounts/password_reset_done.html"


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    template_name = "accounts/password_reset_confirm.html"


class PasswordResetCompleteView(auth_views.PasswordResetCompleteView):
    template_name = "accounts/password_reset_complete.html"


def _settings_page(request, *, email_form=None, delete_form=None, status=200):
    """The sign-in settings alone, with a form's errors (the account page shows them unbound)."""
    context = {
        "email_form": email_form or EmailForm(user=request.user),
        "delete_form": delete_form or AccountDeleteForm(user=request.user),
    }
    return render(request, SETTINGS_PAGE, context, status=status)


@require_GET
def account_settings(request):
    return _settings_page(request)


def _settings_post(request, form_class, slot: str, act):
    """Validate the posted form; `act(form)` answers a valid one, the settings page with its
    errors (422, what was typed kept, the password excepted) an invalid one."""
    form = form_class(request.POST, user=request.user)
    if not form.is_valid():
        return _settings_page(request, **{slot: form}, status=422)
    return act(form)


def _email_saved(request, email: str):
    services.account_email_set(user=request.user, email=email)
    messages.success(request, "Email saved." if email else "Email removed: the password cannot be reset by email now.")
    return redirect(reverse("account") + "#sign-in-settings")


def _account_gone(request):
    services.account_delete(user=request.user)
    logout(request)
    return redirect("account-deleted")


@sensitive_post_parameters("email-password")
@require_POST
def email_set(request):
    return _settings_post(request, EmailForm, "email_form", lambda form: _email_saved(request, form.cleaned_data["email"]))


@sensitive_post_parameters("delete-password")
@require_POST
def account_delete(request):
    return _settings_post(request, AccountDeleteForm, "delete_form", lambda form: _account_gone(request))


@login_not_required
@require_GET
def account_deleted(request):
    return render(request, "accounts/account_deleted.html")
