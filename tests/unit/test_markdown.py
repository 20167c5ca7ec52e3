from html.parser import HTMLParser

import pytest

from playground.chat.markdown import render_markdown


class Elements(HTMLParser):
    """The elements and attributes a browser would build from the HTML."""

    def __init__(self, html: str):
        super().__init__()
        self.found: list[tuple[str, dict]] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.found.append((tag, dict(attrs)))

PAYLOADS = [
    '<script>alert(1)</script>',
    '<img src=x onerror="alert(1)">',
    '[click](javascript:alert(1))',
    '<a href="javascript:alert(1)">x</a>',
    '![x](javascript:alert(1))',
    '<svg onload=alert(1)>',
    '<iframe src="https://evil.example"></iframe>',
    '[x](JaVaScRiPt:alert(1))',
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_untrusted_markup_is_inert(payload):
    elements = Elements(str(render_markdown(f"Hello\n\n{payload}\n\nbye"))).found
    tags = {tag for tag, _ in elements}
    assert not tags & {"script", "iframe", "svg", "object", "embed", "style"}
    for _, attrs in elements:
        assert not [name for name in attrs if name.startswith("on")]
        for name in ("href", "src"):
            assert not (attrs.get(name) or "").strip().lower().startswith("javascript:")


def test_markdown_features_render():
    html = str(render_markdown("**bold** and `code`\n\n```python\nprint('hi')\n```\n\n- a\n- b\n\n[ok](https://example.com)"))
    assert "<strong>bold</strong>" in html and "<code>code</code>" in html
    assert "<pre><code" in html and 'class="hl-' in html
    assert "<li>a</li>" in html
    assert 'href="https://example.com"' in html and 'rel="noopener noreferrer nofollow"' in html
