from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from . import selectors, services
from .registry import provider_get


def _page(request, *, errors=None, notices=None, status=200):
    errors, notices = errors or {}, notices or {}
    statuses = selectors.key_statuses(user=request.user, session=request.session)
    context = {
        "rows": [
            {"status": s, "error": errors.get(s.provider.slug), "notice": notices.get(s.provider.slug)} for s in statuses
        ]
    }
    if request.htmx:
        return render(request, "providers/keys.html#key-list", context, status=status)
    return render(request, "providers/keys.html", context, status=status)


@require_GET
def keys(request):
    return _page(request)


@require_POST
def key_save(request, provider_slug: str):
    provider = provider_get(provider_slug)
    try:
        mask = services.api_key_save(
            user=request.user,
            session=request.session,
            provider=provider,
            plaintext=request.POST.get("api_key", ""),
            session_only=request.POST.get("session_only") == "on",
        )
    except services.KeyRejected as exc:
        # 200 for htmx so the swap shows the error; the key itself is never echoed back.
        return _page(request, errors={provider.slug: str(exc)}, status=200 if request.htmx else 400)
    notice = f"Key checked and saved: {mask}"
    if request.htmx:
        return _page(request, notices={provider.slug: notice})
    messages.success(request, f"{provider.label}: {notice}")
    return redirect("keys")


@require_POST
def key_delete(request, provider_slug: str):
    provider = provider_get(provider_slug)
    services.api_key_forget(user=request.user, session=request.session, provider=provider)
    if request.htmx:
        return _page(request, notices={provider.slug: "Key deleted."})
    messages.success(request, f"{provider.label} key deleted.")
    return redirect("keys")
