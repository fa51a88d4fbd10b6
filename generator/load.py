"""Stage 1, load: read every file under `content/`, merge records about the same article, validate.

Errors are collected across all files and raised together, so one build run shows every problem.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import errno
import hashlib
import os
import pickle
import re
import stat
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from generator.errors import DigestError, Problem, ReaderError
from generator.fields import coerce_native, is_safe_id
from generator.model import Article, PubDate, Record, SourceRef
from generator.readers import FORMAT_NAMES, READERS_BY_SUFFIX, SUPPORTED_SUFFIXES, read_text, reader_for

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


@dataclass
class LoadResult:
    articles: tuple[Article, ...]
    warnings: list[Problem] = field(default_factory=list)
    files: int = 0


def content_files(content_dir: Path, problems: list[Problem] | None = None, root: Path | None = None) -> list[Path]:
    """Return every visible file under `content_dir`, sorted, without following directory symlinks.

    Walks with its own stack (os.walk recurses: 2,000 nested folders, which git can hold, would be a
    RecursionError). When `problems` is given, unreadable folders and links to folders, which are
    not followed, are reported there.
    """
    found: list[Path] = []
    stack = [content_dir]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as entries:
                listing = sorted(entries, key=lambda e: e.name)
        except OSError as exc:
            if problems is not None:
                problems.append(Problem(_shown_path(folder, root or content_dir), f"cannot read folder: "
                                        f"{exc.strerror or exc}", hint="check its permissions"))
            continue
        folders = []
        for entry in listing:
            try:
                is_folder = entry.is_dir(follow_symlinks=False)
                linked_folder = entry.is_symlink() and entry.is_dir()
            except OSError:
                is_folder = linked_folder = False
            if is_folder:
                if not entry.name.startswith((".", "_")):
                    folders.append(Path(entry.path))
            elif linked_folder:
                if problems is not None and not entry.name.startswith((".", "_")):
                    problems.append(Problem(_shown_path(Path(entry.path), root or content_dir),
                                            "is a symbolic link to a folder; links to folders are not followed",
                                            severity="warning", hint="copy the records into content/"))
            elif not entry.name.startswith((".", "~")):
                found.append(Path(entry.path))
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
            data = stream.read(MAX_FILE_BYTES + 1)  # it may have grown since stat()
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


class RecordCache:
    """Parsed records of each file, keyed by its path and the hash of its bytes (Pelican's cache.py).

    One pickle in the cache folder; entries for files that no longer exist are dropped on save.
    Any failure to read or write it just means parsing again.
    """

    VERSION = 2  # 2: control characters, NUL bytes and symbolic links are handled by load.py (issue 9)

    def __init__(self, path: Path | None):
        self.path = path
        self.entries: dict[tuple[str, str], tuple[list[Record], list[Problem]]] = {}
        self.used: dict[tuple[str, str], tuple[list[Record], list[Problem]]] = {}
        if path is not None:
            try:
                with open(path, "rb") as stream:
                    version, entries = pickle.load(stream)
                if version == (self.VERSION, _readers_version()):
                    self.entries = entries
            except Exception:  # a stale or corrupt cache is ignored, never fatal
                self.entries = {}

    def read(self, path: Path, shown: str) -> tuple[list[Record], list[Problem]]:
        data, problems = read_content_bytes(path, shown)
        if data is None:
            return [], problems
        key = (shown, hashlib.blake2b(data, digest_size=16).hexdigest())
        found = self.entries.get(key)
        if found is None:
            found = records_from_bytes(path, shown, data)
        self.used[key] = found
        return found

    def save(self) -> None:
        if self.path is None or self.used == self.entries:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_suffix(".tmp")
            with open(temporary, "wb") as stream:
                pickle.dump(((self.VERSION, _readers_version()), self.used), stream, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(temporary, self.path)
        except OSError:
            pass


def _readers_version() -> str:
    """Return a stamp of the reader code, so a changed reader never reuses old parses."""
    from generator import __version__, readers

    folder = Path(readers.__file__).parent
    stamps = sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in folder.glob("*.py"))
    return f"{__version__}:{stamps}"


def load_articles(content_dir: Path, root: Path, read: ReadFile = read_file, cache_file: Path | None = None) -> LoadResult:
    """Read, merge and validate every record under `content_dir`; raise DigestError listing all errors."""
    if not content_dir.is_dir():
        raise DigestError(Problem(str(content_dir), "content folder not found",
                                  hint="create it and put records in it, or run 'digest init DIR'"))
    problems: list[Problem] = []
    records: list[Record] = []
    files = content_files(content_dir, problems, root)
    cache = RecordCache(cache_file) if cache_file is not None and read is read_file else None
    if cache is not None:
        read = cache.read
    inside = _allowed_roots(content_dir, root)
    for path in files:
        shown = _shown_path(path, root)
        outside = _links_outside(path, shown, inside)
        if outside:
            problems.append(outside)
            continue
        found, found_problems = read(path, shown)
        problems.extend(found_problems)
        for record in found:
            if record.native:
                fields, coerce_problems = coerce_native(record)
                problems.extend(coerce_problems)
                record = Record(fields=fields, source=record.source, native=True,
                                field_lines=record.field_lines, format=record.format)
            records.append(record)
    if cache is not None:
        cache.save()
    articles, merge_problems = merge_records(records)
    problems.extend(merge_problems)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise DigestError(problems)
    warnings = sorted((p for p in problems if p.severity != "error"), key=lambda p: p.sort_key)
    return LoadResult(articles=articles, warnings=warnings, files=len(files))


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


def _identity_groups(records: list[Record]) -> list[list[Record]]:
    """Group records about the same article: same PMID, else same DOI (case-insensitive)."""
    by_pmid: dict[str, list[Record]] = {}
    by_doi: dict[str, list[Record]] = {}
    groups: list[list[Record]] = []
    for record in records:
        pmid = record.fields.get("pmid") or ""
        doi = (record.fields.get("doi") or "").lower()
        if pmid:
            if pmid not in by_pmid:
                by_pmid[pmid] = []
                groups.append(by_pmid[pmid])
            by_pmid[pmid].append(record)
            if doi:
                by_doi.setdefault(doi, by_pmid[pmid])
    for record in records:
        if record.fields.get("pmid"):
            continue
        doi = (record.fields.get("doi") or "").lower()
        if doi and doi in by_doi:
            by_doi[doi].append(record)
        elif doi:
            by_doi[doi] = [record]
            groups.append(by_doi[doi])
        else:
            groups.append([record])
    return groups


def merge_records(records: list[Record]) -> tuple[tuple[Article, ...], list[Problem]]:
    """Merge each group of records into one Article: native fields win, then the richest format."""
    problems: list[Problem] = []
    drafts: list[tuple[dict[str, Any], list[Record]]] = []
    for group in _identity_groups(records):
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
        ordered = sorted(group, key=lambda r: (not r.native, FORMAT_PRIORITY.get(r.format, 9), r.source.path,
                                               r.source.line or 0))
        merged: dict[str, Any] = {}
        for record in reversed(ordered):  # lowest priority first, so higher ones overwrite
            merged.update({k: v for k, v in record.fields.items() if v not in ("", (), None)})
        drafts.append((merged, ordered))
    articles = _assign_ids(drafts, problems)
    return tuple(sorted(articles, key=lambda a: a.sort_key)), problems


def _identity(record: Record) -> str:
    pmid, doi = record.fields.get("pmid"), record.fields.get("doi")
    return f"PMID {pmid}" if pmid else f"DOI {doi}"


# Letters that Unicode does not decompose to ASCII but that have a usual spelling in it: without them
# 'TNF-α' and 'TNF-β' would both be 'tnf', and 'Łukasz' would be 'ukasz'.
_TRANSLITERATIONS = str.maketrans({
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
    folded = unicodedata.normalize("NFKC", " ".join(text.split())).casefold()
    decomposed = unicodedata.normalize("NFKD", folded.translate(_TRANSLITERATIONS))
    ascii_text = decomposed.encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text).strip("-")
    lost = any(unicodedata.category(c)[0] in "LN" for c in decomposed if ord(c) > 127)
    if lost or not slug:
        slug = f"{slug[: max_length - 9]}-{_short_hash(folded)}".strip("-")
    elif len(slug) > max_length:
        slug = f"{slug[: max_length - 9].rstrip('-')}-{_short_hash(slug)}"
    return slug


def doi_slug(doi: str) -> str:
    """Return a path-safe id for a DOI: '10.1016/j.coi.2025.102596' -> 'doi-10.1016-j.coi.2025.102596'."""
    return "doi-" + re.sub(r"[^a-z0-9.]+", "-", doi.lower()).strip("-.")[:90]


def _assign_ids(drafts: list[tuple[dict[str, Any], list[Record]]], problems: list[Problem]) -> list[Article]:
    """Give every article a unique, path-safe id: explicit id, else PMID, else DOI, else title slug.

    Ids are compared without case: they name folders, and on macOS and Windows `Ab` and `ab` are one.
    Explicit ids and PMIDs are claimed first; a DOI slug taken by another DOI that slugs alike
    ('10.1/a_b', '10.1/a-b') gets a hash of its DOI, and alike title slugs get -2, -3 in source order,
    so every article keeps a distinct URL that does not depend on the order of the other files.
    """
    taken: dict[str, SourceRef] = {}
    made: list[tuple[int, Article | None]] = []

    def claim(index: int, article_id: str, fields: dict[str, Any], group: list[Record]) -> None:
        taken[article_id.casefold()] = group[0].source
        made.append((index, _make_article(article_id, fields, group, problems)))

    by_doi: list[tuple[int, dict[str, Any], list[Record]]] = []
    by_title: list[tuple[int, dict[str, Any], list[Record]]] = []
    for index, (fields, group) in enumerate(drafts):
        source = group[0].source
        article_id = fields.get("id") or fields.get("pmid") or ""
        if not article_id:
            (by_doi if fields.get("doi") else by_title).append((index, fields, group))
            continue
        if not is_safe_id(article_id):
            problems.append(Problem(source.path, f"id {article_id!r} cannot be used in a URL", line=source.line,
                                    hint="ids may use letters, digits, '.', '_' and '-'"))
            continue
        if article_id.casefold() in taken:
            problems.append(Problem(source.path, f"id {article_id!r} is already used by {taken[article_id.casefold()]}",
                                    line=source.line, hint="give one of them another 'id:' (ids ignore case)"))
            continue
        claim(index, article_id, fields, group)
    for index, fields, group in sorted(by_doi, key=lambda d: str(d[1]["doi"]).lower()):
        article_id = doi_slug(fields["doi"])
        if article_id.casefold() in taken:
            article_id = f"{article_id}-{_short_hash(str(fields['doi']).lower())}"
        counter = 2
        while article_id.casefold() in taken:  # only if an explicit id took the hashed form too
            article_id, counter = f"{doi_slug(fields['doi'])}-{counter}", counter + 1
        claim(index, article_id, fields, group)
    for index, fields, group in sorted(by_title, key=lambda d: (d[2][0].source.path, d[2][0].source.line or 0)):
        base = slugify(str(fields.get("title") or "untitled"))
        article_id, counter = base, 2
        while article_id.casefold() in taken:
            article_id, counter = f"{base}-{counter}", counter + 1
        claim(index, article_id, fields, group)
    return [article for _, article in sorted(made, key=lambda m: m[0]) if article is not None]


def _field_line(group: list[Record], key: str) -> int | None:
    """Return the line of a field in the first record of the group that has it, else the record's line."""
    for record in group:
        if key in record.fields:
            return record.field_lines.get(key) or record.source.line
    return group[0].source.line


def _make_article(article_id: str, fields: dict[str, Any], group: list[Record], problems: list[Problem]):
    source = group[0].source
    values = {k: v for k, v in fields.items() if k in Article.__dataclass_fields__ and k not in ("id", "source")}
    values = _bounded_values(values, group, problems)
    if not str(values.get("title") or "").strip():  # checked once control characters are gone
        line = source.line if group[0].native or source.line else None
        problems.append(Problem(source.path, "missing title", line=line, hint="add 'title: ...' to the record"))
        return None
    _check_suspicious(values, group, problems)
    return Article(id=article_id, source=source, sources=tuple(r.source for r in group), **values)


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


def _check_suspicious(values: dict[str, Any], group: list[Record], problems: list[Problem]) -> None:
    """Warn about values that are allowed but probably wrong, so `digest check` can show them."""
    source = group[0].source

    def warn(key: str, message: str, hint: str = "") -> None:
        problems.append(Problem(source.path, message, line=_field_line(group, key), hint=hint, severity="warning"))

    if not values.get("abstract"):
        warn("title", "no abstract", hint="add 'abstract: ...', or a record with the same PMID that has one")
    doi = values.get("doi") or ""
    if doi and not _DOI.fullmatch(doi):
        warn("doi", f"DOI {doi!r} does not look like a DOI", hint="a DOI starts with '10.', e.g. 10.1016/j.coi.2025.102596")
    pmid = str(values.get("pmid") or "")
    if pmid and (len(pmid) > 9 or not pmid.isdigit()):
        warn("pmid", f"PMID {pmid!r} is not a PubMed id", hint="PMIDs have 1 to 9 digits")
    # PubMed dates print issues months ahead, so only a date beyond next year is surely a mistake.
    today = dt.date.today()
    horizon = (today.year + 1, today.month, today.day)
    for key in ("published", "epublished"):
        date = values.get(key)
        if isinstance(date, PubDate) and date.year and (date.year, date.month or 1, date.day or 1) > horizon:
            warn(key, f"'{key}' {date.display} is in the future", hint="check the year")
    for number, author in enumerate(values.get("authors") or (), start=1):
        if len(getattr(author, "name", "")) > 300:
            warn("authors", f"author {number} has a name of {len(author.name):,} characters",
                 hint="is it several authors, or an affiliation, in one name?")
            break


__all__ = ["LoadResult", "load_articles", "merge_records", "read_file", "slugify", "SUPPORTED_SUFFIXES"]
