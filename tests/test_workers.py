"""Forked workers (generator.workers): what they compute comes back whole and in order, as a
single process would compute it, and a load parsed on two cores is the load parsed on one. The
process reading content files ahead (generator.readahead) never gets stuck and is always reaped."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import pytest

import generator.load as load_module
from generator import readahead
from generator.load import load_articles
from generator.workers import ForkedWorkers, can_fork, map_with_workers
from tests.conftest import REPO

pytestmark = pytest.mark.skipif(not can_fork(), reason="workers are forked processes")
lists_children = pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="children are listed by Linux's /proc")


def _big(share: int) -> tuple[int, int, list[str]]:
    # Far more than a pipe holds at once (64 KB): it must arrive whole.
    return share, os.getpid(), [f"{share}-{n}-" + "x" * 40 for n in range(20_000)]


def _unpicklable_in_workers(share: int) -> object:
    parent = _unpicklable_in_workers.parent  # type: ignore[attr-defined]
    return share * 2 if os.getpid() == parent else (lambda: share)


def test_results_come_back_whole_and_in_order_from_other_processes(tmp_path: Path, monkeypatch) -> None:
    temporary = tmp_path / "temporary"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))  # where the results' files are made
    results = map_with_workers(_big, [0, 1], list(range(2, 9)), 2)  # two shares here, seven in workers
    assert [r[0] for r in results] == list(range(9))
    assert all(r[2] == _big(n)[2] for n, r in enumerate(results))
    assert {r[1] for r in results[1:]} - {os.getpid()}, "the other shares were computed in workers"
    assert not list(temporary.iterdir()), "the results' files leave nothing behind"


def test_a_result_a_worker_cannot_send_is_computed_here() -> None:
    _unpicklable_in_workers.parent = os.getpid()  # type: ignore[attr-defined]
    assert map_with_workers(_unpicklable_in_workers, [1], [2, 3, 4], 2) == [2, 4, 6, 8]


def _dies_in_workers(share: int) -> int:
    if os.getpid() != _dies_in_workers.parent and share == 3:  # type: ignore[attr-defined]
        os.kill(os.getpid(), signal.SIGKILL)
    return share * 2


def _fails_on_three(share: int) -> int:
    if share == 3:
        raise ValueError(f"share {share} is bad")
    time.sleep(0.01)
    return share


@lists_children
def test_a_killed_worker_leaves_the_work_to_this_process() -> None:
    _dies_in_workers.parent = os.getpid()  # type: ignore[attr-defined]
    before = _children()
    assert map_with_workers(_dies_in_workers, [1], [2, 3, 4, 5, 6], 2) == [2, 4, 6, 8, 10, 12]
    assert _children() == before, "every worker is reaped"


@lists_children
def test_an_error_in_a_worker_is_raised_here_and_no_worker_is_left_waiting() -> None:
    before = _children()
    with pytest.raises(ValueError, match="share 3 is bad"):
        with ForkedWorkers(_fails_on_three, list(range(40)), 2) as pool:
            assert len(_children() - before) == 2
            for index, result in enumerate(pool.in_order()):
                assert result == index
    assert _children() == before, "the workers stop though shares were outstanding"
    with ForkedWorkers(_fails_on_three, [0, 1, 2], 3) as pool:
        assert pool.take_all() == [0, 1, 2]
    assert _children() == before


def test_a_load_parsed_on_two_cores_is_the_load_parsed_on_one(tmp_path: Path, monkeypatch) -> None:
    content = tmp_path / "content"
    shutil.copytree(REPO / "content", content)
    for n in range(80):  # enough files for several shares (a worker reads them 25 or more at a time)
        (content / f"extra-{n:02}.ris").write_text(
            f"TY  - JOUR\nTI  - Record number {n} of a larger folder\nAU  - Author, A{n}\nPY  - 2024\n"
            f"DO  - 10.5555/extra.{n}\nER  - \n")
    for n in (10, 40, 70):  # warnings, in the order of their files
        (content / f"extra-{n}-broken.ris").write_text(f"TY  - JOUR\nTI  - Record {n} has no end\n")
    monkeypatch.setattr(load_module, "PARALLEL_FILES", 2)
    one = load_articles(content, tmp_path, jobs=1)
    two = load_articles(content, tmp_path, jobs=2)
    assert len(one.articles) >= 90 and len(one.warnings) >= 3
    assert two.articles == one.articles
    assert [(w.path, w.line, w.message) for w in two.warnings] == [(w.path, w.line, w.message) for w in one.warnings]


def test_article_keys_made_on_two_cores_are_those_made_on_one(tmp_path: Path, monkeypatch) -> None:
    import generator.render as render_module

    content = tmp_path / "content"
    shutil.copytree(REPO / "content", content)
    for n in range(60):
        (content / f"extra-{n:02}.ris").write_text(
            f"TY  - JOUR\nTI  - Record number {n} of a larger folder\nAU  - Author, A{n % 7}\nPY  - 20{10 + n % 15}\n"
            f"KW  - keyword {n % 5}\nDO  - 10.5555/extra.{n}\nER  - \n")
    loaded = load_articles(content, tmp_path, jobs=1)
    forked: list[int] = []
    real = render_module.map_with_workers

    def counted(*args):
        forked.append(1)
        return real(*args)

    monkeypatch.setattr(render_module, "map_with_workers", counted)
    monkeypatch.setattr(render_module, "idle_cores", lambda requested: 2)
    monkeypatch.setattr(render_module, "_LAST_KEYS", ((), {}))
    monkeypatch.setattr(render_module, "PARALLEL_KEYS", 10**9)
    store_one: dict = {}
    one = render_module.article_keys(loaded.articles, loaded.fingerprints, store_one)
    monkeypatch.setattr(render_module, "_LAST_KEYS", ((), {}))
    monkeypatch.setattr(render_module, "PARALLEL_KEYS", 2)
    store_two: dict = {}
    two = render_module.article_keys(loaded.articles, loaded.fingerprints, store_two)
    assert forked, "the keys were shared out"
    assert len(one) >= 70
    assert list(two) == list(one), "in the articles' order"
    assert two == one and store_two == store_one


def _children() -> set[int]:
    """This process's child processes (Linux), zombies included."""
    found: set[int] = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        found.update(int(pid) for pid in (task / "children").read_text().split())
    return found


@lists_children
@pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="reading ahead needs posix_fadvise")
def test_reading_ahead_skips_what_it_cannot_open_and_leaves_no_process(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(readahead, "READ_AHEAD_FILES", 3)
    (tmp_path / "record.ris").write_text("TY  - JOUR\nER  - \n")
    os.mkfifo(tmp_path / "pipe.ris")  # opened for reading without a writer, it would wait forever
    (tmp_path / "folder.ris").mkdir()
    paths = [str(tmp_path / name) for name in ("gone.ris", "pipe.ris", "folder.ris", "record.ris")]
    before = _children()
    with readahead.reading_ahead(paths):
        started = _children() - before
        assert len(started) == 1, "one process reads ahead"
        child = started.pop()
        for _ in range(200):  # it gets through the paths and ends by itself
            if Path(f"/proc/{child}/stat").read_text().split(") ")[1][0] == "Z":
                break
            time.sleep(0.01)
        else:
            pytest.fail("the process reading ahead is stuck on a path it cannot read")
    assert child not in _children(), "leaving the block reaps it"
    with readahead.reading_ahead(paths[:2]):
        assert _children() == before, "too few files: nothing started"


def test_files_are_read_ahead_in_the_order_the_readers_come_to_them() -> None:
    def job(name: str, regular: bool = True) -> tuple:
        return (name, name, (1, 2, 3, 4, 5) if regular else None, 0, None)

    mine = [job("a0"), job("a1", regular=False), job("a2")]
    rest = [job(f"b{n}") for n in range(8)]
    assert load_module._reading_order(mine, rest, 2) == ["a0", "b0", "b1", "b2", "b3", "a2", "b4", "b5", "b6", "b7"]
    assert load_module._reading_order(mine, rest[:3], 1) == ["a0", "b0", "b1", "a2", "b2"]
