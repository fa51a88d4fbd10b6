"""Articles back to native YAML records: the inverse of `fields.py`, for `digest import` and `digest add`.

The YAML written here reads back (through `yaml_records` and `fields.coerce_native`) into the same
field values, so converting an export into records loses nothing the model holds.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from generator.model import Article, PubDate

# Field order in written records: identifiers, citation, content, subject terms, links, curator fields.
FIELD_ORDER = (
    "id", "pmid", "doi", "pmcid", "pii", "title", "title_html", "authors", "journal", "journal_abbrev", "issn",
    "published", "epublished", "volume", "issue", "pages", "elocation", "language", "publication_types", "status",
    "abstract", "copyright", "conflict_of_interest", "mesh_terms", "substances", "keywords", "grants",
    "notices", "similar", "linkout", "history", "url", "tags", "rating", "verdict", "added", "notes",
)
CURATOR_FIELDS = ("notes", "tags", "rating", "verdict", "added")


def _date(date: PubDate) -> str:
    return date.raw or date.iso


def _author(author) -> Any:
    if author.collective:
        return {"name": author.name, "collective": True}
    simple = not (author.affiliations or author.orcid) and author.family and author.given
    if simple:
        return f"{author.family}, {author.given}"
    value: dict[str, Any] = {"name": author.name}
    if author.family:
        value["family"] = author.family
    if author.given:
        value["given"] = author.given
    if author.initials:
        value["initials"] = author.initials
    if author.affiliations:
        value["affiliations"] = list(author.affiliations)
    if author.orcid:
        value["orcid"] = author.orcid
    return value


def _abstract(sections) -> Any:
    if len(sections) == 1 and not sections[0].label and not sections[0].html:
        return sections[0].text
    return [{k: v for k, v in (("label", s.label), ("category", s.category), ("text", s.text), ("html", s.html)) if v}
            for s in sections]


def _mesh(term) -> Any:
    if not term.ui:
        return term.label
    value: dict[str, Any] = {"descriptor": term.descriptor, "ui": term.ui}
    if term.major:
        value["major"] = True
    if term.qualifiers:
        value["qualifiers"] = [("*" if q.major else "") + q.name for q in term.qualifiers]
    return value


def _similar(ref) -> Any:
    value = {
        "pmid": ref.pmid, "doi": ref.doi, "title": ref.title, "journal": ref.journal, "date": ref.date,
        "citation": ref.citation, "free_pmc": ref.free_pmc or None, "review": ref.review or None,
        "publication_types": list(ref.publication_types) or None, "score": ref.score,
    }
    return {k: v for k, v in value.items() if v not in ("", None)}


def article_to_native(article: Article, include_id: bool = False) -> dict[str, Any]:
    """Return the native record (plain YAML values) for an article, without empty fields."""
    values: dict[str, Any] = {
        "id": article.id if include_id else "",
        "pmid": article.pmid, "doi": article.doi, "pmcid": article.pmcid, "pii": article.pii,
        "title": article.title, "title_html": article.title_html,
        "authors": [_author(a) for a in article.authors],
        "journal": article.journal, "journal_abbrev": article.journal_abbrev, "issn": list(article.issn),
        "published": _date(article.published), "epublished": _date(article.epublished),
        "volume": article.volume, "issue": article.issue, "pages": article.pages, "elocation": article.elocation,
        "language": article.language, "publication_types": list(article.publication_types), "status": article.status,
        "abstract": _abstract(article.abstract) if article.abstract else "",
        "copyright": article.copyright, "conflict_of_interest": article.conflict_of_interest,
        "mesh_terms": [_mesh(m) for m in article.mesh_terms],
        "substances": [{"name": s.name, "registry_number": s.registry_number} if s.registry_number else s.name
                       for s in article.substances],
        "keywords": list(article.keywords), "grants": list(article.grants),
        "notices": [{k: v for k, v in (("kind", n.kind), ("citation", n.citation), ("pmid", n.pmid), ("doi", n.doi)) if v}
                    for n in article.notices],
        "similar": [_similar(r) for r in article.similar],
        "linkout": {s.category: list(s.items) for s in article.linkout},
        "history": {h.status: h.date for h in article.history},
        "url": article.url, "tags": list(article.tags), "rating": article.rating, "verdict": article.verdict,
        "added": article.added, "notes": article.notes,
    }
    return {k: values[k] for k in FIELD_ORDER if k in values and values[k] not in ("", None, [], {})}


class _Dumper(yaml.SafeDumper):
    """Block style, long text folded readably, multi-line notes as literal blocks."""


def _represent_str(dumper: yaml.SafeDumper, text: str):
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _represent_str)


def dump_record(record: dict[str, Any], header: str = "") -> str:
    """Return a record as YAML text, keys in the order given, Unicode kept readable."""
    text = yaml.dump(record, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100,
                     default_flow_style=False)
    return (header + text) if header else text


def write_record_file(path: Path, text: str) -> None:
    """Write a record through a temporary file in the same folder, renamed over it when complete,
    so an interrupted `import`/`add`/`refresh` never leaves half a record."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
