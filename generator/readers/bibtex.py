"""Read BibTeX and BibLaTeX (Zotero, Better BibTeX, JabRef...) into records.

Choices, and why:
- `bibtexparser` v2 splits the file into blocks: it is the maintained standard parser, keeps line
  numbers, and isolates a broken entry as a failed block so the rest of the file is still read.
- It runs with an empty parse stack. Its default middlewares strip the braces of field values but
  not of entries it flags (duplicate keys), and leave `a # b` concatenations as raw text; doing the
  small value resolution here treats every entry the same way.
- LaTeX is turned into Unicode with `pylatexenc` (a bibtexparser dependency, the library its
  `LatexDecodingMiddleware` uses) with the same `\\url` rule, but only for values that hold a LaTeX
  command or math. Most values only carry protective braces, `\\%` or `--`; a table handles those,
  which keeps a 3.5 MB library to about a second instead of several.
- Names are split with bibtexparser's BibTeX name rules on the raw text *before* decoding, so a
  braced `{World Health Organization}` stays one collective author.
- An entry bibtexparser cannot parse (typically unbalanced braces in one field, as Better BibTeX
  produced in its issue #1296) is read again field by field, one field per line, with a warning
  naming the line of the broken field.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from functools import lru_cache
from typing import Any

import bibtexparser
from bibtexparser.middlewares.names import parse_single_name_into_parts, split_multiple_persons_names
from bibtexparser.model import DuplicateBlockKeyBlock, DuplicateFieldKeyBlock, Entry, ParsingFailedBlock
from pylatexenc.latex2text import LatexNodes2Text, MacroTextSpec, get_default_latex_context_db

from generator.errors import Problem, ReaderError
from generator.model import Author, PubDate, Record, SourceRef
from generator.readers.common import ReadResult, find_doi, month_number, normalize_doi, normalize_pmid
from generator.readers.csl_json import (
    clean_pages,
    clean_text,
    collective,
    doi_from_url,
    find_issns,
    ids_in_note,
    normalize_pmcid,
    person,
    plain_abstract,
    put,
    split_keywords,
)

FORMAT = "bibtex"
# Problems are reported as `Problem`s; keep bibtexparser's own warnings off stderr unless the
# application configures logging itself.
logging.getLogger("bibtexparser").addHandler(logging.NullHandler())

_SIMPLE = {
    "\\%": "%", "\\&": "&", "\\#": "#", "\\_": "_", "\\$": "$", "\\{": "{", "\\}": "}",
    "---": "\u2014", "--": "\u2013", "``": "\u201c", "''": "\u201d", "~": " ", "{": "", "}": "",
}
_SIMPLE_TOKEN = re.compile(r"\\[%&#_${}]|---|--|``|''|~|[{}]")
_NEEDS_LATEX = re.compile(r"\\(?![%&#_${}])|(?<!\\)\$")
_BARE_SPECIAL = re.compile(r"(?<!\\)([%&])")
# The accents and letters real .bib files are full of (`{\"o}`, `\'{\i}`, `\v{s}`, `{\ss}`): turned into
# Unicode here, so pylatexenc (far slower) only sees values with other commands or math.
_ACCENTS = {'"': "\u0308", "'": "\u0301", "`": "\u0300", "^": "\u0302", "~": "\u0303", "=": "\u0304",
            ".": "\u0307", "u": "\u0306", "v": "\u030c", "H": "\u030b", "c": "\u0327", "k": "\u0328",
            "r": "\u030a"}
_ACCENT = re.compile(
    r"""(?<!\\)\\(?:(["'`^~=.])\s*(?:\{\s*(\\[ij]|[A-Za-z])\s*\}|(\\[ij](?![A-Za-z])|[A-Za-z]))"""
    r"""|([uvHckr])(?:\s*\{\s*(\\[ij]|[A-Za-z])\s*\}|\s+([A-Za-z])))"""
)
_LETTERS = {"ss": "ß", "o": "ø", "O": "Ø", "ae": "æ", "AE": "Æ", "oe": "œ", "OE": "Œ", "aa": "å", "AA": "Å",
            "l": "ł", "L": "Ł", "i": "ı", "j": "ȷ", "textendash": "\u2013", "textemdash": "\u2014",
            "ldots": "\u2026", "dots": "\u2026"}
_LETTER = re.compile(r"(?<!\\)\\(" + "|".join(sorted(_LETTERS, key=len, reverse=True)) + r")(?![A-Za-z])(?:\{\}|\s)?")
_NOTE_FIELDS = ("note", "extra", "annote", "annotation", "howpublished")
_FIELD_START = re.compile(r"\n(?=[ \t]*[A-Za-z][\w:.+-]*[ \t]*=)")
_HEADER = re.compile(r"\s*@\s*(\w+)\s*[{(]\s*([^,\s]*)\s*,?")
_FIELD = re.compile(r"\s*([A-Za-z][\w:.+-]*)\s*=\s*(.*)", re.DOTALL)


def read(text: str, path: str) -> ReadResult:
    """Read every entry of a .bib file, reporting broken ones and going on with the rest."""
    try:
        library = bibtexparser.parse_string(text.lstrip("\ufeff"), parse_stack=[])
    except Exception as error:  # a parser bug must not escape as anything but a ReaderError
        raise ReaderError(path, f"could not parse BibTeX: {error}",
                          hint="check that the file is BibTeX (@article{key, ...})") from None
    strings = _strings(library)
    result = ReadResult()
    for block in library.blocks:
        if isinstance(block, Entry):
            _add_entry(result, block, strings, path)
        elif isinstance(block, ParsingFailedBlock):
            _add_failed(result, block, strings, path)
    return result


def _strings(library: Any) -> dict[str, str]:
    """Resolve `@string{name = value}` macros, in file order (later ones may use earlier ones)."""
    strings: dict[str, str] = {}
    for block in library.strings:
        if isinstance(block.key, str) and isinstance(block.value, str):
            strings[block.key.lower()] = resolve_value(block.value, strings)
    return strings


def _add_entry(result: ReadResult, entry: Entry, strings: dict[str, str], path: str) -> None:
    raw: dict[str, tuple[str, int | None]] = {}
    for item in entry.fields:
        key = str(item.key).lower()
        if key not in raw and isinstance(item.value, str):
            line = item.start_line + 1 if isinstance(item.start_line, int) else None
            raw[key] = (resolve_value(item.value, strings), line)
    line = entry.start_line + 1 if isinstance(entry.start_line, int) else None
    _add_record(result, raw, line, path, str(entry.key))


def _add_record(result: ReadResult, raw: dict[str, tuple[str, int | None]], line: int | None,
                path: str, key: str) -> None:
    values = {name: value for name, (value, _) in raw.items()}
    fields = entry_fields(values)
    if not fields:
        result.problems.append(Problem(path=path, line=line, severity="warning",
                                       message=f"BibTeX entry '{key}' has no field this site uses"))
        return
    field_lines = {name: where for name in fields if (where := _line_of(name, raw))}
    if verbatim(values.get("pmid", "")) and not normalize_pmid(verbatim(values["pmid"])):
        result.problems.append(Problem(
            path=path, line=raw["pmid"][1] or line, severity="warning",
            message=f"BibTeX entry '{key}': pmid = {{{verbatim(values['pmid'])}}} is not a PubMed ID",
            hint="a PMID is a number such as 29518074"))
    result.records.append(Record(fields=fields, source=SourceRef(path, line), format=FORMAT,
                                 field_lines=field_lines))


_SOURCE_FIELDS = {
    "title": ("title",), "authors": ("author",), "journal": ("journal", "journaltitle"),
    "journal_abbrev": ("shortjournal", "journalabbrev"), "published": ("date", "year"),
    "volume": ("volume",), "issue": ("number", "issue"), "pages": ("pages",), "issn": ("issn",),
    "doi": ("doi", "url") + _NOTE_FIELDS, "url": ("url",), "abstract": ("abstract",), "keywords": ("keywords",),
    "language": ("language", "langid"), "pmid": ("pmid", "eprint") + _NOTE_FIELDS,
    "pmcid": ("pmcid",) + _NOTE_FIELDS,
}


def _line_of(name: str, raw: dict[str, tuple[str, int | None]]) -> int | None:
    return next((raw[k][1] for k in _SOURCE_FIELDS.get(name, ()) if k in raw and raw[k][1]), None)


def _add_failed(result: ReadResult, block: ParsingFailedBlock, strings: dict[str, str], path: str) -> None:
    """Duplicate keys are read with a warning; unparsable entries are read again line by line."""
    line = block.start_line + 1 if isinstance(block.start_line, int) else None
    inner = block.ignore_error_block
    if isinstance(inner, Entry):
        result.problems.append(Problem(path=path, line=line, message=_duplicate_message(block, inner),
                                       severity="warning"))
        _add_entry(result, inner, strings, path)
        return
    raw_text = block.raw if isinstance(block.raw, str) else ""
    header = _HEADER.match(raw_text)
    if not header or header.group(1).lower() in ("comment", "preamble", "string"):
        if raw_text.strip():
            result.problems.append(_failed_problem(path, line, block, "could not read this BibTeX block"))
        return
    raw = {k: v for k, v in recover_fields(raw_text[header.end():], line or 1).items() if v[0]}
    if not raw:
        result.problems.append(_failed_problem(path, line, block, "could not read this BibTeX entry"))
        return
    bad = next(((k, v[1]) for k, v in raw.items() if _brace_balance(v[0])), None)
    detail = f"unbalanced braces in field '{bad[0]}'" if bad else _first_line(block.error)
    result.problems.append(Problem(
        path=path, line=bad[1] if bad else line, severity="warning",
        message=f"BibTeX entry '{header.group(2)}': {detail}; it was read one field per line",
        hint="check the braces { } of this field" if bad else "check the syntax of this entry"))
    resolved = {k: (resolve_value(v, strings), n) for k, (v, n) in raw.items()}
    _add_record(result, resolved, line, path, header.group(2))


def _duplicate_message(block: ParsingFailedBlock, entry: Entry) -> str:
    if isinstance(block, DuplicateBlockKeyBlock):
        return f"duplicate citation key '{entry.key}'; the entry was read anyway"
    if isinstance(block, DuplicateFieldKeyBlock):
        names = ", ".join(sorted(block.duplicate_keys))
        return f"BibTeX entry '{entry.key}' repeats the field(s) {names}; the first value was used"
    return f"BibTeX entry '{entry.key}': {_first_line(block.error)}"


def _failed_problem(path: str, line: int | None, block: ParsingFailedBlock, message: str) -> Problem:
    return Problem(path=path, line=line, message=f"{message}: {_first_line(block.error)}",
                   hint="BibTeX entries look like @article{key, title = {...}, year = 2020}")


def _first_line(error: object) -> str:
    """bibtexparser's reason for giving up on a block, on one line."""
    lines = str(getattr(error, "abort_reason", "") or error or "syntax error").strip().splitlines()
    return lines[-1].strip() if lines else "syntax error"


def recover_fields(body: str, first_line: int) -> dict[str, tuple[str, int | None]]:
    """Read `name = value` fields of a broken entry, taking each field to end where the next starts."""
    body = re.sub(r"\s*\}\s*$", "", body)
    fields: dict[str, tuple[str, int | None]] = {}
    line = first_line
    for chunk in _FIELD_START.split(body):
        match = _FIELD.match(chunk)
        if match and match.group(1).lower() not in fields:
            value = match.group(2).strip().rstrip(",").strip()
            offset = chunk[: match.start(1)].count("\n")
            fields[match.group(1).lower()] = (value, line + offset)
        line += chunk.count("\n") + 1
    return fields


def _brace_balance(text: str) -> int:
    text = re.sub(r"\\[{}]", "", text)
    return text.count("{") - text.count("}")


def resolve_value(value: str, strings: dict[str, str]) -> str:
    """Turn a raw field value into its text: strip `{..}`/`".."`, expand macros and `#` joins."""
    value = value.strip()
    parts = _split_concatenation(value) if "#" in value else [value]
    return "".join(_resolve_part(part.strip(), strings) for part in parts)


def _resolve_part(part: str, strings: dict[str, str]) -> str:
    if len(part) >= 2 and (part[0], part[-1]) in (("{", "}"), ('"', '"')):
        return part[1:-1]
    if part.startswith("{"):
        return part[1:]
    if part.isdigit():
        return part
    return strings.get(part.lower(), part)


def _split_concatenation(value: str) -> list[str]:
    """Split `jn # { 2020}` on the `#` that are outside braces and quotes."""
    parts, depth, quoted, start = [], 0, False, 0
    for index, char in enumerate(value):
        if char == "{":
            depth += 1
        elif char == "}":
            depth = max(depth - 1, 0)
        elif char == '"' and depth == 0:
            quoted = not quoted
        elif char == "#" and depth == 0 and not quoted:
            parts.append(value[start:index])
            start = index + 1
    parts.append(value[start:])
    return parts


# ---------------------------------------------------------------------------------------------
# LaTeX to Unicode.


@lru_cache(maxsize=1)
def _decoder() -> LatexNodes2Text:
    """pylatexenc's decoder with bibtexparser's `\\url` rule and ASCII for the text-mode symbols."""
    context = get_default_latex_context_db()
    context.add_context_category(
        "review-digest",
        prepend=True,
        macros=[
            MacroTextSpec("url", simplify_repl="%s"),
            MacroTextSpec("textasciicircum", simplify_repl="^"),
            MacroTextSpec("textasciitilde", simplify_repl="~"),
            MacroTextSpec("textbackslash", simplify_repl="\\"),
        ],
    )
    return LatexNodes2Text(latex_context=context, math_mode="text")


def latex_to_unicode(text: str) -> str:
    """Decode BibTeX LaTeX (`{\\"u}`, `\\'e`, `{\\ss}`, `\\&`, `--`, `~`, `{{RNA}}`) to plain Unicode."""
    if "\\" in text:
        simple = _LETTER.sub(lambda m: _LETTERS[m.group(1)], _ACCENT.sub(_accented, text))
        if not _NEEDS_LATEX.search(simple):
            return clean_text(_SIMPLE_TOKEN.sub(lambda m: _SIMPLE[m.group(0)], simple))
    elif "$" not in text:
        return clean_text(_SIMPLE_TOKEN.sub(lambda m: _SIMPLE[m.group(0)], text))
    try:
        decoded = _decoder().latex_to_text(_BARE_SPECIAL.sub(r"\\\1", text))
    except Exception:  # pylatexenc on pathological input: fall back to the simple table
        decoded = _SIMPLE_TOKEN.sub(lambda m: _SIMPLE[m.group(0)], text)
    return clean_text(decoded)


def _accented(match: re.Match[str]) -> str:
    """`\\"o` -> 'ö': the base letter (dotless i/j become i/j) plus the combining accent."""
    accent = match.group(1) or match.group(4)
    letter = next(g for g in match.group(2, 3, 5, 6) if g)
    return unicodedata.normalize("NFC", {"\\i": "i", "\\j": "j"}.get(letter, letter) + _ACCENTS[accent])


def verbatim(text: str) -> str:
    """Identifiers and URLs: drop braces and backslash escapes, decode nothing else."""
    return clean_text(re.sub(r"\\([%&#_$~])", r"\1", text).replace("{", "").replace("}", ""))


# ---------------------------------------------------------------------------------------------
# Fields.


def entry_fields(values: dict[str, str]) -> dict[str, Any]:
    """Map BibTeX/BibLaTeX fields (already resolved, still LaTeX) onto `Article` field names."""
    fields: dict[str, Any] = {}
    get = values.get
    put(fields, "title", latex_to_unicode(get("title", "")))
    put(fields, "authors", parse_names(get("author", "")))
    put(fields, "journal", latex_to_unicode(get("journal") or get("journaltitle") or ""))
    put(fields, "journal_abbrev", latex_to_unicode(get("shortjournal") or get("journalabbrev") or ""))
    put(fields, "published", bibtex_date(values))
    put(fields, "volume", latex_to_unicode(get("volume", "")))
    put(fields, "issue", latex_to_unicode(get("number") or get("issue") or ""))
    put(fields, "pages", clean_pages(verbatim(get("pages", "").replace("--", "-"))))
    put(fields, "issn", find_issns(verbatim(get("issn", ""))))
    _identifiers(fields, values)
    put(fields, "url", verbatim(re.sub(r"^\s*\\url\{(.*)\}\s*$", r"\1", get("url", ""))))
    put(fields, "abstract", plain_abstract(latex_to_unicode(get("abstract", ""))))
    put(fields, "keywords", split_keywords(latex_to_unicode(get("keywords", ""))))
    put(fields, "language", latex_to_unicode(get("language") or get("langid") or ""))
    return fields


def _identifiers(fields: dict[str, Any], values: dict[str, str]) -> None:
    """pmid/pmcid/doi fields, BibLaTeX `eprint` with `eprinttype = pubmed`, then notes and the URL."""
    doi = verbatim(values.get("doi", ""))
    put(fields, "doi", normalize_doi(find_doi(doi) or doi))
    put(fields, "pmid", normalize_pmid(verbatim(values.get("pmid", ""))))
    put(fields, "pmcid", normalize_pmcid(verbatim(values.get("pmcid", ""))))
    eprint_type = verbatim(values.get("eprinttype", "") or values.get("archiveprefix", "")).lower()
    if eprint_type in ("pubmed", "pmid"):
        put(fields, "pmid", normalize_pmid(verbatim(values.get("eprint", ""))))
    elif eprint_type in ("pmc", "pmcid", "pubmedcentral"):
        put(fields, "pmcid", normalize_pmcid(verbatim(values.get("eprint", ""))))
    for name in _NOTE_FIELDS:
        for key, found in ids_in_note(verbatim(values.get(name, ""))).items():
            put(fields, key, found)
    put(fields, "doi", doi_from_url(verbatim(values.get("url", ""))))


def bibtex_date(values: dict[str, str]) -> PubDate:
    """BibLaTeX `date = {2009-04-21}` or BibTeX `year` + `month` (`mar`, `3`, `March`) + `day`."""
    from_date = _biblatex_date(verbatim(values.get("date", "")))
    year_match = re.search(r"\b(\d{4})\b", verbatim(values.get("year", "")))
    if not year_match:
        return from_date
    month = month_number(verbatim(values.get("month", "")).split("-")[0])
    day_text = verbatim(values.get("day", ""))
    day = int(day_text) if month and day_text.isdigit() and 1 <= int(day_text) <= 31 else None
    from_fields = PubDate(year=int(year_match.group(1)), month=month, day=day)
    precision = (lambda d: (d.year is not None, d.month is not None, d.day is not None))
    return from_date if precision(from_date) > precision(from_fields) else from_fields


def _biblatex_date(text: str) -> PubDate:
    """Read the start of an EDTF date or range: `2009-04-21`, `2009-04`, `2009`, `2009/2010`."""
    match = re.match(r"(\d{4})(?:-(\d{1,2}))?(?:-(\d{1,2}))?", text)
    if not match:
        return PubDate()
    month = month_number(match.group(2)) if match.group(2) else None
    day = int(match.group(3)) if month and match.group(3) and 1 <= int(match.group(3)) <= 31 else None
    return PubDate(year=int(match.group(1)), month=month, day=day)


def parse_names(text: str) -> tuple[Author, ...]:
    """Split `Last, First and {Collective Name}` with BibTeX's rules, then decode each part."""
    if not text.strip():
        return ()
    try:
        names = split_multiple_persons_names(text)
    except Exception:
        names = re.split(r"\s+and\s+", text)
    authors = [_one_name(name) for name in names if name.strip()]
    return tuple(a for a in authors if a.name)


def _one_name(name: str) -> Author:
    name = name.strip()
    if _is_single_group(name):
        return collective(latex_to_unicode(name[1:-1]))
    try:
        parts = parse_single_name_into_parts(name, strict=False)
    except Exception:
        return collective(latex_to_unicode(name))
    family = latex_to_unicode(" ".join(parts.von + parts.last))
    given = latex_to_unicode(" ".join(parts.first))
    return person(family, given, latex_to_unicode(" ".join(parts.jr)))


def _is_single_group(name: str) -> bool:
    """True for `{World Health Organization}`: one brace group spanning the whole name."""
    if not (name.startswith("{") and name.endswith("}")):
        return False
    depth = 0
    for index, char in enumerate(name):
        depth += (char == "{") - (char == "}")
        if depth == 0 and index < len(name) - 1:
            return False
    return True
