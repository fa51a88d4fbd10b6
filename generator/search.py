"""Stage 5, search: index the written site with Pagefind so readers can search it without a server.

Only article pages are read (`--glob articles/*/index.html`) and, in them, only the parts the theme
marks `data-pagefind-body` (title, authors, notes, abstract, MeSH, keywords, substances). Listing pages
(topics, authors, years...) repeat article titles by the thousand on a big digest: skipping them is
what keeps indexing fast and small. The bundle goes to `<site>/pagefind/`, which the search page loads
with relative URLs, so the site works at `/` and under a sub-path like `/repo/`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from generator.config import SiteConfig
from generator.errors import DigestError, Problem

BUNDLE_DIR = "pagefind"
ARTICLE_GLOB = "articles/*/index.html"
INSTALL_HINT = "install it with: pip install 'pagefind[bin]' (or set 'search: false' in digest.yaml)"


@dataclass(frozen=True)
class SearchReport:
    """What indexing did: how many pages went into the index, and how long it took."""

    pages: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        return f"Indexed {self.pages} page{'s' * (self.pages != 1)} for search in {self.seconds:.2f} s"


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


def index_site(site_dir: Path, config: SiteConfig) -> SearchReport:
    """Index the article pages of a written site into `<site_dir>/pagefind/`; return what was indexed.

    Raise DigestError when Pagefind is missing or fails; the site itself is left as it was written.
    """
    site_dir = Path(site_dir).resolve()
    if not site_dir.is_dir():
        raise DigestError(Problem(str(site_dir), "cannot index for search: the site folder does not exist"))
    bundle, fresh, stale = site_dir / BUNDLE_DIR, site_dir / f".{BUNDLE_DIR}.new", site_dir / f".{BUNDLE_DIR}.old"
    for leftover in (fresh, stale):
        shutil.rmtree(leftover, ignore_errors=True)
    start = time.perf_counter()
    if not any(site_dir.glob(ARTICLE_GLOB)):
        # An empty digest: nothing to search. Pagefind would fail; drop any stale bundle instead.
        shutil.rmtree(bundle, ignore_errors=True)
        return SearchReport(pages=0, seconds=time.perf_counter() - start)
    # Pagefind never deletes files of an older bundle: write a fresh one beside the site, then swap it in.
    command = pagefind_command() + pagefind_arguments(site_dir, config, output=fresh)
    # Environment variables PAGEFIND_* and a pagefind.yml in the working directory would change the
    # options: run in the site folder's parent with only the options above.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAGEFIND_") or k == "PAGEFIND_BINARY_PATH"}
    try:
        result = subprocess.run(command, cwd=site_dir.parent, env=env, capture_output=True, text=True,
                                errors="replace", timeout=3600)
    except OSError as exc:
        raise DigestError(Problem(command[0], f"cannot run Pagefind: {exc.strerror or exc}", hint=INSTALL_HINT))
    except subprocess.TimeoutExpired:
        raise DigestError(Problem(str(site_dir), "Pagefind did not finish indexing within an hour"))
    output = (result.stdout + "\n" + result.stderr).strip()
    if result.returncode != 0:
        shutil.rmtree(fresh, ignore_errors=True)
        last = list(dict.fromkeys(line.strip() for line in output.splitlines() if line.strip()))[-4:]
        raise DigestError(Problem(str(site_dir), f"Pagefind failed (exit {result.returncode}): " + " / ".join(last),
                                  hint="run 'python -m pagefind --site SITE --verbose' to see why"))
    entry = fresh / "pagefind-entry.json"
    if not entry.is_file():
        shutil.rmtree(fresh, ignore_errors=True)
        raise DigestError(Problem(str(site_dir), "Pagefind wrote no search index",
                                  hint=f"are there article pages under {site_dir / 'articles'}?"))
    pages = _count_pages(entry)
    try:
        if bundle.exists():
            bundle.rename(stale)
        fresh.rename(bundle)
    except OSError as exc:
        raise DigestError(Problem(str(bundle), f"cannot put the search index in place: {exc.strerror or exc}"))
    shutil.rmtree(stale, ignore_errors=True)
    return SearchReport(pages=pages, seconds=time.perf_counter() - start)


def _count_pages(entry: Path) -> int:
    """Return the number of pages in the index, read from Pagefind's `pagefind-entry.json`."""
    try:
        languages = json.loads(entry.read_text(encoding="utf-8")).get("languages", {})
        return sum(int(lang.get("page_count", 0)) for lang in languages.values())
    except (OSError, ValueError, AttributeError):
        return 0


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
