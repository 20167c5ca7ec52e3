"""Keep password-reset tokens out of the logs.

A reset link's token sits in its URL (/password/reset/<uid>/<token>/) until Django's view
swaps it into the session and redirects; the server's access log would record it on the way.
This filter, put on the loggers that write request lines (apps.py), replaces the token.
"""

from __future__ import annotations

import logging
import re

RESET_TOKEN = re.compile(r"(/password/reset/[^/\s\"']+/)[^/\s\"'?]+")
REQUEST_LOGGERS = ("uvicorn.access", "django.server", "django.request", "daphne.access")


def redact(text: str) -> str:
    return RESET_TOKEN.sub(r"\1[redacted]", text)


class RedactResetTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(arg) if isinstance(arg, str) else arg for arg in record.args)
        return True


def install() -> None:
    for name in REQUEST_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactResetTokens) for f in logger.filters):
            logger.addFilter(RedactResetTokens())
