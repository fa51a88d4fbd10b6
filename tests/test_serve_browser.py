"""`digest serve` in headless Chromium: a saved edit shows up in an open page without touching it."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import REPO
from tests.test_serve import child_pids

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
RECORD = "title: {title}\npmid: 111\njournal: Journal of Tests\npublished: 2024-01-02\n"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's /usr/bin/chromium"),
]
sync_api = pytest.importorskip("playwright.sync_api")


@contextmanager
def serving(root: Path) -> Iterator[tuple[subprocess.Popen, str]]:
    """Run `digest serve --port 0` on the digest at `root`; yield the process and its address."""
    process = subprocess.Popen(
        [sys.executable, "-m", "generator", "serve", "--root", str(root), "--port", "0"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = ""
        while "Serving" not in line:
            line = process.stdout.readline()
            assert line, f"digest serve exited: {process.stderr.read()}"
        yield process, re.search(r"http://\S+", line).group(0)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture
def serve_process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen, str, Path]]:
    """Run `digest serve --port 0` on a one-article digest published under a sub-path."""
    root = tmp_path / "digest"
    (root / "content").mkdir(parents=True)
    (root / "content/a.yaml").write_text(RECORD.format(title="First title"), encoding="utf-8")
    (root / "digest.yaml").write_text("title: Browser test\nbase_url: https://u.github.io/repo/\n", encoding="utf-8")
    with serving(root) as (process, url):
        yield process, url, root


def test_saved_edits_and_errors_show_up_in_the_open_page_then_ctrl_c_stops(serve_process):
    process, url, root = serve_process
    assert url.endswith("/repo/")
    record = root / "content/a.yaml"
    expect = sync_api.expect
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            failed: list[str] = []
            page.on("response", lambda r: failed.append(r.url) if r.status >= 400 and "favicon" not in r.url else None)
            page.goto(url + "articles/111/")
            expect(page.locator("main h1")).to_contain_text("First title")

            record.write_text(RECORD.format(title="Edited on disk"), encoding="utf-8")
            expect(page.locator("main h1")).to_contain_text("Edited on disk", timeout=8000)

            record.write_text("title: [not closed\npmid: 111\n", encoding="utf-8")
            overlay = page.locator("#digest-error-overlay")
            expect(overlay).to_be_visible(timeout=8000)
            expect(overlay).to_contain_text(re.compile(r"content/a\.yaml:\d+: invalid YAML"))
            expect(page.locator("main h1")).to_contain_text("Edited on disk")  # last good page, underneath

            record.write_text(RECORD.format(title="Fixed again"), encoding="utf-8")
            expect(page.locator("main h1")).to_contain_text("Fixed again", timeout=8000)
            expect(overlay).to_have_count(0)
            assert failed == []  # stylesheet and links resolve under the /repo/ sub-path
        finally:
            browser.close()

    assert child_pids(process.pid) == []
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=5) == 0
    assert time.monotonic() - started < 1.0
    assert "Stopped" in process.stdout.read()
    port = int(re.search(r":(\d+)/", url).group(1))
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_an_open_listing_page_follows_edits_and_the_pages_moving_under_it(tmp_path):
    """A reader on page 2 of a listing (`paginate`) sees an edit of an article on it, and the page's
    new articles when one is added before them."""
    root = tmp_path / "digest"
    (root / "content").mkdir(parents=True)
    for n, year in ((1, 2021), (2, 2022), (3, 2023)):
        (root / f"content/{n}.yaml").write_text(
            f"title: Article {n}\npmid: {n}00\njournal: Journal of Tests\npublished: {year}-01-02\n", encoding="utf-8")
    (root / "digest.yaml").write_text("title: Pages\npaginate: 1\n", encoding="utf-8")
    expect = sync_api.expect
    with serving(root) as (_, url):
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                page.goto(url + "page/2/")  # newest first: the 2022 article
                expect(page.locator(".items .item-title")).to_have_text("Article 2")
                (root / "content/2.yaml").write_text(
                    "title: Article 2, edited\npmid: 200\njournal: Journal of Tests\npublished: 2022-01-02\n",
                    encoding="utf-8")
                expect(page.locator(".items .item-title")).to_have_text("Article 2, edited", timeout=8000)
                (root / "content/4.yaml").write_text(
                    "title: Article 4\npmid: 400\njournal: Journal of Tests\npublished: 2024-01-02\n", encoding="utf-8")
                expect(page.locator(".items .item-title")).to_have_text("Article 3", timeout=8000)
                expect(page.locator(".count")).to_contain_text("page 2 of 4")
            finally:
                browser.close()
