"""Every page path of the site, and relative links between pages (so the site works at `/` and `/repo/`).

Paths are POSIX, relative to the output folder, and name folders (`articles/123/`) whose page is
`index.html`; files keep their name (`feed.xml`).
"""

from __future__ import annotations

import re
from urllib.parse import quote

HOME = ""
SEARCH = "search/"
MAP = "map/"
FEED = "feed.xml"
SITEMAP = "sitemap.xml"
DIGEST_JSON = "digest.json"
NOT_FOUND = "404.html"

TAXONOMY_TITLES = {
    "topics": "Topics",
    "authors": "Authors",
    "journals": "Journals",
    "years": "Years",
    "types": "Publication types",
}


def article_path(article_id: str) -> str:
    return f"articles/{article_id}/"


def article_markdown_path(article_id: str) -> str:
    return f"articles/{article_id}/index.md"


def taxonomy_path(taxonomy: str) -> str:
    return f"{taxonomy}/"


def term_path(taxonomy: str, slug: str) -> str:
    return f"{taxonomy}/{slug}/"


def letter_page_path(taxonomy: str, segment: str) -> str:
    """Return the page of one initial letter (`segment`: `b`, `other`) of a taxonomy's index split
    into a page per letter (`term_index`): `authors/letter/b/`. A term's own pages (`authors/x/`,
    `authors/x/page/2/`) never hold a one-letter folder, so no term's page can be there."""
    return f"{taxonomy_path(taxonomy)}letter/{segment}/"


def listing_page_path(path: str, number: int) -> str:
    """Return the path of page `number` of the listing at `path`: the first is the listing's own
    (`topics/x/`), the next ones `topics/x/page/2/`, as Hugo names them."""
    return path if number == 1 else f"{path}page/{number}/"


_LISTING_PAGE = re.compile(r"(.*?)(?:page/([1-9][0-9]*)/)?")


def split_listing_page(path: str) -> tuple[str, int]:
    """Return the listing a page path belongs to and the page's number (`listing_page_path`'s inverse)."""
    found = _LISTING_PAGE.fullmatch(path)
    base, number = found.group(1), found.group(2)  # type: ignore[union-attr]
    return (base, int(number)) if number and int(number) > 1 else (path, 1)


def page_count(articles: int, per_page: int) -> int:
    """Return how many pages a listing of `articles` has (`per_page` 0: one)."""
    return max(1, -(-articles // per_page)) if per_page else 1


def output_file(path: str) -> str:
    """Return the file a page path is written to: folders get `index.html`."""
    return f"{path}index.html" if path == "" or path.endswith("/") else path


def depth(path: str) -> int:
    """Return how many folders deep a page's file is, from the site root."""
    return output_file(path).count("/")


def relative_url(from_path: str, to_path: str) -> str:
    """Return the relative URL from one page to another: `articles/1/` -> `topics/x/` is `../../topics/x/`."""
    return url_from_depth(depth(from_path), to_path)


def url_from_depth(folders: int, to_path: str) -> str:
    """Return the relative URL to a page from any page `folders` folders deep."""
    return ("../" * folders + quote_path(to_path)) or "./"


def absolute_url(base_url: str, path: str) -> str:
    """Return the absolute URL of a page under `base_url` (which ends with '/'), or the path when unset."""
    return (base_url or "/") + quote_path(path)


_QUOTED = re.compile(r"[A-Za-z0-9_.~/#?=&-]*")  # what quote(..., safe="/.-_~#?=&") leaves as it is


def quote_path(path: str) -> str:
    """Percent-encode a path for a link (most paths need nothing: checked first, it is much faster)."""
    return path if _QUOTED.fullmatch(path) else quote(path, safe="/.-_~#?=&")


def pubmed_url(pmid: str) -> str:
    return f"https://pubmed.ncbi.nlm.nih.gov/{pmid}/"


def doi_url(doi: str) -> str:
    return "https://doi.org/" + quote(doi, safe="/:;()._-")


def pmc_url(pmcid: str) -> str:
    return f"https://www.ncbi.nlm.nih.gov/pmc/articles/{pmcid}/"
