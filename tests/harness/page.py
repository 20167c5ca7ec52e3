"""Read what a user sees on a session page: its messages, statuses, errors and usage."""

from __future__ import annotations

import html as htmllib
import re
from dataclasses import dataclass, field

_ARTICLE = re.compile(r'<article class="msg msg-(\w+) status-(\w+)" id="msg-(\d+)"[^>]*>(.*?)</article>', re.S)
_TAG = re.compile(r"<[^>]+>")
_USAGE = re.compile(r"<dt>([^<]+)</dt><dd[^>]*>(.*?)</dd>", re.S)


def text_of(fragment: str) -> str:
    return htmllib.unescape(_TAG.sub("", fragment)).strip()


@dataclass
class ShownMessage:
    id: int
    role: str
    status: str
    body: str
    error: str
    usage: dict[str, str] = field(default_factory=dict)
    html: str = ""

    def number(self, name: str) -> int:
        return int(self.usage[name].split()[0])


def messages(page_html: str) -> list[ShownMessage]:
    shown = []
    for role, status, mid, inner in _ARTICLE.findall(page_html):
        body = re.search(r'id="body-\d+"[^>]*>(.*?)</div>\s*(?:<div class="msg-actions"|<p class="turn-error"|<form|<dl|$)', inner, re.S)
        error = re.search(r'<p class="turn-error"[^>]*>(.*?)</p>', inner, re.S)
        usage = {k.strip(): text_of(v) for k, v in _USAGE.findall(inner)}
        shown.append(
            ShownMessage(int(mid), role, status, text_of(body.group(1)) if body else "", text_of(error.group(1)) if error else "", usage, inner)
        )
    return shown


def last_reply(page_html: str) -> ShownMessage:
    return [m for m in messages(page_html) if m.role == "assistant"][-1]
