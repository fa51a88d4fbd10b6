"""Stage 5, search: index the written site with Pagefind so readers can search it without a server.

Only article pages are read (`--glob articles/*/index.html`) and, in them, only the parts the theme
marks `data-pagefind-body` (title, authors, notes, abstract, MeSH, keywords, substances). Listing pages
(topics, authors, years...) repeat article titles by the thousand on a big digest: skipping them is
what keeps indexing fast and small. The bundle goes to `<site>/pagefind/`, which the search page loads
with relative URLs, so the site works at `/` and under a sub-path like `/repo/`.

Pagefind has no incremental mode: it indexes about 400 article pages a second here, so one edit to
a digest of 10,000 would cost 25 s. Above `SHARD_ARTICLES` articles the index is therefore split into
shards by a hash of the article id: `pagefind/` holds the first (and Pagefind's UI), `pagefind/shards/N/`
the others, which the search page merges (Pagefind's `mergeIndex`: one result list, filter counts
added up). Each shard carries a key of what it was made from; a build indexes only the shards whose
key changed. It keeps the others: those its own tree's older copy holds with the same key are moved
into the new bundle as they are (one rename each), the rest hard-linked from the live site.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from generator.config import SiteConfig
from generator.errors import DigestError, Problem

BUNDLE_DIR = "pagefind"
SHARDS_DIR = "shards"  # pagefind/shards/N/: the shards after the first
KEY_FILE = ".digest-search-key"  # in each shard's folder: the key of what it was made from, and of its articles
STAGE_KEYS = ".digest-stage-keys"  # in each shard's folder of pages for Pagefind: the key of each page linked
ARTICLE_GLOB = "articles/*/index.html"
SHARD_ARTICLES = 1500  # at most this many articles per shard (about 3.5 s of Pagefind here)...
MAX_SHARDS = 16  # ...unless that needs more shards: each is a few more requests per search
INSTALL_HINT = "install it with: pip install 'pagefind[bin]' (or set 'search: false' in digest.yaml)"


@dataclass(frozen=True)
class SearchReport:
    """What indexing did: how many pages the index holds, how many were indexed anew, how long it took."""

    pages: int = 0
    seconds: float = 0.0
    indexed: int = 0

    def summary(self) -> str:
        return (f"Indexed {self.indexed} of {self.pages} page{'s' * (self.pages != 1)} for search "
                f"in {self.seconds:.2f} s")


@dataclass(frozen=True)
class Shard:
    """One Pagefind index of the search: its number, the articles it holds, and a key of everything
    its index is made from ("": unknown, so never taken from the live site)."""

    number: int
    article_ids: tuple[str, ...]
    key: str = ""
    page_keys: tuple[str, ...] = ()  # per article, a key of what its page gives Pagefind ("": unknown)

    @property
    def known_page_keys(self) -> tuple[str, ...]:
        """`page_keys`, one per article ("" for each when they are not known)."""
        if len(self.page_keys) == len(self.article_ids):
            return self.page_keys
        return ("",) * len(self.article_ids)

    @property
    def in_bundle(self) -> str:
        """Its folder within the first shard's ("" for the first)."""
        return f"{SHARDS_DIR}/{self.number}" if self.number else ""

    @property
    def members(self) -> str:
        """A key of which articles the shard holds (what a stale copy must still match)."""
        joined = "\x1f".join(sorted(self.article_ids)).encode("utf-8", "surrogatepass")
        return hashlib.blake2b(joined, digest_size=16).hexdigest()


def shard_count(articles: int) -> int:
    """Return how many shards the index of `articles` articles is split into: a power of two, so
    that no shard holds more than SHARD_ARTICLES (1 up to 1,500 articles, 8 at 10,000), at most MAX_SHARDS."""
    count = 1
    while count < MAX_SHARDS and articles > count * SHARD_ARTICLES:
        count *= 2
    return count


def assign_shards(article_ids: Iterable[str]) -> dict[int, list[str]]:
    """Return the articles of each shard by number, in the order given; every shard is non-empty.

    An article stays in its shard while the digest keeps its size class (a hash of its id), so an
    edit changes one shard. Should the first shard be empty (possible only in theory: above 1,500
    articles), everything goes into one. The last answer is kept, and shared: the plan (for the
    search page) and the search stage ask for the same digest's."""
    article_ids = tuple(article_ids)
    return _assigned(article_ids, shard_count(len(article_ids)))


@functools.lru_cache(maxsize=1)
def _assigned(article_ids: tuple[str, ...], count: int) -> dict[int, list[str]]:
    shards: dict[int, list[str]] = {}
    for article_id in article_ids:
        number = int.from_bytes(hashlib.blake2b(article_id.encode("utf-8", "surrogatepass"),
                                                digest_size=8).digest(), "big") % count if count > 1 else 0
        shards.setdefault(number, []).append(article_id)
    if count > 1 and 0 not in shards:
        return {0: list(article_ids)} if article_ids else {}
    return dict(sorted(shards.items()))


def bundle_folder(number: int) -> str:
    """Return where shard `number` lives in the site: the first is the bundle Pagefind's UI comes from."""
    return BUNDLE_DIR if number == 0 else f"{BUNDLE_DIR}/{SHARDS_DIR}/{number}"


def merged_bundles(article_ids: Iterable[str]) -> list[str]:
    """Return the site paths of the shards the search page merges into the first one's results."""
    return [f"{bundle_folder(number)}/" for number in assign_shards(article_ids) if number]


def plan_shards(search_keys: Mapping[str, str], common: str) -> list[Shard]:
    """Return the shards of a digest whose article pages' indexed parts have `search_keys` (by article
    id); `common` fingerprints what every shard also depends on (Pagefind, the options)."""
    shards = []
    for number, ids in assign_shards(search_keys).items():
        hasher = hashlib.blake2b(f"{common}\x1f{number}".encode(), digest_size=16)
        for article_id in sorted(ids):
            hasher.update(f"\x1e{article_id}\x1f{search_keys[article_id]}".encode("utf-8", "surrogatepass"))
        shards.append(Shard(number, tuple(ids), hasher.hexdigest(), tuple(search_keys[i] for i in ids)))
    return shards


def pagefind_identity() -> str:
    """Return what tells one Pagefind binary from another (a new version makes new indexes)."""
    binary = pagefind_command()[0]
    info = os.stat(binary)
    return f"{binary}:{info.st_size}:{info.st_mtime_ns}"


def pagefind_command() -> list[str]:
    """Return the command that runs Pagefind: the binary `python -m pagefind` would run (the `pagefind[bin]`
    wheel's, else one on PATH), called directly to save a Python start-up. $PAGEFIND_BINARY_PATH overrides it.

    Raise DigestError when Pagefind is not installed.
    """
    binary = os.environ.get("PAGEFIND_BINARY_PATH")
    if not binary:
        try:
            from pagefind.service import get_executable  # the wheel's own lookup: pagefind_bin, then PATH
        except ImportError:
            get_executable = None
        if get_executable is not None:
            found = get_executable()
            binary = str(found) if found else ""
        else:
            binary = shutil.which("pagefind_extended") or shutil.which("pagefind") or ""
    if binary and Path(binary).is_file():
        return [binary]
    raise DigestError(Problem("digest.yaml", "search is on but Pagefind is not installed", hint=INSTALL_HINT))


def pagefind_arguments(site_dir: Path, config: SiteConfig, output: Path | None = None) -> list[str]:
    """Return Pagefind's options: article pages only, one language, quiet."""
    language = (config.language or "en").split("-")[0].split("_")[0].lower()
    arguments = ["--site", str(site_dir), "--glob", ARTICLE_GLOB, "--quiet"]
    arguments += ["--output-path", str(output)] if output else ["--output-subdir", BUNDLE_DIR]
    if re.fullmatch(r"[a-z]{2,3}", language):
        # One language for the whole digest: no per-page detection, and one index instead of several.
        arguments += ["--force-language", language]
    return arguments


def index_site(site_dir: Path, config: SiteConfig, shards: Sequence[Shard] | None = None,
               live_dir: Path | None = None, refresh: bool = True) -> SearchReport:
    """Index the article pages of a written site into `<site_dir>/pagefind/`; return what was indexed.

    `shards` (default: those of the article pages found, with no keys) say how the index is split.
    With a `live_dir`, a shard whose key `site_dir`'s own bundle or the live site's copy carries is
    kept from it, not indexed; with `refresh` False (`digest serve`), so is any shard whose copy
    holds the same articles, up to date or not.
    Raise DigestError when Pagefind is missing or fails; the site itself is left as it was written.
    """
    indexing = SearchIndexing(site_dir, config, shards, live_dir, refresh)
    try:
        indexing.start()
        return indexing.finish()
    finally:
        indexing.stop()


class SearchIndexing:
    """A search index being made for a written tree (see `index_site`), in two steps, so a build can
    go on rendering while Pagefind runs: `start` once the article pages of the shards to index
    (`pages_first`) are written, `finish` once everything else is; `stop` ends it, done or not.
    Pagefind never deletes files of an older bundle: the new one is made beside it, then swapped in.

    A build writes into the spare tree, whose bundle is the one of two builds ago: the shards it
    holds with their current key are moved into the new bundle (one rename each, where hard-linking
    a shard's 1,300 files from the live site and deleting the old copy's took 0.5 s of an edit at
    10,000 articles). What is left of the old bundle (the shards indexed again) is then deleted."""

    def __init__(self, site_dir: Path, config: SiteConfig, shards: Sequence[Shard] | None = None,
                 live_dir: Path | None = None, refresh: bool = True, stage: Path | None = None):
        site_dir = Path(site_dir).resolve()
        if not site_dir.is_dir():
            raise DigestError(Problem(str(site_dir), "cannot index for search: the site folder does not exist"))
        self.site_dir, self.config, self.started_at = site_dir, config, time.perf_counter()
        self.bundle, self.fresh = site_dir / BUNDLE_DIR, site_dir / f".{BUNDLE_DIR}.new"
        self.stale = site_dir / f".{BUNDLE_DIR}.old"
        # The folders of pages Pagefind reads: kept between builds in `stage` (see `_stage`; made
        # anew when this index starts afresh, without a live site: `--clean`), unless hard links
        # from the site cannot reach it (another file system: 250 MB of copies at 10,000
        # articles); else made beside the site and dropped.
        if stage is not None and not _same_file_system(Path(stage).parent, site_dir):
            stage = None
        self.stage = Path(stage) if stage is not None else site_dir.with_name(f".{site_dir.name}.search-stage")
        self.keeps_stage = stage is not None
        _remove(self.fresh)
        _remove(self.stale)
        if not self.keeps_stage or live_dir is None:
            _remove(self.stage)
        if shards is None:
            found = sorted(page.parent.name for page in site_dir.glob(ARTICLE_GLOB))
            shards = [Shard(number, tuple(ids)) for number, ids in assign_shards(found).items()]
        self.shards = list(shards)
        if self.keeps_stage:
            self._tidy_stage()
        # A shard's copy in this tree's own bundle, else the live site's (None: index it). Without a
        # live site (`--clean`, or a site indexed on its own), every shard is indexed.
        self.sources = {shard.number: _reusable(shard, live_dir, refresh) for shard in self.shards}
        self.own = {shard.number for shard in self.shards
                    if live_dir is not None and _own_copy(shard, site_dir, self.sources[shard.number], refresh)}
        self.waiting = [shard for shard in self.shards
                        if shard.number not in self.own and self.sources[shard.number] is None]
        self.to_index = list(self.waiting)
        self.running: list[tuple[Shard, subprocess.Popen, Path]] = []
        self.started = False
        self.pages: Mapping[str, bytes] | None = None  # the pages given to `start`: then none is read from the tree

    @property
    def pages_first(self) -> set[str]:
        """The site paths of the article pages Pagefind will read from the tree (none once started)."""
        if self.started:
            return set()
        return {f"articles/{article_id}/index.html" for shard in self.to_index for article_id in shard.article_ids}

    def pages_to_stage(self) -> list[str]:
        """Return the articles of the shards to index whose pages the kept folders of pages do not
        hold with their current key (see `_stage`): what `start` must be given, or read from the
        tree, for Pagefind to index them as they are now."""
        found = []
        for shard in self.to_index:
            folder = self.stage / str(shard.number)
            linked = _staged_keys(folder) if self.keeps_stage else {}
            found += [i for i, key in zip(shard.article_ids, shard.known_page_keys)
                      if not key or linked.get(i) != key or not os.path.isfile(folder / "articles" / i / "index.html")]
        return found

    def start(self, pages: Mapping[str, bytes] | None = None) -> None:
        """Start Pagefind on as many shards as there are idle cores, then move the shards kept from
        the tree's old bundle and hard-link those from the live site while it runs (it keeps about
        1.4 cores busy). `pages` (article id -> page) are indexed as given instead of as the tree
        has them: an edit's, rendered before the tree is written (what Pagefind reads of a page is
        what its key says)."""
        from generator.workers import idle_cores

        if self.started or not self.shards:
            return
        self.started = True
        self.pages = pages
        self.command = pagefind_command()
        self.slots = max(1, min(len(self.waiting), idle_cores(None)))
        self._launch()
        for shard in self.shards:
            source = self.sources[shard.number]
            if shard.number in self.own:
                _move_shard(shard, self.bundle, self.fresh)
            elif source is not None:
                _link_shard(shard, source, self.fresh)

    def finish(self) -> SearchReport:
        """Wait for Pagefind, put the new bundle in place of the old one and say what was indexed."""
        if not self.shards:
            # An empty digest: nothing to search. Pagefind would fail; drop any stale bundle instead.
            shutil.rmtree(self.bundle, ignore_errors=True)
            return SearchReport(pages=0, seconds=time.perf_counter() - self.started_at)
        self.start()
        while self.running:
            shard, process, output = self.running.pop(0)
            try:
                printed, _ = process.communicate(timeout=3600)
            except subprocess.TimeoutExpired:
                raise DigestError(Problem(str(self.site_dir), "Pagefind did not finish indexing within an hour"))
            _check_indexed(self.site_dir, process.returncode, printed or "", output)
            (output / KEY_FILE).write_text(f"{shard.key or '-'}\n{shard.members}\n", encoding="ascii")
            self._launch()
        if not self.keeps_stage:
            _remove(self.stage)
        try:
            if self.bundle.exists():
                self.bundle.rename(self.stale)
            self.fresh.rename(self.bundle)
        except OSError as exc:
            raise DigestError(Problem(str(self.bundle), f"cannot put the search index in place: {exc.strerror or exc}"))
        _remove(self.stale)
        return SearchReport(pages=sum(len(s.article_ids) for s in self.shards),
                            seconds=time.perf_counter() - self.started_at,
                            indexed=sum(len(s.article_ids) for s in self.to_index))

    def stop(self) -> None:
        """End any Pagefind still running and remove what was not put in place."""
        for _, process, _ in self.running:
            process.kill()
            process.wait()
        self.running = []
        _remove(self.fresh)
        if not self.keeps_stage:
            _remove(self.stage)

    def _tidy_stage(self) -> None:
        """Drop the kept folders of pages of shards this index does not have (see `_stage`)."""
        numbers = {str(shard.number) for shard in self.shards}
        try:
            entries = list(os.scandir(self.stage))
        except FileNotFoundError:
            return
        except NotADirectoryError:
            _remove(self.stage)
            return
        for entry in entries:
            if entry.name not in numbers:
                _remove(Path(entry.path))

    def _launch(self) -> None:
        """Start Pagefind on waiting shards while there are free slots, each on a folder of its pages."""
        # Environment variables PAGEFIND_* and a pagefind.yml in the working directory would change
        # the options: run in the stage's folder with only the options given.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PAGEFIND_") or k == "PAGEFIND_BINARY_PATH"}
        while self.waiting and len(self.running) < self.slots:
            shard = self.waiting.pop(0)
            pages = _stage(self.site_dir, self.stage / str(shard.number), shard, self.pages)
            output = self.fresh / shard.in_bundle
            output.parent.mkdir(parents=True, exist_ok=True)
            command = self.command + pagefind_arguments(pages, self.config, output=output)
            try:
                process = subprocess.Popen(command, cwd=self.stage, env=env, stdout=subprocess.PIPE,
                                           stderr=subprocess.STDOUT, text=True, errors="replace")
            except OSError as exc:
                raise DigestError(Problem(command[0], f"cannot run Pagefind: {exc.strerror or exc}", hint=INSTALL_HINT))
            self.running.append((shard, process, output))


def _reusable(shard: Shard, live_dir: Path | None, refresh: bool) -> Path | None:
    """Return the live site's copy of a shard when it carries the shard's key (or, with `refresh`
    off, holds the same articles, up to date or not), else None."""
    if live_dir is None:
        return None
    source = Path(live_dir) / bundle_folder(shard.number)
    known = _key_lines(source)
    if known is None:
        return None
    if refresh:
        return source if shard.key and known[:1] == [shard.key] else None
    return source if known[1:2] == [shard.members] else None


def _own_copy(shard: Shard, site_dir: Path, live_copy: Path | None, refresh: bool) -> bool:
    """Whether a tree's own bundle holds the shard as the new bundle needs it: with the shard's key,
    or, with `refresh` off, the very index the live copy that would be taken holds."""
    known = _key_lines(site_dir / bundle_folder(shard.number))
    if known is None:
        return False
    if refresh:
        return bool(shard.key) and known[:1] == [shard.key]
    return live_copy is not None and known == _key_lines(live_copy)


def _key_lines(folder: Path) -> list[str] | None:
    """Return the key and members a shard's folder carries (see KEY_FILE), None if it carries none."""
    try:
        return (folder / KEY_FILE).read_text(encoding="ascii").split()
    except (OSError, UnicodeDecodeError):
        return None


def _move_shard(shard: Shard, bundle: Path, fresh: Path) -> None:
    """Move a shard's folder from the tree's old bundle into the new one. The first shard's files are
    the bundle's own (beside `shards/`): its key file goes first, so that a build killed half-way
    leaves an old bundle that no longer claims the shard."""
    if shard.number:
        (fresh / SHARDS_DIR).mkdir(parents=True, exist_ok=True)
        os.rename(bundle / shard.in_bundle, fresh / shard.in_bundle)
        return
    fresh.mkdir(parents=True, exist_ok=True)
    names = sorted(os.listdir(bundle), key=lambda name: name != KEY_FILE)
    for name in names:
        if name != SHARDS_DIR:
            os.rename(bundle / name, fresh / name)


def _same_file_system(folder: Path, other: Path) -> bool:
    """Whether two existing folders are on one file system (a hard link can join them)."""
    try:
        return os.stat(folder).st_dev == os.stat(other).st_dev
    except OSError:
        return False


def _remove(path: Path) -> None:
    """Delete a file or folder, whatever it holds, if it is there."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except OSError:
            pass


def _link_shard(shard: Shard, source: Path, fresh: Path) -> None:
    """Hard-link a shard's files from the live site into its folder of the new bundle."""
    ignore = shutil.ignore_patterns(SHARDS_DIR) if shard.number == 0 else None
    shutil.copytree(source, fresh / shard.in_bundle, copy_function=os.link, ignore=ignore, symlinks=True,
                    dirs_exist_ok=True)


def _stage(site_dir: Path, stage: Path, shard: Shard, given: Mapping[str, bytes] | None = None) -> Path:
    """Return a folder holding (hard links to) the shard's article pages where the site has them,
    so Pagefind sees the same paths, and gives the same URLs, as in the site. (Pointing Pagefind at
    the site with a glob naming the shard's 1,250 articles costs as much as making this folder.)

    A kept folder (in the cache folder) serves the shard's next indexing: it holds the page key of
    each link (STAGE_KEYS), and a page whose key is the same gives Pagefind the same, so an edit
    links one page again instead of 1,300 in as many new folders. The keys are dropped before the
    folder changes and written once it is complete: a build stopped half-way leaves a folder whose
    links are all made again.

    With `given` pages (article id -> bytes: an edit's, rendered before the tree is written), those
    are written there as they are, and the others kept whatever the tree holds now. Without, a
    page whose file the site no longer has (rewritten since: a page whose similar list changed) is
    linked again, so as not to be all that keeps the old file; until then a folder may keep such
    files, at most one old copy of each article page of its shard."""
    site, articles, keys_file = os.fspath(site_dir), os.path.join(stage, "articles"), os.path.join(stage, STAGE_KEYS)
    linked = _staged_keys(Path(stage))
    _remove(Path(keys_file))
    tree_written, given = given is None, given or {}
    os.makedirs(articles, exist_ok=True)
    wanted = set(shard.article_ids)
    for entry in os.scandir(articles):
        if entry.name not in wanted:
            _remove(Path(entry.path))
    kept = []
    for article_id, key in zip(shard.article_ids, shard.known_page_keys):
        source, folder = f"{site}/articles/{article_id}/index.html", f"{articles}/{article_id}"
        target = f"{folder}/index.html"
        if article_id in given:
            _make_room(target, folder)
            with open(target, "wb") as stream:
                stream.write(given[article_id])
            if key:
                kept.append(f"{article_id}\t{key}\n")
            continue
        if key and linked.get(article_id) == key:
            try:
                kept_only_here = tree_written and os.stat(target).st_nlink < 2
            except FileNotFoundError:
                kept_only_here = True
            if not kept_only_here:
                kept.append(f"{article_id}\t{key}\n")
                continue
        _make_room(target, folder)
        try:
            os.link(source, target)
        except FileNotFoundError:
            continue
        except OSError:  # another file system, or no hard links here
            shutil.copyfile(source, target)
        if key:
            kept.append(f"{article_id}\t{key}\n")
    with open(keys_file, "w", encoding="utf-8") as stream:
        stream.writelines(kept)
    return stage


def _make_room(target: str, folder: str) -> None:
    """Unlink the file at `target` (in `folder`), or make the folder when there is none."""
    try:
        os.unlink(target)
    except FileNotFoundError:
        os.makedirs(folder, exist_ok=True)


def _staged_keys(stage: Path) -> dict[str, str]:
    """Return the page key of each page a kept folder of pages holds (see `_stage`), {} if none."""
    try:
        with open(stage / STAGE_KEYS, encoding="utf-8") as stream:
            return dict(line.rstrip("\n").split("\t", 1) for line in stream if "\t" in line)
    except (OSError, UnicodeDecodeError, ValueError):
        return {}


def _check_indexed(site_dir: Path, code: int, printed: str, output: Path) -> None:
    """Raise DigestError unless Pagefind succeeded and wrote a bundle into `output`."""
    output_text = printed.strip()
    if code != 0:
        last = list(dict.fromkeys(line.strip() for line in output_text.splitlines() if line.strip()))[-4:]
        raise DigestError(Problem(str(site_dir), f"Pagefind failed (exit {code}): " + " / ".join(last),
                                  hint="run 'python -m pagefind --site SITE --verbose' to see why"))
    if not (output / "pagefind-entry.json").is_file():
        raise DigestError(Problem(str(site_dir), "Pagefind wrote no search index",
                                  hint=f"are there article pages under {site_dir / 'articles'}?"))


def main(argv: list[str] | None = None) -> int:
    """`python -m generator.search SITE [ROOT]`: index an already-built site (for benchmarks)."""
    from generator.config import load_config

    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m generator.search SITE_DIR [DIGEST_ROOT]", file=sys.stderr)
        return 2
    config = load_config(Path(args[1]) if len(args) > 1 else Path.cwd())
    try:
        report = index_site(Path(args[0]), config)
    except DigestError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(report.summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
