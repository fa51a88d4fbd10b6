"""A PubMed abstract page saved as text (the layout of the record the project started from).

The page is a title, `- PMID:`/`- DOI:` lines, the title again, then headed sections: Abstract,
Conflict of interest statement, Similar articles, Publication types, MeSH terms, Substances,
LinkOut. List items are `- item` on one line, or a lone `-` line followed by the item. Each similar
article's title is glued to its journal citation with no space, which `parse_similar_citation`
takes apart using the journal abbreviation PubMed repeats at the end of the citation.
"""

from __future__ import annotations

import re

from generator.errors import Problem, ReaderError
from generator.model import LinkOutSection, Notice, Record, SimilarRef, SourceRef, Substance
from generator.readers.common import ReadResult, find_doi, normalize_doi, normalize_pmid, parse_mesh_heading

# Section headings as PubMed prints them, mapped to the section's key.
HEADINGS = {
    "abstract": "abstract",
    "conflict of interest statement": "coi",
    "similar articles": "similar",
    "cited by": "cited_by",
    "references": "references",
    "publication types": "publication_types",
    "mesh terms": "mesh",
    "substances": "substances",
    "keywords": "keywords",
    "grant support": "grants",
    "associated data": "associated_data",
    "related information": "related",
    "linkout - more resources": "linkout",
    "comment in": "CommentIn",
    "comment on": "CommentOn",
    "erratum in": "ErratumIn",
    "erratum for": "ErratumFor",
    "retraction in": "RetractionIn",
    "retraction of": "RetractionOf",
    "expression of concern in": "ExpressionOfConcernIn",
    "expression of concern for": "ExpressionOfConcernFor",
    "update in": "UpdateIn",
    "update of": "UpdateOf",
}
LINKOUT_CATEGORIES = {
    "full text sources", "other literature sources", "medical", "research materials", "miscellaneous",
    "molecular biology databases", "citation manager", "online books",
}
_ID_LINE = re.compile(r"^-\s*(PMID|DOI|PMCID|PMC)\s*:\s*(\S.*)$", re.IGNORECASE)
_LABEL = re.compile(r"^([A-Z][A-Za-z0-9 ,/&()'-]{0,60}?):\s+(\S.*)$")
_CITATION_TAIL = re.compile(r"(?:^|\.\s)([^.]+)\.\s(\d{4})\.\s+PMID:\s*(\d+)(.*)$")
_PMID_TAIL = re.compile(r"PMID:\s*(\d+)(.*)$")
# Where a similar article's title ends and its journal begins: `...therapy.Front Immunol. 2025`. The
# journal is at most a few words; bounding them keeps the search linear on a long line (issue 9:
# unbounded, a 300 kB line of '!A b b b' took minutes).
_GLUED_JOURNAL = re.compile(r"[.?!](?=[A-Z][^ .]{0,80}(?: [A-Za-z][^ .]{0,80}){0,20}\.\s+\d{4})")


def read(text: str, path: str) -> ReadResult:
    """Read one PubMed abstract page."""
    lines = text.lstrip("\ufeff").splitlines()
    if not any(_ID_LINE.match(line.strip()) for line in lines[:10]):
        raise ReaderError(
            path, "not a PubMed abstract page: no '- PMID: ...' line near the top", line=1,
            hint="supported .txt files are PubMed pages saved as text, MEDLINE (starting 'PMID- ') and RIS",
        )
    record, problems = _parse_page(lines, path)
    return ReadResult(records=[record] if record else [], problems=problems)


def _parse_page(lines: list[str], path: str) -> tuple[Record | None, list[Problem]]:
    problems: list[Problem] = []
    fields: dict[str, object] = {}
    field_lines: dict[str, int] = {}
    index = 0
    while index < len(lines) and not lines[index].strip():
        index += 1
    title = lines[index].strip() if index < len(lines) else ""
    if title and not _ID_LINE.match(title):
        fields["title"] = title
        field_lines["title"] = index + 1
        index += 1
    while index < len(lines) and (_ID_LINE.match(lines[index].strip()) or not lines[index].strip()):
        match = _ID_LINE.match(lines[index].strip())
        if match:
            key, value = match.group(1).upper(), match.group(2).strip()
            if key == "PMID":
                fields["pmid"] = normalize_pmid(value)
            elif key == "DOI":
                fields["doi"] = normalize_doi(value)
            else:
                fields["pmcid"] = value.upper() if value.upper().startswith("PMC") else "PMC" + value
            field_lines[key.lower()] = index + 1
        index += 1
    sections = _split_sections(lines, index)
    head = sections.pop("_head", [])
    # The head repeats the title; anything else before 'Abstract' is kept as author lines are not
    # reliably separable from affiliations in saved text.
    if "title" not in fields and head:
        fields["title"], field_lines["title"] = head[0][1], head[0][0]
    _parse_abstract(sections.pop("abstract", []), fields, field_lines)
    coi = sections.pop("coi", [])
    if coi:
        fields["conflict_of_interest"] = " ".join(text for _, text in coi)
        field_lines["conflict_of_interest"] = coi[0][0]
    similar = _parse_similar(sections.pop("similar", []), path, problems)
    if similar:
        fields["similar"] = similar
    for key, field in (("publication_types", "publication_types"), ("keywords", "keywords"), ("grants", "grants")):
        items = _items(sections.pop(key, []))
        if items:
            fields[field] = tuple(items)
    mesh = _items(sections.pop("mesh", []))
    if mesh:
        fields["mesh_terms"] = tuple(parse_mesh_heading(m) for m in mesh)
    substances = _items(sections.pop("substances", []))
    if substances:
        fields["substances"] = tuple(Substance(name=s) for s in substances)
    linkout = _parse_linkout(sections.pop("linkout", []))
    if linkout:
        fields["linkout"] = linkout
    notices = []
    for key in list(sections):
        if key[0].isupper():  # CommentIn, ErratumIn, ... (comments and corrections)
            for item in _items(sections.pop(key)):
                tail = _PMID_TAIL.search(item)
                notices.append(Notice(kind=key, citation=(item[: tail.start()] if tail else item).strip(),
                                      pmid=tail.group(1) if tail else "", doi=find_doi(item)))
    if notices:
        fields["notices"] = tuple(notices)
    if not fields.get("title"):
        problems.append(Problem(path, "no title: the first line of a PubMed page is the article title", line=1))
    if not fields.get("pmid"):
        problems.append(Problem(path, "no PMID line ('- PMID: 12345678')", line=1))
        return None, problems
    record = Record(fields=fields, source=SourceRef(path, 1), field_lines=field_lines, format="pubmed_page")
    return record, problems


def _split_sections(lines: list[str], start: int) -> dict[str, list[tuple[int, str]]]:
    """Group the page's lines (1-based line number, text) under their section heading."""
    sections: dict[str, list[tuple[int, str]]] = {"_head": []}
    current = "_head"
    for number, raw in enumerate(lines[start:], start=start + 1):
        text = raw.strip()
        if not text:
            continue
        key = HEADINGS.get(text.lower())
        if key:
            current = key
            sections.setdefault(current, [])
            continue
        sections.setdefault(current, []).append((number, text))
    return sections


def _items(entries: list[tuple[int, str]]) -> list[str]:
    """Return a section's list items: `- item`, or a lone `-` followed by the item on its own line."""
    items: list[str] = []
    pending = False
    for _, text in entries:
        if text == "-":
            pending = True
        elif text.startswith("- "):
            items.append(text[2:].strip())
            pending = False
        elif pending or not items:
            items.append(text)
            pending = False
        else:  # a wrapped item: join it to the previous one
            items[-1] = f"{items[-1]} {text}"
    return [i for i in items if i]


def _parse_abstract(entries: list[tuple[int, str]], fields: dict, field_lines: dict) -> None:
    from generator.model import AbstractSection

    sections: list[AbstractSection] = []
    for number, text in entries:
        if re.match(r"^(Copyright|©|\(c\)\s*\d{4})", text, re.IGNORECASE):
            fields["copyright"] = text
            field_lines["copyright"] = number
            continue
        keyword_line = re.match(r"^Keywords:\s*(.+)$", text, re.IGNORECASE)
        if keyword_line:
            fields["keywords"] = tuple(k.strip(" .") for k in keyword_line.group(1).split(";") if k.strip(" ."))
            continue
        label = _LABEL.match(text)
        if label and len(label.group(1).split()) <= 5:
            sections.append(AbstractSection(text=label.group(2), label=label.group(1)))
        else:
            sections.append(AbstractSection(text=text))
        field_lines.setdefault("abstract", number)
    if sections:
        fields["abstract"] = tuple(sections)


def _parse_similar(entries: list[tuple[int, str]], path: str, problems: list[Problem]) -> tuple[SimilarRef, ...]:
    refs = []
    for item in _items(entries):
        ref = parse_similar_citation(item)
        if ref is None:
            line = next((n for n, t in entries if item.startswith(t[:40])), None)
            problems.append(Problem(path, f"could not read a similar article (no PMID): {item[:60]!r}", line=line,
                                    severity="warning"))
        else:
            refs.append(ref)
    return tuple(refs)


def parse_similar_citation(item: str) -> SimilarRef | None:
    """Take apart `Title.Journal. 2025 Jul 18;16:1604174. doi: 10... Journal. 2025. PMID: 1 Free PMC article. Review.`"""
    pmid_match = re.search(r"PMID:\s*(\d+)", item)
    if not pmid_match:
        return None
    body, flags_text = item[: pmid_match.start()].strip(), item[pmid_match.end():]
    flags = [f.strip() for f in flags_text.split(".") if f.strip()]
    tail = _CITATION_TAIL.search(item)
    journal = ""
    title, citation_part = body, ""
    if tail:
        journal = tail.group(1).strip()
        glue = re.search(re.escape(journal) + r"\.\s+\d{4}", body)
        if glue and glue.start() > 0:
            title, citation_part = body[: glue.start()], body[glue.start() + len(journal) + 1:]
    if not citation_part:
        glued = _GLUED_JOURNAL.search(body)
        if glued:
            title = body[: glued.start() + 1]
            rest = body[glued.start() + 1:]
            journal, _, citation_part = rest.partition(". ")
    citation_part = citation_part.strip()
    date, _, after_date = citation_part.partition(";")
    if not after_date:
        date = re.split(r"\.\s", citation_part, maxsplit=1)[0]
    volume_pages = after_date.split(". ")[0].strip().rstrip(".") if after_date else ""
    title = title.strip()
    if title.endswith("."):
        title = title[:-1]
    return SimilarRef(
        pmid=pmid_match.group(1),
        title=title,
        journal=journal,
        date=date.strip().rstrip("."),
        citation=volume_pages,
        doi=find_doi(citation_part),
        free_pmc="Free PMC article" in flags,
        review="Review" in flags,
        publication_types=tuple(f for f in flags if f != "Free PMC article"),
    )


def _parse_linkout(entries: list[tuple[int, str]]) -> tuple[LinkOutSection, ...]:
    sections: list[LinkOutSection] = []
    for _, text in entries:
        item = text[2:].strip() if text.startswith("- ") else text
        if text == "-":
            continue
        if text.lower() in LINKOUT_CATEGORIES or not sections:
            sections.append(LinkOutSection(category=text))
        else:
            last = sections[-1]
            sections[-1] = LinkOutSection(category=last.category, items=last.items + (item,))
    return tuple(sections)
