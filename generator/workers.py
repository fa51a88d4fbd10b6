"""Forked worker processes, shared by the stages that use more than one core (parsing, similarity,
rendering): how workers treat signals, how many cores are idle, and splitting work with them."""

from __future__ import annotations

import ctypes
import functools
import gc
import multiprocessing
import os
import pickle
import signal
import tempfile
from typing import IO, Any, Callable, Sequence, TypeVar

Share = TypeVar("Share")
Result = TypeVar("Result")


def worker_setup() -> None:
    """Workers leave Ctrl-C to the parent (which stops the pool) and die on SIGTERM, whatever
    handlers the forking process had installed (e.g. `digest serve`).

    What a worker inherits (the loaded articles, the digest) is moved out of the collector's reach
    (`gc.freeze`): its full passes would walk all of it, and write to every object's header, which
    makes the kernel copy each page the worker shares with its parent. The early writer of a cold
    build at 10,000 articles spent 1 s of CPU on such passes, and the render workers 0.5 s.
    """
    gc.freeze()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:  # Linux: die with the parent, so a killed build leaves no worker writing into the spare tree
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:
        os._exit(1)


def can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


def idle_cores(requested: int | None) -> int:
    """Return how many cores to work on: `requested`, else those other processes leave idle now.

    Forked workers only pay on idle cores; on busy ones they just add the cost of sending results
    back. Linux says how many tasks are running right now (this one included) in /proc/loadavg.
    """
    if requested:
        return requested
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        with open("/proc/loadavg", encoding="ascii") as stream:
            others = int(stream.read().split()[3].split("/")[0]) - 1
    except (OSError, ValueError, IndexError):
        others = 0
    return max(1, min(cores, cores - others))


def map_with_workers(function: Callable[[Share], Result], mine: Sequence[Share], others: Sequence[Share],
                     workers: int) -> list[Result]:
    """Return `[*map(function, mine), *map(function, others)]`, computing `others` in `workers`
    forked processes while this one computes `mine`.

    Results come back pickled, in order, so the result is exactly a single process's. Should the
    pool fail (a result that cannot be pickled, a killed worker, no room for the results' files),
    this process computes everything, which gives the same result or raises the real error.

    Each result goes through a file without a name that the workers inherit (see `_through_file`),
    not the pool's pipe: a pipe takes 64 KB at a time, and the pool's thread that reads it needs
    this process's interpreter lock for each piece while this process computes its own share. At
    10,000 records the parsing worker spent a third of its time blocked, waiting to send.
    Between two of its own shares this process takes in the workers' results that are ready, so
    that unpickling them (0.07 to 0.18 ms a parsed file) overlaps their work instead of following it.
    """
    global _result_files
    if not others or workers < 1 or not can_fork():
        return [function(share) for share in (*mine, *others)]
    files: list[IO[bytes]] = []
    pool = None
    try:
        files = [tempfile.TemporaryFile() for _ in others]  # no room for them: computed here, below
        _result_files = [file.fileno() for file in files]
        pool = multiprocessing.get_context("fork").Pool(workers, initializer=worker_setup)
        done = pool.imap_unordered(functools.partial(_through_file, function), enumerate(others))
        theirs: dict[int, Any] = {}

        def take(timeout: float | None) -> bool:
            try:
                index, size = done.next(timeout=timeout)
            except multiprocessing.TimeoutError:
                return False
            theirs[index] = _read_result(files[index], size)
            return True

        results = []
        for share in mine:
            results.append(function(share))
            while len(theirs) < len(others) and take(0):
                pass
        while len(theirs) < len(others):
            take(None)
        results.extend(theirs[index] for index in range(len(others)))
        pool.close()
        pool.join()
        return results
    except Exception:  # noqa: BLE001 - see the docstring
        return [function(share) for share in (*mine, *others)]
    finally:
        if pool is not None:
            pool.terminate()
        _result_files = []
        for file in files:
            file.close()


_result_files: list[int] = []  # the files of `map_with_workers`' results, by share (inherited)


def _through_file(function: Callable[[Share], Result], numbered: tuple[int, Share]) -> tuple[int, int]:
    """In a worker: compute one share, write its pickled result to that share's file; return the
    share's number and the result's size."""
    index, share = numbered
    data = pickle.dumps(function(share), protocol=pickle.HIGHEST_PROTOCOL)
    handle, written = _result_files[index], 0
    with memoryview(data) as view:
        while written < len(data):
            written += os.pwrite(handle, view[written:], written)
    return index, len(data)


def _read_result(file: IO[bytes], size: int) -> Any:
    file.seek(0)
    data = file.read(size)
    if len(data) != size:
        raise OSError("a worker's result file ended early")
    return pickle.loads(data)
