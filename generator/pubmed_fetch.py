"""`digest add` and `digest refresh`: PubMed records from NCBI E-utilities into native YAML records.

`add` resolves PMIDs, DOIs, PubMed URLs and searches to PMIDs, fetches each batch (efetch XML,
elink neighbour scores for the similar articles, esummary for their titles) and writes one complete
`<pmid>.yaml` per article, each file atomically, batch by batch. A run that fails part-way leaves
only complete records behind, and running it again skips them (and re-uses the cached responses).

`refresh` re-fetches every native record that has a PMID and updates only the fields PubMed
provides. The curator's fields (notes, tags, rating, verdict, added, and anything PubMed does not
provide) are kept exactly: the file's text is edited in place, key by key, so their lines, comments
and formatting stay byte for byte; the result is checked by reading it back.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import html
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, TextIO

import yaml

from generator.config import load_config
from generator.errors import DigestError, Problem, ReaderError
from generator.eutils import DEFAULT_BASE_URL, EutilsClient, EutilsError, Neighbour, chunks, normalize_base_url
from generator.fields import ALIASES, COERCERS, FieldError, coerce_native
from generator.load import content_files, merge_records, read_file
from generator.model import Notice, Record, SimilarRef, SourceRef
from generator.native import FIELD_ORDER, article_to_native, dump_record, write_record_file
from generator.readers import pubmed_xml
from generator.readers.common import normalize_doi, normalize_pmid
from generator.readers.medline import strip_added_period
from generator.readers.yaml_records import load_yaml_with_lines

BATCH_SIZE = 200  # PMIDs per efetch request (sent as POST: the id list is long)
ELINK_BATCH_SIZE = 50  # neighbour lists are long: fewer PMIDs per elink request
SUMMARY_BATCH_SIZE = 200
SIMILAR_COUNT = 10
CACHE_FOLDER = Path(".digest-cache") / "eutils"
NATIVE_SUFFIXES = (".yaml", ".yml", ".md", ".markdown")
# Fields filled from PubMed (efetch XML, elink, esummary); `refresh` updates these and nothing else.
# The PMID itself is the key, never rewritten. url and linkout do not come from E-utilities.
PUBMED_FIELDS = (
    "doi", "pmcid", "pii", "title", "title_html", "authors", "journal", "journal_abbrev", "issn",
    "published", "epublished", "volume", "issue", "pages", "elocation", "language", "publication_types",
    "status", "abstract", "copyright", "conflict_of_interest", "mesh_terms", "substances", "keywords",
    "grants", "notices", "similar", "history",
)
RECORD_HEADER = (
    "# Fetched from PubMed by 'digest add'. 'digest refresh' updates the fields that come from PubMed;\n"
    "# notes, tags, rating, verdict, added and any field you add yourself are kept as you wrote them.\n"
)
CORRECTION_KINDS = ("ErratumIn", "ExpressionOfConcernIn", "CorrectedandRepublishedIn")
_FRONT_MATTER = re.compile(r"\A(\ufeff?)---[ \t]*\r?\n(.*?\r?\n)?---[ \t]*(?:\r?\n|\Z)", re.DOTALL)
_PUBMED_URL = re.compile(
    r"^https?://(?:www\.)?(?:pubmed\.ncbi\.nlm\.nih\.gov/|ncbi\.nlm\.nih\.gov/pubmed/)(\d{1,9})/?(?:[?#].*)?$",
    re.IGNORECASE,
)
_DOI = re.compile(r"^10\.\d{4,9}/\S+$")


# Identifiers


def parse_identifier(text: str) -> tuple[str, str] | None:
    """Return ('pmid', digits) or ('doi', doi) for a PMID, DOI or PubMed/doi.org URL; None otherwise."""
    value = text.strip()
    if re.fullmatch(r"(?i)(pmid:?\s*)?\d{1,9}", value):
        pmid = normalize_pmid(value)
        return ("pmid", pmid) if pmid else None
    match = _PUBMED_URL.match(value)
    if match:
        return "pmid", normalize_pmid(match.group(1))
    doi = normalize_doi(value)
    if _DOI.match(doi):
        return "doi", doi.rstrip(".,;")
    return None


# Fetching


@dataclass
class Fetched:
    """What one batch gave: native records (plain YAML values) by PMID, and PMIDs PubMed did not return."""

    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


class Fetcher:
    """Fetch complete records: efetch XML, then similar articles (elink) with their summaries (esummary)."""

    def __init__(self, client: EutilsClient, similar_count: int = SIMILAR_COUNT):
        self.client = client
        self.similar_count = similar_count
        self.summaries: dict[str, dict] = {}  # esummary results, shared across batches

    def fetch(self, pmids: list[str], use_cache: bool = True) -> Fetched:
        """Return the records for `pmids` (one efetch request), with their similar articles."""
        fetched = Fetched()
        xml_text = self.client.efetch(pmids, use_cache=use_cache)
        shown = self.client.endpoint_url("efetch")
        try:
            result = pubmed_xml.read(xml_text, shown)
        except ReaderError as exc:
            raise EutilsError(f"{shown} sent XML that cannot be read: {exc.problems[0].message}") from None
        wanted = set(pmids)
        records = {r.fields.get("pmid"): r for r in result.records if r.fields.get("pmid") in wanted}
        fetched.problems.extend(p for p in result.problems if p.severity == "error")
        fetched.missing = [p for p in pmids if p not in records]
        neighbours: dict[str, list[Neighbour]] = {}
        found = [p for p in pmids if p in records]
        for batch in chunks(found, ELINK_BATCH_SIZE):
            neighbours.update(self.client.neighbours(batch, use_cache=use_cache))
        top = {pmid: neighbours.get(pmid, [])[: self.similar_count] for pmid in found}
        self._summarise([n.pmid for links in top.values() for n in links])
        for pmid in found:
            articles, problems = merge_records([records[pmid]])
            fetched.problems.extend(p for p in problems if p.severity == "error")
            if not articles:
                fetched.missing.append(pmid)
                continue
            similar = tuple(self._similar_ref(n) for n in top[pmid])
            native = article_to_native(dataclasses.replace(articles[0], similar=similar))
            for ref in native.get("similar", []):
                score = ref.get("score")
                if isinstance(score, float) and score.is_integer():  # elink scores are whole numbers
                    ref["score"] = int(score)
            fetched.records[pmid] = native
        return fetched

    def _summarise(self, pmids: Iterable[str]) -> None:
        needed = list(dict.fromkeys(p for p in pmids if p not in self.summaries))
        for batch in chunks(needed, SUMMARY_BATCH_SIZE):
            self.summaries.update(self.client.summaries(batch))

    def _similar_ref(self, neighbour: Neighbour) -> SimilarRef:
        return similar_from_summary(neighbour, self.summaries.get(neighbour.pmid))


def similar_from_summary(neighbour: Neighbour, summary: dict | None, today: dt.date | None = None) -> SimilarRef:
    """Return a similar article as PubMed cites it, from its esummary document summary."""
    if not summary:
        return SimilarRef(pmid=neighbour.pmid, score=neighbour.score)
    ids = {str(i.get("idtype", "")).lower(): str(i.get("value", "")) for i in summary.get("articleids") or []
           if isinstance(i, dict)}
    types = tuple(str(t).strip() for t in summary.get("pubtype") or [] if str(t).strip())
    volume, issue, pages = (_clean(summary.get(k)) for k in ("volume", "issue", "pages"))
    citation = volume + (f"({issue})" if issue else "") + (f":{pages}" if pages else "")
    return SimilarRef(
        pmid=neighbour.pmid,
        title=strip_added_period(_strip_tags(_clean(summary.get("title")))),
        journal=_clean(summary.get("source")),
        date=_clean(summary.get("pubdate")) or _clean(summary.get("epubdate")),
        citation=citation,
        doi=normalize_doi(ids.get("doi", "")),
        free_pmc=_free_in_pmc(ids, today or dt.date.today()),
        review=any(t in ("Review", "Systematic Review") for t in types),
        publication_types=types,
        score=neighbour.score,
    )


def _clean(value: Any) -> str:
    return " ".join(str(value or "").split())


def _strip_tags(text: str) -> str:
    """Drop the inline tags (i, b, sup, sub, u) esummary titles may carry, and decode entities."""
    return html.unescape(re.sub(r"</?(?:i|b|sup|sub|u)>", "", html.unescape(text), flags=re.IGNORECASE))


def _free_in_pmc(ids: dict[str, str], today: dt.date) -> bool:
    """Return True when the article is in PMC and its embargo (esummary 'pmcid' entry), if any, is over."""
    if not ids.get("pmc"):
        return False
    match = re.search(r"embargo-date:\s*(\d{4})/(\d{2})/(\d{2})", ids.get("pmcid", ""))
    if not match:
        return True
    try:
        return dt.date(*map(int, match.groups())) <= today
    except ValueError:
        return True


# Client set-up and progress


def _configured_email(root: Path) -> str:
    """Return `ncbi_email` from digest.yaml, or '' (config errors surface in the build, not here)."""
    from generator.config import load_config
    from generator.errors import DigestError

    try:
        return load_config(root, {}).ncbi_email
    except DigestError:
        return ""


def make_client(args: argparse.Namespace, root: Path, environ: dict[str, str] | None = None) -> EutilsClient:
    """Return a client for the configured service: --eutils-url, $DIGEST_EUTILS_URL or NCBI's."""
    environ = os.environ if environ is None else environ
    given = getattr(args, "eutils_url", None)
    url = given or environ.get("DIGEST_EUTILS_URL") or DEFAULT_BASE_URL
    try:
        base_url = normalize_base_url(url)
    except EutilsError as exc:
        raise DigestError(Problem("--eutils-url" if given else "DIGEST_EUTILS_URL", str(exc))) from None
    email = environ.get("NCBI_EMAIL", "").strip() or _configured_email(root)
    if not email and not getattr(args, "quiet", False):
        print("warning: no contact email for NCBI; set 'ncbi_email: you@example.org' in digest.yaml "
              "or export NCBI_EMAIL=you@example.org", file=sys.stderr)
    return EutilsClient(base_url, email=email, api_key=environ.get("NCBI_API_KEY", ""),
                        cache_dir=root / CACHE_FOLDER)


class Progress:
    """One self-overwriting status line on stderr, only when stderr is a terminal (and not --quiet)."""

    def __init__(self, quiet: bool, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.enabled = not quiet and _isatty(self.stream)
        self.shown = False

    def show(self, text: str) -> None:
        if self.enabled:
            self.stream.write("\r\033[K" + text)
            self.stream.flush()
            self.shown = True

    def clear(self) -> None:
        if self.enabled and self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.shown = False


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _fail(command: str, error: EutilsError, progress: Progress, note: str = "") -> int:
    progress.clear()
    print(f"digest {command}: {error}", file=sys.stderr)
    if note:
        print(note, file=sys.stderr)
    return 1


# add


def existing_pmids(folders: Iterable[Path], root: Path) -> set[str]:
    """Return the PMIDs of the native records (YAML, Markdown) already in these folders."""
    found: set[str] = set()
    seen: set[Path] = set()
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in content_files(folder):
            if path in seen or path.suffix.lower() not in NATIVE_SUFFIXES:
                continue
            seen.add(path)
            if path.stem.isdigit():
                found.add(normalize_pmid(path.stem))
            records, _ = read_file(path, _shown(path, root))
            found.update(normalize_pmid(r.fields.get("pmid")) for r in records if r.fields.get("pmid"))
    found.discard("")
    return found


def run_add(args: argparse.Namespace, client: EutilsClient | None = None, today: dt.date | None = None,
            batch_size: int = BATCH_SIZE) -> int:
    """Command: fetch PMIDs, DOIs, URLs or a search's results into one YAML record per article."""
    config = load_config(args.root, {})
    target = Path(args.to) if getattr(args, "to", None) else config.content_path
    identifiers, bad = [], []
    for text in args.ids:
        parsed = parse_identifier(text)
        (identifiers if parsed else bad).append(parsed or text)
    if bad:
        raise DigestError([Problem("digest add", f"not a PMID, DOI or PubMed URL: {text!r}",
                                   hint="e.g. 40561659, 10.1016/j.coi.2025.102596 or "
                                        "https://pubmed.ncbi.nlm.nih.gov/40561659/") for text in bad])
    if not identifiers and not args.query:
        raise DigestError(Problem("digest add", "nothing to add", hint="give PMIDs, DOIs or PubMed URLs, or --query"))
    if args.query is not None and args.max < 1:
        raise DigestError(Problem("digest add", f"--max must be at least 1, got {args.max}"))
    client = client or make_client(args, config.root)
    progress = Progress(args.quiet)
    today = today or dt.date.today()
    fetcher = Fetcher(client)
    written: list[Path] = []
    not_found: list[str] = []
    try:
        pmids = _resolve(client, identifiers, args.query, args.max, not_found, progress)
        already = existing_pmids(dict.fromkeys([target, config.content_path]), config.root)
        todo = [p for p in pmids if p not in already]
        skipped = len(pmids) - len(todo)
        for batch in chunks(todo, batch_size):
            progress.show(f"Fetching records {len(written) + 1}-{len(written) + len(batch)} of {len(todo)}...")
            fetched = fetcher.fetch(batch)
            not_found.extend(f"PMID {p}" for p in fetched.missing)
            for problem in fetched.problems:
                progress.clear()
                print(problem.format(), file=sys.stderr)
            target.mkdir(parents=True, exist_ok=True)
            for pmid in batch:
                if pmid in fetched.records:
                    path = _write_new_record(target, pmid, fetched.records[pmid], today)
                    if path is not None:
                        written.append(path)
    except EutilsError as error:
        note = ""
        if written:
            note = (f"{len(written)} complete record{'s' * (len(written) != 1)} written before the failure; "
                    f"run the same command again to fetch the rest.")
        return _fail("add", error, progress, note)
    progress.clear()
    for item in not_found:
        print(f"digest add: {item} was not found in PubMed", file=sys.stderr)
    if not args.quiet:
        where = _shown(target, config.root)
        parts = [f"Added {len(written)} record{'s' * (len(written) != 1)} to {where}"]
        if skipped:
            parts.append(f"{skipped} already there, skipped")
        if not_found:
            parts.append(f"{len(not_found)} not found")
        if args.query is not None and not pmids:
            parts.append("the search found nothing")
        print("; ".join(parts) + f" ({client.requests} request{'s' * (client.requests != 1)} to E-utilities).")
    return 1 if not_found else 0


def _resolve(client: EutilsClient, identifiers: list[tuple[str, str]], query: str | None, limit: int,
             not_found: list[str], progress: Progress) -> list[str]:
    """Return the PMIDs to add, in the order given: DOIs through esearch `<doi>[doi]`, then the search."""
    pmids: list[str] = []
    for kind, value in identifiers:
        if kind == "pmid":
            pmids.append(value)
            continue
        progress.show(f"Looking up DOI {value}...")
        found = client.esearch(f"{value}[doi]", retmax=2)
        if len(found) == 1:
            pmids.append(found[0])
        else:
            not_found.append(f"DOI {value}" if not found else f"DOI {value} (matches several records)")
    if query is not None:
        progress.show("Searching PubMed...")
        pmids.extend(client.esearch(query, retmax=limit))
    return list(dict.fromkeys(pmids))


def _write_new_record(target: Path, pmid: str, native: dict[str, Any], today: dt.date) -> Path | None:
    """Write `<pmid>.yaml` with `added: today`; never replace a file that exists."""
    path = target / f"{pmid}.yaml"
    if path.exists():
        return None
    record = dict(native)
    record["added"] = today.isoformat()
    ordered = {k: record[k] for k in FIELD_ORDER if k in record}
    ordered.update({k: v for k, v in record.items() if k not in ordered})
    write_record_file(path, dump_record(ordered, header=RECORD_HEADER))
    return path


def _shown(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


# refresh


@dataclass
class NativeFile:
    """A native record file as text, with its records as plain YAML values."""

    path: Path
    shown: str
    kind: str  # "yaml" (one mapping), "yaml-list" or "markdown"
    text: str
    items: list[dict[str, Any]]


@dataclass
class RecordChange:
    """What refresh found for one record."""

    shown: str
    pmid: str
    title: str
    changed: list[str] = field(default_factory=list)
    retracted: bool = False  # newly retracted
    retraction_notices: list[Notice] = field(default_factory=list)
    corrections: list[Notice] = field(default_factory=list)  # new errata, expressions of concern


@dataclass
class RefreshReport:
    changes: list[RecordChange] = field(default_factory=list)
    unchanged: int = 0
    not_found: list[tuple[str, str]] = field(default_factory=list)  # (shown path, pmid)
    skipped: list[Problem] = field(default_factory=list)
    files_written: int = 0

    def lines(self, dry_run: bool = False, alerts_only: bool = False) -> list[str]:
        """Return the summary: new retractions, then errata/concerns, then other changes, then the rest."""
        out: list[str] = []
        retracted = [c for c in self.changes if c.retracted]
        if retracted:
            out.append(f"NEW RETRACTIONS ({len(retracted)}):")
            for change in retracted:
                out.append(f"  {change.shown}: PMID {change.pmid} {_quote(change.title)} is retracted")
                out.extend(f"    {_notice_text(n)}" for n in change.retraction_notices)
        corrected = [c for c in self.changes if c.corrections]
        if corrected:
            out.append(f"NEW ERRATA AND EXPRESSIONS OF CONCERN ({len(corrected)}):")
            for change in corrected:
                out.append(f"  {change.shown}: PMID {change.pmid} {_quote(change.title)}")
                out.extend(f"    {_notice_text(n)}" for n in change.corrections)
        if alerts_only:
            return out
        changed = [c for c in self.changes if c.changed]
        if changed:
            out.append(f"Changed ({len(changed)}):")
            out.extend(f"  {c.shown}: PMID {c.pmid}: {', '.join(c.changed)}" for c in changed)
        for shown, pmid in self.not_found:
            out.append(f"warning: {shown}: PMID {pmid} was not found in PubMed; left as it was")
        out.extend(p.format() for p in self.skipped)
        out.append(f"Unchanged: {self.unchanged} record{'s' * (self.unchanged != 1)}.")
        if dry_run:
            out.append("Dry run: nothing was written.")
        else:
            out.append(f"Updated {self.files_written} file{'s' * (self.files_written != 1)}.")
        return out


def _quote(title: str) -> str:
    return f'"{title[:77]}..."' if len(title) > 80 else f'"{title}"'


def _notice_text(notice: Notice) -> str:
    names = {"RetractionIn": "Retraction in", "ErratumIn": "Erratum in",
             "ExpressionOfConcernIn": "Expression of concern in",
             "CorrectedandRepublishedIn": "Corrected and republished in"}
    text = f"{names.get(notice.kind, notice.kind)}: {notice.citation or '(no citation)'}"
    return text + (f" PMID {notice.pmid}" if notice.pmid else "")


def read_native_files(content: Path, root: Path) -> tuple[list[NativeFile], list[Problem]]:
    """Return the YAML and Markdown record files under `content`; unreadable ones become warnings."""
    files: list[NativeFile] = []
    problems: list[Problem] = []
    for path in content_files(content):
        suffix = path.suffix.lower()
        if suffix not in NATIVE_SUFFIXES:
            continue
        shown = _shown(path, root)
        try:
            text = path.read_text(encoding="utf-8")
            if suffix in (".md", ".markdown"):
                match = _FRONT_MATTER.match(text)
                if not match:
                    continue
                data, _ = load_yaml_with_lines(match.group(2) or "", shown)
                kind = "markdown"
            else:
                data, _ = load_yaml_with_lines(text, shown)
                kind = "yaml-list" if isinstance(data, list) else "yaml"
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem(shown, f"not refreshed: cannot read it ({exc})", severity="warning"))
            continue
        except ReaderError as exc:
            problems.append(dataclasses.replace(exc.problems[0], severity="warning",
                                                message="not refreshed: " + exc.problems[0].message))
            continue
        items = data if isinstance(data, list) else [data]
        if kind == "markdown" and not isinstance(data, dict):
            continue
        if any(isinstance(i, dict) and i.get("pmid") for i in items):
            files.append(NativeFile(path, shown, kind, text, [i if isinstance(i, dict) else {} for i in items]))
    return files, problems


def run_refresh(args: argparse.Namespace, client: EutilsClient | None = None, batch_size: int = BATCH_SIZE) -> int:
    """Command: re-fetch every native record with a PMID, update PubMed's fields, report the changes."""
    config = load_config(args.root, {})
    content = config.content_path
    if not content.is_dir():
        raise DigestError(Problem(str(content), "content folder not found", hint="run 'digest add' first"))
    files, problems = read_native_files(content, config.root)
    pmids = list(dict.fromkeys(normalize_pmid(item.get("pmid")) for f in files for item in f.items
                               if item.get("pmid")))
    pmids = [p for p in pmids if p]
    client = client or make_client(args, config.root)
    progress = Progress(args.quiet)
    fetcher = Fetcher(client)
    fresh: dict[str, dict[str, Any]] = {}
    missing: set[str] = set()
    try:
        for done, batch in enumerate(chunks(pmids, batch_size)):
            progress.show(f"Fetching records {done * batch_size + 1}-{done * batch_size + len(batch)} "
                          f"of {len(pmids)}...")
            fetched = fetcher.fetch(batch, use_cache=False)
            fresh.update(fetched.records)
            missing.update(fetched.missing)
    except EutilsError as error:
        return _fail("refresh", error, progress, "Nothing was changed.")
    progress.clear()
    report = RefreshReport(skipped=problems)
    for native_file in files:
        new_text = refresh_file(native_file, fresh, missing, report)
        if new_text is not None and new_text != native_file.text and not args.dry_run:
            write_record_file(native_file.path, new_text)
            report.files_written += 1
    alerts_only = bool(args.quiet)
    for line in report.lines(dry_run=args.dry_run, alerts_only=alerts_only):
        print(line)
    return 0


def refresh_file(native_file: NativeFile, fresh: dict[str, dict[str, Any]], missing: set[str],
                 report: RefreshReport) -> str | None:
    """Return the file's new text with PubMed's fields updated (None when nothing changed)."""
    edits: list[tuple[dict[str, Any], set[str]]] = []
    for item in native_file.items:
        pmid = normalize_pmid(item.get("pmid"))
        if not pmid or pmid not in fresh:
            if pmid in missing:
                report.not_found.append((native_file.shown, pmid))
            edits.append(({}, set()))
            continue
        updates, deletes, change = compare_record(item, fresh[pmid], native_file.shown, pmid)
        edits.append((updates, deletes))
        if change.changed:
            report.changes.append(change)
        else:
            report.unchanged += 1
    if not any(u or d for u, d in edits):
        return None
    if native_file.kind == "yaml":
        return edit_record_text(native_file.text, native_file.items[0], *edits[0])
    if native_file.kind == "markdown":
        match = _FRONT_MATTER.match(native_file.text)
        assert match is not None
        front = match.group(2) or ""
        new_front = edit_record_text(front, native_file.items[0], *edits[0])
        return native_file.text[: match.start(2)] + new_front + native_file.text[match.end(2):]
    # A list of records: values are kept exactly, though comments between records are not.
    items = [apply_to_dict(item, u, d) for item, (u, d) in zip(native_file.items, edits)]
    return dump_record(items, header=_leading_comments(native_file.text))  # type: ignore[arg-type]


def compare_record(raw: dict[str, Any], new: dict[str, Any], shown: str, pmid: str
                   ) -> tuple[dict[str, Any], set[str], RecordChange]:
    """Return (updates, deletes, change): the PubMed fields whose meaning differs, by canonical name.

    A field PubMed no longer gives is left as it is (the curator may have written it), except a
    `title_html` that no longer matches a changed title. A similar list that differs only in
    scores is left too, so refreshes do not churn the files.
    """
    old_fields = _coerced(raw, shown)
    updates: dict[str, Any] = {}
    deletes: set[str] = set()
    for key in PUBMED_FIELDS:
        present = [k for k in raw if ALIASES.get(str(k), str(k)) == key]
        old_value = raw[present[-1]] if present else None
        new_value = new.get(key)
        if new_value in (None, "", [], {}):
            continue
        if present and _same(key, old_value, new_value):
            continue
        updates[key] = new_value
    if "title" in updates and "title_html" not in new and any(ALIASES.get(str(k), str(k)) == "title_html" for k in raw):
        deletes.add("title_html")
    new_fields = _coerced(apply_to_dict(raw, updates, deletes), shown)
    change = RecordChange(shown=shown, pmid=pmid, title=str(new_fields.get("title") or old_fields.get("title") or ""),
                          changed=[k for k in PUBMED_FIELDS if k in updates or k in deletes])
    if _is_retracted(new_fields) and not _is_retracted(old_fields):
        change.retracted = True
        change.retraction_notices = _new_notices(old_fields, new_fields, ("RetractionIn",))
    change.corrections = _new_notices(old_fields, new_fields, CORRECTION_KINDS)
    return updates, deletes, change


def _coerced(raw: dict[str, Any], shown: str) -> dict[str, Any]:
    fields, _ = coerce_native(Record(fields=dict(raw), source=SourceRef(shown), native=True))
    return fields


def _same(key: str, old: Any, new: Any) -> bool:
    """Return True when two plain values mean the same model value for a field."""
    coerce = COERCERS[key]
    try:
        a, b = coerce(old), coerce(new)
    except (FieldError, TypeError, ValueError):
        return False
    if key == "similar":
        a = tuple(dataclasses.replace(r, score=None) for r in a)
        b = tuple(dataclasses.replace(r, score=None) for r in b)
    return a == b


def _is_retracted(fields: dict[str, Any]) -> bool:
    return "Retracted Publication" in fields.get("publication_types", ()) or any(
        n.kind == "RetractionIn" for n in fields.get("notices", ()))


def _new_notices(old: dict[str, Any], new: dict[str, Any], kinds: tuple[str, ...]) -> list[Notice]:
    seen = {(n.kind, n.pmid or n.citation) for n in old.get("notices", ())}
    return [n for n in new.get("notices", ()) if n.kind in kinds and (n.kind, n.pmid or n.citation) not in seen]


def apply_to_dict(raw: dict[str, Any], updates: dict[str, Any], deletes: set[str]) -> dict[str, Any]:
    """Return the record with updates in place (alias keys replaced) and new keys in field order."""
    result: dict[str, Any] = {}
    for key, value in raw.items():
        canonical = ALIASES.get(str(key), str(key))
        if canonical in deletes or (canonical in updates and canonical in result):
            continue
        result[canonical if canonical in updates else key] = updates.get(canonical, value)
    for key in _insertion_order(updates, result):
        anchor = _anchor(key, list(result))
        items = list(result.items())
        index = items.index(next(i for i in items if i[0] == anchor)) + 1 if anchor is not None else 0
        items.insert(index, (key, updates[key]))
        result = dict(items)
    return result


def _insertion_order(updates: dict[str, Any], present: Iterable[str]) -> list[str]:
    present_canonical = {ALIASES.get(k, k) for k in present}
    return [k for k in FIELD_ORDER if k in updates and k not in present_canonical]


def _anchor(key: str, keys: list[str]) -> str | None:
    """Return the present key a new field goes after: the latest one before it in FIELD_ORDER."""
    order = {name: i for i, name in enumerate(FIELD_ORDER)}
    before = [k for k in keys if ALIASES.get(k, k) in order and order[ALIASES.get(k, k)] < order[key]]
    return max(before, key=lambda k: (order[ALIASES.get(k, k)], keys.index(k))) if before else None


class _CannotEdit(Exception):
    """The YAML is not a plain block mapping at the top level: rewrite it whole instead."""


def edit_record_text(text: str, raw: dict[str, Any], updates: dict[str, Any], deletes: set[str]) -> str:
    """Return the YAML text with only the changed top-level keys rewritten; every other line is kept.

    The edit is checked by reading the result back; if anything but the intended fields would
    differ, the record is written whole instead (values kept, comments and layout not).
    """
    expected = apply_to_dict(raw, updates, deletes)
    try:
        edited = _edit_lines(text, updates, deletes)
        if _load(edited) == _normalized(expected):
            return edited
    except (_CannotEdit, yaml.YAMLError, ReaderError):
        pass
    return dump_record(expected, header=_leading_comments(text))


def _load(text: str) -> Any:
    data, _ = load_yaml_with_lines(text, "record")
    return data


def _normalized(record: dict[str, Any]) -> Any:
    return _load(dump_record(record))


def _edit_lines(text: str, updates: dict[str, Any], deletes: set[str]) -> str:
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    if not isinstance(node, yaml.MappingNode) or node.flow_style or not node.value:
        raise _CannotEdit
    lines = text.splitlines(keepends=True)
    newline = "\r\n" if lines[0].endswith("\r\n") else "\n"
    if not lines[-1].endswith(("\n", "\r")):
        lines[-1] += newline
    regions: list[tuple[str, str, int, int]] = []  # (key as written, canonical, first line, end line)
    for index, (key_node, value_node) in enumerate(node.value):
        if not isinstance(key_node, yaml.ScalarNode) or key_node.start_mark.column != 0:
            raise _CannotEdit
        start = key_node.start_mark.line
        following = node.value[index + 1][0].start_mark.line if index + 1 < len(node.value) else len(lines)
        end = value_node.end_mark.line + (1 if value_node.end_mark.column > 0 else 0)
        end = max(start + 1, min(end, following))
        # Blank lines and column-0 comments after a value belong to what follows it: keep them.
        while end - 1 > start and (not lines[end - 1].strip() or lines[end - 1].startswith("#")):
            end -= 1
        regions.append((str(key_node.value), ALIASES.get(str(key_node.value), str(key_node.value)), start, end))

    def dumped(key: str) -> str:
        return dump_record({key: updates[key]}).replace("\n", newline)

    replaced: dict[int, str] = {}
    for key in updates:
        indexes = [i for i, region in enumerate(regions) if region[1] == key]
        for position, i in enumerate(indexes):
            replaced[i] = dumped(key) if position == 0 else ""
    for i, region in enumerate(regions):
        if region[1] in deletes:
            replaced[i] = ""
    inserted_after: dict[int | None, list[str]] = {}
    written = [region[0] for region in regions]
    for key in _insertion_order(updates, written):
        anchor = _anchor(key, written)
        at = None if anchor is None else max(i for i, region in enumerate(regions) if region[0] == anchor)
        inserted_after.setdefault(at, []).append(dumped(key))
    out: list[str] = []
    position = 0
    for i, (_, _, start, end) in enumerate(regions):
        out.append("".join(lines[position:start]))
        if i == 0:
            out.extend(inserted_after.get(None, []))
        out.append(replaced.get(i, "".join(lines[start:end])))
        out.extend(inserted_after.get(i, []))
        position = end
    out.append("".join(lines[position:]))
    return "".join(out)


def _leading_comments(text: str) -> str:
    """Return the comment lines a file starts with (kept when a record has to be rewritten whole)."""
    kept = []
    for line in text.lstrip("\ufeff").splitlines(keepends=True):
        if not line.startswith("#"):
            break
        kept.append(line if line.endswith("\n") else line + "\n")
    return "".join(kept)


__all__ = ["parse_identifier", "run_add", "run_refresh", "Fetcher", "similar_from_summary", "edit_record_text"]
