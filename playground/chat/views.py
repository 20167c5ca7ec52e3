"""Thin views: parse, call one service or selector, render a page or a named partial."""

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from playground.caching.keys import SCOPE_BY_VALUE
from playground.caching.retention import retention_explanation
from playground.providers.registry import provider_get, providers
from playground.providers.selectors import key_ref_for

from . import costs, export, insight, selectors, services, tree
from .reply_request import path_messages
from .errors import ChatError
from .forms import SessionSettingsForm

TEMPLATE = "chat/session.html"


def _redirect(request, to):
    return HttpResponseClientRedirect(to) if request.htmx else redirect(to)


@require_GET
def home(request):
    latest = selectors.sessions_for(user=request.user).first()
    if latest is not None:
        return redirect("session", session_id=latest.pk)
    return render(request, "chat/home.html", {"sessions": []})


@require_POST
def session_new(request):
    chat = services.session_create(user=request.user, session=request.session)
    return _redirect(request, reverse("session", kwargs={"session_id": chat.pk}))


@require_GET
def session_open(request, session_id: int):
    chat = selectors.session_get(session_id=session_id, user=request.user)
    branch = selectors.branch_default(session=chat)
    return redirect("branch", session_id=chat.pk, branch_id=branch.pk)


def _page_context(request, chat, branch, *, form=None, composer_text="", composer_error=""):
    services.turns_sweep_stale(session_id=chat.pk)
    path = selectors.branch_path(branch=branch)
    thread = []
    for message in path:
        seq, text = selectors.live_text(message=message)
        thread.append({"message": message, "seq": seq, "text": text})
    provider = provider_get(chat.provider) if chat.provider in providers() else None
    return {
        "chat": chat,
        "branch": branch,
        "branches": selectors.branches_for(session=chat),
        "sessions": selectors.sessions_for(user=request.user),
        "thread": tree.annotate_thread(session=chat, thread=thread),
        "form": form or SessionSettingsForm(instance=chat),
        "provider": provider,
        "has_key": bool(provider and key_ref_for(user=request.user, session=request.session, provider=provider)),
        "scope": SCOPE_BY_VALUE.get(chat.cache_scope),
        "retention_note": retention_explanation(chat.model),
        "composer_text": composer_text,
        "composer_error": composer_error,
        "streaming": any(item["message"].in_flight for item in thread),
        "panel": costs.session_panel(session=chat),
        **tree.branch_bar(session=chat, branch=branch),
    }


@require_GET
def branch_view(request, session_id: int, branch_id: int):
    chat = selectors.session_get(session_id=session_id, user=request.user)
    branch = selectors.branch_get(session=chat, branch_id=branch_id)
    return render(request, TEMPLATE, _page_context(request, chat, branch))


@require_POST
def message_send(request, session_id: int, branch_id: int):
    chat = selectors.session_get(session_id=session_id, user=request.user)
    branch = selectors.branch_get(session=chat, branch_id=branch_id)
    content = request.POST.get("content", "")
    try:
        turn = services.message_send(session=chat, branch=branch, user=request.user, content=content, web_session=request.session)
    except ChatError as exc:
        context = {"chat": chat, "branch": branch, "composer_text": content, "composer_error": str(exc)}
        if request.htmx:
            return render(request, f"{TEMPLATE}#composer", context, status=422)
        return render(request, TEMPLATE, _page_context(request, chat, branch, composer_text=content, composer_error=str(exc)), status=422)
    if not request.htmx:
        return redirect("branch", session_id=chat.pk, branch_id=branch.pk)
    user_message = turn.message.parent
    return render(
        request,
        f"{TEMPLATE}#sent",
        {"chat": chat, "branch": branch, "new_messages": [user_message, turn.message], "branch_id": branch.pk},
    )


@require_POST
def session_settings(request, session_id: int):
    chat = selectors.session_get(session_id=session_id, user=request.user)
    form = SessionSettingsForm(request.POST, instance=chat)
    saved = False
    if form.is_valid():
        changes = dict(form.cleaned_data)
        if request.POST.get("title_was") == changes["title"]:
            # The user did not touch the title; keep whatever it is now (the first message
            # may have named the session after this form was rendered).
            changes.pop("title")
        chat = services.session_update(session=chat, changes=changes)
        form = SessionSettingsForm(instance=chat)
        saved = True
    context = {
        "chat": chat,
        "form": form,
        "saved": saved,
        "scope": SCOPE_BY_VALUE.get(chat.cache_scope),
        "retention_note": retention_explanation(chat.model),
    }
    if request.htmx:
        return render(request, f"{TEMPLATE}#settings", context, status=200 if form.is_valid() or saved else 422)
    return redirect("session", session_id=chat.pk)


@require_POST
def session_delete(request, session_id: int):
    chat = selectors.session_get(session_id=session_id, user=request.user)
    services.session_delete(session=chat)
    return _redirect(request, "/")


@require_POST
def turn_stop(request, turn_id: int):
    turn = selectors.turn_get(turn_id=turn_id, user=request.user)
    services.turn_stop(turn=turn)
    return HttpResponse(status=204) if request.htmx else redirect("session", session_id=turn.session_id)


@require_POST
def turn_retry(request, turn_id: int):
    turn = selectors.turn_get(turn_id=turn_id, user=request.user)
    try:
        services.turn_retry(turn=turn, user=request.user, web_session=request.session)
    except ChatError as exc:
        return HttpResponse(str(exc), status=409, content_type="text/plain")
    return HttpResponse(status=204) if request.htmx else redirect("session", session_id=turn.session_id)


@require_GET
def session_panel(request, session_id: int):
    chat = selectors.session_get(session_id=session_id, user=request.user)
    return render(request, f"{TEMPLATE}#panel", {"chat": chat, "panel": costs.session_panel(session=chat)})


@require_GET
def session_export(request, session_id: int, fmt: str):
    chat = selectors.session_get(session_id=session_id, user=request.user)
    panel = costs.session_panel(session=chat)
    if fmt == "csv":
        response = HttpResponse(export.export_csv(panel), content_type="text/csv; charset=utf-8")
    else:
        response = JsonResponse(export.export_json(panel), json_dumps_params={"indent": 2})
    response["Content-Disposition"] = f'attachment; filename="session-{chat.pk}.{fmt}"'
    return response


@require_GET
def account(request):
    totals, per_session = costs.account_summary(user=request.user)
    return render(request, "chat/account.html", {"totals": totals, "per_session": per_session})


@require_POST
def composer_predict(request, session_id: int, branch_id: int):
    """What the composer's next request should get from the cache (debounced htmx POST)."""
    chat = selectors.session_get(session_id=session_id, user=request.user)
    branch = selectors.branch_get(session=chat, branch_id=branch_id)
    context = {"prediction": None, "warning": None, "unavailable": None}
    if chat.provider in providers():
        provider = provider_get(chat.provider)
        draft = request.POST.get("content", "")[: settings.PLAYGROUND_MAX_MESSAGE_CHARS]
        messages = path_messages(selectors.branch_path(branch=branch)) + [{"role": "user", "content": draft}]
        prediction, warning, unavailable = insight.predict_next(
            provider=provider,
            user=request.user,
            session=chat,
            branch=branch,
            messages=insight.request_messages(api=chat.api, system_prompt=chat.system_prompt, messages=messages),
            key_ref=key_ref_for(user=request.user, session=request.session, provider=provider),
        )
        # Exact for the simulator (its own tokenizer) and llama.cpp (the server's /tokenize);
        # for OpenAI the local tiktoken count is close but not exact.
        approximate = not provider.simulator and provider.cache_rules != "llama"
        context = {"prediction": prediction, "warning": warning, "unavailable": unavailable, "approximate": approximate}
    return render(request, f"{TEMPLATE}#prediction", context)
