from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.conf import settings
from django.contrib.auth.forms import UserCreationForm
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods

from playground.providers.services import session_keys_forget

from . import throttle
from .models import Invitation

# Sign-up signs the new user in directly; with the throttle backend first in
# AUTHENTICATION_BACKENDS, login() must be told which backend vouches for the user.
MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"


INVITATION_PROBLEMS = {
    "unknown": (404, "This invitation link is not valid. Check that you copied the whole link, or ask for a new invitation."),
    "used": (410, "This invitation has already been used: each one creates a single account. Ask for a new invitation, or sign in if the account is yours."),
    "expired": (410, "This invitation has expired. Ask the person who invited you for a new one."),
}


def _invitation_refused(request, state: str):
    status, problem = INVITATION_PROBLEMS[state]
    context = {"problem": problem, "signup_open": settings.PLAYGROUND_SIGNUP_OPEN}
    return render(request, "accounts/invite_invalid.html", context, status=status)


@login_not_required
@sensitive_post_parameters("password1", "password2")
@require_http_methods(["GET", "POST"])
def signup(request):
    """Sign up: open to anyone when PLAYGROUND_SIGNUP_OPEN, with at most
    PLAYGROUND_SIGNUPS_PER_HOUR accounts per client address an hour (throttle.py); and with
    ?invite=<token>, an admin's Invitation, once, even when sign-up is closed."""
    token = request.GET.get("invite", "")
    invitation = Invitation.objects.filter(token=token).first() if token else None
    if token and (invitation is None or invitation.state != "open"):
        return _invitation_refused(request, invitation.state if invitation else "unknown")
    if invitation is None and not settings.PLAYGROUND_SIGNUP_OPEN:
        raise Http404("Sign-up is closed on this deployment.")
    if request.user.is_authenticated:
        return redirect("home")
    form = UserCreationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if invitation is not None:
            user = invitation.redeem(form)
            if user is None:  # used or expired since the page was shown
                invitation.refresh_from_db()
                return _invitation_refused(request, "used" if invitation.used_at else "expired")
        else:
            wait_minutes = throttle.signup_reserve(request)
            if wait_minutes is not None:
                return throttle.signup_limited_response(request, UserCreationForm, wait_minutes)
            try:
                user = form.save()
            except Exception:
                throttle.signup_release(request)
                raise
        login(request, user, backend=MODEL_BACKEND)
        return redirect("keys")
    return render(request, "accounts/signup.html", {"form": form, "invitation": invitation})


@method_decorator(login_not_required, name="dispatch")
class SignInView(auth_views.LoginView):
    template_name = "accounts/login.html"
    redirect_authenticated_user = True
    extra_context = {"signup_open": settings.PLAYGROUND_SIGNUP_OPEN}


class SignOutView(auth_views.LogoutView):
    """Sign out, and end the session-only keys with the session."""

    def post(self, request, *args, **kwargs):
        session_keys_forget(session=request.session)
        return super().post(request, *args, **kwargs)
