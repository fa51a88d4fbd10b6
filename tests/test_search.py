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


def test_a_first_shard_moved_half_way_out_of_a_bundle_is_no_longer_claimed_by_it(tmp_path, monkeypatch):
    """The first shard's files are the bundle's own, beside `shards/`: they are moved one by one,
    its key file first, so that a move stopped half-way leaves a bundle that no longer says it
    holds the shard (a later build links or indexes it instead of taking what is left)."""
    from generator import search

    bundle, fresh = tmp_path / "pagefind", tmp_path / ".pagefind.new"
    (bundle / "shards/1").mkdir(parents=True)
    for name in ("filter", "fragment", "index"):
        (bundle / name).mkdir()
    (bundle / "pagefind-entry.json").write_text("{}")
    shard = search.Shard(0, ("1", "2"), "k0")
    (bundle / search.KEY_FILE).write_text(f"k0\n{shard.members}\n")
    assert search._own_copy(shard, tmp_path, None, refresh=True)
    moved, real_rename = [], search.os.rename

    def rename(source, target):
        if moved:
            raise OSError(5, "Input/output error")
        moved.append(Path(source).name)
        real_rename(source, target)

    monkeypatch.setattr(search.os, "rename", rename)
    with pytest.raises(OSError):
        search._move_shard(shard, bundle, fresh)
    assert moved == [search.KEY_FILE] and (bundle / "filter").is_dir()
    assert not search._own_copy(shard, tmp_path, None, refresh=True)
    monkeypatch.setattr(search.os, "rename", real_rename)
    # Moved whole, the shard's files leave `shards/` (the other shards) where it was.
    (fresh / search.KEY_FILE).rename(bundle / search.KEY_FILE)
    search._move_shard(shard, bundle, fresh)
    assert sorted(p.name for p in bundle.iterdir()) == ["shards"]
    assert sorted(p.name for p in fresh.iterdir()) == sorted([search.KEY_FILE, "filter", "fragment", "index",
                                                              "pagefind-entry.json"])


def test_staged_pages_are_linked_again_unless_their_key_says_pagefind_reads_the_same(tmp_path, monkeypatch):
    """The folder of pages Pagefind reads for a shard is kept with each page's key: a page whose key
    is the same is not linked again; one whose key changed is. Its keys are dropped while it
    changes, so a staging stopped half-way (after linking a new page) cannot leave a key that
    says the folder holds what it no longer does."""
    import os

    from generator import search

    site, live, stage = tmp_path / "site", tmp_path / "live", tmp_path / "stage"
    live.mkdir()
    write_site(site, {"a": ("Alpha", "first", "2020"), "b": ("Beta", "second", "2021")})
    page = site / "articles/a/index.html"

    def rewrite(text: str) -> None:  # as the site's writer does: a new file (the live tree keeps the old)
        page.unlink()
        page.write_text(text, encoding="utf-8")

    def staged() -> str:
        return (stage / "articles/a/index.html").read_text(encoding="utf-8")

    search._stage(site, stage, search.Shard(0, ("a", "b"), "k", ("ka", "kb")))
    assert staged() == page.read_text(encoding="utf-8") and (stage / search.STAGE_KEYS).is_file()
    links, real_link = [], os.link
    monkeypatch.setattr(search.os, "link", lambda source, target: links.append(target) or real_link(source, target))
    search._stage(site, stage, search.Shard(0, ("a", "b"), "k", ("ka", "kb")))
    assert links == []  # the same keys: nothing linked again
    os.link(page, live / "a.html")
    old = page.read_text(encoding="utf-8")
    rewrite(old.replace("Alpha", "Alpha two"))

    def failing(source, target):
        if "/b/" in str(target):
            raise OSError(5, "Input/output error")
        return real_link(source, target)

    monkeypatch.setattr(search.os, "link", failing)
    monkeypatch.setattr(search.shutil, "copyfile", failing)
    with pytest.raises(OSError):
        search._stage(site, stage, search.Shard(0, ("a", "b"), "k2", ("ka2", "kb2")))
    assert "Alpha two" in staged()
    monkeypatch.setattr(search.os, "link", real_link)
    monkeypatch.undo()
    os.link(page, live / "a2.html")  # the live tree holds the edited page now
    rewrite(old)  # the edit undone: the page's key is "ka" again
    search._stage(site, stage, search.Shard(0, ("a", "b"), "k", ("ka", "kb")))
    assert staged() == old and (stage / "articles/b/index.html").is_file()
