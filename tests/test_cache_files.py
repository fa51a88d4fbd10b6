"""The cache folder's journaled dict (fragments): what a build appends, the next process reads; a
journal cut short or damaged loses only what follows the damage, never gives a wrong entry. The
code stamps that tell a cache made by other code. Files of parts (the load and link states)."""

from __future__ import annotations

import os
import pickle
import time
from pathlib import Path

import pytest

from hypothesis import given, settings
from hypothesis import strategies as st

from generator.cache_files import JournaledDict, dump_with_parts, files_stamp, load_with_parts


def test_entries_added_by_each_build_are_appended_and_read_back(tmp_path: Path):
    path = tmp_path / "fragments.pickle"
    first = JournaledDict(path)
    assert first.load() == {}
    base = {f"key{i}": f"<li>{i}</li>" for i in range(2000)}
    first.save(base, lambda: dict(base))
    assert path.is_file() and not first.journal.exists()
    second = JournaledDict(path)
    current = second.load()
    assert current == base
    current["new"] = "<li>new</li>"
    size = path.stat().st_size
    second.save(current, lambda: {"never": "called"})
    assert path.stat().st_size == size and first.journal.stat().st_size < 200  # appended, base untouched
    assert JournaledDict(path).load() == current


def test_a_grown_journal_is_folded_into_a_base_of_what_is_still_used(tmp_path: Path):
    path = tmp_path / "fragments.pickle"
    store = JournaledDict(path)
    base = {f"key{i}": "x" for i in range(2000)}
    store.save(base, lambda: dict(base))
    current = store.load()
    for round_ in range(6):  # 6 x 100 entries: more than max(2000 // 4, 500)
        current.update({f"r{round_}-{i}": "y" for i in range(100)})
        store.save(current, lambda: {"only": "this"})
    assert not store.journal.exists()
    assert JournaledDict(path).load() == {"only": "this"}


def test_a_journal_cut_short_keeps_the_frames_before_and_the_next_save_starts_afresh(tmp_path: Path):
    path = tmp_path / "fragments.pickle"
    store = JournaledDict(path)
    store.save({"a": "1"}, lambda: {"a": "1"})
    current = store.load()
    current["b"] = "2"
    store.save(current, lambda: {})
    current["c"] = "3"
    store.save(current, lambda: {})
    blob = store.journal.read_bytes()
    store.journal.write_bytes(blob[:-3])  # a build killed while appending "c"
    reader = JournaledDict(path)
    assert reader.load() == {"a": "1", "b": "2"}
    later = {"a": "1", "b": "2", "d": "4"}
    reader.save(later, lambda: dict(later))
    assert not reader.journal.exists()
    assert JournaledDict(path).load() == later


@settings(max_examples=150, deadline=None)
@given(batches=st.lists(st.dictionaries(st.text(max_size=3), st.text(max_size=5), max_size=4), min_size=1, max_size=6),
       damage=st.one_of(st.none(), st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=255))))
def test_whatever_the_damage_every_entry_read_back_is_one_that_was_saved(tmp_path_factory, batches, damage):
    path = tmp_path_factory.mktemp("cache") / "fragments.pickle"
    saved: dict = {"base": "entry"}
    store = JournaledDict(path)
    store.save(saved, lambda: dict(saved))
    for batch in batches:
        current = JournaledDict(path).load()
        current.update(batch)
        saved.update({k: v for k, v in batch.items() if k not in saved})  # entries never change once made
        JournaledDict(path).load()
        writer = JournaledDict(path)
        writer.load()
        writer.save({**current, **{k: saved[k] for k in batch}}, lambda: dict(saved))
    if damage is not None and store.journal.exists():
        blob = bytearray(store.journal.read_bytes())
        position, value = damage
        blob[position % len(blob)] = value
        store.journal.write_bytes(bytes(blob))
    found = JournaledDict(path).load()
    assert found.items() <= saved.items()
    assert found["base"] == "entry"
    if damage is None:
        assert found == saved


@given(st.dictionaries(st.text(), st.text(), max_size=30), st.text(), st.text())
def test_a_manifest_with_its_tree_marker_is_what_marshal_writes(files, marker, tree_id):
    """The manifest is written from the bytes the tree id was made from, plus one entry."""
    import marshal

    from generator.write import _with_entry

    files.pop(marker, None)
    assert _with_entry(marshal.dumps(files, 0), marker, tree_id) == marshal.dumps({**files, marker: tree_id}, 0)


def test_a_code_stamp_goes_by_the_bytes_not_the_times(tmp_path: Path):
    """The same code installed again (new times) keeps its stamp; other bytes, even of the same size
    with the old times put back, change it; a missing file has a stamp of its own."""
    code = tmp_path / "render.py"
    code.write_text("A = 1\n")
    then = time.time_ns() - 60 * 10**9
    os.utime(code, ns=(then, then))  # old enough for its times to vouch for its bytes
    first = files_stamp([code, tmp_path / "missing.py"])
    assert first[1] == ("missing.py", "")
    os.utime(code, ns=(then + 10**9, then + 10**9))
    assert files_stamp([code, tmp_path / "missing.py"]) == first
    code.write_text("A = 2\n")
    os.utime(code, ns=(then + 10**9, then + 10**9))  # (its change time moved: the kernel sets it)
    assert files_stamp([code])[0] != first[0]
    assert files_stamp([code])[0][0] == "render.py"


@settings(max_examples=60, deadline=None)
@given(parts=st.lists(st.binary(max_size=300), max_size=6), extra=st.dictionaries(st.text(max_size=5), st.integers()),
       cut=st.integers(min_value=0, max_value=10_000))
def test_a_file_of_parts_gives_back_its_parts_as_read_only_views_and_a_cut_file_is_refused(
        tmp_path_factory, parts, extra, cut):
    """The load and link states keep their pickled shards and sections as parts after one pickle:
    read back, each is a view of the bytes it was (never to be written through), and a file cut
    short, or not of parts at all, is refused as a whole (the state then reads everything again)."""
    path = tmp_path_factory.mktemp("parts") / "state.pickle"
    with open(path, "wb") as stream:
        dump_with_parts((extra, [pickle.PickleBuffer(part) for part in parts], "end"), stream)
    read_extra, views, end = load_with_parts(path)
    assert (read_extra, [bytes(view) for view in views], end) == (extra, parts, "end")
    assert all(isinstance(view, memoryview) and view.readonly for view in views)
    data = path.read_bytes()
    path.write_bytes(data[:cut % len(data)])
    with pytest.raises(Exception):
        load_with_parts(path)
    path.write_bytes(pickle.dumps((extra, parts, "end")))  # a plain pickle, as an older version wrote
    with pytest.raises(ValueError):
        load_with_parts(path)
