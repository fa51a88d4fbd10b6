"""Parsing shared by several readers: PubMed date strings, MeSH headings, identifiers."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from generator.errors import Problem
from generator.model import MONTHS, MeshTerm, PubDate, Qualifier, Record

_MONTH_NUMBERS = {name.lower(): i + 1 for i, name in enumerate(MONTHS)}
_MONTH_NUMBERS.update({"sept": 9, "june": 6, "july": 7})
_SEASON_MONTHS = {"spring": 3, "summer": 6, "fall": 9, "autumn": 9, "winter": 12}
_YEAR = re.compile(r"\b(1[6-9]\d\d|2\d\d\d)\b")
_DOI = re.compile(r"\b(10\.\d{4,9}/\S+)")


@dataclass
class ReadResult:
    """Records a reader found in one file, and the problems it met while going on past them."""

    records: list[Record] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def month_number(token: str) -> int | None:
    """Return 1-12 for 'Jan', 'january', '01', '1'; None otherwise."""
    token = token.strip().rstrip(".").lower()
    if token.isdigit():
        number = int(token)
        return number if 1 <= number <= 12 else None
    return _MONTH_NUMBERS.get(token[:3]) if token[:3] in _MONTH_NUMBERS else None


def parse_pubmed_date(raw: str) -> PubDate:
    """Parse PubMed's free-ish dates: `2006`, `2020 Feb`, `2006 Mar 1`, `2013 Jan-Mar`, `2000 Winter`,
    `1998 Dec-1999 Jan`, `20250323`, `2025/03/23`, `2025-03-23`. The raw text is kept when it is not a
    plain year/month/day, so ranges and seasons display as the source wrote them.
    """
    text = " ".join(str(raw).split())
    if not text:
        return PubDate()
    compact = re.fullmatch(r"(\d{4})(\d{2})(\d{2})", text)
    iso = re.fullmatch(r"(\d{4})[-/](\d{1,2})(?:[-/](\d{1,2}))?(?:[ T].*)?", text)
    if compact or iso:
        match = compact or iso
        year, month = int(match.group(1)), int(match.group(2))
        day = int(match.group(3)) if match.group(3) else None
        if 1 <= month <= 12 and (day is None or 1 <= day <= 31):
            return PubDate(year=year, month=month, day=day)
    year_match = _YEAR.search(text)
    if not year_match:
        return PubDate(raw=text)
    year = int(year_match.group(1))
    rest = text[year_match.end():].strip().split()
    month = day = None
    plain = True
    if rest:
        first = rest[0]
        if "-" in first or first.lower() in _SEASON_MONTHS:
            plain = False
            month = month_number(first.split("-")[0]) or _SEASON_MONTHS.get(first.lower())
        else:
            month = month_number(first)
            if month is None:
                plain = False
            elif len(rest) > 1:
                if rest[1].isdigit() and 1 <= int(rest[1]) <= 31:
                    day = int(rest[1])
                else:
                    plain = False
            if len(rest) > 2:
                plain = False
    if year_match.start() != 0:
        plain = False
    return PubDate(year=year, month=month, day=day, raw="" if plain else text)


def parse_mesh_heading(text: str) -> MeshTerm:
    """Parse the MEDLINE form `Descriptor/qualifier/*qualifier`, a `*` marking a major topic."""
    parts = [p.strip() for p in text.split("/")]
    head = parts[0]
    major = head.startswith("*")
    qualifiers = tuple(
        Qualifier(name=q.lstrip("*").strip(), major=q.startswith("*")) for q in parts[1:] if q.strip("* ")
    )
    return MeshTerm(descriptor=head.lstrip("*").strip(), major=major, qualifiers=qualifiers)


def find_doi(text: str) -> str:
    """Return the first DOI in a string, without trailing punctuation; '' when there is none."""
    match = _DOI.search(text or "")
    return match.group(1).rstrip(".,;)]") if match else ""


def normalize_doi(doi: str) -> str:
    """Return a DOI without resolver prefixes (`https://doi.org/`, `doi:`), trimmed."""
    doi = (doi or "").strip()
    doi = re.sub(r"^(https?://(dx\.)?doi\.org/|doi:\s*)", "", doi, flags=re.IGNORECASE)
    return doi.strip()


def normalize_pmid(value: object) -> str:
    """Return the digits of a PMID (`PMID: 123`, `123`), or '' when it holds none."""
    match = re.search(r"\d+", str(value or ""))
    return match.group(0).lstrip("0") or "" if match else ""
