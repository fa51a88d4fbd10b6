"""BibTeX reader: Better BibTeX exports, LaTeX decoding, names, broken entries, a 3.5 MB library."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings, strategies as st

from generator.errors import ReaderError
from generator.model import Author, PubDate
from generator.readers import bibtex
from generator.readers.common import ReadResult
from tests.conftest import FIXTURES, SHARED

BBT = SHARED / "realdata" / "zotero-better-bibtex"
needs_realdata = pytest.mark.skipif(not BBT.exists(), reason="shared/realdata is not on this machine")


def read_real(name: str) -> ReadResult:
    return bibtex.read((BBT / name).read_text(encoding="utf-8"), name)


def read_fixture(name: str) -> ReadResult:
    return bibtex.read((FIXTURES / "records" / name).read_text(encoding="utf-8"), name)


@needs_realdata
def test_pubmed_items_exported_by_better_bibtex():
    result = read_real("pubmed_date_1112.bib")
    assert result.problems == []
    first, second = result.records
    fields = first.fields
    assert fields["title"] == (
        "RNA Helicase, DDX27 Regulates Skeletal Muscle Growth and Regeneration by Modulation of "
        "Translational Processes")
    assert len(fields["authors"]) == 12
    assert fields["authors"][0] == Author(
        name="Alexis H. Bennett", family="Bennett", given="Alexis H.", initials="AH")
    assert fields["authors"][1].family == "O'Donohue"
    assert fields["authors"][-1].name == "Vandana A. Gupta"
    assert fields["published"] == PubDate(year=2018, month=3)  # year = 2018, month = mar
    assert fields["journal"] == "PLoS genetics"
    assert (fields["volume"], fields["issue"], fields["pages"]) == ("14", "3", "e1007226")
    assert fields["issn"] == ("1553-7404",)
    assert fields["doi"] == "10.1371/journal.pgen.1007226"
    assert (fields["pmid"], fields["pmcid"]) == ("29518074", "PMC5843160")
    assert fields["language"] == "english"
    assert fields["abstract"][0].text.startswith("Gene expression in a tissue-specific context")
    assert len(fields["keywords"]) == 17
    assert fields["keywords"][:3] == ("Animals", "Animals Genetically Modified", "Cell Line")
    assert first.format == "bibtex" and first.source.line == 1
    assert first.field_lines["pmid"] == 15
    assert second.fields["title"] == (
        "SPEG-deficient Skeletal Muscles Exhibit Abnormal Triad and Defective Calcium Handling")
    assert second.fields["pages"] == "1608-1617"
    assert second.fields["published"] == PubDate(year=2018, month=1)
    assert (second.fields["pmid"], second.fields["pmcid"]) == ("29474540", "PMC5905626")
    assert second.source.line == 19


@needs_realdata
def test_title_case_file_quotes_and_two_issns():
    result = read_real("title_case_558.bib")
    assert result.problems == []
    first, second = result.records
    assert first.fields["title"] == (
        "Using Google Flu Trends Data in Forecasting Influenza-like-Illness Related ED Visits in Omaha, Nebraska")
    assert first.fields["issn"] == ("0735-6757", "1532-8171")
    assert first.fields["pmid"] == "25037278"
    assert first.fields["pages"] == "1016-1023"
    assert first.fields["published"] == PubDate(year=2014, month=9)
    assert [a.name for a in first.fields["authors"]] == ["Ozgur M. Araz", "Dan Bentley", "Robert L. Muelleman"]
    assert second.fields["title"] == (
        "Using Networks to Combine \u201cBig Data\u201d and Traditional Surveillance to Improve Influenza Predictions")
    assert second.fields["doi"] == "10.1038/srep08154"
    assert "issue" not in second.fields and "pmid" not in second.fields


@needs_realdata
def test_large_library_reads_fast_and_recovers_broken_entries():
    text = (BBT / "cache_fill_1296.bib").read_text(encoding="utf-8")
    start = time.perf_counter()
    result = bibtex.read(text, "cache_fill_1296.bib")
    elapsed = time.perf_counter() - start
    assert len(result.records) == 3725  # every entry, including the 23 with unbalanced braces
    assert elapsed < 15, f"reading took {elapsed:.1f}s"
    assert len(result.problems) == 23 + 2  # 23 unbalanced braces, 2 pmid fields holding no PMID
    assert all(p.severity == "warning" for p in result.problems)
    by_line = {r.source.line: r.fields for r in result.records}

    first = by_line[2]
    assert first["title"] == "Accuracy in Optical Tracking with Fiducial Markers: An Accuracy Function for ARToolKit"
    assert [a.name for a in first["authors"]] == ["Daniel F Abawi", "Joachim Bienwald", "Ralf Dörner"]
    assert first["published"] == PubDate(year=2004, month=11)
    assert (first["pages"], first["doi"]) == ("260-261", "10.1109/ISMAR.2004.8")

    broken = by_line[267]  # `publisher = {Taylor {{\&} Francis},` on line 274
    assert broken["title"] == (
        "The Effects of Skin Temperature on the Detection and Discrimination of Tactile Stimulation")
    assert broken["journal"] == "Somatosensory & Motor Research"
    assert (broken["volume"], broken["issue"], broken["pages"]) == ("14", "3", "181-188")
    assert broken["doi"] == "10.1080/08990229771042"
    assert broken["published"] == PubDate(year=2009, month=7)
    problem = next(p for p in result.problems if p.line == 274)
    assert "AGESCHEIDER:2009dk" in problem.message and "publisher" in problem.message

    tong = next(f for f in by_line.values() if f.get("pmid") == "24062677")
    assert tong["pmcid"] == "PMC3772339"
    assert tong["title"] == (
        "Two-Point Orientation Discrimination Versus the Traditional Two-Point Test for Tactile "
        "Spatial Acuity Assessment")
    assert tong["journal"] == "Frontiers in Human Neuroscience"
    assert by_line[586]["title"] == "Prochinima \u2013 Using Pico Projector to Tell Situated Stories"
    assert sum("pmid" in f for f in by_line.values()) == 16


def test_latex_accents_commands_and_names():
    result = read_fixture("bibtex_latex_accents.bib")
    assert result.problems == []
    (record,) = result.records
    fields = record.fields
    assert record.source.line == 2  # the comment line comes first
    assert fields["title"] == (
        "RNA Helicase in Müller Cells \u2013 a ß-Study of École & østergård Data at 50% with Ca^2+")
    assert fields["authors"] == (
        Author(name="Ralf Dörner", family="Dörner", given="Ralf", initials="R"),
        Author(name="José García-López", family="García-López", given="José", initials="J"),
        Author(name="Jan van der Berg", family="van der Berg", given="Jan", initials="J"),
        Author(name="World Health Organization", collective=True),
        Author(name="Jean de La Fontaine", family="de La Fontaine", given="Jean", initials="J"),
    )
    assert fields["published"] == PubDate(year=2019, month=3)  # month = {March}
    assert fields["pages"] == "1608-1617"
    assert fields["doi"] == "10.1172/JCI_123456"
    assert fields["keywords"] == ("RNA helicases", "Muscle, Skeletal", "Zebrafish")


@pytest.mark.parametrize(
    ("keywords", "expected"),
    [
        ("Cytokine Release Syndrome,Immunotherapy, Adoptive,CAR-T", ("Cytokine Release Syndrome",
                                                                    "Immunotherapy, Adoptive", "CAR-T")),
        ("lupus, CAR-T, mouse models", ("lupus", "CAR-T", "mouse models")),
        ("Muscle, Skeletal; Humans", ("Muscle, Skeletal", "Humans")),
        ("one,two,,one", ("one", "two")),
    ],
)
def test_keyword_lists_keep_mesh_headings_with_commas(keywords, expected):
    (record,) = bibtex.read(f"@article{{k, title = {{T}}, keywords = {{{keywords}}}}}", "k.bib").records
    assert record.fields["keywords"] == expected


def test_zotero_biblatex_export():
    (record,) = read_fixture("bibtex_biblatex_zotero.bib").records
    fields = record.fields
    assert fields["published"] == PubDate(year=2018, month=3, day=8)  # date = {2018-03-08}
    assert (fields["journal"], fields["journal_abbrev"]) == ("PLOS Genetics", "PLoS Genet")
    assert fields["pmid"] == "29518074"  # eprint + eprinttype = pubmed
    assert fields["doi"] == "10.1371/journal.pgen.1007226"  # from the doi.org URL
    assert fields["url"] == "https://doi.org/10.1371/journal.pgen.1007226"
    assert fields["language"] == "english"  # langid
    assert fields["keywords"] == ("Animals", "Zebrafish", "DEAD-box RNA Helicases")


def test_identifiers_in_note_and_extra():
    (record,) = read_fixture("bibtex_ids_in_note.bib").records
    fields = record.fields
    assert (fields["pmid"], fields["pmcid"], fields["doi"]) == ("32123456", "PMC7000001", "10.1000/example.2020.1")
    assert fields["published"] == PubDate(year=2020, month=7, day=14)
    assert fields["authors"] == (Author(name="Jane Q. Smith", family="Smith", given="Jane Q.", initials="JQ"),)


def test_malformed_entries_are_reported_and_the_rest_is_read():
    result = read_fixture("bibtex_malformed.bib")
    titles = [r.fields["title"] for r in result.records]
    assert titles == ["A good entry", "An entry with unbalanced braces", "The same key again",
                      "A pmid field without a PubMed ID", "Read after the broken ones"]
    assert result.records[0].fields["journal"] == "Journal of Clinical Investigation Insight"  # @string + #
    assert result.records[1].fields["journal"] == "Somatosensory & Motor Research"
    assert [(p.line, p.severity) for p in result.problems] == [(11, "warning"), (16, "warning"), (23, "warning")]
    assert "unbalanced braces in field 'publisher'" in result.problems[0].message
    assert "duplicate citation key 'good2019'" in result.problems[1].message
    assert "some id" in result.problems[2].message
    assert all(p.path == "bibtex_malformed.bib" for p in result.problems)


def test_unreadable_block_is_an_error_problem():
    text = "@article{ok, title = {Fine}}\n\n@article{bad title = }\n\n@article{ok2, title = {Also fine}}\n"
    result = bibtex.read(text, "bad.bib")
    assert [r.fields["title"] for r in result.records] == ["Fine", "Also fine"]
    (problem,) = result.problems
    assert (problem.line, problem.severity) == (3, "error")
    assert "Expected comma after entry key" in problem.message


def test_repeated_field_keeps_the_first_value_with_a_warning():
    result = bibtex.read("@article{k, title={One}, title={Two}, year=2000}\n", "dup.bib")
    assert result.records[0].fields["title"] == "One"
    (problem,) = result.problems
    assert problem.message == "BibTeX entry 'k' repeats the field(s) title; the first value was used"


@pytest.mark.parametrize(
    ("latex", "text"),
    [
        (r"{\"u}ber", "über"),
        (r"\'e", "é"),
        (r"{\ss}", "ß"),
        (r"\&", "&"),
        ("1--2", "1\u20132"),
        ("a~b", "a b"),
        ("{{RNA}} and {{DNA}}", "RNA and DNA"),
        (r"50\% of \#1 \_x", "50% of #1 _x"),
        (r"100% raw percent & ampersand", "100% raw percent & ampersand"),
        (r"\textit{in vivo} \emph{E. coli}", "in vivo E. coli"),
        (r"{\v{S}}imi{\'c}", "Šimić"),
        (r"P {$<$} .0001 and 2.1{$\mu$}W", "P < .0001 and 2.1μW"),
        (r"\textasciitilde{} \textasciicircum{} \textbackslash{}", "~ ^ \\"),
        ("``quoted''", "\u201cquoted\u201d"),
        ("a-{}-b", "a--b"),
        ("unbalanced {brace", "unbalanced brace"),
        (r"Garc{\'\i}a \'{\i} \c{c}\c c \v s\v{Z} {\aa}{\AE} \~n \H{o} \k{a} \={a}", "García í çç šŽ åÆ ñ ő ą ā"),
        (r"\vspace{1em}x \cite{k} \ref{r}", "x <cit.> <ref>"),  # not accents: left to pylatexenc
        (r"\ss{}x and \o ster", "ßx and øster"),
        (r"2011\textendash{}2012 \ldots", "2011\u20132012 \u2026"),
    ],
)
def test_latex_to_unicode(latex, text):
    assert bibtex.latex_to_unicode(latex) == text


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_arbitrary_text_never_crashes(text):
    try:
        result = bibtex.read(text, "any.bib")
    except ReaderError:
        return
    assert isinstance(result, ReadResult)


_PIECES = st.sampled_from(["@article{", "@string{", "@comment{", "key,", " title = ", " author = ", "{", "}",
                           '"', "#", ",", "=", " and ", "\\", "\\'", '{\\"o}', "$", "%", "~", "--", "\n",
                           "2019", "mar", "PMID: 1", "pmid = ", "date = ", "\ufeff", "é", "x"])


@settings(max_examples=300, deadline=None)
@given(st.lists(_PIECES, max_size=60).map("".join))
def test_arbitrary_bibtex_soup_never_crashes(text):
    try:
        result = bibtex.read(text, "soup.bib")
    except ReaderError:
        return
    assert isinstance(result, ReadResult)
