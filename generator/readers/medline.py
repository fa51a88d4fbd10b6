"""Read PubMed MEDLINE files (`.nbib`, and `.txt` starting with `PMID-`): tagged lines, one record per
blank-line-separated block.

Each line is a tag padded to four columns, `- `, then the value; lines that start with spaces carry on
the previous field. Fields are grouped by tag, except the author lines (FAU, AU, CN, AD, AUID), whose
meaning depends on their order: AD and AUID belong to the author before them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from generator.errors import Problem, ReaderError
from generator.model import (
    AbstractSection,
    Author,
    HistoryDate,
    MeshTerm,
    Notice,
    PubDate,
    Record,
    SourceRef,
    Substance,
)
from generator.readers.common import (
    ReadResult,
    find_doi,
    normalize_doi,
    normalize_pmid,
    parse_mesh_heading,
    parse_pubmed_date,
)

FORMAT = "medline"
HINT = "a MEDLINE record starts with 'PMID- ' and each field with a tag such as 'TI  - '"
TITLE_HINT = "add a 'TI  - ' line, or a title in a YAML record with the same PMID"

# A value with the 1-based line its field starts on.
Item = tuple[str, int]
# Sets a record field once, with its line: `put(name, value, line)`.
Put = Callable[[str, Any, int], None]

# Each match is one line of the file, or one field with its continuation lines: groups (tag, value,
# '') for a field, ('', '', text) for any other line (blank or stray). A field is a tag (padded to four
# columns in real files, looser here), '-', the value, and the following lines that start with spaces.
# An empty value may have lost its space (`AB  -`).
_LINES = re.compile(r"^(?:([A-Z][A-Z0-9]{0,3}) *-(?: |$)(.*(?:\n[ \t]+\S.*)*)|(.*))$", re.MULTILINE)
_AUTHOR_TAGS = frozenset({"FAU", "AU", "CN", "AD", "AUID"})

# MEDLINE comments/corrections tags and the XML CommentsCorrections RefType each stands for (NLM
# "MEDLINE/PubMed Data Element (Field) Descriptions" and its errata fact sheet).
NOTICE_KINDS = {
    "CIN": "CommentIn",
    "CON": "CommentOn",
    "EIN": "ErratumIn",
    "EFR": "ErratumFor",
    "CRI": "CorrectedandRepublishedIn",
    "CRF": "CorrectedandRepublishedFrom",
    "RIN": "RetractionIn",
    "ROF": "RetractionOf",
    "RRI": "RetractedandRepublishedIn",
    "RRF": "RetractedandRepublishedFrom",
    "PRIN": "PartialRetractionIn",
    "PROF": "PartialRetractionOf",
    "UIN": "UpdateIn",
    "UOF": "UpdateOf",
    "RPI": "RepublishedIn",
    "RPF": "RepublishedFrom",
    "ECI": "ExpressionOfConcernIn",
    "ECF": "ExpressionOfConcernFor",
    "SPIN": "SummaryForPatientsIn",
    "ORI": "OriginalReportIn",
    "DDIN": "DatasetDescribedIn",
    "DRIN": "DatasetUseReportedIn",
}

# Tags whose first value is the field's value, as given.
_SCALAR_TAGS = {
    "CI": "copyright",
    "COIS": "conflict_of_interest",
    "TA": "journal_abbrev",
    "JT": "journal",
    "VI": "volume",
    "IP": "issue",
    "PG": "pages",
    "LA": "language",
    "PMC": "pmcid",
    "STAT": "status",
}
# Tags whose values, in order, make a tuple of strings.
_LIST_TAGS = {"PT": "publication_types", "OT": "keywords", "GR": "grants"}

_PHST = re.compile(r"(\d{4})/(\d{1,2})/(\d{1,2})(?: (\d{1,2}):(\d{2}))?\s*\[([^\]]+)\]$")
_ORCID = re.compile(r"(\d{4})-?(\d{4})-?(\d{4})-?(\d{3}[\dX])", re.IGNORECASE)

# Structured abstracts are flattened into one AB string: `BACKGROUND: ... METHODS: ...`. A label is a
# run of upper-case words at the start or right after a sentence end, followed by ': '.
_LABEL_WORD = r"[A-Z][A-Z'\-]*[A-Z](?:\([A-Z]{1,3}\))?"
_LABEL_NEXT_WORD = r"(?:[A-Z0-9][A-Z0-9'\-]*(?:\([A-Z]{1,3}\))?|&)"
_LABEL = rf"({_LABEL_WORD}(?:(?:, | |/){_LABEL_NEXT_WORD}){{0,8}}): "
_LEADING_LABEL = re.compile(_LABEL)
_INNER_LABEL = re.compile(rf"[.?!)\]] {_LABEL}")
# First words of labels common enough that one alone makes a structured abstract.
_KNOWN_LABEL_WORDS = frozenset(
    """AIM AIMS BACKGROUND CASE CLINICAL CONCLUSION CONCLUSIONS CONTEXT DATA DESIGN DISCUSSION
    EVIDENCE EXPOSURE EXPOSURES FINDINGS FUNDING GOAL GOALS HYPOTHESIS IMPORTANCE INTERPRETATION
    INTERVENTION INTERVENTIONS INTRODUCTION KEY LIMITATIONS MAIN MATERIALS MEASUREMENTS METHOD METHODS
    OBJECTIVE OBJECTIVES OUTCOMES PARTICIPANTS PATIENTS PURPOSE RATIONALE RECENT RESULT RESULTS
    REVIEW SETTING SETTINGS SIGNIFICANCE STUDY SUMMARY TRIAL""".split()
)


class _Block:
    """One record's fields as read from the file: values grouped by tag, author lines in order."""

    __slots__ = ("start", "tags", "people")

    def __init__(self, start: int) -> None:
        self.start = start
        self.tags: dict[str, list[Item]] = {}
        self.people: list[tuple[str, str, int]] = []


def read(text: str, path: str) -> ReadResult:
    """Return the records of a MEDLINE file, with a problem for each part that could not be read."""
    result = ReadResult()
    blocks = _split_records(text, path, result.problems)
    if not blocks:
        if result.problems:
            raise ReaderError(
                path, "not a MEDLINE file: no 'TAG - value' lines", line=result.problems[0].line, hint=HINT
            )
        raise ReaderError(path, "no MEDLINE records found (the file is empty)", hint=HINT)
    for block in blocks:
        result.records.append(_build_record(block, path, result.problems))
    return result


def _split_records(text: str, path: str, problems: list[Problem]) -> list[_Block]:
    """Group the file's fields into records, joining continuation lines onto their field.

    One `findall` splits the whole text into fields (with their continuation lines), blank lines and
    stray lines, so the Python loop runs once per field rather than once per line.
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    blocks: list[_Block] = []
    tags: dict[str, list[Item]] | None = None  # the current record's fields, None between records
    people: list[tuple[str, str, int]] = []
    author_tags = _AUTHOR_TAGS
    line = 0
    for tag, value, stray in _LINES.findall(text):
        line += 1
        if not tag:
            if stray.strip():
                problems.append(_stray_line_problem(path, line, stray))
            else:
                tags = None  # a blank line ends the record
            continue
        start = line
        if "\n" in value:
            parts = value.split("\n")
            line += len(parts) - 1
            value = " ".join([part.strip() for part in parts])
        else:
            value = value.strip()
        # Records normally end at a blank line; a new PMID also starts one when the blank is missing.
        if tags is None or (tag == "PMID" and tags):
            block = _Block(start)
            blocks.append(block)
            tags, people = block.tags, block.people
        if tag in author_tags:
            people.append((tag, value, start))
        items = tags.get(tag)
        if items is None:
            tags[tag] = [(value, start)]
        else:
            items.append((value, start))
    return blocks


def _stray_line_problem(path: str, line: int, text: str) -> Problem:
    if text[:1] in (" ", "\t"):
        return _problem(path, line, "continuation line with no field before it")
    return _problem(path, line, f"not a MEDLINE 'TAG - value' line: {text[:40]!r}", HINT)


def _problem(path: str, line: int, message: str, hint: str = "", severity: str = "error") -> Problem:
    return Problem(path=path, line=line, message=message, hint=hint, severity=severity)


def _build_record(block: _Block, path: str, problems: list[Problem]) -> Record:
    """Turn one record's fields into a `Record`; only fields the file has are set."""
    tags = block.tags
    fields: dict[str, Any] = {}
    lines: dict[str, int] = {}

    def put(name: str, value: Any, line: int) -> None:
        if value and name not in fields:
            fields[name] = value
            lines[name] = line

    for tag, name in _SCALAR_TAGS.items():
        items = tags.get(tag)
        if items:
            put(name, _first_value(items), items[0][1])
    for tag, name in _LIST_TAGS.items():
        items = tags.get(tag)
        if items:
            put(name, tuple(value for value, _ in items if value), items[0][1])
    _read_pmid(tags.get("PMID"), block.start, path, problems, put)
    _read_title(tags, put)
    _read_dates(tags, path, problems, put)
    _read_identifiers(tags, put)
    for tag, name, reader in _GROUPED_READERS:
        items = tags.get(tag)
        if items:
            put(name, reader(items), items[0][1])
    _read_substances(tags, put)
    _read_notices(tags, put)
    if block.people:
        put("authors", _read_authors(block.people), block.people[0][2])
    if "title" not in fields:
        # A warning: a curator's YAML record for the same PMID may supply the title when records merge;
        # the loader reports an article left without one.
        problems.append(_problem(path, block.start, "record has no title (TI)", TITLE_HINT, "warning"))
    return Record(
        fields=fields, source=SourceRef(path, block.start), native=False, field_lines=lines, format=FORMAT
    )


def _first_value(items: list[Item]) -> str:
    """Return the first non-empty value: a repeated scalar tag keeps its first value."""
    for value, _ in items:
        if value:
            return value
    return ""


def _read_pmid(items: list[Item] | None, start: int, path: str, problems: list[Problem], put: Put) -> None:
    value = _first_value(items) if items else ""
    if not items or not value:
        problems.append(_problem(path, start, "record has no PMID", severity="warning"))
        return
    line = items[0][1]
    if value.isdigit():
        put("pmid", value.lstrip("0"), line)
        return
    problems.append(_problem(path, line, f"PMID is not a number: {value!r}", severity="warning"))
    put("pmid", normalize_pmid(value), line)


def _read_title(tags: dict[str, list[Item]], put: Put) -> None:
    """Take TI as the title; a book record (BTI) gives its book title as journal, and as title if no TI."""
    items = tags.get("TI")
    if items:
        put("title", strip_added_period(_first_value(items)), items[0][1])
    book = tags.get("BTI")
    if book:
        put("journal", _first_value(book), book[0][1])
        put("title", strip_added_period(_first_value(book)), book[0][1])


def _read_dates(tags: dict[str, list[Item]], path: str, problems: list[Problem], put: Put) -> None:
    for tag, name in (("DP", "published"), ("DEP", "epublished")):
        items = tags.get(tag)
        value = _first_value(items) if items else ""
        if not items or not value:
            continue
        line = items[0][1]
        date = _parse_date(value)
        if not date.year:
            problems.append(_problem(path, line, f"{tag} has no year: {value!r}", severity="warning"))
        put(name, date, line)


@lru_cache(maxsize=4096)
def _parse_date(value: str) -> PubDate:
    """Parse a DP/DEP value; cached because most records of a digest share a few issue dates.

    DEP's `YYYYMMDD` is read directly: those dates rarely repeat, so the cache does not help them.
    """
    if len(value) == 8 and value.isdigit():
        month, day = int(value[4:6]), int(value[6:])
        if 1 <= month <= 12 and 1 <= day <= 31:
            return PubDate(year=int(value[:4]), month=month, day=day)
    return parse_pubmed_date(value)


def _read_identifiers(tags: dict[str, list[Item]], put: Put) -> None:
    """Take the DOI and PII from LID first, then AID; a bare LID is the e-location."""
    location_ids = [(*_split_id(value), line) for value, line in tags.get("LID", ()) if value]
    article_ids = [(*_split_id(value), line) for value, line in tags.get("AID", ()) if value]
    for kind, value, line in location_ids + article_ids:
        if kind == "doi":
            put("doi", value if value.startswith("10.") else normalize_doi(value), line)
        elif kind == "pii":
            put("pii", value, line)
    for kind, value, line in location_ids:
        if not kind:
            put("elocation", value, line)


def _read_substances(tags: dict[str, list[Item]], put: Put) -> None:
    """Take RN lines (registry number and name) then NM lines (supplementary concept names)."""
    registry = tags.get("RN", [])
    supplementary = tags.get("NM", [])
    if not registry and not supplementary:
        return
    substances = [_parse_substance(value) for value, _ in registry]
    substances += [Substance(name=value) for value, _ in supplementary]
    line = min(items[0][1] for items in (registry, supplementary) if items)
    put("substances", tuple(s for s in substances if s.name), line)


def _split_id(value: str) -> tuple[str, str]:
    """Split `10.1000/x [doi]` into ('doi', '10.1000/x'); a bare value has kind ''."""
    if value.endswith("]"):
        identifier, sep, kind = value[:-1].rpartition("[")
        if sep and kind.isalpha():
            return kind.lower(), identifier.strip()
    return "", value.strip()


def _read_abstract(items: list[Item]) -> tuple[AbstractSection, ...]:
    return split_abstract(_first_value(items))


def _read_issns(items: list[Item]) -> tuple[str, ...]:
    """Keep `1097-4180` from `1097-4180 (Electronic)`, each ISSN once, in order."""
    issns = (value.split("(", 1)[0].strip() for value, _ in items)
    return tuple(dict.fromkeys(issn for issn in issns if issn))


def _read_mesh(items: list[Item]) -> tuple[MeshTerm, ...]:
    terms = (_mesh_term(value) for value, _ in items)
    return tuple(term for term in terms if term.descriptor)


@lru_cache(maxsize=8192)
def _mesh_term(value: str) -> MeshTerm:
    """Parse one MH value; cached because a digest repeats the same headings in most records."""
    return parse_mesh_heading(value)


def _read_history(items: list[Item]) -> tuple[HistoryDate, ...]:
    """Parse PHST `2019/01/21 00:00 [received]` lines; others are skipped."""
    history = []
    for value, _ in items:
        match = _PHST.match(value)
        if match:
            year, month, day, hour, minute, status = match.groups()
            date = history_date(year, month, day, hour or "", minute or "")
            if date and status.strip():
                history.append(HistoryDate(status=status.strip(), date=date))
    return tuple(history)


_GROUPED_READERS = (
    ("AB", "abstract", _read_abstract),
    ("IS", "issn", _read_issns),
    ("MH", "mesh_terms", _read_mesh),
    ("PHST", "history", _read_history),
)


def _read_notices(tags: dict[str, list[Item]], put: Put) -> None:
    """Collect the comments/corrections lines (CIN, RIN, EIN...) in file order."""
    notices = [
        (line, parse_notice(NOTICE_KINDS[tag], value))
        for tag, items in tags.items()
        if tag in NOTICE_KINDS
        for value, line in items
        if value
    ]
    if notices:
        notices.sort(key=lambda pair: pair[0])
        put("notices", tuple(notice for _, notice in notices), notices[0][0])


def _parse_substance(value: str) -> Substance:
    """Parse RN `0 (Amber)` or `EC 3.4.21.- (Serine Endopeptidases)`; `0` means no registry number."""
    number, sep, name = value.partition(" (")
    if not sep:
        return Substance(name=value.strip())
    name = name[:-1] if name.endswith(")") else name
    number = number.strip()
    return Substance(name=name.strip(), registry_number="" if number == "0" else number)


def parse_notice(kind: str, value: str) -> Notice:
    """Parse `Nature. 2023 Apr;616(7958):632. doi: 10.1038/x. PMID: 37081273` into a `Notice`."""
    citation, sep, rest = value.partition("PMID:")
    citation = citation.strip()
    return Notice(
        kind=kind, citation=citation, pmid=normalize_pmid(rest) if sep else "", doi=find_doi(citation)
    )


class _AuthorDraft:
    """An author being collected from FAU/AU/CN and the AD/AUID lines that follow."""

    __slots__ = ("full", "short", "collective", "affiliations", "orcid")

    def __init__(self, full: str = "", short: str = "", collective: str = "") -> None:
        self.full = full
        self.short = short
        self.collective = collective
        self.affiliations: list[str] = []
        self.orcid = ""

    def finish(self) -> Author:
        affiliations = tuple(self.affiliations)
        if self.collective:
            return Author(name=self.collective, affiliations=affiliations, orcid=self.orcid, collective=True)
        family, initials = _split_short_name(self.short) if self.short else ("", "")
        given = ""
        if self.full:
            family, given = _split_full_name(self.full)
            initials = initials or _initials(given)
        # Without FAU (records before 2002) there is no given name: show AU as PubMed does, 'Smith JQ'.
        name = f"{given} {family}" if given else (self.short or family)
        return Author(
            name=name,
            family=family,
            given=given,
            initials=initials,
            affiliations=affiliations,
            orcid=self.orcid,
        )


def _read_authors(people: list[tuple[str, str, int]]) -> tuple[Author, ...]:
    """Pair FAU and AU lines into authors, attaching each AD/AUID to the author before it."""
    drafts: list[_AuthorDraft] = []
    orphan_affiliations: list[str] = []
    for tag, value, _ in people:
        if not value:
            continue
        current = drafts[-1] if drafts else None
        if tag == "FAU":
            drafts.append(_AuthorDraft(full=value))
        elif tag == "AU":
            if current is not None and current.full and not current.short:
                current.short = value
            else:
                drafts.append(_AuthorDraft(short=value))
        elif tag == "CN":
            drafts.append(_AuthorDraft(collective=value))
        elif tag == "AD":
            # Before 2014 a record had one AD, often before the first author: it is the first author's.
            (current.affiliations if current is not None else orphan_affiliations).append(value)
        elif current is not None and value.upper().startswith("ORCID") and not current.orcid:
            current.orcid = normalize_orcid(value)
    if drafts and orphan_affiliations:
        drafts[0].affiliations[:0] = orphan_affiliations
    return tuple(draft.finish() for draft in drafts)


def _split_full_name(full: str) -> tuple[str, str]:
    """Split FAU `Family, Given M` into (family, given)."""
    family, _, given = full.partition(",")
    return family.strip(), given.strip()


def _split_short_name(short: str) -> tuple[str, str]:
    """Split AU `Family GM` into (family, initials); the initials are the last word."""
    family, _, initials = short.rpartition(" ")
    if family and initials.isupper():
        return family.strip(), initials
    return short, ""


def _initials(given: str) -> str:
    return "".join(part[0] for part in given.replace("-", " ").split() if part[0].isalpha()).upper()


def normalize_orcid(value: str) -> str:
    """Return an ORCID in its `0000-0001-2345-678X` form, from a bare, URL or unhyphenated value."""
    match = _ORCID.search(value or "")
    return "-".join(match.groups()).upper() if match else ""


def strip_added_period(title: str) -> str:
    """Drop the period PubMed appends to every title, keeping '?', '!' and a real ellipsis."""
    if title.endswith(".") and not title.endswith(".."):
        return title[:-1].rstrip()
    return title


def history_date(year: str, month: str, day: str, hour: str = "", minute: str = "") -> str:
    """Return an ISO date, with the time only when it is not midnight (XML often omits it)."""
    try:
        y, m, d = int(year), int(month), int(day)
        if not (1 <= m <= 12 and 1 <= d <= 31):
            return ""
        date = f"{y:04d}-{m:02d}-{d:02d}"
        if hour and (int(hour) or int(minute or 0)):
            date += f"T{int(hour):02d}:{int(minute or 0):02d}"
    except ValueError:
        return ""
    return date


def split_abstract(text: str) -> tuple[AbstractSection, ...]:
    """Split a flattened structured abstract into labelled sections; plain text stays one section.

    Conservative, so that ordinary text is never cut: the abstract must start with a label, and a
    single label counts only when it is a usual one (BACKGROUND, OBJECTIVE...).
    """
    text = text.strip()
    if not text:
        return ()
    first = _LEADING_LABEL.match(text)
    if first is None:
        return (AbstractSection(text=text),)
    labels = [(first.group(1), first.end(), 0)]
    for match in _INNER_LABEL.finditer(text, first.end()):
        if _plausible_inner_label(match.group(1)):
            labels.append((match.group(1), match.end(), match.start(1)))
    if len(labels) == 1 and _first_word(first.group(1)) not in _KNOWN_LABEL_WORDS:
        return (AbstractSection(text=text),)
    sections = []
    for index, (label, body_start, _) in enumerate(labels):
        body_end = labels[index + 1][2] if index + 1 < len(labels) else len(text)
        body = text[body_start:body_end].strip()
        if body:
            sections.append(AbstractSection(text=body, label=label))
    return tuple(sections) or (AbstractSection(text=text),)


def _first_word(label: str) -> str:
    return re.split(r"[ ,/(]", label, maxsplit=1)[0]


def _plausible_inner_label(label: str) -> bool:
    """Tell a mid-text label from an acronym that happens to precede a colon (`... NIH: ...`)."""
    if " " in label or "/" in label:
        return True
    word = label.split("(", 1)[0]  # INTERVENTION(S)
    return word in _KNOWN_LABEL_WORDS or (len(word) >= 5 and word.isalpha())
