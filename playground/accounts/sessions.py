"""Sessions: Django's database engine with its one read compiled once, and the WebSocket
stack's session middleware without a wrapper around every frame.

Every signed-in request loads its session row; through the ORM that read cost ~0.7 ms of
CPU to build for a ~0.1 ms statement (a send is on every reply's critical path). The table,
the stored format and everything else are Django's own (`SESSION_ENGINE` names this module,
so nobody is signed out by the switch, and back).
"""

from __future__ import annotations

from datetime import datetime

from channels.auth import AuthMiddleware
from channels.sessions import CookieMiddleware, InstanceSessionWrapper, SessionMiddleware
from django.contrib.sessions.backends import db
from django.contrib.sessions.models import Session
from django.utils import timezone

from playground.compiled import Compiled

_LIVE = Compiled(lambda key, now: Session.objects.filter(session_key=key, expire_date__gt=now), key=str, now=datetime)


class SessionStore(db.SessionStore):
    def _get_session_from_db(self):
        if self.model is not Session:  # a subclass with a model of its own: Django's read
            return super()._get_session_from_db()
        found = _LIVE.first(key=self.session_key, now=timezone.now())
        if found is None:
            self._session_key = None  # as Django's: an unknown or expired key starts a new session
        return found


class SocketSessionMiddleware(SessionMiddleware):
    """channels' `SessionMiddleware` for WebSockets: the session resolved the same way, and
    the socket's `send` passed on as it is.

    channels wraps `send` to save a modified session (and set its cookie) on an
    `http.response.start`, a message a WebSocket never sends; the wrapper still read the
    session's `modified` and `is_empty()` through two lazy proxies on every frame of every
    tab, ~4% of the web process's CPU at 200 streaming replies (bench/README.md, step 13).
    A socket's consumer does not write the session either (chat/consumers.py)."""

    async def __call__(self, scope, receive, send):
        if scope["type"] != "websocket":
            return await super().__call__(scope, receive, send)
        wrapper = InstanceSessionWrapper(scope, send)
        await wrapper.resolve_session()
        return await self.inner(wrapper.scope, receive, send)


def socket_auth_stack(inner):
    """channels' `AuthMiddlewareStack` (cookie, session, user) with the socket session above."""
    return CookieMiddleware(SocketSessionMiddleware(AuthMiddleware(inner)))
