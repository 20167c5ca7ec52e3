"""Views for the session list (the session page's sidebar and the home page): search, inline
rename, delete with undo. Thin, like views.py: every session comes through the selectors with
the acting user, then one service or read is called and a partial of chat/sessions.html is
rendered.

The page that holds the list says which session it shows (`current`, from the list's forms):
that one is marked in the list, a rename of it also retitles the page, and deleting it leaves
the page (for the home page, where the Undo toast waits).
"""

from django.conf import settings
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from . import selectors, services
from .errors import ChatError

LIST = "chat/sessions.html"
# The web session remembers a delete whose page went away, so the next page offers Undo.
UNDO_KEY = "chat_undo_session"


def _current(request) -> int | None:
    raw = request.POST.get("current") or request.GET.get("current") or ""
    return int(raw) if raw.isdigit() and len(raw) < 19 else None


def _undo_offer(request) -> dict | None:
    """The Undo toast owed to this page (a delete that navigated here), shown once."""
    session_id = request.session.pop(UNDO_KEY, None)
    if session_id is None:
        return None
    deleted = selectors.session_deleted_find(session_id=session_id, user=request.user)
    return {"id": deleted.pk, "title": deleted.title} if deleted else None


def sidebar_context(request, *, current_id: int | None, query: str = "") -> dict:
    """What a page needs to show the session list: the list (one query), the session it
    shows, and an Undo toast it owes."""
    return {
        "slist": selectors.session_list(user=request.user, query=query),
        "current_id": current_id,
        "undo": _undo_offer(request),
        "undo_seconds": settings.PLAYGROUND_SESSION_UNDO_SECONDS,
    }


def _list_context(request, **extra) -> dict:
    return {
        "slist": selectors.session_list(user=request.user, query=request.GET.get("q", "")),
        "current_id": _current(request),
        **extra,
    }


@require_GET
def session_list(request):
    """The list alone: the search box (debounced) and a send (the list re-sorts) ask for it."""
    return render(request, f"{LIST}#session-list", _list_context(request))


def _item(request, session_id: int, **extra):
    row = selectors.session_row(session_id=session_id, user=request.user)
    return render_to_string(f"{LIST}#session-item", {"s": row, "current_id": _current(request), **extra}, request=request)


@require_GET
def session_item(request, session_id: int):
    """One entry of the list as it is now (the rename form's Cancel and Esc)."""
    return HttpResponse(_item(request, session_id))


@require_http_methods(["GET", "POST"])
def session_rename(request, session_id: int):
    """GET: the entry as a rename form. POST: save the title (the entry again, and the
    page's heading when it shows this session) or the form with its error (422)."""
    chat = selectors.session_get(session_id=session_id, user=request.user)
    current_id = _current(request)
    if request.method == "GET":
        context = {"s": chat, "rename_text": chat.title, "current_id": current_id}
        return render(request, f"{LIST}#rename-form", context)
    title = request.POST.get("title", "")
    try:
        chat = services.session_rename(session=chat, title=title)
    except ChatError as exc:
        if not request.htmx:
            return HttpResponse(str(exc), status=422, content_type="text/plain")
        context = {"s": chat, "rename_text": title, "rename_error": str(exc), "current_id": current_id}
        return render(request, f"{LIST}#rename-form", context, status=422)
    if not request.htmx:
        return redirect("session", session_id=chat.pk)
    retitle = render_to_string(f"{LIST}#retitle", {"chat": chat}) if current_id == chat.pk else ""
    return HttpResponse(_item(request, chat.pk) + retitle)


@require_POST
def session_delete(request, session_id: int):
    """Delete (undoably): the entry goes at once and a toast offers Undo. Deleting the
    session the page shows leaves for the home page, which offers the Undo."""
    chat = selectors.session_get(session_id=session_id, user=request.user)
    services.session_trash(session=chat)
    if not request.htmx or _current(request) == chat.pk:
        request.session[UNDO_KEY] = chat.pk
        home = reverse("home")
        return HttpResponseClientRedirect(home) if request.htmx else redirect(home)
    context = {"undo": {"id": chat.pk, "title": chat.title}, "undo_seconds": settings.PLAYGROUND_SESSION_UNDO_SECONDS,
               "current_id": _current(request), "oob": True}
    return render(request, f"{LIST}#undo-slot", context)


@require_POST
def session_restore(request, session_id: int):
    """Undo a delete: the session is back in the list, the toast goes."""
    chat = selectors.session_deleted_get(session_id=session_id, user=request.user)
    services.session_restore(session=chat)
    if not request.htmx:
        return redirect("session", session_id=chat.pk)
    return render(request, f"{LIST}#restored", _list_context(request, restored_id=chat.pk, oob=True))
