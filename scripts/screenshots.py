"""Take the README's screenshots from the example digest: `python scripts/screenshots.py [--out docs/screenshots]`.

Builds the repository's example digest (content/, digest.yaml) into a temporary folder, indexes it for
search, serves it on 127.0.0.1 and photographs pages in headless Chromium (Debian's /usr/bin/chromium,
driven by Playwright; never `playwright install`): the home page, an article and the search page in the
light and dark colour schemes at 1200 px wide, and an article at phone width (390 px).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
from dataclasses import replace
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTICLE = "articles/37147112/"  # curator's notes, similar articles and MeSH terms: a typical page
QUERY = "lupus"

# (file name, page, colour scheme, viewport width, viewport height, whole page?)
SHOTS = [
    ("home-light.png", "", "light", 1200, 900, False),
    ("home-dark.png", "", "dark", 1200, 900, False),
    ("article-light.png", ARTICLE, "light", 1200, 1100, False),
    ("article-dark.png", ARTICLE, "dark", 1200, 1100, False),
    ("search-light.png", f"search/?q={QUERY}", "light", 1200, 900, False),
    ("search-dark.png", f"search/?q={QUERY}", "dark", 1200, 900, False),
    ("article-phone.png", ARTICLE, "light", 390, 844, False),
]


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def build_example(folder: Path) -> None:
    """Build the example digest into `folder`; the build renders the search page and indexes it."""
    from generator.build import build
    from generator.config import load_config

    build(replace(load_config(REPO), output_dir=str(folder), search=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots", help="folder for the PNG files")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site"
        build_example(site)
        server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(site)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_port}/"
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
                for name, path, scheme, width, height, full in SHOTS:
                    context = browser.new_context(viewport={"width": width, "height": height}, color_scheme=scheme,
                                                  device_scale_factor=1)
                    page = context.new_page()
                    page.goto(base + path)
                    if path.startswith("search/"):
                        page.wait_for_selector("pagefind-results a.pf-result-link")
                        page.locator("pagefind-input input").blur()
                    page.evaluate("document.fonts.ready")
                    page.screenshot(path=str(args.out / name), full_page=full)
                    context.close()
                    print(args.out / name)
                browser.close()
        finally:
            server.shutdown()
            server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
