"""Shared by the browser tests: the example digest built and indexed, served over HTTP under a sub-path,
and headless Chromium launched the way this machine needs (Debian's /usr/bin/chromium, never a download)."""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import threading
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import REPO

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SUB_PATH = "/review-digest/"  # where GitHub project pages put the example digest
NODE_DIR = REPO / "tests" / ".node"  # git-ignored (it holds its own .gitignore): npm packages for the tests
AXE = NODE_DIR / "node_modules" / "axe-core" / "axe.min.js"


def pagefind_available() -> bool:
    try:
        from generator.search import pagefind_command

        pagefind_command()
        return True
    except Exception:  # DigestError when missing, ImportError before generator.search exists
        return False


@dataclass
class ServedSite:
    folder: Path  # the built site
    url: str  # where it is served: http://127.0.0.1:PORT/review-digest/
    config: object


class SubPathHandler(SimpleHTTPRequestHandler):
    """Serve a folder at SUB_PATH only, as GitHub Pages serves a project site; quiet."""

    def translate_path(self, path: str) -> str:
        if not path.startswith(SUB_PATH):
            return str(Path(self.directory) / ".no-such-file")
        return super().translate_path("/" + path[len(SUB_PATH):])

    def log_message(self, *args) -> None:
        pass


def build_example(folder: Path, search: bool = True, **settings):
    """Build the repository's example digest into `folder` (the build indexes it for search), with
    other `settings` of its SiteConfig if given (`per_page=4`)."""
    from generator.build import build
    from generator.config import load_config

    config = replace(load_config(REPO), output_dir=str(folder), search=search, **settings)
    build(config)
    return config


@contextmanager
def serving(folder: Path) -> Iterator[str]:
    """Serve a built site over HTTP on 127.0.0.1 under SUB_PATH; yield its address."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SubPathHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}{SUB_PATH}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def serving_example(tmp_path_factory, name: str, **settings) -> Iterator[str]:
    """Build the example digest without search, with `settings` (`per_page=2`), into a new folder
    named after `name`; serve it as `serving` does and yield its address."""
    folder = tmp_path_factory.mktemp(name) / "site"
    build_example(folder, search=False, **settings)
    with serving(folder) as url:
        yield url


@pytest.fixture(scope="module")
def served_example(tmp_path_factory) -> Iterator[ServedSite]:
    """The example digest, built, indexed and served over HTTP on 127.0.0.1 under /review-digest/."""
    folder = tmp_path_factory.mktemp("example") / "site"
    config = build_example(folder)
    with serving(folder) as url:
        yield ServedSite(folder, url, config)


@pytest.fixture(scope="module")
def served_example_in_shards(tmp_path_factory) -> Iterator[ServedSite]:
    """The example digest with its search index split as a digest of 3,000 to 6,000 articles has it
    (four shards of about 1,500 each; here of 4 articles or fewer), served like `served_example`."""
    from generator import search

    folder = tmp_path_factory.mktemp("example-in-shards") / "site"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(search, "SHARD_ARTICLES", 4)
        config = build_example(folder)
    with serving(folder) as url:
        yield ServedSite(folder, url, config)


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for a test module."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def install_axe() -> Path | None:
    """Return axe-core's axe.min.js, installing it with npm into tests/.node/ when missing (None if impossible)."""
    if AXE.exists():
        return AXE
    npm = shutil.which("npm")
    if not npm:
        return None
    NODE_DIR.mkdir(parents=True, exist_ok=True)
    (NODE_DIR / ".gitignore").write_text("*\n", encoding="utf-8")
    with open(NODE_DIR / ".lock", "w") as lock:  # pytest-xdist workers: one installs, the others wait
        fcntl.flock(lock, fcntl.LOCK_EX)
        if AXE.exists():
            return AXE
        try:
            subprocess.run([npm, "install", "--no-audit", "--no-fund", "--no-save", "--prefix", str(NODE_DIR),
                            "axe-core@4"], check=True, capture_output=True, timeout=300)
        except (OSError, subprocess.SubprocessError):
            return None
    return AXE if AXE.exists() else None


def serious_axe_violations(browser, site_url: str, paths: list[str], scheme: str) -> list[str]:
    """Run axe-core on pages of a served site in a colour scheme; return its serious and critical
    violations, one line each ("path: rule [impact] help"). Skips the test without axe-core."""
    axe = install_axe()
    if axe is None:
        pytest.skip("needs axe-core: npm install axe-core (npm missing or offline)")
    context = browser.new_context(color_scheme=scheme, bypass_csp=True)
    page = context.new_page()
    found = []
    for path in paths:
        page.goto(site_url + path)
        page.add_script_tag(path=str(axe))
        result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
        found += [f"{path}: {v['id']} [{v['impact']}] {v['help']}" for v in result["violations"]
                  if v["impact"] in ("serious", "critical")]
    context.close()
    return found
