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
key changed and hard-links the others from the live site.
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
        shards.append(Shard(number, tuple(ids), hasher.hexdigest()))
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
    A shard whose key the live site's copy (`live_dir`) carries is hard-linked from it, not indexed;
    with `refresh` False (`digest serve`), so is any shard whose live copy holds the same articles,
    up to date or not.
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
    Pagefind never deletes files of an older bundle: the new one is made beside it, then swapped in."""

    def __init__(self, site_dir: Path, config: SiteConfig, shards: Sequence[Shard] | None = None,
                 live_dir: Path | None = None, refresh: bool = True):
        site_dir = Path(site_dir).resolve()
        if not site_dir.is_dir():
            raise DigestError(Problem(str(site_dir), "cannot index for search: the site folder does not exist"))
        self.site_dir, self.config, self.started_at = site_dir, config, time.perf_counter()
        self.bundle, self.fresh = site_dir / BUNDLE_DIR, site_dir / f".{BUNDLE_DIR}.new"
        self.stale, self.stage = site_dir / f".{BUNDLE_DIR}.old", site_dir.with_name(f".{site_dir.name}.search-stage")
        for leftover in (self.fresh, self.stale, self.stage):
            shutil.rmtree(leftover, ignore_errors=True)
        if shards is None:
            found = sorted(page.parent.name for page in site_dir.glob(ARTICLE_GLOB))
            shards = [Shard(number, tuple(ids)) for number, ids in assign_shards(found).items()]
        self.shards = list(shards)
        self.sources = {shard.number: _reusable(shard, live_dir, refresh) for shard in self.shards}
        self.waiting = [shard for shard in self.shards if self.sources[shard.number] is None]
        self.to_index = list(self.waiting)
        self.running: list[tuple[Shard, subprocess.Popen, Path]] = []
        self.started = False

    @property
    def pages_first(self) -> set[str]:
        """The site paths of the article pages Pagefind will read."""
        return {f"articles/{article_id}/index.html" for shard in self.to_index for article_id in shard.article_ids}

    def start(self) -> None:
        """Start Pagefind on as many shards as there are idle cores, then hard-link the shards kept
        from the live site while it runs (it keeps about 1.4 cores busy)."""
        from generator.workers import idle_cores

        if self.started or not self.shards:
            return
        self.started = True
        self.command = pagefind_command()
        self.slots = max(1, min(len(self.waiting), idle_cores(None)))
        self._launch()
        for shard in self.shards:
            source = self.sources[shard.number]
            if source is not None:
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
        shutil.rmtree(self.stage, ignore_errors=True)
        try:
            if self.bundle.exists():
                self.bundle.rename(self.stale)
            self.fresh.rename(self.bundle)
        except OSError as exc:
            raise DigestError(Problem(str(self.bundle), f"cannot put the search index in place: {exc.strerror or exc}"))
        shutil.rmtree(self.stale, ignore_errors=True)
        return SearchReport(pages=sum(len(s.article_ids) for s in self.shards),
                            seconds=time.perf_counter() - self.started_at,
                            indexed=sum(len(s.article_ids) for s in self.to_index))

    def stop(self) -> None:
        """End any Pagefind still running and remove what was not put in place."""
        for _, process, _ in self.running:
            process.kill()
            process.wait()
        self.running = []
        for leftover in (self.fresh, self.stage):
            shutil.rmtree(leftover, ignore_errors=True)

    def _launch(self) -> None:
        """Start Pagefind on waiting shards while there are free slots, each on a folder of its pages."""
        # Environment variables PAGEFIND_* and a pagefind.yml in the working directory would change
        # the options: run in the stage's folder with only the options given.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PAGEFIND_") or k == "PAGEFIND_BINARY_PATH"}
        while self.waiting and len(self.running) < self.slots:
            shard = self.waiting.pop(0)
            pages = _stage(self.site_dir, self.stage / str(shard.number), shard)
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
    try:
        known = (source / KEY_FILE).read_text(encoding="ascii").split()
    except (OSError, UnicodeDecodeError):
        return None
    if refresh:
        return source if shard.key and known[:1] == [shard.key] else None
    return source if known[1:2] == [shard.members] else None


def _link_shard(shard: Shard, source: Path, fresh: Path) -> None:
    """Hard-link a shard's files from the live site into its folder of the new bundle."""
    ignore = shutil.ignore_patterns(SHARDS_DIR) if shard.number == 0 else None
    shutil.copytree(source, fresh / shard.in_bundle, copy_function=os.link, ignore=ignore, symlinks=True,
                    dirs_exist_ok=True)


def _stage(site_dir: Path, stage: Path, shard: Shard) -> Path:
    """Return a folder holding (hard links to) the shard's article pages where the site has them,
    so Pagefind sees the same paths, and gives the same URLs, as in the site. (Pointing Pagefind at
    the site with a glob naming the shard's 1,250 articles costs as much as making this folder.)"""
    site, articles = os.fspath(site_dir), os.path.join(stage, "articles")
    os.makedirs(articles, exist_ok=True)
    for article_id in shard.article_ids:
        source, folder = f"{site}/articles/{article_id}/index.html", f"{articles}/{article_id}"
        os.mkdir(folder)
        try:
            os.link(source, f"{folder}/index.html")
        except FileNotFoundError:
            continue
        except OSError:  # another file system, or no hard links here
            shutil.copyfile(source, f"{folder}/index.html")
    return stage


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
