"""Read CSL-JSON (the citeproc/Zotero/Better CSL JSON interchange format) into records.

The file is an array of items. Items are decoded one at a time with `JSONDecoder.raw_decode`, so each
record knows the line it starts on and a syntax error late in the file still leaves the items before
it. A JSON file that is not CSL-JSON at all raises `ReaderError` saying what was expected.

This module also holds the small helpers the RIS and BibTeX readers share (authors, keywords,
pages, ISSNs, identifiers in notes): CSL's `family`/`given`/`literal` name model is the one the other
formats are mapped onto.
"""

from __future__ import annotations

import json
import re
from typing import Any

from generator.errors import Problem, ReaderError
from generator.model import AbstractSection, Author, PubDate, Record, SourceRef
from generator.readers.common import (
    ReadResult,
    find_doi,
    month_number,
    normalize_doi,
    normalize_pmid,
    parse_pubmed_date,
)

FORMAT = "csl_json"
EXPECTED = "a CSL-JSON array of items like [{\"type\": \"article-journal\", \"title\": ...}]"
# Keys that only CSL items have; a JSON object with none of them is not a CSL item.
CSL_KEYS = frozenset(
    {"type", "title", "author", "issued", "container-title", "DOI", "PMID", "PMCID", "URL", "page",
     "volume", "issue", "abstract", "ISSN", "editor", "citation-key"}
)

# ---------------------------------------------------------------------------------------------
# Helpers shared by the citation-manager readers (RIS, BibTeX, CSL-JSON).

# Not inside a hyphenated ISBN such as 0-7695-2191-6, which RIS SN holds for books.
_ISSN = re.compile(r"(?<![\w-])(\d{4})-?(\d{3}[\dXx])(?![\w-])")
_PMID_NOTE = re.compile(r"\bPMID\s*:?\s*(\d+)", re.IGNORECASE)
_PMCID_NOTE = re.compile(r"\bPMCID\s*:?\s*(PMC\s*\d+|\d+)", re.IGNORECASE)
_DOI_NOTE = re.compile(r"\bDOI\s*:\s*(10\.\S+)", re.IGNORECASE)
_INITIAL_SPLIT = re.compile(r"[\s.\-]+")
_DASHES = re.compile(r"\s*(?:-+|[\u2010-\u2015\u2212])\s*")
# CSL's rich-text markup in titles: <i>, <b>, <sup>, <sub>, <span style=...>, <span class="nocase">.
_TAG = re.compile(r"</?(?:i|b|sup|sub|span)(?:\s[^<>]*)?>", re.IGNORECASE)


def clean_text(value: object) -> str:
    """Return a scalar as one line of text with runs of whitespace collapsed ('' for None)."""
    if value is None or isinstance(value, bool):
        return ""
    return " ".join(str(value).split())


def person(family: str, given: str = "", suffix: str = "") -> Author:
    """Build a person `Author` with MEDLINE-style initials ('Alexis H.' -> 'AH')."""
    family, given, suffix = clean_text(family), clean_text(given), clean_text(suffix)
    if not family:
        return collective(given)
    initials = "".join(_initials(part) for part in _INITIAL_SPLIT.split(given))
    name = " ".join(part for part in (given, family, suffix) if part)
    return Author(name=name, family=family, given=given, initials=initials)


def _initials(part: str) -> str:
    """'Alexis' -> 'A'; an initials group as WoS and MEDLINE write it ('PS', 'JQ') stays whole."""
    if not part or not part[0].isalpha():
        return ""
    if len(part) <= 3 and part.isupper() and part.isalpha():
        return part
    return part[0].upper()


def collective(name: str) -> Author:
    """Build a group author such as 'World Health Organization'."""
    name = clean_text(name)
    return Author(name=name, collective=True)


def split_keywords(text: str) -> tuple[str, ...]:
    """Split a keyword list so MeSH headings like 'Immunotherapy, Adoptive' survive.

    On ';' when there is one; else Better BibTeX's bare ',' (`A,Immunotherapy, Adoptive,B`) when a
    comma is followed by a non-space somewhere, keeping ', ' inside terms; else every ','.
    """
    if ";" in text:
        parts = text.split(";")
    elif re.search(r",\S", text):
        parts = re.split(r",(?=\S)", text)
    else:
        parts = text.split(",")
    seen: dict[str, None] = {}
    for part in parts:
        word = clean_text(part)
        if word:
            seen.setdefault(word, None)
    return tuple(seen)


def clean_pages(text: str) -> str:
    """Normalise a page range to PubMed's hyphen: '1608--1617', '429–452' -> '1608-1617'."""
    return _DASHES.sub("-", clean_text(text)).strip("-")


def find_issns(*texts: str) -> tuple[str, ...]:
    """Return the ISSNs in some text ('2325-9671 (electronic)', '0959-8138, 1756-1833')."""
    found: dict[str, None] = {}
    for text in texts:
        for match in _ISSN.finditer(text or ""):
            found.setdefault(f"{match.group(1)}-{match.group(2).upper()}", None)
    return tuple(found)


def normalize_pmcid(value: str) -> str:
    """Return 'PMC123' for 'PMC123', 'pmc 123' or '123'; '' when there are no digits."""
    match = re.search(r"\d+", value or "")
    return f"PMC{match.group(0)}" if match else ""


def ids_in_note(text: str) -> dict[str, str]:
    """Find `PMID: 123`, `PMCID: PMC456` and `DOI: 10.x/y` lines the way Zotero keeps them in Extra."""
    found: dict[str, str] = {}
    if match := _PMID_NOTE.search(text or ""):
        found["pmid"] = normalize_pmid(match.group(1))
    if match := _PMCID_NOTE.search(text or ""):
        found["pmcid"] = normalize_pmcid(match.group(1))
    if match := _DOI_NOTE.search(text or ""):
        found["doi"] = normalize_doi(find_doi(match.group(1)))
    return {key: value for key, value in found.items() if value}


def doi_from_url(url: str) -> str:
    """Return the DOI of a doi.org (or publisher `/doi/`) URL; '' for other URLs."""
    if re.search(r"doi\.org/|/doi/(abs/|full/|pdf/)?10\.", url or "", re.IGNORECASE):
        return find_doi(url)
    return ""


def plain_abstract(text: str) -> tuple[AbstractSection, ...]:
    """Return a plain abstract as the one-section tuple the model expects (() when empty)."""
    text = clean_text(text)
    return (AbstractSection(text=text),) if text else ()


def put(fields: dict[str, Any], name: str, value: Any) -> None:
    """Set a field only when the source gave a value, and never overwrite an earlier, better one."""
    if value and name not in fields:
        fields[name] = value


# ---------------------------------------------------------------------------------------------
# CSL-JSON.


def read(text: str, path: str) -> ReadResult:
    """Read a CSL-JSON file: an array of items (a single item object or `{"items": [...]}` too)."""
    text = text.lstrip("\ufeff")
    result = ReadResult()
    items = _items_with_lines(text, path, result.problems)
    recognised = 0
    for line, item in items:
        if not isinstance(item, dict) or not CSL_KEYS.intersection(item):
            result.problems.append(
                Problem(path=path, line=line, message="this JSON value is not a CSL-JSON item",
                        hint="each item is an object with keys like type, title, author, issued")
            )
            continue
        recognised += 1
        fields = item_fields(item)
        if fields:
            result.records.append(
                Record(fields=fields, source=SourceRef(path, line), format=FORMAT)
            )
    if items and not recognised:
        raise ReaderError(path, f"not CSL-JSON: expected {EXPECTED}", line=items[0][0])
    return result


def _items_with_lines(text: str, path: str, problems: list[Problem]) -> list[tuple[int, Any]]:
    """Return `(line, item)` for each element of the top-level array (or the one object)."""
    start = _skip_space(text, 0)
    if start >= len(text):
        raise ReaderError(path, f"empty file: expected {EXPECTED}")
    if text[start] == "{":
        return _single_object(text, path, start)
    if text[start] != "[":
        raise ReaderError(path, f"not CSL-JSON: expected {EXPECTED}", line=_line_at(text, start))
    return _array_items(text, path, start + 1, problems)


def _single_object(text: str, path: str, start: int) -> list[tuple[int, Any]]:
    """Accept `{"items": [...]}` (citeproc-js input) or one bare item."""
    value = _load(text, path)
    if isinstance(value, dict) and isinstance(value.get("items"), list):
        return [(_line_at(text, start), item) for item in value["items"]]
    if isinstance(value, dict) and CSL_KEYS.intersection(value):
        return [(_line_at(text, start), value)]
    raise ReaderError(path, f"not CSL-JSON: found a JSON object, expected {EXPECTED}",
                      line=_line_at(text, start))


def _load(text: str, path: str) -> Any:
    """Parse a whole JSON document, turning syntax errors into `ReaderError`."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ReaderError(path, f"invalid JSON: {error.msg}", line=error.lineno,
                          hint=f"expected {EXPECTED}") from None
    except (RecursionError, ValueError) as error:
        raise ReaderError(path, f"invalid JSON: {error}") from None


def _array_items(text: str, path: str, index: int, problems: list[Problem]) -> list[tuple[int, Any]]:
    """Decode array elements one by one; stop with a problem at the first syntax error."""
    decoder = json.JSONDecoder()
    items: list[tuple[int, Any]] = []
    while True:
        index = _skip_space(text, index)
        if index < len(text) and text[index] == "]" and not items:
            return items
        try:
            value, end = decoder.raw_decode(text, index)
        except json.JSONDecodeError as error:
            problems.append(_syntax_problem(path, error.msg, error.lineno, bool(items)))
            return _or_raise(items, problems, path)
        except (RecursionError, ValueError) as error:
            problems.append(_syntax_problem(path, str(error), _line_at(text, index), bool(items)))
            return _or_raise(items, problems, path)
        items.append((_line_at(text, index), value))
        index = _skip_space(text, end)
        if index < len(text) and text[index] == ",":
            index += 1
            continue
        if index < len(text) and text[index] == "]":
            if text[_skip_space(text, index + 1):].strip():
                problems.append(Problem(path=path, line=_line_at(text, index),
                                        message="text after the end of the CSL-JSON array was ignored"))
            return items
        problems.append(_syntax_problem(path, "expected ',' or ']' after an item",
                                        _line_at(text, index), True))
        return items


def _or_raise(items: list[tuple[int, Any]], problems: list[Problem], path: str) -> list[tuple[int, Any]]:
    """A file whose very first item is broken is not worth a partial result: raise instead."""
    if items:
        return items
    problem = problems.pop()
    raise ReaderError(path, problem.message, line=problem.line, hint=problem.hint)


def _syntax_problem(path: str, message: str, line: int | None, after_items: bool) -> Problem:
    """Describe a JSON syntax error; items before it were kept."""
    hint = "the items before this line were read" if after_items else f"expected {EXPECTED}"
    return Problem(path=path, line=line, message=f"invalid JSON: {message}", hint=hint)


def _skip_space(text: str, index: int) -> int:
    while index < len(text) and text[index] in " \t\r\n":
        index += 1
    return index


def _line_at(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def item_fields(item: dict[str, Any]) -> dict[str, Any]:
    """Map one CSL item onto `Article` field names (only the fields it has)."""
    fields: dict[str, Any] = {}
    _title(fields, item.get("title"))
    put(fields, "authors", _authors(item.get("author")))
    put(fields, "journal", _scalar(item.get("container-title")))
    put(fields, "journal_abbrev",
        _scalar(item.get("container-title-short")) or _scalar(item.get("journalAbbreviation")))
    put(fields, "published", csl_date(item.get("issued")))
    put(fields, "volume", _scalar(item.get("volume")))
    put(fields, "issue", _scalar(item.get("issue")))
    put(fields, "pages", clean_pages(_scalar(item.get("page"))))
    _identifiers(fields, item)
    put(fields, "issn", find_issns(_scalar(item.get("ISSN"))))
    put(fields, "url", _scalar(item.get("URL")))
    put(fields, "abstract", plain_abstract(_scalar(item.get("abstract"))))
    put(fields, "keywords", split_keywords(_scalar(item.get("keyword"))))
    put(fields, "language", _scalar(item.get("language")))
    return fields


def _scalar(value: Any) -> str:
    """Return a string or number as text; other JSON values (lists, objects) give ''."""
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return clean_text(value)
    return ""


def _title(fields: dict[str, Any], value: Any) -> None:
    """CSL titles may carry rich-text tags (<i>, <sup>...): keep them as `title_html`."""
    title = _scalar(value)
    if _TAG.search(title):
        put(fields, "title_html", title)
        title = clean_text(_TAG.sub("", title))
    put(fields, "title", title)


def _identifiers(fields: dict[str, Any], item: dict[str, Any]) -> None:
    """DOI/PMID/PMCID from their own keys, then from `note` (Zotero's Extra), then the URL."""
    doi = normalize_doi(_scalar(item.get("DOI")))
    url_doi = doi_from_url(_scalar(item.get("URL")))
    # Better BibTeX may export a shortDOI (`10/fqd6hj`); the full DOI in the URL matches other sources.
    if doi and not doi.startswith("10.") and url_doi:
        doi = url_doi
    put(fields, "doi", doi)
    put(fields, "pmid", normalize_pmid(_scalar(item.get("PMID"))))
    put(fields, "pmcid", normalize_pmcid(_scalar(item.get("PMCID"))))
    for name, value in ids_in_note(_scalar(item.get("note"))).items():
        put(fields, name, value)
    put(fields, "doi", url_doi)


def _authors(value: Any) -> tuple[Author, ...]:
    """Map CSL names ({family, given, particles, suffix} or {literal}) to `Author`s."""
    if not isinstance(value, list):
        return ()
    authors = []
    for name in value:
        if not isinstance(name, dict):
            continue
        literal = _scalar(name.get("literal"))
        family = " ".join(
            part for part in (_scalar(name.get("non-dropping-particle")), _scalar(name.get("family"))) if part
        )
        given = " ".join(
            part for part in (_scalar(name.get("given")), _scalar(name.get("dropping-particle"))) if part
        )
        if family:
            authors.append(person(family, given, _scalar(name.get("suffix"))))
        elif literal or given:
            authors.append(collective(literal or given))
    return tuple(authors)


def csl_date(value: Any) -> PubDate:
    """Read a CSL date: `date-parts` (ints or digit strings), else `raw`/`literal` text."""
    if not isinstance(value, dict):
        return PubDate(raw=_scalar(value)) if _scalar(value) else PubDate()
    parts = value.get("date-parts")
    if isinstance(parts, list) and parts and isinstance(parts[0], list) and parts[0]:
        date = _date_from_parts(parts[0])
        if date.year:
            return date
    for key in ("raw", "literal"):
        if text := _scalar(value.get(key)):
            return parse_pubmed_date(text)
    return PubDate()


def _date_from_parts(parts: list[Any]) -> PubDate:
    """Turn `[2016, 6, 1]` or `["2004"]` into a `PubDate`, dropping parts that are not numbers."""
    numbers: list[int] = []
    for part in parts[:3]:
        text = _scalar(part)
        if not re.fullmatch(r"\d{1,4}", text):
            break
        numbers.append(int(text))
    if not numbers or not 1000 <= numbers[0] <= 2999:
        return PubDate()
    month = numbers[1] if len(numbers) > 1 and month_number(str(numbers[1])) else None
    day = numbers[2] if month and len(numbers) > 2 and 1 <= numbers[2] <= 31 else None
    return PubDate(year=numbers[0], month=month, day=day)
