"""Run the stages in order (load → link → render → write) and time each one."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

from generator.config import SiteConfig
from generator.errors import DigestError, Problem
from generator.link import link_articles
from generator.load import load_articles
from generator.render import render_site
from generator.write import write_site


@dataclass
class BuildReport:
    articles: int = 0
    pages: int = 0
    written: int = 0
    removed: int = 0
    seconds: float = 0.0
    warnings: list[Problem] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        """Return the one line a build prints."""
        changed = f"{self.written} written" + (f", {self.removed} removed" if self.removed else "")
        warn = f", {len(self.warnings)} warning{'s' * (len(self.warnings) != 1)}" if self.warnings else ""
        return (f"Built {self.articles} article{'s' * (self.articles != 1)}: {self.pages} pages "
                f"({changed}){warn} in {self.seconds:.2f} s")


@contextmanager
def _timed(report: BuildReport, stage: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    report.stage_seconds[stage] = time.perf_counter() - start


def build(config: SiteConfig, strict: bool = False) -> BuildReport:
    """Build the site; raise DigestError (the previous site untouched) when the input has errors."""
    report = BuildReport()
    start = time.perf_counter()
    with _timed(report, "load"):
        loaded = load_articles(config.content_path, config.root)
    report.warnings = loaded.warnings
    if strict and loaded.warnings:
        raise DigestError([Problem(w.path, w.message, w.line, w.hint) for w in loaded.warnings])
    with _timed(report, "link"):
        digest = link_articles(loaded.articles, config.similar, config.taxonomies)
    with _timed(report, "render"):
        pages = render_site(digest, config)
    with _timed(report, "write"):
        written = write_site(pages, config.output_path, [config.static_path])
    report.articles = len(digest.articles)
    report.pages = written.written + written.unchanged
    report.written = written.written
    report.removed = written.removed
    report.seconds = time.perf_counter() - start
    return report
