"""ASGI entry point: HTTP through Django, WebSockets through Channels.

WebSockets are authenticated by the session cookie (channels' AuthMiddlewareStack, its
session part unwrapped for sockets: accounts/sessions.py) and must come from
an allowed Origin (AllowedHostsOriginValidator), so another site cannot open a socket with
a visitor's cookie.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "playground.settings")

import django  # noqa: E402

django.setup(set_prefix=False)  # what get_asgi_application() does before building its handler

from playground.http import HttpConcurrencyLimit, OneHopASGIHandler  # noqa: E402

django_asgi_app = OneHopASGIHandler()  # Django's ASGI handler, middleware and view in one thread hop

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from playground.accounts.sessions import socket_auth_stack  # noqa: E402
from playground.chat import dispatch  # noqa: E402
from playground.chat.routing import websocket_urlpatterns  # noqa: E402

application = dispatch.LoopBinding(
    ProtocolTypeRouter(
        {
            "http": HttpConcurrencyLimit(django_asgi_app),
            "websocket": AllowedHostsOriginValidator(socket_auth_stack(URLRouter(websocket_urlpatterns))),
        }
    )
)
