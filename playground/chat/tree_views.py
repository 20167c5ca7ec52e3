"""Views for the conversation tree: fork, open a node, edit-and-resend, regenerate, fan out,
return to parent, join, rename, the tree page and the fan-out page.

Thin: every object comes through the selectors with the acting user (another user's ids are
404), then one service or read model is called. Refusals are 409 text (shown as a toast) or,
for forms that can be corrected, the form again with its error at 422.
"""

from django.conf import settings
from django.http import HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from . import branching, rendering, selectors, tree, tree_markup
from .errors import ChatError

TREE = "chat/tree.html"
FANOUT = "chat/fanout.html"


def _go(request, to: str):
    return HttpResponseClientRedirect(to) if request.htmx else redirect(to)


def _branch_url(branch, message_id: int | None = None) -> str:
    """The branch's page; at a message: `?at=` makes the page show it even when it is above
    the page's last window (a long branch), `#msg-` scrolls to it."""
    url = reverse("branch", kwargs={"session_id": branch.session_id, "branch_id": branch.pk})
    return f"{url}?at={message_id}#msg-{message_id}" if message_id else url


def _refused(exc: ChatError, status: int = 409) -> HttpResponse:
    return HttpResponse(str(exc), status=status, content_type="text/plain")


def _current_branch(request, chat):
    """The branch the user is looking at (sent by the page), checked against the session."""
    raw = request.POST.get("branch") or request.GET.get("branch")
    if not raw or not str(raw).isdigit():
        return None
    return selectors.branch_get(session=chat, branch_id=int(raw))


@require_POST
def message_fork(request, session_id: int, message_id: int):
    chat = selectors.session_get(session_id=session_id, user=request.user)
    message = selectors.session_message_get(session=chat, message_id=message_id)
    current = _current_branch(request, chat) or selectors.branch_showing(session=chat, message_id=message.pk)
    branch, draft = branching.message_fork(session=chat, message=message, user=request.user, parent_branch=current)
    # Forked at the user's own message: the branch opens with it in the composer, to edit.
    return _go(request, f"{_branch_url(branch)}?draft={draft.pk}" if draft else _branch_url(branch))


@require_POST
def message_open(request, session_id: int, message_id: int):
    """Sibling arrows and tree nodes: open the branch showing this node (fork if none does)."""
    chat = selectors.session_get(session_id=session_id, user=request.user)
    message = selectors.session_message_get(session=chat, message_id=message_id)
    branch = branching.branch_open_at(session=chat, message=message, user=request.user, parent_branch=_current_branch(request, chat))
    return _go(request, _branch_url(branch, message.pk))


@require_http_methods(["GET", "POST"])
def message_edit(request, session_id: int, message_id: int):
    """GET: the inline edit form (loaded on demand). POST: send the edit as a sibling branch."""
    chat = selectors.session_get(session_id=session_id, user=request.user)
    message = selectors.session_message_get(session=chat, message_id=message_id)
    if request.method == "GET":
        return render(request, f"{TREE}#edit-form", {"message": message, "edit_text": message.content})
    content = request.POST.get("content", "")
    try:
        turn = branching.message_edit_resend(
            session=chat, message=message, user=request.user, content=content, web_session=request.session
        )
    except ChatError as exc:
        if request.htmx:
            context = {"message": message, "edit_text": content, "edit_error": str(exc)}
            return render(request, f"{TREE}#edit-form", context, status=422)
        return _refused(exc, 422)
    return _go(request, _branch_url(turn.branch))


@require_POST
def message_regenerate(request, session_id: int, message_id: int):
    chat = selectors.session_get(session_id=session_id, user=request.user)
    message = selectors.session_message_get(session=chat, message_id=message_id)
    try:
        turn = branching.message_regenerate(
            message=message, user=request.user, web_session=request.session, branch=_current_branch(request, chat)
        )
    except ChatError as exc:
        return _refused(exc)
    return _go(request, _branch_url(turn.branch))


@require_http_methods(["GET", "POST"])
def message_fanout(request, session_id: int, message_id: int):
    """GET: the fan-out form (loaded on demand). POST: start N child branches at once."""
    chat = selectors.session_get(session_id=session_id, user=request.user)
    message = selectors.session_message_get(session=chat, message_id=message_id)
    if request.method == "GET":
        return render(request, f"{TREE}#fanout-form", {"message": message, "fanout_join": True, "limit": settings.PLAYGROUND_MAX_FANOUT})
    current = _current_branch(request, chat)
    text = request.POST.get("prompts", "")
    copies = request.POST.get("copies", "")
    join = request.POST.get("join") in ("on", "true", "1")
    try:
        prompts = tree.fanout_prompts_parse(text=text, copies=copies)
        fanout = branching.fanout_send(
            session=chat, message=message, user=request.user, prompts=prompts, web_session=request.session,
            join=join, parent_branch=current,
        )
    except ChatError as exc:
        if request.htmx:
            context = {"message": message, "fanout_text": text, "fanout_copies": copies, "fanout_join": join,
                       "fanout_error": str(exc), "limit": settings.PLAYGROUND_MAX_FANOUT}
            return render(request, f"{TREE}#fanout-form", context, status=422)
        return _refused(exc, 422)
    return _go(request, reverse("fanout", kwargs={"session_id": chat.pk, "fanout_id": fanout.pk}))


@require_POST
def branch_rename(request, session_id: int, branch_id: int):
    chat, branch = selectors.session_branch_get(session_id=session_id, branch_id=branch_id, user=request.user)
    error = ""
    try:
        branching.branch_rename(branch=branch, name=request.POST.get("name", ""))
    except ChatError as exc:
        error = str(exc)
    if not request.htmx:
        return _refused(ChatError(error), 422) if error else redirect(_branch_url(branch))
    context = {**selectors.branch_bar(session=chat, branch=branch), "rename_error": error}
    return render(request, f"{TREE}#branch-bar", context, status=422 if error else 200)


@require_POST
def branch_return(request, session_id: int, branch_id: int):
    chat, branch = selectors.session_branch_get(session_id=session_id, branch_id=branch_id, user=request.user)
    try:
        message = branching.branch_return(branch=branch, user=request.user)
    except ChatError as exc:
        return _refused(exc)
    return _go(request, _branch_url(message.branch, message.pk))


@require_GET
def session_tree(request, session_id: int):
    chat = selectors.session_get(session_id=session_id, user=request.user)
    open_branch = _current_branch(request, chat) or selectors.branch_default(session=chat)
    layout = selectors.session_tree(session=chat, open_branch=open_branch)
    graph = tree_markup.tree_graph_html(layout=layout, session=chat, csrf_token=get_token(request)) if layout.nodes else ""
    return render(request, TREE, {"chat": chat, "tree": layout, "branch": open_branch, "graph": graph})


@require_GET
def fanout_view(request, session_id: int, fanout_id: int):
    chat = selectors.session_get(session_id=session_id, user=request.user)
    fanout = selectors.fanout_get(session=chat, fanout_id=fanout_id)
    return render(request, FANOUT, {"chat": chat, "fanout": fanout, "columns": selectors.fanout_columns(fanout=fanout)})


@require_GET
def fanout_status(request, session_id: int, fanout_id: int):
    """The fan-out's join status as it is now, out of band. A fan-out page asks for it once
    its WebSocket is open (static/js/app.js): a join that ended between the page's render
    and the socket's subscribe sent its frame to nobody."""
    chat = selectors.session_get(session_id=session_id, user=request.user)
    fanout = selectors.fanout_get(session=chat, fanout_id=fanout_id)
    return render(request, f"{FANOUT}#fanout-status", {"fanout": fanout, "oob": True})


@require_POST
def fanout_join(request, session_id: int, fanout_id: int):
    chat = selectors.session_get(session_id=session_id, user=request.user)
    fanout = selectors.fanout_get(session=chat, fanout_id=fanout_id)
    try:
        branching.fanout_join_request(fanout=fanout, user=request.user)
    except ChatError as exc:
        return _refused(exc)
    fanout.refresh_from_db()
    if request.htmx:
        return render(request, f"{FANOUT}#fanout-status", {"fanout": fanout})
    return redirect("fanout", session_id=chat.pk, fanout_id=fanout.pk)


@require_GET
def message_state(request, message_id: int):
    """One message as it is now, as an out-of-band fragment.

    A page that loaded while a reply ran asks for this once its WebSocket is open
    (static/js/app.js): subscribe first, read second, so a reply that finished between the
    page render and the subscription is not left showing "streaming" forever. This happens
    often after a redirect to a new branch or a fan-out, whose replies start right away.
    Only finished messages are sent: replacing a running one could rewind its text.
    """
    message = selectors.message_get(message_id=message_id, user=request.user)
    if message.in_flight:
        # Still running, so its final event is still to come over the socket, and the
        # socket's own snapshot on connect already brought the text so far.
        return HttpResponse(status=204)
    # The same fragment the generation publishes when a turn ends (message + cost panel).
    return HttpResponse(rendering.turn_ended(message_id=message.pk, session_id=message.session_id))
