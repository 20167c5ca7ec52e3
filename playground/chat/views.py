"""Thin views: parse, call one service or selector, render a page or a named partial."""

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from playground.accounts.forms import AccountDeleteForm, EmailForm
from playground.caching.keys import SCOPE_BY_VALUE
from playground.caching.retention import retention_explanation
from playground.providers.catalog import model_catalog
from playground.providers.registry import provider_get, providers
from playground.providers.selectors import key_ref_for, key_statuses

from . import budgets, cost_selectors, export, insight, outbox, selectors, services, session_list_views, turns
from .errors import ChatError
from .forms import BudgetForm, SessionSettingsForm
from .reply_request import path_messages

TEMPLATE = "chat/session.html"


def _redirect(request, to):
    return HttpResponseClientRedirect(to) if request.htmx else redirect(to)


@require_GET
def home(request):
    """The session list, searchable (`?q=` without JavaScript), and where deleting the open
    session lands (with its Undo)."""
    context = session_list_views.sidebar_context(request, current_id=None, query=request.GET.get("q", ""))
    statuses = key_statuses(user=request.user, session=request.session)
    context["has_any_key"] = any(status.mask and not status.expired for status in statuses)
    return render(request, "chat/home.html", context)


@require_POST
def session_new(request):
    chat = services.session_create(user=request.user, session=request.session)
    return _redirect(request, reverse("session", kwargs={"session_id": chat.pk}))


@require_GET
def session_open(request, session_id: int):
    chat = selectors.session_get(session_id=session_id, user=request.user)
    branch = selectors.branch_default(session=chat)
    return redirect("branch", session_id=chat.pk, branch_id=branch.pk)


def _thread_items(messages) -> list[dict]:
    items = []
    for message in messages:
        seq, text = selectors.live_text(message=message)
        items.append({"message": message, "seq": seq, "text": text})
    return items


def _earlier(first, hidden: int, after=None) -> dict:
    """The "Show earlier messages" control above `first`: it loads the messages above it, down
    to `after` (exclusive) when the page already shows that one and what is above it."""
    return {"earlier": {"before": first.pk, "after": after.pk if after else None, "hidden": hidden}}


def _segment_at(chat, message_id: int, *, first, limit: int) -> list:
    """For a page opened at a message above its last window (`?at=<id>`, the links of the tree
    view and the sibling arrows): a window that starts a few messages above that message, or
    nothing when the message is not on this branch's path above `first`."""
    depth = selectors.session_message_depth(session=chat, message_id=message_id)
    if depth is None or depth >= first.depth:
        return []
    low = max(0, depth - max(1, limit // 10))
    high = min(low + limit - 1, first.depth - 1)
    segment = selectors.path_segment(below_id=first.pk, low=low, high=high)
    return segment if any(m.pk == message_id for m in segment) else []


def _thread(chat, branch, *, at: int | None = None) -> list[dict]:
    """The page's thread: the last PLAYGROUND_PAGE_MESSAGES messages of the branch (O(window)
    at any depth), under a control that loads the ones above, a window at a time. Opened at a
    message above that window, a second window around it comes first, then a control for the
    gap between the two."""
    limit = settings.PLAYGROUND_PAGE_MESSAGES
    window = selectors.message_path_window(message_id=branch.head_id, limit=limit)
    thread: list[dict] = []
    top = []
    if at is not None and window.more and all(m.pk != at for m in window.messages):
        top = _segment_at(chat, at, first=window.messages[0], limit=limit)
    if top:
        if top[0].depth > 0:
            thread.append(_earlier(top[0], top[0].depth))
        thread += _thread_items(top)
        gap = window.messages[0].depth - top[-1].depth - 1
        if gap > 0:
            thread.append(_earlier(window.messages[0], gap, after=top[-1]))
    elif window.more:
        thread.append(_earlier(window.messages[0], window.hidden))
    thread += _thread_items(window.messages)
    return selectors.annotate_thread(session=chat, thread=thread)


FORK_DRAFT_NOTE = ("Forked just above your message: it is in the box below. Edit it and send, or send it as it is, "
                   "to get a new answer on this branch.")
UNANSWERED_NOTE = ("Your last message got no answer, so it is back in the box. Edit it or send it again: it takes the "
                   "unanswered one's place (that attempt stays in the tree). Or press Retry on the failed reply.")


def _composer_draft(chat, branch, thread: list[dict], draft_id: int | None) -> tuple[str, str]:
    """What the composer opens with, and why (or nothing): the message a fork at the user's
    own message was made above (`?draft=`), else a message of theirs the branch ends at
    without an answer. Sending either never stacks two user turns (services.message_send)."""
    if draft_id is not None:
        draft = selectors.session_message_find(session_id=chat.pk, message_id=draft_id)
        if draft is not None and draft.role == draft.Role.USER:
            return draft.content, FORK_DRAFT_NOTE
    shown = [item["message"] for item in thread if "message" in item]
    head = shown[-1] if shown and shown[-1].pk == branch.head_id else None
    unanswered = turns.unanswered(head)
    return (unanswered.content, UNANSWERED_NOTE) if unanswered is not None else ("", "")


def _page_context(request, chat, branch, *, form=None, composer_text="", composer_error="", at=None, draft_id=None):
    thread = _thread(chat, branch, at=at)
    composer_note = ""
    if not composer_text and not composer_error:
        composer_text, composer_note = _composer_draft(chat, branch, thread, draft_id)
    provider = provider_get(chat.provider) if chat.provider in providers() else None
    return {
        "chat": chat,
        "branch": branch,
        "branches": selectors.branches_for(session=chat),
        **session_list_views.sidebar_context(request, current_id=chat.pk),
        "thread": thread,
        "form": form or _settings_form(request, chat),
        "provider": provider,
        "has_key": bool(provider and key_ref_for(user=request.user, session=request.session, provider=provider)),
        "scope": SCOPE_BY_VALUE.get(chat.cache_scope),
        "retention_note": retention_explanation(chat.model),
        "composer_text": composer_text,
        "composer_error": composer_error,
        "composer_note": composer_note,
        "streaming": any(item["message"].in_flight for item in thread if "message" in item),
        "panel": cost_selectors.session_panel(session=chat),
        **selectors.branch_bar(session=chat, branch=branch),
    }


def _int_param(request, name: str) -> int | None:
    raw = request.GET.get(name, "")
    return int(raw) if raw.isdigit() and len(raw) < 19 else None


@require_GET
def branch_view(request, session_id: int, branch_id: int):
    chat, branch = selectors.session_branch_get(session_id=session_id, branch_id=branch_id, user=request.user)
    context = _page_context(request, chat, branch, at=_int_param(request, "at"), draft_id=_int_param(request, "draft"))
    return render(request, TEMPLATE, context)


@require_GET
def message_earlier(request, session_id: int, message_id: int):
    """"Show earlier messages": the window of the path above `message_id` (the first message
    the page shows), under its own control when more remain; with `after`, only down to that
    message (the page shows it and everything above it). Constant cost at any depth."""
    chat = selectors.session_get(session_id=session_id, user=request.user)
    before = selectors.session_message_get(session=chat, message_id=message_id)
    after_id = _int_param(request, "after")
    after = selectors.session_message_get(session=chat, message_id=after_id) if after_id is not None else None
    window = selectors.message_path_window(
        message_id=before.parent_id, limit=settings.PLAYGROUND_PAGE_MESSAGES, above_depth=after.depth if after else -1
    )
    thread: list[dict] = [_earlier(window.messages[0], window.hidden, after=after)] if window.more else []
    thread += _thread_items(window.messages)
    return render(request, f"{TEMPLATE}#earlier-window", {"chat": chat, "thread": selectors.annotate_thread(session=chat, thread=thread)})


@require_POST
def message_send(request, session_id: int, branch_id: int):
    chat, branch = selectors.session_branch_get(session_id=session_id, branch_id=branch_id, user=request.user)
    content = request.POST.get("content", "")
    try:
        with outbox.collect() as delivered:
            turn = services.message_send(session=chat, branch=branch, user=request.user, content=content, web_session=request.session)
    except ChatError as exc:
        context = {"chat": chat, "branch": branch, "composer_text": content, "composer_error": str(exc)}
        if request.htmx:
            return render(request, f"{TEMPLATE}#composer", context, status=422)
        return render(request, TEMPLATE, _page_context(request, chat, branch, composer_text=content, composer_error=str(exc)), status=422)
    if not request.htmx:
        return redirect("branch", session_id=chat.pk, branch_id=branch.pk)
    appended = delivered.html(outbox.MessagesAppended)
    if appended is not None:
        # The "sent" partial is a fresh composer plus the "appended" fragment every tab on
        # the session was just sent (on commit, chat/publish.py): reuse it, not render it twice.
        composer = render_to_string(
            f"{TEMPLATE}#composer", {"chat": chat, "branch": branch, "composer_text": "", "composer_error": ""}, request=request
        )
        response = HttpResponse(composer + appended)
    else:
        user_message = turn.message.parent
        response = render(
            request,
            f"{TEMPLATE}#sent",
            {"chat": chat, "branch": branch, "new_messages": [user_message, turn.message], "branch_id": branch.pk},
        )
    response["HX-Trigger"] = "sessions-changed"  # the session list re-sorts: this one is now the latest
    return response


def _settings_form(request, chat, *args, listed=None, **kwargs) -> SessionSettingsForm:
    """The drawer's form, its model field a dropdown of the provider's own models (`listed`:
    a list just fetched, used as it is)."""

    def catalog_of(slug: str, mode: str):
        if listed is not None and mode == "cached" and listed.provider.slug == slug:
            return listed
        return model_catalog(user=request.user, web_session=request.session, provider=providers()[slug], mode=mode)

    url = reverse("session-settings", kwargs={"session_id": chat.pk})
    return SessionSettingsForm(*args, instance=chat, catalog_of=catalog_of, models_url=url, **kwargs)


def _posted_initial(post) -> dict:
    """What the drawer holds, as a fresh form's initial values: listing models keeps it all."""
    initial = {name: post.get(name) for name in SessionSettingsForm.Meta.fields if name in post}
    initial["extended_retention"] = "extended_retention" in post
    return initial


@require_POST
def session_settings(request, session_id: int):
    chat = selectors.session_get(session_id=session_id, user=request.user)
    saved = False
    action = request.POST.get("models_action")
    if action in ("list", "refresh"):
        # The provider changed in the drawer, or "Refresh models": list its models (asking
        # the provider on "refresh" or when none are kept), save nothing, keep every input.
        slug = request.POST.get("provider")
        slug = slug if slug in providers() else chat.provider
        listed = model_catalog(user=request.user, web_session=request.session, provider=providers()[slug],
                               mode="refresh" if action == "refresh" else "fetch")
        form = _settings_form(request, chat, initial=_posted_initial(request.POST), listed=listed)
        warning = ""
    else:
        form = _settings_form(request, chat, request.POST)
        if form.is_valid():
            changes = dict(form.cleaned_data)
            if request.POST.get("title_was") == changes["title"]:
                # The user did not touch the title; keep whatever it is now (the first message
                # may have named the session after this form was rendered).
                changes.pop("title")
            chat = services.session_update(session=chat, changes=changes)
            warning = form.warning
            form = _settings_form(request, chat)
            saved = True
        else:
            warning = form.warning
    context = {
        "chat": chat,
        "form": form,
        "saved": saved,
        "warning": warning,
        "scope": SCOPE_BY_VALUE.get(chat.cache_scope),
        "provider": providers().get(chat.provider),
        "retention_note": retention_explanation(chat.model),
    }
    if request.htmx:
        ok = saved or action in ("list", "refresh")
        return render(request, f"{TEMPLATE}#settings", context, status=200 if ok else 422)
    return redirect("session", session_id=chat.pk)


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
    return render(request, f"{TEMPLATE}#panel", {"chat": chat, "panel": cost_selectors.session_panel(session=chat)})


@require_GET
def session_export(request, session_id: int, fmt: str):
    chat = selectors.session_get(session_id=session_id, user=request.user)
    data = cost_selectors.session_turns(session=chat)
    if fmt == "csv":
        response = HttpResponse(export.export_csv(data), content_type="text/csv; charset=utf-8")
    else:
        response = JsonResponse(export.export_json(data), json_dumps_params={"indent": 2})
    response["Content-Disposition"] = f'attachment; filename="session-{chat.pk}.{fmt}"'
    return response


ACCOUNT = "chat/account.html"


def _budget_forms(request, *, bound: tuple[str, BudgetForm] | None = None) -> list[tuple[budgets.ProviderBudget, list]]:
    """Each provider the user can spend on (a key, or none needed), its spend against its
    caps, and the form fields that set them, each beside its period's figures (`bound`: the
    form just posted, errors and input kept)."""
    ceilings = budgets.operator_ceilings()
    shown = [s.provider for s in key_statuses(user=request.user, session=request.session)
             if (s.mask and not s.expired) or not s.provider.needs_key]
    found = []
    for item in budgets.account_budgets(user=request.user, shown=shown):
        if bound and bound[0] == item.provider.slug:
            form = bound[1]
        else:
            own = {f"{row.period}_cap": row.own for row in item.periods}
            form = BudgetForm(initial=own, ceilings=ceilings, prefix=item.provider.slug)
        found.append((item, [(form[f"{row.period}_cap"], row) for row in item.periods]))
    return found


def _account_context(user) -> dict:
    totals, per_session = cost_selectors.account_summary(user=user)
    return {"totals": totals, "per_session": per_session, "assumed_output": settings.PLAYGROUND_BUDGET_ASSUMED_OUTPUT_TOKENS,
            "email_form": EmailForm(user=user), "delete_form": AccountDeleteForm(user=user)}


@require_GET
def account(request):
    return render(request, ACCOUNT, {**_account_context(request.user), "budgets": _budget_forms(request)})


@require_GET
def account_budgets(request):
    """The spend-against-caps figures alone: the account page polls them while it is open."""
    return render(request, f"{ACCOUNT}#budget-figures", {"budgets": _budget_forms(request)})


@require_POST
def budget_save(request, provider_slug: str):
    slug = provider_get(provider_slug).slug
    form = BudgetForm(request.POST, ceilings=budgets.operator_ceilings(), prefix=slug)
    saved = form.is_valid()
    if saved:
        budgets.budget_set(user=request.user, provider=slug, **form.cleaned_data)
    if not request.htmx:
        return redirect("account") if saved else render(
            request, ACCOUNT, {**_account_context(request.user), "budgets": _budget_forms(request, bound=(slug, form))}, status=422
        )
    context = {"budgets": _budget_forms(request, bound=None if saved else (slug, form)), "saved": slug if saved else None,
               "assumed_output": settings.PLAYGROUND_BUDGET_ASSUMED_OUTPUT_TOKENS}
    return render(request, f"{ACCOUNT}#budgets", context, status=200 if saved else 422)


@require_POST
def composer_predict(request, session_id: int, branch_id: int):
    """What the composer's next request should get from the cache (debounced htmx POST)."""
    chat, branch = selectors.session_branch_get(session_id=session_id, branch_id=branch_id, user=request.user)
    context = {"prediction": None, "warning": None, "unavailable": None}
    if chat.provider in providers():
        provider = provider_get(chat.provider)
        draft = request.POST.get("content", "")[: settings.PLAYGROUND_MAX_MESSAGE_CHARS]
        path = selectors.branch_path(branch=branch)
        unanswered = turns.unanswered(branch.head)
        if unanswered is not None:  # the send will take its place (services.message_send)
            path = path[: unanswered.depth]
        messages = path_messages(path) + [{"role": "user", "content": draft}]
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
