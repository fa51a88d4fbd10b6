"""Read RIS (Zotero, EndNote, databases) and, leniently, Web of Science tagged files into records.

RIS is line based: `TY  - JOUR` starts a record, `ER  - ` ends it, `XX  - value` sets a tag. Real
files add a BOM, junk between records, continuation lines (for text: more of the same value; for
EndNote's KW/SN/UR/AU: one more value each) and `ER` at the start of a continuation line, which is
not a tag because it lacks the `  - ` separator. Web of Science exports are often saved as `.ris` but
use `XX value` lines: they are recognised by their `FN`/`PT` header and read with their own tags.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from generator.errors import Problem
from generator.model import Author, PubDate, Record, SourceRef
from generator.readers.common import ReadResult, find_doi, month_number, normalize_doi, normalize_pmid
from generator.readers.csl_json import (
    clean_pages,
    clean_text,
    collective,
    doi_from_url,
    find_issns,
    ids_in_note,
    person,
    plain_abstract,
    put,
)

FORMAT = "ris"
_RIS_LINE = re.compile(r"([A-Z][A-Z0-9]) {1,2}-(?: (.*))?$")
_WOS_LINE = re.compile(r"([A-Z][A-Z0-9])(?: (.*))?$")
_WOS_HEADER = re.compile(r"\s*(FN |VR |PT [A-Z]\b)")
# Continuation lines of these tags are further values (EndNote writes one keyword per line).
_LIST_TAGS = frozenset({"KW", "SN", "UR", "AU", "A1", "N1", "M2", "AN", "L2"})
_INITIALS = re.compile(r"(?:[A-Z]\.?-?){1,4}")
# Tags where Zotero, EndNote and databases leave `PMID: 123` (Zotero's Extra) or an accession number.
_NOTE_TAGS = ("M2", "N1", "AN", "C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8", "M1", "U1", "U2", "ID")


@dataclass
class _Tagged:
    """One record as `tag -> values`, with the line each tag first appears on."""

    line: int
    values: dict[str, list[str]] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)
    last: str = ""

    def add(self, tag: str, value: str, line: int) -> None:
        self.values.setdefault(tag, []).append(value)
        self.lines.setdefault(tag, line)
        self.last = tag

    def extend(self, text: str) -> None:
        """Add a continuation line to the last tag: a new value for list tags, else more text."""
        values = self.values[self.last]
        if self.last in _LIST_TAGS or not values[-1]:
            values.append(text)
        else:
            values[-1] = f"{values[-1]} {text}"

    def first(self, *tags: str) -> str:
        for tag in tags:
            for value in self.values.get(tag, ()):
                if clean_text(value):
                    return clean_text(value)
        return ""

    def all(self, *tags: str) -> list[str]:
        return [clean_text(v) for tag in tags for v in self.values.get(tag, ()) if clean_text(v)]

    def line_of(self, *tags: str) -> int | None:
        return next((self.lines[t] for t in tags if t in self.lines), None)


def read(text: str, path: str) -> ReadResult:
    """Read every record of a RIS file; a Web of Science file is recognised and read as such."""
    lines = text.lstrip("\ufeff").splitlines()
    if _looks_like_wos(lines):
        return _read_wos(lines, path)
    result = ReadResult()
    tagged = _split_ris(lines, path, result.problems)
    for record in tagged:
        fields, field_lines = _ris_fields(record)
        if fields:
            result.records.append(Record(fields=fields, source=SourceRef(path, record.line),
                                         format=FORMAT, field_lines=field_lines))
        else:
            result.problems.append(Problem(path=path, line=record.line, severity="warning",
                                           message="RIS record without any field this site uses was skipped"))
    if not tagged and text.strip():
        result.problems.append(Problem(path=path, line=1, message="no RIS record found",
                                       hint="RIS records start with a line `TY  - JOUR` and end with `ER  - `"))
    return result


def _split_ris(lines: list[str], path: str, problems: list[Problem]) -> list[_Tagged]:
    """Group lines into records; lines outside TY..ER are junk (export headers) and are skipped."""
    records: list[_Tagged] = []
    current: _Tagged | None = None
    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip()
        match = _RIS_LINE.match(line.lstrip("\ufeff"))
        tag, value = (match.group(1), (match.group(2) or "").strip()) if match else ("", "")
        if tag == "TY":
            if current is not None:
                problems.append(_unterminated(path, current))
                records.append(current)
            current = _Tagged(line=number)
            current.add(tag, value, number)
        elif current is None:
            continue
        elif tag == "ER":
            records.append(current)
            current = None
        elif tag:
            current.add(tag, value, number)
        elif line.strip():
            current.extend(line.strip())
    if current is not None:
        problems.append(_unterminated(path, current))
        records.append(current)
    return records


def _unterminated(path: str, record: _Tagged) -> Problem:
    return Problem(path=path, line=record.line, severity="warning",
                   message="RIS record has no `ER  - ` line; it was read up to the next record",
                   hint="each record should end with `ER  - `")


def _ris_fields(record: _Tagged) -> tuple[dict[str, Any], dict[str, int]]:
    """Map RIS tags (Zotero's export names plus the legacy ones it imports) onto `Article` fields."""
    fields: dict[str, Any] = {}
    put(fields, "title", record.first("TI", "T1", "ST"))  # ST (short title) when it is all there is
    put(fields, "authors", tuple(ris_author(a) for a in record.all("AU", "A1")))
    put(fields, "journal", record.first("T2", "JF", "JO"))
    put(fields, "journal_abbrev", record.first("J2", "JA", "J1"))
    put(fields, "published", _best_date([ris_date(v) for v in record.all("DA", "PY", "Y1")]))
    put(fields, "volume", record.first("VL", "VO"))
    put(fields, "issue", record.first("IS"))
    put(fields, "pages", _pages(record.first("SP"), record.first("EP")))
    put(fields, "issn", find_issns(*record.all("SN")))
    _ris_identifiers(fields, record)
    urls = [u for value in record.all("UR") for u in re.split(r"\s*;\s*", value) if u]
    put(fields, "url", urls[0] if urls else "")
    put(fields, "abstract", plain_abstract(record.first("AB", "N2")))
    put(fields, "keywords", tuple(dict.fromkeys(record.all("KW"))))
    put(fields, "language", record.first("LA"))
    return fields, _field_lines(fields, record)


def _ris_identifiers(fields: dict[str, Any], record: _Tagged) -> None:
    """DOI from DO (or legacy M3 when it is one), PMID/PMCID from note-like tags, DOI URLs last."""
    put(fields, "doi", normalize_doi(find_doi(record.first("DO")) or record.first("DO")))
    put(fields, "doi", find_doi(record.first("M3")))
    for value in record.all(*_NOTE_TAGS):
        for name, found in ids_in_note(value).items():
            put(fields, name, found)
    for url in record.all("UR", "L2"):
        put(fields, "doi", doi_from_url(url))


_FIELD_TAGS = {
    "title": ("TI", "T1", "ST"), "authors": ("AU", "A1"), "journal": ("T2", "JF", "JO"),
    "journal_abbrev": ("J2", "JA", "J1"), "published": ("DA", "PY", "Y1"), "volume": ("VL", "VO"),
    "issue": ("IS",), "pages": ("SP",), "issn": ("SN",), "doi": ("DO", "M3", "UR"),
    "url": ("UR",), "abstract": ("AB", "N2"), "keywords": ("KW",), "language": ("LA",),
    "pmid": _NOTE_TAGS, "pmcid": _NOTE_TAGS,
}


def _field_lines(
    fields: dict[str, Any], record: _Tagged, tags: dict[str, tuple[str, ...]] = _FIELD_TAGS
) -> dict[str, int]:
    lines = {name: record.line_of(*tags.get(name, ())) for name in fields}
    return {name: line for name, line in lines.items() if line}


def ris_author(value: str) -> Author:
    """Parse `Last, First` (also `Last,First`); `Fanning E.` (Embase) or a group name without comma."""
    if "," in value:
        family, _, given = value.partition(",")
        return person(family, given)
    words = value.split()
    if len(words) > 1 and _INITIALS.fullmatch(words[-1]):
        return person(" ".join(words[:-1]), words[-1])
    return collective(value)


def ris_date(value: str) -> PubDate:
    """Parse `2019/03/05/other`, `2019///`, `1948/07//`, `2014//`, `2024` and ISO `2019-03-05`."""
    parts = re.split(r"[/-]", clean_text(value))
    if not parts or not re.fullmatch(r"\d{4}", parts[0]):
        match = re.search(r"\b(1[6-9]\d\d|2\d\d\d)\b", value)
        return PubDate(year=int(match.group(1))) if match else PubDate()
    month = month_number(parts[1]) if len(parts) > 1 and parts[1] else None
    day = None
    if month and len(parts) > 2 and parts[2].isdigit() and 1 <= int(parts[2]) <= 31:
        day = int(parts[2])
    return PubDate(year=int(parts[0]), month=month, day=day)


def _best_date(dates: list[PubDate]) -> PubDate:
    """Zotero writes the year in PY and the full date in DA: take the most precise one."""
    known = [d for d in dates if d.year]
    if not known:
        return PubDate()
    return max(known, key=lambda d: (d.month is not None, d.day is not None))


def _pages(start: str, end: str) -> str:
    if start and end and not re.search(r"[-\u2013]", start):
        return clean_pages(f"{start}-{end}")
    return clean_pages(start or end)


# ---------------------------------------------------------------------------------------------
# Web of Science tagged format (`FN Clarivate Analytics Web of Science`, `PT J`, ..., `ER`, `EF`).

_WOS_LIST_TAGS = frozenset({"AU", "AF", "CR", "C1", "EM", "RI", "OI"})
_WOS_FIELD_TAGS = {
    "title": ("TI",), "authors": ("AF", "AU"), "journal": ("SO",), "journal_abbrev": ("JI", "J9"),
    "published": ("PD", "PY"), "volume": ("VL",), "issue": ("IS",), "pages": ("BP", "AR"),
    "issn": ("SN", "EI"), "doi": ("DI",), "pmid": ("PM",), "abstract": ("AB",), "keywords": ("DE", "ID"),
    "language": ("LA",),
}


def _looks_like_wos(lines: list[str]) -> bool:
    head = next((line for line in lines if line.strip()), "")
    return bool(_WOS_HEADER.match(head)) and not any(_RIS_LINE.match(line) for line in lines[:50])


def _read_wos(lines: list[str], path: str) -> ReadResult:
    """Read WoS records: `XX value` lines, three-space continuation lines, `ER` ends a record."""
    result = ReadResult()
    current: _Tagged | None = None
    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip()
        if line.startswith("   ") and current is not None and current.last:
            _wos_continue(current, line.strip())
            continue
        match = _WOS_LINE.match(line)
        if not match:
            continue
        tag, value = match.group(1), (match.group(2) or "").strip()
        if tag == "PT":
            current = _Tagged(line=number)
        if current is None or tag in ("FN", "VR", "EF"):
            continue
        if tag == "ER":
            _add_wos_record(result, current, path)
            current = None
            continue
        current.add(tag, value, number)
    if current is not None:
        _add_wos_record(result, current, path)
    return result


def _wos_continue(record: _Tagged, text: str) -> None:
    values = record.values[record.last]
    if record.last in _WOS_LIST_TAGS:
        values.append(text)
    else:
        values[-1] = f"{values[-1]} {text}"


def _add_wos_record(result: ReadResult, record: _Tagged, path: str) -> None:
    fields = _wos_fields(record)
    if fields:
        # Reported as "ris": the records came through the RIS reader, whatever the tool called them.
        result.records.append(Record(fields=fields, source=SourceRef(path, record.line), format=FORMAT,
                                     field_lines=_field_lines(fields, record, _WOS_FIELD_TAGS)))


def _wos_fields(record: _Tagged) -> dict[str, Any]:
    """Map WoS tags: AF full names (AU has initials), SO journal, JI abbreviation, PD+PY date."""
    fields: dict[str, Any] = {}
    put(fields, "title", record.first("TI"))
    put(fields, "authors", tuple(ris_author(a) for a in (record.all("AF") or record.all("AU"))))
    put(fields, "journal", record.first("SO"))
    put(fields, "journal_abbrev", record.first("JI", "J9"))
    put(fields, "published", _wos_date(record.first("PY"), record.first("PD")))
    put(fields, "volume", record.first("VL"))
    put(fields, "issue", record.first("IS"))
    put(fields, "pages", _pages(record.first("BP"), record.first("EP")) or record.first("AR"))
    put(fields, "issn", find_issns(*record.all("SN", "EI")))
    put(fields, "doi", normalize_doi(record.first("DI")))
    put(fields, "pmid", normalize_pmid(record.first("PM")))
    put(fields, "abstract", plain_abstract(record.first("AB")))
    keywords = [k.strip() for value in record.all("DE", "ID") for k in value.split(";") if k.strip()]
    put(fields, "keywords", tuple(dict.fromkeys(keywords)))
    put(fields, "language", record.first("LA"))
    return fields


def _wos_date(year: str, published: str) -> PubDate:
    """Combine `PY 2004` with `PD JUN 8` (or `PD 2004`, `PD SPR`)."""
    if not re.fullmatch(r"\d{4}", year):
        return PubDate()
    words = published.split()
    month = month_number(words[0]) if words else None
    day = int(words[1]) if month and len(words) > 1 and words[1].isdigit() and 1 <= int(words[1]) <= 31 else None
    return PubDate(year=int(year), month=month, day=day)
