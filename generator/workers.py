"""Forked worker processes, shared by the stages that use more than one core (parsing, similarity,
rendering): how workers treat signals, how many cores are idle, and splitting work with them."""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
from typing import Callable, Sequence, TypeVar

Share = TypeVar("Share")
Result = TypeVar("Result")


def worker_setup() -> None:
    """Workers leave Ctrl-C to the parent (which stops the pool) and die on SIGTERM, whatever
    handlers the forking process had installed (e.g. `digest serve`)."""
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


def map_with_workers(function: Callable[[Share], Result], mine: Share, others: Sequence[Share],
                     workers: int) -> list[Result]:
    """Return `[function(mine), *map(function, others)]`, computing `others` in `workers` forked
    processes while this one computes `mine`.

    Results come back pickled, in order, so the result is exactly a single process's. Should the
    pool fail (a result that cannot be pickled, a killed worker), this process computes everything,
    which gives the same result or raises the real error.
    """
    if not others or workers < 1 or not can_fork():
        return [function(share) for share in (mine, *others)]
    pool = multiprocessing.get_context("fork").Pool(workers, initializer=worker_setup)
    try:
        pending = pool.map_async(function, others)
        results = [function(mine)]
        results.extend(pending.get())
        pool.close()
        pool.join()
        return results
    except Exception:  # noqa: BLE001 - see the docstring
        return [function(share) for share in (mine, *others)]
    finally:
        pool.terminate()
