"""Before the stages: did any input change since the last build, and which files?

`input_fingerprint` stats every input file (make's rule: name, size, modification time). A process
that outlives its builds (the build daemon) keeps an `InputCheck` instead: on Linux it asks the
kernel to queue every change under the input folders (inotify), and at the next build stats only
the files named in that queue. At 10,000 records the full check is 10,000 `stat` calls and a walk
of the folders (0.07-0.1 s of each edit); the queue is read in well under a millisecond.

No thread reads the queue: the daemon forks its helpers, which a process with threads must not do.
The queue is read when a build starts, and anything it cannot vouch for (a new or deleted file or
folder, an overflowing queue, no inotify here) makes that check a full one, which watches again.
Every write to a local file queues its event before the writing call returns, so a change made
before the client asked for a build is always seen (not a change made on another machine through a
network file system, nor through a shared memory map, which inotify does not report); the
fingerprint is the full check's, byte for byte (a test compares them).

Times can change without the bytes: a file touched, saved unchanged, or checked out again by git
(`git switch` there and back, `git stash` and `pop`). `InputDigests` keeps the content hash of each
input of the last build, so that the check then hashes the files whose times moved and finds the
same bytes, instead of a build that changes nothing (as git and Bazel do; make goes by times alone).
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import itertools
import marshal
import operator
import os
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from generator.cache_files import RACY_NS, bytes_digest
from generator.config import SiteConfig


def input_folders(config: SiteConfig) -> list[Path]:
    """The folders whose files are a build's inputs: content, templates, static files, the theme
    and this package's code."""
    import generator
    from generator.render import THEME_DIR

    return [config.content_path, config.templates_path, config.static_path, Path(generator.__file__).parent,
            THEME_DIR]


def input_fingerprint(config: SiteConfig, stats: dict[str, os.stat_result] | None = None) -> str:
    """Fingerprint every input of a build by name, size and modification time (as make does).

    Content, templates, static files, digest.yaml and this package's own code: when none of them
    changed since the build that produced the live site, there is nothing to do. `stats` receives
    each file's `os.stat`, for the load stage (10,000 of them are 0.04 s here).
    """
    return InputCheck(watch=False).fingerprint(config, {} if stats is None else stats)


def config_key(config: SiteConfig) -> str:
    """Fingerprint the configuration alone, as the input fingerprint takes it in."""
    return _digest(config, [repr(config)])


def _digest(config: SiteConfig, entries: list[object]) -> str:
    config_file = config.root / "digest.yaml"
    if config_file.is_file():
        entries = [*entries, config_file.read_bytes()]
    # marshal (version 0: by value alone) is 8 times cheaper than repr for 10,000 entries.
    return hashlib.blake2b(marshal.dumps(entries, 0), digest_size=16).hexdigest()


def _ignored(name: str) -> bool:
    return name.startswith(".") or name == "__pycache__"


def walk_files(folder: Path, before_scan: Callable[[str], object] | None = None) -> list[str]:
    """Return the path of every file under `folder`, sorted, without recursion (os.walk recurses
    before 3.12) and without following folder links; `before_scan` is called with each folder
    before it is listed. Strings: 10,000 `Path` objects cost the no-change check a tenth of a second."""
    found: list[str] = []
    stack = [os.fspath(folder)]
    while stack:
        current = stack.pop()
        if before_scan is not None:
            before_scan(current)
        try:
            entries = list(os.scandir(current))
        except OSError:
            continue
        for entry in entries:
            if _ignored(entry.name):
                continue
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
            else:
                found.append(entry.path)
    return sorted(found)


DIGESTS_VERSION = 1


def file_digest(path: str, size: int, mtime_ns: int) -> str | None:
    """Return `bytes_digest` of a file when it still has this size and modification time (taken
    before reading), else None."""
    try:
        with open(path, "rb") as stream:
            info = os.fstat(stream.fileno())
            if (info.st_size, info.st_mtime_ns) != (size, mtime_ns):
                return None
            return bytes_digest(stream.read())
    except OSError:
        return None


@dataclass
class CheckedInputs:
    """What one no-change check stated: the inputs' fingerprint and `InputCheck.entries` (a copy),
    from `checked_ns` on; and the last build's digests, once the check had to read them."""

    fingerprint: str
    entries: list[object]
    checked_ns: int
    last: InputDigests | None = None


@dataclass
class InputDigests:
    """The inputs of a build as its no-change check stated them (`InputCheck.entries`: the settings,
    then each file's path, size and modification time), with the hash of each file's bytes that the
    build used (None where the times vouch for nothing: `RACY_NS`)."""

    config_key: str
    entries: list[object]
    digests: list[str | None]  # per file: entries[1:]

    @classmethod
    def made(cls, config: SiteConfig, checked: CheckedInputs, known: Callable[[str, int, int], str | None],
             last: InputDigests | None = None) -> InputDigests:
        """The digests of the inputs `checked` stated: the last ones' for a file with the same
        size and time at the same place, else what `known(path, size, mtime_ns)` says (an edit asks
        for a file or two; the lists are compared in C: 10,000 files in a millisecond)."""
        entries = checked.entries
        if last is not None and len(last.entries) == len(entries):
            digests = list(last.digests)
            # Files whose size or time moved, and those that had no digest (saved just before the
            # last build, which may have read them while their times vouched for nothing).
            moved = map(operator.ne, entries[1:], last.entries[1:])
            unknown = map(operator.is_, digests, itertools.repeat(None))
            redo = itertools.compress(range(1, len(entries)), map(operator.or_, moved, unknown))
        else:
            digests = [None] * (len(entries) - 1)
            redo = range(1, len(entries))  # type: ignore[assignment]
        for position in redo:
            path, size, mtime_ns = entries[position]  # type: ignore[misc]
            fresh = mtime_ns + RACY_NS < checked.checked_ns
            digests[position - 1] = known(path, size, mtime_ns) if fresh else None
        return cls(config_key(config), entries, digests)

    def moved_alone(self, config: SiteConfig, checked: CheckedInputs) -> list[int] | None:
        """Return where in `checked.entries` the files whose time alone moved are, when the inputs
        `checked` stated are those these digests describe (the same settings and files, each with
        the same size and either the same time or the same bytes), else None. Hashes only the
        files whose time moved, and stops at the first change."""
        entries = checked.entries
        if len(entries) != len(self.entries) or self.config_key != config_key(config):  # (entries[0]: in the key)
            return None
        moved = []
        for position in itertools.compress(range(1, len(entries)), map(operator.ne, entries[1:], self.entries[1:])):
            path, size, mtime_ns = entries[position]  # type: ignore[misc]
            old_path, old_size, _ = self.entries[position]  # type: ignore[misc]
            digest = self.digests[position - 1]
            if path != old_path or size != old_size or digest is None or file_digest(path, size, mtime_ns) != digest:
                return None
            moved.append(position)
        return moved

    def to_bytes(self) -> bytes:
        # marshal: 10,000 entries written in 1 ms and read in 2.5, where JSON takes 5 times longer.
        return marshal.dumps((DIGESTS_VERSION, self.config_key, self.entries, self.digests))

    @classmethod
    def from_bytes(cls, data: bytes) -> InputDigests | None:
        try:
            version, key, entries, digests = marshal.loads(data)
        except (ValueError, EOFError, TypeError):
            return None
        if version != DIGESTS_VERSION or type(key) is not str or type(entries) is not list or type(digests) is not list \
                or len(digests) != len(entries) - 1:
            return None
        return cls(key, entries, digests)


class InputCheck:
    """`input_fingerprint` for a process that builds again and again: after the first check it
    stats only the files the kernel says changed (see the module docstring). Keep one per digest.
    Without `watch` every check stats every file (what `input_fingerprint` does once).

    `listing` names the set of input files: it changes whenever a check may have found files added
    or removed (so the load stage can keep its own walk of the content folder while it does not).
    """

    def __init__(self, watch: bool = True) -> None:
        self.watch: InputWatch | None = InputWatch.open() if watch else None
        self.config_repr: str | None = None
        self.entries: list[object] = []  # as input_fingerprint makes them
        self.positions: dict[str, int] = {}  # path -> its entry
        self.stats: dict[str, os.stat_result] = {}
        self.links: list[str] = []  # files that are symbolic links: their targets are not watched
        self.listing = object()
        self.full_checks = 0  # how many checks walked every folder (for tests and the curious)

    def close(self) -> None:
        if self.watch is not None:
            self.watch.close()
            self.watch = None

    def fingerprint(self, config: SiteConfig, stats: dict[str, os.stat_result]) -> str:
        """Return `input_fingerprint(config, stats)`, filling `stats` the same way."""
        changed = self.watch.changed() if self.watch is not None and self.config_repr == repr(config) else None
        if changed is None or not self._restat(changed | set(self.links)):
            self._check_all(config)
        stats.update(self.stats)
        return _digest(config, self.entries)

    def _check_all(self, config: SiteConfig) -> None:
        """Stat every input file, watching each folder before it is listed (a fresh queue, so no
        folder that is no longer an input stays watched)."""
        self.full_checks += 1
        self.listing = object()
        if self.watch is not None:
            self.watch.close()
            self.watch = InputWatch.open()
        watch = self.watch
        files = [path for folder in input_folders(config)
                 for path in walk_files(folder, watch.cover if watch is not None else None)]
        if watch is not None and not watch.covered:
            self.close()  # more folders than the system lets one process watch: check in full
        self.config_repr = repr(config)
        self.entries, self.positions, self.stats, self.links = [self.config_repr], {}, {}, []
        for path in files:
            try:
                info = os.lstat(path)
                if info.st_mode & 0o170000 == 0o120000:  # a symbolic link: what it points to
                    self.links.append(path)  # (a link to nothing is no input until its target comes)
                    info = os.stat(path)
            except OSError:
                continue
            self.positions[path] = len(self.entries)
            self.entries.append((path, info.st_size, info.st_mtime_ns))
            self.stats[path] = info

    def _restat(self, paths: Iterable[str]) -> bool:
        """Stat the files named again; False when one of them is new or gone (a full check then)."""
        for path in paths:
            position = self.positions.get(path)
            try:
                info = os.stat(path)
            except OSError:
                if position is None:
                    continue  # came and went since the last check (a temporary file renamed over an
                    # input, as `sed -i` and many editors save; or a link to nothing still)
                return False  # gone
            if position is None:
                return False  # a new file, or a link whose target came
            self.entries[position] = (path, info.st_size, info.st_mtime_ns)
            self.stats[path] = info
        return True


# inotify(7), through the C library -------------------------------------------------------------

_IN_MODIFY, _IN_ATTRIB, _IN_CLOSE_WRITE = 0x2, 0x4, 0x8
_IN_MOVED_FROM, _IN_MOVED_TO, _IN_CREATE, _IN_DELETE = 0x40, 0x80, 0x100, 0x200
_IN_DELETE_SELF, _IN_MOVE_SELF, _IN_UNMOUNT, _IN_Q_OVERFLOW, _IN_IGNORED = 0x400, 0x800, 0x2000, 0x4000, 0x8000
_IN_ONLYDIR, _IN_ISDIR = 0x01000000, 0x40000000
_MASK = (_IN_MODIFY | _IN_ATTRIB | _IN_CLOSE_WRITE | _IN_MOVED_FROM | _IN_MOVED_TO | _IN_CREATE | _IN_DELETE
         | _IN_DELETE_SELF | _IN_MOVE_SELF | _IN_ONLYDIR)
_UNKNOWABLE = _IN_DELETE_SELF | _IN_MOVE_SELF | _IN_UNMOUNT | _IN_Q_OVERFLOW | _IN_IGNORED
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, length of the name that follows


class InputWatch:
    """One inotify queue over a set of folders (each watched alone: inotify does not recurse)."""

    def __init__(self, handle: int, add_watch) -> None:
        self._handle = handle
        self._add_watch = add_watch
        self._folders: dict[int, str] = {}  # watch descriptor -> folder
        self.covered = True  # False once the system refused to watch a folder

    @classmethod
    def open(cls) -> InputWatch | None:
        """A new queue, or None where there is no inotify (not Linux, no C library, no descriptors)."""
        if not sys.platform.startswith("linux"):
            return None
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            init, add_watch = libc.inotify_init1, libc.inotify_add_watch
        except (OSError, AttributeError):
            return None
        add_watch.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32)
        handle = init(os.O_NONBLOCK | os.O_CLOEXEC)
        return cls(handle, add_watch) if handle >= 0 else None

    def __del__(self) -> None:
        self.close()

    def close(self, _close=os.close) -> None:  # (bound now: `os` may be gone when __del__ runs at exit)
        if self._handle >= 0:
            _close(self._handle)
            self._handle = -1

    def cover(self, folder: str) -> None:
        """Watch `folder` (sets `covered` to False when the system refuses: the per-user limit on
        watches, `fs.inotify.max_user_watches`)."""
        descriptor = self._add_watch(self._handle, os.fsencode(folder), _MASK)
        if descriptor >= 0:
            self._folders[descriptor] = folder
        elif ctypes.get_errno() not in (errno.ENOENT, errno.ENOTDIR):  # gone: the walk skips it too
            self.covered = False

    def changed(self) -> set[str] | None:
        """Return the paths of the files created, changed or removed since the last call, or None
        when the queue cannot tell (a folder came, went or moved; the queue overflowed). After
        None, a new queue is needed."""
        found: set[str] = set()
        unknown = not self.covered
        while True:
            try:
                data = os.read(self._handle, 1 << 16)
            except BlockingIOError:
                break
            except OSError:
                return None
            offset = 0
            while offset < len(data):
                descriptor, mask, _, length = _EVENT.unpack_from(data, offset)
                name = os.fsdecode(data[offset + _EVENT.size: offset + _EVENT.size + length].rstrip(b"\x00"))
                offset += _EVENT.size + length
                folder = self._folders.get(descriptor)
                if mask & _UNKNOWABLE or folder is None:
                    unknown = True
                elif not name or _ignored(name):
                    continue  # the folder itself, or a name no walk takes (an editor's swap file)
                elif mask & _IN_ISDIR:
                    if mask & (_IN_CREATE | _IN_DELETE | _IN_MOVED_FROM | _IN_MOVED_TO):
                        unknown = True  # a folder came or went: its files are not watched
                else:
                    found.add(f"{folder}/{name}")
        return None if unknown else found
