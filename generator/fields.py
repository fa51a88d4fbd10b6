"""The native record schema: turn the plain values of a curator's YAML into model values.

Imported readers already produce model values; native YAML/Markdown gives strings, numbers, lists
and mappings, and this module validates them field by field so each mistake is reported with its
line and a hint, and the rest of the record is still used.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from typing import Any, Callable

from generator.errors import Problem
from generator.model import (
    AbstractSection,
    Article,
    Author,
    HistoryDate,
    LinkOutSection,
    MeshTerm,
    Notice,
    PubDate,
    Qualifier,
    Record,
    SimilarRef,
    Substance,
)
from generator.readers.common import normalize_doi, normalize_pmid, parse_mesh_heading, parse_pubmed_date

ALIASES = {
    "date": "published",
    "year": "published",
    "mesh": "mesh_terms",
    "mesh_headings": "mesh_terms",
    "similar_articles": "similar",
    "coi": "conflict_of_interest",
    "conflict_of_interest_statement": "conflict_of_interest",
    "publication_type": "publication_types",
    "types": "publication_types",
    "journal_title": "journal",
    "abbreviation": "journal_abbrev",
    "note": "notes",
    "pmc": "pmcid",
}


class FieldError(ValueError):
    """A value that does not fit its field; the message says what was expected."""


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        raise FieldError(f"must be text, got a {'mapping' if isinstance(value, dict) else 'list'}")
    if isinstance(value, bool):
        raise FieldError(f"must be text, got {value!r}")
    return " ".join(str(value).split()) if not isinstance(value, str) else value.strip()


def _text_list(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(v.strip() for v in re.split(r"[;\n]", value) if v.strip())
    if not isinstance(value, (list, tuple)):
        raise FieldError("must be a list of text")
    return tuple(t for t in (_text(v) for v in value) if t)


def _pmid(value: Any) -> str:
    pmid = normalize_pmid(value)
    if value not in (None, "") and not re.fullmatch(r"\s*(PMID:?\s*)?\d{1,9}\s*", str(value), re.IGNORECASE):
        raise FieldError(f"must be a PubMed id (digits), got {value!r}")
    return pmid


def _doi(value: Any) -> str:
    doi = normalize_doi(_text(value))
    if doi and not re.fullmatch(r"10\.\d{4,9}/\S+", doi):
        raise FieldError(f"must be a DOI like 10.1016/j.coi.2025.102596, got {value!r}")
    return doi


def _pmcid(value: Any) -> str:
    text = _text(value).upper()
    if text.isdigit():
        text = "PMC" + text
    if text and not re.fullmatch(r"PMC\d+", text):
        raise FieldError(f"must be a PMC id like PMC1234567, got {value!r}")
    return text


def _date(value: Any) -> PubDate:
    if value is None or value == "":
        return PubDate()
    if isinstance(value, dt.datetime):
        value = value.date()
    if isinstance(value, dt.date):
        return PubDate(year=value.year, month=value.month, day=value.day)
    if isinstance(value, int) and not isinstance(value, bool):
        if 1000 <= value <= 2999:
            return PubDate(year=value)
        raise FieldError(f"is not a year: {value!r}")
    text = _text(value)
    if re.fullmatch(r"\d{4}-\d{1,2}-\d{1,2}|\d{4}-\d{1,2}", text):
        parts = [int(p) for p in text.split("-")]
        try:
            dt.date(parts[0], parts[1], parts[2] if len(parts) > 2 else 1)
        except ValueError:
            raise FieldError(f"is not a date: {text!r}") from None
    date = parse_pubmed_date(text)
    if not date.year:
        raise FieldError(f"is not a date: {text!r} (use 2025-06-24, '2025 Jun' or 2025)")
    return date


def _iso_date(value: Any) -> str:
    date = _date(value)
    return date.iso or date.raw


def _author(value: Any) -> Author:
    if isinstance(value, str):
        return author_from_name(value)
    if not isinstance(value, dict):
        raise FieldError("each author must be a name or a mapping with 'name' (or 'family'/'given')")
    known = {"name", "family", "given", "initials", "affiliation", "affiliations", "orcid", "collective"}
    unknown = sorted(set(map(str, value)) - known)
    if unknown:
        raise FieldError(f"unknown author key '{unknown[0]}' (known: {', '.join(sorted(known))})")
    family, given = _text(value.get("family")), _text(value.get("given"))
    name = _text(value.get("name")) or " ".join(p for p in (given, family) if p)
    if not name:
        raise FieldError("an author needs a 'name' or 'family'")
    base = author_from_name(name) if not family and not value.get("collective") else Author(name=name)
    affiliations = _text_list(value.get("affiliations")) + _text_list(value.get("affiliation"))
    orcid = _text(value.get("orcid"))
    orcid = re.sub(r"^https?://orcid\.org/", "", orcid)
    if orcid and not re.fullmatch(r"\d{4}-\d{4}-\d{4}-\d{3}[\dX]", orcid):
        raise FieldError(f"ORCID must look like 0000-0002-1825-0097, got {orcid!r}")
    return Author(
        name=name,
        family=family or base.family,
        given=given or base.given,
        initials=_text(value.get("initials")) or base.initials or initials_of(given or base.given),
        affiliations=affiliations,
        orcid=orcid,
        collective=bool(value.get("collective")),
    )


def initials_of(given: str) -> str:
    """Return MEDLINE initials for given names: 'Jane Q' -> 'JQ', 'Jean-Luc' -> 'JL'."""
    return "".join(part[0] for part in re.split(r"[\s\-.]+", given) if part and part[0].isalpha()).upper()


def author_from_name(text: str) -> Author:
    """Split 'Family, Given' or 'Given Family' into an Author; one word is kept as a collective name."""
    text = " ".join(text.split())
    if "," in text:
        family, given = (p.strip() for p in text.split(",", 1))
    elif " " in text:
        given, family = text.rsplit(" ", 1)
    else:
        return Author(name=text, family=text)
    name = f"{given} {family}".strip()
    return Author(name=name, family=family, given=given, initials=initials_of(given))


def _abstract(value: Any) -> tuple[AbstractSection, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        return tuple(AbstractSection(text=p.strip()) for p in re.split(r"\n\s*\n", value.strip()) if p.strip())
    if isinstance(value, dict):
        return tuple(AbstractSection(text=_text(v), label=_text(k)) for k, v in value.items())
    if isinstance(value, list):
        sections = []
        for item in value:
            if isinstance(item, str):
                sections.append(AbstractSection(text=item.strip()))
            elif isinstance(item, dict) and "text" in item and set(item) <= {"text", "label", "category", "html"}:
                sections.append(AbstractSection(text=_text(item["text"]), label=_text(item.get("label")),
                                                category=_text(item.get("category")), html=_text(item.get("html"))))
            else:
                raise FieldError("each abstract section must be text or a mapping with 'label' and 'text'")
        return tuple(sections)
    raise FieldError("must be text, a list of {label, text} sections, or a mapping of label: text")


def _mesh(value: Any) -> tuple[MeshTerm, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise FieldError("must be a list of MeSH headings, e.g. '- Lupus Erythematosus, Systemic/*therapy'")
    terms = []
    for item in value:
        if isinstance(item, str):
            terms.append(parse_mesh_heading(item))
        elif isinstance(item, dict) and item.get("descriptor"):
            qualifiers = tuple(
                Qualifier(name=q.lstrip("*"), major=q.startswith("*")) for q in _text_list(item.get("qualifiers"))
            )
            terms.append(MeshTerm(descriptor=_text(item["descriptor"]), major=bool(item.get("major")),
                                  qualifiers=qualifiers, ui=_text(item.get("ui"))))
        else:
            raise FieldError("each MeSH term must be text or a mapping with 'descriptor'")
    return tuple(t for t in terms if t.descriptor)


def _substances(value: Any) -> tuple[Substance, ...]:
    items = value if isinstance(value, list) else [] if value is None else None
    if items is None:
        raise FieldError("must be a list of substance names")
    result = []
    for item in items:
        if isinstance(item, dict):
            result.append(Substance(name=_text(item.get("name")), registry_number=_text(item.get("registry_number"))))
        else:
            result.append(Substance(name=_text(item)))
    return tuple(s for s in result if s.name)


_SIMILAR_KEYS = {"pmid", "title", "journal", "date", "citation", "doi", "free_pmc", "review", "publication_types", "score"}


def _similar(value: Any) -> tuple[SimilarRef, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise FieldError("must be a list of PMIDs or of mappings with 'pmid' or 'doi'")
    refs = []
    for item in value:
        if isinstance(item, (int, str)) and not isinstance(item, bool):
            text = str(item).strip()
            refs.append(SimilarRef(doi=_doi(text)) if text.startswith("10.") or "doi.org" in text else SimilarRef(pmid=_pmid(text)))
        elif isinstance(item, dict):
            unknown = sorted(set(map(str, item)) - _SIMILAR_KEYS)
            if unknown:
                hint = difflib.get_close_matches(unknown[0], sorted(_SIMILAR_KEYS), n=1)
                raise FieldError(f"unknown key '{unknown[0]}' in a similar article" + (f"; did you mean '{hint[0]}'?" if hint else ""))
            score = item.get("score")
            refs.append(SimilarRef(
                pmid=_pmid(item.get("pmid")), title=_text(item.get("title")), journal=_text(item.get("journal")),
                date=_text(item.get("date")), citation=_text(item.get("citation")), doi=_doi(item.get("doi")),
                free_pmc=bool(item.get("free_pmc")), review=bool(item.get("review")),
                publication_types=_text_list(item.get("publication_types")),
                score=float(score) if isinstance(score, (int, float)) and not isinstance(score, bool) else None,
            ))
        else:
            raise FieldError("each similar article must be a PMID or a mapping with 'pmid' or 'doi'")
        if not (refs[-1].pmid or refs[-1].doi):
            raise FieldError("each similar article needs a 'pmid' or a 'doi'")
    return tuple(refs)


def _notices(value: Any) -> tuple[Notice, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, dict) and v.get("kind") for v in value):
        raise FieldError("must be a list of mappings with 'kind' (e.g. RetractionIn, ErratumIn) and 'citation'")
    notices = tuple(Notice(kind=_text(v["kind"]), citation=_text(v.get("citation")), pmid=_pmid(v.get("pmid")),
                           doi=_doi(v.get("doi"))) for v in value)
    if any(not (n.citation or n.pmid or n.doi) for n in notices):
        raise FieldError("each notice needs a 'pmid', a 'doi' or a 'citation' saying what it points to")
    return notices


def _linkout(value: Any) -> tuple[LinkOutSection, ...]:
    if value is None:
        return ()
    if isinstance(value, dict):
        return tuple(LinkOutSection(category=_text(k), items=_text_list(v)) for k, v in value.items())
    if isinstance(value, list):
        return tuple(LinkOutSection(category=_text(v)) for v in value)
    raise FieldError("must be a mapping of category: [providers]")


def _history(value: Any) -> tuple[HistoryDate, ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise FieldError("must be a mapping of status: date, e.g. 'received: 2025-01-21'")
    return tuple(HistoryDate(status=_text(k), date=_iso_date(v)) for k, v in value.items())


def _rating(value: Any) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 5:
        raise FieldError(f"must be a whole number from 0 to 5, got {value!r}")
    return value


def _url(value: Any) -> str:
    text = _text(value)
    if text and not re.match(r"https?://", text, re.IGNORECASE):
        raise FieldError(f"must be an http(s) URL, got {text!r}")
    return text


def _id(value: Any) -> str:
    text = _text(value)
    if not is_safe_id(text):
        raise FieldError(
            f"{text!r} cannot be used in a URL",
            )
    return text


_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def is_safe_id(text: str) -> bool:
    """Return True when an id is safe as one path segment: no slash, no leading dot, no '..'."""
    return bool(_SAFE_ID.fullmatch(text)) and ".." not in text


COERCERS: dict[str, Callable[[Any], Any]] = {
    "id": _id,
    "title": _text,
    "title_html": _text,  # inline markup from PubMed XML; sanitised when rendered
    "pmid": _pmid,
    "doi": _doi,
    "pmcid": _pmcid,
    "pii": _text,
    "authors": lambda v: tuple(_author(a) for a in (v if isinstance(v, list) else [v] if v else [])),
    "journal": _text,
    "journal_abbrev": _text,
    "issn": _text_list,
    "published": _date,
    "epublished": _date,
    "volume": _text,
    "issue": _text,
    "pages": _text,
    "elocation": _text,
    "language": _text,
    "abstract": _abstract,
    "copyright": _text,
    "conflict_of_interest": _text,
    "publication_types": _text_list,
    "mesh_terms": _mesh,
    "substances": _substances,
    "keywords": _text_list,
    "grants": _text_list,
    "similar": _similar,
    "notices": _notices,
    "linkout": _linkout,
    "history": _history,
    "url": _url,
    "status": _text,
    "notes": lambda v: "" if v is None else str(v).strip() if not isinstance(v, (dict, list)) else _text(v),
    "tags": _text_list,
    "rating": _rating,
    "verdict": _text,
    "added": _iso_date,
}
HINTS = {
    "id": "ids may use letters, digits, '.', '_' and '-', and must start with a letter or digit",
    "title": "",
}


def coerce_native(record: Record) -> tuple[dict[str, Any], list[Problem]]:
    """Validate a native record's plain values into model values; report each bad field with its line."""
    fields: dict[str, Any] = {}
    extra: list[tuple[str, str]] = []
    problems: list[Problem] = []
    for raw_key, value in record.fields.items():
        key = ALIASES.get(str(raw_key), str(raw_key))
        line = record.field_lines.get(str(raw_key), record.source.line)
        coerce = COERCERS.get(key)
        if coerce is None:
            close = difflib.get_close_matches(key, sorted(COERCERS), n=1)
            hint = f"did you mean '{close[0]}'?" if close else "it is kept and shown as an extra field"
            problems.append(Problem(record.source.path, f"unknown field '{raw_key}'", line=line, hint=hint,
                                    severity="warning"))
            if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                extra.append((str(raw_key), str(value)))
            continue
        try:
            fields[key] = coerce(value)
        except FieldError as exc:
            problems.append(Problem(record.source.path, f"'{raw_key}' {exc}", line=line, hint=HINTS.get(key, "")))
        except (TypeError, ValueError, RecursionError) as exc:  # deeply odd YAML values
            problems.append(Problem(record.source.path, f"'{raw_key}' has an unusable value ({exc})", line=line))
    if extra:
        fields["extra"] = tuple(extra)
    return {k: v for k, v in fields.items() if v not in ("", (), None) and v != PubDate()}, problems


ARTICLE_FIELDS = set(Article.__dataclass_fields__)
