"""Long listings split into pages (`paginate` in digest.yaml): every article on exactly one page, in
the listing's order; pagers whose links lead to the listing's pages; incremental builds that add,
move and drop pages with the bytes of a clean build."""

from __future__ import annotations

import posixpath
import re
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from generator import urls
from generator.build import BuildSession, build
from generator.config import load_config
from generator.errors import DigestError
from generator.pagination import make_pager, page_ids
from tests.conftest import read_tree
from tests.test_incremental import read_tree_of_clean_build

ITEM_LINK = re.compile(r'<a class="item-title" href="([^"]+)"')
LINK = re.compile(r'href="([^"#?]+)"')


def paginated(root: Path, per_page: int | bool) -> None:
    text = (root / "digest.yaml").read_text()
    (root / "digest.yaml").write_text(re.sub(r"(?m)^paginate:.*\n", "", text) + f"paginate: {str(per_page).lower()}\n")


def page_file(path: str) -> str:
    return urls.output_file(path)


def listed_ids(site: Path, path: str) -> list[str]:
    """The article ids a listing page lists, from its links (resolved against the page's folder)."""
    html = (site / page_file(path)).read_text()
    items = html[html.index('<ol class="items"'): html.index("</ol>")]
    found = []
    for href in ITEM_LINK.findall(items):
        target = posixpath.normpath(posixpath.join(path or ".", href))
        assert (site / target / "index.html").is_file(), f"{path}: {href} leads nowhere"
        found.append(target.split("/")[1])
    return found


def pages_of(site: Path, listing: str) -> list[str]:
    """The page paths of a listing, following its pagers' 'Older' links from the first."""
    pages, path = [listing], listing
    while True:
        html = (site / page_file(path)).read_text()
        found = re.search(r'<a class="pager-step" href="([^"]+)" rel="next">', html)
        if not found:
            return pages
        path = posixpath.normpath(posixpath.join(path or ".", found.group(1))) + "/"
        pages.append(path)


def test_a_long_listing_is_split_into_pages_that_lead_to_each_other(example_copy):
    paginated(example_copy, False)
    build(load_config(example_copy))
    whole = listed_ids(example_copy / "site", "")
    whole_topic = listed_ids(example_copy / "site", "topics/car-t/")
    assert len(whole) == 13 and len(whole_topic) > 8
    assert not (example_copy / "site/page").exists()

    paginated(example_copy, 4)
    build(load_config(example_copy))
    site = example_copy / "site"
    home = pages_of(site, "")
    assert home == ["", "page/2/", "page/3/", "page/4/"]
    assert not (site / "page/5").exists() and not (site / "page/1").exists()
    # Every article on exactly one page, in the one-page listing's order, four to a page.
    per_page = [listed_ids(site, path) for path in home]
    assert [len(ids) for ids in per_page] == [4, 4, 4, 1]
    assert sum(per_page, []) == whole
    topic = pages_of(site, "topics/car-t/")
    assert sum((listed_ids(site, path) for path in topic), []) == whole_topic  # four folders deep
    for number, path in enumerate(home, 1):
        html = (site / page_file(path)).read_text()
        # The list's numbering goes on from the page before; the pager says where the page stands.
        assert (f'<ol class="items" start="{4 * number - 3}">' in html) == (number > 1)
        assert f"13 articles, newest first: {4 * number - 3}–{min(13, 4 * number)} on page {number} of 4." in html
        pager = html[html.index('<nav class="pager"'): html.index("</nav>", html.index('<nav class="pager"'))]
        assert re.findall(r'aria-current="page">(\d+)<', pager) == [str(number)]
        assert ('rel="prev"' in pager) == (number > 1) and ('rel="next"' in pager) == (number < 4)
        for href in LINK.findall(pager):
            assert (site / posixpath.normpath(posixpath.join(path or ".", href)) / "index.html").is_file()
    titles = {re.search(r"<title>(.*?)</title>", (site / page_file(p)).read_text()).group(1) for p in home}
    assert len(titles) == 4  # each page its own title
    sitemap = (site / "sitemap.xml").read_text()
    assert all(f"<loc>{load_config(example_copy).base_url}{p}</loc>" in sitemap for p in home[1:] + topic[1:])
    # A short listing has no pager.
    short = next(p for p in site.glob("authors/*/index.html") if len(listed_ids(site, p.parent.relative_to(site).as_posix() + "/")) == 1)
    assert 'class="pager"' not in short.read_text()


def test_builds_that_add_move_and_drop_pages_give_the_bytes_of_a_clean_build(example_copy):
    paginated(example_copy, 3)
    config = load_config(example_copy)
    build(config)
    site = example_copy / "site"
    assert (site / "page/5/index.html").is_file()  # 13 articles, three to a page
    # Two records fewer: page 5 goes; every page moves up.
    (example_copy / "content/oncology/29226797.xml").unlink()
    removed = next(p for p in (example_copy / "content").rglob("*.yaml") if "36109639" not in p.name)
    removed.unlink()
    build(config)
    assert not (site / "page/5").exists()
    assert read_tree(site) == read_tree_of_clean_build(example_copy)
    # A title edit changes the one page that lists the article (and its own pages), not the others.
    before = read_tree(site)
    record = example_copy / "content/autoimmunity/36109639.yaml"
    record.write_text(record.read_text().replace("refractory systemic lupus", "refractory lupus"))
    build(config)
    after = read_tree(site)
    assert read_tree(site) == read_tree_of_clean_build(example_copy)
    changed_home_pages = {p for p in after if re.fullmatch(r"(page/\d+/)?index\.html", p) and before.get(p) != after[p]}
    assert len(changed_home_pages) == 1
    # A new setting changes every listing page; the same session keeps giving clean builds' bytes.
    session = BuildSession(config=config)
    for per_page in (5, False, 2):
        paginated(example_copy, per_page)
        config = load_config(example_copy)
        session = BuildSession(config=config)
        build(config, session=session)
        assert read_tree(site) == read_tree_of_clean_build(example_copy)
    record.write_text(record.read_text().replace("refractory lupus", "refractory systemic lupus"))
    build(config, session=session)
    assert read_tree(site) == read_tree_of_clean_build(example_copy)
    assert (site / "page/6/index.html").is_file() and not (site / "page/7").exists()


def test_the_early_writer_makes_the_first_page_of_each_term_and_the_render_stage_the_others(example_copy,
                                                                                            monkeypatch):
    import generator.build as build_module
    import generator.render as render_module

    monkeypatch.setattr(render_module, "_ENTRIES_MADE", {})
    monkeypatch.setattr(build_module, "EARLY_FILES_MIN", 20)
    placed = []
    finish = build_module._EarlyFiles.finish
    monkeypatch.setattr(build_module._EarlyFiles, "finish", lambda self: placed.append(finish(self)) or placed[-1])
    paginated(example_copy, 2)
    build(load_config(example_copy), jobs=2)
    assert placed and placed[-1] is not None  # the forked writer ran
    made = placed[-1][1]
    assert "topics/car-t/index.html" in made and not any("/page/" in path for path in made)
    site = example_copy / "site"
    assert (site / "topics/car-t/page/3/index.html").is_file()
    assert read_tree(site) == read_tree_of_clean_build(example_copy)


@pytest.mark.parametrize(("value", "per_page"), [("false", 0), ("0", 0), ("true", 100), ("25", 25)])
def test_paginate_setting(tmp_path, value, per_page):
    (tmp_path / "digest.yaml").write_text(f"title: T\npaginate: {value}\n")
    assert load_config(tmp_path).per_page == per_page


@pytest.mark.parametrize("value", ["-1", "many", "2.5", "[10]"])
def test_a_bad_paginate_setting_names_its_line(tmp_path, value):
    (tmp_path / "digest.yaml").write_text(f"title: T\n\npaginate: {value}\n")
    with pytest.raises(DigestError) as caught:
        load_config(tmp_path)
    assert "digest.yaml:3" in str(caught.value) and "'paginate'" in str(caught.value)


@given(total=st.integers(0, 500), per_page=st.integers(0, 60), data=st.data())
def test_pages_hold_every_article_once_and_pagers_link_the_first_last_and_near_pages(total, per_page, data):
    ids = [str(n) for n in range(total)]
    count = urls.page_count(total, per_page)
    assert sum((list(page_ids(ids, n, per_page)) for n in range(1, count + 1)), []) == ids
    assert all(page_ids(ids, n, per_page) for n in range(1, count + 1)) or total == 0
    number = data.draw(st.integers(1, count))
    listing = data.draw(st.sampled_from(["", "topics/x/"]))
    pager = make_pager(listing, number, total, per_page)
    assert (pager.number, pager.count, pager.total) == (number, count, total)
    shown = list(page_ids(ids, number, per_page))
    assert (pager.first, pager.last) == ((int(shown[0]) + 1, int(shown[-1]) + 1) if shown else (1, 0))
    numbers = [link.number for link in pager.links if link.number]
    assert numbers == sorted(set(numbers)) and {1, count, number} <= set(numbers)
    assert {n for n in range(number - 2, number + 3) if 1 <= n <= count} <= set(numbers)
    assert [link.number for link in pager.links if link.current] == [number]
    for before, gap, after in zip(pager.links, pager.links[1:], pager.links[2:]):
        if not gap.number:  # a gap stands for at least one page left out
            assert after.number > before.number + 1
    depth = urls.depth(urls.listing_page_path(listing, number))
    for link in pager.links:
        if link.number:
            assert link.url == urls.url_from_depth(depth, urls.listing_page_path(listing, link.number))
    assert bool(pager.previous) == (number > 1) and bool(pager.next) == (number < count)


@given(base=st.sampled_from(["", "topics/x/", "authors/page/", "years/2021/"]), number=st.integers(1, 10_000))
def test_a_listing_pages_path_gives_back_its_listing_and_number(base, number):
    assert urls.split_listing_page(urls.listing_page_path(base, number)) == (base, number)


def test_a_preview_renders_an_open_listing_page_while_it_exists(example_copy):
    from generator.link import link_articles
    from generator.load import load_articles
    from generator.render import PageJob, page_job

    config = replace(load_config(example_copy), per_page=2)
    loaded = load_articles(config.content_path, config.root, jobs=1)
    digest = link_articles(loaded.articles, config.similar, config.taxonomies, fingerprints=loaded.fingerprints)
    topics = digest.taxonomies["topics"]
    index = next(i for i, term in enumerate(topics) if term.slug == "car-t")
    pages = urls.page_count(len(topics[index].article_ids), 2)
    last = PageJob(f"topics/car-t/page/{pages}/index.html", "term", "k", ("topics", 0, 1, ("topics/", "")))
    # (with where the index lists the term: C's page of an index in a page per letter)
    assert page_job(digest, last, 2) == PageJob(last.path, "term", "", ("topics", index, pages, ("topics/letter/c/", "")))
    assert page_job(digest, last, 100) is None  # one page now: the open page is gone
    home = PageJob("page/7/index.html", "home", "k", (7,))
    assert page_job(digest, home, 2) == PageJob(home.path, "home", "", (7,))
    assert page_job(digest, home, 3) is None
