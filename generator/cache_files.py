"""Files of the cache folder (`.digest-cache/`): pickles written atomically, and a dict kept as a
base file plus a journal of what each build added.

Everything here is an optimisation: a missing, stale or corrupt file only costs the work again,
so reading never raises and writing gives up quietly.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import pickle
import struct
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO

CACHE_DIR = ".digest-cache"  # in the digest folder; deleting it is always safe


# A file modified this close to the moment its size and times were taken may change again within
# the same timestamp tick (FAT keeps 2 s, Linux stamps with a clock of a few ms) without them
# changing: as with git's "racily clean" index entries, its times vouch for nothing. The load stage
# hashes such a file again next time; the no-change check keeps no digest of it, so it is a change
# once its times move; a code stamp hashes it again.
RACY_NS = 2_000_000_000


def bytes_digest(data: bytes) -> str:
    """The hash of a file's bytes: the load stage's record of each file it read, the no-change
    check's, and the code stamps'."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def files_stamp(paths: Iterable[Path]) -> list[tuple[str, str]]:
    """Return each file's name and the hash of its bytes ("" when missing): with the version, a stamp
    of the code a cache was made by, so that changed code never reuses it, and the same code
    installed again (new times, same bytes) keeps every cache."""
    return [(path.name, _code_digest(path)) for path in paths]


def _code_digest(path: Path) -> str:
    try:
        info = path.stat()
        known = _CODE_DIGESTS.get(str(path))
        signature = (info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino)
        if known is not None and known[0] == signature:
            return known[1]
        digest = bytes_digest(path.read_bytes())
    except OSError:
        return ""
    if time.time_ns() - max(info.st_mtime_ns, info.st_ctime_ns) > RACY_NS:
        _CODE_DIGESTS[str(path)] = (signature, digest)  # (a process that builds again states it only)
    return digest


_CODE_DIGESTS: dict[str, tuple[tuple[int, int, int, int], str]] = {}


_PARTS_MAGIC = b"review-digest parts 1\n"
_PARTS_COUNTS = struct.Struct("<QQ")  # the pickle's length, the parts'
_PART_LENGTH = struct.Struct("<Q")


def dump_with_parts(value: Any, stream: BinaryIO) -> None:
    """Pickle `value` to `stream`, each `pickle.PickleBuffer` in it (a part: a shard of the load
    state, a section of the link state, itself a pickle) written after the pickle as its bytes.
    `load_with_parts` hands the parts back as views of the one block of memory the file was read
    into: unpickled from the file's bytes, each part was copied out of them again (40 and 57 MB at
    10,000 articles, 0.06 s of an edit)."""
    parts: list[pickle.PickleBuffer] = []
    head = pickle.dumps(value, protocol=5, buffer_callback=parts.append)
    raw = [part.raw() for part in parts]
    stream.write(_PARTS_MAGIC + _PARTS_COUNTS.pack(len(head), len(raw)))
    stream.write(b"".join(_PART_LENGTH.pack(len(data)) for data in raw))
    stream.write(head)
    for data in raw:
        stream.write(data)


def load_with_parts(path: Path) -> Any:
    """Return what `dump_with_parts` wrote at `path`, its parts as read-only memoryviews. Raises
    on a missing, short or foreign file (the callers treat any of them as no cache)."""
    memory = _read_all(path)
    size, start = len(memory), len(_PARTS_MAGIC)
    if memory[:start] != _PARTS_MAGIC:
        raise ValueError(f"{path} is not a file of parts")
    head_length, count = _PARTS_COUNTS.unpack_from(memory, start)
    start += _PARTS_COUNTS.size
    lengths = [_PART_LENGTH.unpack_from(memory, start + n * _PART_LENGTH.size)[0] for n in range(count)]
    start += count * _PART_LENGTH.size
    head = memory[start:start + head_length]
    parts, start = [], start + head_length
    for length in lengths:
        parts.append(memory[start:start + length])
        start += length
    if start != size:
        raise ValueError(f"{path} does not end where its parts do")
    return pickle.loads(head, buffers=parts)


def _read_all(path: Path) -> memoryview:
    """Return a file's bytes (into memory whose pages are made at once: see `_blank_memory`)."""
    with open(path, "rb", buffering=0) as stream:
        size = os.fstat(stream.fileno()).st_size
        memory = memoryview(_blank_memory(size))
        done = 0
        while done < size:
            count = stream.readinto(memory[done:])
            if not count:
                raise ValueError(f"{path} is shorter than it was")
            done += count
    return memory


def _blank_memory(size: int) -> mmap.mmap | bytearray:
    """Memory for a file's bytes, its pages made at once (Linux: `MAP_POPULATE`): faulted in one by
    one as the file is copied in, they cost this VM about 1 ms a megabyte."""
    populate = getattr(mmap, "MAP_POPULATE", 0)
    if size and populate and hasattr(mmap, "MAP_ANONYMOUS"):
        try:
            return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | populate)
        except (OSError, ValueError):
            pass
    return bytearray(size)


def load_pickle(path: Path) -> dict:
    """Return the dict pickled at `path`, or {} when it is missing or not a dict pickle."""
    try:
        with open(path, "rb") as stream:
            data = pickle.load(stream)  # (frame by frame: reading the whole file first costs more)
        return data if isinstance(data, dict) else {}
    except Exception:  # noqa: BLE001 - a missing, stale or corrupt cache only costs the work again
        return {}


def save_pickle(path: Path, value: Any) -> None:
    """Write a cache file atomically (readers see the old file or the new one, never part of one)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f"{path.name}.tmp")  # one name: a killed build leaves no litter
        with open(temporary, "wb") as stream:
            pickle.dump(value, stream, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(temporary, path)
    except OSError:
        pass


_HEADER = 4 + 16  # a journal frame: payload length (big-endian), blake2b-128 of the payload, payload


def append_frame(journal: Path, value: Any) -> int:
    """Append `value` to a journal file as one checksummed frame; return its size (0: not written)."""
    payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    frame = len(payload).to_bytes(4, "big") + hashlib.blake2b(payload, digest_size=16).digest() + payload
    try:
        with open(journal, "ab") as stream:
            stream.write(frame)
        return len(frame)
    except OSError:
        return 0


def file_size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def journal_is_full(journal_bytes: int, base_bytes: int) -> bool:
    """Whether a journal should be folded into its base: reading it would cost more than half of
    reading the base (each frame is read at every load)."""
    return journal_bytes > max(base_bytes // 2, 1 << 16)


def read_frames(journal: Path) -> tuple[list[Any], bool]:
    """Return the values of a journal's frames in the order they were appended, up to the first
    frame cut short or damaged, and whether there was one (a missing journal has none)."""
    try:
        with open(journal, "rb") as stream:
            blob = stream.read()
    except OSError:
        return [], False
    frames, position = [], 0
    while position + _HEADER <= len(blob):
        size = int.from_bytes(blob[position: position + 4], "big")
        payload = blob[position + _HEADER: position + _HEADER + size]
        checksum = blob[position + 4: position + _HEADER]
        if len(payload) != size or hashlib.blake2b(payload, digest_size=16).digest() != checksum:
            break
        try:
            frames.append(pickle.loads(payload))
        except Exception:  # noqa: BLE001 - written by other code: ignored from here
            break
        position += _HEADER + size
    return frames, position != len(blob)


def remove_file(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


class Journal:
    """A cache file kept as a base pickle plus a journal of checksummed frames appended after it,
    with what both users of it (`JournaledDict`, `render.PlanMemoFile`) decide by: the sizes and
    entry counts of each part, whether the journal ends in something unreadable, when to fold it
    into a new base."""

    def __init__(self, path: Path):
        self.path = path
        self.journal = path.with_name(f"{path.name}.journal")
        self.base_entries = self.journal_entries = 0
        self.base_bytes = self.journal_bytes = 0
        self.damaged = False  # the journal ends in something unreadable: the next save folds it

    def read(self) -> tuple[Any, list[Any]]:
        """Return the base's value ({} when missing) and the journal's frames (none without a base)."""
        base = load_pickle(self.path)
        frames, self.damaged = read_frames(self.journal) if base else ([], False)
        self.base_bytes, self.journal_bytes = file_size(self.path), file_size(self.journal)
        self.base_entries = self.journal_entries = 0
        return base, frames

    def full(self, adding: int, least: int) -> bool:
        """Whether to write a new base instead of appending `adding` entries: the journal is damaged,
        or would hold more than a quarter as many entries as the base (and `least`), or half as
        many bytes (`journal_is_full`)."""
        return self.damaged or journal_is_full(self.journal_bytes, self.base_bytes) or \
            self.journal_entries + adding > max(self.base_entries // 4, least)

    def write_base(self, value: Any, entries: int) -> None:
        """Write `value` as the new base (of `entries` entries) and drop the journal."""
        save_pickle(self.path, value)
        remove_file(self.journal)
        self.base_entries, self.journal_entries, self.damaged = entries, 0, False
        self.base_bytes, self.journal_bytes = file_size(self.path), 0

    def append(self, frame: Any, entries: int) -> bool:
        """Append a frame of `entries` entries; False (and the journal counts as damaged) on failure."""
        written = append_frame(self.journal, frame)
        if not written:
            self.damaged = True
            return False
        self.journal_entries += entries
        self.journal_bytes += written
        return True


class JournaledDict:
    """A dict whose entries never change once made (keys name their contents, as fragment keys do),
    kept as a base pickle plus an append-only journal of the entries each build added.

    An edit adds a few dozen fragments to 30,000 (29 MB at 10,000 articles): appending them costs
    a millisecond where writing the whole dict again, after working out which entries are still
    used, cost 0.3 s. The journal is folded into a new base, keeping only what `compact` returns,
    once it holds more than a quarter as many entries as the base or half as many bytes. A frame
    cut short (a killed build) or damaged fails its checksum: it and what follows are ignored.
    """

    def __init__(self, path: Path):
        self.files = Journal(path)
        self.path, self.journal = path, self.files.journal
        self.known: set = set()  # keys on disk: in the base or the journal

    def load(self) -> dict:
        """Return the base's entries and the journal's."""
        files = self.files
        data, frames = files.read()
        files.base_entries = len(data)
        for frame in frames:
            if not isinstance(frame, dict):
                files.damaged = True
                break
            data.update(frame)
            files.journal_entries += len(frame)
        self.known = set(data)
        return data

    def save(self, current: dict, compact: Callable[[], dict]) -> None:
        """Keep `current`'s entries that are not on disk yet: appended to the journal, or, when the
        journal has grown large (or there is no base), `compact()` written as the new base."""
        added = {key: value for key, value in current.items() if key not in self.known}
        if not added:
            return
        files = self.files
        if not files.base_entries or files.full(len(added), 500):
            kept = compact()
            files.write_base(kept, len(kept))
            self.known = set(kept)
        elif files.append(added, len(added)):
            self.known.update(added)
