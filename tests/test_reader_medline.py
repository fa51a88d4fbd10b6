"""MEDLINE reader: the rispy and bioruby real files, every DP form, structured abstracts, notices,
broken input, and arbitrary text that must never raise anything but ReaderError."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from generator.errors import Problem, ReaderError
from generator.model import (
    AbstractSection,
    Article,
    Author,
    HistoryDate,
    MeshTerm,
    Notice,
    PubDate,
    Qualifier,
    Substance,
)
from generator.readers import medline, read_text, reader_for
from generator.readers.common import ReadResult
from tests.conftest import FIXTURES, SHARED

REALDATA = SHARED / "realdata"
needs_realdata = pytest.mark.skipif(not REALDATA.exists(), reason="shared/realdata is not on this machine")
ARTICLE_FIELDS = {field.name for field in dataclasses.fields(Article)}


def read_real(name: str) -> ReadResult:
    return medline.read((REALDATA / name).read_text(encoding="utf-8"), name)


def read_fixture(name: str) -> ReadResult:
    # Bytes, not read_text: universal newlines would hide the CRLF case.
    return medline.read((FIXTURES / "records" / name).read_bytes().decode("utf-8"), name)


def assert_well_typed(result: ReadResult) -> None:
    """Every record uses Article field names, tuples not lists, and no empty values."""
    for record in result.records:
        assert set(record.fields) <= ARTICLE_FIELDS
        assert record.format == "medline" and record.native is False
        for name, value in record.fields.items():
            assert value, name
            assert not isinstance(value, list), name


# Real files


@needs_realdata
def test_rispy_file_gives_ten_records_at_their_lines():
    result = read_real("rispy/example_pubmed.txt")
    assert result.problems == []
    assert [r.source.line for r in result.records] == [1, 114, 252, 356, 431, 553, 648, 740, 838, 960]
    assert [r.fields["pmid"] for r in result.records][:3] == ["30922926", "37068225", "36448670"]
    assert_well_typed(result)


@needs_realdata
def test_rispy_first_record_fields():
    record = read_real("rispy/example_pubmed.txt").records[0]
    fields = record.fields
    assert fields["title"] == "Time lapse: A glimpse into prehistoric genomics"
    assert fields["published"] == PubDate(year=2020, month=2)
    assert fields["epublished"] == PubDate(year=2019, month=3, day=25)
    assert fields["doi"] == "10.1016/j.ejmg.2019.03.004"
    assert fields["pii"] == "S1769-7212(19)30059-X"
    assert fields["elocation"] == "103640"
    assert (fields["volume"], fields["issue"], fields["pages"]) == ("63", "2", "103640")
    assert fields["issn"] == ("1878-0849", "1769-7212")
    assert fields["journal"] == "European journal of medical genetics"
    assert fields["journal_abbrev"] == "Eur J Med Genet"
    assert (
        fields["copyright"]
        == "Copyright © 2019 The Authors. Published by Elsevier Masson SAS.. All rights reserved."
    )
    assert fields["publication_types"] == ("Historical Article", "Journal Article", "Review")
    assert fields["pmcid"] == "PMC7026692"
    assert fields["status"] == "MEDLINE"
    assert fields["language"] == "eng"
    assert fields["keywords"] == ("Chromosome", "Comparative", "Dinosaur", "Genome evolution", "Karyotype")
    assert fields["grants"] == (
        "BB/E010652/1/BB_/Biotechnology and Biological Sciences Research Council/United Kingdom",
    )
    assert fields["history"][0] == HistoryDate(status="received", date="2019-01-21")
    assert HistoryDate(status="pubmed", date="2019-03-30T06:00") in fields["history"]
    assert (
        MeshTerm(descriptor="Genomics", major=True, qualifiers=(Qualifier("history"),))
        in fields["mesh_terms"]
    )
    assert fields["authors"][0] == Author(
        name="Darren K Griffin",
        family="Griffin",
        given="Darren K",
        initials="DK",
        affiliations=(
            "School of Biosciences, University of Kent, Canterbury, CT2 7NJ, UK. "
            "Electronic address: d.k.griffin@kent.ac.uk.",
        ),
    )
    (abstract,) = fields["abstract"]
    assert abstract.label == "" and abstract.text.startswith("For the purpose of this review, 'time-lapse'")
    assert (
        "reconstruction of ancestral (in this case dinosaur)" in abstract.text
    )  # continuation joined with one space
    assert record.field_lines["title"] == 12 and record.field_lines["abstract"] == 17


@needs_realdata
def test_rispy_second_record_orcids_affiliations_and_comment():
    fields = read_real("rispy/example_pubmed.txt").records[1].fields
    authors = fields["authors"]
    assert authors[0].name == "Enrique Peñalver" and authors[0].orcid == "0000-0001-8312-6087"
    assert authors[1].family == "Peris" and len(authors[1].affiliations) == 3
    assert authors[3].orcid == ""  # Grimaldi has no AUID line
    assert authors[9].orcid == "0000-0003-3065-119X"
    assert authors[10].family == "Pérez-de la Fuente" and authors[10].initials == "R"
    assert fields["notices"] == (
        Notice(
            kind="CommentIn",
            citation="Nature. 2023 Apr;616(7958):632. doi: 10.1038/d41586-023-01282-9.",
            pmid="37081273",
            doi="10.1038/d41586-023-01282-9",
        ),
    )
    assert fields["substances"] == (Substance(name="Amber"),)
    assert fields["conflict_of_interest"] == "The authors declare no competing interest."
    assert fields["published"] == PubDate(year=2023, month=4, day=25)
    assert fields["doi"] == "10.1073/pnas.2217872120"
    assert fields["pii"] == "202217872"  # from AID: no LID has [pii]
    assert fields["elocation"] == "e2217872120"


@needs_realdata
def test_bioruby_mesh_with_two_qualifiers_a_star_and_a_wrapped_line():
    result = read_real("bioruby/20146148_modified.txt")
    assert result.problems == []
    (record,) = result.records
    mesh = record.fields["mesh_terms"]
    assert mesh[0] == MeshTerm(
        descriptor="Accidents, Traffic",
        qualifiers=(Qualifier("mortality"), Qualifier("statistics & numerical data", major=True)),
    )
    motorcycles = next(term for term in mesh if term.descriptor == "Motorcycles")
    assert (
        motorcycles.label
        == "Motorcycles/classification/legislation & jurisprudence/*statistics & numerical data"
    )
    assert motorcycles.is_major_topic and not motorcycles.major
    assert len(mesh) == 14


@needs_realdata
def test_bioruby_old_style_fields():
    fields = read_real("bioruby/20146148_modified.txt").records[0].fields
    assert fields["title"] == (
        "With power comes responsibility: motorcycle engine power and power-to-weight ratio "
        "in relation to accident risk"
    )
    # The AD line comes before the authors in this older record: it is the first author's.
    assert fields["authors"][0].affiliations == (
        "Traffic Research Unit, Department of Psychology, University of Helsinki, Finland. markus.mattsson@helsinki.fi",
    )
    assert fields["authors"][1] == Author(
        name="Heikki Summala", family="Summala", given="Heikki", initials="H"
    )
    assert (fields["doi"], fields["pii"]) == ("10.1080/15389580903471126", "919158438")
    assert fields["issn"] == ("1538-957X", "1538-9588")
    assert fields["published"] == PubDate(year=2010, month=2)
    assert "elocation" not in fields and "pmcid" not in fields


@needs_realdata
def test_txt_starting_with_pmid_is_sniffed_as_medline():
    text = (REALDATA / "rispy/example_pubmed.txt").read_text(encoding="utf-8")
    assert reader_for(".txt", text) == "medline"
    assert len(read_text("medline", text, "x.txt").records) == 10


# Fixtures


def test_structured_abstract_is_split_into_labelled_sections():
    result = read_fixture("medline_structured_abstract.nbib")
    assert result.problems == []
    (record,) = result.records
    assert record.source.line == 2  # after the leading blank line
    sections = record.fields["abstract"]
    assert [s.label for s in sections] == [
        "BACKGROUND",
        "OBJECTIVE",
        "METHODS",
        "RESULTS",
        "CONCLUSIONS AND RELEVANCE",
        "TRIAL REGISTRATION",
    ]
    assert sections[1].text == "To test whether early peanut feeding changes eczema severity over one year."
    # An acronym before a colon after a sentence end is not a label.
    assert sections[3].text.endswith("HIV: not relevant here; the NIH: funded part of the work.")
    assert sections[5].text == "ClinicalTrials.gov NCT01234567."


def test_structured_fixture_other_fields():
    fields = read_fixture("medline_structured_abstract.nbib").records[0].fields
    assert (
        fields["title"]
        == "Does early peanut exposure change the course of atopic dermatitis? A randomized trial"
    )
    assert fields["issn"] == ("1097-4180", "0091-6749")
    assert fields["authors"] == (
        Author(
            name="Anna-Karin Lindqvist",
            family="Lindqvist",
            given="Anna-Karin",
            initials="AK",
            affiliations=("Department of Paediatrics, Example University Hospital, Uppsala, Sweden.",),
            orcid="0000-0002-1825-0097",
        ),
        Author(
            name="Mateo J de la Cruz",
            family="de la Cruz",
            given="Mateo J",
            initials="MJ",
            affiliations=(
                "Allergy Unit, Hospital Ejemplo, Madrid, Spain.",
                "Centre for Food Allergy Research, Example Institute, Lisbon, Portugal.",
            ),
            orcid="0000-0002-1694-233X",
        ),
        Author(name="PEANUT-ECZEMA Study Group", collective=True),
    )
    assert fields["substances"] == (
        Substance(name="Allergens"),
        Substance(name="Serine Endopeptidases", registry_number="EC 3.4.21.-"),
        Substance(name="peanut allergen Ara h 2"),
    )
    assert fields["mesh_terms"][0].label == "Allergens/*administration & dosage/immunology"
    assert fields["mesh_terms"][-1] == MeshTerm(descriptor="Peanut Hypersensitivity", major=True)
    assert fields["conflict_of_interest"] == "The authors declare no conflicts of interest."
    assert fields["history"] == (
        HistoryDate("received", "2019-05-02"),
        HistoryDate("accepted", "2019-11-04"),
        HistoryDate("pubmed", "2019-11-24T06:00"),
    )


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
def test_every_dp_form(index: int, expected: PubDate):
    result = read_fixture("medline_dates.nbib")
    assert result.problems == []
    assert result.records[index].fields["published"] == expected


def test_dp_display_keeps_ranges_and_seasons():
    dates = [r.fields["published"] for r in read_fixture("medline_dates.nbib").records]
    assert [d.display for d in dates] == [
        "2006",
        "2020 Feb",
        "2006 Mar 1",
        "2013 Jan-Mar",
        "2000 Winter",
        "1998 Dec-1999 Jan",
    ]
    assert [d.iso for d in dates] == ["2006", "2020-02", "2006-03-01", "2013-01", "2000-12", "1998-12"]


def test_notices_wrapped_pmid_and_retraction():
    result = read_fixture("medline_notices_retracted.nbib")
    assert result.problems == []
    fields = result.records[0].fields
    assert fields["notices"] == (
        Notice(
            "RetractionIn",
            "Example Clin Res. 2014 Jun;9(2):101. doi: 10.5555/ecr.2014.0101.",
            "24999001",
            "10.5555/ecr.2014.0101",
        ),
        Notice("ErratumIn", "Example Clin Res. 2013 May;8(2):77.", "23888002"),
        Notice(
            "ExpressionOfConcernIn",
            "Example Clin Res. 2014 Jan;9(1):5. doi: 10.5555/ecr.2014.0005.",
            "",
            "10.5555/ecr.2014.0005",
        ),
        Notice("CommentOn", "Gut. 2012 Dec;61(12):1700-8.", "22777003"),
        Notice("SummaryForPatientsIn", "Example Patient Summ. 2013;1:3"),
    )
    assert fields["authors"][1] == Author(name="Colitis Cohort Investigators", collective=True)
    assert fields["grants"][1] == "099999/Z/12/Z/WT_/Wellcome Trust/United Kingdom"
    assert fields["status"] == "Publisher"
    assert "Retracted Publication" in fields["publication_types"]


def test_record_without_title_is_reported_and_the_next_is_kept():
    result = read_fixture("medline_missing_title.nbib")
    assert result.problems == [
        Problem(
            "medline_missing_title.nbib",
            "record has no title (TI)",
            line=1,
            hint=medline.TITLE_HINT,
            severity="warning",
        )
    ]
    assert [r.fields["pmid"] for r in result.records] == ["30000001", "30000002"]
    assert "title" not in result.records[0].fields
    assert result.records[1].fields["title"] == "The record after the broken one is still read"
    assert result.records[1].source.line == 7


def test_malformed_lines_are_reported_with_their_line():
    result = read_fixture("medline_malformed_lines.nbib")
    assert [(p.line, p.message, p.severity) for p in result.problems] == [
        (3, "continuation line with no field before it", "error"),
        (6, "not a MEDLINE 'TAG - value' line: 'this line is not a MEDLINE field'", "error"),
        (11, "DP has no year: 'someday'", "warning"),
    ]
    records = result.records
    assert [r.source.line for r in records] == [4, 9, 12]
    assert records[0].fields["abstract"] == (
        AbstractSection("The abstract is still read after the bad line."),
    )
    assert records[1].fields["published"] == PubDate(raw="someday")
    assert records[2].fields["title"] == "Third record starts without a blank line before it"


def test_old_records_with_au_only_and_a_book_record():
    first, book = read_fixture("medline_old_authors_book.nbib").records
    assert first.fields["authors"] == (
        Author(
            name="Walsh MT",
            family="Walsh",
            initials="MT",
            affiliations=("Department of Physiology, Example College, Dublin, Ireland.",),
        ),
        Author(name="Byrne P", family="Byrne", initials="P"),
        Author(name="Madonna", family="Madonna"),
    )
    assert first.fields["authors"][0].short == "Walsh MT"
    assert book.fields["title"] == book.fields["journal"] == "Example Reviews in Genetic Medicine"
    assert book.fields["published"] == PubDate(year=2010)


def test_crlf_and_bom_read_like_plain_newlines():
    result = read_fixture("medline_crlf_bom.nbib")
    assert result.problems == []
    first, second = result.records
    assert first.fields["title"] == "A file saved on Windows, with a byte order mark"
    assert first.fields["pmid"] == "50000001"
    assert second.fields["title"] == "Second Windows record?"  # '?' is kept
    assert second.source.line == 8


def test_title_keeps_question_and_exclamation_marks_and_ellipsis():
    assert medline.strip_added_period("Is it?") == "Is it?"
    assert medline.strip_added_period("Stop!") == "Stop!"
    assert medline.strip_added_period("And then...") == "And then..."
    assert medline.strip_added_period("A title.") == "A title"


def test_empty_values_are_not_set():
    result = medline.read("PMID- 1\nTI  - A title\nAB  -\nJT  - \nOT  - \n", "x.nbib")
    assert result.records[0].fields == {"pmid": "1", "title": "A title"}


def test_unknown_tags_are_ignored_silently():
    result = medline.read("PMID- 1\nTI  - A title\nZZZ - something new\nSO  - Src. 2001.\n", "x.nbib")
    assert result.problems == [] and set(result.records[0].fields) == {"pmid", "title"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no MEDLINE records found (the file is empty)"),
        ("\n\n  \n", "no MEDLINE records found (the file is empty)"),
        (
            "This is a letter, not a MEDLINE export.\nIt has two lines.\n",
            "not a MEDLINE file: no 'TAG - value' lines",
        ),
    ],
)
def test_a_file_that_is_not_medline_raises_reader_error(text: str, message: str):
    with pytest.raises(ReaderError) as info:
        medline.read(text, "notes.nbib")
    assert info.value.problems[0].message == message
    assert info.value.problems[0].path == "notes.nbib"


# Structured abstract splitting


@pytest.mark.parametrize(
    "text",
    [
        "HIV: a review of what we know. It is long.",  # a lone acronym is not a label
        "We studied mice. METHODS were standard: nothing else.",  # label not followed by ': '
        "Results were good. BACKGROUND: this is not at the start so nothing splits.",
        "COVID-19: lessons from the first wave. OUTCOMES: varied.",  # digits: an acronym, not a label
    ],
)
def test_ordinary_text_is_not_split(text: str):
    assert medline.split_abstract(text) == (AbstractSection(text=text),)


def test_single_known_label_and_slash_labels():
    assert medline.split_abstract("PURPOSE: To see.") == (AbstractSection("To see.", label="PURPOSE"),)
    sections = medline.split_abstract(
        "AIMS/HYPOTHESIS: One. DESIGN, SETTING, AND PARTICIPANTS: Two. INTERVENTION(S): Three."
    )
    assert [s.label for s in sections] == [
        "AIMS/HYPOTHESIS",
        "DESIGN, SETTING, AND PARTICIPANTS",
        "INTERVENTION(S)",
    ]
    assert [s.text for s in sections] == ["One.", "Two.", "Three."]


def test_orcid_forms():
    assert medline.normalize_orcid("ORCID: 0000-0001-8312-6087") == "0000-0001-8312-6087"
    assert medline.normalize_orcid("ORCID: https://orcid.org/0000-0003-3065-119x") == "0000-0003-3065-119X"
    assert medline.normalize_orcid("ORCID: 000000021694233X") == "0000-0002-1694-233X"
    assert medline.normalize_orcid("ISNI: 12") == ""


# Robustness


def check_never_crashes(text: str) -> None:
    try:
        result = medline.read(text, "fuzz.nbib")
    except ReaderError:
        return
    assert isinstance(result, ReadResult)
    assert_well_typed(result)
    for problem in result.problems:
        assert problem.path == "fuzz.nbib"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_arbitrary_text_returns_a_result_or_raises_reader_error(text: str):
    check_never_crashes(text)


_TAG_LINES = st.sampled_from(
    [
        "PMID- ",
        "TI  - ",
        "AB  - ",
        "FAU - ",
        "AU  - ",
        "AD  - ",
        "AUID- ORCID: ",
        "CN  - ",
        "DP  - ",
        "LID - ",
        "AID - ",
        "MH  - ",
        "RN  - ",
        "PHST- ",
        "CIN - ",
        "RIN - ",
        "IS  - ",
        "      ",
        "\n",
        "\r\n",
        "BTI - ",
    ]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_TAG_LINES, st.text(max_size=40)), max_size=30))
def test_arbitrary_tag_soup_returns_a_result_or_raises_reader_error(lines: list[tuple[str, str]]):
    check_never_crashes("\n".join(tag + value for tag, value in lines))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_fixture_returns_a_result_or_raises_reader_error(data: st.DataObject):
    text = (FIXTURES / "records" / "medline_structured_abstract.nbib").read_text(encoding="utf-8")
    for _ in range(data.draw(st.integers(1, 5))):
        start = data.draw(st.integers(0, len(text)))
        end = data.draw(st.integers(start, min(len(text), start + 80)))
        text = text[:start] + data.draw(st.text(max_size=20)) + text[end:]
    check_never_crashes(text)
