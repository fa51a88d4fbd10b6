"""Stage 1, load: read every file under `content/`, merge records about the same article, validate.

Errors are collected across all files and raised together, so one build run shows every problem.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from generator.errors import DigestError, Problem, ReaderError
from generator.fields import coerce_native, is_safe_id
from generator.model import Article, Record, SourceRef
from generator.readers import FORMAT_NAMES, SUPPORTED_SUFFIXES, read_text, reader_for

MAX_FILE_BYTES = 50 * 1024 * 1024  # bigger than any real export; protects memory from stray dumps
# When imported records about the same article disagree, the richer format wins a field.
FORMAT_PRIORITY = {"pubmed_xml": 0, "medline": 1, "pubmed_page": 2, "csl_json": 3, "ris": 4, "bibtex": 5}


@dataclass
class LoadResult:
    articles: tuple[Article, ...]
    warnings: list[Problem] = field(default_factory=list)
    files: int = 0


def content_files(content_dir: Path) -> list[Path]:
    """Return every visible file under `content_dir`, sorted, without following directory symlinks."""
    found: list[Path] = []
    for folder, dirnames, filenames in os.walk(content_dir, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "_")))
        found.extend(Path(folder) / name for name in sorted(filenames) if not name.startswith((".", "~")))
    return found


ReadFile = Callable[[Path, str], tuple[list[Record], list[Problem]]]


def read_file(path: Path, shown: str) -> tuple[list[Record], list[Problem]]:
    """Read one content file into records; every failure becomes a problem, never an exception."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return [], [Problem(shown, f"file is larger than {MAX_FILE_BYTES // 2**20} MB", hint="split it")]
        data = path.read_bytes()
    except OSError as exc:
        return [], [Problem(shown, f"cannot read file: {exc.strerror or exc}", hint="check its permissions")]
    if b"\x00" in data[:8192]:
        return [], [Problem(shown, "is a binary file, not a record", severity="warning",
                            hint="move it out of content/ or into static/")]
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

    VERSION = 1

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
        try:
            data = path.read_bytes() if path.stat().st_size <= MAX_FILE_BYTES else None
        except OSError:
            data = None
        if data is None:
            return read_file(path, shown)
        key = (shown, hashlib.blake2b(data, digest_size=16).hexdigest())
        found = self.entries.get(key)
        if found is None:
            found = read_file(path, shown)
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
    files = content_files(content_dir)
    cache = RecordCache(cache_file) if cache_file is not None and read is read_file else None
    if cache is not None:
        read = cache.read
    for path in files:
        shown = _shown_path(path, root)
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
    return LoadResult(articles=articles, warnings=[p for p in problems if p.severity != "error"], files=len(files))


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
            key = f"PMID {first.fields['pmid']}" if first.fields.get("pmid") else f"DOI {first.fields.get('doi')}"
            for other in natives[1:]:
                problems.append(Problem(other.source.path, f"{key} is also recorded in {first.source}",
                                        line=other.source.line,
                                        hint="keep one native record per article; imported files may repeat it"))
            group = [r for r in group if r is first or not r.native]
        ordered = sorted(group, key=lambda r: (not r.native, FORMAT_PRIORITY.get(r.format, 9), r.source.path,
                                               r.source.line or 0))
        merged: dict[str, Any] = {}
        for record in reversed(ordered):  # lowest priority first, so higher ones overwrite
            merged.update({k: v for k, v in record.fields.items() if v not in ("", (), None)})
        drafts.append((merged, ordered))
    articles = _assign_ids(drafts, problems)
    return tuple(sorted(articles, key=lambda a: a.sort_key)), problems


@lru_cache(maxsize=65536)
def slugify(text: str, max_length: int = 80) -> str:
    """Return a lowercase ASCII slug: 'CAR-T in Lupus: a Review' -> 'car-t-in-lupus-a-review'."""
    import unicodedata

    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text).strip("-")
    return slug[:max_length].rstrip("-") or "untitled"


def doi_slug(doi: str) -> str:
    """Return a path-safe id for a DOI: '10.1016/j.coi.2025.102596' -> 'doi-10.1016-j.coi.2025.102596'."""
    return "doi-" + re.sub(r"[^a-z0-9.]+", "-", doi.lower()).strip("-.")[:90]


def _assign_ids(drafts: list[tuple[dict[str, Any], list[Record]]], problems: list[Problem]) -> list[Article]:
    """Give every article a unique, path-safe id: explicit id, else PMID, else DOI, else title slug."""
    taken: dict[str, SourceRef] = {}
    articles: list[Article] = []
    pending: list[tuple[dict[str, Any], list[Record]]] = []
    for fields, group in drafts:
        source = group[0].source
        explicit = fields.get("id") or ""
        article_id = explicit or fields.get("pmid") or (doi_slug(fields["doi"]) if fields.get("doi") else "")
        if not article_id:
            pending.append((fields, group))
            continue
        if not is_safe_id(article_id):
            problems.append(Problem(source.path, f"id {article_id!r} cannot be used in a URL", line=source.line,
                                    hint="ids may use letters, digits, '.', '_' and '-'"))
            continue
        if article_id in taken:
            problems.append(Problem(source.path, f"id {article_id!r} is already used by {taken[article_id]}",
                                    line=source.line, hint="give one of them another 'id:'"))
            continue
        taken[article_id] = source
        articles.append(_make_article(article_id, fields, group, problems))
    # Records without PMID, DOI or id get a title slug; alike slugs get -2, -3 in source order.
    for fields, group in sorted(pending, key=lambda d: (d[1][0].source.path, d[1][0].source.line or 0)):
        base = slugify(str(fields.get("title") or "untitled"))
        article_id, counter = base, 2
        while article_id in taken:
            article_id, counter = f"{base}-{counter}", counter + 1
        taken[article_id] = group[0].source
        articles.append(_make_article(article_id, fields, group, problems))
    return [a for a in articles if a is not None]


def _make_article(article_id: str, fields: dict[str, Any], group: list[Record], problems: list[Problem]):
    source = group[0].source
    if not fields.get("title"):
        line = source.line if group[0].native or source.line else None
        problems.append(Problem(source.path, "missing title", line=line, hint="add 'title: ...' to the record"))
        return None
    values = {k: v for k, v in fields.items() if k in Article.__dataclass_fields__ and k not in ("id", "source")}
    return Article(id=article_id, source=source, sources=tuple(r.source for r in group), **values)


__all__ = ["LoadResult", "load_articles", "merge_records", "read_file", "slugify", "SUPPORTED_SUFFIXES"]
