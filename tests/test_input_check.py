"""The build daemon's input check: after its first check it stats only the files the kernel's
queue names, and its fingerprint (and the stats it hands the load stage) are the full check's."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import generator.input_check as input_check
from generator.config import load_config
from generator.input_check import InputCheck, InputWatch, input_fingerprint

needs_inotify = pytest.mark.skipif(not sys.platform.startswith("linux") or InputWatch.open() is None,
                                   reason="inotify is Linux's")


def digest_folder(root: Path) -> Path:
    (root / "content" / "topic").mkdir(parents=True)
    (root / "digest.yaml").write_text("title: Checked\n")
    for name in ("a.yaml", "b.nbib", "topic/c.ris"):
        (root / "content" / name).write_text(f"{name}\n")
    return root


def agrees(check: InputCheck, config) -> bool:
    """Whether the check gives the full check's fingerprint and stats."""
    mine, full = {}, {}
    found = check.fingerprint(config, mine)
    return found == input_fingerprint(config, full) and \
        {path: (s.st_size, s.st_mtime_ns) for path, s in mine.items()} == \
        {path: (s.st_size, s.st_mtime_ns) for path, s in full.items()}


@needs_inotify
def test_after_the_first_check_an_edit_is_seen_without_walking_the_folders(tmp_path):
    root = digest_folder(tmp_path)
    config = load_config(root, {})
    content = root / "content"
    check = InputCheck()
    assert agrees(check, config) and check.full_checks == 1
    listing = check.listing
    steps = [
        ("nothing", lambda: None, False),
        ("an edit", lambda: (content / "a.yaml").write_text("a.yaml edited\n"), False),
        ("an edit in a subfolder", lambda: (content / "topic/c.ris").write_text("c\n"), False),
        ("the same size, another time", lambda: os.utime(content / "b.nbib", ns=(10**18, 10**18)), False),
        ("an editor's swap file", lambda: (content / ".a.yaml.swp").write_text("swap"), False),
        ("a file replaced by a rename (editors save so)", lambda: (
            (content / "a.yaml.tmp").write_text("saved\n"), (content / "a.yaml.tmp").replace(content / "a.yaml")), False),
        ("a file and its temporary file renamed away", lambda: (
            (content / "a.yaml.tmp").write_text("saved\n"), (content / "a.yaml.tmp").replace(content / "a.yaml.new")),
         True),
        ("a new file", lambda: (content / "d.yaml").write_text("d\n"), True),
        ("a file removed", lambda: (content / "b.nbib").unlink(), True),
        ("a new folder", lambda: (content / "more").mkdir(), True),
        ("a file in it", lambda: (content / "more/e.yaml").write_text("e\n"), True),
        ("an edit there", lambda: (content / "more/e.yaml").write_text("e, edited\n"), False),
        ("the folder renamed", lambda: (content / "more").rename(content / "other"), True),
        ("digest.yaml", lambda: (root / "digest.yaml").write_text("title: Renamed\n"), False),
    ]
    for what, step, walks in steps:
        step()
        before = check.full_checks
        assert agrees(check, config), what
        assert (check.full_checks > before) == walks, what
        assert (check.listing is not listing) == walks, what
        listing = check.listing


@needs_inotify
def test_a_file_linked_into_content_is_asked_about_at_every_check(tmp_path):
    """A linked file's target is outside the watched folders: its changes queue nothing."""
    root = digest_folder(tmp_path)
    (root / "elsewhere.yaml").write_text("first\n")
    (root / "content/linked.yaml").symlink_to(root / "elsewhere.yaml")
    config = load_config(root, {})
    check = InputCheck()
    assert agrees(check, config)
    (root / "elsewhere.yaml").write_text("second, longer\n")
    assert agrees(check, config) and check.full_checks == 1


def test_without_inotify_every_check_walks_the_folders(tmp_path, monkeypatch):
    monkeypatch.setattr(InputWatch, "open", classmethod(lambda cls: None))
    root = digest_folder(tmp_path)
    config = load_config(root, {})
    check = InputCheck()
    for text in ("one\n", "two, longer\n"):
        (root / "content/a.yaml").write_text(text)
        assert agrees(check, config)
    assert check.full_checks == 2


@needs_inotify
def test_a_full_queue_or_a_refused_watch_makes_the_check_a_full_one(tmp_path, monkeypatch):
    root = digest_folder(tmp_path)
    config = load_config(root, {})
    check = InputCheck()
    assert agrees(check, config)
    monkeypatch.setattr(InputWatch, "changed", lambda watch: None)  # what an overflowing queue says
    (root / "content/a.yaml").write_text("changed\n")
    assert agrees(check, config) and check.full_checks == 2
    monkeypatch.undo()
    refused = InputCheck()
    monkeypatch.setattr(input_check, "_MASK", 0)  # inotify_add_watch refuses an empty mask (EINVAL)
    assert agrees(refused, config) and refused.watch is None  # no queue: every check is full
    (root / "content/a.yaml").write_text("changed again\n")
    assert agrees(refused, config) and refused.full_checks == 2


OPERATIONS = st.lists(st.tuples(
    st.sampled_from(["write", "append", "touch", "create", "remove", "mkdir", "rmdir", "rename", "swap", "nothing"]),
    st.sampled_from(["a.yaml", "b.nbib", "topic/c.ris", "x.yaml", "topic/y.bib", "new"])), max_size=12)


@needs_inotify
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(OPERATIONS)
def test_any_sequence_of_changes_gives_the_full_checks_fingerprint(operations):
    with tempfile.TemporaryDirectory() as folder:
        root = digest_folder(Path(folder))
        config = load_config(root, {})
        content = root / "content"
        check = InputCheck()
        assert agrees(check, config)
        for number, (operation, name) in enumerate(operations):
            path = content / name
            try:
                if operation == "write":
                    path.write_text(f"{number}\n")
                elif operation == "append":
                    with open(path, "a") as stream:
                        stream.write("more\n")
                elif operation == "touch":
                    os.utime(path, ns=(number * 10**9, number * 10**9))
                elif operation == "create":
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.with_name(path.name + ".new").write_text("created\n")
                elif operation == "remove":
                    path.unlink()
                elif operation == "mkdir":
                    (content / name.replace(".", "-")).mkdir()
                elif operation == "rmdir":
                    shutil.rmtree(content / "topic")
                elif operation == "rename":
                    path.rename(path.with_name("renamed-" + path.name))
                elif operation == "swap":
                    path.with_name("." + path.name + ".swp").write_text("swap")
            except OSError:
                pass  # not there (removed by an earlier step), or there already
            assert agrees(check, config), (number, operation, name)


@needs_inotify
@pytest.mark.parametrize("watched", [False, True], ids=["daemon", "serve"])
def test_a_session_with_the_check_shows_an_edit_to_a_file_it_trusted(example_copy, watched):
    """Files last changed long before the first build are trusted by their size and times; the
    check must hand the load stage the edited file's new stat, or the old page stays."""
    from generator.build import BuildSession, build

    old = 10**18  # (2001)
    for path in (example_copy / "content").rglob("*"):
        if path.is_file():
            os.utime(path, ns=(old, old))
    config = load_config(example_copy, {})
    session = BuildSession(config=config, watched=watched, input_check=InputCheck())
    build(config, session=session)
    record = example_copy / "content/autoimmunity/36109639.yaml"
    record.write_text(record.read_text().replace("refractory systemic lupus", "refractory lupus"))
    build(config, session=session)
    page = (example_copy / "site/articles/36109639/index.html").read_text()
    assert "refractory lupus" in page and "refractory systemic lupus" not in page
    assert session.input_check.full_checks == 1


@needs_inotify
def test_a_link_to_nothing_is_not_an_input_until_its_target_comes(tmp_path):
    root = digest_folder(tmp_path)
    (root / "content/later.yaml").symlink_to(root / "records/later.yaml")
    config = load_config(root, {})
    check = InputCheck()
    assert agrees(check, config)
    (root / "content/a.yaml").write_text("edited\n")
    assert agrees(check, config) and check.full_checks == 1  # the broken link does not force a walk
    (root / "records").mkdir()
    (root / "records/later.yaml").write_text("here now\n")
    assert agrees(check, config) and check.full_checks == 2


def stated(config) -> input_check.CheckedInputs:
    check = InputCheck(watch=False)
    fingerprint = check.fingerprint(config, {})
    return input_check.CheckedInputs(fingerprint, list(check.entries), time.time_ns())


def contents(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted((root / "content").rglob("*")) if p.is_file()}


DIGEST_STEPS = st.lists(st.tuples(
    st.sampled_from(["same bytes", "same size", "other size", "create", "remove", "restore"]),
    st.sampled_from(["a.yaml", "b.nbib", "topic/c.ris", "topic/new.ris"])), max_size=8)


@settings(max_examples=40, deadline=None)
@given(DIGEST_STEPS)
def test_the_digests_find_the_same_bytes_whatever_the_times_did(steps):
    """`InputDigests.moved_alone` says "only times moved" exactly when the files hold the bytes
    they held when the digests were made, however they were saved, changed and saved back since
    (and each save moves a file's time, as on any file system)."""
    with tempfile.TemporaryDirectory() as folder:
        root = digest_folder(Path(folder))
        config = load_config(root, {})
        then = time.time_ns() - 60 * 10**9
        for path in (root / "content").rglob("*"):
            os.utime(path, ns=(then, then))  # older than RACY_NS: their times vouch for their bytes
        before = contents(root)
        digests = input_check.InputDigests.made(config, stated(config), input_check.file_digest)
        content = str(root / "content")
        assert all(d is not None for e, d in zip(digests.entries[1:], digests.digests) if e[0].startswith(content))
        for number, (step, name) in enumerate(steps):
            path = root / "content" / name
            if step == "create" or path.exists():
                old = path.read_bytes() if path.exists() else b""
                if step == "remove":
                    path.unlink()
                    continue
                path.write_bytes({"same bytes": old, "same size": bytes(reversed(old)) if len(set(old)) > 1 else
                                  old.upper() if old.upper() != old else b"!" * len(old),
                                  "other size": old + b"more\n", "create": b"created\n",
                                  "restore": before.get(str(path), old)}[step])
                os.utime(path, ns=(then + (number + 1) * 10**6,) * 2)  # each save a new time
        same = contents(root) == before
        assert (digests.moved_alone(config, stated(config)) is not None) == same, (steps, same)
