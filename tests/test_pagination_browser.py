"""A paginated listing in real headless Chromium: readers go from page to page with the keyboard
alone, and axe-core finds no serious or critical violation on a middle page, light or dark."""

from __future__ import annotations

import pytest

from tests.browser_site import CHROMIUM, browser, serious_axe_violations, serving_example  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's /usr/bin/chromium")]
sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect


@pytest.fixture(scope="module")
def paginated_example(tmp_path_factory):
    """The example digest, four articles to a listing page, served under /review-digest/."""
    with serving_example(tmp_path_factory, "paginated", per_page=4) as url:
        yield url


def test_readers_page_through_a_listing_with_the_keyboard(browser, paginated_example):  # noqa: F811
    page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone
    page.goto(paginated_example)
    expect(page.locator(".count")).to_have_text("13 articles, newest first: 1–4 on page 1 of 4.")
    older = page.locator(".pager a[rel=next]")
    for _ in range(200):  # Tab until the pager's "Older" link has the focus
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.getAttribute('rel')") == "next":
            break
    else:
        pytest.fail("the pager's 'Older' link never took the focus")
    box = older.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390  # on screen, not cut off
    page.keyboard.press("Enter")
    page.wait_for_url(paginated_example + "page/2/")
    expect(page.locator(".count")).to_have_text("13 articles, newest first: 5–8 on page 2 of 4.")
    expect(page.locator(".items > li")).to_have_count(4)
    expect(page.locator('.pager [aria-current="page"]')).to_have_text("2")
    page.locator(".items .item-title").first.click()  # entries four folders up lead to their articles
    expect(page.locator("h1")).not_to_be_empty()
    assert "/articles/" in page.url
    page.go_back()
    page.locator(".pager a[rel=prev]").click()
    page.wait_for_url(paginated_example)
    page.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_no_serious_or_critical_axe_violation_on_a_listing_page(browser, paginated_example, scheme):  # noqa: F811
    found = serious_axe_violations(browser, paginated_example, ["page/2/", "topics/car-t/page/2/"], scheme)
    assert not found, "\n".join(found)
