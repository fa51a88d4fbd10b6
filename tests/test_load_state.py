"""LoadState and LinkState: repeated builds in one process (and through their cache files) give
exactly what a build from scratch gives, doing only the work a change implies."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import sys
import tempfile
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

needs_inotify = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the input check's inotify is Linux's")


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
        lambda: (digest / "content/ctrl.yaml").unlink(),
        # Names the taxonomies file under: a new process makes again only the taxonomy changed.
        lambda: edit_text("content/autoimmunity/37353278.yaml", "journal: The Lancet. Neurology", "journal: Lancet Neurol"),
        lambda: edit_text("content/autoimmunity/32472023.yaml", "family: Jin\n", "family: Jinn\n"),
        lambda: edit_text("content/autoimmunity/32472023.yaml", "published: 2021-08", "published: 2021-08\ntags: [mouse model]"),
        lambda: edit_text("content/autoimmunity/32472023.yaml", "published: 2021-08", "published: 2019-01"),  # (its place)
    ]

    def edit_text(name: str, old: str, new: str) -> None:
        path = digest / name
        assert old in path.read_text()
        path.write_text(path.read_text().replace(old, new, 1))

    processes = cache / "processes"  # a new process for each edit, each reading what the last one saved
    for edit in edits:
        edit()
        expected = everything(digest)
        assert everything(digest, load_state, link_state) == expected
        # A new process: the states read back from their cache files.
        assert everything(digest, LoadState(cache / "records.pickle"), LinkState(cache / "links.pickle")) == expected
        assert everything(digest, LoadState(processes / "records.pickle"), LinkState(processes / "links.pickle")) \
            == expected


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


def test_damaged_deferred_fields_are_found_when_the_cache_file_is_read(digest):
    """The fields a new process reads back only when used (authors, abstracts...) are checked when
    the cache file is read: a damaged shard costs the work of reading the records again, never a
    failure half-way through a build."""
    import pickle

    from generator.cache_files import dump_with_parts, load_with_parts

    cache = digest / ".digest-cache"
    expected = everything(digest, LoadState(cache / "records.pickle"), LinkState(cache / "links.pickle"))
    stamp, roots, files, blobs = load_with_parts(cache / "records.pickle")
    damaged = []
    for groups, deferred, check in blobs:
        deferred = bytes(deferred)
        if pickle.loads(groups):  # one byte of its pickled fields changed, the rest of the file intact
            deferred = deferred[:len(deferred) // 2] + bytes([deferred[len(deferred) // 2] ^ 0xFF]) + \
                deferred[len(deferred) // 2 + 1:]
        damaged.append((pickle.PickleBuffer(groups), pickle.PickleBuffer(deferred), check))
    with open(cache / "records.pickle", "wb") as stream:
        dump_with_parts((stamp, roots, files, damaged), stream)
    assert everything(digest, LoadState(cache / "records.pickle"), LinkState(cache / "links.pickle")) == expected


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
    monkeypatch.setattr(load_module, "RACY_NS", 300_000_000)  # 0.3 s instead of 2 s
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


def _medline(pmid: str, title: str, abstract: str, year: str) -> str:
    return (f"PMID- {pmid}\nTI  - {title}\n" + (f"AB  - {abstract}\n" if abstract else "")
            + f"DP  - {year} Mar\nAU  - Lee A\nMH  - Humans\nMH  - *Lupus Erythematosus, Systemic\n")


def _native(pmid: str, doi: str, title: str, notes: str) -> str:
    lines = [f"pmid: '{pmid}'" if pmid else "", f"doi: {doi}" if doi else "", f"title: {title}" if title else "",
             "published: 2021-05", f"notes: {notes}" if notes else ""]
    return "\n".join(line for line in lines if line) + "\n"


GOOD_RECORDS = st.one_of(
    st.builds(lambda *parts: ("nbib", _medline(*parts)), st.sampled_from(["11", "12", "13", "14"]),
              st.sampled_from(["CAR T cells in lupus", "B cell depletion", "Edited title"]),
              st.sampled_from(["", "An abstract.", "Another abstract about CD19."]),
              st.sampled_from(["2020", "2023", "2999"])),  # (2999: a date in the future, a warning)
    st.builds(lambda *parts: ("yaml", _native(*parts)), st.sampled_from(["11", "12", "15", ""]),
              st.sampled_from(["10.1000/a", "10.1000/B", ""]), st.sampled_from(["A native title", "Other"]),
              st.sampled_from(["", "Read at the journal club."])),
)
RECORD_TEXTS = st.one_of(GOOD_RECORDS, GOOD_RECORDS, GOOD_RECORDS,
                         st.just(("yaml", "title: [unclosed\n")))  # (a file that does not parse: an error)


@needs_inotify
@settings(max_examples=60, deadline=None)
@given(st.lists(GOOD_RECORDS, min_size=3, max_size=6), st.lists(st.tuples(
    st.sampled_from(["retitle", "retitle", "abstract", "abstract", "write", "touch", "age", "add", "remove"]),
    st.integers(0, 20),
    RECORD_TEXTS, st.sampled_from(["Retitled", "Another title", "CAR T cells in lupus"])), min_size=1, max_size=8))
def test_an_edits_load_is_the_load_made_afresh(start, steps):
    """A session's load after an edit (`LoadState._load_edit`: the input check's stats, only the
    changed files' groups made again) gives what a load from nothing gives: the same articles in
    the same order, the same warnings in the same order (or the same error), the same
    fingerprints; whatever the edit (a title, an identity, a merge of two files, a file that stops
    parsing, a date in the future, the same bytes again, a file older than the racy window)."""
    from generator.input_check import InputCheck

    root = Path(tempfile.mkdtemp())
    try:
        (root / "digest.yaml").write_text("title: Edits\n")
        content = root / "content"
        content.mkdir()
        names: list[str] = []
        made = itertools.count()  # a new file's number: never one a file had (one may have been removed)

        def put(number: int, kind_text: tuple[str, str]) -> None:
            kind, text = kind_text
            stem = names[number].rsplit(".", 1)[0] if number < len(names) else f"r{next(made)}"
            name = f"{stem}.{kind}"
            if number < len(names) and names[number] != name:
                (content / names[number]).unlink()
            (content / name).write_text(text)
            if number < len(names):
                names[number] = name
            else:
                names.append(name)

        for record in start:
            put(len(names), record)
        config = load_config(root, {})
        check, state = InputCheck(), LoadState()
        edits = 0
        for action, pick, record, title in [("nothing", 0, None, ""), *steps]:
            number = pick % len(names)
            if action == "write":
                put(number, record)
            elif action == "retitle":  # the same record with another title (most edits)
                path = content / names[number]
                path.write_text(re.sub(r"^(TI  - |title: ).*$", lambda m: m.group(1) + title, path.read_text(),
                                       count=1, flags=re.MULTILINE))
            elif action == "abstract":  # one given or taken away ("no abstract" is a warning)
                path = content / names[number]
                text = path.read_text()
                if re.search(r"^(AB  - |abstract: )", text, flags=re.MULTILINE):
                    text = re.sub(r"^(AB  - |abstract: ).*\n", "", text, flags=re.MULTILINE)
                else:
                    text += "AB  - An abstract given.\n" if names[number].endswith(".nbib") else "abstract: Given.\n"
                path.write_text(text)
            elif action == "touch":
                os.utime(content / names[number])
            elif action == "age":  # older than the racy window: its signature stands for its bytes
                past = time.time() - 60
                for name in names:
                    os.utime(content / name, (past, past))
            elif action == "add":
                put(len(names), record)
            elif action == "remove" and len(names) > 1:
                (content / names.pop(number)).unlink()
            stats: dict = {}
            check.fingerprint(config, stats)
            before = edits
            real = state._load_edit

            def counted(*args, **kwargs):
                nonlocal edits
                found = real(*args, **kwargs)
                edits += found is not None
                return found

            state._load_edit = counted
            mine = _loaded(lambda: state.load(config.content_path, config.root, stats=stats, listing=check.listing))
            del state._load_edit
            fresh = _loaded(lambda: LoadState().load(config.content_path, config.root))
            assert mine == fresh, (action, edits - before)
        check.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _loaded(load) -> tuple:
    """What a load gives, in comparable form."""
    try:
        result = load()
    except DigestError as exc:
        return ("error", [(p.format(), p.severity) for p in exc.problems])
    return ("ok", result.articles, [(w.format(), w.severity) for w in result.warnings],
            [result.fingerprints.get(article) for article in result.articles])


@needs_inotify
def test_a_title_edit_in_a_session_loads_only_what_it_changed(digest, monkeypatch):
    """The daemon's edit: the input check names the one file, and the load stage reads it alone and
    makes its group again; every other article is the same object, and the result a fresh load's."""
    import generator.input_check as input_check_module
    from generator.input_check import InputCheck

    # The content folder only: the package's own folders are inputs too, and a file another process
    # creates there (a parallel test run) makes the next check a full one, whose new listing sends
    # the load down its full path (slower, not wrong; this test is about the edit's path).
    monkeypatch.setattr(input_check_module, "input_folders", lambda config: [config.content_path])
    config = load_config(digest, {})
    check, state = InputCheck(), LoadState()
    first = state.load(config.content_path, config.root, stats=_stated(check, config), listing=check.listing)
    record = digest / "content/autoimmunity/36109639.yaml"
    record.write_text(record.read_text().replace("refractory systemic lupus", "refractory lupus"))
    read: list = []
    real_read, real_claim = load_module._read_files, load_module._claim
    monkeypatch.setattr(load_module, "_read_files", lambda jobs, workers: read.extend(jobs) or real_read(jobs, workers))
    monkeypatch.setattr(load_module, "_claim", lambda *args: pytest.fail("the ids were claimed afresh"))
    edited = state.load(config.content_path, config.root, stats=_stated(check, config), listing=check.listing)
    monkeypatch.setattr(load_module, "_claim", real_claim)
    assert [shown for _, shown, *_ in read] == ["content/autoimmunity/36109639.yaml"]
    changed = [n for n, (a, b) in enumerate(zip(first.articles, edited.articles)) if a is not b]
    assert [edited.articles[n].id for n in changed] == ["36109639"]
    assert "refractory lupus" in edited.articles[changed[0]].title
    assert _loaded(lambda: edited) == _loaded(lambda: LoadState().load(config.content_path, config.root))
    check.close()


def _stated(check, config) -> dict:
    stats: dict = {}
    check.fingerprint(config, stats)
    return stats


def test_articles_read_back_from_the_cache_file_are_the_articles_parsed(digest):
    """A new process reads an article's authors, abstract, MeSH headings (the deferred fields) from
    the cache file only when something asks for them; asked or not yet, each article equals,
    hashes, prints, pickles and copies as the article parsed from its files."""
    import dataclasses
    import pickle

    from generator.model import Article

    config = load_config(digest, {})
    fresh = load_articles(config.content_path, config.root).articles
    cache = digest / ".digest-cache" / "records.pickle"
    load_articles(config.content_path, config.root, state=LoadState(cache))  # saves the cache file

    def read_back() -> tuple:  # (a new state each time: nothing read back yet)
        return load_articles(config.content_path, config.root, state=LoadState(cache)).articles

    assert all(a == b for a, b in zip(read_back(), fresh)) and len(read_back()) == len(fresh)
    assert all(b == a for a, b in zip(read_back(), fresh))
    assert [hash(a) for a in read_back()] == [hash(b) for b in fresh]
    assert [repr(a) for a in read_back()] == [repr(b) for b in fresh]
    copies = [pickle.loads(pickle.dumps(a)) for a in read_back()]
    assert copies == list(fresh) and {type(a) for a in copies} == {Article}
    assert [(a.authors, a.abstract, a.mesh_terms, a.history) for a in read_back()] == \
        [(b.authors, b.abstract, b.mesh_terms, b.history) for b in fresh]
    assert [dataclasses.replace(a, title="Retitled") for a in read_back()] == \
        [dataclasses.replace(b, title="Retitled") for b in fresh]
    assert [dataclasses.asdict(a) for a in read_back()] == [dataclasses.asdict(b) for b in fresh]
