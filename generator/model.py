"""The article model: frozen dataclasses, so later stages cannot change what earlier ones produced.

Readers produce `Record`s (a dict of field values plus where they came from); `fields.py` turns the
merged records into `Article`s. Every field of a PubMed abstract page has a home here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True)
class SourceRef:
    """Where a record came from, for error messages: `path:line`."""

    path: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.path}:{self.line}" if self.line else self.path


@dataclass(frozen=True)
class PubDate:
    """A publication date as precise as the source gives it; `raw` keeps forms like `2013 Jan-Mar`."""

    year: int | None = None
    month: int | None = None
    day: int | None = None
    raw: str = ""

    @property
    def sort_key(self) -> tuple[int, int, int]:
        return (self.year or 0, self.month or 0, self.day or 0)

    @property
    def iso(self) -> str:
        """Return `YYYY`, `YYYY-MM` or `YYYY-MM-DD`, as precise as known ('' when unknown)."""
        if not self.year:
            return ""
        parts = [f"{self.year:04d}"]
        if self.month:
            parts.append(f"{self.month:02d}")
            if self.day:
                parts.append(f"{self.day:02d}")
        return "-".join(parts)

    @property
    def display(self) -> str:
        """Return the PubMed-style date, e.g. `2025 Jun 24`."""
        if self.raw:
            return self.raw
        if not self.year:
            return ""
        text = str(self.year)
        if self.month:
            text += f" {MONTHS[self.month - 1]}"
            if self.day:
                text += f" {self.day}"
        return text

    def __bool__(self) -> bool:
        return bool(self.year or self.raw)


@dataclass(frozen=True)
class Author:
    """A person or a collective; `name` is how it is displayed ('Jane Q Smith' or the group name)."""

    name: str
    family: str = ""
    given: str = ""
    initials: str = ""
    affiliations: tuple[str, ...] = ()
    orcid: str = ""
    collective: bool = False

    @property
    def short(self) -> str:
        """Return the MEDLINE-style short form, 'Smith JQ'."""
        if self.collective or not self.family:
            return self.name
        return f"{self.family} {self.initials}".strip()


@dataclass(frozen=True)
class AbstractSection:
    """One part of an abstract; structured abstracts have a label per section.

    `html` optionally carries the source's inline markup (b, i, sup, sub, u); it is untrusted and is
    sanitised when rendered. `text` is always the plain text.
    """

    text: str
    label: str = ""
    category: str = ""  # NLM category: BACKGROUND, METHODS, RESULTS, ...
    html: str = ""


@dataclass(frozen=True)
class Qualifier:
    name: str
    major: bool = False


@dataclass(frozen=True)
class MeshTerm:
    """A MeSH heading; `major` marks a major topic (the `*` in MEDLINE), on the descriptor itself."""

    descriptor: str
    major: bool = False
    qualifiers: tuple[Qualifier, ...] = ()
    ui: str = ""

    @property
    def is_major_topic(self) -> bool:
        """Return True when the descriptor or any of its qualifiers is starred."""
        return self.major or any(q.major for q in self.qualifiers)

    @property
    def label(self) -> str:
        """Return the MEDLINE form, e.g. `Lupus Erythematosus, Systemic/*therapy`."""
        head = ("*" if self.major else "") + self.descriptor
        return "/".join([head] + [("*" if q.major else "") + q.name for q in self.qualifiers])


@dataclass(frozen=True)
class Substance:
    name: str
    registry_number: str = ""


@dataclass(frozen=True)
class SimilarRef:
    """An article PubMed lists as similar (its 'Similar articles' section), as cited there."""

    pmid: str = ""
    title: str = ""
    journal: str = ""
    date: str = ""  # as cited, e.g. '2025 Jul 18'
    citation: str = ""  # volume/issue/pages part, e.g. '16:1604174' or '33(6):2368-2390'
    doi: str = ""
    free_pmc: bool = False
    review: bool = False
    publication_types: tuple[str, ...] = ()
    score: float | None = None  # PubMed's neighbour score when known (elink)


@dataclass(frozen=True)
class Notice:
    """A comment or correction link (MEDLINE CIN/RIN/EIN..., XML CommentsCorrections)."""

    kind: str  # XML RefType: RetractionIn, ErratumIn, ExpressionOfConcernIn, CommentIn, ...
    citation: str = ""
    pmid: str = ""
    doi: str = ""


@dataclass(frozen=True)
class LinkOutSection:
    """A LinkOut category (e.g. 'Full Text Sources') with its providers, possibly none."""

    category: str
    items: tuple[str, ...] = ()


@dataclass(frozen=True)
class HistoryDate:
    status: str  # received, accepted, pubmed, medline, entrez, ...
    date: str  # ISO date or date-time as given


@dataclass(frozen=True)
class Article:
    """One article of the digest, after merging every record about it."""

    id: str
    title: str
    source: SourceRef
    sources: tuple[SourceRef, ...] = ()
    title_html: str = ""
    pmid: str = ""
    doi: str = ""
    pmcid: str = ""
    pii: str = ""
    authors: tuple[Author, ...] = ()
    journal: str = ""
    journal_abbrev: str = ""
    issn: tuple[str, ...] = ()
    published: PubDate = PubDate()
    epublished: PubDate = PubDate()
    volume: str = ""
    issue: str = ""
    pages: str = ""
    elocation: str = ""
    language: str = ""
    abstract: tuple[AbstractSection, ...] = ()
    copyright: str = ""
    conflict_of_interest: str = ""
    publication_types: tuple[str, ...] = ()
    mesh_terms: tuple[MeshTerm, ...] = ()
    substances: tuple[Substance, ...] = ()
    keywords: tuple[str, ...] = ()
    grants: tuple[str, ...] = ()
    similar: tuple[SimilarRef, ...] = ()
    notices: tuple[Notice, ...] = ()
    linkout: tuple[LinkOutSection, ...] = ()
    history: tuple[HistoryDate, ...] = ()
    url: str = ""
    status: str = ""  # MEDLINE STAT / XML Status
    # The curator's own fields.
    notes: str = ""  # Markdown
    tags: tuple[str, ...] = ()
    rating: int | None = None
    verdict: str = ""
    added: str = ""
    extra: tuple[tuple[str, str], ...] = ()

    @property
    def year(self) -> int | None:
        return self.published.year or self.epublished.year

    @property
    def sort_key(self) -> tuple:
        """Newest first when sorted ascending: date descending, then id for a fixed tie-break."""
        date = self.published.sort_key if self.published.year else self.epublished.sort_key
        return (tuple(-x for x in date), self.id)

    @property
    def abstract_text(self) -> str:
        return "\n\n".join(
            f"{s.label}: {s.text}" if s.label else s.text for s in self.abstract
        )

    @property
    def is_retracted(self) -> bool:
        return "Retracted Publication" in self.publication_types or any(
            n.kind == "RetractionIn" for n in self.notices
        )

    @property
    def is_retraction_notice(self) -> bool:
        return "Retraction of Publication" in self.publication_types

    @property
    def has_erratum(self) -> bool:
        return any(n.kind == "ErratumIn" for n in self.notices)

    @property
    def has_expression_of_concern(self) -> bool:
        return "Expression of Concern" in self.publication_types or any(
            n.kind == "ExpressionOfConcernIn" for n in self.notices
        )

    @property
    def is_review(self) -> bool:
        return any(t in ("Review", "Systematic Review", "Meta-Analysis") for t in self.publication_types)


@dataclass
class Record:
    """What a reader returns: some of an article's fields, from one place in one file.

    `fields` uses `Article` field names. Imported readers put model values in it (tuples of
    `Author`, `PubDate`...); native YAML puts plain YAML values, which `fields.py` validates.
    `native` records (the curator's YAML/Markdown) win over imported ones when records merge.
    """

    fields: dict[str, Any]
    source: SourceRef
    native: bool = False
    field_lines: dict[str, int] = field(default_factory=dict)
    format: str = ""
