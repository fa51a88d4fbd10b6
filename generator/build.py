"""Run the stages in order (load → link → render → write) and time each one.

Rendering streams into the spare tree of `write.SiteWriter`: only pages whose fingerprint changed
are rendered, on all cores (forked workers share the linked digest), and the site is published by
one atomic exchange. The bytes do not depend on the number of workers.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import multiprocessing
import operator
import os
import pickle
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Iterator, Mapping, NamedTuple, Protocol, Sequence

from generator.cache_files import CACHE_DIR, RACY_NS, JournaledDict, bytes_digest, load_pickle, save_pickle
from generator.config import SiteConfig
from generator.errors import DigestError, Problem
from generator.input_check import CheckedInputs, InputCheck, InputDigests, file_digest
from generator.link import Digest, LinkState, SimilarLists, build_taxonomies, link_articles
from generator.load import (LoadState, collect_frozen_garbage, collector_paused, freeze_for_good, load_articles,
                            read_back_deferred)
from generator.render import (AGGREGATES, PageJob, PlanMemoFile, Renderer, article_keys,
                             citation_keys_of, export_frame, export_item, exports_key, fingerprint,
                             forget_digest_memos, forget_entries_made, join_export, keep_compiled_templates,
                             listing_page_key, own_article_templates, page_job, produce, records_key,
                             render_article_page, rendering_code_stamp, template_references, term_jobs,
                             term_places_of, theme_fingerprint, warm_up)
from generator.progress import NoProgress, Progress
from generator.exports import CITATION_FILES, citation_file
from generator import urls
from generator.similarity_settings import PARALLEL_ROWS
from generator.workers import ForkedWorkers, can_fork, can_fork_alone, worker_setup
from generator.write import (TREE_MARKER, SiteWriter, TreeFiles, checked_path, create_file, forget_manifests,
                             static_files, write_all, write_spliced)

PARALLEL_THRESHOLD = 400  # below this many pages to render, forking costs more than it saves


@dataclass
class BuildReport:
    articles: int = 0
    pages: int = 0
    written: int = 0
    kept: int = 0  # files the site did not have that the spare tree held already (see `SiteWriter._sort`)
    rendered: int = 0
    removed: int = 0
    seconds: float = 0.0
    searched: int = 0  # article pages indexed anew for search (the others' shards were kept)
    warnings: list[Problem] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        """Return the one line a build prints."""
        changed = f"{self.written:,} written" if not self.kept else \
            f"{self.written + self.kept:,} changed: {self.written:,} written, {self.kept:,} already made by the build before last"
        changed += (f", {self.removed:,} removed" if self.removed else "") + \
            (f"; {self.searched:,} indexed for search" if self.searched else "")
        warn = f", {len(self.warnings):,} warning{'s' * (len(self.warnings) != 1)}" if self.warnings else ""
        return (f"Built {self.articles:,} article{'s' * (self.articles != 1)}: {self.pages:,} pages "
                f"({changed}){warn} in {self.seconds:.2f} s")


@contextmanager
def _timed(report: BuildReport, stage: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    report.stage_seconds[stage] = time.perf_counter() - start


INPUTS_RECORD = "inputs.json"  # in the cache folder: what the no-change check compares with
DIGESTS_RECORD = "input-digests.marshal"  # the inputs' digests, which that record names


def _unchanged_report(config: SiteConfig, checked: CheckedInputs) -> BuildReport | None:
    """Return the last build's report when neither the inputs nor the live site changed since
    (inputs whose times alone changed, their bytes the same, are unchanged: see `_only_times_moved`).
    Past the quick comparison, `checked.last` gets the last build's digests, for this build's."""
    try:
        saved = _read_inputs_record(config)
        marker = (config.output_path / TREE_MARKER).read_text(encoding="ascii").strip()
        if saved.get("inputs") != checked.fingerprint or saved.get("tree") != marker:
            checked.last = _last_digests(config, saved)
            if saved.get("tree") != marker or not _only_times_moved(config, saved, checked):
                return None
        warnings = [Problem(path=w[0], message=w[1], line=w[2], hint=w[3], severity="warning")
                    for w in saved.get("warnings", [])]
        return BuildReport(articles=int(saved["articles"]), pages=int(saved["pages"]), warnings=warnings)
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None


def _only_times_moved(config: SiteConfig, saved: dict[str, Any], checked: CheckedInputs) -> bool:
    """Whether the inputs are those of the build that `saved` records (`checked.last`) but for the
    times of some files, whose bytes are the same (a file touched, saved unchanged, checked out
    again); then record their new times, so that the next check is the quick one again."""
    last = checked.last
    moved = last.moved_alone(config, checked) if last is not None else None
    if moved is None:
        return False
    # Not while a file that moved is racily clean (`RACY_NS`): its new time would vouch for bytes
    # that may change again within the same tick. The next check hashes it again.
    if all(checked.entries[n][2] + RACY_NS < checked.checked_ns for n in moved):  # type: ignore[index]
        # (A file that had no digest has none still: its bytes at the last build are not known.)
        same = {checked.entries[n][0]: last.digests[n - 1] for n in moved}  # type: ignore[index]
        renewed = InputDigests.made(config, checked, lambda path, size, mtime_ns: same.get(path), last)
        _write_inputs_record(config, {**saved, "inputs": checked.fingerprint}, renewed)
    return True


# The digests this process last read or wrote, with the token its inputs record names them by: a
# process that builds again (the daemon) and a new process's edit, whose check read them, read
# them once (8 ms at 10,000 articles).
_DIGESTS_SEEN: dict[str, tuple[str, InputDigests]] = {}


def _last_digests(config: SiteConfig, saved: dict[str, Any]) -> InputDigests | None:
    """The input digests of the build that `saved` (its inputs record) records, if kept."""
    token = saved.get("digests")
    if not token:
        return None
    path = os.fspath(config.root / CACHE_DIR / DIGESTS_RECORD)
    seen = _DIGESTS_SEEN.get(path)
    if seen is not None and seen[0] == token:
        return seen[1]
    try:
        with open(path, "rb") as stream:
            data = stream.read()
    except OSError:
        return None
    if bytes_digest(data) != token:
        return None  # another build's (one that failed to write its record)
    digests = InputDigests.from_bytes(data)
    if digests is not None:
        _DIGESTS_SEEN[path] = (token, digests)
    return digests


def _input_digests(config: SiteConfig, checked: CheckedInputs, load_state: LoadState | None) -> InputDigests:
    """The digests of this build's inputs (see `InputDigests`), made once the load stage has read
    the record files: their hashes are its (hashing 10,000 again would cost 0.2 s). Templates,
    static files and code are hashed here (a few hundred KB, and only those whose times moved)."""
    root = os.fspath(config.root) + os.sep
    content = os.fspath(config.content_path) + os.sep

    def digest_of(path: str, size: int, mtime_ns: int) -> str | None:
        if not path.startswith(content):
            return file_digest(path, size, mtime_ns)
        return load_state.file_digest(path[len(root):] if path.startswith(root) else path, size, mtime_ns) \
            if load_state is not None else None

    last = checked.last if checked.last is not None else _last_digests(config, _read_inputs_record(config))  # (--clean)
    return InputDigests.made(config, checked, digest_of, last)


def _remember_inputs(config: SiteConfig, fingerprint: str, report: BuildReport, digests: InputDigests) -> None:
    """Record what the next build's no-change check compares with: the inputs' fingerprint and
    digests, the live tree's marker and the report."""
    try:
        marker = (config.output_path / TREE_MARKER).read_text(encoding="ascii").strip()
    except OSError:
        return
    warnings = [[w.path, w.message, w.line, w.hint] for w in report.warnings]
    _write_inputs_record(config, {"inputs": fingerprint, "tree": marker, "articles": report.articles,
                                  "pages": report.pages, "warnings": warnings}, digests)


def _read_inputs_record(config: SiteConfig) -> dict[str, Any]:
    try:
        saved = json.loads((config.root / CACHE_DIR / INPUTS_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return saved if isinstance(saved, dict) else {}


def _write_inputs_record(config: SiteConfig, record: dict[str, Any], digests: InputDigests) -> None:
    """Write the digests, then the record that names them (a build that stops between the two
    leaves a record that names other digests: never taken for these)."""
    try:
        folder = config.root / CACHE_DIR
        folder.mkdir(parents=True, exist_ok=True)
        path = os.fspath(folder / DIGESTS_RECORD)
        seen = _DIGESTS_SEEN.get(path)
        if seen is not None and seen[1] == digests:
            token = seen[0]
        else:
            data = digests.to_bytes()
            token = bytes_digest(data)
            with open(path, "wb") as stream:
                stream.write(data)
            _DIGESTS_SEEN[path] = (token, digests)
        (folder / INPUTS_RECORD).write_text(json.dumps({**record, "digests": token}), encoding="utf-8")
    except OSError:
        pass  # the cache is an optimisation; the next build just does the work


@dataclass
class BuildSession:
    """What one process keeps between builds of one digest (`digest serve`), so that a save costs
    what it changed: files not re-read, unchanged articles kept as the same objects, similarity
    reused when no text changed (see LoadState, LinkState), listing and feed fragments in memory.

    The bytes written are exactly those of a build without a session.
    """

    config: SiteConfig | None = None  # the configuration the state belongs to
    fragments: dict[str, str] | None = None
    fragment_store: JournaledDict | None = None  # the cache file of fragments (see _fragment_store)
    jobs: list[PageJob] | None = None  # the last plan's jobs
    load_state: LoadState | None = None
    link_state: LinkState | None = None
    saved: bool = False  # whether the cache files hold a build of this session
    watched: bool = True  # told of every change by a watcher (serve); else each build checks its inputs
    # Whether a build leaves writing its fragments to the cache folder (and what goes with it) to
    # `settle_session`, which the caller runs once the user has the result (the daemon, after
    # answering its client): a save costs 10 ms, and 0.3 s when it folds the journal into a new base
    # (one edit in four or five at 10,000 articles). The next build runs what is left first.
    saves_later: bool = False
    later: list[Callable[[], None]] = field(default_factory=list)
    # How an unwatched session's builds check their inputs: after the first, only the files the
    # kernel says changed are asked about (the daemon's; see `input_check`).
    input_check: InputCheck | None = None

    def hand_over(self, config: SiteConfig | None) -> tuple[LoadState | None, LinkState | None]:
        """Give up what this session kept, returning its load and link states when a session of
        `config` can go on with them (the same content and project folders); keep nothing."""
        states = (self.load_state, self.link_state)
        same_folders = (self.config is not None and config is not None and self.config.root == config.root
                        and self.config.content_path == config.content_path)
        self.fragments = self.fragment_store = self.jobs = self.load_state = self.link_state = None
        self.input_check, self.later = None, []
        return states if same_folders and None not in states else (None, None)


def new_session(replacing: BuildSession | None, **fields: Any) -> BuildSession:
    """Return a session (serve's, the daemon's). `replacing`: the session of the last digest.yaml,
    which is left empty (`hand_over`). Its load and link states go on in the new session: they hold
    nothing of the configuration but the folders they read, so a new site title neither parses the
    records again nor computes the similarity, and the keys made of the articles alone stay too.
    (Started from the cache folder, which holds what a session learned only when it saves, the
    daemon's first build after a new title loaded for 2.0 s and linked for 2.2-2.3 s at 10,000
    articles, against 0.04 and 0.01 s now; its plan took 0.9-1.0 s, 0.5-0.6 s with those keys.)
    What else the process kept of that digest, the memos of pages and keys that the new
    configuration makes stale, goes before the new session's first build: the daemon held
    1.04-1.14 GB after new site titles at 10,000 articles when they stayed, 0.68-0.73 GB without."""
    session = BuildSession(**fields)
    if replacing is not None:
        session.load_state, session.link_state = replacing.hand_over(session.config)
        forget_digest_memos(keep_article_keys=session.load_state is not None)
        forget_manifests()
        _EXPORT_INDEX.clear()
        _ENTRY_PATHS.clear()
        # What the memos held in cycles, frozen with the rest (0.8 s at 10,000 articles; left to
        # the collection after the build, the daemon peaked at 786 MB instead of 600).
        collect_frozen_garbage()
    return session


def settle_session(session: BuildSession) -> int:
    """What a process idle after a build (the daemon, once its client has the answer) does, under
    the build lock: what the session's last build left for later (see `BuildSession.saves_later`),
    and trusting from now on the content files that build saw too soon after they changed, if they
    are unchanged since (see `LoadState.confirm_settled_files`; return how many)."""
    config, state = session.config, session.load_state
    if config is None:
        return 0
    with _one_build_at_a_time(config, NoProgress()):
        _run_later(session)
        return state.confirm_settled_files(config.content_path, config.root) if state is not None else 0


def warm_session(session: BuildSession) -> bool:
    """What a process idle after its first build does when that build found nothing changed (a
    daemon started on a built digest): load, link and plan from the cache folder, as a build would,
    and make what an edit's plan and render reuse (`warm_up`), so that the first edit costs what the
    next ones do (5.5 s otherwise at 10,000 articles, against about 1 s). Publishes nothing: when
    the inputs changed meanwhile, the next build renders them with the states this one loaded.
    Return whether it loaded anything."""
    config = session.config
    if config is None or session.load_state is not None:
        return False
    with _one_build_at_a_time(config, NoProgress()):
        if session.load_state is not None:  # another thread's build came first
            return False
        if session.later:
            _run_later(session)
        stats: dict[str, os.stat_result] = {}
        if session.input_check is not None:  # the load stage then keeps what an edit's load starts from
            session.input_check.fingerprint(config, stats)
        with contextlib.ExitStack() as cleanup:
            _build(config, False, None, False, NoProgress(), False, session, None, BuildReport(),
                   time.perf_counter(), None, cleanup, stats=stats, warm_only=True)
    return True


def _run_later(session: BuildSession) -> None:
    """`settle_session` for a caller that holds the build lock (a POSIX lock taken twice by one
    process is released by the inner one's end)."""
    later, session.later = session.later, []
    for step in later:
        step()


def save_session(session: BuildSession) -> None:
    """Write what a session learned since its first build to the cache folder, for the process that
    builds next (a daemon that ends): the load and link states, the plan's keys and where each entry
    is in the live exports. Under the build lock; everything in those files is keyed by what it was
    made from, so a build that ran meanwhile loses nothing to them."""
    config = session.config
    if config is None or session.load_state is None or session.link_state is None:
        return
    with _one_build_at_a_time(config, NoProgress()):
        _run_later(session)
        session.load_state.save()
        session.link_state.save()
        PlanMemoFile(config.root / CACHE_DIR / "plan.pickle").save()
        save_export_index(config)


def fill_spare_tree(config: SiteConfig) -> None:
    """Make the spare tree a copy of the live one when its contents are unknown (after a cold
    build), so that the next build starts from it: what a process that outlives its build (the
    daemon) does while idle, instead of during the next build (82,000 links in 41,000 folders at
    10,000 articles, 2.5-4 s, see `SiteWriter.fill_spare`)."""
    with _one_build_at_a_time(config, NoProgress()):
        writer = SiteWriter(config.output_path, config.root / CACHE_DIR, again=True)
        # Only an unknown spare: a stale one holds its own old files, which a next build that
        # changes every page again writes over in place (see `SiteWriter.fill_spare`).
        writer.fill_spare(lambda: _renders_as_live(config, writer), stale_too=False)
        writer.keep_spare()


def save_export_index(config: SiteConfig) -> None:
    """Write where each entry is in the live exports (`_EXPORT_INDEX`) to the cache folder: a
    session's builds keep it in memory, and the next process's first edit would otherwise read
    30,000 citation files at 10,000 articles (1.1 s) to make the exports again."""
    if _EXPORT_INDEX:
        save_pickle(config.root / CACHE_DIR / "exports.pickle", _EXPORT_INDEX)


class Preview(Protocol):
    """What `digest serve` asks of a build: the pages open in a browser first (Hugo's fast render).

    Before working out the whole site, the build renders the pages among `open_pages()` (output
    paths) and calls `show()` with those whose bytes differ from the live site's, together with the
    theme's assets (their names carry a hash of their bytes); the server can show them at once.
    Once it knows every page's fingerprint it calls `planned()` with a test telling whether a
    path's file in the live site already holds this build's bytes. Nothing else changes: the same
    files are written (the pages shown are not rendered again), and published together.
    """

    def open_pages(self) -> set[str]: ...

    def show(self, pages: dict[str, bytes]) -> None: ...

    def planned(self, is_current: Callable[[str], bool]) -> None: ...


def _states(config: SiteConfig, clean: bool, session: BuildSession | None) -> tuple[LoadState | None, LinkState | None]:
    """Return the load and link states of this build: the session's (kept in memory, saved to the
    cache folder once), fresh ones backed by the cache folder, or none for a clean build."""
    cache = config.root / CACHE_DIR
    if clean:
        return None, None
    if session is None:  # saved after linking, by `_save_states`
        return LoadState(cache / "records.pickle", autosave=False), LinkState(cache / "links.pickle", autosave=False)
    if session.load_state is None or session.link_state is None:
        session.load_state = LoadState(cache / "records.pickle", autosave=False)
        session.link_state = LinkState(cache / "links.pickle", autosave=False, builds_again=True)
    return session.load_state, session.link_state


def build(config: SiteConfig, strict: bool = False, jobs: int | None = None, clean: bool = False,
          progress: Progress | None = None, index_search: bool = True,
          session: BuildSession | None = None, preview: Preview | None = None,
          process_ends: bool = False) -> BuildReport:
    """Build the site; raise DigestError (the previous site untouched) when the input has errors.

    `process_ends` (the command line's one build) keeps what loading and linking made out of the
    garbage collector's reach until the process ends: each full collection would walk the whole
    digest again (0.5 to 0.7 s at 10,000 articles, one during the build and one at exit); and it
    leaves the load state to the process's end instead of freeing it (`_keep_until_exit`).

    With `search` on, the new tree is indexed before it is published whenever an article page
    changed; otherwise the live index is reused. `index_search=False` (serve's rebuilds) always
    reuses it, so a save does not wait for indexing.
    """
    progress = progress or NoProgress()
    with _one_build_at_a_time(config, progress):
        if session is not None and session.later:  # left by the last build, not settled since
            _run_later(session)
        return _checked_build(config, strict, jobs, clean, progress, index_search, session, preview, process_ends)


@contextmanager
def _one_build_at_a_time(config: SiteConfig, progress: Progress) -> Iterator[None]:
    """Hold the digest's build lock (`.digest-cache/build.lock`) for the whole build.

    Two builds of one digest at once (`digest build` while `digest serve` rebuilds, or two
    terminals) would both write `.site.spare/` and the caches; the second waits instead, and says
    so. A POSIX record lock: released by the system if the process dies, never held by forked
    children, and taken again at once by the process that holds it. So builds on two threads of one
    process (serve's watcher and a direct call, a tool embedding the build) are serialised by a
    lock of the process too: they share what the stages keep between builds, whatever the digest.
    Where file locks are not available (no `fcntl`, a read-only folder), only those are.
    """
    with _BUILDS_IN_THIS_PROCESS:
        yield from _file_lock(config, progress)


_BUILDS_IN_THIS_PROCESS = threading.RLock()  # re-entered by a build's own thread (the daemon's filler)


def _file_lock(config: SiteConfig, progress: Progress) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # not a POSIX system
        yield
        return
    try:
        (config.root / CACHE_DIR).mkdir(exist_ok=True)  # not for a digest folder that does not exist
        handle = open(config.root / CACHE_DIR / "build.lock", "a+b")
    except OSError:
        yield
        return
    with handle:
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            progress.notice(f"Waiting for another build of {config.root} to finish...")
            fcntl.lockf(handle, fcntl.LOCK_EX)
        yield  # closing the file releases the lock


def _checked_build(config: SiteConfig, strict: bool, jobs: int | None, clean: bool, progress: Progress,
                   index_search: bool, session: BuildSession | None, preview: Preview | None,
                   process_ends: bool) -> BuildReport:
    """The build under the lock: the no-change check, then `_build`."""
    report = BuildReport()
    start = time.perf_counter()
    # A watched session (`digest serve`) is told about changes: it skips the no-change check, and
    # records nothing for it (its trees have new markers, so a later check never matches them).
    checks = session is None or not session.watched
    stats: dict[str, os.stat_result] = {}
    check = session.input_check if session is not None else None
    checked_ns = time.time_ns()  # (before any file is stated: see `InputDigests`)
    if check is None and checks:
        check = InputCheck(watch=False)  # what `input_fingerprint` does, keeping its entries
    checked = None  # (None: nothing recorded for the next check)
    if check is not None:  # serve's too: its load stage takes the stats and the walk from it
        fingerprint = check.fingerprint(config, stats)
        if checks:
            checked = CheckedInputs(fingerprint, list(check.entries), checked_ns)
    previous = None if clean or checked is None else _unchanged_report(config, checked)
    if previous is not None and not (strict and previous.warnings):
        previous.seconds = time.perf_counter() - start
        previous.stage_seconds["check inputs"] = previous.seconds
        return previous
    with contextlib.ExitStack() as cleanup:  # ends the early writer, if any, whatever happens
        return _build(config, strict, jobs, clean, progress, index_search, session, preview, report, start, checked,
                      cleanup, process_ends, stats)


def _renders_as_live(config: SiteConfig, writer: SiteWriter) -> bool:
    """Whether this build renders with the theme (templates, assets, configuration, this code) the
    live site was rendered with, as far as it can tell before loading: the live 404 page's key is
    that theme's fingerprint. (A theme whose templates read the whole digest has another key.)"""
    live_key = writer.live.get(urls.NOT_FOUND)
    try:
        return live_key is not None and live_key == theme_fingerprint(config, None, False)
    except OSError:  # a theme file that cannot be read: the renderer reports it
        return False


def _build(config: SiteConfig, strict: bool, jobs: int | None, clean: bool, progress: Progress,
           index_search: bool, session: BuildSession | None, preview: Preview | None, report: BuildReport,
           start: float, checked: CheckedInputs | None, cleanup: contextlib.ExitStack, process_ends: bool = False,
           stats: dict[str, os.stat_result] | None = None, warm_only: bool = False) -> BuildReport:
    """The build past the no-change check: load, link, plan, render, write (see `build`); `stats`
    are the files' `os.stat` of that check, `checked` what else it stated, recorded for the next
    check (None: nothing recorded). `warm_only` (see `warm_session`) stops after the plan."""
    # Before anything reads the templates (the early writer asks what they refer to).
    keep_compiled_templates(None if clean else config.root / CACHE_DIR / "jinja")
    writer = SiteWriter(config.output_path, config.root / CACHE_DIR, clean=clean, again=session is not None)
    cleanup.callback(writer.remove_discarded)  # last: once the build is over, published or not
    cleanup.callback(writer.stop_filling)
    if not warm_only:
        # A session's load, link and plan are too short for linking a stale spare ahead to pay.
        writer.fill_spare(lambda: _renders_as_live(config, writer), stale_too=session is None)
    # What a new process reads from the cache folder: also by a session's first build (serve's,
    # the daemon's), which would otherwise make every key again (1.5 s at 10,000 articles).
    from_files = (session is None or session.load_state is None) and not clean
    # A session's first build (of a new process, or of a new digest.yaml that kept the states, see
    # `new_session`) finds the memos that an edit's plan and render reuse empty: it makes them.
    first_in_session = session is not None and session.jobs is None
    with _timed(report, "load"):
        load_state, link_state = _states(config, clean, session)
        check = session.input_check if session is not None else None
        loaded = load_articles(config.content_path, config.root, state=load_state, jobs=jobs, stats=stats,
                               listing=check.listing if check is not None and stats else None)
    report.warnings = loaded.warnings
    # What the next no-change check needs of the files read (the state may be gone by the end).
    input_digests = _input_digests(config, checked, load_state) if checked is not None else None
    if process_ends:
        # What loading made lives as long as this process: out of the collector's reach now, not
        # only after linking. Left in its oldest generation, the first full pass over it came during
        # the articles' keys (3.4 s at 100,000 articles).
        freeze_for_good(collect=False)
    if strict and loaded.warnings:
        raise DigestError([Problem(w.path, w.message, w.line, w.hint) for w in loaded.warnings])
    keys_file = config.root / CACHE_DIR / "keys.pickle"
    key_store: dict = load_pickle(keys_file) if from_files else {}
    if key_store.get("") != rendering_code_stamp():  # what the keys are made by changed: made again
        key_store = {"": rendering_code_stamp()}
    known_keys = len(key_store)
    # The early writer (see _EarlyFiles) starts now, while linking runs on one core. In a digest of
    # PARALLEL_ROWS articles or more the similarity's products could use the other core, but most of
    # linking runs on one, and starting the writer after it left that core idle: cold builds at
    # 25,000 articles took 0.92 of the time with the writer started here (3 of 3 pairs, same CPU).
    # Not in a process with threads (serve's): it forks. A session (the daemon's) keeps its load state.
    early: _EarlyFiles | None = None
    if session is None or can_fork_alone():
        with _timed(report, "early files"):
            early = _EarlyFiles.start(loaded, key_store, writer, jobs, config, cleanup,
                                      load_state if session is None else None)
    with _timed(report, "link"):
        digest = link_articles(loaded.articles, config.similar, config.taxonomies, state=link_state,
                               fingerprints=loaded.fingerprints)
    if session is not None and from_files:
        # What a session's first build loaded and linked lives as long as the process (serve, the
        # daemon): out of the collector's full passes, each of which would walk all of it again
        # (0.5 s of a first build at 10,000 articles).
        freeze_for_good(collect=False)
    if session is not None and session.watched and not session.saved and load_state is not None \
            and link_state is not None:
        # The next process (a `digest build`, another serve) starts from this build's state (the
        # daemon saves its state when it ends instead: `save_session`).
        session.saved = True
        load_state.save()
        link_state.save()
    if session is not None and load_state is not None and link_state is not None:
        # This process builds again from the states it holds: the cache files' bytes of them, read
        # with them, only doubled its memory (90 MB at 10,000 articles). Saving pickles them again.
        load_state.drop_pickles()
        link_state.drop_pickles()
    if session is None:
        if load_state is not None and link_state is not None:
            # Not above PARALLEL_ROWS articles: a child holding 370 MB of states (at 100,000) while
            # this process renders would raise the machine's peak memory by as much.
            may_fork = len(loaded.articles) < PARALLEL_ROWS and (jobs or os.cpu_count() or 1) > 1
            # The early writer, when there is one, saves the load state (see _write_early).
            _save_states((link_state,) if early is not None else (load_state, link_state), may_fork, cleanup)
        if process_ends and load_state is not None:
            _keep_until_exit(load_state)
        load_state = link_state = None  # their pickled caches (370 MB at 100,000 articles) can go
        if process_ends:
            freeze_for_good(collect=False)
    with _timed(report, "plan"), collector_paused():  # 100,000s of small tuples, none in cycles
        renderer = Renderer(digest, config, loaded.fingerprints, key_store if from_files else None)
        fragment_store = _fragment_store(config, session)
        if session is not None and session.fragments is not None and not clean:
            renderer.fragments = dict(session.fragments)
        else:
            forget_entries_made()  # they are in the fragments of the builds that made them, not in these
            if not clean:
                renderer.fragments = fragment_store.load()
        plan_file = config.root / CACHE_DIR / "plan.pickle"
        exports_file = config.root / CACHE_DIR / "exports.pickle"
        plan_store = PlanMemoFile(plan_file) if from_files else None
        if plan_store is not None:
            plan_store.load(saves=session is None)  # a session keeps its memo in memory
        if (session is None or not _EXPORT_INDEX) and not clean:
            _EXPORT_INDEX.clear()
            _EXPORT_INDEX.update(load_pickle(exports_file))
        first = {}
        if preview is not None and session is not None and session.jobs:
            first = _render_open_pages(preview, renderer, session.jobs, config.output_path)
        search = None
        own_templates = config.search and own_article_templates(config)  # (asked once: it reads them)
        if config.search and index_search and not clean and writer.live and not own_templates and not writer.filling:
            search = _search_started_early(writer, renderer, config)
            cleanup.callback(search.stop)
        plan = renderer.plan()
        plan_jobs = plan.jobs
        if plan_store is not None and session is None:
            plan_store.save()
        if session is not None:
            session.jobs = plan_jobs  # looked up by path only for a preview's open pages
        statics = static_files([config.static_path])
        planned = {j.path for j in plan_jobs} if statics else set()
        statics = [(path, source) for path, source in statics if path not in planned]
        all_jobs = plan_jobs + [PageJob(path, "static", hashlib.sha256(source.read_bytes()).hexdigest(), (str(source),))
                                for path, source in statics]
        keys = dict(zip(map(_PATH, all_jobs), map(_KEY, all_jobs)))
        if session is None and not clean and len(renderer.key_store) != known_keys:
            current = {k.content for k in plan.keys.values()}
            save_pickle(keys_file, {k: v for k, v in renderer.key_store.items() if k in current or k == ""})
    report.articles = len(digest.articles)
    report.pages = len(all_jobs)
    unchanged = writer.unchanged_site(keys)
    if unchanged and first_in_session:
        # A session's first build with nothing to render: what the first edit's plan and render
        # reuse is made now (for the daemon, once its client has the answer), not during that edit
        # (7 s longer at 10,000 articles).
        def warm_renderer() -> None:
            warm_up(renderer)
            session.fragments = renderer.fragments

        if session.saves_later and not warm_only:
            session.later.append(warm_renderer)
        else:
            warm_renderer()
    if warm_only:
        return report
    if unchanged:
        writer.keep_spare()
        if input_digests is not None:
            _remember_inputs(config, checked.fingerprint, report, input_digests)
        report.seconds = time.perf_counter() - start
        report.written = 0
        return report
    with _timed(report, "render"):
        if early is not None:  # what its workers would each make again (see `handed_over`)
            entries, renderer.handed_bibtex = early.handed_over()
            renderer.fragments.update(entries)
            renderer.new_fragments.update(entries)
        try:
            early_paths = {j.path for j in all_jobs if early.takes(j)} if early is not None else set()
            pending = set(writer.prepare(keys, leave=early_paths))
            # (Picked in C: an edit's few dozen of 82,000 jobs.)
            pending_jobs = list(itertools.compress(all_jobs, map(pending.__contains__, map(_PATH, all_jobs))))
            to_render = [j for j in pending_jobs if j.kind not in AGGREGATES]
            if preview is not None:
                live = writer.live
                preview.planned(lambda path: path in keys and live.get(path) == keys[path])
            first = {path: data for path, data in first.items() if path in pending}  # else: linked from live
            to_render = [j for j in to_render if j.path not in first]
            files = TreeFiles(writer.spare, writer.output)
            written_count = 0
            if search is None and config.search:
                search = _search_indexing(writer, plan, keys, config, index_search, clean, own_templates)
                cleanup.callback(search.stop)
            if search is not None:
                needed = search.pages_first
                if len(needed & pending) <= SEARCH_FIRST_MAX:
                    # An edit: the pages Pagefind reads first, then Pagefind runs while the rest renders.
                    written_count += render_into(writer.spare, renderer, [j for j in to_render if j.path in needed],
                                                 jobs, progress, live=writer.output)
                    for path in needed & first.keys():
                        written_count += files.put(path, first.pop(path))
                    to_render = [j for j in to_render if j.path not in needed]
                    search.start()
            written_count += render_into(writer.spare, renderer, to_render, jobs, progress, live=writer.output)
            aggregates = [job for job in pending_jobs if job.kind in AGGREGATES]
            if early is not None:
                count, exports_left = _finish_early(early, writer, renderer, all_jobs, keys, pending, jobs, progress)
                written_count += count
                aggregates += exports_left
            for path, data in first.items():
                written_count += files.put(path, data)
            for job in aggregates:
                partial = early.partial_exports.get(job.kind) if early is not None else None
                written_count += _aggregate(writer, files, job, renderer.ids(), keys, partial)
        except OSError as exc:
            raise DigestError(Problem(str(config.output_path), f"cannot write the site: {exc.strerror or exc}",
                                      hint="check free disk space and permissions; the previous site is untouched"))
    report.rendered = len(pending)
    if search is not None:
        with _timed(report, "search"):  # what is left of it once everything else is written
            report.searched = search.finish().indexed
        report.warnings = [*report.warnings, *_unmerged_shards(writer, all_jobs)]
    with _timed(report, "write"):
        try:
            written = writer.publish()
        except OSError as exc:
            raise DigestError(Problem(str(config.output_path), f"cannot publish the site: {exc.strerror or exc}",
                                      hint="check permissions; the previous site is untouched"))
    # Pages whose fingerprint changed but whose bytes did not were linked, not written.
    report.written = written_count
    report.kept = writer.kept_changed
    report.removed = written.removed
    if renderer.new_fragments or session is not None:  # the next build (and process) starts from these
        def keep_fragments() -> None:
            fragment_store.save(renderer.fragments, lambda: _current_fragments(renderer))
            if session is not None:
                if renderer.rendered_in_workers or first_in_session:
                    warm_up(renderer)
                # Unused fragments leave memory when they leave the cache file.
                fragments = renderer.fragments
                session.fragments = fragments if len(fragments) <= len(fragment_store.known) else \
                    {key: fragments[key] for key in fragment_store.known if key in fragments}

        if session is not None and session.saves_later:
            session.fragments = renderer.fragments
            session.later.append(keep_fragments)
        else:
            keep_fragments()
    if (aggregates or (early is not None and early.made_exports)) and session is None:
        save_export_index(config)  # where each entry is in the exports now live
    if early is not None:
        early.done()  # the load state it saves for the next build
    if input_digests is not None:
        _remember_inputs(config, checked.fingerprint, report, input_digests)
    report.seconds = time.perf_counter() - start
    return report


EARLY_FILES_MIN = 3000  # citation files worth a process of their own (below: the render stage writes them)
# Articles up to which the early writer hands the render stage its BibTeX (see `_EarlyFiles.handed_over`):
# 25 MB of text at 10,000 articles; at 100,000 it would add 250 MB to this process's peak (3.0 GB).
HANDED_BIBTEX_MAX = 20_000


class _EarlyState(NamedTuple):
    """What the forked writer of _EarlyFiles works from (set before forking)."""

    articles: Sequence
    citation: dict[str, str]  # citation key by article id
    keys: dict  # ArticleKeys by article id
    cites: dict[str, str]  # every citation file's path -> key
    with_terms: bool  # term pages too (no template reads `digest`)
    with_exports: bool  # the digest-wide exports too (see _ExportStreams)
    config: SiteConfig
    writer: SiteWriter
    load_state: LoadState | None  # saved once the files are handed over
    result_path: Path  # where the writer leaves what it made (see `_EarlyFiles.finish`)
    handover_path: Path  # where it leaves what it makes first for the render stage (see `_EarlyFiles.handed_over`)
    stop_flag: Any  # set by `_EarlyFiles.stop` (last: tests set it)


_early_state: _EarlyState | None = None  # in the forked writer


class _EarlyFiles:
    """Files a forked process writes while this one links and plans.

    A cold build: every article's citation files and every term's page (topics, authors, journals,
    years, types; of a long one, its first page: see `takes`). Neither depends on the similarity:
    a citation file on its article and citation key, a term page on the taxonomies and its
    articles' listing entries (unless a template reads `digest`: then term pages are left to the
    render stage). So they can be made as soon as the records are loaded. In a cold build of
    10,000 articles they are 61,000 of the 83,000 files, and
    making them keeps a core busy that would otherwise sit idle while linking and planning run on
    the other; the writer goes on while the render stage renders the rest. Once the render workers
    are done, it stops after the file it is writing, and they make what it has not (on a slow file
    system it was the process the build waited for at the end, 5 s in one run, with a core idle).

    It works out the taxonomies and keys with the functions the link stage and the plan use, hands
    the render stage what its workers would each make again (`handed_over`), and says which files
    it placed with which key; any file of its kinds not placed with the plan's key
    is sorted by the render stage (`_finish_early`). It is a plain forked process, not a pool: this
    one keeps no threads, so the link and load states can still be saved by a forked child (see
    `_save_states`). It leaves its answer in a file of the cache folder and says so on a pipe, then
    saves the load state (0.8 s at 10,000 articles, off this process's critical path).
    """

    def __init__(self, writer: SiteWriter, kinds: frozenset[str], child: int, ready: int, result_path: Path,
                 handover_path: Path, stop_flag: Any):
        self.writer, self.kinds, self.child, self.ready, self.result_path = writer, kinds, child, ready, result_path
        self.handover_path = handover_path
        self.stop_flag = stop_flag
        self.succeeded: bool | None = None  # once `wait` has read the writer's word
        self.made_exports = False  # whether the digest-wide exports it streamed were taken
        self.partial_exports: dict[str, tuple[int, ExportIndex]] = {}  # those it was stopped in (see `_aggregate`)

    @classmethod
    def start(cls, loaded: Any, key_store: dict, writer: SiteWriter, jobs: int | None, config: SiteConfig,
              cleanup: contextlib.ExitStack, load_state: LoadState | None = None) -> _EarlyFiles | None:
        """Start the writer of a build with many new citation files (a cold one); `cleanup` ends it,
        finished or not. With a `load_state`, the writer also saves it to its cache file once its
        files are written."""
        global _early_state
        if (jobs or os.cpu_count() or 1) < 2 or not can_fork():
            return None
        known = len(key_store)
        keys = article_keys(loaded.articles, loaded.fingerprints, key_store)  # memoised: the plan asks again for free
        if writer.live and (len(key_store) - known) * len(CITATION_FILES) < EARLY_FILES_MIN:
            return None  # too few records new to the key store for the files to be worth it (an edit)
        citation = citation_keys_of(keys)  # likewise
        cites = _citation_files(loaded.articles, keys, citation)
        pending = writer.pending(cites)
        if pending < EARLY_FILES_MIN:
            return None
        with_terms = not template_references(config)[0]
        # Every citation file new (a cold build) and the theme's key known without the digest: the
        # writer makes the exports from them as it goes, where the render stage would read them back.
        with_exports = pending == len(cites) and with_terms
        kinds = frozenset(CITATION_FILES) | ({"term"} if with_terms else frozenset()) | \
            (frozenset(AGGREGATES) if with_exports else frozenset())
        writer.ready()
        stop_flag = multiprocessing.get_context("fork").RawValue("b", 0)  # shared memory: read per file
        state = _EarlyState(loaded.articles, citation, keys, cites, with_terms, with_exports, config, writer,
                            load_state, config.root / CACHE_DIR / f"early.{os.getpid()}.pickle",
                            config.root / CACHE_DIR / f"early.{os.getpid()}.handover.pickle", stop_flag)
        with contextlib.suppress(OSError):  # one a killed build of a process with this id left: not this one's
            state.handover_path.unlink()
        _early_state = state
        ready, told = os.pipe()
        try:
            child = os.fork()
        except OSError:
            child = -1
        if child == 0:
            _run_early_writer(told)  # never returns
        _early_state = None
        os.close(told)
        if child < 0:
            os.close(ready)
            return None
        early = cls(writer, kinds, child, ready, state.result_path, state.handover_path, state.stop_flag)
        cleanup.callback(early.end)
        return early

    def takes(self, job: PageJob) -> bool:
        """Whether `job` is one of the writer's files: of its kinds, and of a term's pages only the
        first. The others (a long listing's `page/2/`...) go to the render stage: in a cold build
        the writer is the process the build waits for last, and what it has not made when the
        render workers are done they make again, two processes creating files in the same
        folders (`authors/`): a cold build at 10,000 articles took 1.16 times as long, in paired
        runs, while the writer made them (and their later pages' entries, four folders deep)."""
        return job.kind in self.kinds and (job.kind != "term" or job.args[2] == 1)

    def handed_over(self) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
        """Return what the writer makes before its files and the render stage would make again,
        once it has left it (else nothing): the listing entries (fragments, as `Renderer` keeps
        them) and each article's BibTeX (`Renderer.handed_bibtex`; up to HANDED_BIBTEX_MAX
        articles). The render stage takes them
        before it forks its workers. Each of them made nearly every article's entry again (the
        home page's pages, topics, journals and years list them all) and, for the article pages,
        half the articles' BibTeX: 0.6 s and 0.3 s of CPU each at 10,000 articles, where the
        writer makes both anyway, for its term pages and citation files."""
        found = load_pickle(self.handover_path)  # ({} when not there yet: the workers make them)
        return found.get("entries", {}), found.get("bibtex", {})

    def stop(self) -> None:
        """Ask the writer to stop after the file it is writing (see `finish`)."""
        self.stop_flag.value = 1

    def wait(self) -> bool:
        """Wait until the writer has handed its files over; return whether it succeeded."""
        if self.succeeded is None:
            try:
                word = os.read(self.ready, 1)
            except OSError:
                word = b""
            self.succeeded = word == b"1"  # nothing: it died
        return self.succeeded

    def finish(self) -> tuple[int, dict[str, str], dict[str, str], dict[str, tuple[int, ExportIndex, bool]]] | None:
        """Wait for the writer; return how many files got new bytes, the key of every file it
        placed, the listing entries it rendered and each export's size, index (see
        `_EXPORT_INDEX`) and whether it is complete (see `_ExportStreams`); None if it failed."""
        if not self.wait():
            return None
        try:
            with open(self.result_path, "rb") as stream:
                found = pickle.load(stream)
        except Exception:  # noqa: BLE001 - the render stage renders them instead
            found = None
        with contextlib.suppress(OSError):
            self.result_path.unlink()
        return found if isinstance(found, tuple) and len(found) == 4 else None

    def done(self) -> None:
        """Wait for the writer to save the load state, and end it."""
        self.end(kill=False)

    def end(self, kill: bool = True) -> None:
        """End the writer (killed, unless it is asked to finish) and what it leaves behind."""
        if self.child:
            if kill:
                with contextlib.suppress(OSError):
                    os.kill(self.child, signal.SIGKILL)
            _wait_for(self.child)
            self.child = 0
            os.close(self.ready)
            for path in (self.result_path, self.handover_path):
                with contextlib.suppress(OSError):
                    path.unlink()


def _citation_files(articles: Sequence, keys: dict, citation: dict[str, str]) -> dict[str, str]:
    """Return every citation file's path and key (what the plan's `article_jobs` give them)."""
    cites = {}
    for article in articles:
        key = fingerprint(keys[article.id].content, citation[article.id])
        base = urls.article_path(article.id)
        for name in CITATION_FILES:
            cites[base + name] = key
    return cites


def _run_early_writer(told: int) -> None:
    """In the forked writer: make the early files, leave the answer and say so on `told`, save the
    load state; exit (never returns)."""
    state: _EarlyState = _early_state  # type: ignore[assignment]
    try:
        worker_setup()
        word = b"0"
        try:
            result = _write_early()
            with open(state.result_path, "wb") as stream:
                pickle.dump(result, stream, protocol=pickle.HIGHEST_PROTOCOL)
            word = b"1"
        finally:
            os.write(told, word)
            os.close(told)
        if state.load_state is not None:
            state.load_state.save()  # never raises: a cache it cannot write costs the next build the reading
    finally:
        os._exit(0)


def _finish_early(early: _EarlyFiles, writer: SiteWriter, renderer: Renderer, all_jobs: list[PageJob],
                  keys: dict[str, str], pending: set[str], jobs: int | None, progress: Progress
                  ) -> tuple[int, list[PageJob]]:
    """Stop the early writer and take the files it placed (made, or linked from the live tree)
    with the plan's key. The others of its kinds are sorted as the render stage sorts its own:
    linked from the live tree when it has them, else rendered (an export among them is left to
    `_aggregate`). Return how many files got new bytes, and those exports (added to `pending`)."""
    early.stop()
    found = early.finish()
    early_jobs = [j for j in all_jobs if early.takes(j)]
    if found is None:  # it failed: what it wrote is unknown
        found = (0, {}, {}, {})
        writer.written(dict.fromkeys((j.path for j in early_jobs), ""))
    written, placed, fragments, exports = found
    renderer.fragments.update(fragments)  # kept in the cache folder: the first edit's term pages need them
    renderer.new_fragments.update(fragments)
    writer.written(placed)  # what the spare holds now, with the writer's keys
    writer.remove(placed.keys() - keys.keys())
    for kind, (size, index, complete) in exports.items():
        if not complete:
            early.partial_exports[kind] = (size, index)
        elif placed.get(kind) == keys[kind]:
            _EXPORT_INDEX[kind] = {keys[kind]: (size, index)}  # where each entry is, for the next edit
            early.made_exports = True
    spare = writer.spare_files
    left = [j for j in early_jobs if spare.get(j.path) != j.key]
    to_render = set(writer.prepare_more({j.path: j.key for j in left})) if left else set()
    redo = [j for j in left if j.path in to_render]
    pending.update(j.path for j in redo)
    exports_left = [j for j in redo if j.kind in AGGREGATES]
    redo = [j for j in redo if j.kind not in AGGREGATES]
    if redo:
        written += render_into(writer.spare, renderer, redo, jobs, progress, live=writer.output)
    return written, exports_left


def _write_early() -> tuple[int, dict[str, str], dict[str, str], dict[str, tuple[int, ExportIndex, bool]]]:
    """In the forked writer: make the early files (see _EarlyFiles)."""
    state: _EarlyState = _early_state  # type: ignore[assignment]
    articles, citation, keys, config, writer = state.articles, state.citation, state.keys, state.config, state.writer
    with_terms, with_exports, stop_flag = state.with_terms, state.with_exports, state.stop_flag
    files = dict(state.cites)
    pages: dict[str, PageJob] = {}
    renderer = None
    by_id = {a.id: a for a in articles}
    if with_terms:
        terms, slugs = build_taxonomies(articles, config.taxonomies)
        nothing: dict = {}
        renderer = Renderer(Digest(tuple(articles), MappingProxyType(by_id), SimilarLists(nothing, by_id),
                                   MappingProxyType(nothing), MappingProxyType(terms), MappingProxyType(slugs)), config)
        renderer.use_keys(keys)  # listing entries are found by the articles' keys
        items = {article_id: k.listing for article_id, k in keys.items()}
        for taxonomy, found in terms.items():
            places = term_places_of(renderer.digest, taxonomy, renderer.index_per_page)
            for index, term in enumerate(found):
                # Its first page only (see _EarlyFiles.takes); the key as `SitePlan._term_jobs` makes it.
                key = listing_page_key(renderer.theme_key, (taxonomy, term.name, places[term.slug]),
                                       term.article_ids, items, config.per_page, 1)
                job = term_jobs(taxonomy, index, term.slug, places[term.slug], (key,))[0]
                files[job.path] = job.key
                pages[job.path] = job
        if pages:  # every article's listing entry: its term pages list them all
            renderer.items(articles, urls.depth(next(iter(pages))))
    tree = TreeFiles(writer.spare, writer.output)
    streams = _ExportStreams(tree.tree, [a.id for a in articles]) if with_exports and renderer is not None else None
    written = 0
    linked: list[str] = []
    to_make = writer.prepare_some(files, linked)
    # The BibTeX of the citation files it makes, before them: that and the entries are what the
    # render stage takes from here (see `_EarlyFiles.handed_over`).
    bibtex = {article_id: (citation[article_id], citation_file(by_id[article_id], name, citation[article_id]))
              for article_id, name in (path.split("/")[1:] for path in to_make if path.endswith("/cite.bib"))
              } if len(articles) <= HANDED_BIBTEX_MAX else {}
    save_pickle(state.handover_path, {"entries": renderer.new_fragments if renderer is not None else {}, "bibtex": bibtex})
    made = 0
    try:
        for path in to_make:
            if stop_flag.value:
                break
            made += 1
            job = pages.get(path)
            if job is not None:
                data = produce(renderer, job)
            else:
                _, article_id, name = path.split("/")
                handed = bibtex.get(article_id) if name == "cite.bib" else None
                data = (handed[1] if handed is not None else citation_file(by_id[article_id], name, citation[article_id])
                        ).encode("utf-8")
                if streams is not None:
                    streams.add(article_id, name, data, files[path])
            written += tree.put(path, data)
        exports = streams.finish() if streams is not None else {}
    finally:
        if streams is not None:
            streams.close()
    placed = {path: files[path] for path in (*linked, *to_make[:made])}  # what it changed in the spare tree
    complete = [kind for kind, (_, _, whole) in exports.items() if whole]
    if complete:
        key = exports_key(renderer.theme_key, records_key({i: k.content for i, k in keys.items()}, citation))  # type: ignore[union-attr]
        placed.update(dict.fromkeys(complete, key))
        written += len(complete)
    return written, placed, renderer.new_fragments if renderer is not None else {}, exports


@dataclass
class _Export:
    """One export as the early writer makes it: a file open for writing and what is in it so far."""

    handle: int
    head: bytes
    separator: bytes
    tail: bytes
    count: int = 0  # articles in it (the first `count` of the digest's order)
    size: int = 0  # bytes in it, written or held
    held: list = field(default_factory=list)  # bytes not written yet
    ids: list = field(default_factory=list)  # its index (see ExportIndex), as the entries come
    keys: list = field(default_factory=list)
    starts: list = field(default_factory=list)
    ends: list = field(default_factory=list)
    held_size: int = 0


class _ExportStreams:
    """The digest-wide exports (`digest.bib`, `.ris`, `.csl.json`), made by the early writer as it
    writes each article's citation files, in the digest's order: at 10,000 articles the render
    stage would read the 30,000 files back, 0.75 s at the end of a cold build with a core idle.
    A writer stopped before the last article leaves them unfinished, and the render stage copies
    the entries they have (see `_aggregate`); should a file come out of order, none is kept."""

    FLUSH = 1 << 20  # bytes held before they are written

    def __init__(self, tree: str, order: list[str]):
        self.tree, self.order, self.broken = tree, order, False
        self.exports: dict[str, _Export] = {}
        for kind in AGGREGATES:
            head, separator, tail = export_frame(kind)
            self.exports[kind] = _Export(create_file(f"{tree}/{kind}"), head, separator, tail, size=len(head),
                                         held=[head], held_size=len(head))

    def add(self, article_id: str, name: str, data: bytes, key: str) -> None:
        """Append an article's citation file `name` (its bytes, its key) to its export."""
        kind = _EXPORT_OF[name]
        export = self.exports[kind]
        if self.broken or export.count >= len(self.order) or self.order[export.count] != article_id:
            self.broken = True
            return
        item = export_item(kind, data)
        if export.count:
            export.held.append(export.separator)
            export.size += len(export.separator)
            export.held_size += len(export.separator)
        export.held.append(item)
        export.ids.append(article_id)
        export.keys.append(key)
        export.starts.append(export.size)
        export.ends.append(export.size + len(item))
        export.size += len(item)
        export.held_size += len(item)
        export.count += 1
        if export.held_size >= self.FLUSH:
            self._write(export)

    def finish(self) -> dict[str, tuple[int, ExportIndex, bool]]:
        """Close the exports; return each one's size, index and whether it is complete (see the
        class); nothing when an entry came out of order (they are removed)."""
        if self.broken or not self.order:
            self.close()
            for kind in AGGREGATES:
                with contextlib.suppress(OSError):
                    os.unlink(f"{self.tree}/{kind}")
            return {}
        made = {}
        for kind, export in self.exports.items():
            complete = export.count == len(self.order)
            if complete:
                export.held.append(export.tail)
                export.size += len(export.tail)
            self._write(export)
            made[kind] = (export.size, ExportIndex(tuple(export.ids), export.keys, export.starts, export.ends), complete)
        self.close()
        return made

    def close(self) -> None:
        for export in self.exports.values():
            if export.handle >= 0:
                with contextlib.suppress(OSError):
                    os.close(export.handle)
                export.handle = -1

    @staticmethod
    def _write(export: _Export) -> None:
        write_all(export.handle, b"".join(export.held))
        export.held.clear()
        export.held_size = 0


_PATH, _KEY = operator.attrgetter("path"), operator.attrgetter("key")
_EXPORT_OF = {name: kind for kind, name in AGGREGATES.items()}  # citation file -> its digest-wide export


def _save_states(states: tuple[LoadState, LinkState], may_fork: bool, cleanup: contextlib.ExitStack) -> None:
    """Write the load and link caches for the next build: in a forked child while this process
    renders, when it may (`--jobs` above 1, not a very large digest) and is alone (no threads:
    forking is then safe; the early writer is a plain forked process for that reason), else now.

    Pickling and writing them takes 0.3 to 0.5 s after an edit at 10,000 articles; the child works
    from its copy of the states as they are now, and the build waits for it before it returns.
    """
    if may_fork and can_fork_alone():
        child = os.fork()
        if child == 0:
            try:
                for state in states:
                    state.save()
            finally:
                os._exit(0)
        cleanup.callback(_wait_for, child)
        return
    for state in states:
        state.save()


# The command line's load state, past its last use (see `_keep_until_exit`).
_KEPT_UNTIL_EXIT: list[LoadState] = []


def _keep_until_exit(load_state: LoadState) -> None:
    """Free the load state's cache-file bytes (39 MB at 10,000 articles), and keep what it unpickled
    from them until the process ends, which `cli.run` does without freeing anything: freed object by
    object, those groups took 0.09 s of a new process's edit at 10,000 articles and gave no memory
    back to the system. (The link state is freed: its similarity index's arrays are 18 MB, freed in
    12 ms.) Only the last build's state is kept, for a process that builds more than once (tests)."""
    load_state.drop_pickles()
    _KEPT_UNTIL_EXIT[:] = [load_state]


def _wait_for(child: int) -> None:
    try:
        os.waitpid(child, 0)
    except ChildProcessError:
        pass


def _render_open_pages(preview: Preview, renderer: Renderer, last_jobs: list[PageJob],
                       live: Path) -> dict[str, bytes]:
    """Render the pages a browser shows (the last plan's `last_jobs` say how), hand those that
    changed (and the assets) to `preview`, and return the pages rendered."""
    pages: dict[str, bytes] = {}
    open_pages = preview.open_pages()
    if not open_pages:
        return pages
    last = {job.path: job for job in last_jobs if job.path in open_pages}
    for path in sorted(open_pages):
        job = page_job(renderer.digest, last.get(path), renderer.config.per_page, renderer.index_per_page)
        if job is None:
            continue
        data = produce(renderer, job)
        try:
            with open(os.path.join(live, checked_path(path)), "rb") as stream:
                if stream.read() == data:
                    continue
        except OSError:
            pass
        pages[path] = data
    if pages:
        preview.show({**{path: data for path, data in renderer.assets.values()}, **pages})
    return pages


def _unmerged_shards(writer: SiteWriter, all_jobs: list[PageJob]) -> list[Problem]:
    """A search page of the digest's own that does not list the index's other shards would search
    only the first: say so (the packaged one puts `merged_bundles` in its data-merge attribute)."""
    job = next((j for j in all_jobs if j.kind == "search"), None)
    if job is None or not job.args:
        return []
    try:
        shown = (writer.spare / job.path).read_bytes()
    except OSError:
        return []
    if all(bundle.encode() in shown for bundle in job.args):
        return []
    return [Problem("templates/search.html", f"the search index is in {len(job.args) + 1} shards but the search "
                    "page does not list them all: it finds only some of the articles", severity="warning",
                    hint="give search.js the shards as the packaged search.html does (data-merge from merged_bundles)")]


SEARCH_STAGE = "search-stage"  # in the cache folder: the pages each search shard was made from (search._stage)
SEARCH_FIRST_MAX = 500  # at most this many article pages to render before Pagefind starts (else: after all)


def _search_indexing(writer: SiteWriter, plan: Any, keys: dict[str, str], config: SiteConfig,
                     refresh: bool, clean: bool, own_templates: bool) -> Any:
    """Return the new tree's search index, to be made: the shards whose article pages changed what
    they give Pagefind are indexed again, the others kept (see generator.search). Without `refresh`
    (serve's rebuilds) the live site's shards are kept as they are; with `clean` none is."""
    if own_templates:  # the page itself says what is indexed
        search_keys = {i: keys[urls.output_file(urls.article_path(i))] for i in plan.article_keys}
    else:  # the packaged theme indexes only what the record and the theme give
        search_keys = _theme_search_keys(plan.theme_key, plan.article_keys)
    return _new_search_index(writer, config, search_keys, refresh, clean)


def _new_search_index(writer: SiteWriter, config: SiteConfig, search_keys: Mapping[str, str], refresh: bool,
                      clean: bool) -> Any:
    """Return the spare tree's search index in shards of these articles' search keys."""
    from generator.search import SearchIndexing, pagefind_identity, plan_shards

    return SearchIndexing(writer.spare, config, plan_shards(search_keys, pagefind_identity()),
                          live_dir=None if clean else writer.output, refresh=refresh,
                          stage=config.root / CACHE_DIR / SEARCH_STAGE)


def _theme_search_keys(theme_key: str, contents: Mapping[str, str]) -> dict[str, str]:
    """Return, by article id, a key of what an article page of the packaged theme gives Pagefind:
    what the record and the theme show, not the similar articles or backlinks."""
    return {i: fingerprint(theme_key, content) for i, content in contents.items()}


EARLY_SEARCH_MAX = 20  # at most this many article pages rendered before the plan to start Pagefind early


def _search_started_early(writer: SiteWriter, renderer: Renderer, config: SiteConfig) -> Any:
    """Return the search index of a build with the packaged article page, started before the plan
    when it can be (an edit): what Pagefind reads of a page is what its search key says, so the
    pages of the shards to index are those of the kept folders of pages (`search._stage`) but for
    the few whose key changed, rendered here. Pagefind (2 s for a shard of 1,300 pages at 10,000
    articles) then runs while the plan and the render stage do, where it started once the render
    stage had written them. Not started when more pages would have to be rendered first, or when
    rendering one fails (the render stage reports it)."""
    keys = article_keys(renderer.digest.articles, renderer.record_fingerprints, renderer.key_store)  # (memoised)
    writer.ready()
    search_keys = _theme_search_keys(renderer.theme_key, {i: k.content for i, k in keys.items()})
    search = _new_search_index(writer, config, search_keys, refresh=True, clean=False)
    ids = search.pages_to_stage()
    if len(ids) > EARLY_SEARCH_MAX:
        return search
    try:
        pages = {i: render_article_page(renderer, renderer.digest.by_id[i], markdown=False) for i in ids}
    except Exception:  # noqa: BLE001 - the render stage renders it again and reports the error
        return search
    search.start(pages)
    return search


def _current_fragments(renderer: Renderer) -> dict[str, str]:
    """Return the fragments of the current articles only, so the cache does not grow without end."""
    if renderer.fragments.keys() <= renderer.new_fragments.keys():
        # All made by this build for its articles (a cold one's): going through the articles to pick
        # them cost 0.15 s at 10,000 articles and about 2.5 s at 100,000, with the other core idle.
        return renderer.fragments
    from generator.graph import layout_key, map_graph
    from generator.render import ANYWHERE, digest_entry_key, fragment_key

    current_layout = layout_key(*map_graph(renderer.digest))  # memoised: the plan asked already
    keep = {current_layout: renderer.fragments[current_layout]} if current_layout in renderer.fragments else {}
    base_url, similar_keys = renderer.config.base_url, renderer._similar_list_keys
    # An entry is made once for every depth, or for each when this process found it could not be
    # (Renderer._placed_only; a worker that found it keeps its own, made again the next time).
    depths = {kind: (0, 2, 4) if kind in renderer._placed_only else (ANYWHERE,)
              for kind in ("_item.html", "_entry.xml")}
    for article_id, item_key in renderer._item_keys.items():
        content_key = renderer._article_keys[article_id]
        for kind, basis in (("_item.html", item_key), ("_entry.xml", content_key)):
            for depth in depths[kind]:
                key = fragment_key(renderer.theme_key, kind, basis, depth)
                if key in renderer.fragments:
                    keep[key] = renderer.fragments[key]
        similar = similar_keys.get(article_id)
        if similar is not None:
            key = digest_entry_key(content_key, similar[0], base_url)
            if key in renderer.fragments:
                keep[key] = renderer.fragments[key]
    return keep


def _aggregate(writer: SiteWriter, files: TreeFiles, job: PageJob, ids: Sequence[str], keys: dict[str, str],
               partial: tuple[int, ExportIndex] | None = None) -> int:
    """Make a digest-wide export of the articles `ids` (in that order) in the new tree from the
    per-article files already there; return 1 when it has new bytes, 0 when it is the live one's
    (then hard-linked).

    An article's entry that is in the live export with the same key, or the same bytes, is copied
    from there by the kernel (`write.write_spliced`; consecutive entries in one go) instead of read
    from its own file (30,000 files at 10,000 articles) and written again: `_EXPORT_INDEX` says where
    each entry is in the exports of given keys, and is used for the live export when it has one of
    those keys (a build that failed after making it leaves the old one live). Without one, the
    first entries the early writer made (`partial`: its size and index; see `_ExportStreams`) are
    copied from its unfinished export in the new tree (read through a descriptor opened before the
    new file replaces it).
    """
    if not ids:
        return files.put(job.path, join_export(job.kind, []))
    live_path = os.fspath(writer.output / job.path)
    live_key, live, size, stored = _live_export(writer, job, live_path)
    from_live = live >= 0
    if not from_live and partial is not None:
        live, size, stored = _opened(f"{files.tree}/{job.path}", *partial)
    try:
        head, separator, tail = export_frame(job.kind)
        parts, index = _export_parts(job, ids, keys, files.tree, head, separator, live, stored)
        parts.append(tail)
        # Kept: this export's index, and the live one's, which the spare tree holds after publishing
        # (undoing an edit brings it back from there, without making it again).
        _EXPORT_INDEX[job.kind] = {job.key: (index.ends[-1] + len(tail), index),
                                   **({live_key: (size, stored)} if from_live and live_key != job.key else {})}
        if from_live and len(parts) == 3 and parts[1] == (len(head), size - len(tail)):
            files.link(live_path, f"{files.tree}/{job.path}")  # every entry where it was: the live export
            return 0
        write_spliced(f"{files.tree}/{checked_path(job.path)}", parts, live)
        return 1
    finally:
        if live >= 0:
            os.close(live)


def _opened(path: str, size: int, index: ExportIndex) -> tuple[int, int, ExportIndex | None]:
    """Return a descriptor of the file at `path`, its size and `index`, when it has `size` bytes;
    else -1 and no index."""
    try:
        handle = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return -1, 0, None
    if os.fstat(handle).st_size != size:
        os.close(handle)
        return -1, 0, None
    return handle, size, index


def _live_export(writer: SiteWriter, job: PageJob, path: str) -> tuple[str | None, int, int, ExportIndex | None]:
    """Return the live export's key, an open descriptor of it, its size and where each entry is in
    it; -1 and no index when its index is not known (or it was edited by hand since)."""
    made = _EXPORT_INDEX.get(job.kind)
    live_key = writer.live.get(job.path)
    entry = made.get(live_key) if isinstance(made, dict) and live_key else None  # else: a cache of other code
    if not (isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[1], ExportIndex)
            and entry[1].is_sound()):
        return live_key, -1, 0, None
    return (live_key, *_opened(path, entry[0], entry[1]))


def _export_parts(job: PageJob, ids: Sequence[str], keys: dict[str, str], tree: str, head: bytes, separator: bytes,
                  live: int, stored: ExportIndex | None) -> tuple[list, ExportIndex]:
    """Return an export's parts up to its last entry (bytes, or (start, end) of the live export) and
    its index. Entries that follow each other in the live export too make one range, separators
    included."""
    ids = tuple(ids)
    if stored is not None and stored.ids == ids:
        return _parts_in_place(job, ids, keys, tree, head, separator, live, stored)
    return _parts_in_any_order(job, ids, keys, tree, head, separator, live, stored)


def _parts_in_place(job: PageJob, ids: tuple[str, ...], keys: dict[str, str], tree: str, head: bytes,
                    separator: bytes, live: int, stored: ExportIndex) -> tuple[list, ExportIndex]:
    """`_export_parts` when the live export has the same articles in the same order (an edit): only
    the entries whose key changed are looked at, the others are copied in runs between them and
    moved in the index by what the changed ones grew."""
    paths = _entry_paths(job.kind, ids)
    old_starts, old_ends = stored.starts, stored.ends
    new_keys = list(map(keys.__getitem__, paths))
    changed = list(itertools.compress(itertools.count(), map(operator.ne, new_keys, stored.keys)))
    parts: list[bytes | tuple[int, int]] = [head]
    starts: list[int] = []
    ends: list[int] = []
    run: list[int] | None = None  # the range of the live export being copied: [start, end]
    delta = 0  # how far the entries after the last changed one moved
    done = 0  # entries placed so far

    def close_run() -> None:  # the range so far, then a separator before what comes next
        nonlocal run
        if run is not None:
            parts.append((run[0], run[1]))
            run = None
        if len(parts) > 1:
            parts.append(separator)

    def copy(start: int, end: int) -> None:  # live bytes
        nonlocal run
        if run is not None and run[1] + len(separator) == start:
            run[1] = end
            return
        close_run()
        run = [start, end]

    for position in [*changed, len(ids)]:
        if done < position:  # unchanged entries: one range of the live export
            copy(old_starts[done], old_ends[position - 1])
            if delta:
                starts += [start + delta for start in old_starts[done:position]]
                ends += [end + delta for end in old_ends[done:position]]
            else:
                starts += old_starts[done:position]
                ends += old_ends[done:position]
        if position == len(ids):
            break
        start, end = old_starts[position], old_ends[position]
        with open(f"{tree}/{paths[position]}", "rb") as stream:
            item = export_item(job.kind, stream.read())
        starts.append(start + delta)
        ends.append(start + delta + len(item))
        if end - start == len(item) and os.pread(live, len(item), start) == item:
            copy(start, end)  # a new key, the same entry: a notes edit
        else:
            close_run()
            parts.append(item)
            delta += len(item) - (end - start)
        done = position + 1
    if run is not None:
        parts.append((run[0], run[1]))
    return parts, ExportIndex(ids, new_keys, starts, ends)


def _entry_paths(kind: str, ids: tuple[str, ...]) -> list[str]:
    """Return the paths of the per-article files an export of `kind` is made of, kept while the
    articles are the same (an edit): 10,000 paths made again for each export cost 5 ms."""
    known = _ENTRY_PATHS.get(kind)
    if known is None or known[0] != ids:
        suffix = "/" + AGGREGATES[kind]
        known = _ENTRY_PATHS[kind] = (ids, ["articles/" + article_id + suffix for article_id in ids])
    return known[1]


_ENTRY_PATHS: dict[str, tuple[tuple[str, ...], list[str]]] = {}  # export kind -> (article ids, their files)


def _parts_in_any_order(job: PageJob, ids: tuple[str, ...], keys: dict[str, str], tree: str, head: bytes,
                        separator: bytes, live: int, stored: ExportIndex | None) -> tuple[list, ExportIndex]:
    """`_export_parts` entry by entry, finding each in the live export (`stored`) by its id."""
    parts: list[bytes | tuple[int, int]] = [head]
    at = stored.positions() if stored is not None else {}
    new_keys: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    position, gap = len(head), len(separator)
    run: list[int] | None = None  # the range of the live export being copied: [start, end]
    for article_id, path in zip(ids, _entry_paths(job.kind, ids)):
        key = keys[path]
        found = at.get(article_id)
        after = bool(new_keys)  # a separator goes before every entry but the first
        if after:
            position += gap
        item = None
        if found is not None and stored.keys[found] == key:  # type: ignore[union-attr]
            start, end = stored.starts[found], stored.ends[found]  # type: ignore[union-attr]
        else:
            with open(f"{tree}/{path}", "rb") as stream:
                item = export_item(job.kind, stream.read())
            if found is not None:
                start, end = stored.starts[found], stored.ends[found]  # type: ignore[union-attr]
                if end - start == len(item) and os.pread(live, len(item), start) == item:
                    item = None  # a new key, the same entry: a notes edit
        length = end - start if item is None else len(item)
        new_keys.append(key)
        starts.append(position)
        ends.append(position + length)
        position += length
        if item is None and run is not None and run[1] + gap == start:
            run[1] = end  # this entry follows the last one in the live export too
            continue
        if run is not None:
            parts.append((run[0], run[1]))
        if after:
            parts.append(separator)
        if item is None:
            run = [start, end]
        else:
            run = None
            parts.append(item)
    if run is not None:
        parts.append((run[0], run[1]))
    return parts, ExportIndex(ids, new_keys, starts, ends)


class ExportIndex(NamedTuple):
    """Where each article's entry is in a digest-wide export, in the export's order (the digest's):
    its id, its citation file's key, and its start and end byte. Columns, not a tuple an entry: an
    edit that changes an entry's length moves every entry after it, and shifting 10,000 numbers
    costs a tenth of making 10,000 tuples and a dict of them (30 ms an edit for the three exports)."""

    ids: tuple[str, ...]
    keys: list[str]
    starts: list[int]
    ends: list[int]

    def positions(self) -> dict[str, int]:
        """Return each article's position (for an export of other articles or another order)."""
        return dict(zip(self.ids, range(len(self.ids))))

    def is_sound(self) -> bool:
        """Whether this is an index as this code makes it (the cache file may hold another's)."""
        return type(self.ids) is tuple and len(self.ids) == len(self.keys) == len(self.starts) == len(self.ends) > 0


# Export name -> {the export's key: (its size, its ExportIndex)}, for the exports of the live and
# spare trees.
_EXPORT_INDEX: dict[str, dict[str, tuple[int, ExportIndex]]] = {}


def _fragment_store(config: SiteConfig, session: BuildSession | None) -> JournaledDict:
    """Return where listing, feed and digest.json fragments are kept: one per session (`digest
    serve` appends what each rebuild made), or one for this build."""
    path = config.root / CACHE_DIR / "fragments.pickle"
    if session is None:
        return JournaledDict(path)
    if session.fragment_store is None or session.fragment_store.path != path:
        session.fragment_store = JournaledDict(path)
    return session.fragment_store


# Rendering, in this process or in forked workers ---------------------------------------------

_worker_state: tuple[Renderer, TreeFiles] | None = None


def _render_chunk(chunk: Sequence[PageJob]) -> tuple[list[Problem] | None, dict[str, str], int]:
    """Render and write a chunk of jobs; return problems (or None), the fragments it made, and how
    many files got new bytes."""
    renderer, files = _worker_state  # type: ignore[misc]
    renderer.new_fragments = {}
    written = 0
    try:
        for job in chunk:
            written += files.put(job.path, _produce(renderer, job))
    except DigestError as exc:
        return exc.problems, {}, 0
    return None, renderer.new_fragments, written


# One each (the home page: one unless it has pages), 0.02 to 0.7 s at 10,000 articles.
_SLOW_PAGES = frozenset({"home", "digest_json", "map", "sitemap", "feed", "taxonomy"})


def _produce(renderer: Renderer, job: PageJob) -> bytes:
    if job.kind == "static":
        with open(job.args[0], "rb") as stream:
            return stream.read()
    return produce(renderer, job)


def render_into(tree, renderer: Renderer, jobs_to_render: list[PageJob], workers: int | None,
                progress: Progress | None = None, live=None) -> int:
    """Render jobs into `tree`, on `workers` processes (default: every core); return files written."""
    progress = progress or NoProgress()
    global _worker_state
    workers = workers or os.cpu_count() or 1
    _worker_state = (renderer, TreeFiles(Path(tree), Path(live) if live else None))
    written = 0
    earlier = renderer.new_fragments  # a build may render in more than one call
    try:
        made: dict[str, str] = {}
        if workers <= 1 or len(jobs_to_render) < PARALLEL_THRESHOLD or not can_fork():
            problems, made, written = _render_chunk(jobs_to_render)
            if problems:
                raise DigestError(problems)
        else:
            # The slow pages first, then chunks small enough that no worker waits long for the other.
            ordered = sorted(jobs_to_render, key=lambda job: job.kind not in _SLOW_PAGES)
            size = max(25, len(ordered) // (workers * 32))
            chunks = [ordered[i: i + size] for i in range(0, len(ordered), size)]
            done = 0
            renderer.rendered_in_workers = True  # what they made for reuse stays with them (see warm_up)
            read_back_deferred(renderer.digest.articles)  # once here, not in each worker
            with ForkedWorkers(_render_chunk, chunks, workers) as pool:
                for (problems, fragments, count), chunk in zip(pool.in_order(), chunks):
                    if problems:
                        raise DigestError(problems)
                    made.update(fragments)
                    written += count
                    done += len(chunk)
                    progress.update("render", done, len(jobs_to_render))
            progress.finish()
        renderer.fragments.update(made)
        renderer.new_fragments = {**earlier, **made}
        return written
    finally:
        _worker_state = None
