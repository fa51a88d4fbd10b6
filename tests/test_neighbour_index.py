"""Tests for generator/neighbour_index.py: neighbours kept between builds equal a computation from scratch."""

from __future__ import annotations

import pickle
import random
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import generator.similarity as similarity
from generator.model import Article, Qualifier
from generator.neighbour_index import NeighbourIndex
from generator.similarity import SimilarityConfig, compute_neighbours
from tests.test_similarity import article, heading

WORDS = [f"w{n}" for n in range(40)] + ["lupus", "lymphoma", "cells", "cell", "interferon", "Ünïcode"]
DESCRIPTORS = ["Lupus Erythematosus, Systemic", "Interferon Type I", "Asthma", "B-Lymphocytes", "Humans"]
KEYWORDS = ["SLE", "sle", "CAR T", "car-t", "asthma", "CD19"]


def keys(articles: list[Article]) -> list[tuple]:
    """What LinkState gives the index: something that changes with the similarity inputs."""
    return [(a.id, a.title, a.abstract, a.mesh_terms, a.keywords) for a in articles]


def random_article(rng: random.Random, id: str) -> Article:
    mesh = []
    for descriptor in rng.sample(DESCRIPTORS, rng.randrange(4)):
        text = ("*" if rng.random() < 0.3 else "") + descriptor
        if rng.random() < 0.4:
            text += "/" + rng.choice(["therapy", "*immunology"])
        mesh.append(text)
    return article(id, " ".join(rng.choices(WORDS, k=rng.randrange(1, 8))),
                   " ".join(rng.choices(WORDS, k=rng.randrange(0, 40))), tuple(mesh),
                   tuple(rng.sample(KEYWORDS, rng.randrange(3))))


def edit(rng: random.Random, item: Article) -> Article:
    """Change one thing the similarity reads: a word, a whole text, a MeSH heading, a keyword."""
    choice = rng.randrange(6)
    if choice == 0:
        return replace(item, title=item.title + " " + rng.choice(WORDS + ["brandnewword"]))
    if choice == 1:
        return replace(item, title=" ".join(item.title.split()[1:]))
    if choice == 2:
        return replace(item, abstract=random_article(rng, item.id).abstract)
    if choice == 3:
        return replace(item, mesh_terms=item.mesh_terms[1:])
    if choice == 4:
        found = heading(rng.choice(DESCRIPTORS).upper() if rng.random() < 0.3 else rng.choice(DESCRIPTORS))
        return replace(item, mesh_terms=item.mesh_terms + (replace(found, qualifiers=(Qualifier("therapy"),)),))
    return replace(item, keywords=item.keywords + (rng.choice(KEYWORDS),))


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 60), st.integers(1, 12), st.sampled_from([0.0, 0.15, None]), st.booleans(), st.randoms())
def test_every_edit_gives_what_a_computation_from_scratch_gives(
    n: int, edits: int, min_score: float | None, short_profiles: bool, rng: random.Random
) -> None:
    """(min_score None: `auto`, whose threshold an edit may move.)"""
    with pytest.MonkeyPatch.context() as patch:
        if short_profiles:  # profiles cut to a few terms, as in large digests
            patch.setattr(similarity, "_WORK_FLOOR", 0)
            patch.setattr(similarity, "_WORK_PER_ARTICLE", 8)
        config = SimilarityConfig(count=rng.choice([1, 3, 5]), min_score=min_score)
        articles = [random_article(rng, f"a{i:03d}") for i in range(n)]
        index = NeighbourIndex()
        assert index.neighbours(articles, config, keys(articles)) == compute_neighbours(articles, config)
        for _ in range(edits):
            for _ in range(rng.choice([1, 1, 2])):
                i = rng.randrange(n)
                articles[i] = edit(rng, articles[i])
            if rng.random() < 0.2:
                index = pickle.loads(pickle.dumps(index))  # as LinkState's cache file keeps it
            assert index.neighbours(articles, config, keys(articles)) == compute_neighbours(articles, config)
            assert_kept_as_made_afresh(index, articles, config)


def assert_kept_as_made_afresh(index: NeighbourIndex, articles: list, config: SimilarityConfig) -> None:
    """What the index keeps for the next edit (vectors, profiles, their column counts) is what a
    computation from scratch makes, bit for bit."""
    last = index._last
    vectors = index._vocabulary.vectors(index._terms)  # (a new vocabulary numbers terms otherwise)
    assert (last.vectors.matrix != vectors.matrix).nnz == 0 and (last.vectors.keys == vectors.keys).all()
    assert (last.vectors.matrix.indices == vectors.matrix.indices).all()
    profiles, length = similarity.profiles_of(vectors.matrix)
    assert length == last.length
    assert (last.profiles.indices == profiles.indices).all() and (last.profiles.data == profiles.data).all()
    rank = similarity.entry_ranks(vectors.matrix)
    assert all((found == similarity.profile_counts(vectors.matrix, rank, c)).all() for c, found in last.counts.items())


def test_articles_added_removed_reordered_or_settings_changed() -> None:
    rng = random.Random(3)
    articles = [random_article(rng, f"a{i:03d}") for i in range(30)]
    index = NeighbourIndex()
    config = SimilarityConfig(min_score=0.0)
    steps = [
        (articles[:20], config),
        (articles[5:30], config),
        (list(reversed(articles)), config),
        (articles, SimilarityConfig(count=2)),
        (articles, SimilarityConfig(fields=("title", "mesh"))),
        (articles[:1], config),
        (articles, config),
    ]
    for chosen, settings_ in steps:
        assert index.neighbours(chosen, settings_, keys(chosen)) == compute_neighbours(chosen, settings_)
    assert index.neighbours(articles, config) == compute_neighbours(articles, config)  # without keys


def test_a_one_word_title_edit_computes_a_few_rows_not_the_digest() -> None:
    rng = random.Random(11)
    words = [f"term{n}" for n in range(300)]
    articles = [article(f"a{n:04d}", " ".join(rng.choices(words, k=8)), " ".join(rng.choices(words, k=60)))
                for n in range(600)]
    config = SimilarityConfig()
    index = NeighbourIndex()
    index.neighbours(articles, config, keys(articles))
    articles[42] = replace(articles[42], title="Revised: " + articles[42].title)
    assert index.neighbours(articles, config, keys(articles)) == compute_neighbours(articles, config)
    assert index.stats["full"] == 0
    assert index.stats["rows"] <= 10, index.stats  # the edited row and rows that listed it
    # Nothing changed: the same result, nothing computed.
    before = index.result
    assert index.neighbours(articles, config, keys(articles)) is before
    assert index.stats == {"full": 0, "rows": 0, "merged": 0}


def test_a_label_first_written_by_the_edited_article_changes_the_shared_terms() -> None:
    first = article("1", "Interferon in lupus", "", ("Lupus Erythematosus, Systemic",), ("sle",))
    others = [article(str(n), "Interferon in lupus", "", ("Lupus Erythematosus, Systemic",), ("SLE",))
              for n in range(2, 6)]
    config = SimilarityConfig(min_score=0.0)
    index = NeighbourIndex()
    digest = [first, *others]
    index.neighbours(digest, config, keys(digest))
    digest[0] = replace(first, keywords=("Sle",))
    result = index.neighbours(digest, config, keys(digest))
    assert result == compute_neighbours(digest, config)
    assert "Sle" in result["2"][0].shared_terms
