"""A long taxonomy index in real headless Chromium: a reader on a phone picks a letter from the bar
with the keyboard alone and reaches an author's page; axe-core finds no serious or critical
violation on a letter's page, light or dark."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.browser_site import CHROMIUM, browser, install_axe, serving  # noqa: F401
from tests.conftest import REPO

pytestmark = [pytest.mark.browser, pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's /usr/bin/chromium")]
sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect


@pytest.fixture(scope="module")
def lettered_example(tmp_path_factory):
    """The example digest with two articles to a listing page: its indexes of more than 20 terms
    (33 authors, 40 topics) get a page per letter. Served under /review-digest/."""
    from generator.build import build
    from generator.config import load_config

    folder = tmp_path_factory.mktemp("lettered") / "site"
    build(replace(load_config(REPO), output_dir=str(folder), search=False, per_page=2))
    with serving(folder) as url:
        yield url


def test_a_reader_picks_a_letter_with_the_keyboard_and_reaches_an_author(browser, lettered_example):  # noqa: F811
    page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone
    page.goto(lettered_example + "authors/")
    expect(page.locator("h1")).to_have_text("Authors: A")
    expect(page.locator('.letters [aria-current="page"]')).to_have_text("A")
    for _ in range(100):  # Tab until the bar's "B" has the focus
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "B":
            break
    else:
        pytest.fail("the bar's B never took the focus")
    box = page.locator(".letters a", has_text="B").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390  # on screen, not cut off
    page.keyboard.press("Enter")
    page.wait_for_url(lettered_example + "authors/letter/b/")
    expect(page.locator("h1")).to_have_text("Authors: B")
    expect(page.locator('.letters [aria-current="page"]')).to_have_text("B")
    author = page.locator(".terms a", has_text="Böltz, Sebastian")
    expect(author).to_have_count(1)
    author.click()  # two folders up, then into the author's folder
    expect(page.locator("h1")).to_have_text("Sebastian Böltz")
    page.go_back()
    page.locator(".letters a", has_text="A").click()
    page.wait_for_url(lettered_example + "authors/")
    page.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_no_serious_or_critical_axe_violation_on_a_letter_page(browser, lettered_example, scheme):  # noqa: F811
    axe = install_axe()
    if axe is None:
        pytest.skip("needs axe-core: npm install axe-core (npm missing or offline)")
    context = browser.new_context(color_scheme=scheme, bypass_csp=True)
    page = context.new_page()
    found = []
    for path in ("authors/", "topics/letter/c/"):
        page.goto(lettered_example + path)
        page.add_script_tag(path=str(axe))
        result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
        found += [f"{path}: {v['id']} [{v['impact']}] {v['help']}" for v in result["violations"]
                  if v["impact"] in ("serious", "critical")]
    context.close()
    assert not found, "\n".join(found)
