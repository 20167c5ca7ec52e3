"""The email backend of a production deployment that configured no SMTP server (no EMAIL_HOST)."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail.backends.base import BaseEmailBackend

logger = logging.getLogger(__name__)

EMAIL_OFF = "playground.accounts.mail.EmailOff"


class EmailOff(BaseEmailBackend):
    """Email is off: messages are dropped, never printed (a reset link in the logs would let
    whoever reads them take the account). A warning says so, without recipients or content."""

    def send_messages(self, email_messages):
        dropped = len(list(email_messages))
        if dropped:
            logger.warning("email is off (EMAIL_HOST is not set): %d message(s) not sent", dropped)
        return 0


def email_enabled() -> bool:
    """Whether this deployment sends email at all (the reset page says so when it does not)."""
    return settings.MAILERS.get("default", {}).get("BACKEND") != EMAIL_OFF
