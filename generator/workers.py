"""Forked worker processes, shared by the stages that use more than one core (parsing, similarity,
rendering): how workers treat signals, how many cores are idle, and splitting work with them."""

from __future__ import annotations

import ctypes
import gc
import multiprocessing
import threading
import os
import pickle
import select
import signal
import struct
import tempfile
from typing import IO, Any, Callable, Iterator, Sequence, TypeVar

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


def can_fork_alone() -> bool:
    """Whether this process can fork a child that goes on running its code: it has no other thread
    (serve's), whose locks would stay held in the child."""
    return can_fork() and threading.active_count() == 1


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
    forked processes (see `ForkedWorkers`) while this one computes `mine`.

    Results come back pickled, in order, so the result is exactly a single process's. Should the
    workers fail (a result that cannot be pickled, a killed worker, no room for the results' files),
    this process computes everything, which gives the same result or raises the real error.
    Between two of its own shares this process takes in the workers' results that are ready, so
    that unpickling them (0.07 to 0.18 ms a parsed file) overlaps their work instead of following it.
    """
    if not others or workers < 1 or not can_fork():
        return [function(share) for share in (*mine, *others)]
    try:
        with ForkedWorkers(function, others, workers) as pool:
            results = []
            for share in mine:
                results.append(function(share))
                pool.take(0)  # every result that is ready (take goes on while any is)
            theirs = pool.take_all()
        return results + theirs
    except Exception:  # noqa: BLE001 - see the docstring
        return [function(share) for share in (*mine, *others)]


class WorkerFailed(Exception):
    """A worker died, or what it computed or raised could not be sent back."""


class ForkedWorkers:
    """Forked processes computing `function(share)` for each of `shares`, each worker taking the
    next share as it finishes the last: the work of the parsing, similarity and rendering stages'
    other cores.

    They inherit the shares and whatever `function` reads (nothing is pickled on the way out); the
    shares' numbers wait in one pipe that every worker reads. Each result comes back through a file
    without a name (a pipe takes 64 KB at a time: a worker would wait until this process reads,
    which it does only between its own shares), and a pipe per worker says which share is done.
    No threads: multiprocessing's Pool has three, and its `terminate` can wait for good when a
    worker failed with shares outstanding (CPython issue 96995; it hung a test here once). Use as a
    context manager: leaving it stops and reaps every worker.
    """

    def __init__(self, function: Callable[[Share], Result], shares: Sequence[Share], workers: int):
        self.function, self.shares, self.workers = function, shares, max(1, min(workers, len(shares)))
        self.files: list[IO[bytes]] = []
        self.results: dict[int, Any] = {}  # taken in, not yet given out
        self.taken = 0
        self.queued = 0  # numbers written to the shares' pipe, then as many ends as workers
        self.queue: int | None = None  # the shares' pipe (this process's end)
        self.working: set[int] = set()  # the workers' pipes of results, each until it says it ended
        self.pids: list[int] = []

    def __enter__(self) -> ForkedWorkers:
        try:
            self.files = [tempfile.TemporaryFile() for _ in self.shares]
            queue_out, self.queue = os.pipe()
            for _ in range(self.workers):
                results_out, results_in = os.pipe()
                self.working.add(results_out)
                try:
                    pid = os.fork()
                except OSError:
                    os.close(results_in)
                    raise
                if pid == 0:  # pragma: no cover - the worker, which never returns
                    for handle in (*self.working, self.queue):
                        os.close(handle)  # this process's ends: the worker's own pipes stay open
                    _serve(self.function, self.shares, self.files, queue_out, results_in)
                os.close(results_in)
                self.pids.append(pid)
            os.close(queue_out)
            os.set_blocking(self.queue, False)
            self._queue_more()
        except BaseException:
            self._stop(kill=True)
            raise
        return self

    def __exit__(self, kind: Any, error: Any, trace: Any) -> None:
        self._stop(kill=kind is not None or self.taken < len(self.shares))

    def take(self, timeout: float | None) -> int:
        """Take in the results that are ready within `timeout` seconds (None: wait for one);
        return how many. Raises the exception a share raised in its worker, or WorkerFailed."""
        taken = 0
        while self.working and self.taken < len(self.shares):
            ready, _, _ = select.select(list(self.working), [], [], timeout)
            if not ready:
                break
            for pipe in ready:
                taken += self._take_from(pipe)
            self._queue_more()
            timeout = 0
        return taken

    def take_all(self) -> list[Result]:
        """Wait for every share's result; return them in the shares' order."""
        return list(self.in_order())

    def in_order(self) -> Iterator[Result]:
        """Yield the results in the shares' order, each as soon as it and those before it are in."""
        for index in range(len(self.shares)):
            while index not in self.results:
                if not self.working:
                    raise WorkerFailed("the workers ended before every share was done")
                self.take(None)
            yield self.results.pop(index)

    def _take_from(self, pipe: int) -> int:
        message = _read_exactly(pipe, _MESSAGE.size)
        if len(message) != _MESSAGE.size:
            raise WorkerFailed("a worker ended before its shares were done")
        index, size = _MESSAGE.unpack(message)
        if index < 0:  # it read an end: it has exited
            self.working.discard(pipe)
            os.close(pipe)
            return 0
        if size == _UNSENDABLE:
            raise WorkerFailed("a worker's result or error could not be pickled")
        result = _read_result(self.files[index], abs(size))
        if size < 0:
            raise result
        self.results[index] = result
        self.taken += 1
        return 1

    def _queue_more(self) -> None:
        """Write the shares' numbers, then the workers' ends, as far as the pipe has room."""
        while self.queue is not None and self.queued < len(self.shares) + self.workers:
            try:
                os.write(self.queue, _TASK.pack(self.queued if self.queued < len(self.shares) else -1))
            except BlockingIOError:
                return
            self.queued += 1

    def _stop(self, kill: bool) -> None:
        if self.queue is not None:
            os.close(self.queue)  # a worker waiting for a share reads the end of the pipe: it exits
            self.queue = None
        for pipe in self.working:
            os.close(pipe)
        self.working = set()
        for pid in self.pids:
            if kill:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            try:
                os.waitpid(pid, 0)
            except OSError:
                pass
        self.pids = []
        for file in self.files:
            file.close()
        self.files = []


_TASK = struct.Struct("<q")  # a share's number; -1: end (8 bytes: written and read whole by any worker)
_MESSAGE = struct.Struct("<qq")  # a share's number, its pickled result's size (negative: an exception's)
_UNSENDABLE = -(2 ** 62)


def _serve(function: Callable[[Any], Any], shares: Sequence[Any], files: list[IO[bytes]], queue: int,
           results: int) -> None:  # pragma: no cover - runs in a worker
    """A worker's life: take the next share's number from `queue`, compute it, write its result
    (or the exception it raised) to the share's file and say so on `results`; at the end, say so
    and exit at once (nothing of the parent's to clean up)."""
    code = 1
    try:
        worker_setup()
        while True:
            task = _read_exactly(queue, _TASK.size)
            if len(task) < _TASK.size:
                break  # the build stopped
            (index,) = _TASK.unpack(task)
            if index < 0:
                os.write(results, _MESSAGE.pack(-1, 0))
                code = 0
                break
            try:
                data = pickle.dumps(function(shares[index]), protocol=pickle.HIGHEST_PROTOCOL)
                sign = 1
            except Exception as exc:  # noqa: BLE001 - sent to the build, which raises it
                try:
                    data, sign = pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL), -1
                except Exception:  # noqa: BLE001
                    data, sign = b"", 0
            handle, written = files[index].fileno(), 0
            with memoryview(data) as view:
                while written < len(data):
                    written += os.pwrite(handle, view[written:], written)
            os.write(results, _MESSAGE.pack(index, sign * len(data) if sign else _UNSENDABLE))
    finally:
        os._exit(code)


def _read_exactly(handle: int, size: int) -> bytes:
    data = b""
    while len(data) < size:
        part = os.read(handle, size - len(data))
        if not part:
            break
        data += part
    return data


def _read_result(file: IO[bytes], size: int) -> Any:
    file.seek(0)
    data = file.read(size)
    if len(data) != size:
        raise WorkerFailed("a worker's result file ended early")
    return pickle.loads(data)
