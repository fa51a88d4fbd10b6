"""Stage 1, load: read every file under `content/`, merge records about the same article, validate.

Errors are collected across all files and raised together, so one build run shows every problem.

A `LoadState` keeps what a build learned for the next one (in memory, and in a cache file): files
whose size and times are unchanged are not read again, and groups of records that are unchanged
give back the same `Article` objects, without merging, cleaning or checking them again. Many files
to parse are parsed in forked workers. The result never depends on any of this: see `LoadState`.
"""

from __future__ import annotations

import ctypes
import dataclasses
import datetime as dt
import errno
import gc
import hashlib
import itertools
import operator
import os
import pickle
import re
import stat
import sys
import time
import unicodedata
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from generator.cache_files import RACY_NS, bytes_digest, dump_with_parts, files_stamp, load_with_parts
from generator.errors import DigestError, Problem, ReaderError
from generator.fields import coerce_native, is_safe_id
from generator import model as model_module
from generator.model import Article, MeshTerm, PubDate, Record, SourceRef
from generator.readers import FORMAT_NAMES, READERS_BY_SUFFIX, SUPPORTED_SUFFIXES, read_text, reader_for
from generator.readahead import reading_ahead
from generator.workers import idle_cores, map_with_workers

MAX_FILE_BYTES = 50 * 1024 * 1024  # bigger than any real export; protects memory from stray dumps
# Limits on one article (issue 9): far above real records (the longest PubMed author lists have a few
# thousand names), low enough that a broken or hostile record cannot make a build take hours or
# write gigabytes (every author, keyword and MeSH term gets a page; every short field is repeated on
# listings and feeds). Longer values are cut with a warning.
MAX_AUTHORS = 10_000
MAX_TERMS = 1_000  # per list: MeSH terms, keywords, tags, publication types
MAX_SHORT_TEXT = 5_000  # characters in any one value of a field other than the long ones below
MAX_LONG_TEXT = 1_000_000  # characters in one abstract section, the notes...: a book, not an abstract
LONG_TEXT_FIELDS = frozenset({"abstract", "notes", "copyright", "conflict_of_interest", "verdict"})
# Control characters cannot be written in XML (feeds, sitemap) and mean nothing in HTML: removed.
# Tab, line feed and carriage return stay. Lone surrogates (from JSON escapes) and the two
# non-characters become U+FFFD, so every page can be encoded as UTF-8.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# When imported records about the same article disagree, the richer format wins a field.
FORMAT_PRIORITY = {"pubmed_xml": 0, "medline": 1, "pubmed_page": 2, "csl_json": 3, "ris": 4, "bibtex": 5}


class Fingerprints:
    """Content fingerprints of the articles of one load, by identity (for `link_articles`).

    `get(article)` returns bytes that differ whenever anything the article holds differs: a hash of
    its id and of its records' files (path and content hash) and positions. It is None for any
    object it does not know: a copy, an article changed or made since.
    """

    def __init__(self, pairs: Sequence[tuple[Article, bytes]] = ()):
        self._by_identity = {id(article): (article, fingerprint) for article, fingerprint in pairs}

    @classmethod
    def of(cls, by_identity: dict[int, tuple[Article, bytes]]) -> Fingerprints:
        """Return fingerprints from `id(article) -> (article, fingerprint)` (taken as it is)."""
        made = cls()
        made._by_identity = by_identity
        return made

    def get(self, article: Article) -> bytes | None:
        found = self._by_identity.get(id(article))
        return found[1] if found is not None and found[0] is article else None

    def __len__(self) -> int:
        return len(self._by_identity)


@dataclass
class LoadResult:
    articles: tuple[Article, ...]
    warnings: list[Problem] = field(default_factory=list)
    files: int = 0
    fingerprints: Fingerprints = field(default_factory=Fingerprints)  # empty unless records were cached


def content_files(content_dir: Path, problems: list[Problem] | None = None, root: Path | None = None) -> list[Path]:
    """Return every visible file under `content_dir`, sorted, without following directory symlinks.

    Walks with its own stack (os.walk recurses: 2,000 nested folders, which git can hold, would be a
    RecursionError). When `problems` is given, unreadable folders and links to folders, which are
    not followed, are reported there.
    """
    return [Path(path) for path, _, _ in _walk(content_dir, problems, root or content_dir)]


def _walk(content_dir: Path, problems: list[Problem] | None, root: Path) -> list[tuple[str, str, bool]]:
    """Return (path, path shown in messages, is a symbolic link) for each file `content_files` lists.

    Paths stay strings and the shown path is the folder's plus the name: 10,000 `Path` objects and
    `relative_to` calls cost more than the rest of an unchanged build's walk.
    """
    found: list[tuple[str, str, bool]] = []
    stack = [content_dir]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as entries:
                listing = sorted(entries, key=lambda e: e.name)
        except OSError as exc:
            if problems is not None:
                problems.append(Problem(_shown_path(folder, root), f"cannot read folder: "
                                        f"{exc.strerror or exc}", hint="check its permissions"))
            continue
        shown_folder = _shown_path(folder, root)
        prefix = "" if shown_folder == "." else shown_folder.rstrip("/") + "/"
        folders = []
        for entry in listing:
            try:
                is_folder = entry.is_dir(follow_symlinks=False)
                is_link = entry.is_symlink()
                linked_folder = is_link and entry.is_dir()
            except OSError:
                is_folder = linked_folder = is_link = False
            if is_folder:
                if not entry.name.startswith((".", "_")):
                    folders.append(Path(entry.path))
            elif linked_folder:
                if problems is not None and not entry.name.startswith((".", "_")):
                    problems.append(Problem(prefix + entry.name,
                                            "is a symbolic link to a folder; links to folders are not followed",
                                            severity="warning", hint="copy the records into content/"))
            elif not entry.name.startswith((".", "~")):
                found.append((entry.path, prefix + entry.name, is_link))
        stack.extend(reversed(folders))
    return found


ReadFile = Callable[[Path, str], tuple[list[Record], list[Problem]]]


def read_file(path: Path, shown: str) -> tuple[list[Record], list[Problem]]:
    """Read one content file into records; every failure becomes a problem, never an exception."""
    data, problems = read_content_bytes(path, shown)
    if data is None:
        return [], problems
    return records_from_bytes(path, shown, data)


def read_content_bytes(path: Path, shown: str) -> tuple[bytes | None, list[Problem]]:
    """Return a content file's bytes, or None and the problem: only regular files, only up to the limit.

    The size is checked before reading (a 1 GB sparse file costs nothing), and a pipe or device is
    never opened (reading one would block or never end).
    """
    try:
        info = path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None, [Problem(shown, "is a symbolic link loop; skipped", severity="warning",
                                  hint="remove the link")]
        if path.is_symlink():
            return None, [Problem(shown, f"is a broken symbolic link (to {_link_target(path)})",
                                  hint="restore the file it points to, or remove the link")]
        return None, [Problem(shown, f"cannot read file: {exc.strerror or exc}", hint="check its permissions")]
    if not stat.S_ISREG(info.st_mode):
        return None, [Problem(shown, "is not a regular file (a pipe, socket or device); skipped", severity="warning",
                              hint="move it out of content/")]
    if info.st_size > MAX_FILE_BYTES:
        return None, [Problem(shown, f"file is larger than {MAX_FILE_BYTES // 2**20} MB "
                                     f"({info.st_size / 2**20:,.0f} MB)", hint="split it")]
    try:
        with open(path, "rb") as stream:
            # What stat() gave and one byte more: asking for the limit makes Python allocate 50 MB
            # for each file (20 us a file instead of 50-70). One byte more says it has grown since.
            data = stream.read(info.st_size + 1)
            if len(data) > info.st_size:
                data += stream.read(MAX_FILE_BYTES + 1 - len(data))
    except OSError as exc:
        return None, [Problem(shown, f"cannot read file: {exc.strerror or exc}", hint="check its permissions")]
    if len(data) > MAX_FILE_BYTES:
        return None, [Problem(shown, f"file is larger than {MAX_FILE_BYTES // 2**20} MB", hint="split it")]
    return data, []


def _link_target(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "?"


def records_from_bytes(path: Path, shown: str, data: bytes) -> tuple[list[Record], list[Problem]]:
    """Decode a content file and run the reader for its format."""
    head = data[:8192]
    if path.suffix.lower() not in READERS_BY_SUFFIX and path.suffix.lower() != ".txt":
        if b"\x00" in head:
            return [], [Problem(shown, "is a binary file, not a record", severity="warning",
                                hint="move it out of content/ or into static/")]
    elif head.count(b"\x00") > len(head) // 8:
        # Many NULs: UTF-16 text (Windows "Unicode") or a binary file under a record's name.
        return [], [Problem(shown, "is UTF-16 text or a binary file, not UTF-8 text", line=1,
                            hint="save the file as UTF-8, or move it out of content/")]
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        return [], [Problem(shown, f"is not UTF-8 text (byte 0x{data[exc.start]:02x})", line=line,
                            hint="save the file as UTF-8")]
    fmt = reader_for(path.suffix, text)
    if fmt is None:
        supported = "; ".join(FORMAT_NAMES.values())
        return [], [Problem(shown, f"unsupported file type '{path.suffix or path.name}'", severity="warning",
                            hint=f"supported: {supported}")]
    try:
        result = read_text(fmt, text, shown)
    except ReaderError as exc:
        return [], exc.problems
    except RecursionError:
        return [], [Problem(shown, "is nested too deeply to read")]
    return result.records, result.problems


# Reading, with what earlier builds learned ------------------------------------------------------

PARALLEL_FILES = 400  # parse in forked workers when at least this many files must be read
_SHARDS = 64  # the cache file keeps merged articles in this many separately pickled parts
_ID_FIELDS = ("id", "pmid", "doi", "title")  # the merged fields that decide an article's id
ARTICLE_FIELDS = frozenset(Article.__dataclass_fields__)
_ARTICLE_FIELDS = tuple(Article.__dataclass_fields__)
_ARTICLE_VALUES = operator.attrgetter(*_ARTICLE_FIELDS)
# The fields of an article the cache file keeps apart, read back only when something reads one of
# them (see `_CachedArticle`): an edit's build reads none of them for the articles it did not
# change, and they are most of what unpickling the articles cost (the authors and MeSH headings
# are 300,000 small objects at 10,000 articles).
_DEFERRED_FIELDS = ("authors", "abstract", "mesh_terms", "substances", "grants", "notices", "linkout", "history")
_EAGER_FIELDS = tuple(name for name in _ARTICLE_FIELDS if name not in _DEFERRED_FIELDS)
_EAGER_VALUES = operator.attrgetter(*_EAGER_FIELDS)
_DEFERRED_VALUES = operator.attrgetter(*_DEFERRED_FIELDS)


class _FileEntry:
    """What one content file gave, and how to tell next time that it has not changed.

    `signature` is (size, mtime_ns, inode, device, ctime_ns), taken at `seen_ns` (wall clock), before
    the bytes whose hash is `digest` were read. `problems` are the reader's and the field checks', in
    report order. `identities` holds (PMID, lower-case DOI) per record, which is all grouping needs;
    `records` (validated), `clean` (see `_is_clean`) and `single` (each record merged alone, what
    most groups are: done where the file was parsed, in a worker for a big build) are None in an
    entry read back from the cache file until a group that changed needs them: then the file is
    parsed again.
    """

    __slots__ = ("signature", "seen_ns", "digest", "problems", "identities", "records", "clean", "single")

    def __init__(self, signature: tuple | None, seen_ns: int, digest: str, problems: list[Problem],
                 identities: tuple[tuple[Any, str], ...], records: list[Record] | None = None,
                 clean: list[bool] | None = None, single: list[_Merged] | None = None):
        self.signature = signature
        self.seen_ns = seen_ns
        self.digest = digest
        self.problems = problems
        self.identities = identities
        self.records = records
        self.clean = clean
        self.single = single

    @property
    def trusted(self) -> bool:
        """Return True when an unchanged signature means unchanged bytes (not racily clean)."""
        return self.signature is not None and self.signature[1] + RACY_NS < self.seen_ns

    def saved(self) -> tuple:
        return (self.signature, self.seen_ns, self.digest, self.problems, self.identities)


def _signature(info: os.stat_result) -> tuple[int, int, int, int, int]:
    return (info.st_size, info.st_mtime_ns, info.st_ino, info.st_dev, info.st_ctime_ns)


def _look(path: str, shown: str, is_link: bool, old: _FileEntry | None, stats: Mapping[str, os.stat_result],
          inside: tuple[Path, ...], now: int, entries: dict[str, _FileEntry], jobs: list[tuple]) -> str | list[Problem]:
    """Look at one file of a cached load: return its slot (its shown path, or the problem of a link
    that leads outside); put its entry in `entries` when its signature says it is unchanged, else a
    job to read it in `jobs`."""
    if is_link:
        outside = _links_outside(Path(path), shown, inside)
        if outside:
            return [outside]
    try:
        signature = _readable_signature(stats.get(path) or os.stat(path))
    except OSError:
        signature = None  # reading it says what is wrong
    if old is not None and signature is not None and old.signature == signature and old.trusted:
        entries[shown] = old
    else:
        jobs.append((path, shown, signature, now, old.digest if old is not None else None))
    return shown


def _settled(file: tuple[str, str, bool], info: os.stat_result | None, entry: _FileEntry | None) -> bool:
    """Return True when `_look` would take the file's entry as it is (for a file that is no link)."""
    return not file[2] and entry is not None and info is not None and entry.trusted and \
        entry.signature == _readable_signature(info)


def _readable_signature(info: os.stat_result) -> tuple[int, int, int, int, int] | None:
    """A file's signature when it is a regular file small enough to read, else None."""
    return _signature(info) if stat.S_ISREG(info.st_mode) and info.st_size <= MAX_FILE_BYTES else None


# An edit's load (`LoadState._load_edit`) looks at no more files than this; more: the whole load.
_EDIT_FILES = 256


@dataclass
class _Recent:
    """What a session's last load leaves for the next (`LoadState._load_edit`), with the walk of
    content/ it went over (the same list object while the input check vouches for it)."""

    files: list[tuple[str, str, bool]]
    paths: list[str]  # each file's path, as the input check names it
    stated: list[os.stat_result | None]  # per file, the input check's `os.stat` result (new when stated again)
    looked_at: list[int]  # files looked into rather than taken as they were: links, files read, gone
    slots: list[str | list[Problem]]
    entries: dict[str, _FileEntry]
    groups: list[tuple]
    merges: list[_Merged]
    walk_problems: list[Problem]
    horizon: tuple[int, int, int]
    notes: dict[int, list[Problem]]  # per group number, the problems `_claim` added making its article
    problems: tuple[list[Problem], list[Problem], list[Problem]]  # the result's: files', groups', `_claim`'s
    result: tuple  # (articles, problems, files, fingerprints)
    _group_numbers: dict[str, list[int]] | None = None
    _article_positions: list[int | None] | None = None

    def group_numbers(self) -> dict[str, list[int]]:
        """Return, per file (shown path), the numbers of the groups that hold its records."""
        if self._group_numbers is None:
            numbers: dict[str, list[int]] = {}
            for number, group in enumerate(self.groups):
                for key in group:
                    numbers.setdefault(key[0], []).append(number)
            self._group_numbers = numbers
        return self._group_numbers

    def article_positions(self) -> list[int | None]:
        """Return, per group number, where its article is in the result (None: it has none)."""
        if self._article_positions is None:
            at = {id(article): position for position, article in enumerate(self.result[0])}
            self._article_positions = [at[id(m.article)] if m.article is not None else None for m in self.merges]
        return self._article_positions


def _merged(group: tuple, entries: dict[str, _FileEntry], before: dict[tuple, _Merged],
            shared: _Interner) -> _Merged | None:
    """Return a group's merge: the last load's for the same group, else made from its records (its
    new values made one object with equal ones through `shared`); None when a record of it is not
    at hand (its entry came from the cache file)."""
    merge = before.get(group)
    if merge is not None:
        return merge
    if any(entries[key[0]].records is None for key in group):
        return None
    if len(group) == 1:
        shown, _, index = group[0]
        merge = entries[shown].single[index]  # type: ignore[index]
    else:
        merge = _merge_group([entries[k[0]].records[k[2]] for k in group],  # type: ignore[index]
                             all(entries[k[0]].clean[k[2]] for k in group))  # type: ignore[index]
    if merge.values is not None and merge.article is None:
        shared.share(merge.values)
    return merge


def _file_entry(signature: tuple | None, seen_ns: int, digest: str, found: list[Record],
                found_problems: list[Problem]) -> _FileEntry:
    """Validate native records (fields.py) and note what grouping and cleaning need of each record."""
    problems = list(found_problems)
    records: list[Record] = []
    for record in found:
        if record.native:
            fields, coerce_problems = coerce_native(record)
            problems.extend(coerce_problems)
            record = Record(fields=fields, source=record.source, native=True,
                            field_lines=record.field_lines, format=record.format)
        records.append(record)
    identities = tuple(_identity_key(record) for record in records)
    clean = [_is_clean(record.fields) for record in records]
    single = [_merge_group([record], ok) for record, ok in zip(records, clean)]
    return _FileEntry(signature, seen_ns, digest, problems, identities, records, clean, single)


def _identity_key(record: Record) -> tuple[Any, str]:
    return (record.fields.get("pmid") or "", (record.fields.get("doi") or "").lower())


# What reading one file gave: a new entry, its digest when the bytes are those of the entry we had,
# or the problems that kept it from being read (never cached: a missing or unreadable file).
_Outcome = "_FileEntry | str | list[Problem]"


def _read_one(job: tuple[str, str, tuple | None, int, str | None]) -> _Outcome:
    path, shown, signature, seen_ns, known_digest = job
    data, problems = read_content_bytes(Path(path), shown)
    if data is None:
        return problems
    digest = bytes_digest(data)
    if digest == known_digest:
        return digest
    found, found_problems = records_from_bytes(Path(path), shown, data)
    return _file_entry(signature, seen_ns, digest, found, found_problems)


def _read_chunk(jobs: list[tuple]) -> list[_Outcome]:
    return [_read_one(job) for job in jobs]


def _read_files(jobs: list[tuple], workers: int) -> list[_Outcome]:
    """Read (and parse when the bytes are new) each job's file, on `workers` cores when it pays.

    This process reads its share while forked workers read the rest and send back what they found
    (pickled); the order, and so the result, is that of a single process. Should the pool fail (a
    result that cannot be pickled, a killed worker), this process reads their share too.
    """
    if workers <= 1 or len(jobs) < PARALLEL_FILES:
        with reading_ahead(_reading_order(jobs, [], 0)):
            return _read_chunk(jobs)
    # An equal share: a worker also pickles what it parsed and this process unpickles it (0.07 to
    # 0.18 ms a file each way, where parsing takes 0.5-0.6). It reads its share in pieces and takes in
    # the workers' results between them, as they come (see map_with_workers): the smaller the
    # workers' chunks, the less is left to take in once they are all done.
    mine = len(jobs) // workers
    step = max(25, mine // 8)
    pieces = [jobs[i: min(i + step, mine)] for i in range(0, mine, step)]
    rest = jobs[mine:]
    size = max(25, len(rest) // ((workers - 1) * 8))
    chunks = [rest[i: i + size] for i in range(0, len(rest), size)]
    with reading_ahead(_reading_order(jobs[:mine], rest, workers - 1)):
        return [outcome for part in map_with_workers(_read_chunk, pieces, chunks, workers - 1) for outcome in part]


def _reading_order(mine: list[tuple], rest: list[tuple], workers: int) -> list[str]:
    """Return the paths of the regular files among the jobs in the order the readers come to them:
    this process reads its share from the front while `workers` processes read the rest from the
    front, `workers` times as fast between them."""
    order = []
    for position, job in enumerate(mine):
        order.append(job)
        order.extend(rest[position * workers: (position + 1) * workers])
    order.extend(rest[len(mine) * workers:])
    return [job[0] for job in order if job[2] is not None]


def _code_stamp() -> str:
    """Return a stamp of the code that turns files into articles, so a changed reader never reuses
    old results."""
    from generator import __version__

    folder = Path(__file__).parent
    files = sorted((folder / "readers").glob("*.py")) + [folder / name for name in
                                                          ("load.py", "fields.py", "model.py", "errors.py")]
    return f"{__version__}:{sys.version_info[:2]}:{files_stamp(files)}"


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while loading makes (or unpickles) a million small objects,
    none in cycles: each automatic collection would walk them again (unpickling the cache takes 3x
    longer with it). Afterwards they go straight to the oldest generation (`gc.freeze` then
    `gc.unfreeze`), so the first collections after the pause do not walk them all either."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            # Never unfreeze what someone else froze (`freeze_for_good`). Asked through a flag:
            # gc.get_freeze_count() walks every frozen object (15 ms at 1,000 articles).
            if not _frozen_for_good:
                gc.freeze()
                gc.unfreeze()
            else:  # what was made meanwhile lives as long as the process too: out of reach as well
                gc.freeze()  # (else the next collection walks the plan's 100,000s of objects: 0.2 s)
            gc.enable()


_frozen_for_good = False


def freeze_for_good(collect: bool = True) -> None:
    """Move every object alive now out of the collector's reach for the rest of the process
    (`gc.freeze`), e.g. what a long-running server keeps; loading then leaves it frozen. Without
    `collect`, garbage in cycles alive now stays too (for a process about to end)."""
    global _frozen_for_good
    if collect:
        gc.collect()
    gc.freeze()
    _frozen_for_good = True


def collect_frozen_garbage() -> None:
    """Collect, in a process that froze what it keeps (`freeze_for_good`), what has since become
    garbage: objects in cycles made during a build's paused sections (each build's renderer and
    digest, 5 MB at 10,000 articles) are frozen with the rest at the end of the section and would
    never be collected; a long-running process grew by that much with each build. A full pass over
    everything (0.6 s at 10,000 articles): call it while idle."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    release_free_memory()


def release_free_memory() -> None:
    """Give the system back the memory the C heap holds free (glibc's `malloc_trim`), in a process
    that builds again (serve, the daemon). A build's large strings and buffers (pages, pickled
    caches) are freed into the heap, which keeps most of it: the daemon held 609 MB after a new
    site title and an edit at 10,000 articles, and 507 MB once trimmed, which the next build's peak
    then starts from. A few milliseconds; nothing where the C library is not glibc."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            _malloc_trim = ctypes.CDLL(None).malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim: Any = None  # glibc's malloc_trim, once looked up (False: none here)


class LoadState:
    """What `load_articles` learned about a digest, so that the next build does only what changed.

    Keep one alive between builds in one process (`digest serve`) and pass it to every call::

        state = LoadState(root / ".digest-cache" / "records.pickle")  # or LoadState() for memory only
        loaded = load_articles(content_dir, root, state=state)  # every build, with the same state

    - A file whose path, size, mtime_ns, ctime_ns, inode and device are unchanged is not read,
      hashed or parsed again (unless it was modified within 2 s of being looked at: then it is
      hashed, and parsed only if its bytes changed). Nothing changed at all (and the same day, for
      "date in the future" warnings): the previous result is returned as it was.
    - An article whose group of records (by file path, content hash and position) and id are
      unchanged comes back as the same `Article` object as in the previous build; cleaning, bounds
      and checks run only for new groups. Their warnings are still reported every build.
    - With a `cache_file`, the state is read back from it by the first build (of a new process) and
      saved there (atomically, only when something changed) after each build, or only when `save()`
      is called if `autosave` is False (at 10,000 articles saving takes 0.5 s after a first build,
      0.1 s after a small change). It holds the merged articles and what each file gave, not the
      records: a group that changed is parsed again from its files. Deleting it is always safe; a
      cache written by other code (readers, fields, model, load) or for other folders is ignored.

    A state belongs to one digest (content folder and root): called with others, it starts afresh.
    It is not thread-safe: builds must not run at the same time.
    """

    # 5: a shard's groups and deferred fields are parts of the file (`cache_files.dump_with_parts`);
    # 4: each shard's deferred article fields apart (3: merged articles and file signatures)
    VERSION = 5

    def __init__(self, cache_file: Path | None = None, autosave: bool = True):
        self.cache_file = cache_file
        self.autosave = autosave
        self._files: dict[str, _FileEntry] = {}
        self._groups: dict[tuple, _Merged] = {}
        self._order: tuple[list[tuple], list[int]] = ([], [])  # the last sort keys, their permutation
        self._roots: tuple[str, str] | None = None
        self._cache_read = cache_file is None
        # Each shard as last saved: its groups pickled, its deferred fields pickled, their CRC-32.
        self._blobs: list[tuple[Any, Any, int] | None] = [None] * _SHARDS
        self._saved_files = False  # whether the cache file holds `_files` as they are
        self._last: tuple | None = None  # (inputs, result) of the last build, see `_load`
        self._id_plan: IdPlan | None = None  # the last build's ids (see `_claim`), in this process
        self._walked: tuple[object, list, list[Problem]] | None = None  # (listing, files, problems)
        self._recent: _Recent | None = None  # what an edit's load starts from (see `_load_edit`)

    def clear(self) -> None:
        """Forget everything (the cache file stays, and is not read again)."""
        self._files, self._groups, self._blobs = {}, {}, [None] * _SHARDS
        self._saved_files = False
        self._last = None
        self._id_plan = None
        self._walked = None
        self._recent = None

    def confirm_settled_files(self, content_dir: Path, root: Path) -> int:
        """Hash again the files the last build saw within 2 s of their last change ("racily clean",
        which the next build would hash), once that change is older than 2 s: each whose signature
        and bytes are still those of its entry is trusted from now on. Return how many.

        For a process idle between builds (the daemon, once its client has its answer): a build
        right after the files were copied or checked out left every one of them to be hashed again
        by the next edit (0.2-0.4 s at 10,000 articles)."""
        racy = {shown for shown, entry in self._files.items() if entry.signature is not None and not entry.trusted}
        confirmed = 0
        for path, shown, is_link in _walk(content_dir, None, root) if racy else ():
            entry = self._files.get(shown)
            if is_link or shown not in racy or entry is None:
                continue
            seen = time.time_ns()
            if entry.signature[1] + RACY_NS >= seen:  # changed too recently still
                continue
            try:
                info = os.stat(path)
            except OSError:
                continue
            if _signature(info) != entry.signature:
                continue  # changed since: the next build reads it
            data, _ = read_content_bytes(Path(path), shown)
            if data is not None and bytes_digest(data) == entry.digest:
                entry.seen_ns = seen
                confirmed += 1
        if confirmed:
            self._saved_files = False
        return confirmed

    def save(self) -> None:
        """Write the cache file now if it does not hold the state (see `autosave`)."""
        with collector_paused():
            self._save()

    def file_digest(self, shown: str, size: int, mtime_ns: int) -> str | None:
        """Return the hash of a content file's bytes (by the path shown in messages) as this state
        last read them, when they had this size and modification time and the state vouches for
        them (not racily clean), else None."""
        entry = self._files.get(shown)
        if entry is None or not entry.trusted or not entry.digest or entry.signature[:2] != (size, mtime_ns):  # type: ignore[index]
            return None
        return entry.digest

    def drop_pickles(self) -> None:
        """Free the cache file's bytes of the articles, which this state holds unpickled (a process
        that builds again: 39 MB at 10,000 articles); the next save pickles them again."""
        self._blobs = [None] * _SHARDS

    def load(self, content_dir: Path, root: Path, read: ReadFile = read_file, jobs: int | None = None,
             stats: Mapping[str, os.stat_result] | None = None, listing: object = None) -> LoadResult:
        """Do what `load_articles` does (see there), reusing and updating this state."""
        roots = (os.path.abspath(content_dir), os.path.abspath(root))
        if self._roots is not None and self._roots != roots:
            self.clear()
        self._roots = roots
        with collector_paused():
            if not self._cache_read:
                self._cache_read = True
                self._read_cache()
            try:
                return self._load(content_dir, root, read, idle_cores(jobs), stats or {}, listing)
            finally:
                if self.autosave:
                    self._save()

    # One build ----------------------------------------------------------------------------------

    def _load(self, content_dir: Path, root: Path, read: ReadFile, workers: int,
              stats: Mapping[str, os.stat_result], listing: object) -> LoadResult:
        if listing is not None and self._walked is not None and self._walked[0] is listing:
            files, walk_problems = self._walked[1], list(self._walked[2])
        else:
            walk_problems = []
            files = _walk(content_dir, walk_problems, root)
            self._walked = (listing, files, list(walk_problems)) if listing is not None else None
        inside = _allowed_roots(content_dir, root)
        cached = read is read_file
        today = dt.date.today()
        horizon = (today.year + 1, today.month, today.day)
        recent = self._recent
        self._recent = None  # set again below once this load is through
        if cached and recent is not None and recent.files is files and recent.horizon == horizon:
            edited = self._load_edit(recent, stats, inside, workers)
            if edited is not None:
                return edited
        old_files = self._files if cached else {}
        # Per file, in order: its shown path (its entry is in `entries`) or the problems it gave.
        slots: list[str | list[Problem]] = []
        entries: dict[str, _FileEntry] = {}
        jobs: list[tuple] = []
        now = time.time_ns()
        looked_at: list[int] = []  # the files looked into, not taken as they were (see `_Recent`)
        for position, (path, shown, is_link) in enumerate(files):
            if not cached:
                slots.append(shown)
                if is_link:
                    outside = _links_outside(Path(path), shown, inside)
                    if outside:
                        slots[-1] = [outside]
                        continue
                found, found_problems = read(Path(path), shown)
                entries[shown] = _file_entry(None, 0, "", found, found_problems)
                continue
            slots.append(_look(path, shown, is_link, old_files.get(shown), stats, inside, now, entries, jobs))
            if is_link or shown not in entries:
                looked_at.append(position)
        groups_before = self._groups if cached else {}
        outcomes = _read_files(jobs, workers) if jobs else []
        changed = bool(jobs) or len(entries) != len(old_files)
        for job, outcome in zip(jobs, outcomes):
            self._settle(job, outcome, entries, slots, old_files)
        if cached:  # the same files as last time, and the same day: the same result
            inputs = (horizon, tuple(walk_problems), tuple(s if isinstance(s, str) else tuple(s) for s in slots),
                      tuple(entries[s] for s in slots if isinstance(s, str)))
            if self._last is not None and self._last[0] == inputs:
                self._files = entries
                if changed:  # new signatures for the same bytes
                    self._saved_files = False
                return self._result(*self._last[1])
        while True:
            problems = list(walk_problems)
            items: list[tuple[tuple, Any, str]] = []
            for slot in slots:
                if isinstance(slot, list):
                    problems.extend(slot)
                    continue
                entry = entries[slot]
                problems.extend(entry.problems)
                items.extend(((slot, entry.digest, index), pmid, doi)
                             for index, (pmid, doi) in enumerate(entry.identities))
            groups = _identity_groups(items)
            # Files whose records a new group needs, when only their cached outcome is at hand.
            missing = {key[0] for group in groups if group not in groups_before
                       for key in group if entries[key[0]].records is None}
            if not missing:
                break
            for job in [(path, shown, None, now, None) for path, shown, _ in files if shown in missing]:
                self._settle(job, _read_one(job), entries, slots, old_files, reparsed=True)
        shared = _Interner()
        merges = [(group, _merged(group, entries, groups_before, shared)) for group in groups]  # (none missing)
        notes: dict[int, list[Problem]] = {}
        file_part_end = len(problems)
        _, id_plan = _claim([merge for _, merge in merges], problems, horizon, self._id_plan if cached else None,
                            notes)
        made = self._newest_first([m for _, m in merges if m.article is not None])
        articles = tuple(m.article for m in made)
        prints = Fingerprints([(m.article, _fingerprint(group, m)) for group, m in merges if m.article is not None]
                              if cached else ())
        result = (articles, problems, len(files), prints)
        if cached:
            self._groups = dict(merges)
            self._mark_changes(groups_before, changed)
            self._files = entries
            self._last = (inputs, result)
            self._id_plan = id_plan
            if listing is not None:
                paths = [path for path, _, _ in files]
                group_part_end = file_part_end + sum(len(m.problems) for _, m in merges)
                parts = (problems[:file_part_end], problems[file_part_end:group_part_end], problems[group_part_end:])
                self._recent = _Recent(files, paths, list(map(stats.get, paths)), looked_at, slots, entries,
                                       [g for g, _ in merges], [m for _, m in merges], walk_problems, horizon,
                                       notes, parts, result)
        return self._result(*result)

    def _load_edit(self, recent: _Recent, stats: Mapping[str, os.stat_result], inside: tuple[Path, ...],
                   workers: int) -> LoadResult | None:
        """`_load` for a few changed files among the same ones (a session's edit), from what the last
        load left (`_Recent`): only the files the input check stated again (a new `os.stat` result),
        and those looked into last time, are looked at; groups, merges, ids, order, fingerprints and
        problems are the last load's but for the groups of files that changed. None when that does
        not hold (a file's records changed identity, a group needs records not at hand, an id or the
        order may move): then `_load` does it all, as it would have. The result is `_load`'s."""
        files = recent.files
        stated = list(map(stats.get, recent.paths))  # (in C, as what follows)
        if None in stated:
            return None
        old_files = self._files
        # Files looked into last time are again, but those whose entry `_look` would now take as
        # it is (read by a cold build, since confirmed while idle: `confirm_settled_files`).
        again = [n for n in recent.looked_at if not _settled(files[n], stated[n], old_files.get(files[n][1]))]
        positions = sorted({*replaced_positions(stated, recent.stated), *again})
        if len(positions) > _EDIT_FILES:
            return None
        slots, entries = list(recent.slots), dict(recent.entries)
        jobs: list[tuple] = []
        now = time.time_ns()
        looked_at = []
        for position in positions:
            path, shown, is_link = files[position]
            entries.pop(shown, None)
            slots[position] = _look(path, shown, is_link, old_files.get(shown), stats, inside, now, entries, jobs)
            if is_link or shown not in entries:
                looked_at.append(position)
        outcomes = _read_files(jobs, workers) if jobs else []
        for job, outcome in zip(jobs, outcomes):
            self._settle(job, outcome, entries, slots, old_files)
        changed = [n for n in positions if slots[n] != recent.slots[n]
                   or entries.get(files[n][1]) is not recent.entries.get(files[n][1])]
        if not changed:  # the same entries: the same result
            self._files = entries
            if jobs:
                self._saved_files = False
            self._recent = dataclasses.replace(recent, stated=stated, looked_at=looked_at, entries=entries)
            return self._result(*recent.result)
        for n in changed:
            shown = files[n][1]
            entry, before = entries.get(shown), recent.entries.get(shown)
            if entry is None or before is None or entry.identities != before.identities or entry.single is None:
                return None  # grouped otherwise: all of `_load`
        groups, merges = list(recent.groups), list(recent.merges)
        groups_before = self._groups
        shared = _Interner()
        numbers = sorted({number for n in changed for number in recent.group_numbers().get(files[n][1], ())})
        for number in numbers:
            group = tuple((key[0], entries[key[0]].digest, key[2]) for key in groups[number])
            merge = _merged(group, entries, groups_before, shared)
            if merge is None:
                return None  # records not at hand: `_load` parses them again
            groups[number], merges[number] = group, merge
        plan = self._id_plan.again_at(merges, numbers) if self._id_plan is not None else None
        if plan is None:
            return None  # an id may move: claimed afresh by `_load`
        notes = dict(recent.notes)
        articles = list(recent.result[0])
        at = recent.article_positions()
        prints = dict(recent.result[3]._by_identity)
        for number in numbers:
            before, merge = recent.merges[number], merges[number]
            found: list[Problem] = []
            article = merge.article
            if merge.notes or article is None or article.id != plan.ids[number]:
                article = merge.article_for(plan.ids[number], found, recent.horizon)  # type: ignore[arg-type]
            notes.pop(number, None)
            if found:
                notes[number] = found
            if (article is None) != (before.article is None) or (
                    article is not None and merge.order() != before.order()):
                return None  # the articles' order may change: sorted afresh by `_load`
            if article is not None:
                articles[at[number]] = article  # type: ignore[index]
                prints.pop(id(before.article), None)
                prints[id(article)] = (article, _fingerprint(groups[number], merge))
        # The problems in `_load`'s order, each part made again only when a file or group that
        # changed has some: the files', the groups', then those of making the articles.
        file_part, group_part, claim_part = recent.problems
        if any(slots[n].__class__ is list or recent.slots[n].__class__ is list or entries[files[n][1]].problems
               or recent.entries[files[n][1]].problems for n in changed):
            file_part = list(recent.walk_problems)
            for slot in slots:
                file_part.extend(slot if slot.__class__ is list else entries[slot].problems)  # type: ignore[index]
        if any(merges[n].problems or recent.merges[n].problems for n in numbers):
            group_part = [p for merge in merges for p in merge.problems]
        if any(n in notes or n in recent.notes for n in numbers):
            claim_part = []
            for event in plan.events:  # in the order `_claim` adds them
                if event.__class__ is int:
                    claim_part.extend(notes.get(event, ()))  # type: ignore[call-overload]
                else:
                    claim_part.append(event)  # type: ignore[arg-type]
        result = (tuple(articles), [*file_part, *group_part, *claim_part], len(files), Fingerprints.of(prints))
        groups_now = dict(self._groups)
        for number in numbers:
            groups_now.pop(recent.groups[number], None)
            groups_now[groups[number]] = merges[number]
            merges[number].changed = False
            self._blobs[_shard(groups[number])] = None
            self._blobs[_shard(recent.groups[number])] = None
        self._groups = groups_now
        self._saved_files = False
        self._files = entries
        self._last = None  # (`_load` compares its inputs with the last ones: not made here)
        self._id_plan = plan
        self._recent = _Recent(files, recent.paths, stated, looked_at, slots, entries, groups, merges,
                               recent.walk_problems, recent.horizon, notes, (file_part, group_part, claim_part),
                               result, recent.group_numbers(), at)
        return self._result(*result)

    def _newest_first(self, merged: list[_Merged]) -> list[_Merged]:
        """Return `merged` sorted by `_Merged.order`: in the last build's permutation when the keys,
        in the same order, are the last build's (an edit that kept the dates and ids), which is what
        a stable sort of equal keys gives."""
        keys = [m.order() for m in merged]
        last_keys, permutation = self._order
        if keys != last_keys:
            permutation = sorted(range(len(keys)), key=keys.__getitem__)
            self._order = (keys, permutation)
        return [merged[i] for i in permutation]

    @staticmethod
    def _result(articles: tuple[Article, ...], problems: list[Problem], files: int, prints: Fingerprints) -> LoadResult:
        """Raise the errors among the problems, or return the result with the warnings sorted."""
        if any(p.severity == "error" for p in problems):
            raise DigestError(problems)
        warnings = sorted((p for p in problems if p.severity != "error"), key=lambda p: p.sort_key)
        return LoadResult(articles=articles, warnings=warnings, files=files, fingerprints=prints)

    @staticmethod
    def _settle(job: tuple, outcome: _Outcome, entries: dict[str, _FileEntry], slots: list,
                old_files: dict[str, _FileEntry], reparsed: bool = False) -> None:
        """Put what reading a file gave in its slot: its entry, or the problems it has."""
        path, shown, signature, seen_ns, _ = job
        if isinstance(outcome, list):
            entries.pop(shown, None)
            slots[slots.index(shown)] = outcome
        elif isinstance(outcome, str):  # the bytes we had: keep the entry, with the new signature
            entry = old_files[shown]
            entry.signature, entry.seen_ns = signature, seen_ns
            entries[shown] = entry
        elif reparsed and outcome.digest == entries[shown].digest:
            entry = entries[shown]
            entry.records, entry.clean, entry.single = outcome.records, outcome.clean, outcome.single
        else:
            entries[shown] = outcome
            if reparsed:  # it changed since it was looked at: the newer bytes win
                outcome.signature, outcome.seen_ns = None, 0

    # The cache file -------------------------------------------------------------------------------

    def _mark_changes(self, groups_before: dict[tuple, _Merged], files_changed: bool) -> None:
        """Note which parts of the cache file no longer hold the state."""
        if files_changed:
            self._saved_files = False
        for group, merge in self._groups.items():
            if merge.changed or group not in groups_before:
                self._blobs[_shard(group)] = None
                merge.changed = False
        for group in groups_before:
            if group not in self._groups:
                self._blobs[_shard(group)] = None

    def _read_cache(self) -> None:
        try:
            stamp, roots, files, blobs = load_with_parts(self.cache_file)  # type: ignore[arg-type]
            if stamp != (self.VERSION, _code_stamp()) or roots != self._roots or len(blobs) != _SHARDS:
                return
            groups: dict[tuple, _Merged] = {}
            for pickled_groups, deferred, check in blobs:
                if zlib.crc32(deferred) != check:  # read only when used: damage found now, not then
                    raise ValueError("a damaged shard")
                shard = _DeferredFields(deferred)
                for group, saved in pickle.loads(pickled_groups).items():
                    groups[group] = _Merged.from_saved(saved, shard)
            self._files = {shown: _FileEntry(*saved) for shown, saved in files.items()}
            self._groups, self._blobs, self._saved_files = groups, list(blobs), True
        except Exception:  # noqa: BLE001 - a missing, stale or corrupt cache only costs reading again
            self.clear()

    def _save(self) -> None:
        """Write the cache file when it no longer holds the state; failing to is never an error."""
        if self.cache_file is None or (self._saved_files and all(b is not None for b in self._blobs)):
            return
        temporary = self.cache_file.with_name(f"{self.cache_file.name}.{os.getpid()}.tmp")
        try:
            shards: list[tuple[dict[tuple, tuple], list]] = [({}, []) for _ in range(_SHARDS)]
            for group, merge in self._groups.items():
                number = _shard(group)
                if self._blobs[number] is None:
                    saved_groups, deferred = shards[number]
                    saved_groups[group], values = merge.saved()
                    deferred.append(values)
            for number, blob in enumerate(self._blobs):
                if blob is None:
                    saved_groups, deferred = shards[number]
                    data = pickle.dumps(deferred, protocol=pickle.HIGHEST_PROTOCOL)
                    self._blobs[number] = (pickle.dumps(saved_groups, protocol=pickle.HIGHEST_PROTOCOL), data,
                                           zlib.crc32(data))
            files = {shown: entry.saved() for shown, entry in self._files.items()}
            parts = [(pickle.PickleBuffer(groups), pickle.PickleBuffer(data), check)
                     for groups, data, check in self._blobs]  # type: ignore[misc]
            self.cache_file.parent.mkdir(parents=True, exist_ok=True)
            with open(temporary, "wb") as stream:
                dump_with_parts(((self.VERSION, _code_stamp()), self._roots, files, parts), stream)
            os.replace(temporary, self.cache_file)
            self._saved_files = True
        except Exception:  # noqa: BLE001 - the cache is an optimisation; the next build does the work
            self._blobs = [None] * _SHARDS
            try:
                temporary.unlink()
            except OSError:
                pass


def _fingerprint(group: tuple, merge: _Merged) -> bytes:
    """Return (and keep) the fingerprint of a group's article: its id and its records' keys (file
    path, content hash, position) decide all it holds, with this code (the cache stamp)."""
    if not merge.fingerprint:
        text = repr((group, merge.article.id))  # type: ignore[union-attr]
        merge.fingerprint = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    return merge.fingerprint


def _shard(group: tuple) -> int:
    return zlib.crc32(group[0][0].encode("utf-8", "surrogatepass")) % _SHARDS


def _sort_key(article: Article) -> tuple:
    return article.sort_key


def load_articles(content_dir: Path, root: Path, read: ReadFile = read_file, cache_file: Path | None = None,
                  state: LoadState | None = None, jobs: int | None = None,
                  stats: Mapping[str, os.stat_result] | None = None, listing: object = None) -> LoadResult:
    """Read, merge and validate every record under `content_dir`; raise DigestError listing all errors.

    `cache_file` (e.g. `.digest-cache/records.pickle`) keeps what this build learned for the next
    one; `state` (a `LoadState`, which has its own cache file) keeps it in memory too, for repeated
    builds in one process: then `cache_file` is not used. A custom `read` is never cached. When
    there are many files to parse, they are parsed on `jobs` cores (this process and forked
    workers; default: the cores other processes leave idle, see `workers.idle_cores`). `stats`:
    what `os.stat` gave for file paths a moment ago (the build's no-change check), not asked again.
    `listing`: an object that stays the same (`is`) only while no file or folder was added to the
    content folder or removed from it (`InputCheck.listing`): the state then keeps its walk of it.
    """
    if not content_dir.is_dir():
        raise DigestError(Problem(str(content_dir), "content folder not found",
                                  hint="create it and put records in it, or run 'digest init DIR'"))
    if state is None or read is not read_file:
        state = LoadState(cache_file if read is read_file else None)
    return state.load(content_dir, root, read, jobs, stats, listing)


def _allowed_roots(content_dir: Path, root: Path) -> tuple[Path, ...]:
    found = []
    for folder in (root, content_dir):
        try:
            found.append(folder.resolve())
        except (OSError, RuntimeError):
            continue
    return tuple(found)


def _links_outside(path: Path, shown: str, inside: tuple[Path, ...]) -> Problem | None:
    """Refuse a symbolic link that leads out of the digest (issue 9).

    A collaborator's pull request can add a link to `~/.ssh/id_rsa` or `/proc/self/environ`; reading it
    would put that file on a public site, or in the build log. Links within the digest are fine.
    """
    if not path.is_symlink():
        return None
    try:
        target = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return None  # a loop or a broken link: read_file says which
    if any(target == folder or folder in target.parents for folder in inside):
        return None
    return Problem(shown, f"is a symbolic link to {target}, outside the digest; not read",
                   hint="copy the file into content/ instead of linking to it")


def _shown_path(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _identity_groups(items: list[tuple[Any, Any, str]]) -> list[tuple]:
    """Group records about the same article: same PMID, else same DOI (case-insensitive).

    `items` are (key, PMID, lower-case DOI) per record, in order; each group is a tuple of keys.
    """
    by_pmid: dict[Any, list] = {}
    by_doi: dict[str, list] = {}
    groups: list[list] = []
    for key, pmid, doi in items:
        if pmid:
            group = by_pmid.get(pmid)
            if group is None:
                group = by_pmid[pmid] = []
                groups.append(group)
            group.append(key)
            if doi:
                by_doi.setdefault(doi, group)
    for key, pmid, doi in items:
        if pmid:
            continue
        if doi and doi in by_doi:
            by_doi[doi].append(key)
        elif doi:
            by_doi[doi] = [key]
            groups.append(by_doi[doi])
        else:
            groups.append([key])
    return [tuple(group) for group in groups]


def merge_records(records: list[Record]) -> tuple[tuple[Article, ...], list[Problem]]:
    """Merge each group of records into one Article: native fields win, then the richest format."""
    problems: list[Problem] = []
    groups = _identity_groups([(index, *_identity_key(record)) for index, record in enumerate(records)])
    merges = [_merge_group([records[index] for index in group], False) for group in groups]
    today = dt.date.today()
    articles, _ = _claim(merges, problems, (today.year + 1, today.month, today.day))
    return tuple(sorted(articles, key=_sort_key)), problems


class _Merged:
    """One group of records merged: what giving it an id and making its article need, kept between
    builds while the group is unchanged.

    `problems` (duplicate records) are reported whether or not the group gets an article; `notes`
    (bounds, missing title, suspicious values) only when it does, each with the date it is about
    when it says a date is in the future (so that the day of the build decides, as it would).
    """

    __slots__ = ("ids", "source", "sources", "problems", "notes", "values", "article", "fingerprint", "sort_key",
                 "changed")

    def __init__(self, ids: dict[str, Any], source: SourceRef, sources: tuple[SourceRef, ...],
                 problems: list[Problem], notes: list[tuple[Problem, tuple | None]],
                 values: dict[str, Any] | None, article: Article | None = None, fingerprint: bytes = b"",
                 sort_key: tuple | None = None):
        self.ids = ids
        self.source = source
        self.sources = sources
        self.problems = problems
        self.notes = notes
        self.values = values  # None once the article is made, or when it has no title
        self.article = article
        self.fingerprint = fingerprint  # of `article`, once asked for
        self.sort_key = sort_key  # `article.sort_key`, once asked for
        self.changed = True

    def saved(self) -> tuple[tuple, tuple | None]:
        """Return what the cache file keeps, and the article's deferred field values apart (see
        `_DEFERRED_FIELDS`): an article as its field values (unpickled 25% faster)."""
        article = self.article
        eager = _EAGER_VALUES(article) if article is not None else None
        return ((self.ids, self.source, self.sources, self.problems, self.notes, self.values, eager,
                 self.fingerprint, self.sort_key), _DEFERRED_VALUES(article) if article is not None else None)

    @classmethod
    def from_saved(cls, saved: tuple, shard: _DeferredFields) -> _Merged:
        """Return the group `saved` holds; its article's deferred fields are the `shard`'s next."""
        merged = cls(*saved)
        if merged.article is not None:
            article = object.__new__(_CachedArticle)  # what Article(*values) makes, without 45 __setattr__ calls
            state = article.__dict__
            state.update(zip(_EAGER_FIELDS, merged.article))  # type: ignore[arg-type]
            state[_SHARD] = shard
            shard.articles.append(article)
            merged.article = article
        else:
            shard.articles.append(None)
        merged.changed = False
        return merged

    def order(self) -> tuple:
        """Return the article's `sort_key` (newest first), kept: it is a property that costs 3 µs."""
        if self.sort_key is None:
            self.sort_key = self.article.sort_key  # type: ignore[union-attr]
        return self.sort_key

    def article_for(self, article_id: str, problems: list[Problem], horizon: tuple[int, int, int]) -> Article | None:
        """Return the group's article with this id (the same object as last time when it had it), and
        add its notes to `problems`."""
        article = self.article
        if article is None or article.id != article_id:
            if article is not None:
                article = _with_id(article, article_id)
            elif self.values is not None:
                article = _new_article(article_id, self.source, self.sources, self.values)
                self.values = None
            if article is not None:
                self.article, self.fingerprint, self.sort_key, self.changed = article, b"", None, True
        for note, date in self.notes:
            if date is None:
                problems.append(note)
            elif date > horizon:  # PubMed dates print issues months ahead: only beyond next year
                problems.append(_future_date(article, *note))
        return article


_ARTICLE_DEFAULTS = {name: f.default for name, f in Article.__dataclass_fields__.items()}


def _new_article(article_id: str, source: SourceRef, sources: tuple[SourceRef, ...], values: dict[str, Any]) -> Article:
    """Return Article(id=..., source=..., sources=..., **values): the same object (same `__dict__`,
    in field order), without the frozen dataclass's 45 `object.__setattr__` calls."""
    if "sources" in values or "title" not in values or not ARTICLE_FIELDS.issuperset(values):
        return Article(id=article_id, source=source, sources=sources, **values)  # raises as it always did
    state = dict(_ARTICLE_DEFAULTS)
    state.update(values, id=article_id, source=source, sources=sources)
    article = object.__new__(Article)
    article.__dict__.update(state)
    return article


class _Interner:
    """Makes equal values of new articles one object: most articles share their MeSH headings,
    dates, journal and publication types, and readers (in several workers) made them apart. Fewer
    objects make the cache file a quarter faster to read, and take less memory."""

    _TEXTS = ("journal", "journal_abbrev", "language", "status")
    _TUPLES = ("issn", "publication_types", "keywords")
    _DATES = ("published", "epublished")

    def __init__(self) -> None:
        self.equal: dict[Any, Any] = {}  # value -> the one object kept for it
        self.seen: dict[int, tuple[Any, Any]] = {}  # id -> (object, its kept equal): MeshTerm and PubDate

    def share(self, values: dict[str, Any]) -> None:
        """Replace values (exact model types only) by equal ones already kept."""
        equal = self.equal
        for key in self._TEXTS:
            value = values.get(key)
            if type(value) is str:
                values[key] = equal.setdefault(value, value)
        for key in self._TUPLES:
            value = values.get(key)
            if type(value) is tuple and all(type(item) is str for item in value):
                values[key] = equal.setdefault(value, value)
        for key in self._DATES:
            value = values.get(key)
            if type(value) is PubDate:
                values[key] = self._kept(value)
        mesh = values.get("mesh_terms")
        if type(mesh) is tuple and all(type(term) is MeshTerm for term in mesh):
            values["mesh_terms"] = tuple([self._kept(term) for term in mesh])

    def _kept(self, value: Any) -> Any:
        # Readers share equal headings and dates already: hash (in Python, 1 µs) each object once.
        found = self.seen.get(id(value))
        if found is None:
            found = self.seen[id(value)] = (value, self.equal.setdefault(value, value))
        return found[1]


def _with_id(article: Article, article_id: str) -> Article:
    """Return a copy of a frozen article with another id (what `dataclasses.replace` makes, faster)."""
    copy = _article_of(_ARTICLE_VALUES(article))  # (a cached one's deferred fields too)
    copy.__dict__["id"] = article_id
    return copy


_SHARD = "_deferred"  # in a `_CachedArticle`'s `__dict__` until its deferred fields are read back


class _DeferredFields:
    """The deferred fields (`_DEFERRED_FIELDS`) of a cache file shard's articles, pickled, until one
    of them is read: then every article of the shard gets its own (one unpickling keeps the MeSH
    headings and dates the articles share one object each, as they were saved)."""

    __slots__ = ("data", "articles")

    def __init__(self, data: bytes | memoryview):
        self.data: bytes | memoryview | None = data
        self.articles: list[_CachedArticle | None] = []  # in the order of the values in `data`

    def read_back(self) -> None:
        data, articles = self.data, self.articles
        if data is None:
            return
        with collector_paused():
            found = pickle.loads(data)
        for article, values in zip(articles, found):
            if article is not None:
                state = article.__dict__
                state.update(zip(_DEFERRED_FIELDS, values))
                state.pop(_SHARD, None)
        self.data, self.articles = None, []  # (last: another thread asking meanwhile reads them back too)


class _Deferred:
    """A deferred field of `_CachedArticle`: read, it reads back its shard's (then the article's own
    `__dict__` answers, this descriptor having no `__set__`)."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __get__(self, article: Any, owner: type | None = None) -> Any:
        if article is None:
            return Article.__dataclass_fields__[self.name].default
        state = article.__dict__
        shard = state.get(_SHARD)
        if shard is not None:
            shard.read_back()
        return state[self.name]


class _CachedArticle(Article):
    """An `Article` read back from the cache file, its deferred fields read on first use. It equals,
    hashes, prints and pickles as the `Article` of the same values."""

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Article):
            return _ARTICLE_VALUES(self) == _ARTICLE_VALUES(other)
        return NotImplemented

    __hash__ = Article.__hash__

    def __repr__(self) -> str:
        return "Article" + Article.__repr__(self)[len(type(self).__qualname__):]

    def __reduce__(self) -> tuple:
        return _article_of, (_ARTICLE_VALUES(self),)


for _name in _DEFERRED_FIELDS:
    setattr(_CachedArticle, _name, _Deferred(_name))


def _article_of(values: tuple) -> Article:
    """Return Article(*values), without the frozen dataclass's 45 `object.__setattr__` calls."""
    article = object.__new__(Article)
    article.__dict__.update(zip(_ARTICLE_FIELDS, values))
    return article


def read_back_deferred(articles: Iterable[Article]) -> None:
    """Read back every deferred field of these articles now: before forking workers that would
    each read back the same shards."""
    for article in articles:
        shard = article.__dict__.get(_SHARD)
        if shard is not None:
            shard.read_back()


def _merge_group(group: list[Record], clean: bool) -> _Merged:
    """Merge one group's records (see `merge_records`); `clean` when `_is_clean` holds for each."""
    problems: list[Problem] = []
    natives = [r for r in group if r.native]
    if len(natives) > 1:
        first = natives[0]
        for other in natives[1:]:
            problems.append(Problem(other.source.path, f"{_identity(first)} is also recorded in {first.source}",
                                    line=other.source.line,
                                    hint="keep one native record per article; imported files may repeat it"))
        group = [r for r in group if r is first or not r.native]
    seen_formats: dict[str, Record] = {}
    for record in group:
        if record.native:
            continue
        first = seen_formats.setdefault(record.format, record)
        if first is not record:
            problems.append(Problem(record.source.path, f"{_identity(first)} is also in {first.source}; "
                                    "the two records were merged", line=record.source.line, severity="warning",
                                    hint="remove one of the duplicates"))
    if len(group) == 1:
        ordered = group
    else:
        ordered = sorted(group, key=lambda r: (not r.native, FORMAT_PRIORITY.get(r.format, 9), r.source.path,
                                               r.source.line or 0))
    merged: dict[str, Any] = {}
    for record in reversed(ordered):  # lowest priority first, so higher ones overwrite
        merged.update({k: v for k, v in record.fields.items() if v not in ("", (), None)})
    ids = {k: merged[k] for k in _ID_FIELDS if k in merged}
    notes: list[tuple[Problem, tuple | None]] = []
    values = _article_values(merged, ordered, clean, notes)
    return _Merged(ids, ordered[0].source, tuple(r.source for r in ordered), problems, notes, values)


def _claim(merges: list[_Merged], problems: list[Problem], horizon: tuple[int, int, int],
           last: IdPlan | None = None, notes: dict[int, list[Problem]] | None = None) -> tuple[list[Article], IdPlan]:
    """Give each merged group its id and article (see `_plan_ids`), in group order; a date after
    `horizon` is in the future. Return them and the plan of ids, which the next call takes as
    `last`: when no group changed what its id is made from, the ids are those of that plan.
    `notes` gets, per group number, the problems making its article added."""
    problems.extend(p for merge in merges for p in merge.problems)
    plan = last.again(merges) if last is not None else None
    if plan is None:
        plan = IdPlan.of(merges)

    def make(index: int, article_id: str) -> Article | None:
        merge = merges[index]
        article = merge.article
        if merge.notes or article is None or article.id != article_id:  # else: what article_for returns
            article = merge.article_for(article_id, problems, horizon)
        return article

    return plan.carry_out(problems, make, notes), plan


def _identity(record: Record) -> str:
    pmid, doi = record.fields.get("pmid"), record.fields.get("doi")
    return f"PMID {pmid}" if pmid else f"DOI {doi}"


# Letters that Unicode does not decompose to ASCII but that have a usual spelling in it: without them
# 'TNF-α' and 'TNF-β' would both be 'tnf', and 'Łukasz' would be 'ukasz'.
TRANSLITERATIONS = str.maketrans({
    "α": "alpha", "β": "beta", "γ": "gamma", "δ": "delta", "ε": "epsilon", "ζ": "zeta", "η": "eta",
    "θ": "theta", "ι": "iota", "κ": "kappa", "λ": "lambda", "μ": "mu", "ν": "nu", "ξ": "xi", "ο": "omicron",
    "π": "pi", "ρ": "rho", "σ": "sigma", "ς": "sigma", "τ": "tau", "υ": "upsilon", "φ": "phi", "χ": "chi",
    "ψ": "psi", "ω": "omega", "ß": "ss", "æ": "ae", "œ": "oe", "ø": "o", "đ": "d", "ð": "d", "þ": "th",
    "ł": "l", "ı": "i", "ħ": "h", "ŧ": "t", "ŋ": "ng", "ĸ": "k",
})


def _short_hash(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=4).hexdigest()


@lru_cache(maxsize=65536)
def slugify(text: str, max_length: int = 80) -> str:
    """Return a lowercase ASCII slug: 'CAR-T in Lupus: a Review' -> 'car-t-in-lupus-a-review'.

    Names that only differ in case, accents or punctuation slug alike (they are one taxonomy term).
    Names that lose letters on the way to ASCII ('日本語', 'Лимфома') or that are cut at `max_length`
    end with a short hash of what they were, so two such names never share a slug (issue 9); a name
    with no letters or digits at all ('???') is a hash alone.
    """
    folded, slug, lost = _fold_ascii(text) if text.isascii() else _fold(text)
    if lost or not slug:
        slug = f"{slug[: max_length - 9]}-{_short_hash(folded)}".strip("-")
    elif len(slug) > max_length:
        slug = f"{slug[: max_length - 9].rstrip('-')}-{_short_hash(slug)}"
    return slug


_NOT_IN_SLUG = re.compile(r"[^a-z0-9]+")


def _fold(text: str) -> tuple[str, str, bool]:
    """`slugify`'s steps for any text: the folded name, its ASCII slug, and whether letters or
    digits were lost on the way to ASCII."""
    folded = unicodedata.normalize("NFKC", " ".join(text.split())).casefold()
    decomposed = unicodedata.normalize("NFKD", folded.translate(TRANSLITERATIONS))
    ascii_text = decomposed.encode("ascii", "ignore").decode("ascii")
    slug = _NOT_IN_SLUG.sub("-", ascii_text).strip("-")
    lost = any(unicodedata.category(c)[0] in "LN" for c in decomposed if ord(c) > 127)
    return folded, slug, lost


def _fold_ascii(text: str) -> tuple[str, str, bool]:
    """`_fold` of an ASCII text (nearly every name), which its normalising leaves as it is: 4x cheaper."""
    folded = " ".join(text.split()).lower()
    return folded, _NOT_IN_SLUG.sub("-", folded).strip("-"), False


def doi_slug(doi: str) -> str:
    """Return a path-safe id for a DOI: '10.1016/j.coi.2025.102596' -> 'doi-10.1016-j.coi.2025.102596'."""
    return "doi-" + re.sub(r"[^a-z0-9.]+", "-", doi.lower()).strip("-.")[:90]


def _id_inputs(fields: dict[str, Any], source: SourceRef) -> tuple:
    """Return what `_plan_ids` reads of a draft (equal inputs: the same decisions)."""
    article_id = fields.get("id") or fields.get("pmid") or ""
    if article_id:
        return article_id, source
    doi = fields.get("doi")
    return ("", doi, source) if doi else ("", None, fields.get("title"), source)


@dataclass
class IdPlan:
    """The decisions of `_plan_ids` for some drafts: in the order they are taken, a draft's index
    (it gets `ids[index]`) or a problem (an id refused). Kept by a `LoadState` with the drafts it
    was made from (`fields`, `sources`): an edit that leaves every group's id fields and source as
    they were (a title edit of an article with a PMID) takes the plan again, instead of claiming
    10,000 ids (0.05 s at each edit of the daemon)."""

    events: list[int | Problem]
    ids: list[str | None]  # by draft index; None: no id
    fields: list[dict[str, Any]]  # each draft's id fields and source, as planned
    sources: list[SourceRef]

    @classmethod
    def of(cls, merges: list[_Merged]) -> IdPlan:
        fields, sources = [m.ids for m in merges], [m.source for m in merges]
        return cls(*_plan_ids(list(zip(fields, sources))), fields, sources)

    def again(self, merges: list[_Merged]) -> IdPlan | None:
        """Return this plan for `merges` when each one's id fields and source, if not the very
        objects planned with, say the same; else None."""
        fields, sources = [m.ids for m in merges], [m.source for m in merges]
        if len(fields) != len(self.fields):
            return None
        for index in {*replaced_positions(fields, self.fields), *replaced_positions(sources, self.sources)}:
            if _id_inputs(fields[index], sources[index]) != _id_inputs(self.fields[index], self.sources[index]):
                return None
        return IdPlan(self.events, self.ids, fields, sources)

    def again_at(self, merges: list[_Merged], numbers: Sequence[int]) -> IdPlan | None:
        """`again` for `merges` that are those planned with but at `numbers`."""
        if len(merges) != len(self.fields):
            return None
        fields, sources = list(self.fields), list(self.sources)
        for number in numbers:
            merge = merges[number]
            if _id_inputs(merge.ids, merge.source) != _id_inputs(fields[number], sources[number]):
                return None
            fields[number], sources[number] = merge.ids, merge.source
        return IdPlan(self.events, self.ids, fields, sources)

    def carry_out(self, problems: list[Problem], make: Callable[[int, str], Article | None],
                  notes: dict[int, list[Problem]] | None = None) -> list[Article]:
        """Make the articles in the plan's order (`make(index, id)`), adding its problems to `problems`
        as they come (and those `make` added to `notes`, by index); return them in draft order."""
        made: list[Article | None] = [None] * len(self.ids)
        ids = self.ids
        for event in self.events:
            if event.__class__ is int:
                count = len(problems)
                made[event] = make(event, ids[event])  # type: ignore[index, arg-type]
                if notes is not None and len(problems) > count:
                    notes[event] = problems[count:]  # type: ignore[index]
            else:
                problems.append(event)  # type: ignore[arg-type]
        return [article for article in made if article is not None]


def replaced_positions(new: Sequence[Any], old: Sequence[Any]) -> list[int]:
    """Return the positions where `new` holds another object than `old` (sequences of one length):
    what a session's rebuild makes again when the rest is the last build's, found in C."""
    return list(itertools.compress(itertools.count(), map(operator.is_not, new, old)))


def _plan_ids(drafts: list[tuple[dict[str, Any], SourceRef]]) -> tuple[list[int | Problem], list[str | None]]:
    """Give every draft a unique, path-safe id: explicit id, else PMID, else DOI, else title slug;
    return the decisions (see `IdPlan`): what is claimed, and refused, in order, and each draft's id.

    `drafts` are each group's merged id fields (id, pmid, doi, title) and first source. Ids are
    compared without case: they name folders, and on macOS and Windows `Ab` and `ab` are one.
    Explicit ids and PMIDs are claimed first; a DOI slug taken by another DOI that slugs alike
    ('10.1/a_b', '10.1/a-b') gets a hash of its DOI, and alike title slugs get -2, -3 in source order,
    so every article keeps a distinct URL that does not depend on the order of the other files.
    """
    taken: dict[str, SourceRef] = {}
    events: list[int | Problem] = []
    ids: list[str | None] = [None] * len(drafts)

    def claim(index: int, article_id: str, source: SourceRef) -> None:
        taken[article_id.casefold()] = source
        ids[index] = article_id
        events.append(index)

    by_doi: list[tuple[int, dict[str, Any], SourceRef]] = []
    by_title: list[tuple[int, dict[str, Any], SourceRef]] = []
    for index, (fields, source) in enumerate(drafts):
        article_id = fields.get("id") or fields.get("pmid") or ""
        if not article_id:
            (by_doi if fields.get("doi") else by_title).append((index, fields, source))
            continue
        if not is_safe_id(article_id):
            events.append(Problem(source.path, f"id {article_id!r} cannot be used in a URL", line=source.line,
                                    hint="ids may use letters, digits, '.', '_' and '-'"))
            continue
        if article_id.casefold() in taken:
            events.append(Problem(source.path, f"id {article_id!r} is already used by {taken[article_id.casefold()]}",
                                    line=source.line, hint="give one of them another 'id:' (ids ignore case)"))
            continue
        claim(index, article_id, source)
    for index, fields, source in sorted(by_doi, key=lambda d: str(d[1]["doi"]).lower()):
        article_id = doi_slug(fields["doi"])
        if article_id.casefold() in taken:
            article_id = f"{article_id}-{_short_hash(str(fields['doi']).lower())}"
        counter = 2
        while article_id.casefold() in taken:  # only if an explicit id took the hashed form too
            article_id, counter = f"{doi_slug(fields['doi'])}-{counter}", counter + 1
        claim(index, article_id, source)
    for index, fields, source in sorted(by_title, key=lambda d: (d[2].path, d[2].line or 0)):
        base = slugify(str(fields.get("title") or "untitled"))
        article_id, counter = base, 2
        while article_id.casefold() in taken:
            article_id, counter = f"{base}-{counter}", counter + 1
        claim(index, article_id, source)
    return events, ids




def _field_line(group: list[Record], key: str) -> int | None:
    """Return the line of a field in the first record of the group that has it, else the record's line."""
    for record in group:
        if key in record.fields:
            return record.field_lines.get(key) or record.source.line
    return group[0].source.line


def _article_values(fields: dict[str, Any], group: list[Record], clean: bool,
                    notes: list[tuple[Problem, tuple | None]]) -> dict[str, Any] | None:
    """Return the article's field values, bounded and clean, or None when it has no title.

    Adds (problem, None) to `notes` for each warning, and (problem, date) for a date in the future.
    """
    source = group[0].source
    values = {k: v for k, v in fields.items() if k in ARTICLE_FIELDS and k not in ("id", "source")}
    found: list[Problem] = []
    if not clean:  # only then can a value be too long, or hold control characters
        values = _bounded_values(values, group, found)
    if not str(values.get("title") or "").strip():  # checked once control characters are gone
        line = source.line if group[0].native or source.line else None
        found.append(Problem(source.path, "missing title", line=line, hint="add 'title: ...' to the record"))
        notes.extend((p, None) for p in found)
        return None
    notes.extend((p, None) for p in found)
    _check_suspicious(values, group, notes)
    return values


# Bounds and clean text (issue 9) ---------------------------------------------------------------

def _clean_text(value: str, limit: int | None, notes: set[str], key: str) -> str:
    if _CONTROL.search(value):
        value = _CONTROL.sub(lambda m: "" if m.group() < "\x20" else "\ufffd", value)
        notes.add(f"control characters removed from '{key}'")
    if limit is not None and len(value) > limit:
        value = value[:limit].rstrip() + "…"
        notes.add(f"'{key}' cut at {limit:,} characters")
    return value


def _clean(value: Any, limit: int | None, notes: set[str], key: str) -> Any:
    """Return the value with every string in it cleaned (tuples and model dataclasses included).

    Runs on every field of every article, so it checks types directly and reads dataclass fields
    from `__dict__` (model classes are frozen dataclasses without slots): several times faster
    than `dataclasses.fields` on 10,000 articles.
    """
    kind = type(value)
    if kind is str:
        if (limit is not None and len(value) > limit) or _CONTROL.search(value):
            return _clean_text(value, limit, notes, key)
        return value
    if kind is tuple:
        cleaned = tuple(_clean(item, limit, notes, key) for item in value)
        return value if all(a is b for a, b in zip(cleaned, value)) else cleaned
    if hasattr(kind, "__dataclass_fields__"):
        changes = {}
        for name, old in vars(value).items():
            if type(old) in (str, tuple) or hasattr(type(old), "__dataclass_fields__"):
                new = _clean(old, limit, notes, key)
                if new is not old:
                    changes[name] = new
        return dataclasses.replace(value, **changes) if changes else value
    return value


LIST_LIMITS = {"authors": MAX_AUTHORS, "mesh_terms": MAX_TERMS, "keywords": MAX_TERMS, "tags": MAX_TERMS,
               "publication_types": MAX_TERMS}


def _bounded_values(values: dict[str, Any], group: list[Record], problems: list[Problem]) -> dict[str, Any]:
    """Cut what no real record needs (see MAX_AUTHORS...), and drop control characters, with a warning."""
    source = group[0].source
    result = {}
    for key, value in values.items():
        notes: set[str] = set()
        limit = LIST_LIMITS.get(key)
        if limit is not None and isinstance(value, tuple) and len(value) > limit:
            notes.add(f"'{key}' has {len(value):,} entries; only the first {limit:,} are kept")
            value = value[:limit]
        value = _clean(value, MAX_LONG_TEXT if key in LONG_TEXT_FIELDS else MAX_SHORT_TEXT, notes, key)
        if key == "authors":
            kept = tuple(a for a in value if getattr(a, "name", "").strip())
            if len(kept) != len(value):
                notes.add(f"{len(value) - len(kept)} author(s) with an empty name left out")
                value = kept
        for note in sorted(notes):
            problems.append(Problem(source.path, note, line=_field_line(group, key), severity="warning"))
        result[key] = value
    return result


_DOI = re.compile(r"10\.\d{4,9}/\S+")


def _check_suspicious(values: dict[str, Any], group: list[Record], notes: list[tuple[Any, tuple | None]]) -> None:
    """Note values that are allowed but probably wrong, so `digest check` can show them.

    A date is noted as ((field, line), (year, month, day)): whether it is in the future is decided
    when the article is claimed (`_Merged.article_for`), on the day of that build.
    """
    source = group[0].source

    def warn(key: str, message: str, hint: str = "") -> None:
        notes.append((Problem(source.path, message, line=_field_line(group, key), hint=hint, severity="warning"),
                      None))

    if not values.get("abstract"):
        warn("title", "no abstract", hint="add 'abstract: ...', or a record with the same PMID that has one")
    doi = values.get("doi") or ""
    if doi and not _DOI.fullmatch(doi):
        warn("doi", f"DOI {doi!r} does not look like a DOI", hint="a DOI starts with '10.', e.g. 10.1016/j.coi.2025.102596")
    pmid = str(values.get("pmid") or "")
    if pmid and (len(pmid) > 9 or not pmid.isdigit()):
        warn("pmid", f"PMID {pmid!r} is not a PubMed id", hint="PMIDs have 1 to 9 digits")
    # PubMed dates print issues months ahead, so only a date beyond next year is surely a mistake.
    for key in ("published", "epublished"):
        date = values.get(key)
        if isinstance(date, PubDate) and date.year:
            notes.append(((key, _field_line(group, key)), (date.year, date.month or 1, date.day or 1)))
    for number, author in enumerate(values.get("authors") or (), start=1):
        if len(getattr(author, "name", "")) > 300:
            warn("authors", f"author {number} has a name of {len(author.name):,} characters",
                 hint="is it several authors, or an affiliation, in one name?")
            break


def _future_date(article: Article, key: str, line: int | None) -> Problem:
    date = getattr(article, key)
    return Problem(article.source.path, f"'{key}' {date.display} is in the future", line=line,
                   hint="check the year", severity="warning")


_MODEL_TYPES = {kind: True for kind in vars(model_module).values()
                if isinstance(kind, type) and dataclasses.is_dataclass(kind)}  # type -> `_clean` looks in
# Every byte but the control characters _CONTROL removes (tab, line feed and carriage return stay).
_NOT_CONTROL = bytes(c for c in range(256) if c >= 0x20 or chr(c) in "\t\n\r")


def _strings(values: list[Any]) -> list[str]:
    """Return every string in the values, looking into tuples and model dataclasses as `_clean` does."""
    found: list[str] = []
    add, push, models = found.append, values.extend, _MODEL_TYPES
    for item in values:  # the loop also visits what `push` appends
        kind = type(item)
        if kind is str:
            add(item)
        elif kind is tuple:
            push(item)
        else:
            model = models.get(kind)
            if model is None:
                model = models[kind] = hasattr(kind, "__dataclass_fields__")
            if model:
                push(vars(item).values())
    return found


def _has_control(strings: list[str]) -> bool:
    text = "\n".join(strings)
    if text.isascii():  # a quick check: a table lookup per byte, 6x faster than the expression
        return bool(text.encode("ascii").translate(None, _NOT_CONTROL))
    return _CONTROL.search(text) is not None


def _is_clean(fields: dict[str, Any]) -> bool:
    """Return True when `_bounded_values` would change none of these values, and note nothing.

    That is: no string (in tuples and model dataclasses, as `_clean` sees them) holds a control
    character or is longer than its field allows, no list is longer than its limit, and every author
    has a name. Checked once per record when its file is parsed; records all clean merge into clean
    values, so a new group of them is never cleaned and an unchanged one never looked at again.
    Anything unexpected: False (and the full cleaning then does what it always did).
    """
    try:
        short: list[Any] = []
        long: list[Any] = []
        for key, value in fields.items():
            limit = LIST_LIMITS.get(key)
            if limit is not None and isinstance(value, tuple) and len(value) > limit:
                return False
            if key == "authors" and not all(getattr(a, "name", "").strip() for a in value):
                return False
            (long if key in LONG_TEXT_FIELDS else short).append(value)
        short, long = _strings(short), _strings(long)
        if max(map(len, short), default=0) > MAX_SHORT_TEXT or max(map(len, long), default=0) > MAX_LONG_TEXT:
            return False
        return not _has_control(short) and not _has_control(long)
    except Exception:  # noqa: BLE001
        return False


__all__ = ["Fingerprints", "LoadResult", "LoadState", "load_articles", "merge_records", "read_file", "slugify", "SUPPORTED_SUFFIXES"]
