"""Citation exports: each format read back by the site's own readers gives the same fields."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import example, given, settings, strategies as st

from generator import exports
from generator.model import AbstractSection, Article, Author, MeshTerm, PubDate, SourceRef
from generator.readers import bibtex, csl_json, ris

READERS = {"bibtex": bibtex, "ris": ris, "csl": csl_json}


def rich_article(**overrides) -> Article:
    fields = dict(
        id="40561659",
        title="Chimeric {antigen} receptors & 50% of T_cells #1: CAR-T -- in vivo $5 ~ ^ \\ ``q''",
        source=SourceRef("content/40561659.yaml"),
        pmid="40561659",
        doi="10.1016/j.coi.2025.102596",
        pmcid="PMC1234567",
        authors=(
            Author(name="Jürgen Müller", family="Müller", given="Jürgen", initials="J"),
            Author(name="Ana-Marija Šimić", family="Šimić", given="Ana-Marija", initials="AM"),
            Author(name="Jan van der Berg", family="van der Berg", given="Jan", initials="J"),
            Author(name="Seán O'Brien", family="O'Brien", given="Seán", initials="S"),
            Author(name="Zoë Ødegård-Łukasz", family="Ødegård-Łukasz", given="Zoë", initials="Z"),
            Author(name="CAR-T Consortium & Friends", collective=True),
        ),
        journal="Current Opinion in Immunology & Allergy",
        journal_abbrev="Curr Opin Immunol",
        issn=("0952-7915", "1879-0372"),
        published=PubDate(year=2025, month=6, day=24),
        volume="95",
        issue="6",
        pages="1608-1617",
        language="eng",
        abstract=(AbstractSection(text="Autoimmune diseases affect 5% of people & {many} more_cases."),),
        mesh_terms=(MeshTerm(descriptor="Humans"), MeshTerm(descriptor="Lupus Erythematosus, Systemic")),
        keywords=("CAR T cells", "autoimmunity"),
        url="https://www.sciencedirect.com/science/article/pii/S0952791525000123?via=ihub&x=1_2",
    )
    fields.update(overrides)
    return Article(**fields)


def export(kind: str, article: Article) -> str:
    if kind == "bibtex":
        return exports.article_to_bibtex(article)
    if kind == "ris":
        return exports.article_to_ris(article)
    return exports.article_to_csl_json(article)


def read_back(kind: str, text: str) -> dict:
    result = READERS[kind].read(text, f"cite.{kind}")
    assert result.problems == []
    (record,) = result.records
    return record.fields


EXPECTED_FIELDS = ("title", "pmid", "doi", "pmcid", "authors", "journal", "journal_abbrev", "issn",
                   "published", "volume", "issue", "pages", "language", "abstract", "url")


@pytest.mark.parametrize("kind", sorted(READERS))
def test_rich_article_round_trips(kind):
    article = rich_article()
    fields = read_back(kind, export(kind, article))
    for name in EXPECTED_FIELDS:
        assert fields[name] == getattr(article, name), name
    assert fields["keywords"] == ("Humans", "Lupus Erythematosus, Systemic", "CAR T cells", "autoimmunity")
    assert set(fields) == set(EXPECTED_FIELDS) | {"keywords"}


@pytest.mark.parametrize("kind", sorted(READERS))
@pytest.mark.parametrize(
    "date", [PubDate(year=2025), PubDate(year=2025, month=2), PubDate(year=2025, month=12, day=1)])
def test_dates_round_trip_at_their_precision(kind, date):
    fields = read_back(kind, export(kind, rich_article(published=date)))
    assert fields["published"] == date


@pytest.mark.parametrize("kind", sorted(READERS))
def test_single_keyword_with_a_comma_stays_whole(kind):
    article = rich_article(mesh_terms=(), keywords=("Muscle, Skeletal",))
    assert read_back(kind, export(kind, article))["keywords"] == ("Muscle, Skeletal",)


@pytest.mark.parametrize("kind", sorted(READERS))
def test_sparse_article_exports_only_what_it_has(kind):
    article = Article(id="x1", title="Only a title", source=SourceRef("x.yaml"))
    assert read_back(kind, export(kind, article)) == {"title": "Only a title"}


def test_bibtex_escapes_and_layout():
    text = exports.article_to_bibtex(rich_article())
    assert text.startswith("@article{muller2025chimeric,\n  author = {Müller, Jürgen and ")
    assert r"{CAR-T Consortium \& Friends}" in text
    assert (r"title = {{Chimeric \{antigen\} receptors \& 50\% of T\_cells \#1: CAR-T -{}- in vivo \$5 "
            r"\textasciitilde{} \textasciicircum{} \textbackslash{} `{}`q'{}'}}") in text
    assert "  month = jun,\n" in text
    assert "  pages = {1608--1617},\n" in text
    assert "  doi = {10.1016/j.coi.2025.102596},\n" in text  # verbatim: no escapes in DOIs or URLs
    assert "  url = {https://www.sciencedirect.com/science/article/pii/S0952791525000123?via=ihub&x=1_2},\n" in text
    assert "  keywords = {Humans; Lupus Erythematosus, Systemic; CAR T cells; autoimmunity}\n}\n" in text
    for name in ("author", "title", "journal", "year", "month", "volume", "number", "pages", "doi",
                 "pmid", "pmcid", "issn", "abstract", "keywords"):
        assert re.search(rf"^  {name} = ", text, re.MULTILINE), name


def test_ris_layout():
    text = exports.article_to_ris(rich_article())
    lines = text.split("\r\n")
    assert lines[:3] == ["TY  - JOUR", lines[1], "AU  - Müller, Jürgen"]
    assert lines[1].startswith("TI  - Chimeric {antigen} receptors & 50% of T_cells")
    for line in ("AU  - CAR-T Consortium & Friends", "T2  - Current Opinion in Immunology & Allergy",
                 "J2  - Curr Opin Immunol", "PY  - 2025", "DA  - 2025/06/24", "VL  - 95", "IS  - 6",
                 "SP  - 1608", "EP  - 1617", "SN  - 0952-7915", "SN  - 1879-0372",
                 "DO  - 10.1016/j.coi.2025.102596", "KW  - Lupus Erythematosus, Systemic", "LA  - eng",
                 "M2  - PMID: 40561659", "M2  - PMCID: PMC1234567"):
        assert line in lines, line
    assert lines[-2:] == ["ER  - ", ""]


def test_csl_item():
    item = exports.article_to_csl(rich_article())
    assert item["id"] == "muller2025chimeric" and item["type"] == "article-journal"
    assert item["issued"] == {"date-parts": [[2025, 6, 24]]}
    assert item["author"][0] == {"family": "Müller", "given": "Jürgen"}
    assert item["author"][-1] == {"literal": "CAR-T Consortium & Friends"}
    assert (item["PMID"], item["PMCID"], item["DOI"]) == ("40561659", "PMC1234567", "10.1016/j.coi.2025.102596")
    assert item["page"] == "1608-1617" and item["ISSN"] == "0952-7915, 1879-0372"


def test_structured_abstract_is_exported_on_one_line_with_labels():
    article = rich_article(abstract=(AbstractSection(text="Why.", label="BACKGROUND"),
                                     AbstractSection(text="How.", label="METHODS")))
    for kind in READERS:
        (section,) = read_back(kind, export(kind, article))["abstract"]
        assert section.text == "BACKGROUND: Why. METHODS: How."


def test_citation_keys_are_unique_and_independent_of_order():
    same = [rich_article(id=str(n)) for n in (3, 1, 2)]
    other = rich_article(id="9", title="Chimerica rising", authors=(Author(name="Ann Muller", family="Muller"),))
    keys = exports.citation_keys(same + [other])
    # Base keys are reserved first: article 9's own key `...chimerica` is not handed out as a suffix.
    assert keys == {"1": "muller2025chimeric", "2": "muller2025chimericb", "3": "muller2025chimericc",
                    "9": "muller2025chimerica"}
    assert exports.citation_keys(list(reversed(same + [other]))) == keys
    assert len(set(keys.values())) == 4


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text("abc", min_size=1, max_size=4),
                       st.sampled_from(["smith2020", "smith2020a", "smith2020b", "smith2020aa", "lee2021", "x"]),
                       max_size=40))
def test_unique_citation_keys_suffix_duplicates_in_base_then_id_order(bases):
    """Duplicate base keys get the first free suffix, taken in (base key, id) order, even when a
    suffixed key is another article's base key ('smith2020' twice next to 'smith2020a')."""
    keys = exports.unique_citation_keys(bases)
    # The rule written out plainly: every article in (base, id) order; the first of a base keeps it.
    ordered = sorted(bases, key=lambda article_id: (bases[article_id], article_id))
    expected, used = {}, set(bases.values())
    firsts = {}
    for article_id in ordered:
        firsts.setdefault(bases[article_id], article_id)
    for article_id in ordered:
        if firsts[bases[article_id]] == article_id:
            expected[article_id] = bases[article_id]
            continue
        suffix = next(s for s in ("a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o",
                                   "p", "q", "r", "s", "t", "u", "v", "w", "x", "y", "z", "aa", "ab", "ac")
                      if bases[article_id] + s not in used)
        expected[article_id] = bases[article_id] + suffix
        used.add(expected[article_id])
    assert keys == expected and list(keys) == list(bases)
    assert len(set(keys.values())) == len(keys)


def test_citation_key_fallbacks():
    no_author = Article(id="PMID 7", title="The anatomy of a key", source=SourceRef("x"))
    assert exports.citation_key(no_author) == "anonanatomy"
    bare = Article(id="PMID 7", title="", source=SourceRef("x"))
    assert exports.citation_key(bare) == "anonpmid7"
    group = rich_article(authors=(Author(name="Ærø Study Group", collective=True),), published=PubDate())
    assert exports.citation_key(group) == "aerochimeric"


def test_digest_files_are_deterministic_and_read_back_whole():
    articles = [rich_article(id=str(n), pmid=str(40561650 + n)) for n in range(3)]
    bib, ris_text, csl_text = (exports.articles_to_bibtex(articles), exports.articles_to_ris(articles),
                               exports.articles_to_csl_json(articles))
    assert bib == exports.articles_to_bibtex(list(articles))
    assert [r.fields["pmid"] for r in bibtex.read(bib, "digest.bib").records] == ["40561650", "40561651", "40561652"]
    assert [r.fields["pmid"] for r in ris.read(ris_text, "digest.ris").records] == ["40561650", "40561651", "40561652"]
    items = json.loads(csl_text)
    assert [i["id"] for i in items] == ["muller2025chimeric", "muller2025chimerica", "muller2025chimericb"]
    assert csl_text == json.dumps(items, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
    assert re.findall(r"^@article\{(\w+),", bib, re.MULTILINE) == [i["id"] for i in items]


_TITLE = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Co", "Cn", "Zl", "Zp", "Mn", "Me")),
    min_size=1, max_size=80,
).filter(lambda t: t.strip())
_NAME_PART = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZéüøßłŠçÆ -'.",
                     min_size=1, max_size=20).filter(lambda t: t.strip()[:1].isalpha())


def one_line(text: str) -> str:
    return " ".join(text.split())


@settings(max_examples=150, deadline=None)
@given(title=_TITLE, names=st.lists(st.tuples(_NAME_PART, _NAME_PART), min_size=1, max_size=4))
@example(title="0", names=[("A", "AND"), ("A", "A")])  # a given name BibTeX read as " and " once
@example(title="0", names=[("Mary And", "Jo"), ("van and", "and Lee")])
def test_round_trip_property(title, names):
    authors = tuple(Author(name=f"{g} {f}", family=f, given=g) for f, g in names)
    article = rich_article(title=title, authors=authors)
    for kind in READERS:
        fields = read_back(kind, export(kind, article))
        assert fields["title"] == one_line(title), kind
        assert [(a.family, a.given) for a in fields["authors"]] == [
            (one_line(f), one_line(g)) for f, g in names], kind


BASE_KEYS = st.sampled_from(["smith2020", "smith2020a", "smith2020b", "smith2020ab", "smith2020c", "lee2021", "x", "xa"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text("abc", min_size=1, max_size=4), BASE_KEYS, min_size=1, max_size=30),
       st.lists(st.lists(st.tuples(st.integers(0, 29), BASE_KEYS), min_size=1, max_size=3), max_size=6))
def test_citation_keys_updated_after_a_few_base_keys_changed_are_those_made_afresh(bases, edits):
    """A rebuild (the daemon's) updates the last keys when a title edit changes a base key, and
    works them out afresh when the change could move another article's key."""
    ids = list(bases)
    keys = exports.unique_citation_keys(bases)
    suffixed = {base for article_id, base in bases.items() if keys[article_id] != base}
    for edit in edits:
        new = dict(bases)
        for position, base in edit:
            new[ids[position % len(ids)]] = base
        updated = exports.updated_citation_keys(bases, keys, suffixed, new)
        fresh = exports.unique_citation_keys(new)
        assert updated is None or (updated == fresh and list(updated) == list(fresh))
        bases, keys = new, fresh
        suffixed = {base for article_id, base in bases.items() if keys[article_id] != base}
