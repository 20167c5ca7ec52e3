from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.conf import settings
from django.contrib.auth.forms import UserCreationForm
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.decorators import method_decorator
from django.views.decorators.http import require_http_methods

from playground.providers.services import session_keys_forget


@login_not_required
@require_http_methods(["GET", "POST"])
def signup(request):
    if not settings.PLAYGROUND_SIGNUP_OPEN:
        raise Http404("Sign-up is closed on this deployment.")
    if request.user.is_authenticated:
        return redirect("home")
    form = UserCreationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user)
        return redirect("keys")
    return render(request, "accounts/signup.html", {"form": form})


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
