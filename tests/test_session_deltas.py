"""What a long-lived build process (serve, the daemon) keeps between builds and updates by each
edit (term jobs, the map's graph, similar lists and backlinks, listings, the exports' parts, the
profile length) gives what a process starting from nothing gives."""

from __future__ import annotations

import marshal
import os
import random
import shutil
from pathlib import Path
from types import SimpleNamespace

from hypothesis import given, settings, strategies as st

import generator.graph as graph
import generator.render as render
from generator.build import BuildSession, build
from generator.config import load_config
from generator.input_check import InputCheck
from tests.conftest import read_tree


def page_keys(root: Path, site: Path) -> dict[str, str]:
    """The fingerprint of every page of a built tree, from its manifest."""
    tree_id = (site / ".digest-tree").read_text().strip()
    return marshal.loads((root / f".digest-cache/trees/{tree_id}.manifest").read_bytes())


def made_from_nothing(root: Path, monkeypatch) -> tuple[dict[str, str], dict[str, bytes]]:
    """The page keys and files of a clean build that starts with nothing this process kept (as a
    new process's): the plan's memo, its term segments and HTML paths, the indexes' pages, the map's
    graph, listings."""
    from dataclasses import replace

    out = root.parent / "from-nothing"
    shutil.rmtree(out, ignore_errors=True)
    with monkeypatch.context() as patch:
        patch.setattr(render, "_KEY_MEMO", render._KeyMemo())
        patch.setattr(render, "_TERM_SEGMENTS", {})
        patch.setattr(render, "_INDEX_PAGES", {})
        patch.setattr(render, "_TERM_PLACES", {})
        patch.setattr(render, "_HTML_PATHS", None)
        patch.setattr(render, "_ARTICLE_SEGMENT", None)
        patch.setattr(render, "_LISTINGS", {})
        patch.setattr(render, "_ENTRIES_MADE", {})
        patch.setattr(graph, "_GRAPH", None)
        patch.setattr(graph, "_TOPIC_COUNTS", None)
        build(replace(load_config(root, {}), output_dir=str(out)), clean=True)
    return page_keys(root, out), read_tree(out)


def test_a_sessions_builds_give_the_keys_and_bytes_of_a_build_made_from_nothing(example_copy, monkeypatch):
    import generator.build as build_module

    monkeypatch.setattr(render, "LISTING_MEMO_MIN", 1)  # every listing is kept (the digest is small)
    monkeypatch.setattr(build_module, "PARALLEL_THRESHOLD", 1)  # rendered in workers: warmed up after
    config = load_config(example_copy, {})
    # As the daemon's: each build checks only the files the kernel's queue names (see input_check).
    session = BuildSession(config=config, watched=False, input_check=InputCheck())
    build(config, session=session)
    record = example_copy / "content/autoimmunity/36109639.yaml"
    notes = example_copy / "content/autoimmunity/37147112.md"
    linking = example_copy / "content/autoimmunity/linking.yaml"
    steps = [
        ("a title", lambda: record.write_text(record.read_text().replace("refractory systemic lupus", "refractory lupus"))),
        ("the same title again", lambda: record.write_text(record.read_text().replace("refractory lupus", "lupus"))),
        ("notes (topic feeds show them)", lambda: notes.write_text(
            notes.read_text().replace("First systemic sclerosis case", "A first case"))),
        ("an author's name", lambda: record.write_text(record.read_text().replace("Georg Schett", "G. Schett"))),
        ("a title after the authors changed", lambda: record.write_text(record.read_text().replace("for lupus", "for SLE"))),
        ("a date", lambda: record.write_text(record.read_text().replace("published: 2022-10", "published: 2019-02"))),
        ("a major topic (the map colours by them)", lambda: record.write_text(
            record.read_text().replace("B-Lymphocytes/immunology", "B-Lymphocytes/*immunology"))),
        ("a major topic no more", lambda: record.write_text(
            record.read_text().replace("Lupus Erythematosus, Systemic/*therapy", "Lupus Erythematosus, Systemic/therapy"))),
        ("a new record", lambda: (example_copy / "content/autoimmunity/new.yaml").write_text(
            "pmid: 31234567\ntitle: A new record about CAR-T cells in lupus\nauthors: [Georg Schett]\n"
            "published: 2025-08-01\nsimilar: [36109639]\n")),
        ("a title next to the new record", lambda: record.write_text(record.read_text().replace("for SLE", "for lupus"))),
        ("a record removed", lambda: (example_copy / "content/oncology/29226797.xml").unlink()),
        ("a record that only links to another", lambda: linking.write_text(
            "pmid: 31234568\ntitle: Zebrafish fin regeneration kinetics\npublished: 2025-09-01\nsimilar: [36109639]\n")),
        ("its title (the page it links to lists it)", lambda: linking.write_text(
            linking.read_text().replace("regeneration", "regrowth"))),
    ]
    term_lookups = []
    real_get = render._KeyMemo.get

    def counted_get(memo, name, *args, **kwargs):
        if name[0] == "term":
            term_lookups[-1] += 1
        return real_get(memo, name, *args, **kwargs)

    monkeypatch.setattr(render._KeyMemo, "get", counted_get)
    for what, step in steps:
        step()
        term_lookups.append(0)
        build(config, session=session)
        looked_up = term_lookups[-1]
        keys, files = made_from_nothing(example_copy, monkeypatch)
        assert page_keys(example_copy, example_copy / "site") == keys, what
        assert read_tree(example_copy / "site") == files, what
        if what.startswith("a title") or what.startswith("notes"):
            # Only the terms of the edited article were looked at (a dozen of its topics and authors,
            # its journal, year and types), not all of the digest's.
            every_term = sum(1 for job in session.jobs if job.path.count("/") == 2 and job.path.endswith("index.html")
                             and job.path.split("/")[0] in config.taxonomies)
            assert 0 < looked_up <= 25 < every_term, what


def reference_map_graph(ids: list[str], lists: dict[str, tuple]) -> tuple[list[str], list[tuple[int, int]]]:
    """The map's graph counted from scratch: each link into the digest is an undirected line."""
    pairs = {tuple(sorted((article_id, link[0]))) for article_id in ids for link in lists[article_id]
             if link[0] != article_id}
    degree = {article_id: sum(article_id in pair for pair in pairs) for article_id in ids}
    chosen = sorted(sorted(ids, key=lambda i: (-degree[i], i))[:graph.MAX_NODES])
    index = {article_id: n for n, article_id in enumerate(chosen)}
    return chosen, sorted((index[a], index[b]) for a, b in pairs if a in index and b in index)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_the_map_topics_kept_between_builds_are_those_counted_from_scratch(data):
    """The map colours an article by its most common major topic; a rebuild counts only the
    articles that are new objects again (`graph.primary_topics`)."""
    from generator.model import MeshTerm

    topics = ["Lupus", "Myositis", "Sclerosis", "Vasculitis"]
    count = data.draw(st.integers(1, 8))

    def article(n: int) -> SimpleNamespace:
        mesh = tuple(MeshTerm(t, major=data.draw(st.booleans())) for t in data.draw(st.lists(st.sampled_from(topics),
                                                                                              unique=True, max_size=3)))
        return SimpleNamespace(id=f"a{n}", mesh_terms=mesh, keywords=tuple(data.draw(st.lists(st.sampled_from(topics),
                                                                                               max_size=2))))

    articles = [article(n) for n in range(count)]
    old = graph._TOPIC_COUNTS
    try:
        for _ in range(data.draw(st.integers(1, 5))):
            for n in data.draw(st.lists(st.integers(0, count - 1), max_size=count)):  # edited: new objects
                articles[n] = article(n)
            digest = SimpleNamespace(articles=tuple(articles), by_id={a.id: a for a in articles})
            asked = data.draw(st.lists(st.sampled_from([a.id for a in articles]), unique=True))
            kept = graph.primary_topics(digest, asked)
            graph._TOPIC_COUNTS = None
            fresh = graph.primary_topics(digest)
            assert kept == {i: fresh[i] for i in asked}
    finally:
        graph._TOPIC_COUNTS = old


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_the_map_graph_kept_between_builds_is_the_graph_counted_from_scratch(data):
    """A process's first answer is made from all the lists; a session's (`count_lines` after its
    first build) then counts only the lists an edit changed: both must be the graph from scratch."""
    count = data.draw(st.integers(2, 14))
    session = data.draw(st.booleans())
    ids = [f"a{n:02d}" for n in range(count)]
    rng = random.Random(data.draw(st.integers(0, 2**32)))
    max_nodes = data.draw(st.integers(1, count + 1))

    def new_list(article_id: str) -> tuple:  # an internal link is a 4-tuple starting with its target
        targets = rng.sample(ids, rng.randint(0, min(4, count)))
        return tuple((target, 0.5, (), ()) for target in targets)

    lists = {article_id: new_list(article_id) for article_id in ids}
    old_graph, old_max = graph._GRAPH, graph.MAX_NODES
    graph._GRAPH, graph.MAX_NODES = None, max_nodes
    try:
        for _ in range(data.draw(st.integers(1, 6))):
            for article_id in rng.sample(ids, rng.randint(0, count)):  # these lists change
                lists[article_id] = new_list(article_id)
            digest = SimpleNamespace(articles=[SimpleNamespace(id=i) for i in ids],
                                     similar=SimpleNamespace(entries=dict(lists)), by_id=dict.fromkeys(ids))
            assert graph.map_graph(digest) == reference_map_graph(ids, lists)
            if session:
                graph.count_lines()
                assert graph._GRAPH.counted
                assert graph.map_graph(digest) == reference_map_graph(ids, lists)
    finally:
        graph._GRAPH, graph.MAX_NODES = old_graph, old_max


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_an_exports_parts_in_place_are_those_found_entry_by_entry(tmp_path_factory, data):
    """An edit keeps the live export's order: the parts and index made by looking only at the
    changed entries are those made by finding every entry in the live export."""
    from generator.build import ExportIndex, _parts_in_any_order, _parts_in_place
    from generator.render import AGGREGATES, PageJob, export_frame, export_item

    kind = data.draw(st.sampled_from(sorted(AGGREGATES)))
    name = AGGREGATES[kind]
    tree = tmp_path_factory.mktemp("tree")
    head, separator, tail = export_frame(kind)
    count = data.draw(st.integers(1, 12))
    ids = [f"a{n}" for n in range(count)]
    entry = st.binary(min_size=1, max_size=12).map(lambda b: b'{"x": "' + b.hex().encode() + b'"}'
                                                   if kind == "digest.csl.json" else b"@" + b.hex().encode())
    files = {i: data.draw(entry) for i in ids}
    old_keys = {f"articles/{i}/{name}": f"k{n}" for n, i in enumerate(ids)}
    # The live export and its index, as the last build made them.
    live_bytes, stored, position = bytearray(head), ExportIndex(tuple(ids), [], [], []), len(head)
    for n, article_id in enumerate(ids):
        if n:
            live_bytes += separator
            position += len(separator)
        item = export_item(kind, b"[\n" + files[article_id] + b"\n]\n" if kind == "digest.csl.json" else files[article_id])
        stored.keys.append(old_keys[f"articles/{article_id}/{name}"])
        stored.starts.append(position)
        stored.ends.append(position + len(item))
        live_bytes += item
        position += len(item)
    live_path = tree / "live"
    live_path.write_bytes(bytes(live_bytes + tail))
    # The edit: some entries get a new key, with new bytes or (a notes edit) the same.
    keys = dict(old_keys)
    for article_id in data.draw(st.lists(st.sampled_from(ids), unique=True)):
        keys[f"articles/{article_id}/{name}"] = "new-" + article_id
        if data.draw(st.booleans()):
            files[article_id] = data.draw(entry)
    for article_id in ids:
        (tree / "articles" / article_id).mkdir(parents=True, exist_ok=True)
        body = b"[\n" + files[article_id] + b"\n]\n" if kind == "digest.csl.json" else files[article_id]
        (tree / "articles" / article_id / name).write_bytes(body)
    job = PageJob(kind, kind, "key", ())
    live = os.open(live_path, os.O_RDONLY)
    try:
        in_place = _parts_in_place(job, tuple(ids), keys, str(tree), head, separator, live, stored)
        found = _parts_in_any_order(job, tuple(ids), keys, str(tree), head, separator, live, stored)
    finally:
        os.close(live)
    assert in_place == found
    parts, index = in_place
    made = b"".join(bytes(live_bytes[p[0]:p[1]]) if isinstance(p, tuple) else p for p in parts)
    items = [export_item(kind, (tree / "articles" / i / name).read_bytes()) for i in ids]
    assert made == head + separator.join(items)
    assert all(made[start:end] == item for start, end, item in zip(index.starts, index.ends, items))


WORDS = ("lupus", "interferon", "nephritis", "myositis", "sclerosis", "cd19", "bcma", "remission", "relapse",
         "cytokine", "toxicity", "vasculitis")


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_a_link_state_kept_through_edits_links_as_a_fresh_one(data):
    """Similar lists and backlinks (their order too) after edits that move neighbours, change
    PubMed's lists, add and remove articles: those of linking the articles from scratch."""
    from dataclasses import replace

    from generator.link import LinkState, link_articles
    from generator.model import Article, SimilarRef, SourceRef
    from generator.similarity import SimilarityConfig

    rng = random.Random(data.draw(st.integers(0, 2**32)))
    config = SimilarityConfig(min_score=0.0, count=3)

    def new_article(number: int) -> Article:
        return Article(id=f"a{number:02d}", pmid=str(30000000 + number), source=SourceRef(f"{number}.yaml"),
                       title=" ".join(rng.sample(WORDS, 3)), keywords=tuple(rng.sample(WORDS, 2)),
                       similar=tuple(SimilarRef(pmid=str(30000000 + rng.randrange(20))) for _ in range(rng.randrange(3))))

    articles = [new_article(n) for n in range(data.draw(st.integers(3, 12)))]
    state = LinkState(builds_again=data.draw(st.booleans()))  # a session's tracks who reads whom at once
    before_entries, before_by_id = {}, {}
    for _ in range(data.draw(st.integers(2, 6))):
        for _ in range(rng.randrange(3)):  # some edits: a title, keywords, PubMed's list, an article more or less
            n = rng.randrange(len(articles))
            what = rng.randrange(5)
            if what == 0:
                articles[n] = replace(articles[n], title=" ".join(rng.sample(WORDS, 3)))
            elif what == 1:
                articles[n] = replace(articles[n], keywords=tuple(rng.sample(WORDS, 2)))
            elif what == 2:
                articles[n] = replace(articles[n], similar=(SimilarRef(pmid=str(30000000 + rng.randrange(20))),))
            elif what == 3 and len(articles) > 3:
                del articles[n]
            else:
                number = max(int(a.id[1:]) for a in articles) + 1
                articles.append(new_article(number))
        kept = link_articles(articles, config, state=state)
        fresh = link_articles(articles, config)
        assert dict(kept.similar.entries) == dict(fresh.similar.entries)
        assert list(kept.backlinks.items()) == list(fresh.backlinks.items())
        # A list kept as the same object (the plan keys it by identity, with what it shows of the
        # articles it links to) is one whose article and linked articles are as they were (the
        # same objects, or equal ones: an edit undone, a record saved unchanged).
        for article_id, entry in kept.similar.entries.items():
            if entry and entry is before_entries.get(article_id):  # (every empty list is one object)
                linked = [article_id, *(link[0] for link in entry if len(link) == 4)]
                assert all(kept.by_id[i] == before_by_id.get(i) for i in linked)
        before_entries, before_by_id = dict(kept.similar.entries), dict(kept.by_id)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_the_profile_length_tried_first_changes_nothing(data):
    """An edit tries the last build's profile length first: whatever it is, the profiles and the
    length are those of trying every length in turn."""
    import numpy as np
    import scipy.sparse as sp

    import generator.similarity as similarity

    rows, columns = data.draw(st.integers(1, 30)), data.draw(st.integers(1, 90))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32)))
    matrix = sp.random(rows, columns, density=data.draw(st.floats(0.05, 1.0)), format="csr", random_state=rng)
    matrix = similarity._unit_rows(matrix)
    floor = data.draw(st.integers(0, 4000))
    old_floor, old_work = similarity._WORK_FLOOR, similarity._WORK_PER_ARTICLE
    similarity._WORK_FLOOR, similarity._WORK_PER_ARTICLE = floor, 1
    try:
        expected, length = similarity.profiles_of(matrix.copy())
        for likely in (*similarity._PROFILE_LENGTHS, 5, False):
            found, found_length = similarity.profiles_of(matrix.copy(), likely=likely)
            assert found_length == length
            assert (found != expected).nnz == 0 and np.array_equal(found.indices, expected.indices)
    finally:
        similarity._WORK_FLOOR, similarity._WORK_PER_ARTICLE = old_floor, old_work


def test_a_plan_after_another_changed_the_memo_looks_at_every_term(example_copy, monkeypatch):
    config = load_config(example_copy, {})
    session = BuildSession(config=config, watched=False)
    build(config, session=session)
    record = example_copy / "content/autoimmunity/36109639.yaml"
    for edit, (old, new) in enumerate([("refractory systemic lupus", "refractory lupus"), ("refractory lupus", "lupus")]):
        # A term whose entry the edit does not touch (one of the record's own terms is looked at anyway).
        term_names = [name for name, (inputs, _) in render._KEY_MEMO.entries.items()
                      if name[0] == "term" and isinstance(inputs, tuple) and "36109639" not in inputs[2]]
        del render._KEY_MEMO.entries[term_names[0]]
        if edit == 0:  # as another plan in between would leave it: every term is looked at again
            render._KEY_MEMO.generation += 1
        # (else an entry gone behind the memo's back: the segment still holds the term's jobs)
        record.write_text(record.read_text().replace(old, new))
        build(config, session=session)
        assert (term_names[0] in render._KEY_MEMO.entries) == (edit == 0)
        keys, files = made_from_nothing(example_copy, monkeypatch)
        assert page_keys(example_copy, example_copy / "site") == keys
        assert read_tree(example_copy / "site") == files


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_backlinks_updated_from_a_few_changed_lists_are_those_made_from_scratch(data):
    """Backlinks brought forward from the last build's when a few similar lists change, also when
    an article gains its first backlink or loses its last: those of all the lists, in the digest's
    order (targets and sources alike)."""
    from generator.link import _backlinks, _backlinks_updated

    ids = [f"a{n}" for n in range(data.draw(st.integers(2, 9)))]
    articles = [SimpleNamespace(id=article_id) for article_id in ids]

    def some_list() -> tuple:  # links into the digest (4 fields) and one outside it (longer)
        targets = data.draw(st.lists(st.sampled_from(ids), max_size=3, unique=True))
        outside = data.draw(st.booleans())
        return tuple((target, 0.5, ("computed",), ()) for target in targets) + \
            ((("", "", "12345", 0.1, "Outside", (), ("pubmed",), ()),) if outside else ())

    old_lists = [some_list() for _ in ids]
    old = _backlinks(articles, dict(zip(ids, old_lists)))
    changed = sorted(data.draw(st.sets(st.integers(0, len(ids) - 1), min_size=1)))
    lists = [some_list() if n in changed else old_lists[n] for n in range(len(ids))]
    updated = _backlinks_updated(ids, lists, old_lists, old, changed)
    assert list(updated.items()) == list(_backlinks(articles, dict(zip(ids, lists))).items())


def test_a_session_that_saves_later_keeps_its_fragments_once_settled_or_before_its_next_build(example_copy):
    """The daemon answers its client before writing the fragments a build made (`saves_later`):
    they reach the cache folder when it settles, or at the latest when its next build starts."""
    from generator.build import settle_session
    from generator.cache_files import JournaledDict

    config = load_config(example_copy, {})
    store = example_copy / ".digest-cache/fragments.pickle"
    session = BuildSession(config=config, watched=False, saves_later=True)
    build(config, session=session)
    assert len(session.later) == 1 and not JournaledDict(store).load()
    settle_session(session)
    saved = JournaledDict(store).load()
    assert not session.later and saved and session.fragments.items() <= saved.items()

    record = example_copy / "content/autoimmunity/36109639.yaml"
    record.write_text(record.read_text().replace("refractory systemic lupus", "refractory lupus"))
    build(config, session=session)  # not settled: its fragments wait...
    left = session.later[0]
    record.write_text(record.read_text().replace("refractory lupus", "refractory SLE"))
    build(config, session=session)  # ...until the next build starts
    assert session.later and session.later[0] is not left
    saved = JournaledDict(store).load()
    assert any("refractory lupus" in text for text in saved.values())
    assert read_tree(example_copy / "site") == made_from_nothing_files(example_copy)


def made_from_nothing_files(root: Path) -> dict[str, bytes]:
    from dataclasses import replace

    out = root.parent / "clean"
    shutil.rmtree(out, ignore_errors=True)
    build(replace(load_config(root, {}), output_dir=str(out)), clean=True)
    return read_tree(out)


def _articles_alive(known: set[int]) -> list:
    import gc

    from generator.model import Article

    gc.collect()
    gc.unfreeze()  # what builds froze is not listed otherwise
    return [o for o in gc.get_objects() if type(o) is Article and id(o) not in known]


def test_a_new_digest_yaml_goes_on_with_the_articles_and_similarity_of_the_last_session(example_copy, monkeypatch):
    """serve and the daemon start a new session when digest.yaml changes. A new site title changes
    every page but no record: the new session's first build neither parses the records again nor
    computes the similarity (the daemon had saved neither to the cache folder: 2.0 s and 2.2 s at
    10,000 articles), and the process holds one digest, not two (1.0 GB at 10,000 articles when
    the memos kept the last one's beside it). The site is a clean build's."""
    import weakref

    import generator.link as link
    from generator.build import new_session

    known = set(map(id, _articles_alive(set())))  # other tests': kept alive, so no id is reused
    config = load_config(example_copy, {})
    session = new_session(None, config=config, watched=False, input_check=InputCheck())
    build(config, session=session)
    first = _articles_alive(known)
    assert len(first) >= 13
    first_ids = set(map(id, first))
    old_session = weakref.ref(session)
    settings = example_copy / "digest.yaml"
    settings.write_text(settings.read_text().replace("title: CAR-T cells beyond cancer", "title: A new title"))
    config = load_config(example_copy, {})
    session = new_session(session, config=config, watched=False, input_check=InputCheck())
    assert old_session() is None
    with monkeypatch.context() as patch:
        def not_again(*_args, **_kwargs):
            raise AssertionError("the similarity computed again")

        patch.setattr(link.LinkState, "_compute_neighbours", not_again)
        report = build(config, session=session)
    assert report.written > 13
    assert set(map(id, _articles_alive(known))) <= first_ids  # not parsed again, and no second copy
    assert b"A new title" in (example_copy / "site/index.html").read_bytes()
    assert read_tree(example_copy / "site") == read_tree(clean_build_of(example_copy))


def test_a_new_content_folder_lets_the_last_sessions_digest_go_before_its_first_build(example_copy):
    """A digest.yaml that reads another content folder starts afresh: nothing of the last session's
    digest stays in the process while the new one loads, and the site is a clean build's."""
    import weakref

    from generator.build import new_session

    known = set(map(id, _articles_alive(set())))
    config = load_config(example_copy, {})
    session = new_session(None, config=config, watched=False, input_check=InputCheck())
    build(config, session=session)
    first = [weakref.ref(o) for o in _articles_alive(known)]
    assert len(first) >= 13
    shutil.copytree(example_copy / "content", example_copy / "records")
    settings = example_copy / "digest.yaml"
    settings.write_text(settings.read_text() + "\ncontent_dir: records\n")
    config = load_config(example_copy, {})
    session = new_session(session, config=config, watched=False, input_check=InputCheck())
    assert session.load_state is None and session.link_state is None
    import gc

    gc.collect()
    assert [ref for ref in first if ref() is not None] == []
    build(config, session=session)
    assert read_tree(example_copy / "site") == read_tree(clean_build_of(example_copy))


def clean_build_of(root: Path) -> Path:
    from dataclasses import replace

    out = root.parent / "clean-of-session"
    shutil.rmtree(out, ignore_errors=True)
    build(replace(load_config(root, {}), output_dir=str(out)), clean=True)
    return out
