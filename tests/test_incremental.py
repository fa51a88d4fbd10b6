"""Incremental and parallel builds give exactly the bytes of a clean single-process build."""

from __future__ import annotations

import json
import marshal
import os
import pickle
import re
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from generator.build import build
from generator.config import load_config
from tests.conftest import REPO, SHARED, read_tree


def clean_build(root: Path, out: Path, jobs: int = 1):
    config = replace(load_config(root, {}), output_dir=str(out))
    return build(config, jobs=jobs, clean=True)


def test_no_change_rebuild_writes_nothing(example_copy):
    config = load_config(example_copy, {})
    first = build(config)
    stamps = {p: p.stat().st_mtime_ns for p in (example_copy / "site").rglob("*") if p.is_file()}
    second = build(config)
    assert first.written == first.pages and second.written == 0
    assert {p: p.stat().st_mtime_ns for p in (example_copy / "site").rglob("*") if p.is_file()} == stamps


def test_editing_notes_rewrites_only_that_articles_pages(example_copy):
    config = load_config(example_copy, {})
    build(config)
    before = read_tree(example_copy / "site")
    notes = example_copy / "content/autoimmunity/37147112.md"
    notes.write_text(notes.read_text().replace("First systemic sclerosis case", "The first systemic sclerosis case"))
    report = build(config)
    after = read_tree(example_copy / "site")
    changed = {path for path in after if before.get(path) != after[path]} - {".digest-tree"}
    assert changed == {"articles/37147112/index.html", "articles/37147112/index.md"}
    assert report.written == 2
    assert after == read_tree_of_clean_build(example_copy)


def read_tree_of_clean_build(root: Path) -> dict[str, bytes]:
    out = root.parent / "clean-site"
    shutil.rmtree(out, ignore_errors=True)
    clean_build(root, out)
    return read_tree(out)


def test_incremental_builds_equal_clean_builds_after_edits_additions_and_removals(example_copy):
    config = load_config(example_copy, {})
    build(config)
    # Edit a title (shown in listings, feeds, backlinks), add a record, remove another.
    record = example_copy / "content/autoimmunity/36109639.yaml"
    record.write_text(record.read_text().replace("refractory systemic lupus", "refractory lupus"))
    (example_copy / "content/autoimmunity/new.yaml").write_text(
        "pmid: 31234567\ntitle: A new record about CAR-T cells in lupus\npublished: 2025-08-01\n"
        "mesh_terms: ['Lupus Erythematosus, Systemic/*therapy']\nsimilar: [36109639]\n")
    (example_copy / "content/oncology/29226797.xml").unlink()
    build(config)
    assert read_tree(example_copy / "site") == read_tree_of_clean_build(example_copy)
    assert not (example_copy / "site/articles/29226797").exists()
    # And back again: the spare tree two builds old is brought up to date correctly too.
    record.write_text(record.read_text().replace("refractory lupus", "refractory systemic lupus"))
    build(config)
    assert read_tree(example_copy / "site") == read_tree_of_clean_build(example_copy)


def test_a_build_that_changes_every_page_writes_over_the_spare_trees_own_files_and_never_the_live_ones(
        example_copy, monkeypatch):
    """A new site title changes every page. The spare tree (two builds old) then holds pages of its
    own and pages it shares with the live site (hard links: cite files no title reaches). Its own
    are written over in place (replacing them cost ten times as much: freeing, then allocating,
    an inode and its blocks); the shared ones are replaced, so the live site stays as it was until
    the exchange, and the site equals a clean build's."""
    from generator import write

    settings = example_copy / "digest.yaml"
    config = load_config(example_copy, {})
    build(config)
    settings.write_text(settings.read_text().replace("title: CAR-T cells beyond cancer", "title: A first new title"))
    build(load_config(example_copy, {}))
    spare, live = example_copy / ".site.spare", example_copy / "site"
    page = "articles/37147112/index.html"
    own = open(spare / page, "rb")  # noqa: SIM115 - read after the build: the same file, or the replaced one
    assert (spare / page).stat().st_nlink == 1 and (spare / page).read_bytes() != (live / page).read_bytes()
    shared = next(p for p in spare.rglob("cite.bib") if p.stat().st_nlink == 2)
    shared_path = shared.relative_to(spare).as_posix()
    live_before = read_tree(live)
    publish = write.SiteWriter.publish

    def checked_publish(self):
        assert read_tree(live) == live_before  # not a byte of the live site changed before the exchange
        return publish(self)

    monkeypatch.setattr(write.SiteWriter, "publish", checked_publish)
    settings.write_text(settings.read_text().replace("A first new title", "A second title"))
    build(load_config(example_copy, {}))
    monkeypatch.undo()
    with own:
        assert own.read() == (live / page).read_bytes()  # written over, not replaced
    assert b"A second title" in (live / page).read_bytes()
    assert (spare / shared_path).read_bytes() == live_before[shared_path]
    assert read_tree(live) == read_tree_of_clean_build(example_copy)


def test_writing_over_a_file_cuts_it_to_the_new_length_and_never_writes_through_links(tmp_path):
    from generator.write import write_file, write_spliced

    own = tmp_path / "own.html"
    own.write_bytes(b"x" * 5000)
    with open(own, "rb") as before:
        write_file(str(own), b"shorter")
        assert before.read() == own.read_bytes() == b"shorter"  # the same file, cut to its new length
    source = tmp_path / "source"
    source.write_bytes(b"0123456789")
    with open(source, "rb") as stream:
        write_spliced(str(own), [b"<", (2, 5), b">"], stream.fileno())
    assert own.read_bytes() == b"<234>"
    live = tmp_path / "live.html"
    live.write_bytes(b"the live page")
    shared = tmp_path / "shared.html"
    shared.hardlink_to(live)
    write_file(str(shared), b"new")
    assert shared.read_bytes() == b"new" and live.read_bytes() == b"the live page"
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"not ours")
    link = tmp_path / "link.html"
    link.symlink_to(outside)
    write_file(str(link), b"page")
    assert not link.is_symlink() and link.read_bytes() == b"page" and outside.read_bytes() == b"not ours"


def test_a_file_of_the_live_sites_size_is_linked_only_when_every_byte_is_the_same(tmp_path, monkeypatch):
    """The writer links a page from the live site when its bytes are the same, comparing a
    megabyte at a time; a difference in any piece, or a file of another size, is written."""
    import generator.write as write_module
    from generator.write import TreeFiles

    monkeypatch.setattr(write_module, "_COMPARED_AT_ONCE", 4)
    live, spare = tmp_path / "site", tmp_path / ".site.spare"
    live.mkdir()
    spare.mkdir()
    (live / "same.json").write_bytes(b"0123456789abcdef!")
    (live / "last.json").write_bytes(b"0123456789abcdef!")
    (live / "first.json").write_bytes(b"0123456789abcdef!")
    files = TreeFiles(spare, live)
    assert files.put("same.json", b"0123456789abcdef!") is False
    assert (spare / "same.json").stat().st_ino == (live / "same.json").stat().st_ino
    assert files.put("last.json", b"0123456789abcdef?") is True
    assert files.put("first.json", b"x123456789abcdef!") is True
    assert (spare / "last.json").read_bytes() == b"0123456789abcdef?"
    assert (spare / "last.json").stat().st_ino != (live / "last.json").stat().st_ino
    assert (spare / "first.json").read_bytes() == b"x123456789abcdef!"
    assert files.put("same.json", b"0123456789abcdef!!") is True  # longer: not read at all
    assert (spare / "same.json").read_bytes() == b"0123456789abcdef!!"
    assert (live / "same.json").read_bytes() == b"0123456789abcdef!"  # (not written through the link)


def test_linking_over_a_spare_trees_own_file_sets_it_aside_for_deletion_after_the_build(tmp_path):
    from generator.write import _REMOVERS, SiteWriter, TreeFiles

    live, spare = tmp_path / "site", tmp_path / ".site.spare"
    (live / "a").mkdir(parents=True)
    (spare / "a").mkdir(parents=True)
    for name in ("own.html", "shared.html"):
        (live / "a" / name).write_bytes(b"current " + name.encode())
    (spare / "a/own.html").write_bytes(b"two builds old")
    (live / "a/kept.html").write_bytes(b"kept")
    (spare / "a/shared.html").hardlink_to(live / "a/kept.html")  # shared with the live tree
    files = TreeFiles(spare)
    for name in ("own.html", "shared.html"):
        files.link(str(live / "a" / name), str(spare / "a" / name))
        assert (spare / "a" / name).read_bytes() == b"current " + name.encode()
    trash = list(tmp_path.glob(".site.trash-*"))
    assert len(trash) == 1 and [p.read_bytes() for p in trash[0].iterdir()] == [b"two builds old"]
    assert (live / "a/kept.html").read_bytes() == b"kept"  # a shared name is only unlinked
    writer = SiteWriter(live, tmp_path / "cache")
    writer.remove_discarded()
    for remover in _REMOVERS:
        remover.wait(timeout=30)
    assert not list(tmp_path.glob(".site.trash-*"))


class OpenPages:
    """A stand-in for `digest serve`: these pages are open in a browser (see `build.Preview`)."""

    def __init__(self, pages: set[str]):
        self.pages = pages
        self.shown: dict[str, bytes] = {}
        self.current = None
        self.showings = 0

    def open_pages(self) -> set[str]:
        return self.pages

    def show(self, pages: dict[str, bytes]) -> None:
        self.shown, self.showings = pages, self.showings + 1

    def planned(self, is_current) -> None:
        self.current = is_current


def test_builds_in_one_session_equal_clean_builds(example_copy):
    """`digest serve` keeps records, articles, similarity and fragments in memory between builds."""
    from generator.build import BuildSession
    from generator.errors import DigestError

    config = load_config(example_copy, {})
    session = BuildSession(config=config)
    build(config, session=session)
    record = example_copy / "content/autoimmunity/36109639.yaml"
    notes = example_copy / "content/autoimmunity/37147112.md"
    steps = [
        lambda: notes.write_text(notes.read_text().replace("First systemic sclerosis case", "A first case")),
        lambda: record.write_text(record.read_text().replace("refractory systemic lupus", "refractory lupus")),
        lambda: (example_copy / "content/autoimmunity/new.yaml").write_text(
            "pmid: 31234567\ntitle: A new record about CAR-T cells in lupus\nsimilar: [36109639]\n"),
        lambda: (example_copy / "content/oncology/29226797.xml").unlink(),
        lambda: record.write_text(record.read_text().replace("refractory lupus", "refractory systemic lupus")),
    ]
    preview = OpenPages({"articles/36109639/index.html", "index.html", "articles/29226797/index.html",
                         "topics/lupus-erythematosus-systemic/index.html", "map/index.html", "feed.xml"})
    for step in steps:
        step()
        report = build(config, session=session, preview=preview)
        assert report.written > 0
        site = read_tree(example_copy / "site")
        assert site == read_tree_of_clean_build(example_copy)
        # The pages shown before the rest was built are the pages built.
        assert all(site[path] == data for path, data in preview.shown.items())
        assert preview.current is not None and preview.current("robots.txt")
        shown_pages = {path for path in preview.shown if not path.startswith("assets/")}
        assert shown_pages <= preview.pages - {"feed.xml"}
        if step in (steps[0], steps[1], steps[4]):  # another record's notes; this record's title, twice
            assert ("articles/36109639/index.html" in shown_pages) == (step is not steps[0])
        preview.shown, preview.current = {}, None
    assert preview.showings >= 4  # steps that changed an open page (the lupus record's, the listings)
    # A broken record fails the build and leaves the site; fixing it recovers in the same session.
    before = read_tree(example_copy / "site")
    good = record.read_text()
    record.write_text("title: [unclosed\n")
    with pytest.raises(DigestError):
        build(config, session=session)
    assert read_tree(example_copy / "site") == before
    record.write_text(good.replace("refractory systemic lupus", "relapsing lupus"))
    build(config, session=session)
    assert read_tree(example_copy / "site") == read_tree_of_clean_build(example_copy)


MAKE_CORPUS = SHARED / "bench" / "make_corpus.py"


@pytest.mark.skipif(not MAKE_CORPUS.exists(), reason="the corpus generator is not on this machine")
def test_parallel_rendering_gives_the_same_bytes_as_one_process(tmp_path):
    import subprocess
    import sys

    subprocess.run([sys.executable, str(MAKE_CORPUS), "--n", "120", "--out", str(tmp_path / "corpus"),
                    "--formats", "medline"], check=True, capture_output=True)
    root = tmp_path / "digest"
    root.mkdir()
    (root / "content").symlink_to(tmp_path / "corpus" / "medline")
    import generator.build as build_module

    threshold = build_module.PARALLEL_THRESHOLD
    build_module.PARALLEL_THRESHOLD = 1  # force the worker pool even on this small digest
    try:
        clean_build(root, tmp_path / "two", jobs=2)
    finally:
        build_module.PARALLEL_THRESHOLD = threshold
    clean_build(root, tmp_path / "one", jobs=1)
    one, two = read_tree(tmp_path / "one"), read_tree(tmp_path / "two")
    assert len(one) > 1000 and one == two


def watch_early_writer(monkeypatch, starter: str) -> tuple[list, list]:
    """Record each early writer `_EarlyFiles.<starter>` starts (None when none) and what each one
    placed (`finish`). The render stage stops a writer once its workers are done; here it waits for
    the writer to finish first (on a small digest it could be stopped at any file)."""
    import generator.build as build_module

    started: list = []
    placed: list = []
    real_start = getattr(build_module._EarlyFiles, starter).__func__
    monkeypatch.setattr(build_module._EarlyFiles, starter,
                        classmethod(lambda cls, *a: started.append(real_start(cls, *a)) or started[-1]))
    real_finish = build_module._EarlyFiles.finish
    monkeypatch.setattr(build_module._EarlyFiles, "finish", lambda self: placed.append(real_finish(self)) or placed[-1])
    real_stop = build_module._EarlyFiles.stop
    monkeypatch.setattr(build_module._EarlyFiles, "stop", lambda self: self.wait() and real_stop(self))
    return started, placed


def test_files_written_while_linking_are_those_of_a_one_process_build(example_copy, monkeypatch):
    """A cold build writes the citation files and term pages in a forked process during link and
    plan (see build._EarlyFiles); the site must be byte for byte the same, also when a build fails
    after them."""
    import generator.build as build_module
    import generator.render as render_module
    from generator.errors import DigestError

    # As in a new process: no listing entries made by an earlier test's build (the writer would
    # inherit them, and have none to hand over).
    monkeypatch.setattr(render_module, "_ENTRIES_MADE", {})
    # The example has 39 citation files; an edit changes 3.
    monkeypatch.setattr(build_module, "EARLY_FILES_MIN", 20)
    monkeypatch.setattr(build_module._ExportStreams, "FLUSH", 100)  # exports written in many pieces
    started, placed = watch_early_writer(monkeypatch, "start")
    config = load_config(example_copy, {})
    build(config, jobs=2)
    assert started[-1] is not None  # the forked writer ran
    # It made the citation files and the term pages, each with the key the plan gave it.
    tree_id = (example_copy / "site/.digest-tree").read_text().strip()
    manifest = marshal.loads((example_copy / f".digest-cache/trees/{tree_id}.manifest").read_bytes())
    made = placed[-1][1]
    assert sum(path.startswith("authors/") for path in made) > 20 and sum("/cite." in path for path in made) == 39
    assert all(manifest[path] == key for path, key in made.items())
    # It made the digest-wide exports too, from the citation files as it wrote them, and said where
    # each entry is: the next edit copies the others from them.
    assert {"digest.bib", "digest.ris", "digest.csl.json"} <= made.keys()
    import generator.cache_files as cache_module
    from generator.render import export_item

    index = cache_module.load_pickle(example_copy / ".digest-cache/exports.pickle")
    bib = (example_copy / "site/digest.bib").read_bytes()
    ((size, entries),) = index["digest.bib"].values()
    assert size == len(bib) and len(entries.ids) == 13
    for article_id, start, end in zip(entries.ids, entries.starts, entries.ends):
        assert bib[start:end] == export_item("digest.bib", (example_copy / f"site/articles/{article_id}/cite.bib").read_bytes())
    # The listing entries it rendered for the term pages are kept for the next build's listings.
    from generator.cache_files import JournaledDict

    entries = placed[-1][2]
    assert entries and entries.items() <= JournaledDict(example_copy / ".digest-cache/fragments.pickle").load().items()
    # It also saved the load state: the next build reads no record again.
    import generator.load as load_module

    with monkeypatch.context() as patch:
        read: list = []
        real_read = load_module.read_content_bytes
        patch.setattr(load_module, "read_content_bytes", lambda path, shown: read.append(shown) or real_read(path, shown))
        cached = load_module.LoadState(example_copy / ".digest-cache/records.pickle")
        assert len(load_module.load_articles(config.content_path, config.root, state=cached).articles) == 13
        assert read == []
    site = read_tree(example_copy / "site")
    assert site == read_tree_of_clean_build(example_copy)
    assert sum(path.endswith("/cite.ris") for path in site) == 13
    # An edit leaves too few new files to fork for: the render stage writes them.
    record = example_copy / "content/autoimmunity/36109639.yaml"
    record.write_text(record.read_text().replace("refractory systemic lupus", "refractory lupus"))
    build(config, jobs=2)
    assert started[-1] is None
    assert read_tree(example_copy / "site") == read_tree_of_clean_build(example_copy)
    # With the site deleted by hand (the cache kept), every file is new again: the writer runs.
    for tree in (example_copy / "site", example_copy / ".site.spare"):
        shutil.rmtree(tree)
    build(config, jobs=2)
    assert started[-1] is not None
    assert read_tree(example_copy / "site") == read_tree_of_clean_build(example_copy)
    # Stopped before its first file, it leaves them all to the render stage: the same site.
    shutil.rmtree(example_copy / "site")
    with monkeypatch.context() as patch:
        real_prepare_some = build_module.SiteWriter.prepare_some

        def stopped_at_once(writer, files, linked):  # in the writer, before its first file
            build_module._early_state[-1].value = 1
            return real_prepare_some(writer, files, linked)

        patch.setattr(build_module.SiteWriter, "prepare_some", stopped_at_once)
        build(config, jobs=2)
    assert started[-1] is not None and placed[-1][0] == 0 and not any("/cite." in path for path in placed[-1][1])
    assert read_tree(example_copy / "site") == read_tree_of_clean_build(example_copy)
    # Stopped half-way through the citation files, its exports are unfinished: the render stage
    # copies the entries they have and reads the other articles' files.
    shutil.rmtree(example_copy / "site")
    with monkeypatch.context() as patch:
        real_add = build_module._ExportStreams.add

        def stopped_half_way(streams, article_id, name, data, key):
            real_add(streams, article_id, name, data, key)
            if sum(export.count for export in streams.exports.values()) == 20:
                build_module._early_state[-1].value = 1

        patch.setattr(build_module._ExportStreams, "add", stopped_half_way)
        copied = []
        real_export_parts = build_module._export_parts
        patch.setattr(build_module, "_export_parts", lambda *a: copied.append(len(a[-1].ids)) or real_export_parts(*a))
        build(config, jobs=2)
    assert placed[-1][0] == 20 and sorted(copied) == [6, 7, 7]
    assert read_tree(example_copy / "site") == read_tree_of_clean_build(example_copy)
    # A build that fails after its citation files were written leaves the site as it was.
    shutil.rmtree(example_copy / ".digest-cache")
    before = read_tree(example_copy / "site")
    (example_copy / "templates").mkdir()
    (example_copy / "templates/term.html").write_text("{{ no_such_thing.attribute.missing }}")
    with pytest.raises(DigestError):
        build(config, jobs=2, clean=True)
    assert started[-1] is not None
    assert read_tree(example_copy / "site") == before
    (example_copy / "templates/term.html").unlink()
    build(config, jobs=2)
    assert read_tree(example_copy / "site") == read_tree_of_clean_build(example_copy)


def test_a_cold_build_makes_each_listing_entry_and_bibtex_once(example_copy, monkeypatch, tmp_path):
    """The early writer makes every article's listing entry and BibTeX before its files, and the
    render stage takes them before it forks: its workers list the same articles on the home page,
    topics, journals and years, and show the BibTeX on the article pages, and made them all again
    (0.6 and 0.3 s of CPU each at 10,000 articles)."""
    import os

    import generator.build as build_module
    import generator.exports as exports_module
    import generator.render as render_module

    monkeypatch.setattr(render_module, "_ENTRIES_MADE", {})  # as in a new process
    monkeypatch.setattr(build_module, "EARLY_FILES_MIN", 20)
    monkeypatch.setattr(build_module, "PARALLEL_THRESHOLD", 2)  # the example's pages to two workers
    started, _ = watch_early_writer(monkeypatch, "start")
    # On so small a digest the render stage can start before the writer has left them: here it waits.
    real_handed_over = build_module._EarlyFiles.handed_over
    monkeypatch.setattr(build_module._EarlyFiles, "handed_over", lambda self: (self.wait(), real_handed_over(self))[1])
    made_by = tmp_path / "made-by"  # a line per entry or BibTeX made: what, and the process that made it

    def noted(what: str) -> None:
        with open(made_by, "a") as stream:
            stream.write(f"{what} {os.getpid()}\n")

    real_render, real_citation_file = render_module.Renderer.render, exports_module.citation_file

    def render(renderer, kind, path, **context):
        if kind == "_item.html":
            noted("entry")
        return real_render(renderer, kind, path, **context)

    def citation_file(article, name, key):
        if name == "cite.bib":
            noted("bibtex")
        return real_citation_file(article, name, key)

    monkeypatch.setattr(render_module.Renderer, "render", render)
    monkeypatch.setattr(exports_module, "citation_file", citation_file)
    monkeypatch.setattr(build_module, "citation_file", citation_file)

    def makers() -> dict[str, list[str]]:
        found: dict[str, list[str]] = {"entry": [], "bibtex": []}
        for line in made_by.read_text().splitlines():
            what, pid = line.split()
            found[what].append(pid)
        made_by.unlink()
        return found

    build(load_config(example_copy, {}), jobs=2)
    assert started[-1] is not None
    for pids in makers().values():
        assert len(pids) == 13 and len(set(pids)) == 1 and pids[0] != str(os.getpid())  # the writer
    assert not list((example_copy / ".digest-cache").glob("early.*"))  # the hand-over is gone
    assert read_tree(example_copy / "site") == read_tree_of_clean_build(example_copy)
    # Above HANDED_BIBTEX_MAX articles, the entries only (the BibTeX would weigh on the peak memory).
    for tree in ("site", ".digest-cache"):
        shutil.rmtree(example_copy / tree)
    made_by.unlink()
    monkeypatch.setattr(build_module, "HANDED_BIBTEX_MAX", 12)
    monkeypatch.setattr(render_module, "_ENTRIES_MADE", {})
    build(load_config(example_copy, {}), jobs=2)
    large = makers()
    assert len(large["entry"]) == 13 and len(large["bibtex"]) == 26
    assert read_tree(example_copy / "site") == read_tree_of_clean_build(example_copy)
    # Without it (a writer that left nothing), the workers make what they show: the same site.
    shutil.rmtree(example_copy / "site")
    shutil.rmtree(example_copy / ".digest-cache")
    made_by.unlink()
    monkeypatch.setattr(build_module._EarlyFiles, "handed_over", lambda self: ({}, {}))
    monkeypatch.setattr(render_module, "_ENTRIES_MADE", {})  # (the clean build's, in this process)
    build(load_config(example_copy, {}), jobs=2)
    again = makers()
    assert len(again["entry"]) > 13 and len(again["bibtex"]) == 26
    assert read_tree(example_copy / "site") == read_tree_of_clean_build(example_copy)
    # One a killed build left with this process's id is not taken for this build's.
    monkeypatch.undo()
    monkeypatch.setattr(build_module, "EARLY_FILES_MIN", 20)
    real_save_pickle = build_module.save_pickle
    monkeypatch.setattr(build_module, "save_pickle",  # this build's writer leaves no hand-over
                        lambda path, value: None if path.name.endswith(".handover.pickle") else real_save_pickle(path, value))
    shutil.rmtree(example_copy / "site")
    shutil.rmtree(example_copy / ".digest-cache")
    stale = example_copy / f".digest-cache/early.{os.getpid()}.handover.pickle"
    stale.parent.mkdir()
    clean = example_copy.parent / "clean-site"  # (read_tree_of_clean_build's)
    keys = {path.parent.name: path.read_text().split("{")[1].split(",")[0] for path in clean.glob("articles/*/cite.bib")}
    assert len(keys) == 13
    stale.write_bytes(pickle.dumps({"entries": {}, "bibtex": {i: (key, "@article{stale}") for i, key in keys.items()}}))
    build(load_config(example_copy, {}), jobs=2)
    assert read_tree(example_copy / "site") == read_tree_of_clean_build(example_copy)


def test_the_daemons_cold_build_writes_early_files_too(example_copy, monkeypatch):
    """A session in a process without threads (the daemon's) has the early writer make its cold
    build's citation files, term pages and exports, as `digest build` does (the daemon's cold build
    at 10,000 articles: 15.2-15.8 s without, 12.4 s with); the site is a clean build's, and so it is
    after an edit in the session, which copies the other entries of the exports the writer made.
    Not in a process with threads (serve's): the writer is a forked process."""
    import generator.build as build_module
    import generator.render as render_module
    from generator.build import new_session
    from generator.input_check import InputCheck

    monkeypatch.setattr(render_module, "_ENTRIES_MADE", {})  # as in a new process
    monkeypatch.setattr(build_module, "EARLY_FILES_MIN", 20)
    threads = [1]
    monkeypatch.setattr(build_module.threading, "active_count", lambda: threads[0])
    started, placed = watch_early_writer(monkeypatch, "start")
    config = load_config(example_copy, {})
    session = new_session(None, config=config, watched=False, input_check=InputCheck())
    build(config, jobs=2, session=session)
    assert started == [started[-1]] and started[-1] is not None
    assert {"digest.bib", "digest.ris", "digest.csl.json"} <= placed[-1][1].keys()
    assert read_tree(example_copy / "site") == read_tree_of_clean_build(example_copy)
    record = example_copy / "content/autoimmunity/36109639.yaml"
    record.write_text(record.read_text().replace("refractory systemic lupus", "refractory lupus"))
    build(config, jobs=2, session=session)
    assert read_tree(example_copy / "site") == read_tree_of_clean_build(example_copy)
    threads[0] = 2  # serve's
    shutil.rmtree(example_copy / "site")
    shutil.rmtree(example_copy / ".digest-cache")
    session = new_session(None, config=config, watched=False, input_check=InputCheck())
    started.clear()
    build(config, jobs=2, session=session)
    assert started == []
    assert read_tree(example_copy / "site") == read_tree_of_clean_build(example_copy)


def test_a_large_digest_starts_the_early_writer_before_linking(example_copy, monkeypatch):
    """Above similarity.PARALLEL_ROWS too, the writer starts before the link stage, most of which runs
    on one core; the site is a clean build's."""
    import generator.build as build_module

    monkeypatch.setattr(build_module, "EARLY_FILES_MIN", 20)
    monkeypatch.setattr(build_module, "PARALLEL_ROWS", 5)  # the example's 13 articles count as large
    order = []
    real_link, real_start = build_module.link_articles, build_module._EarlyFiles.start.__func__
    monkeypatch.setattr(build_module, "link_articles", lambda *a, **k: order.append("link") or real_link(*a, **k))
    monkeypatch.setattr(build_module._EarlyFiles, "start",
                        classmethod(lambda cls, *a: order.append("early") or real_start(cls, *a)))
    build(load_config(example_copy, {}), jobs=2)
    assert order == ["early", "link"]
    assert read_tree(example_copy / "site") == read_tree_of_clean_build(example_copy)


def test_the_map_is_rendered_again_only_for_articles_it_draws(example_copy, monkeypatch):
    import generator.graph as graph
    from generator.link import link_articles
    from generator.load import load_articles

    monkeypatch.setattr(graph, "MAX_NODES", 5)  # the map draws 5 of the 13 articles
    config = load_config(example_copy, {})
    build(config)
    loaded = load_articles(config.content_path, config.root)
    drawn, _ = graph.map_graph(link_articles(loaded.articles, config.similar, config.taxonomies))
    # Records whose title one text edit changes (native YAML and Markdown records).
    editable = {a.id: example_copy / a.source.path for a in loaded.articles
                if "\ntitle: " in "\n" + (example_copy / a.source.path).read_text(encoding="utf-8")}
    undrawn = next(i for i in editable if i not in drawn)
    page = example_copy / "site/map/index.html"
    def map_key() -> str:  # the map page's fingerprint: a new one means it was rendered again
        tree_id = (example_copy / "site/.digest-tree").read_text().strip()
        return marshal.loads((example_copy / f".digest-cache/trees/{tree_id}.manifest").read_bytes())["map/index.html"]

    for article_id, changes in ((undrawn, False), (next(i for i in editable if i in drawn), True)):
        before, key = page.read_bytes(), map_key()
        record = editable[article_id]
        text = record.read_text(encoding="utf-8")
        record.write_text(("\n" + text).replace("\ntitle: ", "\ntitle: Retitled ", 1)[1:], encoding="utf-8")
        assert record.read_text(encoding="utf-8") != text
        build(config)
        assert (page.read_bytes() != before) == changes == (map_key() != key)
        assert read_tree(example_copy / "site") == read_tree_of_clean_build(example_copy)


def build_in_new_process(root: Path) -> None:
    """Run `digest build` as a user does: a new process, starting from the cache folder alone."""
    subprocess.run([sys.executable, "-m", "generator", "build", "-q"], cwd=root, check=True)


def test_a_new_process_starts_from_the_cache_folder_and_builds_the_bytes_of_a_clean_build(example_copy):
    """The plan's keys, the digest.json entries and the places of each article in digest.bib/.ris/
    .csl.json are kept in .digest-cache/ for the next `digest build`; what it reuses must be exact,
    and a stale or broken cache file must only cost the work."""
    cache = example_copy / ".digest-cache"
    record = example_copy / "content/autoimmunity/36109639.yaml"
    build_in_new_process(example_copy)
    assert {"plan.pickle", "exports.pickle"} <= {p.name for p in cache.iterdir()}
    first_exports = (cache / "exports.pickle").read_bytes()
    # A title edit changes the article's pages and citation files, listings, feeds, digest.json and
    # the three joined exports; the other articles' entries are taken from the live exports.
    original = record.read_text()
    first_plan = (cache / "plan.pickle").read_bytes()
    record.write_text(original.replace("refractory systemic lupus", "refractory lupus"))
    build_in_new_process(example_copy)
    # What the plan and the fragments changed was appended to their journals.
    assert (cache / "plan.pickle").read_bytes() == first_plan and (cache / "plan.pickle.journal").is_file()
    assert (cache / "fragments.pickle.journal").is_file()
    assert read_tree(example_copy / "site") == read_tree_of_clean_build(example_copy)
    # Undone, the exports come back from the spare tree; the next edit cuts entries from them.
    record.write_text(original)
    build_in_new_process(example_copy)
    assert read_tree(example_copy / "site") == read_tree_of_clean_build(example_copy)
    record.write_text(original.replace("refractory systemic lupus", "refractory lupus"))
    build_in_new_process(example_copy)
    assert read_tree(example_copy / "site") == read_tree_of_clean_build(example_copy)
    # An index of exports that are no longer live (here: the first build's) is not used.
    (cache / "exports.pickle").write_bytes(first_exports)
    record.write_text(record.read_text().replace("refractory lupus", "refractory SLE"))
    build_in_new_process(example_copy)
    assert read_tree(example_copy / "site") == read_tree_of_clean_build(example_copy)
    # A journal cut short (a build killed while appending) loses what follows the cut, only.
    for edit in ("refractory lupus", "refractory SLE", "refractory lupus"):
        record.write_text(re.sub("refractory (lupus|SLE)", edit, record.read_text()))
        build_in_new_process(example_copy)
    for name in ("plan.pickle.journal", "fragments.pickle.journal"):
        journal = (cache / name).read_bytes()
        (cache / name).write_bytes(journal[: len(journal) * 2 // 3])
    record.write_text(record.read_text().replace("refractory lupus", "refractory SLE"))
    build_in_new_process(example_copy)
    assert read_tree(example_copy / "site") == read_tree_of_clean_build(example_copy)
    # Broken cache files are ignored.
    for name in ("plan.pickle", "exports.pickle", "fragments.pickle",
                 "plan.pickle.journal", "fragments.pickle.journal"):
        (cache / name).write_bytes(b"not a pickle")
    record.write_text(record.read_text().replace("refractory SLE", "refractory systemic lupus"))
    build_in_new_process(example_copy)
    assert read_tree(example_copy / "site") == read_tree_of_clean_build(example_copy)


def test_a_new_process_shows_an_edit_in_the_similar_lists_that_link_to_it(example_copy):
    """A new process takes each similar list's keys from the cache folder while the list is the
    same: a list is the same when only what it shows of an article it links to changed (here the
    journal, which the similarity does not read), and the pages that show it must change all the same."""
    record = example_copy / "content/autoimmunity/36109639.yaml"
    linking = example_copy / "site/articles/37147112/index.html"  # (36109639 does not link back)
    build_in_new_process(example_copy)
    assert 'href="../../articles/36109639/"' in linking.read_text(encoding="utf-8")
    for journal in ("Nat Med (Berlin)", "Nat Med"):
        record.write_text(re.sub(r"(?m)^journal_abbrev: .*$", f"journal_abbrev: {journal}", record.read_text()))
        build_in_new_process(example_copy)
        page = linking.read_text(encoding="utf-8")
        assert ("Nat Med (Berlin)" in page) == (journal != "Nat Med")
        assert read_tree(example_copy / "site") == read_tree_of_clean_build(example_copy)


@pytest.mark.parametrize("hashed_above", [64, 1])
def test_a_new_process_makes_again_only_the_plan_entries_an_edit_touches(example_copy, monkeypatch, hashed_above):
    """The plan's memo comes back from the cache folder (base file, then the journal each build
    appends to): after a title edit, a new process makes the keys of a few entries, not all.
    Large inputs are kept as their key (here also those of two articles or more)."""
    from generator import cache_files, render

    monkeypatch.setattr(render, "HASHED_ABOVE", hashed_above)
    config = load_config(example_copy, {})
    build(config)
    record = example_copy / "content/autoimmunity/36109639.yaml"
    real_put = render._KeyMemo.put
    for title, fold in (("refractory lupus", False), ("refractory SLE", True), ("refractory lupus", False)):
        record.write_text(re.sub("refractory (systemic lupus|lupus|SLE)", title, record.read_text()))
        monkeypatch.setattr(render, "_KEY_MEMO", render._KeyMemo())  # what a new process starts with
        monkeypatch.setattr(cache_files, "journal_is_full", lambda *sizes: fold)  # fold: a new base file
        made: list = []
        monkeypatch.setattr(render._KeyMemo, "put", lambda self, *args: made.append(args[0]) or real_put(self, *args))
        build(config)
        assert ("article", "36109639") in made
        assert 0 < len(made) < len(render._KEY_MEMO.entries) // 2  # 31 of 119 here: its listings
    assert (example_copy / ".digest-cache/plan.pickle.journal").is_file()
    assert read_tree(example_copy / "site") == read_tree_of_clean_build(example_copy)


def test_the_plan_journal_holds_what_comparing_every_entry_finds(example_copy, monkeypatch):
    """A new process appends to the plan's journal the entries its plan put and the ones it dropped,
    without comparing all of them with the last plan's: the frame must be the one that comparison
    gives, after edits, a record removed and a record added back."""
    from generator import render

    real_changes = render._KeyMemo.changes
    frames: list[tuple[dict, dict]] = []

    def both_ways(self, snapshot):
        tracked = real_changes(self, snapshot)
        frames.append((tracked, real_changes(self, (*snapshot[:4], None))))  # None: compare every entry
        return tracked

    def comparable(frame: dict) -> dict:
        return {**frame, "entries": {name: pickle.dumps(entry) for name, entry in frame["entries"].items()},
                "gone": sorted(frame["gone"])}

    monkeypatch.setattr(render._KeyMemo, "changes", both_ways)
    config = load_config(example_copy, {})
    build(config)
    record = example_copy / "content/autoimmunity/36109639.yaml"
    original = record.read_text()
    steps = [lambda: record.write_text(original.replace("refractory systemic lupus", "refractory lupus")),
             lambda: record.write_text(original.replace("refractory systemic lupus", "refractory SLE")),
             record.unlink,
             lambda: record.write_text(original)]
    for step in steps:
        step()
        render.forget_digest_memos()  # as a new process starts
        build(config)
    assert len(frames) == len(steps)
    for tracked, compared in frames:
        assert comparable(tracked) == comparable(compared)
    assert all(tracked["entries"] for tracked, _ in frames)
    assert frames[2][0]["gone"] and ("article", "36109639") in frames[2][0]["gone"]  # the record removed
    assert read_tree(example_copy / "site") == read_tree_of_clean_build(example_copy)


def test_journal_frames_of_another_base_or_out_of_order_are_not_applied(example_copy, monkeypatch):
    """A frame holds changes since the state before it: one left from an older base (a build killed
    between writing a base and removing the journal) or written by a second build that started from
    the same state is ignored, so the memo is always that of one plan."""
    from generator import render
    from generator.cache_files import append_frame, read_frames

    config = load_config(example_copy, {})
    build(config)
    plan = example_copy / ".digest-cache/plan.pickle"
    journal = plan.with_name("plan.pickle.journal")
    record = example_copy / "content/autoimmunity/36109639.yaml"
    record.write_text(record.read_text().replace("refractory systemic lupus", "refractory lupus"))
    monkeypatch.setattr(render, "_KEY_MEMO", render._KeyMemo())
    build(config)
    (frame,), _ = read_frames(journal)
    for stray in ({**frame, "generation": "an older base"}, frame):  # the second: another build's "first"
        append_frame(journal, stray)
        store = render.PlanMemoFile(plan)
        monkeypatch.setattr(render, "_KEY_MEMO", render._KeyMemo())
        store.load()
        assert store.sequence == 1 and store.damaged
    monkeypatch.setattr(render, "_KEY_MEMO", render._KeyMemo())
    record.write_text(record.read_text().replace("refractory lupus", "refractory SLE"))
    build(config)
    assert not journal.exists()  # damaged: the next plan wrote a new base
    assert read_tree(example_copy / "site") == read_tree_of_clean_build(example_copy)


def test_a_build_waits_while_another_build_of_the_same_digest_runs(example_copy):
    """Two builds of one digest at once would both write the spare tree and the caches: the second
    waits for the first (here another process holding the digest's build lock), says so, then builds."""
    build_in_new_process(example_copy)
    lock = example_copy / ".digest-cache/build.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a+b'); fcntl.lockf(f, fcntl.LOCK_EX); "
         "print('locked', flush=True); time.sleep(1.5)", str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        record = example_copy / "content/autoimmunity/36109639.yaml"
        record.write_text(record.read_text().replace("refractory systemic lupus", "refractory lupus"))
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "generator", "build"], cwd=example_copy,
                                capture_output=True, text=True)
        waited = time.monotonic() - started
    finally:
        holder.wait()
    assert result.returncode == 0, result.stderr
    assert "Waiting for another build of" in result.stderr and waited >= 1.0
    assert read_tree(example_copy / "site") == read_tree_of_clean_build(example_copy)


def test_folding_the_fragment_journal_keeps_only_the_current_map_layout(example_copy, monkeypatch):
    """Each change to the map's graph adds a layout to the fragment cache; folding the journal
    keeps the one the map now draws, so the cache does not grow with every such edit."""
    import generator.cache_files as cache_files
    from generator.cache_files import JournaledDict
    from generator.graph import layout_key, map_graph
    from generator.link import link_articles
    from generator.load import load_articles

    config = load_config(example_copy, {})
    build(config)
    fragments = example_copy / ".digest-cache/fragments.pickle"
    first = [k for k in JournaledDict(fragments).load() if k.startswith("layout:")]
    (example_copy / "content/autoimmunity/new.yaml").write_text(
        "pmid: 31234567\ntitle: A new record about CAR-T cells in lupus\npublished: 2025-08-01\nsimilar: [36109639]\n")
    build(config)
    assert len([k for k in JournaledDict(fragments).load() if k.startswith("layout:")]) == 2  # appended
    monkeypatch.setattr(cache_files, "journal_is_full", lambda *sizes: True)
    (example_copy / "content/autoimmunity/new.yaml").unlink()
    record = example_copy / "content/autoimmunity/36109639.yaml"  # and a title edit: new entries to keep
    record.write_text(record.read_text().replace("refractory systemic lupus", "refractory lupus"))
    build(config)  # the journal is folded
    loaded = load_articles(config.content_path, config.root)
    digest = link_articles(loaded.articles, config.similar, config.taxonomies)
    kept = [k for k in JournaledDict(fragments).load() if k.startswith("layout:")]
    assert len(first) == 1 and kept == [layout_key(*map_graph(digest))]


def test_a_tree_manifest_kept_as_json_is_still_read_and_a_damaged_one_costs_a_full_render(example_copy):
    """Tree manifests were JSON before they were marshal: a site published then is still known, so
    the first build after the upgrade renders only what changed. A damaged manifest (or one naming
    other things than paths and keys) leaves the tree unknown: every page is rendered again, and
    the site is still exactly a clean build's."""
    from generator import write

    config = load_config(example_copy, {})
    site, trees = example_copy / "site", example_copy / ".digest-cache/trees"
    record = example_copy / "content/autoimmunity/36109639.yaml"
    original = record.read_text()
    build(config)
    for manifest in trees.glob("*.manifest"):
        manifest.with_suffix(".json").write_text(json.dumps(marshal.loads(manifest.read_bytes())))
        manifest.unlink()
    write._PUBLISHED.clear()  # as a new process: read from the files
    record.write_text(original.replace("refractory systemic lupus", "refractory lupus"))
    report = build(config)
    assert 0 < report.rendered < report.pages // 3  # the pages that show the record (63 of 222)
    assert read_tree(site) == read_tree_of_clean_build(example_copy)
    for damage in (b"\xff\x00 not a manifest", marshal.dumps({3: "index.html", "index.html": 3}, 0), marshal.dumps(["index.html"], 0)):
        for manifest in trees.iterdir():
            manifest.write_bytes(damage)
        write._PUBLISHED.clear()
        record.write_text(record.read_text() + "\n")
        report = build(config)
        assert report.rendered == report.pages
        assert read_tree(site) == read_tree_of_clean_build(example_copy)


def test_the_first_build_after_a_cold_one_fills_the_spare_tree_while_it_loads(example_copy, monkeypatch):
    """With no spare tree (the first build after a cold one), a forked process hard-links the live
    files into it while the build loads and links; the build then writes only what changed. A link
    that fails leaves an empty spare, and the build links file by file as before."""
    from generator import workers, write

    monkeypatch.setattr(workers.threading, "active_count", lambda: 1)  # as in `digest build`
    filled = []
    fill = write.SiteWriter.fill_spare

    def watched(self, *args, **options):
        fill(self, *args, **options)
        filled.append(self._filling is not None)

    monkeypatch.setattr(write.SiteWriter, "fill_spare", watched)
    config = load_config(example_copy, {})
    site, spare = example_copy / "site", example_copy / ".site.spare"
    record = example_copy / "content/autoimmunity/36109639.yaml"
    original = record.read_text()
    build(config)
    assert not spare.exists() and filled == [False]  # nothing live to copy yet
    record.write_text(original.replace("refractory systemic lupus", "refractory lupus"))
    report = build(config)
    assert filled == [False, True]
    assert read_tree(site) == read_tree_of_clean_build(example_copy)  # (a clean build fills nothing)
    assert 0 < report.written < report.pages // 3  # the pages that show the record (63 of 222)
    # The old live tree is now the spare; files the edit left alone are one file in both trees.
    assert (site / "robots.txt").stat().st_ino == (spare / "robots.txt").stat().st_ino
    # A live file deleted by hand: the copy fails, the build still gives the bytes of a clean build.
    shutil.rmtree(spare)
    (site / "robots.txt").unlink()
    record.write_text(original)
    build(config)
    assert filled[-1] is True
    assert read_tree(site) == read_tree_of_clean_build(example_copy)
    # A live manifest edited to name a path outside the tree is not copied from: the build goes on.
    shutil.rmtree(spare)
    manifest = example_copy / ".digest-cache/trees" / f"{(site / '.digest-tree').read_text().strip()}.manifest"
    manifest.write_bytes(marshal.dumps({**marshal.loads(manifest.read_bytes()), "../outside.html": "x"}, 0))
    write._PUBLISHED.clear()  # as a new process: read from the file
    record.write_text(original.replace("refractory systemic lupus", "refractory SLE"))
    build(config)
    assert filled[-1] is False and not (example_copy / "outside.html").exists()
    assert read_tree(site) == read_tree_of_clean_build(example_copy)
    # A build with nothing to write keeps the copy, named as the live tree: the next build starts from it.
    shutil.rmtree(spare)
    record.write_text(record.read_text())  # touched, the same bytes
    assert build(config).written == 0 and filled[-1] is True
    assert (spare / ".digest-tree").read_text() == (site / ".digest-tree").read_text()
    record.write_text(original)
    build(config)
    assert filled[-1] is False  # a known spare: nothing to copy
    assert read_tree(site) == read_tree_of_clean_build(example_copy)
    # A build that fails while the copy runs leaves no spare behind.
    shutil.rmtree(spare)
    (example_copy / "content/broken.yaml").write_text("title: [unclosed\n")
    before = read_tree(site)
    with pytest.raises(Exception):
        build(config)
    assert filled[-1] is True and not spare.exists() and read_tree(site) == before


def test_an_edit_after_a_new_site_title_links_the_unchanged_pages_while_it_loads(example_copy, monkeypatch):
    """After a build that changed every page (a new site title), the spare tree is two builds old.
    The next build, rendered with the live site's theme (an edit), has a forked process link the
    live pages over the spare's old ones while it loads; one that changes every page again (another
    title) writes over the spare's own files instead, as linking them first would make it replace
    each one. Either way the site is a clean build's, and the live site is untouched until the end."""
    from generator import workers, write

    monkeypatch.setattr(workers.threading, "active_count", lambda: 1)  # as in `digest build`
    monkeypatch.setattr(write, "FILL_STALE_MIN", 10)  # the example has 222 files, not 82,000
    filled: list[int] = []
    fill = write.SiteWriter.fill_spare

    def watched(self, *args, **options):
        fill(self, *args, **options)
        filled.append(len(self._filling[1]) if self._filling is not None else 0)

    monkeypatch.setattr(write.SiteWriter, "fill_spare", watched)
    config = load_config(example_copy, {})
    site, spare = example_copy / "site", example_copy / ".site.spare"
    record = example_copy / "content/autoimmunity/36109639.yaml"
    settings = example_copy / "digest.yaml"
    build(config)
    record.write_text(record.read_text().replace("refractory systemic lupus", "refractory lupus"))
    build(config)  # fills the unknown spare
    settings.write_text(settings.read_text().replace("title: CAR-T cells beyond cancer", "title: New title"))
    config = load_config(example_copy, {})
    build(config)
    assert filled[-1] == 0  # a new theme: nothing linked ahead
    other_page = "404.html"  # shows the title, nothing of the record edited next
    assert (site / other_page).stat().st_ino != (spare / other_page).stat().st_ino
    live_before = read_tree(site)
    record.write_text(record.read_text().replace("refractory lupus", "refractory SLE"))
    report = build(config)
    assert filled[-1] > report.written > 0  # the pages the edit left alone were linked ahead
    assert (site / other_page).stat().st_ino == (spare / other_page).stat().st_ino
    assert read_tree(spare) == live_before  # the last live site, as it was
    assert read_tree(site) == read_tree_of_clean_build(example_copy)
    settings.write_text(settings.read_text().replace("title: New title", "title: Newer title"))
    config = load_config(example_copy, {})
    build(config)
    assert filled[-1] == 0
    assert read_tree(site) == read_tree_of_clean_build(example_copy)
    record.write_text(record.read_text().replace("refractory SLE", "refractory lupus"))
    build(config)
    assert filled[-1] > 0
    assert read_tree(site) == read_tree_of_clean_build(example_copy)
    # A build with nothing to write after another new title keeps the linked spare as a copy of the
    # live tree (what it held besides removed), named as the live tree: the next build starts from it.
    (example_copy / "content/autoimmunity/37353278.yaml").unlink()  # its pages stay in the spare only
    settings.write_text(settings.read_text().replace("title: Newer title", "title: Newest title"))
    config = load_config(example_copy, {})
    build(config)
    assert (spare / "articles/37353278/index.html").exists()
    record.write_text(record.read_text())  # touched, the same bytes
    assert build(config).written == 0 and filled[-1] > 0
    assert not (spare / "articles/37353278").exists()
    assert (spare / ".digest-tree").read_text() == (site / ".digest-tree").read_text()
    assert read_tree(spare) == read_tree(site)
    record.write_text(record.read_text().replace("refractory lupus", "refractory SLE"))
    build(config)
    assert read_tree(site) == read_tree_of_clean_build(example_copy)


def test_a_spare_tree_of_unknown_contents_is_deleted_after_the_build_by_a_process_of_its_own(example_copy,
                                                                                               monkeypatch):
    """A clean build (or one after the cache folder was deleted) cannot trust the spare tree: it moves
    it aside in one rename and goes on; once the build is over, a process of its own deletes it,
    with any such tree a killed build left, and nothing else."""
    from generator import write

    config = load_config(example_copy, {})
    site, spare = example_copy / "site", example_copy / ".site.spare"
    record = example_copy / "content/autoimmunity/36109639.yaml"
    build(config)
    record.write_text(record.read_text().replace("refractory systemic lupus", "refractory lupus"))
    build(config)
    assert (spare / ".digest-tree").is_file()
    left_behind = example_copy / ".site.trash-0123abcd"  # as a build killed before deleting it leaves it
    (left_behind / "articles").mkdir(parents=True)
    (left_behind / "articles/index.html").write_text("an old page", encoding="utf-8")
    (example_copy / ".site.trashcan").mkdir()  # not one of the build's: kept
    removers = []
    start_process = write.subprocess.Popen

    def watched(args, **options):
        if write._REMOVER in args:  # (Pagefind runs by Popen too)
            removers.append(args)
        return start_process(args, **options)

    monkeypatch.setattr(write.subprocess, "Popen", watched)
    build(config, clean=True)
    assert len(removers) == 1
    trash = {Path(path).name for path in removers[0] if ".site.trash-" in str(path)}
    assert len(trash) == 2 and left_behind.name in trash  # the old spare and the killed build's tree
    assert read_tree(site) == read_tree_of_clean_build(example_copy)
    deadline = time.monotonic() + 60
    while any((example_copy / name).exists() for name in trash) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any((example_copy / name).exists() for name in trash)
    assert (example_copy / ".site.trashcan").is_dir() and (spare / ".digest-tree").is_file()
    record.write_text(record.read_text().replace("refractory lupus", "refractory systemic lupus"))
    build(config)  # nothing left to delete: no process
    assert len(removers) == 1 and read_tree(site) == read_tree_of_clean_build(example_copy)


def search_fragments(site: Path) -> dict[str, list[str]]:
    """Return the fragment files of each shard of a site's search index (Pagefind names each by a
    hash of what it holds for one page; its filter and metadata files differ from run to run)."""
    return {folder.parent.relative_to(site).as_posix(): sorted(p.name for p in folder.iterdir())
            for folder in sorted(site.glob("pagefind/**/fragment"))}


def test_an_edit_indexes_again_only_the_search_shard_of_the_edited_article(example_copy, monkeypatch):
    """Above 1,500 articles the search index is in shards, one per hash class of article ids. A title
    edit changes the pages of the articles listing it as similar too, but what those pages give
    Pagefind does not change: only the edited article's shard is indexed again, and every shard
    then holds exactly what a clean build's does."""
    from generator import search

    monkeypatch.setattr(search, "SHARD_ARTICLES", 4)  # the example's 13 articles: four shards
    config = load_config(example_copy, {})
    site = example_copy / "site"
    build(config)
    indexed = []
    real_init = search.SearchIndexing.__init__

    def watched(self, *args, **named):  # the shards each build indexes
        real_init(self, *args, **named)
        indexed.append(sorted(shard.number for shard in self.to_index))

    monkeypatch.setattr(search.SearchIndexing, "__init__", watched)
    record = example_copy / "content/autoimmunity/36109639.yaml"
    before = read_tree(site)
    record.write_text(record.read_text().replace("refractory systemic lupus", "refractory lupus"))
    report = build(config)
    shards = search.assign_shards(a.name for a in (site / "articles").iterdir())
    mine = next(number for number, ids in shards.items() if "36109639" in ids)
    changed = [path.split("/")[1] for path, data in read_tree(site).items()
               if path.endswith("/index.html") and path.startswith("articles/") and before.get(path) != data]
    assert {next(n for n, ids in shards.items() if i in ids) for i in changed} - {mine}  # pages of other shards
    assert indexed == [[mine]] and report.searched == len(shards[mine])
    assert f"written; {len(shards[mine])} indexed for search) in " in report.summary()
    clean = example_copy.parent / "clean-site"
    clean_build(example_copy, clean)
    assert search_fragments(site) == search_fragments(clean)
    assert len(search_fragments(site)) == len(shards) > 1
    # The search page merges the other shards into the first one's results.
    page = (site / "search/index.html").read_text(encoding="utf-8")
    merged = re.search(r'data-merge="([^"]*)"', page).group(1).split()
    assert merged == [f"../pagefind/shards/{n}/" for n in shards if n]
    # A build with no change indexes nothing; --clean, or a change to the templates, every shard.
    indexed.clear()
    assert build(config).searched == 0 and indexed == []
    assert build(config, clean=True).searched == 13 and indexed == [sorted(shards)]
    indexed.clear()
    # `digest serve` keeps the live shards, up to date or not, while they hold the same articles.
    record.write_text(record.read_text().replace("refractory lupus", "refractory SLE"))
    assert build(config, index_search=False).searched == 0 and indexed == [[]]
    monkeypatch.setattr(search, "SHARD_ARTICLES", 2)  # eight shards: other articles in each
    record.write_text(record.read_text().replace("refractory SLE", "refractory lupus"))
    build(config, index_search=False)
    assert indexed[-1] == sorted(search.assign_shards(a.name for a in (site / "articles").iterdir()))
    monkeypatch.setattr(search, "SHARD_ARTICLES", 4)
    build(config, clean=True)  # (the inputs are those of the last build: only --clean builds)
    indexed.clear()
    templates = example_copy / "templates"
    templates.mkdir()
    (templates / "article.html").write_text((REPO / "templates/article.html").read_text()
                                            .replace('<section class="similar"', '<section data-pagefind-body class="similar"'))
    build(config)
    assert indexed == [sorted(shards)]
    # With templates of its own, what a page gives Pagefind may show other articles (here: their
    # titles in its similar list): the shards of every page the edit changed are indexed again.
    indexed.clear()
    before = read_tree(site)
    record.write_text(record.read_text().replace("refractory lupus", "refractory SLE"))
    build(config)
    changed = {next(n for n, ids in shards.items() if path.split("/")[1] in ids)
               for path, data in read_tree(site).items()
               if path.endswith("/index.html") and path.startswith("articles/") and before.get(path) != data}
    assert indexed == [sorted(changed)] and len(changed) > 1
    clean_build(example_copy, clean)
    assert search_fragments(site) == search_fragments(clean)


def bundle_files(site: Path) -> list[str]:
    """Return the files of a site's search index, hashes in names left out (Pagefind's filter and
    metadata files are named by a hash of bytes that differ from run to run)."""
    return sorted(re.sub(r"[0-9a-f]{7,}", "#", p.relative_to(site).as_posix()) for p in site.glob("pagefind/**/*")
                  if p.is_file())


def assert_search_index_is_a_clean_builds(root: Path, site: Path, clean: Path) -> None:
    """Build a copy of the digest `root` from scratch in `clean` (a clean build of the digest itself
    into another folder would share its cache) and check that `site`'s search index holds what the
    copy's does."""
    shutil.rmtree(clean, ignore_errors=True)
    shutil.copytree(root / "content", clean / "content")
    shutil.copy(root / "digest.yaml", clean / "digest.yaml")
    if (root / "templates").is_dir():
        shutil.copytree(root / "templates", clean / "templates")
    build(load_config(clean, {}), clean=True)
    assert search_fragments(site) == search_fragments(clean / "site")
    assert bundle_files(site) == bundle_files(clean / "site")


def test_an_edit_keeps_the_search_shards_and_staged_pages_it_can_and_the_index_stays_a_clean_builds(
        example_copy, monkeypatch):
    """A build writes into the tree of two builds ago: the search shards whose key that tree's bundle
    still carries are moved into the new bundle as they are, not hard-linked file by file from the
    live site, and the folder of pages Pagefind reads for a shard is kept in the cache folder, where
    an edit links again only the pages that changed. A tree or folder a failed build left half
    changed is not trusted. After each build the index holds exactly what a clean build's does."""
    from generator import search
    from generator.errors import DigestError

    from generator import build as build_module

    monkeypatch.setattr(search, "SHARD_ARTICLES", 4)  # the example's 13 articles: four shards
    # Pagefind reading the pages from the tree, once written (more pages than this to render
    # before the plan); an edit's early start is the next test's.
    monkeypatch.setattr(build_module, "EARLY_SEARCH_MAX", 0)
    config = load_config(example_copy, {})
    site, stage = example_copy / "site", example_copy / ".digest-cache/search-stage"
    kept = {"moved": [], "linked": [], "indexed": [], "staged": []}
    real_move, real_link, real_init, real_os_link = (search._move_shard, search._link_shard,
                                                     search.SearchIndexing.__init__, search.os.link)
    monkeypatch.setattr(search, "_move_shard", lambda shard, *a: kept["moved"].append(shard.number) or real_move(shard, *a))
    monkeypatch.setattr(search, "_link_shard", lambda shard, *a: kept["linked"].append(shard.number) or real_link(shard, *a))

    def init(self, *args, **named):
        real_init(self, *args, **named)
        kept["indexed"].extend(shard.number for shard in self.to_index)

    def os_link(source, target, *args, **named):
        if "search-stage" in str(target):
            kept["staged"].append(Path(target).parent.name)
        return real_os_link(source, target, *args, **named)

    monkeypatch.setattr(search.SearchIndexing, "__init__", init)
    monkeypatch.setattr(search.os, "link", os_link)
    build(config)
    cold = read_tree(site)
    shards = search.assign_shards(a.name for a in (site / "articles").iterdir())
    mine = next(number for number, ids in shards.items() if "37353278" in ids)
    others = sorted(set(shards) - {mine})
    assert len(shards) > 2 and mine != 0  # (the first shard's files are the bundle's own: moved one by one)
    record = example_copy / "content/autoimmunity/37353278.yaml"
    clean = example_copy.parent / "clean-copy"

    def edit(old: str, new: str) -> dict[str, list]:
        for found in kept.values():
            found.clear()
        record.write_text(record.read_text().replace(old, new))
        build(config)
        seen = {name: sorted(found) for name, found in kept.items()}
        assert_search_index_is_a_clean_builds(example_copy, site, clean)
        return seen

    # The first edit's tree has no bundle yet: the other shards come from the live site.
    first = edit("myasthenia gravis (MG-001)", "MG (MG-001)")
    assert first["indexed"] == [mine] and first["linked"] == others and first["moved"] == []
    assert first["staged"] == ["37353278"]  # the cold build's folder of pages, with one page linked again

    def changed_since_cold(article_id: str) -> bool:
        path = f"articles/{article_id}/index.html"
        return (site / path).read_bytes() != cold[path]

    # The second writes into the cold build's tree, which holds the other shards as they are now.
    second = edit("MG (MG-001)", "myasthenia (MG-001)")
    assert second["indexed"] == [mine] and second["moved"] == others and second["linked"] == []
    # Linked again: the edited page, and pages whose old file only the folder still held (a page
    # that lists the edited title as similar, rewritten by the first edit), never an unchanged one.
    assert "37353278" in second["staged"] and len(second["staged"]) < len(shards[mine])
    assert all(changed_since_cold(article_id) for article_id in second["staged"])
    # (and the shard's folder no longer keeps an old page alive that the site has replaced)
    assert all(page.stat().st_nlink > 1 for page in (stage / str(mine)).rglob("index.html"))
    # A build that fails while moving the first shard's files out of its tree's bundle (here: the
    # second file) leaves a tree the next build does not trust: it links every shard from the live
    # site (the key file went first anyway: see test_search).
    real_rename, renames = search.os.rename, []

    def failing_rename(source, target, *args, **named):
        if ".pagefind.new" in str(target) and "shards" not in str(target):
            renames.append(Path(source).name)
            if len(renames) == 2:
                raise OSError(28, "No space left on device")
        return real_rename(source, target, *args, **named)

    monkeypatch.setattr(search.os, "rename", failing_rename)
    record.write_text(record.read_text().replace("myasthenia (MG-001)", "myasthenia gravis (MG-001)"))
    with pytest.raises(DigestError, match="No space left"):
        build(config)
    assert renames[0] == search.KEY_FILE
    monkeypatch.setattr(search.os, "rename", real_rename)
    # One stopped while staging pages has left no keys there: every page of that shard is linked again.
    (stage / str(mine) / search.STAGE_KEYS).unlink()
    third = edit("myasthenia gravis (MG-001)", "myasthenia gravis (MG 001)")
    assert third["indexed"] == [mine] and third["linked"] == others and third["moved"] == []
    assert third["staged"] == sorted(shards[mine])
    # --clean starts the index afresh: every shard indexed, and every page staged again, in folders
    # that the next edit uses.
    for found in kept.values():
        found.clear()
    build(config, clean=True)
    assert sorted(kept["indexed"]) == sorted(shards) and kept["moved"] == kept["linked"] == []
    assert sorted(kept["staged"]) == sorted(i for ids in shards.values() for i in ids)
    record.write_text(record.read_text().replace("(MG 001)", "(MG-001)"))
    after_clean = edit("myasthenia gravis (MG-001)", "MG (MG-001)")
    assert after_clean["indexed"] == [mine] and after_clean["staged"] == ["37353278"]


def test_an_edit_starts_pagefind_before_the_plan_on_the_edited_page_rendered_first(example_copy, monkeypatch):
    """What Pagefind reads of a packaged article page is what its search key says, so an edit does
    not wait for the render stage to write the pages of the shard to index: the kept folder of
    pages has the others, and the edited article's page is rendered for it before the plan. The
    index is then exactly a clean build's. With more pages than EARLY_SEARCH_MAX to render first,
    or with article templates of the digest's own, Pagefind waits for the written pages."""
    from generator import build as build_module
    from generator import render, search

    monkeypatch.setattr(search, "SHARD_ARTICLES", 4)
    config = load_config(example_copy, {})
    site = example_copy / "site"
    build(config)
    events: list[str] = []
    real_start, real_plan, real_stage = search.SearchIndexing.start, render.Renderer.plan, search._stage

    def start(self, pages=None):
        if not self.started:
            events.append(f"pagefind with {sorted(pages) if pages is not None else 'the tree'}")
        return real_start(self, pages)

    monkeypatch.setattr(search.SearchIndexing, "start", start)
    monkeypatch.setattr(render.Renderer, "plan", lambda self: events.append("plan") or real_plan(self))
    record = example_copy / "content/autoimmunity/37353278.yaml"
    clean = example_copy.parent / "clean-copy"

    def edit(old: str, new: str, indexes: bool = True) -> list[str]:
        events.clear()
        record.write_text(record.read_text().replace(old, new))
        report = build(config)
        assert (report.searched > 0) == indexes
        assert_search_index_is_a_clean_builds(example_copy, site, clean)
        return events[:2]

    # The first edit after a cold build fills its tree from the live one in another process
    # meanwhile (see SiteWriter.fill_spare): Pagefind waits for the written pages.
    assert edit("myasthenia gravis (MG-001)", "MG (MG-001)") == ["plan", "pagefind with the tree"]
    assert edit("MG (MG-001)", "myasthenia (MG-001)") == ["pagefind with ['37353278']", "plan"]
    assert edit("myasthenia (MG-001)", "myasthenia gravis (MG-001)") == ["pagefind with ['37353278']", "plan"]
    # A new record: its page is rendered for Pagefind; a record removed: Pagefind needs no page.
    added = example_copy / "content/autoimmunity/new.yaml"
    added.write_text("pmid: '99999991'\ntitle: A new record on CAR T cells in myositis\npublished: 2025-02\n")
    assert edit("myasthenia gravis (MG-001)", "myasthenia gravis (MG-001)") == ["pagefind with ['99999991']", "plan"]
    added.unlink()
    # (the tree of two builds ago, without it, holds every shard as it now is: nothing to index,
    # and the index is put together before the plan too)
    assert edit("myasthenia gravis (MG-001)", "myasthenia gravis (MG-001)", indexes=False) == \
        ["pagefind with []", "plan"]
    # A page that cannot be rendered first: Pagefind waits (the render stage reports any error).
    real_render = build_module.render_article_page
    monkeypatch.setattr(build_module, "render_article_page", lambda *a, **k: 1 / 0)
    assert edit("myasthenia gravis (MG-001)", "MG (MG-001)") == ["plan", "pagefind with the tree"]
    monkeypatch.setattr(build_module, "render_article_page", real_render)
    monkeypatch.setattr(build_module, "EARLY_SEARCH_MAX", 0)
    assert edit("MG (MG-001)", "myasthenia (MG-001)") == ["plan", "pagefind with the tree"]
    monkeypatch.setattr(build_module, "EARLY_SEARCH_MAX", 20)
    (example_copy / "templates").mkdir()
    (example_copy / "templates/article.html").write_text((REPO / "templates/article.html").read_text()
                                                         .replace("Abstract</h2>", "Summary</h2>"))
    build(config)
    assert edit("myasthenia (MG-001)", "myasthenia gravis (MG-001)") == ["plan", "pagefind with the tree"]


def test_a_site_on_another_file_system_gets_no_copies_of_its_pages_in_the_cache_folder(example_copy, tmp_path_factory):
    """The folder of pages Pagefind reads is kept in the cache folder only on the site's file
    system, where it is hard links: a site written elsewhere (`--out` on another disk) would put a
    copy of every article page there (250 MB at 10,000 articles). It is then made beside the site
    and removed once the index is made; the index is the same."""
    import os
    import tempfile

    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(example_copy).st_dev:
        pytest.skip("no second file system (/dev/shm) here")
    with tempfile.TemporaryDirectory(dir=shm) as elsewhere:
        site = Path(elsewhere) / "site"
        config = replace(load_config(example_copy, {}), output_dir=str(site))
        build(config)
        record = example_copy / "content/autoimmunity/37353278.yaml"
        record.write_text(record.read_text().replace("myasthenia gravis (MG-001)", "MG (MG-001)"))
        assert build(config).searched > 0
        assert not (example_copy / ".digest-cache/search-stage").exists()
        assert not [p for p in Path(elsewhere).iterdir() if p.name.endswith(".search-stage")]
        assert_search_index_is_a_clean_builds(example_copy, site, tmp_path_factory.mktemp("clean"))


def test_a_new_process_makes_again_only_the_taxonomy_whose_names_an_edit_changed(example_copy, monkeypatch):
    """The link state's cache file keeps what the last build's taxonomies were made from, so a new
    process whose edit changes a name (a journal's) makes that taxonomy again and takes the others
    as they were (0.5 s for all five at 10,000 articles); the site is a clean build's."""
    from generator import link

    config = load_config(example_copy, {})
    record = example_copy / "content/autoimmunity/37353278.yaml"
    build(config)
    record.write_text(record.read_text().replace("journal: The Lancet. Neurology", "journal: Lancet Neurology"))
    build(config)  # (the first build of these names: what it made them from goes to the cache file)
    made: list[str] = []  # the taxonomies whose terms are made (not those taken from the cache file)
    real_new, real_build = link._new_term, link._build_taxonomies
    building = []

    def new_term(taxonomy, *rest):
        if building:
            made.append(taxonomy)
        return real_new(taxonomy, *rest)

    def build_taxonomies(*args, **named):
        building.append(True)
        try:
            return real_build(*args, **named)
        finally:
            building.pop()

    monkeypatch.setattr(link, "_new_term", new_term)
    monkeypatch.setattr(link, "_build_taxonomies", build_taxonomies)
    monkeypatch.setattr(link, "article_terms", _counting(link.article_terms, filed := []))
    record.write_text(record.read_text().replace("journal: Lancet Neurology", "journal: The Lancet Neurology"))
    build(config)  # a new process's: its link state reads the cache file
    assert set(made) == {"journals"}
    assert {article.id for article, _ in filed} == {"37353278"}  # only the edited article's names worked out
    monkeypatch.undo()
    assert read_tree(example_copy / "site") == read_tree_of_clean_build(example_copy)


def _counting(function, calls: list):
    def counted(*args, **named):
        calls.append(args)
        return function(*args, **named)
    return counted


def test_digest_templates_count_as_its_own_only_when_they_differ_from_the_packaged_ones(example_copy):
    from generator.render import THEME_DIR, own_article_templates

    config = load_config(example_copy, {})
    assert not own_article_templates(config)
    (example_copy / "templates").mkdir()
    shutil.copy(THEME_DIR / "article.html", example_copy / "templates/article.html")
    assert not own_article_templates(config)
    (example_copy / "templates/_extra.html").write_text("<p>mine</p>")
    assert own_article_templates(config)


def test_a_search_page_of_the_digests_own_that_leaves_shards_out_is_a_warning(example_copy, monkeypatch):
    """A search.html copied from an older version does not list the index's other shards: the
    search would find only some articles. The build says so, naming the template."""
    from generator import search

    monkeypatch.setattr(search, "SHARD_ARTICLES", 4)
    config = load_config(example_copy, {})
    assert build(config).warnings == []
    (example_copy / "templates").mkdir()
    page = (REPO / "templates/search.html").read_text(encoding="utf-8")
    (example_copy / "templates/search.html").write_text(re.sub(r"\{% if merged_bundles %\}.*?\{% endif %\}", "", page))
    warnings = build(config).warnings
    assert [w.path for w in warnings] == ["templates/search.html"] and "shards" in warnings[0].message


def test_a_template_reading_digest_wide_data_or_scores_gets_pages_remade_when_they_change(example_copy):
    """What a digest's own templates read decides which pages an edit remakes: a term page that
    prints the digest's article count (from a template it includes, in a sub-folder) changes when an
    article it does not list goes, and the incremental build still gives a clean build's bytes (so
    do pages that print scores)."""
    from generator.render import THEME_DIR, template_references

    config = load_config(example_copy, {})
    assert template_references(config) == (False, False)
    (example_copy / "templates/parts").mkdir(parents=True)
    term = (THEME_DIR / "term.html").read_text(encoding="utf-8")
    (example_copy / "templates/term.html").write_text(
        term.replace("{% block main %}", '{% block main %}{% include "parts/total.html" %}', 1))
    assert template_references(config) == (False, False)
    (example_copy / "templates/parts/total.html").write_text('<p class="total">of {{ digest.articles|length }}</p>')
    assert template_references(config) == (True, False)
    article = (THEME_DIR / "article.html").read_text(encoding="utf-8")
    (example_copy / "templates/article.html").write_text(
        article.replace("{% block main %}", "{% block main %}{% for link in similar %}<i>{{ link.score }}</i>{% endfor %}", 1))
    assert template_references(config) == (True, True)
    build(config)
    site = example_copy / "site"
    elsewhere = next(path for path, data in sorted(read_tree(site).items())
                     if path.startswith("years/") and path.endswith("/index.html") and b"36109639" not in data)
    assert b'<p class="total">of 13</p>' in read_tree(site)[elsewhere]
    (example_copy / "content/autoimmunity/36109639.yaml").unlink()
    build(config)
    after = read_tree(site)
    assert b'<p class="total">of 12</p>' in after[elsewhere]
    assert after == read_tree_of_clean_build(example_copy)


def test_a_cold_build_keeps_in_its_cache_the_listing_entries_compaction_keeps(example_copy, monkeypatch):
    """A cold build's fragments (listing and feed entries, its own and the early writer's) are all
    of its articles: kept as they are, they are what going through the articles picks."""
    import generator.build as build_module

    monkeypatch.setattr(build_module, "EARLY_FILES_MIN", 1)  # the early writer makes term pages, as at 10,000
    monkeypatch.setattr(build_module, "PARALLEL_THRESHOLD", 1)
    picked = build_module._current_fragments
    seen = []

    def both(renderer):
        kept = picked(renderer)
        made = renderer.new_fragments
        renderer.new_fragments = {}  # as if some came from an earlier build: picked article by article
        try:
            seen.append((kept is renderer.fragments, set(kept), set(picked(renderer))))
        finally:
            renderer.new_fragments = made
        return kept

    monkeypatch.setattr(build_module, "_current_fragments", both)
    build(load_config(example_copy, {}), jobs=2, clean=True)
    [(as_made, kept, by_article)] = seen
    assert as_made and kept == by_article
    assert len(kept) > 2 * 13  # each article's entries in listings at two depths, and more


def test_a_second_build_in_one_process_keeps_in_its_cache_the_entries_it_reused(example_copy, tmp_path, monkeypatch):
    """A process that builds twice (a script, a test run) reuses the
    listing and feed entries it made for the first build; the second build's cache must still
    hold them, or the next process renders them all again."""
    import generator.render as render_module
    from generator.cache_files import JournaledDict

    monkeypatch.setattr(render_module, "_ENTRIES_MADE", {})  # as in a new process
    build(load_config(example_copy, {}), jobs=1)
    twin = tmp_path / "twin"
    shutil.copytree(example_copy / "content", twin / "content")
    shutil.copy(example_copy / "digest.yaml", twin / "digest.yaml")
    build(load_config(twin, {}), jobs=1)
    first, second = (JournaledDict(root / ".digest-cache/fragments.pickle").load() for root in (example_copy, twin))
    assert len(first) > 2 * 13  # each article's listing and feed entry, and more
    assert second == first


def age_files(root: Path, seconds: int = 60) -> None:
    """Date every file under `root` `seconds` back: out of the window in which a file's times vouch
    for nothing (a file modified within 2 s of a check may change again within the same tick)."""
    then = time.time_ns() - seconds * 10**9
    for path in root.rglob("*"):
        if path.is_file():
            os.utime(path, ns=(then, then))


def took_the_quick_path(report) -> bool:
    """Whether the build stopped at the no-change check (nothing loaded, rendered or written)."""
    return "check inputs" in report.stage_seconds and "load" not in report.stage_seconds


def test_files_saved_again_with_the_same_bytes_are_no_change(example_copy):
    """A record or template touched, saved unchanged or checked out again by git has new times
    but the same bytes: the no-change check hashes those files and stops there, as it does for
    files whose times did not move (at 10,000 articles: 0.07 s instead of a 1.8 s build)."""
    (example_copy / "templates").mkdir()
    shutil.copy(REPO / "templates/404.html", example_copy / "templates/404.html")  # the theme's, as a user copy
    age_files(example_copy)
    config = load_config(example_copy, {})
    build(config)
    live = read_tree(example_copy / "site")
    saved_again = [example_copy / "content/autoimmunity/37147112.md", example_copy / "content/oncology/29385370.nbib",
                   example_copy / "templates/404.html"]
    for path in saved_again:
        path.write_bytes(path.read_bytes())  # new times, the same bytes (as `git switch` there and back)
    report = build(config)
    assert took_the_quick_path(report) and report.written == 0 and report.articles == 13
    assert read_tree(example_copy / "site") == live
    # Saved just now, their new times vouch for nothing yet: each check hashes them again...
    assert took_the_quick_path(build(config))
    inputs = json.loads((example_copy / ".digest-cache/inputs.json").read_text())["inputs"]
    # ...until they are old enough: then the record takes their new times, and the next check the quick way.
    age_files(example_copy / "content")
    age_files(example_copy / "templates")
    assert took_the_quick_path(build(config))
    assert json.loads((example_copy / ".digest-cache/inputs.json").read_text())["inputs"] != inputs
    assert took_the_quick_path(build(config)) and read_tree(example_copy / "site") == live


@pytest.mark.parametrize("change", ["same size, other bytes", "a template's bytes", "a new file", "a file removed",
                                    "the settings"])
def test_a_change_among_files_saved_again_is_built(example_copy, change):
    """Whatever else was saved unchanged, a change of bytes, of the set of files or of the
    settings is built, and gives what a clean build gives."""
    (example_copy / "templates").mkdir()
    shutil.copy(REPO / "templates/404.html", example_copy / "templates/404.html")
    age_files(example_copy)
    config = load_config(example_copy, {})
    build(config)
    for path in (example_copy / "content/oncology").iterdir():
        path.write_bytes(path.read_bytes())
    notes = example_copy / "content/autoimmunity/37147112.md"
    if change == "same size, other bytes":
        text = notes.read_text()
        assert "First systemic sclerosis case" in text
        notes.write_text(text.replace("First systemic sclerosis case", "Early systemic sclerosis case"))
        assert len(notes.read_bytes()) == len(text.encode())
    elif change == "a template's bytes":
        page = example_copy / "templates/404.html"
        page.write_text(page.read_text().replace("</h1>", " (moved?)</h1>", 1))
    elif change == "a new file":
        shutil.copy(notes, example_copy / "content/autoimmunity/copy-of-37147112.md")
        notes.unlink()
    elif change == "a file removed":
        (example_copy / "content/oncology/29385370.nbib").unlink()
    else:
        settings = example_copy / "digest.yaml"
        settings.write_text(settings.read_text().replace("title: CAR-T cells beyond cancer", "title: CAR-T beyond cancer"))
    report = build(load_config(example_copy, {}))
    assert not took_the_quick_path(report)
    if change != "a new file":  # (the same record from another file: the same pages)
        assert report.written > 0
    assert read_tree(example_copy / "site") == read_tree_of_clean_build(example_copy)


def test_a_record_saved_just_before_a_build_gets_its_digest_from_a_later_build(example_copy):
    """A file saved within 2 s of a build was read while its times vouched for nothing: it has no
    digest yet. The next build that reads records gives it one, so that saving it again unchanged
    later is no change."""
    age_files(example_copy)
    config = load_config(example_copy, {})
    build(config)
    notes = example_copy / "content/autoimmunity/37147112.md"
    notes.write_text(notes.read_text().replace("First systemic sclerosis case", "The first systemic sclerosis case"))
    build(config)  # right after saving it
    time.sleep(2.1)  # (cache_files.RACY_NS)
    record = example_copy / "content/oncology/29385370.nbib"
    record.write_text(record.read_text().replace("TI  - ", "TI  - Edited: ", 1))
    time.sleep(2.1)
    assert not took_the_quick_path(build(config))
    notes.write_bytes(notes.read_bytes())
    assert took_the_quick_path(build(config))


def test_a_record_saved_again_long_ago_is_no_change_beside_one_with_no_digest_yet(example_copy):
    """Recording the new times of files saved again with the same bytes keeps the files that have
    no digest yet (saved just before the last build) as they are: the check still stops there."""
    age_files(example_copy)
    config = load_config(example_copy, {})
    build(config)
    notes = example_copy / "content/autoimmunity/37147112.md"
    notes.write_text(notes.read_text().replace("First systemic sclerosis case", "The first systemic sclerosis case"))
    build(config)  # right after saving it: no digest for it yet
    time.sleep(2.1)  # (cache_files.RACY_NS: its time now vouches for its bytes, but no build read them since)
    record = example_copy / "content/oncology/29385370.nbib"
    record.write_bytes(record.read_bytes())
    then = time.time_ns() - 30 * 10**9
    os.utime(record, ns=(then, then))  # saved again, its new time old enough to be recorded
    assert took_the_quick_path(build(config))
    assert took_the_quick_path(build(config))


def test_the_same_code_installed_again_keeps_every_cache(example_copy):
    """A reinstall (`pip install .` again, a checkout there and back) gives the code new times and
    the same bytes: an edit after it renders the pages that show the record, as any edit does, not
    every page of the site (the caches' code stamps go by the files' bytes)."""
    import generator
    from generator.render import rendering_code_stamp

    config = load_config(example_copy, {})
    build(config)
    record = example_copy / "content/autoimmunity/36109639.yaml"
    record.write_text(record.read_text().replace("refractory systemic lupus", "refractory lupus"))
    code = {path: path.stat() for path in Path(generator.__file__).parent.rglob("*.py")}
    try:
        for path, info in code.items():
            os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 10**9))
        rendering_code_stamp.cache_clear()  # (kept for the process: a new process asks again)
        report = build(config)
    finally:
        for path, info in code.items():
            os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))
        rendering_code_stamp.cache_clear()
    assert 0 < report.rendered < report.pages // 3  # the pages that show the record (63 of 222)
    assert read_tree(example_copy / "site") == read_tree_of_clean_build(example_copy)


def test_an_edit_undone_says_the_pages_it_changed(example_copy):
    """An edit undone right after its build: the spare tree (the build before last) holds every page
    as it is to be, so nothing is written, and the summary still says how many pages changed."""
    config = load_config(example_copy, {})
    build(config)
    record = example_copy / "content/autoimmunity/36109639.yaml"
    original = record.read_text()
    record.write_text(original.replace("refractory systemic lupus", "refractory lupus"))
    edited = build(config)
    assert edited.written > 0 and edited.kept == 0 and "changed" not in edited.summary()
    record.write_text(original)
    undone = build(config)
    assert undone.written == 0 and undone.kept == edited.written
    assert f"({edited.written:,} changed: 0 written, {edited.written:,} already made by the build before last" \
        in undone.summary()
    assert read_tree(example_copy / "site") == read_tree_of_clean_build(example_copy)
