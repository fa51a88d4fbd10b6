"""Native records: YAML (one or a list) and Markdown with front matter; the field schema."""

from __future__ import annotations


import pytest
from hypothesis import given, settings, strategies as st

from generator.errors import ReaderError
from generator.fields import coerce_native
from generator.model import PubDate
from generator.readers import markdown_records, yaml_records


def test_yaml_single_record_keeps_key_lines():
    result = yaml_records.read("title: A\npmid: 12\nnotes: hi\n", "a.yaml")
    (record,) = result.records
    assert record.native and record.fields == {"title": "A", "pmid": 12, "notes": "hi"}
    assert record.field_lines == {"title": 1, "pmid": 2, "notes": 3}


def test_yaml_list_gives_one_record_per_item():
    result = yaml_records.read("- title: A\n  pmid: 1\n- title: B\n  pmid: 2\n- just text\n", "l.yaml")
    assert [r.fields["title"] for r in result.records] == ["A", "B"]
    assert [r.source.line for r in result.records] == [1, 3]
    assert result.problems[0].format() == "l.yaml:5: record 3 is not a mapping of fields (write 'title: ...', 'pmid: ...' and so on, one per line)"


def test_malformed_yaml_names_the_line():
    with pytest.raises(ReaderError) as excinfo:
        yaml_records.read("title: A\npmid: [1, 2\nnotes: x\n", "bad.yaml")
    problem = excinfo.value.problems[0]
    assert problem.path == "bad.yaml" and problem.line == 3 and "invalid YAML" in problem.message


def test_alias_bomb_is_refused_quickly():
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 9) + "]\n" for i in range(8)
    )
    with pytest.raises(ReaderError, match="aliases"):
        yaml_records.read(bomb, "bomb.yaml")


def test_markdown_front_matter_and_body_notes_with_line_offset():
    text = "---\ntitle: A\npmid: 5\nrating: 9\n---\n\nSome **notes**.\n"
    (record,) = markdown_records.read(text, "a.md").records
    assert record.fields["notes"] == "Some **notes**."
    assert record.field_lines["title"] == 2  # the opening '---' is line 1
    fields, problems = coerce_native(record)
    assert [p.format() for p in problems] == ["a.md:4: 'rating' must be a whole number from 0 to 5, got 9"]


def test_markdown_without_front_matter_gets_a_hint():
    with pytest.raises(ReaderError) as excinfo:
        markdown_records.read("# Just notes\n", "n.md")
    assert "does" not in excinfo.value.problems[0].message
    assert "starts with a '---' line" in excinfo.value.problems[0].hint


def coerce(text: str):
    (record,) = yaml_records.read(text, "r.yaml").records
    return coerce_native(record)


def test_schema_coerces_every_kind_of_value():
    fields, problems = coerce("""
title: T
pmid: "PMID: 40561659"
doi: https://doi.org/10.1016/j.coi.2025.102596
pmcid: 1234
published: 2025-06-24
authors: ["Smith, Jane Q", {name: Ann Lee, orcid: "https://orcid.org/0000-0002-1825-0097", affiliation: Erlangen}]
abstract: {Background: b, Methods: m}
mesh: ["Lupus Erythematosus, Systemic/*therapy"]
similar: [40755780, {doi: 10.3389/fimmu.2025.1613878, title: X}]
linkout: {Full Text Sources: [Elsevier]}
added: 2025-07-01
""")
    assert problems == []
    assert fields["pmid"] == "40561659" and fields["doi"] == "10.1016/j.coi.2025.102596"
    assert fields["pmcid"] == "PMC1234"
    assert fields["published"] == PubDate(2025, 6, 24)
    smith, lee = fields["authors"]
    assert (smith.name, smith.family, smith.initials) == ("Jane Q Smith", "Smith", "JQ")
    assert lee.orcid == "0000-0002-1825-0097" and lee.affiliations == ("Erlangen",)
    assert [(s.label, s.text) for s in fields["abstract"]] == [("Background", "b"), ("Methods", "m")]
    assert fields["mesh_terms"][0].qualifiers[0].major
    assert fields["similar"][0].pmid == "40755780" and fields["similar"][1].doi == "10.3389/fimmu.2025.1613878"
    assert fields["added"] == "2025-07-01"


def test_schema_reports_each_bad_field_with_its_line_and_keeps_going():
    fields, problems = coerce("title: T\npublished: 2025-13-40\ndoi: not-a-doi\nrating: 3\ntitel: x\n")
    messages = [p.format() for p in problems]
    assert messages[0] == "r.yaml:2: 'published' is not a date: '2025-13-40'"
    assert messages[1].startswith("r.yaml:3: 'doi' must be a DOI")
    assert messages[2] == "r.yaml:5: warning: unknown field 'titel' (did you mean 'title'?)"
    assert fields["rating"] == 3 and fields["title"] == "T"


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_arbitrary_yaml_text_gives_records_or_a_reader_error(text):
    for reader in (yaml_records, markdown_records):
        try:
            result = reader.read(text, "x")
        except ReaderError:
            continue
        for record in result.records:
            coerce_native(record)  # must not raise either


scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20),
                    st.dates())
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["title", "pmid", "doi", "authors", "abstract", "mesh_terms", "similar",
                                        "published", "rating", "notices", "linkout", "history", "id", "tags"]),
                       values))
def test_any_field_values_become_fields_or_problems(data):
    from generator.model import Record, SourceRef

    fields, problems = coerce_native(Record(fields=data, source=SourceRef("x.yaml", 1), native=True))
    assert all(p.path == "x.yaml" for p in problems)
