"""What a reader waits for on the search page, by how many shards the search index is in.

A digest above `SHARD_ARTICLES` articles has its Pagefind index in shards, which the search page
merges (see generator/search.py). Smaller shards make an edit cheaper to index (Pagefind reads
about 800 article pages a second here, and an edit indexes its shard again) but give the search
page more indexes to load. This script builds copies of one digest with its index in each number
of shards asked for, serves each on 127.0.0.1, and times in real headless Chromium (Debian's, as
the browser tests use it), alternating the copies run by run, each run in a new browser context
(nothing cached, as for a reader's first search):

- first results: from opening `search/?q=QUERY` until the summary line reports the results;
- next query: typing another query on that page until its results are reported;
- the requests and the bytes of response bodies of both.

    python benchmarks/search_page.py DIGEST_ROOT [--shards 8 16 32] [--runs 5] [--latency 40 --mbps 20]

DIGEST_ROOT is a digest with search on (its `content/` is hard-linked into each copy). With
`--latency`/`--mbps`, Chromium emulates that network for each page (round-trip latency in ms,
throughput in megabits a second). The local server speaks HTTP/1.1 (six connections at a time
per host); GitHub Pages speaks HTTP/2, where many small requests cost less than here.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.browser_site import CHROMIUM, serving  # noqa: E402 - the browser tests' Chromium and server
SUMMARY_SAYS = """(query) => {
    const text = document.querySelector('pagefind-summary')?.textContent || '';
    return /results? for/i.test(text) && text.includes(query);
}"""


def build_copy(root: Path, work: Path, shards: int) -> Path:
    """Build a copy of the digest at `root` with its search index in `shards` shards; return its site."""
    from generator import search
    from generator.build import build
    from generator.config import load_config

    copy = work / f"shards-{shards}"
    site = copy / "site"
    if (site / "search" / "index.html").is_file():
        return site  # built by an earlier run of this script
    shutil.rmtree(copy, ignore_errors=True)
    copy.mkdir(parents=True)
    shutil.copytree(root / "content", copy / "content", copy_function=os.link)
    shutil.copy2(root / "digest.yaml", copy / "digest.yaml")
    articles = sum(1 for _ in (copy / "content").rglob("*") if _.is_file())
    saved = search.SHARD_ARTICLES, search.MAX_SHARDS
    search.SHARD_ARTICLES, search.MAX_SHARDS = max(1, math.ceil(articles / shards)), shards
    try:
        report = build(load_config(copy, {}), clean=True)
    finally:
        search.SHARD_ARTICLES, search.MAX_SHARDS = saved
    print(f"{shards} shards: {report.summary()}", file=sys.stderr)
    return site


def one_search(browser, url: str, first: str, then: str, latency: float, mbps: float) -> dict[str, float]:
    """Open the search page for `first`, then type `then`; return the times, requests and bytes."""
    context = browser.new_context()
    page = context.new_page()
    if latency or mbps:
        cdp = context.new_cdp_session(page)
        cdp.send("Network.enable")
        throughput = mbps * 1_000_000 / 8 if mbps else -1
        cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": latency,
                                                        "downloadThroughput": throughput, "uploadThroughput": throughput})
    finished: list = []
    page.on("requestfinished", lambda request: finished.append(request))
    start = time.perf_counter()
    page.goto(f"{url}search/?q={first}")
    page.wait_for_function(SUMMARY_SAYS, arg=first, timeout=120_000)
    first_seconds = time.perf_counter() - start
    first_requests = len(finished)
    start = time.perf_counter()
    page.locator("pagefind-input input").fill(then)
    page.wait_for_function(SUMMARY_SAYS, arg=then, timeout=120_000)
    then_seconds = time.perf_counter() - start
    page.wait_for_timeout(300)  # let the last result fragments finish before counting
    body_bytes = sum(request.sizes()["responseBodySize"] for request in finished)
    context.close()
    return {"first": first_seconds, "next": then_seconds, "requests": len(finished),
            "first requests": first_requests, "KB": body_bytes / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="a digest with search on")
    parser.add_argument("--shards", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--queries", nargs=2, default=["car", "lupus"], help="the first query, then the next")
    parser.add_argument("--latency", type=float, default=0.0, help="emulated round trip, ms")
    parser.add_argument("--mbps", type=float, default=0.0, help="emulated throughput, megabits a second")
    parser.add_argument("--work", type=Path, default=Path("/tmp/digest-search-page"))
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    sites = {shards: build_copy(args.root.resolve(), args.work, shards) for shards in args.shards}
    results: dict[int, list[dict[str, float]]] = {shards: [] for shards in sites}
    with contextlib.ExitStack() as servers, sync_playwright() as playwright:
        addresses = {shards: servers.enter_context(serving(site)) for shards, site in sites.items()}
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            for run in range(args.runs):
                order = list(sites) if run % 2 == 0 else list(reversed(sites))  # alternate who goes first
                for shards in order:
                    found = one_search(browser, addresses[shards], *args.queries, args.latency, args.mbps)
                    results[shards].append(found)
                    print(f"run {run + 1}: {shards} shards: first {found['first']:.2f} s, next {found['next']:.2f} s, "
                          f"{found['requests']} requests, {found['KB']:.0f} KB", file=sys.stderr)
        finally:
            browser.close()
    network = f", {args.latency:g} ms, {args.mbps:g} Mbit/s" if args.latency or args.mbps else ", localhost"
    print(f"\n| shards{network} | first results s | next query s | requests (first query) | KB |")
    print("|---:|---:|---:|---:|---:|")
    for shards, runs in results.items():
        median = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        print(f"| {shards} | {median['first']:.2f} | {median['next']:.2f} | {median['requests']:.0f} "
              f"({median['first requests']:.0f}) | {median['KB']:.0f} |")


if __name__ == "__main__":
    main()
