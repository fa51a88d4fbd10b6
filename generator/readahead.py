"""Reading content files ahead of the readers.

A load whose files are not in the kernel's page cache (after a reboot, or when a large site's
output has pushed them out) waits on the disk one small file at a time: at 100,000 records, 40-50 %
of the load's time was spent waiting. Asked for all the files at once, the kernel fetches them
together: reading the 100,000 files after advising them took 2.9-4.8 s instead of 11-21 s.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator, Sequence

from generator.workers import ForkedWorkers, can_fork

READ_AHEAD_FILES = 400  # fewer files than this are read before a helper process could help


@contextlib.contextmanager
def reading_ahead(paths: Sequence[str]) -> Iterator[None]:
    """Ask the kernel to read `paths` into its page cache, in that order, while the block runs.

    A forked worker (`ForkedWorkers`, which stops and reaps it when the block ends) does the asking:
    opening a file whose inode is not cached waits on the disk too, and the readers should not.
    Where files are cached already this costs a few microseconds a file, in that process. Only on
    systems with `posix_fadvise` (Linux, the BSDs) and fork.
    """
    with contextlib.ExitStack() as helper:
        if len(paths) >= READ_AHEAD_FILES and hasattr(os, "posix_fadvise") and can_fork():
            try:
                helper.enter_context(ForkedWorkers(_advise, [paths], 1))
            except OSError:  # no process or file to spare: the readers wait on the disk
                pass
        yield


def _advise(paths: Sequence[str]) -> None:
    """Tell the kernel each file will be needed soon (POSIX_FADV_WILLNEED starts reading it and
    returns). O_NONBLOCK: a path that became a pipe since it was listed does not block the open."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0)
    for path in paths:
        try:
            handle = os.open(path, flags)
        except OSError:
            continue
        try:
            os.posix_fadvise(handle, 0, 0, os.POSIX_FADV_WILLNEED)
        except OSError:
            pass
        finally:
            os.close(handle)
