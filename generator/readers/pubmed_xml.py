"""Read PubMed XML as efetch returns it (`PubmedArticleSet` of `PubmedArticle` and `PubmedBookArticle`).

The file is parsed with expat directly rather than `ElementTree.parse`, for two reasons: the parser
must refuse entity declarations (entity bombs) and never fetch the DTD that real files name in their
DOCTYPE, and expat tells the line of each element, which the records and problems point at.
"""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET
from html.entities import name2codepoint
from typing import Any
from xml.parsers import expat

from generator.errors import Problem, ReaderError
from generator.model import (
    AbstractSection,
    Author,
    HistoryDate,
    MeshTerm,
    Notice,
    PubDate,
    Qualifier,
    Record,
    SourceRef,
    Substance,
)
from generator.readers.common import ReadResult, find_doi, normalize_doi, normalize_pmid, parse_pubmed_date
from generator.readers.medline import history_date, normalize_orcid, strip_added_period

FORMAT = "pubmed_xml"
HINT = "save PubMed records with efetch (db=pubmed, retmode=xml), or 'Save > PubMed XML'"
ARTICLE_TAGS = ("PubmedArticle", "PubmedBookArticle")
ROOT_TAGS = ("PubmedArticleSet",) + ARTICLE_TAGS

# Inline markup PubMed allows in titles, abstracts and keywords (%text; in the DTD), kept as HTML.
_INLINE_TAGS = frozenset({"b", "i", "sup", "sub", "u"})
# MathML parts that carry no readable text (TeX or other encodings of the same formula).
_MATH_SKIPPED = frozenset({"annotation", "annotation-xml"})
# MathML script elements: which child (by position) is a subscript or superscript.
_MATH_SCRIPTS = {"msup": {1: "sup"}, "msub": {1: "sub"}, "msubsup": {1: "sub", 2: "sup"}}
# Beyond this depth inline markup is flattened to text: no real record nests anywhere near it.
_MAX_INLINE_DEPTH = 64
_ARTICLE_CHUNK = re.compile(r"<(PubmedArticle|PubmedBookArticle)\b.*?</\1\s*>", re.DOTALL)
# Prepended to a chunk re-parsed on its own, so that HTML entities are skipped as in the whole file.
_CHUNK_DOCTYPE = '<!DOCTYPE PubmedArticleSet SYSTEM "pubmed.dtd">'

_EMPTY = ET.Element("missing")


class _EntityDeclared(Exception):
    """Raised from the expat handler when the document declares an entity."""

    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


def read(text: str, path: str) -> ReadResult:
    """Return one record per PubmedArticle/PubmedBookArticle, with a problem for each bad part."""
    result = ReadResult()
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip():
        raise ReaderError(path, "not PubMed XML: the file is empty", hint=HINT)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates from a lenient decode: expat needs valid UTF-8
        text = text.encode("utf-8", "replace").decode("utf-8")
    try:
        root, lines = _parse(text)
    except _EntityDeclared as err:
        result.problems.append(_entity_problem(path, err.line))
        return result
    except expat.ExpatError as err:
        return _read_chunks(text, path, err)
    if root.tag not in ROOT_TAGS:
        raise ReaderError(path, f"not PubMed XML: the root element is <{root.tag}>", line=1, hint=HINT)
    articles = [root] if root.tag in ARTICLE_TAGS else [child for child in root if child.tag in ARTICLE_TAGS]
    if not articles:
        result.problems.append(
            Problem(path=path, line=1, message="no PubmedArticle in this file", hint=HINT, severity="warning")
        )
    for node in articles:
        result.records.append(_ArticleReader(path, lines, 0, result.problems).read(node))
    return result


def _parse(text: str) -> tuple[ET.Element, dict[ET.Element, int]]:
    """Parse XML text into an element tree and the line each element starts on.

    No namespace processing: `mml:math` stays a plain tag name, which is all the reader needs.
    """
    builder = ET.TreeBuilder()
    lines: dict[ET.Element, int] = {}
    parser = expat.ParserCreate()
    parser.buffer_text = True

    def start(tag: str, attrs: dict[str, str]) -> None:
        lines[builder.start(tag, attrs)] = parser.CurrentLineNumber

    def declare_entity(*_: Any) -> None:
        raise _EntityDeclared(parser.CurrentLineNumber)

    def skipped_entity(name: str, is_parameter_entity: bool) -> None:
        # An HTML entity such as &nbsp; in a file whose DOCTYPE names the (unread) PubMed DTD.
        if not is_parameter_entity and name in name2codepoint:
            builder.data(chr(name2codepoint[name]))

    parser.StartElementHandler = start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    parser.EntityDeclHandler = declare_entity
    parser.SkippedEntityHandler = skipped_entity
    parser.Parse(text, True)
    return builder.close(), lines


def _entity_problem(path: str, line: int) -> Problem:
    return Problem(
        path=path,
        line=line,
        message="the XML declares entities (<!ENTITY>); the file was not read",
        hint="PubMed XML never declares entities: re-download the file from PubMed",
    )


def _read_chunks(text: str, path: str, error: expat.ExpatError) -> ReadResult:
    """Recover from a malformed file by reading each article on its own, skipping the broken ones."""
    result = ReadResult()
    chunks = list(_ARTICLE_CHUNK.finditer(text))
    if not chunks:
        raise ReaderError(
            path, f"not well-formed XML: {expat.ErrorString(error.code)}", line=error.lineno, hint=HINT
        )
    for chunk in chunks:
        offset = text.count("\n", 0, chunk.start())
        try:
            node, lines = _parse(_CHUNK_DOCTYPE + chunk.group(0))
        except _EntityDeclared as err:
            result.problems.append(_entity_problem(path, offset + err.line))
            continue
        except expat.ExpatError as err:
            result.problems.append(
                Problem(
                    path=path,
                    line=offset + err.lineno,
                    message=f"skipped a {chunk.group(1)}: not well-formed XML: {expat.ErrorString(err.code)}",
                    hint="fix the XML at this line or re-download the record",
                )
            )
            continue
        result.records.append(_ArticleReader(path, lines, offset, result.problems).read(node))
    if not result.problems:
        # Every article was fine on its own: the error lies outside them (root element, prolog...).
        result.problems.append(
            Problem(
                path=path,
                line=error.lineno,
                message=f"not well-formed XML: {expat.ErrorString(error.code)}",
                hint=f"{len(result.records)} article(s) were read; the rest of the file was skipped",
            )
        )
    return result


def _find(elem: ET.Element, path: str) -> ET.Element:
    """Return the first match, or an empty element so that chained look-ups need no None checks."""
    found = elem.find(path)
    return _EMPTY if found is None else found


def _squash(text: str) -> str:
    return " ".join(text.split())


def _plain(elem: ET.Element | None) -> str:
    """Return an element's text with whitespace collapsed ('' when missing)."""
    if elem is None:
        return ""
    return _squash("".join(elem.itertext()))


def _findtext(elem: ET.Element, path: str) -> str:
    return _plain(elem.find(path))


def render_inline(elem: ET.Element) -> tuple[str, str]:
    """Return (text, html) for an element with PubMed inline markup.

    The text keeps the spacing around inline elements; the HTML keeps b, i, sup, sub and u as tags and
    escapes everything else. MathML is reduced to its readable text (with sup/sub for msup/msub).
    """
    text_parts: list[str] = []
    html_parts: list[str] = []
    _walk_inline(elem, text_parts, html_parts, 0)
    return _squash("".join(text_parts)), _squash("".join(html_parts))


def _walk_inline(elem: ET.Element, text_parts: list[str], html_parts: list[str], depth: int) -> None:
    if elem.text:
        text_parts.append(elem.text)
        html_parts.append(html.escape(elem.text, quote=False))
    for child in elem:
        tag = child.tag if isinstance(child.tag, str) else ""
        if depth >= _MAX_INLINE_DEPTH:
            flat = "".join(child.itertext())
            text_parts.append(flat)
            html_parts.append(html.escape(flat, quote=False))
        elif _local_name(tag) == "math":
            math_text, math_html = _math_text(child)
            text_parts.append(math_text)
            html_parts.append(math_html)
        elif tag in _INLINE_TAGS:
            html_parts.append(f"<{tag}>")
            _walk_inline(child, text_parts, html_parts, depth + 1)
            html_parts.append(f"</{tag}>")
        else:
            _walk_inline(child, text_parts, html_parts, depth + 1)
        if child.tail:
            text_parts.append(child.tail)
            html_parts.append(html.escape(child.tail, quote=False))


def _local_name(tag: str) -> str:
    return tag.rpartition(":")[2]


def _math_text(math: ET.Element) -> tuple[str, str]:
    """Reduce a MathML formula to readable text, and to HTML with sup/sub for scripts."""
    text_parts: list[str] = []
    html_parts: list[str] = []
    _walk_math(math, text_parts, html_parts, 0)
    return "".join(text_parts), "".join(html_parts)


def _walk_math(elem: ET.Element, text_parts: list[str], html_parts: list[str], depth: int) -> None:
    # Whitespace between MathML elements is layout, not content: only token text counts.
    if elem.text and elem.text.strip():
        token = elem.text.strip()
        text_parts.append(token)
        html_parts.append(html.escape(token, quote=False))
    scripts = _MATH_SCRIPTS.get(_local_name(elem.tag if isinstance(elem.tag, str) else ""), {})
    for index, child in enumerate(elem):
        child_name = _local_name(child.tag if isinstance(child.tag, str) else "")
        if child_name in _MATH_SKIPPED:
            continue
        if depth >= _MAX_INLINE_DEPTH:
            flat = "".join(child.itertext())
            text_parts.append(flat)
            html_parts.append(html.escape(flat, quote=False))
            continue
        wrap = scripts.get(index)
        if wrap:
            html_parts.append(f"<{wrap}>")
        _walk_math(child, text_parts, html_parts, depth + 1)
        if wrap:
            html_parts.append(f"</{wrap}>")


def _with_html(text: str, markup: str) -> str:
    """Return the HTML only when it says more than the escaped text (it has inline tags)."""
    return markup if markup != html.escape(text, quote=False) else ""


class _ArticleReader:
    """Turn one PubmedArticle or PubmedBookArticle element into a `Record`."""

    def __init__(self, path: str, lines: dict[ET.Element, int], offset: int, problems: list[Problem]):
        self.path = path
        self.lines = lines
        self.offset = offset
        self.problems = problems
        self.fields: dict[str, Any] = {}
        self.field_lines: dict[str, int] = {}

    def line(self, elem: ET.Element) -> int | None:
        line = self.lines.get(elem)
        return None if line is None else line + self.offset

    def put(self, name: str, value: Any, elem: ET.Element) -> None:
        """Set a field once, when the source has a value for it, remembering its line."""
        if not value or name in self.fields:
            return
        self.fields[name] = value
        line = self.line(elem)
        if line is not None:
            self.field_lines[name] = line

    def _put_text(self, name: str, elem: ET.Element) -> None:
        self.put(name, _plain(elem), elem)

    def read(self, node: ET.Element) -> Record:
        if node.tag == "PubmedBookArticle":
            self._read_book(node)
        else:
            self._read_journal_article(node)
        start = self.line(node)
        if "title" not in self.fields:
            # A warning, as in the MEDLINE reader: another record for the same PMID may supply it.
            self.problems.append(
                Problem(
                    path=self.path,
                    line=start,
                    message="record has no title (ArticleTitle)",
                    hint="add a title in a YAML record with the same PMID",
                    severity="warning",
                )
            )
        if "pmid" not in self.fields:
            self.problems.append(
                Problem(path=self.path, line=start, message="record has no PMID", severity="warning")
            )
        return Record(
            fields=self.fields,
            source=SourceRef(self.path, start),
            native=False,
            field_lines=self.field_lines,
            format=FORMAT,
        )

    # PubmedArticle

    def _read_journal_article(self, node: ET.Element) -> None:
        citation = _find(node, "MedlineCitation")
        article = _find(citation, "Article")
        data = _find(node, "PubmedData")
        self._read_pmid(_find(citation, "PMID"))
        self._read_title(_find(article, "ArticleTitle"))
        self._read_abstract(_find(article, "Abstract"))
        self._read_authors(article.findall("AuthorList"), article.find("Affiliation"))
        self._read_journal(_find(article, "Journal"), _find(citation, "MedlineJournalInfo"))
        for date in article.findall("ArticleDate"):
            self.put("epublished", _pub_date(date), date)
        self._read_pages(_find(article, "Pagination"))
        self._read_elocations(article.findall("ELocationID"))
        self._read_article_ids(_find(data, "ArticleIdList"))
        self._read_language(article.findall("Language"))
        self._read_publication_types(article.findall("PublicationTypeList/PublicationType"))
        self._read_mesh(_find(citation, "MeshHeadingList"))
        self._read_substances(_find(citation, "ChemicalList"), _find(citation, "SupplMeshList"))
        self._read_keywords(citation.findall("KeywordList"))
        self._read_coi(_find(citation, "CoiStatement"))
        self._read_notices(_find(citation, "CommentsCorrectionsList"))
        self._read_history(_find(data, "History"))
        self._read_grants(_find(article, "GrantList"))
        self.put("status", (citation.get("Status") or "").strip(), citation)

    def _read_journal(self, journal: ET.Element, journal_info: ET.Element) -> None:
        """Read the journal's names and ISSNs, and the issue's volume, number and date."""
        issue = _find(journal, "JournalIssue")
        self._put_text("journal", _find(journal, "Title"))
        self._put_text("journal_abbrev", _find(journal, "ISOAbbreviation"))
        self._put_text("journal_abbrev", _find(journal_info, "MedlineTA"))
        issns = [_plain(e) for e in journal.findall("ISSN")] + [_findtext(journal_info, "ISSNLinking")]
        self.put("issn", tuple(dict.fromkeys(issn for issn in issns if issn)), _find(journal, "ISSN"))
        self._put_text("volume", _find(issue, "Volume"))
        self._put_text("issue", _find(issue, "Issue"))
        self.put("published", _pub_date(_find(issue, "PubDate")), _find(issue, "PubDate"))

    # PubmedBookArticle

    def _read_book(self, node: ET.Element) -> None:
        document = _find(node, "BookDocument")
        book = _find(document, "Book")
        data = _find(node, "PubmedBookData")
        self._read_pmid(_find(document, "PMID"))
        self._read_title(_find(document, "ArticleTitle"))
        self._read_title(_find(book, "BookTitle"))
        self._put_text("journal", _find(book, "BookTitle"))
        self._read_abstract(_find(document, "Abstract"))
        author_lists = [a for a in document.findall("AuthorList") if a.get("Type", "authors") == "authors"]
        author_lists = author_lists or [a for a in book.findall("AuthorList") if a.get("Type") == "authors"]
        self._read_authors(author_lists, None)
        self.put("published", _pub_date(_find(book, "PubDate")), _find(book, "PubDate"))
        self._put_text("volume", _find(book, "Volume"))
        self._read_pages(_find(document, "Pagination"))
        self._read_elocations(book.findall("ELocationID"))
        self._read_article_ids(_find(document, "ArticleIdList"))
        self._read_article_ids(_find(data, "ArticleIdList"))
        self._read_language(document.findall("Language"))
        self._read_publication_types(document.findall("PublicationType"))
        self._read_keywords(document.findall("KeywordList"))
        self._read_coi(_find(document, "CoiStatement"))
        self._read_history(_find(data, "History"))
        self._read_grants(_find(document, "GrantList"))
        self.put("extra", _book_extra(document, book), book)

    # Parts shared by both kinds of record

    def _read_pmid(self, elem: ET.Element) -> None:
        value = _plain(elem)
        if value and not value.isdigit():
            self.problems.append(
                Problem(
                    self.path, f"PMID is not a number: {value!r}", line=self.line(elem), severity="warning"
                )
            )
        self.put("pmid", normalize_pmid(value), elem)

    def _read_title(self, elem: ET.Element) -> None:
        text, markup = render_inline(elem)
        if not text or "title" in self.fields:
            return
        self.put("title", strip_added_period(text), elem)
        markup = _with_html(text, markup)
        self.put("title_html", strip_added_period(markup), elem)

    def _read_abstract(self, abstract: ET.Element) -> None:
        sections = []
        for part in abstract.findall("AbstractText"):
            text, markup = render_inline(part)
            if text:
                sections.append(
                    AbstractSection(
                        text=text,
                        label=(part.get("Label") or "").strip(),
                        category=(part.get("NlmCategory") or "").strip(),
                        html=_with_html(text, markup),
                    )
                )
        self.put("abstract", tuple(sections), abstract)
        self.put(
            "copyright", _findtext(abstract, "CopyrightInformation"), _find(abstract, "CopyrightInformation")
        )

    def _read_authors(self, author_lists: list[ET.Element], old_affiliation: ET.Element | None) -> None:
        authors = [
            author
            for author_list in author_lists
            for elem in author_list.findall("Author")
            if elem.get("ValidYN", "Y") != "N" and (author := _author(elem)) is not None
        ]
        # Before 2014 the XML had one Article/Affiliation: it is the first author's, as in MEDLINE AD.
        affiliation = _plain(old_affiliation)
        if authors and affiliation and not any(a.affiliations for a in authors):
            first = authors[0]
            authors[0] = Author(
                name=first.name,
                family=first.family,
                given=first.given,
                initials=first.initials,
                affiliations=(affiliation,),
                orcid=first.orcid,
                collective=first.collective,
            )
        if author_lists:
            self.put("authors", tuple(authors), author_lists[0])

    def _read_pages(self, pagination: ET.Element) -> None:
        pages = _findtext(pagination, "MedlinePgn")
        if not pages:
            first, last = _findtext(pagination, "StartPage"), _findtext(pagination, "EndPage")
            pages = f"{first}-{last}" if first and last else first
        self.put("pages", pages, pagination)

    def _read_elocations(self, elocations: list[ET.Element]) -> None:
        for elem in elocations:
            value = _plain(elem)
            if elem.get("ValidYN", "Y") == "N" or not value:
                continue
            kind = elem.get("EIdType", "")
            if kind == "doi":
                self.put("doi", normalize_doi(value), elem)
            elif kind == "pii":
                self.put("pii", value, elem)
            else:
                self.put("elocation", value, elem)

    def _read_article_ids(self, id_list: ET.Element) -> None:
        names = {"doi": "doi", "pmc": "pmcid", "pii": "pii"}
        for elem in id_list.findall("ArticleId"):
            name = names.get(elem.get("IdType", ""))
            value = _plain(elem)
            if name:
                self.put(name, normalize_doi(value) if name == "doi" else value, elem)

    def _read_publication_types(self, types: list[ET.Element]) -> None:
        if types:
            self.put("publication_types", tuple(t for t in map(_plain, types) if t), types[0])

    def _read_language(self, languages: list[ET.Element]) -> None:
        for elem in languages:
            self._put_text("language", elem)

    def _read_mesh(self, mesh_list: ET.Element) -> None:
        terms = []
        for heading in mesh_list.findall("MeshHeading"):
            descriptor = heading.find("DescriptorName")
            name = _plain(descriptor)
            if descriptor is None or not name:
                continue
            qualifiers = tuple(
                Qualifier(name=_plain(q), major=q.get("MajorTopicYN") == "Y")
                for q in heading.findall("QualifierName")
                if _plain(q)
            )
            terms.append(
                MeshTerm(
                    descriptor=name,
                    major=descriptor.get("MajorTopicYN") == "Y",
                    qualifiers=qualifiers,
                    ui=(descriptor.get("UI") or "").strip(),
                )
            )
        self.put("mesh_terms", tuple(terms), mesh_list)

    def _read_substances(self, chemicals: ET.Element, supplementary: ET.Element) -> None:
        """Take ChemicalList (MEDLINE RN) then SupplMeshList (MEDLINE NM); registry number 0 means none."""
        substances = []
        for chemical in chemicals.findall("Chemical"):
            name = _findtext(chemical, "NameOfSubstance")
            number = _findtext(chemical, "RegistryNumber")
            if name:
                substances.append(Substance(name=name, registry_number="" if number == "0" else number))
        substances += [Substance(name=n) for n in map(_plain, supplementary.findall("SupplMeshName")) if n]
        self.put("substances", tuple(substances), chemicals if len(chemicals) else supplementary)

    def _read_keywords(self, keyword_lists: list[ET.Element]) -> None:
        keywords = [render_inline(k)[0] for kl in keyword_lists for k in kl.findall("Keyword")]
        if keyword_lists:
            self.put("keywords", tuple(k for k in keywords if k), keyword_lists[0])

    def _read_coi(self, statement: ET.Element) -> None:
        self.put("conflict_of_interest", render_inline(statement)[0], statement)

    def _read_notices(self, corrections: ET.Element) -> None:
        notices = []
        for elem in corrections.findall("CommentsCorrections"):
            kind = (elem.get("RefType") or "").strip()
            if not kind or kind == "Cites":  # Cites entries are the reference list, not notices
                continue
            citation = _findtext(elem, "RefSource")
            notices.append(
                Notice(
                    kind=kind,
                    citation=citation,
                    pmid=normalize_pmid(_findtext(elem, "PMID")),
                    doi=find_doi(citation),
                )
            )
        self.put("notices", tuple(notices), corrections)

    def _read_history(self, history: ET.Element) -> None:
        dates = []
        for elem in history.findall("PubMedPubDate"):
            status = (elem.get("PubStatus") or "").strip()
            parts = [_findtext(elem, name) for name in ("Year", "Month", "Day", "Hour", "Minute")]
            date = history_date(*parts) if all(parts[:3]) else ""
            if status and date:
                dates.append(HistoryDate(status=status, date=date))
        self.put("history", tuple(dates), history)

    def _read_grants(self, grants: ET.Element) -> None:
        """Write each grant as MEDLINE GR does: `GrantID/Acronym/Agency/Country`."""
        values = []
        for grant in grants.findall("Grant"):
            parts = [_findtext(grant, name) for name in ("GrantID", "Acronym", "Agency", "Country")]
            value = "/".join(part for part in parts if part)
            if value:
                values.append(value)
        self.put("grants", tuple(values), grants)


def _author(elem: ET.Element) -> Author | None:
    """Return an Author (a person or a CollectiveName), or None when the element names nobody."""
    affiliations = tuple(a for a in map(_plain, elem.findall("AffiliationInfo/Affiliation")) if a)
    orcid = next(
        (
            normalize_orcid(_plain(i))
            for i in elem.findall("Identifier")
            if (i.get("Source") or "").upper() == "ORCID"
        ),
        "",
    )
    collective = _findtext(elem, "CollectiveName")
    if collective:
        return Author(name=collective, affiliations=affiliations, orcid=orcid, collective=True)
    family = _findtext(elem, "LastName")
    if not family:
        return None
    given = _findtext(elem, "ForeName")
    initials = _findtext(elem, "Initials")
    suffix = _findtext(elem, "Suffix")
    # Without a fore name, show the MEDLINE short form 'Smith JQ', as the MEDLINE reader does.
    name = (
        " ".join(part for part in (given, family, suffix) if part)
        if given
        else f"{family} {initials}".strip()
    )
    return Author(
        name=name, family=family, given=given, initials=initials, affiliations=affiliations, orcid=orcid
    )


def _book_extra(document: ET.Element, book: ET.Element) -> tuple[tuple[str, str], ...]:
    """Keep what a book has and Article has no field for: publisher, ISBNs, NCBI Bookshelf accession."""
    extra = [("publisher", _findtext(book, "Publisher/PublisherName"))]
    extra += [("isbn", _plain(isbn)) for isbn in book.findall("Isbn")]
    extra += [
        ("bookaccession", _plain(i))
        for i in document.findall("ArticleIdList/ArticleId")
        if i.get("IdType") == "bookaccession"
    ]
    return tuple((key, value) for key, value in extra if value)


def _pub_date(elem: ET.Element) -> PubDate:
    """Read a PubDate/ArticleDate: Year with Month and Day or Season, or a free-text MedlineDate."""
    medline_date = _findtext(elem, "MedlineDate")
    if medline_date:
        return parse_pubmed_date(medline_date)
    parts = [_findtext(elem, name) for name in ("Year", "Month", "Day")]
    season = _findtext(elem, "Season")
    if season:
        parts = [parts[0], season]
    return parse_pubmed_date(" ".join(part for part in parts if part))
