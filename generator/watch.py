"""Watch the digest's inputs and call back once per save, not once per file-system event.

One editor save fires several events within a few milliseconds (write, close, rename of a
backup...), so events are collected and handed over only after `delay` seconds of quiet
(MkDocs `livereload`, debounce ~100 ms), or a shorter `SETTLED_SECONDS` when the last event ends a
save (a close after writing, a rename into place). The callback runs on the watcher's own thread, one
batch at a time: events that arrive during a rebuild form the next batch, never a parallel one.

The output folder is never watched: the build swaps it in by renaming, and watching it would
make every build trigger the next one.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterable

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    FileModifiedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.api import BaseObserver, ObservedWatch
from watchdog.observers.polling import PollingObserver

DEBOUNCE_SECONDS = 0.05
# After an event that ends a save (a file closed after writing, or renamed into place, as editors
# do last), a shorter quiet period is enough to collect the rest of the burst.
SETTLED_SECONDS = 0.025
POLL_SECONDS = 0.25
# Only events that mean "the bytes changed". Reading a file during the build fires open,
# close-no-write and (with relatime) attribute events: reacting to those would loop forever.
EVENT_TYPES: list[type[FileSystemEvent]] = [
    FileCreatedEvent, FileModifiedEvent, FileDeletedEvent, FileMovedEvent, FileClosedEvent,
    DirCreatedEvent, DirDeletedEvent, DirMovedEvent,
]


def is_editor_noise(path: Path) -> bool:
    """Return True for editor scratch files (hidden, `~` backups, swap files, vim's `4913` probe)."""
    name = path.name
    return name.startswith(".") or name.endswith(("~", ".swp", ".swx", ".tmp")) or name == "4913"


class Debouncer:
    """Collect paths and hand them to `callback` in one batch once `delay` seconds pass without more."""

    def __init__(self, callback: Callable[[set[Path]], None], delay: float = DEBOUNCE_SECONDS):
        self._callback = callback
        self._delay = delay
        self._pending: set[Path] = set()
        self._last = 0.0
        self._quiet = delay
        self._stopped = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="digest-rebuild", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def add(self, paths: Iterable[Path], settled: bool = False) -> None:
        """Record changed paths and restart the quiet period (the shorter one when the event ended
        a save: `settled`)."""
        with self._cond:
            self._pending.update(paths)
            self._last = time.monotonic()
            self._quiet = min(self._delay, SETTLED_SECONDS) if settled else self._delay
            self._cond.notify()

    def stop(self, timeout: float = 0.2) -> None:
        """Stop after the running callback, if any, waiting at most `timeout` seconds for it."""
        with self._cond:
            self._stopped = True
            self._cond.notify()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopped:
                    self._cond.wait()
                while not self._stopped:
                    remaining = self._last + self._quiet - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                if self._stopped:
                    return
                batch, self._pending = self._pending, set()
            try:
                self._callback(batch)
            except Exception as exc:  # a bug in the rebuild must not stop the watching
                print(f"digest serve: rebuild crashed: {exc!r}", file=sys.stderr)


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: Watcher):
        self._watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        paths = [event.src_path, getattr(event, "dest_path", "")]
        settled = isinstance(event, (FileClosedEvent, FileMovedEvent))
        self._watcher.notice([Path(os.fsdecode(p)) for p in paths if p], settled)


class Watcher:
    """Watch folders (recursively) and single files; call `on_change(paths)` once per burst.

    Folders that do not exist yet (a digest without `static/`) are picked up when they appear:
    the parent of every watched path is watched too, without recursion.
    """

    def __init__(
        self,
        on_change: Callable[[set[Path]], None],
        *,
        poll: bool = False,
        delay: float = DEBOUNCE_SECONDS,
    ):
        self.poll = poll
        self._debouncer = Debouncer(on_change, delay)
        self._observer: BaseObserver = self._make_observer(poll)
        self._handler = _Handler(self)
        self._lock = threading.RLock()
        self._dirs: tuple[Path, ...] = ()
        self._files: tuple[Path, ...] = ()
        self._ignored: tuple[Path, ...] = ()
        self._watches: dict[tuple[Path, bool], tuple[ObservedWatch, int]] = {}

    @staticmethod
    def _make_observer(poll: bool) -> BaseObserver:
        # A short observer timeout lets `stop()` return well within a second (the default is 1 s).
        if poll:
            return PollingObserver(timeout=POLL_SECONDS)
        try:
            from watchdog.observers import Observer

            return Observer(timeout=0.1)
        except OSError as exc:  # e.g. inotify instance limit reached
            print(f"warning: file events unavailable ({exc}); polling instead", file=sys.stderr)
            return PollingObserver(timeout=POLL_SECONDS)

    def start(self) -> None:
        self._debouncer.start()
        self._observer.start()

    def stop(self) -> None:
        """Stop watching and wait (briefly) for the watcher threads to end."""
        self._debouncer.stop()
        if self._observer.is_alive():
            self._observer.stop()
            self._observer.join(timeout=1.0)

    def set_paths(self, dirs: Iterable[Path], files: Iterable[Path], ignored: Iterable[Path]) -> None:
        """Watch these folders and files, never anything under `ignored` (the output folder)."""
        with self._lock:
            self._dirs = tuple(dict.fromkeys(Path(d) for d in dirs))
            self._files = tuple(dict.fromkeys(Path(f) for f in files))
            self._ignored = tuple(Path(i) for i in ignored)
            self._reschedule()

    def _wanted(self) -> set[tuple[Path, bool]]:
        wanted: set[tuple[Path, bool]] = set()
        for folder in self._dirs:
            if folder.is_dir() and not self._is_ignored(folder):
                wanted.add((folder, True))
            if folder.parent.is_dir():
                wanted.add((folder.parent, False))  # to see the folder appear (or be replaced)
        for file in self._files:
            if file.parent.is_dir():
                wanted.add((file.parent, False))
        return wanted

    def _reschedule(self) -> None:
        """Bring the observer's watches in line with what exists now."""
        wanted = self._wanted()
        for key, (watch, inode) in list(self._watches.items()):
            if key not in wanted or _inode(key[0]) != inode:  # gone, or deleted and created again
                try:
                    self._observer.unschedule(watch)
                except Exception:  # its emitter may have stopped itself when the folder was deleted
                    pass
                del self._watches[key]
        for path, recursive in sorted(wanted - set(self._watches)):
            try:
                watch = self._observer.schedule(self._handler, str(path), recursive=recursive,
                                                event_filter=EVENT_TYPES)
            except OSError as exc:
                print(f"warning: cannot watch {path}: {exc} (try --poll)", file=sys.stderr)
                continue
            self._watches[(path, recursive)] = (watch, _inode(path))

    def _is_ignored(self, path: Path) -> bool:
        return any(path == i or i in path.parents for i in self._ignored)

    def is_relevant(self, path: Path) -> bool:
        """Return True when a change to `path` should rebuild the site."""
        with self._lock:
            if self._is_ignored(path):
                return False
            if path in self._files:
                return True
            for folder in self._dirs:
                if path == folder:
                    return True
                if folder in path.parents:
                    return not any(is_editor_noise(Path(part)) for part in path.relative_to(folder).parts)
            return False

    def notice(self, paths: Iterable[Path], settled: bool = False) -> None:
        """Take raw event paths from the observer; queue the relevant ones for the next rebuild."""
        relevant = [p for p in paths if self.is_relevant(p)]
        if not relevant:
            return
        with self._lock:
            if any(p in self._dirs for p in relevant):  # a watched folder appeared or vanished
                self._reschedule()
        self._debouncer.add(relevant, settled)


def _inode(path: Path) -> int:
    try:
        return path.stat().st_ino
    except OSError:
        return -1
