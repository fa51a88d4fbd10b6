"""Tests for generator/similarity.py: neighbours within a digest."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import generator.similarity as similarity
from generator.model import AbstractSection, Article, MeshTerm, Qualifier, SourceRef
from generator.similarity import (
    Neighbour,
    SimilarityConfig,
    build_vectors,
    compute_neighbours,
    stem,
    top_pairs,
    word_bytes,
)
from tests.conftest import REPO

MAKE_CORPUS = Path(__file__).resolve().parents[2] / "shared/bench/make_corpus.py"
ANY = SimilarityConfig(min_score=0.0)


def article(
    id: str,
    title: str = "",
    abstract: str = "",
    mesh: tuple[str, ...] = (),
    keywords: tuple[str, ...] = (),
) -> Article:
    """Return an article; MeSH in MEDLINE form: '*Descriptor' is a major topic, '/q' a qualifier."""
    return Article(
        id=id,
        title=title,
        source=SourceRef(f"{id}.yaml"),
        abstract=(AbstractSection(abstract),) if abstract else (),
        mesh_terms=tuple(heading(text) for text in mesh),
        keywords=keywords,
    )


def heading(text: str) -> MeshTerm:
    descriptor, *qualifiers = text.split("/")
    return MeshTerm(
        descriptor=descriptor.lstrip("*"),
        major=descriptor.startswith("*"),
        qualifiers=tuple(Qualifier(q.lstrip("*"), major=q.startswith("*")) for q in qualifiers),
    )


def ids(neighbours: tuple[Neighbour, ...]) -> list[str]:
    return [n.id for n in neighbours]


LUPUS = article(
    "1",
    "Type I interferon in systemic lupus erythematosus",
    "Plasmacytoid dendritic cells produce interferon in lupus nephritis.",
    ("*Lupus Erythematosus, Systemic/therapy", "Interferon Type I", "Humans"),
    ("SLE", "interferon"),
)
LUPUS_2 = article(
    "2",
    "Interferon signatures and anifrolumab in lupus",
    "Anifrolumab blocks the type I interferon receptor in systemic lupus erythematosus.",
    ("*Lupus Erythematosus, Systemic/drug therapy", "*Interferon Type I", "Humans"),
    ("SLE", "anifrolumab"),
)
ASTHMA = article(
    "3",
    "Eosinophils and IgE in severe asthma",
    "Dupilumab reduces exacerbations in eosinophilic asthma.",
    ("*Asthma", "Eosinophils", "Humans"),
    ("asthma", "IgE"),
)


# --- API, edge cases -------------------------------------------------------------------------


def test_empty_digest() -> None:
    assert compute_neighbours([], SimilarityConfig()) == {}


def test_single_article_has_no_neighbours() -> None:
    assert compute_neighbours([LUPUS], SimilarityConfig()) == {"1": ()}


def test_two_related_articles_are_each_others_neighbour_with_one_score() -> None:
    result = compute_neighbours([LUPUS, LUPUS_2], SimilarityConfig())
    assert ids(result["1"]) == ["2"] and ids(result["2"]) == ["1"]
    assert result["1"][0].score == result["2"][0].score > 0.1


def test_every_article_is_a_key_even_without_neighbours() -> None:
    lonely = article("9", "Bacteriophage lambda lysogeny", "Repressor binding at operators.")
    result = compute_neighbours([LUPUS, LUPUS_2, ASTHMA, lonely], SimilarityConfig())
    assert set(result) == {"1", "2", "3", "9"}
    assert result["9"] == ()


def test_articles_without_abstract_or_terms() -> None:
    bare = [article("a", "Interferon in lupus nephritis"), article("b", "Lupus nephritis and interferon")]
    empty = article("c")
    result = compute_neighbours([*bare, empty], ANY)
    assert ids(result["a"]) == ["b"] and ids(result["b"]) == ["a"]
    assert result["c"] == ()


def test_blank_subject_terms_are_ignored() -> None:
    blank = [
        Article(id=key, title="", source=SourceRef("x"), keywords=("", "  "),
                mesh_terms=(MeshTerm(" ", qualifiers=(Qualifier("therapy"),)),))
        for key in ("a", "b")
    ]
    assert compute_neighbours(blank, ANY) == {"a": (), "b": ()}


def test_no_fields_at_all() -> None:
    result = compute_neighbours([LUPUS, LUPUS_2], SimilarityConfig(fields=()))
    assert result == {"1": (), "2": ()}


def test_duplicate_ids_are_rejected() -> None:
    with pytest.raises(ValueError, match="duplicate article id '1'"):
        compute_neighbours([LUPUS, replace(LUPUS_2, id="1")], SimilarityConfig())


@pytest.mark.parametrize(
    "kwargs",
    [{"count": -1}, {"count": 2.5}, {"count": True}, {"min_score": -0.1}, {"min_score": "high"},
     {"min_score": float("nan")}, {"fields": ("title", "authors")}],
)
def test_config_rejects_bad_values(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        SimilarityConfig(**kwargs)


def test_config_accepts_a_list_of_fields() -> None:
    assert SimilarityConfig(fields=["mesh"]).fields == ("mesh",)  # type: ignore[arg-type]


# --- count, min_score, scores ------------------------------------------------------------------


def cluster_digest(size: int = 12) -> list[Article]:
    words = ["interferon", "lupus", "nephritis", "anifrolumab", "dendritic", "plasmacytoid",
             "autoantibody", "complement", "kidney", "flare", "steroid", "remission"]
    rng = random.Random(7)
    return [
        article(f"{i:02d}", " ".join(rng.sample(words, 5)), " ".join(rng.sample(words, 8)),
                ("*Lupus Erythematosus, Systemic", rng.choice(["Humans", "Mice"])))
        for i in range(size)
    ]


@pytest.mark.parametrize("count", [0, 1, 3, 20])
def test_count_limits_the_neighbours(count: int) -> None:
    result = compute_neighbours(cluster_digest(), SimilarityConfig(count=count, min_score=0.0))
    assert all(len(found) == min(count, 11) for found in result.values())


def test_min_score_drops_weaker_neighbours() -> None:
    digest = cluster_digest()
    everything = compute_neighbours(digest, SimilarityConfig(count=20, min_score=0.0))
    scores = sorted(n.score for found in everything.values() for n in found)
    threshold = scores[len(scores) // 2]
    kept = compute_neighbours(digest, SimilarityConfig(count=20, min_score=threshold))
    for key, found in kept.items():
        assert found == tuple(n for n in everything[key] if n.score >= threshold)
    assert compute_neighbours(digest, SimilarityConfig(min_score=1.5)) == {a.id: () for a in digest}


def test_unrelated_articles_fall_below_the_default_min_score() -> None:
    result = compute_neighbours([LUPUS, LUPUS_2, ASTHMA], SimilarityConfig())
    assert result["3"] == ()
    assert "3" not in ids(result["1"]) + ids(result["2"])


def test_scores_are_rounded_cosines_best_first() -> None:
    result = compute_neighbours(cluster_digest(), SimilarityConfig(count=20, min_score=0.0))
    for found in result.values():
        assert all(0 < n.score <= 1 and n.score == round(n.score, 4) for n in found)
        assert [n.score for n in found] == sorted((n.score for n in found), reverse=True)


def test_identical_articles_score_one() -> None:
    twin = replace(LUPUS, id="1b")
    result = compute_neighbours([LUPUS, twin, LUPUS_2], SimilarityConfig())
    assert result["1"][0] == Neighbour("1b", 1.0, result["1"][0].shared_terms)


# --- determinism --------------------------------------------------------------------------------


def test_ties_are_broken_by_id() -> None:
    copies = [replace(LUPUS, id=key) for key in ("d", "b", "a", "c")]
    result = compute_neighbours(copies, SimilarityConfig(count=2))
    assert ids(result["a"]) == ["b", "c"]
    assert ids(result["b"]) == ["a", "c"]
    assert ids(result["d"]) == ["a", "b"]


def test_output_does_not_depend_on_input_order() -> None:
    digest = cluster_digest(30) + [LUPUS, LUPUS_2, ASTHMA]
    first = compute_neighbours(digest, SimilarityConfig(count=7))
    shuffled = digest[:]
    random.Random(3).shuffle(shuffled)
    second = compute_neighbours(shuffled, SimilarityConfig(count=7))
    assert repr(sorted(first.items())) == repr(sorted(second.items()))
    assert compute_neighbours(digest, SimilarityConfig(count=7)) == first


def test_results_do_not_depend_on_block_size(monkeypatch: pytest.MonkeyPatch) -> None:
    digest = cluster_digest(40)
    expected = compute_neighbours(digest, ANY)
    monkeypatch.setattr(similarity, "_BLOCK_WORK", 1)  # one row per block
    assert compute_neighbours(digest, ANY) == expected


# --- what counts -------------------------------------------------------------------------------


def test_major_mesh_heading_weighs_more() -> None:
    query = article("q", "Alpha", mesh=("*Sarcoidosis", "Uveitis"))
    shares_major = article("m", "Beta", mesh=("Sarcoidosis",))
    shares_minor = article("n", "Gamma", mesh=("Uveitis",))
    found = compute_neighbours([query, shares_major, shares_minor], ANY)["q"]
    assert ids(found) == ["m", "n"]
    assert found[0].score > found[1].score


def test_title_words_count_more_than_abstract_words() -> None:
    query = article("q", "sarcoidosis uveitis", "granuloma")
    in_title = article("t", "sarcoidosis", "unrelated filler words")
    in_abstract = article("a", "unrelated filler words", "sarcoidosis")
    found = compute_neighbours([query, in_title, in_abstract], ANY)["q"]
    assert ids(found) == ["t", "a"]


def test_qualifier_pairs_add_to_the_descriptor() -> None:
    query = article("q", mesh=("Asthma/drug therapy",))
    same_pair = article("p", mesh=("Asthma/drug therapy",))
    descriptor_only = article("d", mesh=("Asthma/genetics",))
    found = compute_neighbours([query, same_pair, descriptor_only], replace(ANY, fields=("mesh",)))
    assert ids(found["q"]) == ["p", "d"]


def test_fields_choose_the_evidence() -> None:
    same_title = [article("a", "Interferon in lupus"), article("b", "Interferon in lupus")]
    assert compute_neighbours(same_title, SimilarityConfig(fields=("mesh", "keywords")))["a"] == ()
    assert ids(compute_neighbours(same_title, SimilarityConfig(fields=("title",)))["a"]) == ["b"]


def test_words_ignore_case_stopwords_plurals_and_numbers() -> None:
    a = article("a", "The CELLS of the kidney", "IL-6 in 2024")
    b = article("b", "cell kidneys", "il 17 with 1999")
    found = compute_neighbours([a, b], SimilarityConfig(fields=("title", "abstract")))
    assert found["a"][0].score == 1.0  # cell, kidney, il: every word that counts is shared


def test_non_ascii_text() -> None:
    a = article("a", "Sjögren’s disease – salivary glands")
    b = article("b", "SJÖGREN disease: salivary gland")
    found = compute_neighbours([a, b], SimilarityConfig(fields=("title",)))
    assert found["a"][0].score == 1.0


@pytest.mark.parametrize(
    ("word", "expected"),
    [("cells", "cell"), ("studies", "study"), ("diseases", "disease"), ("analysis", "analysis"),
     ("class", "class"), ("virus", "virus"), ("gas", "gas"), ("cell", "cell")],
)
def test_stem_strips_plurals_only(word: str, expected: str) -> None:
    assert stem(word) == expected


@given(st.text(max_size=60) | st.text(alphabet=st.characters(max_codepoint=127), max_size=60))
def test_words_match_the_regular_expression(text: str) -> None:
    expected = similarity._WORD.findall(text.casefold())
    assert word_bytes(text).decode("utf-8").split() == expected


# --- shared terms -------------------------------------------------------------------------------


def test_shared_terms_are_common_descriptors_and_keywords() -> None:
    found = compute_neighbours([LUPUS, LUPUS_2, ASTHMA], SimilarityConfig())["1"]
    assert ids(found) == ["2"]
    shared = found[0].shared_terms
    assert set(shared) == {"Lupus Erythematosus, Systemic", "Interferon Type I", "SLE", "Humans"}
    assert shared[-1] == "Humans"  # in every article: least informative


def test_shared_terms_put_rare_and_major_terms_first_and_stop_at_five() -> None:
    common = ("Humans", "Female", "Adult", "Male", "Aged", "Middle Aged")
    digest = [
        article("a", mesh=("*Sarcoidosis", *common), keywords=("granuloma",)),
        article("b", mesh=("Sarcoidosis", *common), keywords=("granuloma",)),
        *(article(f"x{i}", mesh=common) for i in range(5)),
    ]
    shared = compute_neighbours(digest, ANY)["a"][0].shared_terms
    assert len(shared) == 5
    assert shared[:2] == ("Sarcoidosis", "granuloma")


def test_a_keyword_equal_to_a_descriptor_is_shown_once() -> None:
    a = article("a", mesh=("Asthma",), keywords=("asthma",))
    b = article("b", mesh=("Asthma",), keywords=("ASTHMA",))
    shared = compute_neighbours([a, b], ANY)["a"][0].shared_terms
    assert len(shared) == 1 and shared[0].casefold() == "asthma"


def test_shared_terms_never_list_words_or_qualifiers() -> None:
    a = article("a", "granuloma", mesh=("Asthma/therapy",))
    b = article("b", "granuloma", mesh=("Asthma/therapy",))
    assert compute_neighbours([a, b], ANY)["a"][0].shared_terms == ("Asthma",)


# --- against brute force -------------------------------------------------------------------------


def brute_force(matrix: sp.csr_matrix, count: int, min_units: int) -> list[list[tuple[int, int]]]:
    """Return per row the best (column, score units) by (score desc, column asc), from dense scores."""
    dense = (matrix @ matrix.T).toarray()
    out = []
    for row, scores in enumerate(dense):
        units = np.floor(scores * 10_000 + 0.5).astype(int)
        ranked = sorted((-u, col) for col, u in enumerate(units) if col != row and u >= min_units)
        out.append([(col, -neg) for neg, col in ranked[:count]])
    return out


def as_lists(src: np.ndarray, dst: np.ndarray, units: np.ndarray, n: int) -> list[list[tuple[int, int]]]:
    out: list[list[tuple[int, int]]] = [[] for _ in range(n)]
    for s, d, u in zip(src.tolist(), dst.tolist(), units.tolist()):
        out[s].append((d, u))
    return out


@settings(max_examples=60, deadline=None)
@given(
    st.integers(2, 40), st.integers(1, 30), st.integers(1, 8), st.integers(1, 3000), st.randoms()
)
def test_top_pairs_matches_brute_force_including_ties(
    n: int, vocabulary: int, count: int, min_units: int, rng: random.Random
) -> None:
    # Few distinct small weights over a small vocabulary: many exact ties.
    rows = [{rng.randrange(vocabulary): rng.choice([1.0, 2.0]) for _ in range(rng.randrange(4))}
            for _ in range(n)]
    dense = np.zeros((n, vocabulary))
    for i, terms in enumerate(rows):
        for col, value in terms.items():
            dense[i, col] = value
    matrix = similarity._unit_rows(sp.csr_matrix(dense))
    got = as_lists(*top_pairs(matrix, count, min_units), n)
    assert got == brute_force(matrix, count, min_units)


def test_small_digests_get_exact_cosines_of_the_full_vectors() -> None:
    digest = cluster_digest(30) + [LUPUS, LUPUS_2, ASTHMA]
    result = compute_neighbours(digest, SimilarityConfig(count=6, min_score=0.0))
    ordered = sorted(digest, key=lambda a: a.id)
    expected = brute_force(build_vectors(ordered).matrix, 6, 1)
    for row, item in enumerate(ordered):
        assert [(ordered[c].id, u / 10_000) for c, u in expected[row]] == [
            (n.id, n.score) for n in result[item.id]
        ]


def test_profiles_shrink_when_the_product_would_cost_too_much(monkeypatch: pytest.MonkeyPatch) -> None:
    vectors = build_vectors(cluster_digest(40))
    assert similarity.truncate_profiles(vectors.matrix) is vectors.matrix  # small: every term
    monkeypatch.setattr(similarity, "_WORK_FLOOR", 0)
    monkeypatch.setattr(similarity, "_WORK_PER_ARTICLE", 1)
    profiles = similarity.truncate_profiles(vectors.matrix)
    assert np.diff(profiles.indptr).max() <= similarity._PROFILE_LENGTHS[-1]
    assert np.allclose(np.sqrt(profiles.multiply(profiles).sum(axis=1)), 1.0)


# --- quality on the synthetic corpus --------------------------------------------------------------


def load_jsonl(path: Path) -> tuple[list[Article], dict[str, int]]:
    """Return the corpus's records as Articles, and each one's topic cluster."""
    articles, clusters = [], {}
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        mesh = tuple(
            MeshTerm(
                m["descriptor"],
                major=m["major"] and not m["qualifier"],  # as MEDLINE stars them
                qualifiers=(Qualifier(m["qualifier"], major=m["major"]),) if m["qualifier"] else (),
            )
            for m in record["mesh"]
        )
        articles.append(Article(
            id=record["pmid"], title=record["title"], source=SourceRef(str(path)),
            abstract=(AbstractSection(record["abstract"]),), mesh_terms=mesh,
            keywords=tuple(record["keywords"]),
        ))
        clusters[record["pmid"]] = record["cluster"]
    return articles, clusters


@pytest.mark.skipif(not MAKE_CORPUS.exists(), reason=f"{MAKE_CORPUS} not available")
def test_top_five_neighbours_share_the_topic(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(MAKE_CORPUS), "--n", "300", "--seed", "1", "--out", str(tmp_path),
         "--formats", "jsonl"],
        check=True, capture_output=True,
    )
    articles, clusters = load_jsonl(tmp_path / "records.jsonl")
    truth = dict(line.split("\t")[:2] for line in
                 (tmp_path / "clusters.tsv").read_text().splitlines()[1:])
    assert all(truth[key] == str(value) for key, value in clusters.items())
    result = compute_neighbours(articles, SimilarityConfig(count=5))
    verdicts = Counter(truth[key] == truth[n.id] for key, found in result.items() for n in found)
    total = verdicts[True] + verdicts[False]
    # Topics of 4 articles cannot give 5 neighbours each: min_score leaves those lists short.
    assert total >= 0.95 * 5 * len(articles)
    assert verdicts[True] / total >= 0.99


def test_large_digests_share_the_products_between_cores_with_the_same_result(monkeypatch) -> None:
    """Above PARALLEL_ROWS a forked worker computes part of the row blocks; nothing may change."""
    rng = random.Random(7)
    words = [f"term{n}" for n in range(300)]
    articles = [article(f"a{n:04d}", " ".join(rng.choices(words, k=8)), " ".join(rng.choices(words, k=60)))
                for n in range(600)]
    config = SimilarityConfig()
    serial = compute_neighbours(articles, config)
    import generator.workers

    monkeypatch.setattr(similarity, "PARALLEL_ROWS", 1)
    monkeypatch.setattr(similarity, "_BLOCK_WORK", 5000)  # many blocks, so the work can be shared
    monkeypatch.setattr(similarity, "idle_cores", lambda requested: 2)
    shared = []

    class CountingWorkers(generator.workers.ForkedWorkers):
        def __exit__(self, *exc_info):
            shared.append(self.taken == len(self.shares))  # every share came back from a worker
            return super().__exit__(*exc_info)

    monkeypatch.setattr(generator.workers, "ForkedWorkers", CountingWorkers)
    assert compute_neighbours(articles, config) == serial
    assert shared == [True], "the products were shared with a worker"


# --- min_score: auto ------------------------------------------------------------------------------


def test_auto_threshold_is_a_fifth_of_the_median_best_score_rounded_down() -> None:
    from generator.similarity import auto_units

    src, dst = np.array([0, 0, 1, 2, 2]), np.array([1, 2, 0, 0, 1])
    # Best scores 0.70, 0.70, 0.30 and a row without neighbours: the lower median is 0.30 -> 0.06.
    assert auto_units((src, dst, np.array([7000, 3000, 7000, 3000, 100])), 4) == 600
    assert auto_units((src, dst, np.array([7455, 3000, 7455, 7455, 100])), 3) == 1400  # 0.1491 -> 0.14
    assert auto_units((np.zeros(0, int), np.zeros(0, int), np.zeros(0, int)), 3) == 1  # nothing scores


def test_auto_threshold_finds_neighbours_in_a_digest_on_one_narrow_topic() -> None:
    """The example digest is about CAR-T cells: every article shares the topic's words, which then
    weigh little. A fixed 0.15 left 5 of its 13 articles without any neighbour; `auto` (the
    default) lists related papers for every one, the oncology trials among each other."""
    from generator.config import load_config
    from generator.load import load_articles

    config = load_config(REPO, {})
    articles = load_articles(config.content_path, config.root).articles
    fixed = compute_neighbours(articles, SimilarityConfig(min_score=0.15))
    assert sum(1 for found in fixed.values() if not found) == 5
    auto = compute_neighbours(articles, SimilarityConfig())
    assert all(auto.values())
    assert "29385370" in ids(auto["29226797"])  # axicabtagene ciloleucel: tisagenlecleucel, both CD19 CAR-T trials
    for key, found in fixed.items():  # the stronger links are all still there, in the same order
        assert ids(auto[key])[:len(found)] == ids(found)


@pytest.mark.parametrize("text, expected", [("similar: {min_score: auto}\n", None), ("similar: {min_score: 0.2}\n", 0.2),
                                            ("similar: {count: 3}\n", None)])
def test_digest_yaml_min_score_is_a_number_or_auto(tmp_path, text: str, expected: float | None) -> None:
    from generator.config import load_config

    (tmp_path / "digest.yaml").write_text(text)
    assert load_config(tmp_path, {}).similar.min_score == expected


def test_digest_yaml_refuses_another_word_for_min_score(tmp_path) -> None:
    from generator.config import load_config
    from generator.errors import DigestError

    (tmp_path / "digest.yaml").write_text("similar: {min_score: high}\n")
    with pytest.raises(DigestError, match="min_score: a number >= 0 or auto"):
        load_config(tmp_path, {})
