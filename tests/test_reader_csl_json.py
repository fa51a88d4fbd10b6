"""CSL-JSON reader: Better CSL JSON export, identifiers in notes, JSON that is not CSL, broken JSON."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st

from generator.errors import ReaderError
from generator.model import Author, PubDate
from generator.readers import csl_json
from generator.readers.common import ReadResult
from tests.conftest import FIXTURES, SHARED

BBT = SHARED / "realdata" / "zotero-better-bibtex"
needs_realdata = pytest.mark.skipif(not BBT.exists(), reason="shared/realdata is not on this machine")


def read_fixture(name: str) -> ReadResult:
    return csl_json.read((FIXTURES / "records" / name).read_text(encoding="utf-8"), name)


@needs_realdata
def test_better_csl_json_export():
    name = "deterministic_ordering_1178_1400.csl.json"
    result = csl_json.read((BBT / name).read_text(encoding="utf-8"), name)
    assert result.problems == []
    assert len(result.records) == 26
    first = result.records[0]
    assert first.format == "csl_json" and first.source.line == 2
    fields = first.fields
    assert fields["title"] == (
        "Perceptions of disability and their impact upon involvement in sport for people with "
        "disabilities at all levels")
    assert fields["authors"] == (Author(name="Ian Brittain", family="Brittain", given="Ian", initials="I"),)
    assert fields["journal"] == "Journal of Sport and Social Issues"
    assert fields["published"] == PubDate(year=2004)  # "date-parts": [["2004"]]
    assert (fields["volume"], fields["issue"], fields["pages"]) == ("28", "4", "429-452")  # en dash
    # "DOI": "10/fqd6hj" is a shortDOI; the full DOI is in the URL.
    assert fields["doi"] == "10.1177/0193723504268729"
    assert fields["url"] == "https://doi.org/10.1177/0193723504268729"
    assert fields["issn"] == ("0193-7235",)
    assert fields["language"] == "en"

    by_title = {r.fields["title"]: r.fields for r in result.records}
    cody = by_title["The contested terrain of alcohol sponsorship of sport in New Zealand"]
    assert cody["published"] == PubDate(year=2016, month=6, day=1)
    assert [a.name for a in cody["authors"]] == ["Kieran Cody", "Steven J. Jackson"]

    bmj = by_title["Sex, gender, and sports"]
    assert bmj["pmid"] == "30894351"
    assert bmj["issn"] == ("0959-8138", "1756-1833")
    assert bmj["pages"] == "l1120"
    assert bmj["doi"] == "10/gfzxgh"  # no DOI in its URL: the shortDOI is kept, it resolves too

    court = by_title["Semenya, ASA and IAAF: Planning update"]
    assert court["authors"] == (Author(name="Court of Arbitration for Sport", collective=True),)
    assert court["published"] == PubDate(year=2019, month=3, day=21)

    kane = by_title["Resistance/transformation of the oppositional binary: Exposing sport as a continuum"]
    assert kane["journal_abbrev"] == "Journal of Sport and Social Issues"
    assert sum("pmid" in r.fields for r in result.records) == 1


def test_identifiers_in_note_particles_and_rich_text_title():
    result = read_fixture("csl_pmid_in_note.json")
    assert result.problems == []
    (record,) = result.records
    fields = record.fields
    assert (fields["pmid"], fields["pmcid"]) == ("30894351", "PMC6420000")
    assert fields["doi"] == "10.1136/bmj.l1120"  # resolver prefix removed
    assert fields["title"] == "Sex, gender, and sports"
    assert fields["title_html"] == "Sex, gender, and <i>sports</i>"
    assert fields["authors"] == (
        Author(name="Jan van der Berg", family="van der Berg", given="Jan", initials="J"),
        Author(name="CAR-T Consortium", collective=True),
    )
    assert fields["published"] == PubDate(year=2019, month=3, day=5)  # issued.raw
    assert fields["volume"] == "364"  # a JSON number
    assert fields["journal_abbrev"] == "BMJ"
    assert fields["keywords"] == ("Sports", "Sex Factors, Gender", "Humans")


def test_json_that_is_not_csl_raises_with_what_was_expected():
    with pytest.raises(ReaderError) as caught:
        read_fixture("csl_not_csl.json")
    (problem,) = caught.value.problems
    assert "not CSL-JSON" in problem.message and "array of items" in problem.message
    assert problem.path == "csl_not_csl.json"


@pytest.mark.parametrize("text", ["", "   \n", "not json at all", "[1, 2, 3]", '[{"name": "x"}]', '"a string"'])
def test_other_non_csl_text_raises_reader_error(text):
    with pytest.raises(ReaderError):
        csl_json.read(text, "x.json")


def test_truncated_file_keeps_the_items_before_the_error():
    result = read_fixture("csl_truncated.json")
    assert [r.fields["title"] for r in result.records] == ["First item", "Second item"]
    assert [r.source.line for r in result.records] == [2, 3]
    assert result.records[0].fields["published"] == PubDate(year=2020, month=1, day=2)
    (problem,) = result.problems
    assert problem.line == 4 and problem.message.startswith("invalid JSON")


def test_single_item_object_and_string_date_parts():
    (record,) = read_fixture("csl_single_item.json").records
    assert record.fields == {
        "title": "A single item, not in an array",
        "published": PubDate(year=2021, month=11),
        "pmcid": "PMC123",
    }


def test_items_wrapper_and_odd_value_types():
    text = json.dumps({"items": [{"type": "article-journal", "title": ["not", "a", "string"],
                                  "author": "nobody", "issued": {"date-parts": [["x"]]},
                                  "PMID": 12345, "page": 7, "keyword": 3}]})
    (record,) = csl_json.read(text, "x.json").records
    assert record.fields == {"pmid": "12345", "pages": "7", "keywords": ("3",)}


def test_non_item_values_in_the_array_are_problems():
    text = '[{"type": "article-journal", "title": "Kept"}, 42, {"unrelated": true}]'
    result = csl_json.read(text, "x.json")
    assert [r.fields["title"] for r in result.records] == ["Kept"]
    assert len(result.problems) == 2


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_arbitrary_text_never_crashes(text):
    try:
        result = csl_json.read(text, "any.json")
    except ReaderError:
        return
    assert isinstance(result, ReadResult)


_KEYS = st.sampled_from(sorted(csl_json.CSL_KEYS | {"note", "keyword", "literal", "family", "given",
                                                   "date-parts", "raw", "items", "language"}))
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_KEYS, children, max_size=6),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(_JSON)
def test_arbitrary_json_never_crashes(value):
    try:
        result = csl_json.read(json.dumps(value), "any.json")
    except ReaderError:
        return
    assert isinstance(result, ReadResult)
