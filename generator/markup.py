"""Untrusted text to safe HTML: curator notes (Markdown with raw HTML), inline markup from PubMed XML.

Everything goes through nh3 (the Rust `ammonia` allow-list sanitiser) so no script, event handler or
`javascript:` URL can reach a reader's browser, whatever a record contains.
"""

from __future__ import annotations

import re
from bisect import bisect_left
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
# Python-Markdown looks for the end of every '[' (a link) and every '<' (raw HTML, through
# html.parser) by scanning forward, so a note of 5,000 unclosed '[' took seconds and 20,000 took
# minutes (issue 9). `_markdown_cost` estimates that scanning in linear time; past this budget the
# note's '[' and '<' are escaped, so it renders as text, quickly.
MARKDOWN_BUDGET = 2_000_000


@lru_cache(maxsize=4096)
def render_notes(text: str) -> Markup:
    """Render a curator's Markdown notes to sanitised HTML (headings start at h2: the page has the h1)."""
    if not text:
        return Markup("")
    if _markdown_cost(text) > MARKDOWN_BUDGET:
        text = text.replace("<", "&lt;").replace("[", "\\[")
    try:
        html = markdown.markdown(text, extensions=["tables", "fenced_code", "sane_lists"], output_format="html")
    except RecursionError:  # lists or quotes nested thousands deep: show the text as it is
        return Markup("\n".join(f"<p>{escape(part)}</p>" for part in re.split(r"\n\s*\n", text.strip())))
    html = re.sub(r"<(/?)h1\b", r"<\1h2", html)
    clean = nh3.clean(html, tags=NOTE_TAGS, attributes=NOTE_ATTRIBUTES, url_schemes=URL_SCHEMES,
                      link_rel="noopener noreferrer nofollow")
    return Markup(clean)


def _markdown_cost(text: str) -> int:
    """Estimate how many characters Python-Markdown scans to match the note's '<' and '['.

    Each '<' scans to the next '>'; each '[' to its matching ']', or to the end of its paragraph.
    """
    closers = [m.start() for m in re.finditer(">", text)]
    cost = 0
    for match in re.finditer("<", text):
        index = bisect_left(closers, match.start())
        cost += (closers[index] if index < len(closers) else len(text)) - match.start()
    breaks = [m.start() for m in re.finditer(r"\n[ \t]*\n", text)]
    stack: list[int] = []
    for match in re.finditer(r"[\[\]]", text):
        if match.group() == "[":
            stack.append(match.start())
        elif stack:
            cost += match.start() - stack.pop()
    for start in stack:
        index = bisect_left(breaks, start)
        cost += (breaks[index] if index < len(breaks) else len(text)) - start
    return cost


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


# Markdown twins (articles/ID/index.md) -----------------------------------------------------------
# The twin is served as text, but readers' tools render Markdown, usually without a sanitiser: record
# text must come out of any Markdown renderer as text, and notes without raw HTML or foreign links.

_TAG_START = re.compile(r"<(?=[A-Za-z/!?])")
_LINK_TARGET = re.compile(r"\]\s*(?:\(\s*|:\s*)([^\s)]*)")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


def markdown_text(text: str) -> str:
    """Return record text for a Markdown page: no tag, comment, autolink, link or image can start in it.

    '<' before a letter, '/', '!' or '?' becomes '&lt;' (every renderer decodes it back to '<'), and
    '[' ']' are backslash-escaped; 'p < 0.05' stays as it is.
    """
    text = text.replace("\\", "\\\\") if "\\" in text else text
    return _TAG_START.sub("&lt;", text).replace("[", "\\[").replace("]", "\\]")


def markdown_notes(text: str) -> str:
    """Return a curator's notes for a Markdown page.

    Notes with no raw HTML, no character reference and only http(s), mailto or relative link targets
    are returned as written. Others are returned as the sanitised HTML of the HTML page, on one line
    inside a <div>, which every Markdown renderer passes through as a block (a blank line would end it).
    """
    if not text:
        return ""
    if "<" not in text and "&" not in text and all(_plain_target(t) for t in _LINK_TARGET.findall(text)):
        return text
    html = str(render_notes(text)).replace("\r", "").replace("\n", "&#10;")
    return f"<div class=\"notes\">{html}</div>"


def _plain_target(target: str) -> bool:
    scheme = _SCHEME.match(re.sub(r"[\\\t\n\r]", "", target).strip())
    return scheme is None or scheme.group(1).lower() in URL_SCHEMES
