"""Stage 4, write: keep the output folder a complete site at every instant, and touch only what changed.

Two trees live side by side: the live site (`site/`) and a spare (`.site.spare/`) holding an older
build. A build brings the spare up to date, writing only the files whose fingerprint differs from
what the spare holds (files the live site already has are hard-linked from it), then exchanges the
two folders in one atomic `renameat2(RENAME_EXCHANGE)`. Readers of `site/` and interrupted builds
therefore only ever see a complete old or a complete new site. Where the exchange is not supported,
two renames are used and `recover_interrupted_swap` repairs the gap after a crash.

Each tree carries a small `.digest-tree` file naming it (by a hash of its contents); its manifest (path -> fingerprint) lives in
the cache folder, so deleting the cache only costs one full write. Manifests are kept in marshal's
version 0 form (by value, so the same manifest always gives the same bytes and tree id): an edit at
10,000 articles reads two and writes one, 82,000 entries each, 0.1 s less than as JSON.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import itertools
import json
import marshal
import operator
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Callable, Collection, Iterable

from generator.errors import DigestError, Problem
from generator.workers import can_fork_alone, worker_setup

TREE_MARKER = ".digest-tree"
_SPARE_SUFFIX = ".spare"  # `.site.spare/`: the spare tree beside the live `site/`
TRASH_INFIX = ".trash-"  # `.site.trash-<random>/`: a tree being deleted after a build (`remove_discarded`)
_REMOVER = "import shutil, sys\nfor path in sys.argv[1:]:\n    shutil.rmtree(path, ignore_errors=True)\n"
_REMOVERS: list[subprocess.Popen] = []  # those this process started: reaped by the next build once done
MANIFEST_SUFFIX = ".manifest"  # a tree's manifest in the cache folder: `trees/<tree id>.manifest`


@dataclass(frozen=True)
class WriteReport:
    removed: int  # files of the previous site that the new one no longer has


def checked_path(path: str) -> str:
    """Return `path` when it is a plain relative POSIX path inside the tree; else refuse it.

    Runs for every file of every build, so it works on the string (no pathlib objects) and
    remembers the paths it passed."""
    if path in _CHECKED:
        return path
    if not path or path[0] == "/" or "\\" in path or "\x00" in path or \
            any(part in ("", ".", "..") for part in path.split("/")):
        raise DigestError(Problem(path, "refusing to write outside the output folder"))
    if len(_CHECKED) > 1 << 20:
        _CHECKED.clear()
    _CHECKED.add(path)
    return path


_CHECKED: set[str] = set()

# In the paths joined by NUL (which no checked path holds), and NUL at both ends: an empty part, "."
# or ".." (a backslash is looked for apart). Starting with a character class, it is scanned for fast:
# 25 ms for 82,000 paths, where a pattern starting with `^|` took 80.
_BAD_IN_JOINED = re.compile(r"[/\x00]\.{0,2}[/\x00]")


def checked_paths(paths: Collection[str]) -> None:
    """`checked_path` for a build's every file at once: one pass of a regular expression over them
    joined (a new process checked 82,000 paths one by one in 0.2 s). A refused path is named by
    `checked_path`."""
    if _CHECKED and _CHECKED.issuperset(paths):  # a rebuild's: one pass in C
        return
    unknown = [path for path in paths if path not in _CHECKED] if _CHECKED else list(paths)
    if not unknown:
        return
    joined = "\x00".join(unknown)
    if joined.count("\x00") != len(unknown) - 1 or "\\" in joined or _BAD_IN_JOINED.search(f"\x00{joined}\x00"):
        for path in unknown:
            checked_path(path)
    if len(_CHECKED) + len(unknown) > 1 << 20:
        _CHECKED.clear()
    _CHECKED.update(unknown)


def write_file(target: str, data: bytes) -> None:
    """Put `data` in the file at `target` (see `open_for_writing`). The folder it goes in must exist."""
    handle, old_size = open_for_writing(target)
    try:
        write_all(handle, data)
        if old_size > len(data):
            os.ftruncate(handle, len(data))
    finally:
        os.close(handle)


def write_spliced(target: str, parts: Iterable[bytes | tuple[int, int]], source: int) -> None:
    """Put in the file at `target` (as `write_file`) the `parts`: bytes, or (start, end) ranges of
    the open file `source`, which the kernel copies without a trip through this process
    (`copy_file_range`): an edit at 10,000 articles rewrites 95 MB of digest-wide exports, nearly
    all of it the live ones'. Consecutive bytes parts go in one write."""
    handle, old_size = open_for_writing(target)
    try:
        size = 0
        for is_range, run in itertools.groupby(parts, key=lambda part: isinstance(part, tuple)):
            if is_range:
                for start, end in run:
                    _copy_range(source, handle, start, end)
                    size += end - start
            else:
                data = b"".join(run)
                write_all(handle, data)
                size += len(data)
        if old_size > size:
            os.ftruncate(handle, size)
    finally:
        os.close(handle)


_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
# Writing over a file: never through a link, and never waiting to open what became a FIFO meanwhile.
_REWRITE = os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


def open_for_writing(target: str) -> tuple[int, int]:
    """Return a descriptor to write a file's new bytes at `target` from its start, and the size of
    the file it writes over (0 for a new one; the caller cuts what is left of it).

    A file no other name shares (one link: not the live site's, which holds its files under a second
    name) is written over in place; anything else is replaced (`create_file`). Replacing frees the
    old file's blocks and inode and allocates new ones: 134 us a 3 KB file against 13 us written
    over here (ext4 mounted with `discard` discards each freed extent, and while it looks for a
    free inode it skips every recently freed one), so a build that changes every page (a template,
    the site's title) spent a third of its time deleting the spare tree's old pages."""
    try:
        return os.open(target, _CREATE, 0o644), 0
    except FileExistsError:
        pass
    size = _own_file_size(target)
    if size is not None:
        try:
            return os.open(target, _REWRITE), size
        except OSError:
            pass  # changed since: replaced below
    return create_file(target), 0


def create_file(target: str) -> int:
    """Return a descriptor of a new, empty file at `target`, open for writing: what is there is
    replaced, never modified (it may be a hard link shared with the live site)."""
    try:
        return os.open(target, _CREATE, 0o644)
    except FileExistsError:
        _remove_tree(Path(target))
        return os.open(target, _CREATE, 0o644)


def _own_file_size(target: str) -> int | None:
    """Return the size of the regular file at `target` when no other name shares it (one link: the
    live site holds its files under a second name), else None."""
    try:
        info = os.stat(target, follow_symlinks=False)
    except OSError:
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) and info.st_nlink == 1 else None


_COMPARED_AT_ONCE = 1 << 20


def _holds(stream: BinaryIO, data: bytes) -> bool:
    """Whether the rest of the open file is `data` (its size checked), read a megabyte at a time:
    digest.json is 16 MB at 10,000 articles, which reading whole held twice."""
    view = memoryview(data)
    for start in range(0, len(data), _COMPARED_AT_ONCE):
        if stream.read(_COMPARED_AT_ONCE) != view[start: start + _COMPARED_AT_ONCE]:
            return False
    return not stream.read(1)


def write_all(handle: int, data: bytes) -> None:
    """Write all of `data` to the open file `handle`."""
    view = memoryview(data)
    while view:
        view = view[os.write(handle, view):]


_KERNEL_COPY = hasattr(os, "copy_file_range")  # False once the system refused it: read and write instead


def _copy_range(source: int, target: int, start: int, end: int) -> None:
    """Append bytes start..end of `source` to `target`."""
    global _KERNEL_COPY
    while start < end:
        copied = 0
        if _KERNEL_COPY:
            try:
                copied = os.copy_file_range(source, target, end - start, start)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM):
                    raise
                _KERNEL_COPY = False
        if not copied:
            data = os.pread(source, min(end - start, 1 << 22), start)
            if not data:
                raise OSError(errno.EIO, "a file of the live site changed while it was being copied")
            write_all(target, data)
            copied = len(data)
        start += copied


class TreeFiles:
    """Puts files into one tree: new bytes are written, bytes the live site already has are
    hard-linked from it (a page whose inputs changed without changing what it shows keeps its file).

    Remembers the folders it has made, so a build of 80,000 files does not ask the file system
    80,000 times whether their folders exist.
    """

    def __init__(self, tree: Path, live: Path | None = None):
        self.tree = os.fspath(tree)
        self.live = os.fspath(live) if live is not None and os.path.isdir(live) and live != tree else None
        self.folders: set[str] = set()
        self.trash: str | None = None  # where `_set_aside` moves files, made on first use
        self.set_aside = 0

    def _folder_for(self, target: str) -> None:
        folder = target.rpartition("/")[0]
        if folder not in self.folders:
            # Its parent nearly always exists (`authors/`, `articles/`): one mkdir, where makedirs
            # asks first whether the parent exists, and after a failed mkdir whether it is a folder.
            try:
                os.mkdir(folder)
            except FileNotFoundError:
                os.makedirs(folder, exist_ok=True)
            except FileExistsError:
                if not os.path.isdir(folder):
                    os.makedirs(folder, exist_ok=True)  # raises what makedirs raises for a file there
            self.folders.add(folder)

    def put(self, relative: str, data: bytes) -> bool:
        """Write or link one file; return True when new bytes were written."""
        relative = checked_path(relative)
        target = f"{self.tree}/{relative}"
        if self.live is not None and self._same_in_live(relative, data):
            self.link(f"{self.live}/{relative}", target)
            return False
        self._folder_for(target)
        write_file(target, data)
        return True

    def _same_in_live(self, relative: str, data: bytes) -> bool:
        source = f"{self.live}/{relative}"
        try:
            info = os.stat(source, follow_symlinks=False)
            if not stat.S_ISREG(info.st_mode) or info.st_size != len(data):
                return False
            with open(source, "rb") as stream:
                return _holds(stream, data)
        except OSError:
            return False

    def link(self, source: str, target: str) -> None:
        """Hard-link `source` at `target`, replacing what is there."""
        self._folder_for(target)
        try:
            os.link(source, target)
        except FileExistsError:
            self._set_aside(target)
            os.link(source, target)

    def _set_aside(self, target: str) -> None:
        """Take what is at `target` out of the tree. A file no other name shares is moved into a trash
        folder beside the spare tree, which `SiteWriter.remove_discarded` deletes once the build is
        over: deleting it here would free its blocks and inode while the build waits (111 us a file
        against 32 us to look at it and move it; an edit right after a build that changed every
        page links 41,800 unchanged pages over the spare's own old ones at 10,000 articles)."""
        if self.tree.endswith(_SPARE_SUFFIX) and _own_file_size(target) is not None:
            try:
                if self.trash is None:
                    base = self.tree[:-len(_SPARE_SUFFIX)]
                    self.trash = f"{base}{TRASH_INFIX}{os.urandom(6).hex()}"
                    os.makedirs(self.trash, exist_ok=True)
                self.set_aside += 1
                os.rename(target, f"{self.trash}/{os.getpid()}.{self.set_aside}")  # (forked writers share it)
                return
            except OSError:
                pass
        _remove_tree(Path(target))


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False when unsupported here."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    if result == 0:
        return True
    error = ctypes.get_errno()
    if error in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: this file system cannot exchange
        return False
    raise OSError(error, os.strerror(error), str(a))


FILL_STALE_MIN = 2000  # stale spare files from which linking them ahead pays for a process (see `fill_spare`)


class SiteWriter:
    """Brings the spare tree up to date with a build's files and publishes it by exchange."""

    def __init__(self, output: Path, cache_dir: Path, clean: bool = False, again: bool = False):
        """`again`: this process builds again (serve, the daemon), and keeps the manifests it reads."""
        self.again = again
        self.output = output.resolve()
        self.spare = self.output.with_name(f".{self.output.name}{_SPARE_SUFFIX}")
        self.previous = self.output.with_name(f".{self.output.name}.prev")
        self.manifests = cache_dir / "trees"
        recover_interrupted_swap(self.output)
        self.live: dict[str, str] = {} if clean else self._manifest(self.output)
        self.spare_files: dict[str, str] = {} if clean else self._manifest(self.spare)
        self.new: dict[str, str] = {}
        self.kept_changed = 0  # files of this build the spare held already that the live site has not (see `_sort`)
        self._spare_ready = False
        self._filling: tuple[int, list[str]] | None = None  # (child, paths): see `fill_spare`

    # Manifests --------------------------------------------------------------------------------

    def _tree_id(self, tree: Path) -> str | None:
        try:
            return (tree / TREE_MARKER).read_text(encoding="ascii").strip() or None
        except (OSError, UnicodeDecodeError):
            return None

    def _manifest(self, tree: Path) -> dict[str, str]:
        tree_id = self._tree_id(tree)
        if not tree_id or not tree_id.isalnum():
            return {}
        path = self.manifests / f"{tree_id}{MANIFEST_SUFFIX}"
        known = _PUBLISHED.get(tree_id)
        if known is not None and path.is_file():
            return dict(known)
        try:
            data = marshal.loads(path.read_bytes())
        except FileNotFoundError:  # a tree published before manifests were kept this way
            try:
                data = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return {}
        except (OSError, ValueError, EOFError, TypeError):
            return {}
        if type(data) is not dict or not all(type(k) is str and type(v) is str for k, v in data.items()):
            return {}
        if not self.again:
            return data
        _PUBLISHED[tree_id] = data  # named by its contents: the process's next build reads it again
        return dict(data)

    # Planning ---------------------------------------------------------------------------------

    def unchanged_site(self, jobs: dict[str, str]) -> bool:
        """Return True when the live site already holds exactly these files and fingerprints."""
        live = self.live  # its files and its marker (compared in place: no copy of 82,000 entries)
        return bool(live) and TREE_MARKER not in jobs and len(jobs) == len(live) - (TREE_MARKER in live) and \
            jobs.items() <= live.items() and self.output.is_dir()

    def check_output(self) -> None:
        """Refuse an output folder that is not a site this tool made (issue 9: nothing is lost).

        Publishing swaps the output folder out and a later build deletes what was swapped out, so
        `--out content` or `--out .` would have thrown away the curator's records.
        """
        output = self.output
        if self.manifests.resolve().is_relative_to(output):
            raise DigestError(Problem(str(output), "the output folder holds the digest itself (its cache "
                                      "folder is inside it); refusing to replace it", hint="choose another --out"))
        if output.is_symlink() or (output.exists() and not output.is_dir()):
            raise DigestError(Problem(str(output), "the output path exists and is not a folder",
                                      hint="choose another --out, or remove it"))
        if output.is_dir() and not (output / TREE_MARKER).is_file() and not (output / ".nojekyll").is_file():
            if any(output.iterdir()):
                raise DigestError(Problem(str(output), "exists and is not a site made by 'digest build'; "
                                          "refusing to replace it", hint="choose another output folder, or empty it"))

    def prepare(self, jobs: dict[str, str], leave: set[str] | frozenset[str] = frozenset()) -> list[str]:
        """Ready the spare tree for `jobs` (path -> fingerprint); return the paths that must be rendered.

        Files in `leave` are someone else's to place (see `prepare_some`): kept, not looked at."""
        self.ready()
        to_render = self._sort({path: key for path, key in jobs.items() if path not in leave} if leave else jobs)
        self._remove_stale(jobs.keys())
        self.new = dict(jobs)
        return to_render

    def pending(self, jobs: dict[str, str]) -> int:
        """Return how many of these files neither tree holds yet (what `prepare` would render)."""
        spare, live = self.spare_files, self.live
        return sum(1 for path, key in jobs.items() if spare.get(path) != key and live.get(path) != key)

    def prepare_some(self, jobs: dict[str, str], linked: list[str] | None = None) -> list[str]:
        """Ready the spare tree for some of a build's files before the others are known (in a
        forked writer: see build._EarlyFiles); return those that must be rendered, and add to
        `linked` those linked from the live tree. `prepare` leaves them alone, and `written` then
        records them."""
        self.ready()
        return self._sort(jobs, linked)

    def prepare_more(self, jobs: dict[str, str]) -> list[str]:
        """After `prepare`: ready the spare tree for these files too (those it left to someone
        else who did not place them); return those that must be rendered."""
        return self._sort(jobs)

    def written(self, jobs: dict[str, str]) -> None:
        """Record files written into the spare tree since `prepare_some`."""
        self.spare_files.update(jobs)

    def fill_spare(self, same_theme: Callable[[], bool], stale_too: bool = True) -> None:
        """Start bringing the spare tree up to the live one in a forked process, while this one
        loads, links and plans; `ready` waits for it. Only for a build that renders with the theme
        the live tree was rendered with (`same_theme()`, asked last: it reads the theme), which
        keeps most live files (an edit): one that renders every page again does better without,
        writing over the spare's own old files in place (13 us a file here) or creating them in an
        empty spare, where a linked file must be replaced (134 us). A process with threads (`digest
        serve`) links what it needs itself.

        - The spare unknown (the first build after a cold one): every live file is linked, 82,000
          links in 41,000 folders at 10,000 articles (2.5 s, nearly all of it the kernel's), which
          the build would otherwise make one by one for every file it does not rewrite.
        - With `stale_too`, the spare known but far behind the live tree (two builds old, after a
          build that changed most pages: a new site title or template): the live files it lacks
          (41,800 at 10,000 articles: an edit right after a new title took 4.8-5.2 s without,
          3.1-4.0 s with, in paired runs; a normal edit 2.6 s)."""
        if self._filling is not None or self._spare_ready or not self.live or not can_fork_alone():
            return
        if not self.spare_files:
            paths = [path for path in self.live if path != TREE_MARKER]
        elif stale_too:
            live = self.live  # the paths whose key the spare does not hold, found in C (an edit's: a few dozen)
            paths = [path for path in itertools.compress(live, map(operator.ne, map(self.spare_files.get, live),
                                                                    live.values())) if path != TREE_MARKER]
            if len(paths) < FILL_STALE_MIN:
                return  # the build links them as it goes
        else:
            return
        if not same_theme():
            return
        try:
            checked_paths(paths)  # a manifest edited by hand only costs the work
            self.ready()
        except DigestError:
            return  # or the build refuses this output folder where it always did
        child = os.fork()
        if child == 0:
            code = 1
            try:
                worker_setup()
                files, live = TreeFiles(self.spare), os.fspath(self.output)
                for path in paths:
                    files.link(f"{live}/{path}", f"{files.tree}/{path}")
                code = 0
            finally:
                os._exit(code)
        self._filling = (child, paths)

    def stop_filling(self) -> None:
        """End the process `fill_spare` started if this build never used it (it failed), and remove
        the spare it made."""
        if self._filling is None:
            return
        try:
            os.kill(self._filling[0], signal.SIGKILL)
        except OSError:
            pass
        self._wait_for_filler()
        _discard_tree(self.output, self.spare)
        self.spare_files, self._spare_ready = {}, False

    def keep_spare(self) -> None:
        """Keep the copy `fill_spare` made (for a build with nothing to write), named as the live
        tree so the next build starts from it: removing it would unlink 82,000 files."""
        if self._filling is None:
            return
        self._filled()
        live_id = self._tree_id(self.output)
        if self.spare_files and live_id:
            self.remove(self.spare_files.keys() - self.live.keys())  # what a stale spare held besides
            TreeFiles(self.spare).put(TREE_MARKER, (live_id + "\n").encode("ascii"))

    def _filled(self) -> None:
        """Wait for the process `fill_spare` started; the spare holds the live files it linked if
        it linked them all, else it starts empty."""
        paths = self._filling[1]  # type: ignore[index]
        if self._wait_for_filler():
            live = self.live
            self.spare_files.update({path: live[path] for path in paths})
        else:
            self._empty_spare()

    def _wait_for_filler(self) -> bool:
        """Wait for the process `fill_spare` started; return whether it copied every file."""
        child = self._filling[0]  # type: ignore[index]
        self._filling = None
        try:
            _, status = os.waitpid(child, 0)
            return os.waitstatus_to_exitcode(status) == 0
        except ChildProcessError:
            return False

    def _empty_spare(self) -> None:
        _discard_tree(self.output, self.spare)
        self.spare.mkdir(parents=True)
        self.spare_files = {}

    @property
    def filling(self) -> bool:
        """Whether the process `fill_spare` started may still be linking files into the spare tree."""
        return self._filling is not None

    def remove_discarded(self) -> None:
        """Delete the trees `_discard_tree` moved aside (this build's and any a killed build left) in a
        process of their own that outlives this one: the user does not wait for the deletion."""
        _REMOVERS[:] = [remover for remover in _REMOVERS if remover.poll() is None]  # (no zombies in serve)
        prefix = f".{self.output.name}{TRASH_INFIX}"
        try:
            trash = sorted(entry.path for entry in os.scandir(self.output.parent)
                           if entry.name.startswith(prefix) and entry.is_dir(follow_symlinks=False))
        except OSError:
            return
        if not trash:
            return
        try:
            _REMOVERS.append(subprocess.Popen([sys.executable, "-I", "-c", _REMOVER, *trash], stdin=subprocess.DEVNULL,
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                              start_new_session=True))
        except OSError:
            for path in trash:
                shutil.rmtree(path, ignore_errors=True)

    def ready(self) -> None:
        """Make the spare tree ready to take this build's files (once per build)."""
        if self._filling is not None:
            self._filled()
        if self._spare_ready:
            return
        self.check_output()
        if not self.spare.is_dir() or not self.spare_files:
            self._empty_spare()  # no manifest: its contents are unknown
        else:
            # From the first change on, the spare no longer matches its manifest. Drop its marker now,
            # so a build killed half-way leaves a spare that the next build knows nothing about and
            # starts afresh, instead of trusting the old manifest for files this build replaced
            # (issue 9: that published a page of the killed build after the user's edit was undone).
            (self.spare / TREE_MARKER).unlink(missing_ok=True)
        self._spare_ready = True

    def _sort(self, jobs: dict[str, str], linked: list[str] | None = None) -> list[str]:
        """Link the files the live site holds as they are (adding them to `linked`); return those to
        render."""
        to_render: list[str] = []
        files = TreeFiles(self.spare)
        live, spare_files, live_files = os.fspath(self.output), self.spare_files, self.live
        checked_paths(jobs)
        # Files the spare holds with this build's key and the live site with another: what the build
        # before last made (an edit undone). They change the site though nothing is written.
        self.kept_changed += sum(1 for path in itertools.compress(jobs, map(operator.ne, map(live_files.get, jobs),
                                                                             jobs.values()))
                                 if spare_files.get(path) == jobs[path])
        # The paths whose key the spare does not hold, found in C (an edit's: a few dozen of 82,000).
        differs = itertools.compress(jobs, map(operator.ne, map(spare_files.get, jobs), jobs.values()))
        for path in differs:
            key = jobs[path]
            if live_files.get(path) == key:
                try:
                    files.link(f"{live}/{path}", f"{files.tree}/{path}")
                    spare_files[path] = key
                    if linked is not None:
                        linked.append(path)
                    continue
                except OSError:
                    pass
            to_render.append(path)
        return to_render

    def _remove_stale(self, keep: Collection[str]) -> None:
        spare = self.spare_files
        # An edit's: every path kept is in the spare, which holds no other file but its marker (no
        # set of 82,000 paths made).
        if len(spare) - (TREE_MARKER in spare) == len(keep) and all(map(spare.__contains__, keep)):
            return
        self.remove(spare.keys() - keep)

    def remove(self, paths: set[str]) -> None:
        """Remove files from the spare tree, and the folders they leave empty."""
        for path in sorted(paths - {TREE_MARKER}):
            self.spare_files.pop(path, None)
            target = self.spare.joinpath(*PurePosixPath(checked_path(path)).parts)
            try:
                target.unlink()
            except OSError:
                continue
            parent = target.parent
            while parent != self.spare:
                try:
                    parent.rmdir()
                except OSError:
                    break
                parent = parent.parent

    # Publishing -------------------------------------------------------------------------------

    def publish(self) -> WriteReport:
        """Record the spare's manifest, then make it the live site in one atomic exchange."""
        self.ready()
        # Named by its contents: identical builds give identical bytes, marker included. Plan order
        # is deterministic, so no key sorting is needed (it costs 0.3 s at 80,000 files).
        files = marshal.dumps(self.new, 0)
        tree_id = hashlib.blake2b(files, digest_size=16).hexdigest()
        TreeFiles(self.spare).put(TREE_MARKER, (tree_id + "\n").encode("ascii"))
        self.manifests.mkdir(parents=True, exist_ok=True)
        manifest = self.new
        manifest[TREE_MARKER] = tree_id  # (the last entry, as it is the last file written)
        (self.manifests / f"{tree_id}{MANIFEST_SUFFIX}").write_bytes(_with_entry(files, TREE_MARKER, tree_id))
        spare_id = self._tree_id(self.output)
        for known in list(_PUBLISHED):
            if known != spare_id:
                del _PUBLISHED[known]
        _PUBLISHED[tree_id] = manifest
        old = self.live
        if not self.output.exists():
            self.spare.rename(self.output)
        elif not self.output.is_dir():
            raise DigestError(Problem(str(self.output), "the output path exists and is not a folder"))
        elif not _exchange(self.spare, self.output):
            self.output.rename(self.previous)
            self.spare.rename(self.output)
            self.previous.rename(self.spare)
        self._prune_manifests({tree_id, self._tree_id(self.spare) or ""})
        # (Both manifests hold the marker.) Compared in place first: an edit removes nothing.
        same = len(old) == len(manifest) and old.keys() == manifest.keys()
        return WriteReport(removed=0 if same else len(old.keys() - manifest.keys()))

    def _prune_manifests(self, keep: set[str]) -> None:
        for path in self.manifests.iterdir():
            if path.stem not in keep:  # (a kept tree's manifest may still be the older JSON one)
                path.unlink(missing_ok=True)


def _with_entry(marshalled: bytes, key: str, value: str) -> bytes:
    """Return `marshal.dumps({**d, key: value}, 0)` from `marshalled`, `marshal.dumps(d, 0)`, for a
    `key` not in `d`: version 0 writes a dict as "{", its pairs in order, then "0" (no references),
    so the pair goes before that end mark (0.03 s less at 82,000 files than marshalling it again)."""
    return b"".join((marshalled[:-1], marshal.dumps(key, 0), marshal.dumps(value, 0), marshalled[-1:]))


# Manifests of the trees this process published or read, by tree id (which hashes the manifest):
# the next build of a session (serve, the daemon) starts from them instead of reading 80,000
# entries twice.
_PUBLISHED: dict[str, dict[str, str]] = {}


def forget_manifests() -> None:
    """Forget the manifests kept of published trees (read again from the cache folder when needed)."""
    _PUBLISHED.clear()


def _remove_tree(path: Path) -> None:
    """Remove a folder (or a file or link in its place) without following links out of it."""
    if path.is_symlink() or not path.is_dir():
        path.unlink()
    else:
        shutil.rmtree(path)


def _discard_tree(output: Path, tree: Path) -> None:
    """Move a tree beside `output` that no build will use out of the way in one rename;
    `SiteWriter.remove_discarded` deletes it once the build is over. Deleting it at once made the
    build wait for it (82,000 files at 10,000 articles: 12 to 57 s of a build after `--clean` or
    after the cache was deleted), and the files the build then created came slower while ext4
    skipped the freed inodes."""
    if tree.is_symlink() or (tree.exists() and not tree.is_dir()):
        tree.unlink()
        return
    if not tree.is_dir():
        return
    try:
        tree.rename(output.with_name(f".{output.name}{TRASH_INFIX}{os.urandom(6).hex()}"))
    except OSError:
        _remove_tree(tree)


def recover_interrupted_swap(output: Path) -> None:
    """Finish a two-rename swap that a crash interrupted, so the output folder is a complete site."""
    previous = output.with_name(f".{output.name}.prev")
    spare = output.with_name(f".{output.name}{_SPARE_SUFFIX}")
    if previous.exists() and not output.exists():
        if spare.exists():
            spare.rename(output)  # the new site was complete before the swap began
        else:
            previous.rename(output)
            return
    if previous.exists() and not spare.exists():
        previous.rename(spare)
    elif previous.exists():
        _discard_tree(output, previous)
    # Folders left by the earlier writer of this tool (whole-site staging); harmless to remove.
    _discard_tree(output, output.with_name(f".{output.name}.new"))
    _discard_tree(output, output.with_name(f".{output.name}.old"))


def static_files(static_dirs: Iterable[Path]) -> list[tuple[str, Path]]:
    """Return (site path, file) for the digest's `static/` folders, skipping hidden files and symlinks."""
    found: list[tuple[str, Path]] = []
    for static_dir in static_dirs:
        if not static_dir.is_dir():
            continue
        for path in sorted(p for p in static_dir.rglob("*") if p.is_file() and not p.is_symlink()):
            relative = path.relative_to(static_dir).as_posix()
            if not any(part.startswith(".") for part in PurePosixPath(relative).parts):
                found.append((relative, path))
    return found
