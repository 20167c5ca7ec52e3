"""Model output is untrusted: Markdown → HTML, then an allow-list sanitizer (nh3/ammonia).

markdown-it runs with raw HTML disabled, so a reply's <script> arrives as text; nh3 then
removes anything outside the allow-list (event handlers, javascript: URLs, styles) in case a
Markdown construct produces it. Code blocks are highlighted with Pygments CSS classes (no
inline styles: the Content-Security-Policy forbids them).
"""

from __future__ import annotations

import nh3
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

_FORMATTER = HtmlFormatter(nowrap=True, classprefix="hl-")


def _highlight(code: str, lang: str, _attrs: str) -> str:
    # The code verbatim (Pygments strips leading and trailing blank lines and adds a final
    # newline by default): the browser's streaming view (static/js/markdown-live.js) shows it
    # unhighlighted but verbatim, and the two must have the same lines so the swap does not jump.
    try:
        lexer = get_lexer_by_name(lang, stripnl=False, ensurenl=False) if lang else None
    except ClassNotFound:
        lexer = None
    if not lexer:
        return ""  # "" = markdown-it escapes it
    html = highlight(code, lexer, _FORMATTER)
    return html[:-1] if html.endswith("\n") and not code.endswith("\n") else html  # the formatter ends every line


_MD = MarkdownIt("commonmark", {"html": False, "highlight": _highlight}).enable(["table", "strikethrough"])

_TAGS = {
    "p", "br", "hr", "em", "strong", "del", "code", "pre", "span", "blockquote", "a",
    "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td", "img",
}
_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title"},
    "code": {"class"},
    "span": {"class"},
    "ol": {"start"},
    "th": {"align"},
    "td": {"align"},
}


def render_markdown(text: str) -> SafeString:
    html = _MD.render(text or "")
    clean = nh3.clean(
        html,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )
    return mark_safe(clean)  # noqa: S308 - sanitized by nh3 on the line above
