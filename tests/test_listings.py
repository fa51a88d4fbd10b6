"""Listing entries: a renderer makes each article's entry once per folder depth and reuses it on
every page that lists the article; each page still lists exactly its own articles, in its order."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

import generator.render as render
from generator.config import load_config
from generator.link import link_articles
from generator.load import load_articles
from generator.render import Renderer

EXAMPLE = Path(__file__).resolve().parents[1]


def _renderer(monkeypatch) -> Renderer:
    monkeypatch.setattr(render, "_ENTRIES_MADE", {})  # nothing another test's renderer made
    monkeypatch.setattr(render, "_LISTINGS", {})
    config = load_config(EXAMPLE)
    loaded = load_articles(config.content_path, config.root, jobs=1)
    digest = link_articles(loaded.articles, config.similar, config.taxonomies, fingerprints=loaded.fingerprints)
    renderer = Renderer(digest, config, loaded.fingerprints, None)
    renderer.plan()
    return renderer


def _listed_ids(entries: list) -> list[str]:
    return [re.search(r'href="\.\./\.\./articles/([^/]+)/"', str(entry)).group(1) for entry in entries]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_term_page_lists_its_own_articles_whatever_was_listed_before(monkeypatch, seed):
    renderer = _renderer(monkeypatch)
    terms = [term for terms in renderer.digest.taxonomies.values() for term in terms]
    random.Random(seed).shuffle(terms)  # pages list overlapping sets of articles in any order
    first = {id(term): renderer.term_items(term) for term in terms}
    for term in terms:
        assert _listed_ids(first[id(term)]) == list(term.article_ids)
        again = renderer.term_items(term)
        assert again == first[id(term)]
        # The very entries made once per article: not rendered again for each page.
        assert all(a is b for a, b in zip(again, first[id(term)]))
    # Each entry is what the article's own `_item.html` gives.
    fresh = _renderer(monkeypatch)
    for term in terms:
        made = fresh._entries_made("_item.html", 2)
        expected = [fresh._entry("_item.html", fresh.digest.by_id[i], "x/x/", 2, made) for i in term.article_ids]
        assert first[id(term)] == expected

