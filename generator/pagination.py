"""Listings split into pages (`paginate` in digest.yaml): which articles a page shows, and the
pager its template draws. A digest of 10,000 articles would otherwise put them all on its home
page (4.4 MB of HTML) and on the page of each large topic, type and year."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from generator import urls

WINDOW = 2  # pages linked on each side of the current one, besides the first and the last
NEWEST_FIRST_STEPS = ("← Newer", "Older →")  # the words of the links to the page before and after
ALPHABETICAL_STEPS = ("← Previous", "Next →")  # the same, for a list in alphabetical order


@dataclass(frozen=True)
class PagerLink:
    """One link of a pager: a page (its number and relative URL), or a gap (`number` 0)."""

    number: int
    url: str
    current: bool = False


@dataclass(frozen=True)
class Pager:
    """Where a listing page stands among its listing's pages (`pager` in index.html and term.html)."""

    number: int  # this page's, from 1
    count: int  # pages in the listing
    total: int  # articles in the listing
    first: int  # the position of this page's first article in the listing, from 1 (an <ol>'s start)
    last: int  # the position of its last one (0 in an empty listing)
    previous: str  # relative URL of the page before, or ""
    next: str  # relative URL of the page after, or ""
    links: tuple[PagerLink, ...]  # the first, the last and the pages near this one, with gaps
    steps: tuple[str, str] = NEWEST_FIRST_STEPS  # the words of the links to the page before and after


def page_ids(ids: Sequence[str], number: int, per_page: int) -> Sequence[str]:
    """Return the ids page `number` of a listing of `ids` shows."""
    return ids[(number - 1) * per_page: number * per_page] if per_page else ids


def make_pager(listing_path: str, number: int, total: int, per_page: int,
               page_paths: Sequence[str] | None = None, steps: tuple[str, str] = NEWEST_FIRST_STEPS) -> Pager:
    """Return the pager of page `number` of the listing at `listing_path` (a page path: `topics/x/`),
    or of the listing whose pages are at `page_paths` (a letter of a split index: see term_index)."""
    count = urls.page_count(total, per_page)

    def path(page: int) -> str:
        return page_paths[page - 1] if page_paths is not None else urls.listing_page_path(listing_path, page)

    depth = urls.depth(path(number))

    def url(page: int) -> str:
        return urls.url_from_depth(depth, path(page))

    shown = sorted({1, count, *range(max(1, number - WINDOW), min(count, number + WINDOW) + 1)})
    links: list[PagerLink] = []
    for page in shown:
        if links and page > links[-1].number + 1:
            links.append(PagerLink(0, ""))
        links.append(PagerLink(page, url(page), page == number))
    first = (number - 1) * per_page + 1 if per_page else 1
    last = min(total, number * per_page) if per_page else total
    return Pager(number=number, count=count, total=total, first=first, last=last,
                 previous=url(number - 1) if number > 1 else "", next=url(number + 1) if number < count else "",
                 links=tuple(links), steps=steps)
