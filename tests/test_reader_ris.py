"""RIS reader: the rispy real-world files, Zotero's conventions, legacy tags, broken input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from generator.errors import ReaderError
from generator.model import Author, PubDate
from generator.readers import ris
from generator.readers.common import ReadResult
from tests.conftest import FIXTURES, SHARED

RISPY = SHARED / "realdata" / "rispy"
needs_realdata = pytest.mark.skipif(not RISPY.exists(), reason="shared/realdata is not on this machine")


def read_real(name: str) -> ReadResult:
    return ris.read((RISPY / name).read_text(encoding="utf-8"), name)


def read_fixture(name: str) -> ReadResult:
    return ris.read((FIXTURES / "records" / name).read_text(encoding="utf-8"), name)


def shannon(fields: dict) -> None:
    assert fields["title"] == "A Mathematical Theory of Communication"
    assert fields["authors"] == (
        Author(name="Claude E. Shannon", family="Shannon", given="Claude E.", initials="CE"),
    )
    assert fields["journal"] == "Bell System Technical Journal"
    assert fields["published"] == PubDate(year=1948, month=7)
    assert (fields["volume"], fields["pages"]) == ("27", "379-423")


@needs_realdata
def test_basic_record():
    result = read_real("example_basic.ris")
    assert result.problems == []
    (record,) = result.records
    shannon(record.fields)
    assert record.format == "ris" and record.native is False
    assert (record.source.path, record.source.line) == ("example_basic.ris", 1)
    assert record.field_lines["title"] == 4 and record.field_lines["pages"] == 6


@needs_realdata
def test_leading_blank_lines_shift_the_record_line():
    (record,) = read_real("example_starting_newlines.ris").records
    shannon(record.fields)
    assert record.source.line == 3


@needs_realdata
def test_bom_before_the_first_tag():
    result = read_real("example_bom.ris")
    assert result.problems == []
    (record,) = result.records
    assert record.fields == {"doi": "10.1186/s40981-020-0316-0"}


@needs_realdata
def test_bom_and_cyrillic_text():
    (record,) = read_real("example_utf_chars.ris").records
    fields = record.fields
    assert [a.family for a in fields["authors"]] == [
        "Dobrokhotova", "Yusupova", "Ozerova", "Fayzullin", "Karnaukhov"]
    assert fields["authors"][0] == Author(
        name="Yu E. Dobrokhotova", family="Dobrokhotova", given="Yu E.", initials="YE")
    assert fields["journal"] == "Gynecology, Obstetrics and Perinatology"
    assert (fields["volume"], fields["issue"], fields["pages"]) == ("8", "3", "52-57")  # VO, not VL
    assert fields["published"] == PubDate(year=2009)
    # No TI: the short title (ST) is the only title this record has.
    assert fields["title"].startswith("Состояние рецепторного аппарата эндометрия")
    abstract = fields["abstract"][0].text
    assert abstract.startswith("Состояние рецепторного")
    assert abstract.endswith("estrogen metabolism in endometrial hyperplasia in the late reproductive period")


@needs_realdata
def test_empty_tag_and_embase_names():
    result = read_real("example_empty_tag.ris")
    assert result.problems == []
    fields = result.records[0].fields
    assert fields["title"].startswith("Outcome Measures After Shoulder Stabilization in the Athletic")
    assert fields["authors"] == (Author(name="E. Fanning", family="Fanning", given="E.", initials="E"),)
    assert fields["published"] == PubDate(year=2020)
    assert fields["journal"] == "Orthopaedic Journal of Sports Medicine"
    assert fields["journal_abbrev"] == "Orthop. J. Sports Med."
    assert (fields["volume"], fields["issue"]) == ("8", "9")
    assert "pages" not in fields  # `SP  -` is empty
    assert fields["issn"] == ("2325-9671",)
    assert fields["doi"] == "10.1177/2325967120950040"  # from `http://dx.doi.org/...`
    assert fields["keywords"] == ("*athlete", "biomechanics", "bone remodeling")
    # The N2 continuation line belongs to the abstract.
    assert fields["abstract"][0].text.endswith(
        "considerable repetition. Outcome measures are valuable when determining an athlete's safe return to sport...")


@needs_realdata
def test_endnote_continuation_lines_are_more_values():
    fields = read_real("example_endnote.ris").records[0].fields
    assert fields["title"] == "EndNote: The Only Reference I Can Remember"
    assert [a.name for a in fields["authors"]] == ["A. Nonymous Smith", "J. Doe", "N. Ote End", "E. Rence Ref"]
    assert fields["keywords"] == (
        "citation", "reference", "library", "wizardry", "coffee", "procrastination", "EndNote", "RIS")
    assert fields["issn"] == ("0000-0000", "9999-9999")
    assert fields["doi"] == "10.1234/endnote.joke.2024"
    assert fields["url"] == "https://www.endnote.com/"
    assert fields["journal"] == "Journal of Reference Management"
    assert (fields["volume"], fields["issue"], fields["pages"]) == ("1", "42", "1-2")
    assert fields["language"] == "English"
    assert fields["published"] == PubDate(year=2024)
    assert "pmid" not in fields  # M3 `Article` is EndNote's type of work, not a DOI


@needs_realdata
@pytest.mark.parametrize("name", ["example_full.ris", "example_extraneous_data.ris"])
def test_two_records_with_junk_around_them(name):
    result = read_real(name)
    assert result.problems == []
    first, second = result.records
    assert first.fields["title"] == "Title of reference"
    assert [a.name for a in first.fields["authors"]] == ["Karl Marx", "Astrid Lindgren"]  # A2 is an editor
    assert first.fields["published"] == PubDate(year=2014)
    assert first.fields["abstract"][0].text.startswith("BACKGROUND: Lorem ipsum dolor sit amet")
    assert first.fields["keywords"] == ("Pippi", "Nordwind", "Piraten")
    assert (first.fields["journal"], first.fields["journal_abbrev"]) == ("Lorem", "lorem")
    assert (first.fields["volume"], first.fields["issue"], first.fields["pages"]) == ("9", "3", "e0815")
    assert first.fields["issn"] == ("1932-6208",)
    assert first.fields["url"] == "http://example_url.com"
    assert second.fields["title"] == "The title of the reference"
    assert second.fields["keywords"] == ("Pippi Langstrumpf", "Nordwind", "Piraten")
    assert second.fields["published"] == PubDate(year=2006)
    expected_lines = {"example_full.ris": (2, 27), "example_extraneous_data.ris": (5, 33)}[name]
    assert (first.source.line, second.source.line) == expected_lines


@needs_realdata
def test_er_inside_a_continuation_line_does_not_end_the_record():
    result = read_real("example_multiline.ris")
    assert result.problems == []
    assert len(result.records) == 3
    for record in result.records:
        assert record.fields["abstract"][0].text == (
            "first line, ER then second line and at the end the last line")
    assert [r.source.line for r in result.records] == [1, 8, 17]


@needs_realdata
def test_url_variants():
    records = read_real("example_urls.ris").records
    assert len(records) == 4
    assert [r.fields["url"] for r in records] == ["http://example.com"] * 4
    for record in records:
        shannon(record.fields)


@needs_realdata
def test_web_of_science_file_is_read_leniently():
    result = read_real("example_wos.ris")
    assert result.problems == []
    first, second = result.records
    fields = first.fields
    assert fields["title"] == (
        "Interactions stabilizing the structure of the core light-harvesting complex (LHl) of "
        "photosynthetic bacteria and its subunit (B820)")
    assert [a.short for a in fields["authors"]] == [
        "Parkes-Loach PS", "Majeed AP", "Law CJ", "Loach PA"]
    assert (fields["journal"], fields["journal_abbrev"]) == ("BIOCHEMISTRY", "Biochemistry")
    assert fields["published"] == PubDate(year=2004, month=6, day=8)
    assert (fields["volume"], fields["issue"], fields["pages"]) == ("43", "22", "7003-7016")
    assert (fields["doi"], fields["pmid"]) == ("10.1021/bi049798f", "15170338")
    assert fields["issn"] == ("0006-2960",)
    assert fields["keywords"][:2] == ("CHEMICALLY SYNTHESIZED POLYPEPTIDES", "IN-VITRO RECONSTITUTION")
    assert fields["abstract"][0].text.startswith("Reconstitution experiments with a chemically synthesized")
    assert fields["language"] == "English"
    assert first.format == "ris" and first.source.line == 3
    assert (second.fields["doi"], second.fields["pmid"], second.fields["pages"]) == (
        "10.1021/bi0497291", "15170339", "7017-7027")


def test_zotero_export_with_pmid_in_extra():
    result = read_fixture("ris_zotero_extra_pmid.ris")
    assert result.problems == []
    fields = result.records[0].fields
    assert fields["pmid"] == "40561659"  # M2  - PMID: ...
    assert fields["pmcid"] == "PMC1234567"  # N1  - PMCID: ...
    assert fields["doi"] == "10.1016/j.coi.2025.102596"  # only in the doi.org URL
    assert fields["published"] == PubDate(year=2025, month=6, day=24)  # DA beats PY
    assert fields["authors"] == (
        Author(name="Jürgen Müller", family="Müller", given="Jürgen", initials="J"),
        Author(name="Ana-Marija Šimić", family="Šimić", given="Ana-Marija", initials="AM"),
        Author(name="CAR-T Consortium", collective=True),
    )
    assert fields["keywords"] == ("CAR T cells", "Lupus Erythematosus, Systemic")
    assert (fields["journal"], fields["journal_abbrev"]) == ("Current Opinion in Immunology", "Curr Opin Immunol")
    assert fields["language"] == "eng"


def test_legacy_tags():
    fields = read_fixture("ris_legacy_tags.ris").records[0].fields
    assert fields["title"] == "Outcome measures after shoulder stabilization"
    assert fields["authors"][1] == Author(name="World Health Organization", collective=True)
    assert fields["published"] == PubDate(year=2019)  # Y1  - 2019///
    assert fields["journal"] == "Orthopaedic Journal of Sports Medicine"  # JO
    assert fields["doi"] == "10.1177/2325967120950040"  # M3 holding a DOI
    assert fields["pmid"] == "31234567"  # AN  - PMID: ...
    assert fields["pages"] == "100-110"
    assert fields["abstract"][0].text == "First line of the abstract and its continuation."


def test_missing_er_lines_are_warnings_and_records_are_kept():
    result = read_fixture("ris_unterminated.ris")
    assert [r.fields["title"] for r in result.records] == [
        "First record without an end tag", "Second record, cut off at the end of the file"]
    assert [(p.line, p.severity) for p in result.problems] == [(1, "warning"), (4, "warning")]


def test_crlf_line_ends_and_single_space_separator():
    text = "TY - JOUR\r\nTI  - Windows line ends\r\nDA  - 2019/03/05/\r\nER  - \r\n"
    (record,) = ris.read(text, "crlf.ris").records
    assert record.fields == {"title": "Windows line ends", "published": PubDate(2019, 3, 5)}


def test_isbn_in_sn_is_not_an_issn():
    text = "TY  - BOOK\nTI  - A book\nSN  - 0-7695-2191-6\nSN  - 1234-567x (print)\nER  - \n"
    (record,) = ris.read(text, "book.ris").records
    assert record.fields["issn"] == ("1234-567X",)


def test_text_without_records_is_a_problem():
    result = ris.read("just some notes\nnot RIS at all\n", "notes.ris")
    assert result.records == []
    assert result.problems[0].message == "no RIS record found"


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_arbitrary_text_never_crashes(text):
    try:
        result = ris.read(text, "any.ris")
    except ReaderError:
        return
    assert isinstance(result, ReadResult)


_PIECES = st.sampled_from(["TY  - JOUR\n", "ER  - \n", "ER  -", "AU  - ", "PY  - ", "DA  - ", "SP  - ",
                           "EP  - ", "KW  - ", "M2  - PMID: ", "UR  - https://doi.org/", "PT J\n", "FN x\n",
                           "   ", "\n", "/", ",", "12", "2019", "\ufeff", "é", "x"])


@settings(max_examples=300, deadline=None)
@given(st.lists(_PIECES, max_size=60).map("".join))
def test_arbitrary_tag_soup_never_crashes(text):
    try:
        result = ris.read(text, "soup.ris")
    except ReaderError:
        return
    assert isinstance(result, ReadResult)
