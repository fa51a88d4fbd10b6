"""LoadState and LinkState: repeated builds in one process (and through their cache files) give
exactly what a build from scratch gives, doing only the work a change implies."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import generator.load as load_module
from generator.config import load_config
from generator.errors import DigestError
from generator.link import LinkState, link_articles
from generator.load import IdPlan, LoadState, _id_inputs, load_articles
from generator.model import SourceRef
from generator.neighbour_index import NeighbourIndex
from tests.conftest import REPO


@pytest.fixture
def digest(tmp_path: Path) -> Path:
    root = tmp_path / "digest"
    shutil.copytree(REPO / "content", root / "content")
    shutil.copy(REPO / "digest.yaml", root / "digest.yaml")
    past = time.time() - 60  # not "racily clean": an unchanged signature stands for the bytes
    for path in (root / "content").rglob("*"):
        os.utime(path, (past, past))
    return root


def everything(root: Path, load_state=None, link_state=None):
    """Load and link; return what a build uses, in comparable form."""
    config = load_config(root, {})
    try:
        loaded = load_articles(config.content_path, config.root, state=load_state)
    except DigestError as exc:
        return ("error", [p.format() for p in exc.problems])
    linked = link_articles(loaded.articles, config.similar, config.taxonomies, state=link_state,
                           fingerprints=loaded.fingerprints if link_state else None)
    return ("ok", loaded.articles, [w.format() for w in loaded.warnings],
            {k: [repr(link) for link in v] for k, v in linked.similar.items()}, dict(linked.backlinks),
            {k: [repr(t) for t in v] for k, v in linked.taxonomies.items()}, dict(linked.term_slugs))


def test_state_builds_equal_fresh_builds_through_edits(digest):
    cache = digest / ".digest-cache"
    load_state, link_state = LoadState(cache / "records.pickle"), LinkState(cache / "links.pickle")
    notes = digest / "content/autoimmunity/37147112.md"
    edits = [
        lambda: None,
        lambda: notes.write_text(notes.read_text().replace("First systemic", "The first systemic")),
        lambda: (digest / "content/new.yaml").write_text("pmid: 31234567\ntitle: New\npublished: 2999-01-01\n"),
        lambda: (digest / "content/dup.yaml").write_text("pmid: 31234567\ntitle: Duplicate\n"),  # an error
        lambda: (digest / "content/dup.yaml").unlink(),
        lambda: (digest / "content/oncology/29226797.xml").unlink(),
        lambda: (digest / "content/ctrl.yaml").write_text('title: "Bad \\x01 title"\n'),
    ]
    for edit in edits:
        edit()
        expected = everything(digest)
        assert everything(digest, load_state, link_state) == expected
        # A new process: the states read back from their cache files.
        assert everything(digest, LoadState(cache / "records.pickle"), LinkState(cache / "links.pickle")) == expected


def test_unchanged_files_are_not_read_and_unchanged_articles_are_the_same_objects(digest, monkeypatch):
    config = load_config(digest, {})
    state = LoadState()
    first = load_articles(config.content_path, config.root, state=state)
    read = []
    real = load_module.read_content_bytes
    monkeypatch.setattr(load_module, "read_content_bytes", lambda path, shown: read.append(shown) or real(path, shown))
    notes = digest / "content/autoimmunity/37147112.md"
    notes.write_text(notes.read_text().replace("First systemic", "The first systemic"))
    second = load_articles(config.content_path, config.root, state=state)
    assert read == ["content/autoimmunity/37147112.md"]
    same = {a.id for a, b in zip(first.articles, second.articles) if a is b}
    assert same == {a.id for a in first.articles} - {"37147112"}
    assert [w.format() for w in second.warnings] == [w.format() for w in first.warnings]


def test_a_notes_edit_reuses_the_computed_neighbours(digest, monkeypatch):
    load_state, link_state = LoadState(), LinkState()
    everything(digest, load_state, link_state)
    calls = []
    real = NeighbourIndex.neighbours
    monkeypatch.setattr(NeighbourIndex, "neighbours", lambda self, *a: calls.append(self) or real(self, *a))
    notes = digest / "content/autoimmunity/37147112.md"
    notes.write_text(notes.read_text().replace("First systemic", "The first systemic"))
    assert everything(digest, load_state, link_state) == everything(digest)
    assert calls == []  # neither the kept state nor the build from scratch asked the index
    title = digest / "content/autoimmunity/36109639.yaml"
    title.write_text(title.read_text().replace("refractory systemic lupus", "refractory lupus"))
    assert everything(digest, load_state, link_state) == everything(digest)
    assert len(calls) == 1


@pytest.mark.parametrize("damage", [b"", b"not a pickle", None])
def test_a_damaged_cache_changes_nothing(digest, damage):
    cache = digest / ".digest-cache"
    expected = everything(digest, LoadState(cache / "records.pickle"), LinkState(cache / "links.pickle"))
    for name in ("records.pickle", "links.pickle"):
        data = (cache / name).read_bytes()
        (cache / name).write_bytes(data[: len(data) // 2] if damage is None else damage)
    assert everything(digest, LoadState(cache / "records.pickle"), LinkState(cache / "links.pickle")) == expected
    assert everything(digest) == expected


def test_a_new_process_takes_the_taxonomies_from_the_cache_while_every_article_files_under_the_same_names(
        digest, monkeypatch):
    import generator.link as link_module

    cache = digest / ".digest-cache"
    everything(digest, LoadState(cache / "records.pickle"), LinkState(cache / "links.pickle"))
    built = []
    real = link_module._build_taxonomies
    monkeypatch.setattr(link_module, "_build_taxonomies", lambda *a: built.append(1) or real(*a))
    record = digest / "content/autoimmunity/36109639.yaml"
    record.write_text(record.read_text().replace("refractory systemic lupus", "refractory lupus"))  # a title edit
    expected = everything(digest)
    built.clear()
    assert everything(digest, LoadState(cache / "records.pickle"), LinkState(cache / "links.pickle")) == expected
    assert built == []  # the terms came from the cache file
    record.write_text(record.read_text().replace("drug-free remission]", "drug-free remission, relapse]"))
    expected = everything(digest)
    built.clear()
    found = everything(digest, LoadState(cache / "records.pickle"), LinkState(cache / "links.pickle"))
    assert found == expected and built == [1]  # a new keyword: made again
    assert any(t.startswith("Term(taxonomy='topics', name='relapse'") for t in found[5]["topics"])


def test_the_load_stage_takes_the_stats_the_no_change_check_made(digest):
    """`digest build` stats every content file for its no-change check; loading then takes those
    results instead of asking again (10,000 files: 0.04 s here), and asks for the files it lacks."""
    from generator.input_check import input_fingerprint

    config = load_config(digest, {})
    state = LoadState()
    record = config.content_path / "autoimmunity/36109639.yaml"
    stats: dict = {}
    input_fingerprint(config, stats)
    assert os.fspath(record) in stats
    first = load_articles(config.content_path, config.root, state=state, stats=stats)
    title = next(a.title for a in first.articles if a.pmid == "36109639")
    # Edited after the check: with the check's stats, this build sees the file as it was checked
    # (unchanged, so not read again); the next check sees the edit.
    record.write_text(record.read_text().replace("refractory systemic lupus", "refractory lupus"))
    again = load_articles(config.content_path, config.root, state=state, stats=stats)
    assert next(a.title for a in again.articles if a.pmid == "36109639") == title
    stats = {}
    input_fingerprint(config, stats)
    fresh = load_articles(config.content_path, config.root, state=state, stats=stats)
    assert "refractory lupus" in next(a.title for a in fresh.articles if a.pmid == "36109639")
    partial = {path: info for path, info in stats.items() if "autoimmunity" not in path}
    assert load_articles(config.content_path, config.root, state=LoadState(), stats=partial).articles == \
        fresh.articles


ID_FIELDS = st.fixed_dictionaries({}, optional={
    "id": st.sampled_from(["a", "A", "b", "bad id!", ""]), "pmid": st.sampled_from(["1", "2", ""]),
    "doi": st.sampled_from(["10.1/a_b", "10.1/a-b", "10.1/X", ""]), "title": st.sampled_from(["T", "t", "Other", ""])})
SOURCES = st.builds(SourceRef, st.sampled_from(["a.yaml", "b.nbib"]), st.sampled_from([None, 1, 2]))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(ID_FIELDS, SOURCES), min_size=1, max_size=8), st.data())
def test_an_id_plan_taken_again_is_the_plan_made_afresh(drafts, data):
    """A daemon's edit takes the last build's ids when no group changed what its id is made from
    (`IdPlan.again`): the ids, refusals and their order are then exactly what planning afresh gives,
    and any change to what they are made from plans afresh."""
    merges = [SimpleNamespace(ids=fields, source=source) for fields, source in drafts]
    plan = IdPlan.of(merges)
    edited = list(merges)
    for index in data.draw(st.lists(st.integers(0, len(merges) - 1), unique=True)):
        fields, source = merges[index].ids, merges[index].source
        if data.draw(st.booleans()):  # an edit of something else (a title, when it is not the id)
            fields = {**fields, "title": data.draw(st.sampled_from(["T", "New title"]))}
            source = SourceRef(source.path, source.line)
        else:
            fields, source = data.draw(ID_FIELDS), data.draw(SOURCES)
        edited[index] = SimpleNamespace(ids=fields, source=source)
    again, fresh = plan.again(edited), IdPlan.of(edited)
    same_inputs = all(_id_inputs(a.ids, a.source) == _id_inputs(b.ids, b.source) for a, b in zip(merges, edited))
    assert (again is not None) == same_inputs
    if again is not None:
        assert (again.events, again.ids) == (fresh.events, fresh.ids)
        assert again.fields == [m.ids for m in edited]  # the next edit compares with these


def test_files_read_too_soon_after_a_change_are_trusted_once_confirmed_while_idle(tmp_path, monkeypatch):
    """A build right after the records were copied cannot trust their size and times (they may
    change again within the same tick), so the next build hashes them all again. A process idle
    in between (the daemon) confirms them once the change is old enough: the next build then reads
    none of them, except one changed since, and loads what a fresh load gives."""
    monkeypatch.setattr(load_module, "_RACY_NS", 300_000_000)  # 0.3 s instead of 2 s
    root = tmp_path / "digest"
    shutil.copytree(REPO / "content", root / "content", copy_function=shutil.copyfile)  # modified just now
    state = LoadState()
    load_articles(root / "content", root, state=state)
    assert state.confirm_settled_files(root / "content", root) == 0  # still too soon
    time.sleep(0.4)
    changed = root / "content/autoimmunity/36109639.yaml"
    changed.write_text(changed.read_text().replace("refractory systemic lupus", "refractory lupus"))
    files = sum(1 for path in (root / "content").rglob("*") if path.is_file())
    assert state.confirm_settled_files(root / "content", root) == files - 1

    read = []
    real_read_one = load_module._read_one
    monkeypatch.setattr(load_module, "_read_one", lambda job: read.append(job[1]) or real_read_one(job))
    loaded = load_articles(root / "content", root, state=state)
    assert read == ["content/autoimmunity/36109639.yaml"]
    assert loaded.articles == load_articles(root / "content", root).articles
