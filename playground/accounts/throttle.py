"""Abuse limits on the public account pages: failed sign-ins (django-axes) and sign-ups.

Both count per client address, from `client_ip`, the one place that decides what the
address is. Counters live in the default cache (Redis in production, the process's local
memory embedded); nothing is stored in the database.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time

from axes.backends import AxesStandaloneBackend
from axes.helpers import get_cool_off
from django.conf import settings
from django.core.cache import cache
from django.shortcuts import render

log = logging.getLogger(__name__)

HOUR = 3600


def client_ip(request) -> str:
    """The client's address, as trusted proxies reported it (axes' AXES_CLIENT_IP_CALLABLE).

    With PLAYGROUND_TRUSTED_PROXIES = N > 0 the address is the N-th entry from the right of
    X-Forwarded-For: each trusted proxy appends the address it was connected from, so
    entries further left were written by the client and are ignored (uvicorn's
    --forwarded-allow-ips '*' takes the leftmost one, which a client can choose). With 0,
    or when the header has fewer entries than proxies, REMOTE_ADDR. An IPv6 address counts
    as its /64, the block one subscriber gets, so rotating addresses within it does not help.
    """
    address = request.META.get("REMOTE_ADDR", "")
    hops = settings.PLAYGROUND_TRUSTED_PROXIES
    if hops > 0:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if len(forwarded) >= hops:
            address = forwarded[-hops]
    try:
        parsed = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return "unknown"
    if parsed.version == 6:
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


class LoginThrottleBackend(AxesStandaloneBackend):
    """Refuses a sign-in while its account or address is locked out (first in
    AUTHENTICATION_BACKENDS; ModelBackend then checks the password).

    A call without a request is not a sign-in from the web (Django's test client `login()`,
    management commands): it has no address to count by, so it is passed on unthrottled
    instead of failing, as axes' own backend would.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


def lockout_minutes(request=None) -> int:
    return max(1, math.ceil(get_cool_off(request).total_seconds() / 60))


def lockout_response(request, *args):
    """axes' AXES_LOCKOUT_CALLABLE: the 429 page for a locked-out sign-in.

    Every refused attempt restarts the wait (AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT,
    axes' default), so the full cool-off is exactly how long to wait from now. The log line
    names the account and address, never the password.
    """
    minutes = lockout_minutes(request)
    username = request.POST.get("username", "")[:150]
    log.warning("sign-in locked out: account=%r address=%s for %d min", username, client_ip(request), minutes)
    return render(request, "accounts/lockout.html", {"minutes": minutes}, status=429)


def _signup_keys(request) -> tuple[str, str]:
    address = client_ip(request)
    return f"signups:count:{address}", f"signups:since:{address}"


def signup_reserve(request) -> int | None:
    """Count one account created from this address. None when it is allowed; otherwise
    nothing is counted and the answer is the minutes until the address may sign up again.

    The hour starts at the address's first sign-up (both keys expire with it), so at most
    PLAYGROUND_SIGNUPS_PER_HOUR accounts are created in any window that starts there.
    0 turns the limit off.
    """
    limit = settings.PLAYGROUND_SIGNUPS_PER_HOUR
    if limit <= 0:
        return None
    count_key, since_key = _signup_keys(request)
    now = time.time()
    if cache.add(count_key, 1, HOUR):
        cache.set(since_key, now, HOUR)
        count = 1
    else:
        try:
            count = cache.incr(count_key)
        except ValueError:  # expired between add and incr: a new hour
            cache.set(count_key, 1, HOUR)
            cache.set(since_key, now, HOUR)
            count = 1
    if count <= limit:
        return None
    signup_release(request)
    since = cache.get(since_key) or now
    return max(1, math.ceil((since + HOUR - now) / 60))


def signup_release(request) -> None:
    """Give back a reservation whose account was not created after all."""
    if settings.PLAYGROUND_SIGNUPS_PER_HOUR <= 0:
        return
    try:
        cache.decr(_signup_keys(request)[0])
    except ValueError:
        pass


def signup_limited_response(request, form_class, minutes: int):
    """The 429 sign-up page: what was typed, except passwords, is kept."""
    kept = {name: request.POST.get(name, "") for name in form_class.base_fields if "password" not in name}
    return render(
        request,
        "accounts/signup.html",
        {"form": form_class(initial=kept), "limit_minutes": minutes},
        status=429,
    )
