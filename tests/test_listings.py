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



def _rendered_at(renderer: Renderer, kind: str, article, depth: int) -> str:
    return renderer.render(kind, "x/" * depth, article=article).content.decode("utf-8").strip("\n")


@pytest.mark.parametrize("kind", ["_item.html", "_entry.xml"])
def test_an_entry_rendered_once_is_at_every_depth_what_rendering_it_there_gives(monkeypatch, kind):
    """Entries are rendered once for pages of any depth (the home page, a topic's, its second page),
    their links' climb to the root put in for each (see render.placed)."""
    renderer = _renderer(monkeypatch)
    for depth in (0, 1, 2, 4):
        made = renderer._entries_made(kind, depth)
        for article in renderer.digest.articles:
            entry = str(renderer._entry(kind, article, "x/" * depth, depth, made))
            assert entry == _rendered_at(renderer, kind, article, depth)
            assert "\x00" not in entry
    # One fragment per article and kind, whatever the depth.
    assert len([k for k in renderer.new_fragments]) == len(renderer.digest.articles)


@pytest.mark.parametrize(("author", "printed"), [('"a\\0b"', ""), ("someone", '{{ "\\x00" }}')])
def test_a_nul_in_a_setting_or_a_template_makes_entries_for_each_depth(monkeypatch, tmp_path, author, printed):
    """A NUL in a setting or printed by the entry's template could not be told from the markers:
    entries are then rendered at each depth, as they were before."""
    import shutil

    shutil.copytree(EXAMPLE / "content", tmp_path / "content")
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates/_item.html").write_text(
        '<li><a href="{{ article_url(article.id) }}">{{ article.title }}</a> {{ site.author }}'
        ' <a href="{{ root }}">home</a>' + printed + '</li>\n')
    (tmp_path / "digest.yaml").write_text(f"title: T\nauthor: {author}\n")
    monkeypatch.setattr(render, "_ENTRIES_MADE", {})
    config = load_config(tmp_path)
    loaded = load_articles(config.content_path, config.root, jobs=1)
    digest = link_articles(loaded.articles, config.similar, config.taxonomies, fingerprints=loaded.fingerprints)
    renderer = Renderer(digest, config, loaded.fingerprints, None)
    article = digest.articles[0]
    for depth in (0, 2, 4):
        entry = str(renderer._entry("_item.html", article, "x/" * depth, depth, renderer._entries_made("_item.html", depth)))
        assert entry == _rendered_at(renderer, "_item.html", article, depth)
        assert entry.count("\x00") == 1 and f'href="{"../" * depth}articles/' in entry


def test_the_cache_keeps_one_entry_per_article_for_every_depth_when_its_journal_is_folded(example_copy,
                                                                                         monkeypatch):
    """The next process finds each article's listing and feed entries in the cache folder, made
    once for every depth (see render.placed), also after the fragment journal is folded into its
    base, which keeps the current articles' entries only (`build._current_fragments`)."""
    import generator.cache_files as cache_files
    from generator.build import build
    from generator.cache_files import JournaledDict
    from generator.render import ANYWHERE, fragment_key
    from tests.test_incremental import build_in_new_process

    record = example_copy / "content/autoimmunity/36109639.yaml"
    build_in_new_process(example_copy)
    record.write_text(record.read_text().replace("refractory systemic lupus", "refractory lupus"))
    monkeypatch.setattr(cache_files, "journal_is_full", lambda *sizes: True)
    monkeypatch.setattr(render, "_ENTRIES_MADE", {})
    build(load_config(example_copy))  # the journal is folded
    stored = JournaledDict(example_copy / ".digest-cache/fragments.pickle").load()
    config = load_config(example_copy)
    loaded = load_articles(config.content_path, config.root, jobs=1)
    digest = link_articles(loaded.articles, config.similar, config.taxonomies, fingerprints=loaded.fingerprints)
    renderer = Renderer(digest, config, loaded.fingerprints, None)
    renderer.plan()  # gives it the articles' keys
    wanted = {fragment_key(renderer.theme_key, kind, keys[article_id], ANYWHERE)
              for kind, keys in (("_item.html", renderer._item_keys), ("_entry.xml", renderer._article_keys))
              for article_id in keys}
    assert len(wanted) == 2 * len(renderer.digest.articles) and wanted <= stored.keys()
    entries = [key for key in stored if not key.startswith("layout:")]
    assert len(entries) <= len(wanted) + len(renderer.digest.articles)  # (and digest.json's entries)
