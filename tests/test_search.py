"""generator.search: Pagefind over a written site, with clear errors when it is missing or fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from generator.config import SiteConfig
from generator.errors import DigestError
from generator.search import index_site, pagefind_arguments

PAGE = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title></head><body>
<nav>Topics Authors Journals</nav>
<main><article><header data-pagefind-body><h1>{title}</h1></header>
<section data-pagefind-body><p>{text}</p></section>
<section class="similar"><p>sidebarword</p></section>
<div hidden><span data-pagefind-filter="year">{year}</span></div></article></main></body></html>"""


def write_site(folder: Path, articles: dict[str, tuple[str, str, str]]) -> Path:
    (folder / "topics" / "x").mkdir(parents=True, exist_ok=True)
    (folder / "topics" / "x" / "index.html").write_text(PAGE.format(title="Listing", text="listingword", year=""))
    for article_id, (title, text, year) in articles.items():
        page = folder / "articles" / article_id / "index.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(PAGE.format(title=title, text=text, year=year), encoding="utf-8")
    return folder


def fragments_of(bundle: Path) -> int:
    return len(list((bundle / "fragment").iterdir()))


@pytest.fixture
def pagefind():
    pytest.importorskip("pagefind")
    from generator.search import pagefind_command

    try:
        pagefind_command()
    except DigestError:
        pytest.skip("Pagefind is not installed")


def test_indexes_article_pages_only_and_replaces_the_previous_bundle(tmp_path, pagefind):
    site = write_site(tmp_path / "site", {"1": ("First", "alpha", "2020"), "2": ("Second", "beta", "2021")})
    config = SiteConfig(root=tmp_path)
    report = index_site(site, config)
    assert report.pages == 2 and report.seconds > 0
    assert (site / "pagefind" / "pagefind-entry.json").is_file()
    assert (site / "pagefind" / "pagefind-component-ui.js").is_file()
    assert fragments_of(site / "pagefind") == 2  # the listing page under topics/ is not indexed
    # Pagefind never removes an older bundle's files: index_site swaps in a fresh bundle instead.
    (site / "articles" / "2" / "index.html").unlink()
    (site / "articles" / "2").rmdir()
    assert index_site(site, config).pages == 1
    assert fragments_of(site / "pagefind") == 1
    assert sorted(p.name for p in site.iterdir() if p.name.startswith(".")) == []


def test_an_empty_digest_needs_no_index(tmp_path, pagefind):
    site = write_site(tmp_path / "site", {"1": ("First", "alpha", "2020")})
    index_site(site, SiteConfig(root=tmp_path))
    (site / "articles" / "1" / "index.html").unlink()
    report = index_site(site, SiteConfig(root=tmp_path))
    assert report.pages == 0
    assert not (site / "pagefind").exists()


def test_missing_or_failing_pagefind_is_a_clear_digest_error(tmp_path, monkeypatch):
    site = write_site(tmp_path / "site", {"1": ("First", "alpha", "2020")})
    monkeypatch.setenv("PAGEFIND_BINARY_PATH", str(tmp_path / "no-such-pagefind"))
    with pytest.raises(DigestError, match="Pagefind is not installed") as missing:
        index_site(site, SiteConfig(root=tmp_path))
    assert "pip install 'pagefind[bin]'" in str(missing.value)
    failing = tmp_path / "pagefind"
    failing.write_text("#!/bin/sh\necho 'Error: out of cheese' >&2\nexit 3\n")
    failing.chmod(0o755)
    monkeypatch.setenv("PAGEFIND_BINARY_PATH", str(failing))
    with pytest.raises(DigestError, match=r"Pagefind failed \(exit 3\): Error: out of cheese"):
        index_site(site, SiteConfig(root=tmp_path))
    assert not (site / "pagefind").exists() and not (site / ".pagefind.new").exists()


def test_options_index_only_articles_in_the_digest_language(tmp_path):
    arguments = pagefind_arguments(tmp_path, SiteConfig(root=tmp_path, language="pt-BR"))
    assert arguments[arguments.index("--glob") + 1] == "articles/*/index.html"
    assert arguments[arguments.index("--force-language") + 1] == "pt"


def test_shards_split_large_digests_and_keep_each_article_where_it_was():
    from generator.search import assign_shards, merged_bundles, shard_count

    assert [shard_count(n) for n in (0, 13, 1500, 1501, 3000, 3001, 10_000, 100_000, 10**7)] == \
        [1, 1, 1, 2, 2, 4, 8, 16, 16]
    ids = [str(30_000_000 + i) for i in range(10_000)]
    shards = assign_shards(ids)
    assert sorted(shards) == list(range(8)) and sorted(i for part in shards.values() for i in part) == sorted(ids)
    assert max(map(len, shards.values())) < 1.2 * 10_000 / 8  # a hash spreads them evenly
    # Adding records moves none of the others while the digest keeps its number of shards.
    grown = assign_shards(ids + [str(40_000_000 + i) for i in range(500)])
    assert all(set(part) <= set(grown[number]) for number, part in shards.items())
    assert merged_bundles(ids) == [f"pagefind/shards/{n}/" for n in range(1, 8)]
    assert merged_bundles(ids[:1500]) == [] and assign_shards([]) == {}
