"""Untrusted text to safe HTML: curator notes (Markdown with raw HTML), inline markup from PubMed XML.

Everything goes through nh3 (the Rust `ammonia` allow-list sanitiser) so no script, event handler or
`javascript:` URL can reach a reader's browser, whatever a record contains.
"""

from __future__ import annotations

import re
from functools import lru_cache

import markdown
import nh3
from markupsafe import Markup, escape

INLINE_TAGS = {"b", "i", "sup", "sub", "u", "em", "strong"}
NOTE_TAGS = INLINE_TAGS | {
    "p", "br", "hr", "a", "ul", "ol", "li", "blockquote", "code", "pre", "h2", "h3", "h4", "h5", "h6",
    "table", "thead", "tbody", "tr", "th", "td", "del", "ins", "abbr", "dl", "dt", "dd", "span", "s", "mark",
}
NOTE_ATTRIBUTES = {"a": {"href", "title"}, "abbr": {"title"}, "th": {"align"}, "td": {"align"}, "ol": {"start"}}
URL_SCHEMES = {"http", "https", "mailto"}
_SAFE_URL = re.compile(r"^(https?://|mailto:)[^\s\"'<>`]+$", re.IGNORECASE)


@lru_cache(maxsize=4096)
def render_notes(text: str) -> Markup:
    """Render a curator's Markdown notes to sanitised HTML (headings start at h2: the page has the h1)."""
    if not text:
        return Markup("")
    html = markdown.markdown(text, extensions=["tables", "fenced_code", "sane_lists"], output_format="html")
    html = re.sub(r"<(/?)h1\b", r"<\1h2", html)
    clean = nh3.clean(html, tags=NOTE_TAGS, attributes=NOTE_ATTRIBUTES, url_schemes=URL_SCHEMES,
                      link_rel="noopener noreferrer nofollow")
    return Markup(clean)


def inline_html(html: str, fallback_text: str = "") -> Markup:
    """Return source inline markup (b, i, sup, sub, u) sanitised, or the escaped plain text."""
    if not html:
        return escape(fallback_text)
    return Markup(nh3.clean(html, tags=INLINE_TAGS, attributes={}, url_schemes=set()))


def safe_url(url: str) -> str:
    """Return the URL when it is http(s) or mailto with no spaces or quotes, else ''."""
    url = (url or "").strip()
    return url if _SAFE_URL.match(url) else ""


def plain_text(html: str) -> str:
    """Return the text of an HTML fragment (for meta descriptions and feeds)."""
    return " ".join(nh3.clean(html, tags=set(), attributes={}).split())


def summary(text: str, limit: int = 300) -> str:
    """Return the first `limit` characters of a text, cut at a word boundary, with an ellipsis."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return cut.rstrip(",;:.") + "…"
