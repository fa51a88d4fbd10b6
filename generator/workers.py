"""Forked worker processes, shared by the stages that use more than one core (parsing, similarity,
rendering): how workers treat signals, how many cores are idle, and splitting work with them."""

from __future__ import annotations

import ctypes
import gc
import multiprocessing
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
                while pool.take(0):
                    pass
            theirs = pool.take_all()
        return results + theirs
    except Exception:  # noqa: BLE001 - see the docstring
        return [function(share) for share in (*mine, *others)]


class WorkerFailed(Exception):
    """A worker died, or what it computed or raised could not be sent back."""


class ForkedWorkers:
    """Forked processes computing `function(share)` for the shares this process hands each of them,
    one at a time as it finishes the last, in order: the work of the parsing, similarity and
    rendering stages' other cores.

    They inherit the shares and whatever `function` reads (nothing is pickled on the way out), and
    each result comes back through a file without a name (a pipe takes 64 KB at a time: a worker
    would wait for this process to read, which it does only between its own shares); a pipe per
    worker says which share is done. No threads: multiprocessing's Pool has three, and its
    `terminate` can wait for good when a worker failed with shares outstanding (CPython issue 96995,
    seen here once in a test). Use as a context manager: leaving it stops and reaps every worker.
    """

    def __init__(self, function: Callable[[Share], Result], shares: Sequence[Share], workers: int):
        self.function, self.shares, self.workers = function, shares, max(1, workers)
        self.files: list[IO[bytes]] = []
        self.results: dict[int, Any] = {}  # taken in, not yet given out
        self.taken = 0
        self.handed = 0  # shares handed out so far (they go in order)
        self.busy: dict[int, tuple[int, int]] = {}  # result pipe -> (worker's pid, its task pipe)
        self.pids: list[int] = []

    def __enter__(self) -> ForkedWorkers:
        try:
            self.files = [tempfile.TemporaryFile() for _ in self.shares]
            pipes: list[int] = []
            for _ in range(min(self.workers, len(self.shares))):
                tasks_out, tasks_in = os.pipe()
                results_out, results_in = os.pipe()
                pid = os.fork()
                if pid == 0:  # pragma: no cover - the worker, which never returns
                    for handle in (*pipes, tasks_in, results_out):
                        os.close(handle)
                    _serve(self.function, self.shares, self.files, tasks_out, results_in)
                os.close(tasks_out)
                os.close(results_in)
                pipes += [tasks_in, results_out]
                self.pids.append(pid)
                self.busy[results_out] = (pid, tasks_in)
                self._hand_out(results_out)
        except BaseException:
            self._stop(kill=True)
            raise
        return self

    def __exit__(self, kind: Any, error: Any, trace: Any) -> None:
        self._stop(kill=kind is not None or self.taken < len(self.shares))

    def take(self, timeout: float | None) -> int:
        """Take in the results that are ready within `timeout` seconds (None: at least one);
        return how many. Raises the exception a share raised in its worker, or WorkerFailed."""
        if not self.busy:
            return 0
        ready, _, _ = select.select(list(self.busy), [], [], timeout)
        for pipe in ready:
            message = os.read(pipe, _MESSAGE.size)
            if len(message) != _MESSAGE.size:
                raise WorkerFailed("a worker ended before its share was done")
            index, size = _MESSAGE.unpack(message)
            if size == _UNSENDABLE:
                raise WorkerFailed("a worker's result or error could not be pickled")
            result = _read_result(self.files[index], abs(size))
            if size < 0:
                raise result
            self.results[index] = result
            self.taken += 1
            self._hand_out(pipe)
        return len(ready)

    def take_all(self) -> list[Result]:
        """Wait for every share's result; return them in the shares' order."""
        return list(self.in_order())

    def in_order(self) -> Iterator[Result]:
        """Yield the results in the shares' order, each as soon as it and those before it are in."""
        for index in range(len(self.shares)):
            while index not in self.results:
                self.take(None)
            yield self.results.pop(index)

    def _hand_out(self, pipe: int) -> None:
        """Give the worker behind `pipe` the next share, or tell it to end when none is left."""
        pid, tasks = self.busy[pipe]
        if self.handed < len(self.shares):
            os.write(tasks, _TASK.pack(self.handed))
            self.handed += 1
            return
        os.write(tasks, _TASK.pack(-1))
        del self.busy[pipe]
        os.close(pipe)
        os.close(tasks)

    def _stop(self, kill: bool) -> None:
        for pipe, (_, tasks) in self.busy.items():
            os.close(pipe)
            os.close(tasks)
        self.busy = {}
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


_TASK = struct.Struct("<q")  # a share's index; -1: end
_MESSAGE = struct.Struct("<qq")  # a share's index, its pickled result's size (negative: an exception's)
_UNSENDABLE = -(2 ** 62)


def _serve(function: Callable[[Any], Any], shares: Sequence[Any], files: list[IO[bytes]], tasks: int,
           results: int) -> None:  # pragma: no cover - runs in a worker
    """A worker's life: compute the shares this process is told, write each result (or the
    exception it raised) to the share's file, say so, until told to end; then exit at once."""
    code = 1
    try:
        worker_setup()
        while True:
            task = _read_exactly(tasks, _TASK.size)
            if len(task) < _TASK.size:
                break  # the build is gone
            (index,) = _TASK.unpack(task)
            if index < 0:
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
