"""The PubMed abstract page saved as text: the seed's layout."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from generator.errors import ReaderError
from generator.model import LinkOutSection, Notice, Qualifier
from generator.readers import pubmed_page
from generator.readers.common import ReadResult
from tests.conftest import FIXTURES, SEED


def read_fixture(name: str):
    result = pubmed_page.read((FIXTURES / "records" / name).read_text(encoding="utf-8"), name)
    assert result.problems == []
    (record,) = result.records
    return record.fields


@pytest.mark.skipif(not SEED.exists(), reason="the seed record is not on this machine")
def test_seed_keeps_every_field():
    result = pubmed_page.read(SEED.read_text(encoding="utf-8"), "seed.txt")
    assert result.problems == []
    fields = result.records[0].fields
    assert fields["title"] == "Chimeric antigen receptor T cell therapy for autoimmune diseases"
    assert fields["pmid"] == "40561659"
    assert fields["doi"] == "10.1016/j.coi.2025.102596"
    (abstract,) = fields["abstract"]
    assert abstract.text.startswith("Autoimmune diseases represent a significant global health burden")
    assert abstract.text.endswith("to realize its full clinical applicability.")
    assert fields["copyright"] == "Copyright © 2025 Elsevier Ltd. All rights reserved."
    assert fields["conflict_of_interest"] == "Declaration of Competing Interest Nothing to report."
    similar = fields["similar"]
    assert [s.pmid for s in similar] == ["40755780", "40873568", "40562292", "40771804", "39600090"]
    first = similar[0]
    assert first.title == "CAR T-cells meet autoimmune neurological diseases: a new dawn for therapy"
    assert (first.journal, first.date, first.citation) == ("Front Immunol", "2025 Jul 18", "16:1604174")
    assert first.doi == "10.3389/fimmu.2025.1604174"
    assert first.free_pmc and first.review
    third = similar[2]
    assert third.title.startswith("Chimeric antigen receptor cell therapy: A revolutionary approach")
    assert (third.journal, third.citation, third.doi) == ("Autoimmun Rev", "24(9):103859", "10.1016/j.autrev.2025.103859")
    assert not third.free_pmc and third.review
    last = similar[4]
    assert (last.journal, last.date, last.citation) == ("Mol Ther", "2025 Jun 4", "33(6):2368-2390")
    # The seed's sections are present but empty; LinkOut has two categories without providers.
    assert "publication_types" not in fields and "mesh_terms" not in fields and "substances" not in fields
    assert fields["linkout"] == (LinkOutSection("Full Text Sources"), LinkOutSection("Medical"))


def test_structured_abstract_sections_and_lists():
    fields = read_fixture("pubmed_page_structured.txt")
    assert fields["pmcid"] == "PMC7654321"
    assert [s.label for s in fields["abstract"]] == ["Background", "Methods", "Results", "Conclusions"]
    assert fields["abstract"][1].text == "Twelve patients received low doses of interleukin-2 for twelve weeks."
    assert fields["keywords"] == ("interleukin-2", "regulatory T cells", "lupus")
    assert fields["copyright"] == "Copyright © 2024 The Authors."
    # Both list-item forms: '- item' and a lone '-' followed by the item.
    assert fields["publication_types"] == ("Clinical Trial", "Journal Article")
    mesh = fields["mesh_terms"]
    assert mesh[1].descriptor == "Interleukin-2"
    assert mesh[1].qualifiers == (Qualifier("administration & dosage", True), Qualifier("therapeutic use", False))
    assert mesh[3].major and mesh[3].descriptor == "T-Lymphocytes, Regulatory"
    assert [s.name for s in fields["substances"]] == ["Interleukin-2"]
    assert fields["linkout"] == (
        LinkOutSection("Full Text Sources", ("Europe PubMed Central",)),
        LinkOutSection("Medical", ("MedlinePlus Health Information",)),
    )
    assert fields["notices"] == (
        Notice(kind="CommentIn", citation="Low-dose IL-2: hope or hype? Lupus Sci Med. 2024;11:e001.",
               pmid="33333333"),
    )


def test_similar_title_ending_in_question_mark_and_no_day():
    fields = read_fixture("pubmed_page_structured.txt")
    second = fields["similar"][1]
    assert second.title == "Is interleukin-2 the answer?"
    assert (second.journal, second.date, second.citation) == ("Autoimmun Rev", "2022", "21(3):102000")
    assert not second.review and not second.free_pmc


def test_text_that_is_not_a_pubmed_page_is_refused_with_the_supported_formats():
    with pytest.raises(ReaderError) as excinfo:
        pubmed_page.read("just some notes\nnothing here\n", "notes.txt")
    message = excinfo.value.problems[0].format()
    assert message.startswith("notes.txt:1: not a PubMed abstract page")
    assert "MEDLINE" in message


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_arbitrary_text_gives_records_or_a_reader_error(text):
    try:
        result = pubmed_page.read(text, "x.txt")
    except ReaderError:
        return
    assert isinstance(result, ReadResult)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([
    "Title", "- PMID: 1", "- DOI: 10.1/x", "Abstract", "Similar articles", "-", "- x.J. 2020. PMID: 5",
    "Publication types", "MeSH terms", "- A/*b", "Substances", "LinkOut - more resources", "Medical", "",
    "Comment in", "Copyright 2020", "Conflict of interest statement", "x.Y Z. 2020 Jan;1:2. PMID: 9 Review.",
]), max_size=30))
def test_shuffled_page_parts_never_crash(lines):
    try:
        pubmed_page.read("\n".join(lines), "x.txt")
    except ReaderError:
        pass
