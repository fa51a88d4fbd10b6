"""Untrusted text to safe HTML: curator notes (Markdown with raw HTML), inline markup from PubMed XML.

Everything goes through nh3 (the Rust `ammonia` allow-list sanitiser) so no script, event handler or
`javascript:` URL can reach a reader's browser, whatever a record contains.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from functools import lru_cache

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

# Python-Markdown is quadratic on some inputs (issue 9): it scans from every '[' and '(' to its
# match and from every '<' to the next '>' (through html.parser), rebuilds a paragraph's text for
# every inline match, and re-splits a block for every rule, underline or heading line. A note of
# 5,000 '[a](' took 12 s, and 20,000 '[' minutes. `markdown_cost` estimates those costs in linear
# time (in seconds, as measured on a developer machine); a note over budget, longer than
# MAX_MARKDOWN_NOTES or nested very deep is shown as plain text: the same bytes on every machine,
# in bounded time.
MARKDOWN_BUDGET_SECONDS = 1.0
MAX_MARKDOWN_NOTES = 200_000
MAX_MARKDOWN_NESTING = 60
_INLINE_SYNTAX = re.compile(r"[&<*_`\\\[!~]")
_RULE_LINE = re.compile(r"^ {0,3}(?:(?:([-*_])(?: *\1){2,}|=+|-+) *$|#{1,6}(?:[ \t]|$))", re.MULTILINE)
_NESTING = re.compile(r"^((?:[ \t]|>)*)(?=\S)", re.MULTILINE)


@lru_cache(maxsize=4096)
def render_notes(text: str) -> Markup:
    """Render a curator's Markdown notes to sanitised HTML (headings start at h2: the page has the h1)."""
    if not text:
        return Markup("")
    if len(text) > MAX_MARKDOWN_NOTES or markdown_cost(text) > MARKDOWN_BUDGET_SECONDS:
        return plain_notes(text)
    import markdown  # (here: an edit that renders no notes does not import it, 16 ms)

    try:
        html = markdown.markdown(text, extensions=["tables", "fenced_code", "sane_lists"], output_format="html")
    except RecursionError:
        return plain_notes(text)
    html = re.sub(r"<(/?)h1\b", r"<\1h2", html)
    clean = nh3.clean(html, tags=NOTE_TAGS, attributes=NOTE_ATTRIBUTES, url_schemes=URL_SCHEMES,
                      link_rel="noopener noreferrer nofollow")
    return Markup(clean)


def plain_notes(text: str) -> Markup:
    """Return notes as escaped text: a paragraph per blank-line-separated block, lines kept."""
    blocks = (block.strip("\n") for block in re.split(r"\n[ \t]*\n", text.strip()))
    return Markup("\n".join(f"<p>{escape(block)}</p>".replace("\n", "<br>\n") for block in blocks if block))


def markdown_cost(text: str) -> float:
    """Estimate the seconds Python-Markdown needs for a note, from its known quadratic paths."""
    if max((len(m.group(1)) for m in _NESTING.finditer(text)), default=0) > MAX_MARKDOWN_NESTING * 4:
        return float("inf")  # lists or quotes nested hundreds deep: deep recursion
    breaks = [m.start() for m in re.finditer(r"\n[ \t]*\n", text)] + [len(text)]

    def block_end(position: int) -> int:
        return breaks[bisect_left(breaks, position)]

    scanned = 0  # characters scanned in Python loops: about 4 million a second
    closers = [m.start() for m in re.finditer(">", text)] + [len(text)]
    for match in re.finditer("<(?=[A-Za-z/!?])", text):  # what html.parser takes for a tag
        scanned += closers[bisect_left(closers, match.start())] - match.start()
    for opener, closer in (("[", "]"), ("(", ")")):
        stack: list[int] = []
        for match in re.finditer(re.escape(opener) + "|" + re.escape(closer), text):
            if match.group() == opener:
                stack.append(match.start())
            elif stack:
                scanned += match.start() - stack.pop()
        scanned += sum(block_end(start) - start for start in stack)
    copied = 0  # characters copied in C: about 2 billion a second
    start = 0
    for end in breaks:
        block = text[start:end]
        copied += len(_INLINE_SYNTAX.findall(block)) * len(block)
        start = end
    resplit = sum(block_end(m.start()) - m.start() for m in _RULE_LINE.finditer(text))  # ~30 million a second
    return scanned / 4e6 + copied / 2e9 + resplit / 3e7


def inline_html(html: str, fallback_text: str = "") -> Markup:
    """Return source inline markup (b, i, sup, sub, u) sanitised, or the escaped plain text."""
    if not html:
        return escape(fallback_text)
    return _clean_inline(html)


@lru_cache(maxsize=4096)
def _clean_inline(html: str) -> Markup:
    """Sanitised inline markup, remembered: a title shows on its page, in listings and in backlinks."""
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
    if len(text) > 2 * limit + 64:
        # A long text (an abstract) is cut: only its first words are needed. The complete words of a
        # prefix are the text's first words, so when they already run past the limit, the cut is theirs.
        head = text[: 2 * limit + 64]
        words = head.split()
        if words and not text[len(head)].isspace():
            words.pop()  # it may go on past the prefix
        start = " ".join(words)
        if len(start) > limit:
            return start[:limit].rsplit(" ", 1)[0].rstrip(",;:.") + "…"
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return cut.rstrip(",;:.") + "…"


# Markdown twins (articles/ID/index.md) -----------------------------------------------------------
# The twin is served as text, but readers' tools render Markdown, usually without a sanitiser: record
# text must come out of any Markdown renderer as text, and notes without raw HTML or foreign links.

_TAG_START = re.compile(r"<(?=[A-Za-z/!?])")
_REFERENCE_START = re.compile(r"&(?=[#A-Za-z])")
_LINK_TARGET = re.compile(r"\]\s*(?:\(\s*|:\s*)([^\s)]*)")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


def markdown_text(text: str) -> str:
    """Return record text for a Markdown page: no tag, comment, autolink, link or image can start in it.

    '<' before a letter, '/', '!' or '?' becomes '&lt;' and '&' before '#' or a letter '&amp;' (every
    renderer decodes them back, so the text reads as written), and '[' ']' are backslash-escaped;
    'p < 0.05' stays as it is.
    """
    # Each step runs only when its character is there: most record text has none of them.
    if type(text) is not str and isinstance(text, str):
        text = str(text)  # as the regular expressions below would return (a Markup comes out a str)
    if "\\" in text:
        text = text.replace("\\", "\\\\")
    if "&" in text:
        text = _REFERENCE_START.sub("&amp;", text)
    if "<" in text:
        text = _TAG_START.sub("&lt;", text)
    if "[" in text:
        text = text.replace("[", "\\[")
    if "]" in text:
        text = text.replace("]", "\\]")
    return text


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
