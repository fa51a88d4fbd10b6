"""A long taxonomy index in real headless Chromium: a reader on a phone picks a letter from the bar
with the keyboard alone and reaches an author's page, whose way back leads to that letter; axe-core finds no serious or critical
violation on a letter's page, light or dark."""

from __future__ import annotations

import pytest

from tests.browser_site import CHROMIUM, browser, serious_axe_violations, serving_example  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's /usr/bin/chromium")]
sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect


@pytest.fixture(scope="module")
def lettered_example(tmp_path_factory):
    """The example digest with two articles to a listing page: its indexes of more than 20 terms
    (33 authors, 40 topics) get a page per letter. Served under /review-digest/."""
    with serving_example(tmp_path_factory, "lettered", per_page=2) as url:
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
    page.locator(".crumbs a").click()  # the way back leads to B's page, not the index's first (A)
    page.wait_for_url(lettered_example + "authors/letter/b/")
    expect(page.locator("h1")).to_have_text("Authors: B")
    page.locator(".letters a", has_text="A").click()
    page.wait_for_url(lettered_example + "authors/")
    page.close()


def test_an_author_page_leads_back_to_its_letter_on_an_index_of_one_page(browser, tmp_path_factory):  # noqa: F811
    with serving_example(tmp_path_factory, "one-page") as url:  # 100 articles a listing page: the index is one page
        page = browser.new_page(viewport={"width": 390, "height": 844})
        page.goto(url + "authors/sebastian-boltz/")
        page.locator(".crumbs a").click()
        page.wait_for_url(url + "authors/#letter-b")
        heading = page.locator("#letter-b")
        expect(heading).to_have_text("B")
        expect(heading).to_be_in_viewport()  # scrolled to, below the letters before it
        assert page.evaluate("window.scrollY") > 0
        page.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_no_serious_or_critical_axe_violation_on_a_letter_page(browser, lettered_example, scheme):  # noqa: F811
    found = serious_axe_violations(browser, lettered_example, ["authors/", "topics/letter/c/"], scheme)
    assert not found, "\n".join(found)
