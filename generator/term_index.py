"""A taxonomy's index: its terms in alphabetical order under their initial letters, with a bar of
letters to jump by. An index too long for one page is split into a page per letter: at 10,000
articles the authors' index lists 31,000 authors (2.7 MB of HTML on one page), the topics' 1,800.

Authors are listed by family name ('Bianchi, Akiko A', see `link.author_index_name`); accents
and case do not change the order ('Åberg' sorts with 'Aberg', under A). Years keep their order,
newest first, with no letters.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from generator import urls
from generator.load import TRANSLITERATIONS

OTHER = "#"  # the letter of terms that start with neither A-Z nor an accented Latin letter
LETTERED_ABOVE = 30  # terms: a shorter index is one plain list
SPLIT_PAGES = 10  # an index of more terms than ten listing pages' worth (`paginate`) gets a page per letter


@dataclass(frozen=True)
class Section:
    """The terms under one letter (`letter` "" in an index without letters)."""

    letter: str
    anchor: str  # the id of its heading: `letter-b`
    terms: tuple[Any, ...]


@dataclass(frozen=True)
class IndexPage:
    """One page of a taxonomy's index: the whole index, or one letter of a split one (or, of a
    letter with more terms than a page holds, one page of it)."""

    path: str
    letter: str  # "" when the index is one page
    sections: tuple[Section, ...]
    number: int = 1  # its place among its letter's pages, from 1
    count: int = 1  # its letter's pages
    letter_total: int = 0  # terms under its letter (a split index's)

    @property
    def terms(self) -> list[Any]:
        return [term for section in self.sections for term in section.terms]


@dataclass(frozen=True)
class LetterLink:
    """One letter of the bar: to its page (`path`) in a split index, else to its heading (`anchor`)."""

    letter: str
    path: str
    anchor: str
    current: bool


def sort_key(name: str) -> str:
    """Return the key a name sorts by: case and accents folded, letters that do not decompose spelt
    as `slugify` spells them ('Ødegaard' with the O's, 'α-synuclein' with the A's), leading
    punctuation dropped."""
    if name.isascii():  # nearly every name: nothing to fold but case
        return name.lower().lstrip(_LEADING)
    decomposed = unicodedata.normalize("NFKD", name.casefold().translate(TRANSLITERATIONS))
    if not decomposed.isascii():
        decomposed = "".join([c for c in decomposed if not unicodedata.combining(c)])
    return decomposed.lstrip(_LEADING)


_LEADING = "\"'([{<*#-_.,;:!?¿¡ "  # dropped from the start of a name ('"Quoted" title', '(R)-...')


def initial(key: str) -> str:
    """Return the letter a sort key is filed under: A-Z, or OTHER."""
    first = key[:1]
    return first.upper() if "a" <= first <= "z" else OTHER


def letter_segment(letter: str) -> str:
    """Return a letter's name in paths and anchors: `b`, or `other` for OTHER."""
    return "other" if letter == OTHER else letter.lower()


def index_pages(taxonomy: str, terms: Sequence[Any], per_page: int) -> list[IndexPage]:
    """Return the pages of a taxonomy's index (`per_page`: articles a listing page, 0 for one page)."""
    path = urls.taxonomy_path(taxonomy)
    if taxonomy == "years" or len(terms) <= LETTERED_ABOVE:
        return [IndexPage(path, "", (Section("", "", tuple(terms)),))]
    keys = [(sort_key(term.index_name or term.name), term.slug) for term in terms]
    grouped: dict[str, list[Any]] = {}
    for n in sorted(range(len(terms)), key=keys.__getitem__):
        letter = initial(keys[n][0])
        found = grouped.get(letter)
        if found is None:
            grouped[letter] = [terms[n]]
        else:
            found.append(terms[n])
    if OTHER in grouped:  # after Z, as the bar shows it
        grouped[OTHER] = grouped.pop(OTHER)
    sections = [Section(letter, f"letter-{letter_segment(letter)}", tuple(found)) for letter, found in grouped.items()]
    if len(sections) == 1:
        return [IndexPage(path, "", (Section("", "", sections[0].terms),))]
    limit = SPLIT_PAGES * per_page
    if not per_page or len(terms) <= limit:
        return [IndexPage(path, "", tuple(sections))]
    pages = []
    for n, section in enumerate(sections):
        letter_path = urls.letter_page_path(taxonomy, letter_segment(section.letter))
        found = section.terms
        count = -(-len(found) // limit)  # a letter of more terms than `limit` gets more pages
        for number in range(1, count + 1):
            if number == 1:
                page_path = letter_path if n else path  # the first letter's first page is the index's own
            else:
                page_path = urls.listing_page_path(letter_path, number)
            chunk = found[(number - 1) * limit: number * limit] if count > 1 else found
            pages.append(IndexPage(page_path, section.letter, (Section(section.letter, section.anchor, chunk),),
                                   number, count, len(found)))
    return pages


def letter_bar(pages: Sequence[IndexPage], page: IndexPage) -> list[LetterLink]:
    """Return the bar of letters shown on `page` (empty for an index without letters): in a split
    index, each letter to its first page, current on every page of its own."""
    if len(pages) > 1:
        return [LetterLink(other.letter, other.path, other.sections[0].anchor, other.letter == page.letter)
                for other in pages if other.number == 1]
    sections = page.sections
    if len(sections) < 2:
        return []
    return [LetterLink(section.letter, "", section.anchor, False) for section in sections]


def letter_pager_paths(pages: Sequence[IndexPage], page: IndexPage) -> list[str]:
    """Return the paths of the pages of `page`'s letter, in order (one path: the letter has one page)."""
    return [other.path for other in pages if other.letter == page.letter]


def term_places(pages: Sequence[IndexPage]) -> dict[str, tuple[str, str]]:
    """Return where the index lists each term, by slug: the path of its page and, on an index of
    one page with headings, the anchor of its letter's (a term page's way back to the index lands
    where the reader left it: 'Smith' on the S page, or at S)."""
    lettered = len(pages) == 1
    places = {}
    for page in pages:
        for section in page.sections:
            place = (page.path, section.anchor if lettered else "")  # one object per page and letter
            places.update(dict.fromkeys([term.slug for term in section.terms], place))
    return places
