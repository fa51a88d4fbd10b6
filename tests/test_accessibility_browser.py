"""Accessibility in real headless Chromium: axe-core finds no serious or critical violation on the main kinds of
page, in the light and the dark colour scheme, and the article and search pages work with the keyboard alone."""

from __future__ import annotations

import re

import pytest

from tests.browser_site import CHROMIUM, browser, install_axe, pagefind_available, served_example  # noqa: F401

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's /usr/bin/chromium"),
    pytest.mark.skipif(not pagefind_available(), reason="needs Pagefind: pip install 'pagefind[bin]'"),
]
sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

ARTICLE = "articles/37147112/"  # has curator's notes, similar articles, backlinks, MeSH terms
PAGES = {
    "home": "",
    "article": ARTICLE,
    "topic": "topics/car-t/",
    "map": "map/",
    "search": "search/?q=car",
}


@pytest.fixture(scope="module")
def axe_script():
    path = install_axe()
    if path is None:
        pytest.skip("needs axe-core: npm install axe-core (npm missing or offline)")
    return path


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_no_serious_or_critical_axe_violation(browser, served_example, axe_script, scheme):  # noqa: F811
    context = browser.new_context(color_scheme=scheme, viewport={"width": 1200, "height": 900},
                                  bypass_csp=True)  # lets the test inject axe; the pages keep their CSP
    page = context.new_page()
    found = []
    for name, path in PAGES.items():
        page.goto(served_example.url + path)
        if name == "search":  # let Pagefind's UI draw its results, and open a filter
            page.locator("pagefind-results a.pf-result-link").first.wait_for()
            page.locator("pagefind-filter-dropdown[filter=year] button.pf-dropdown-trigger").click()
            page.locator("pagefind-filter-dropdown[filter=year] [role=option]").first.wait_for()
        assert page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches") == (scheme == "dark")
        page.add_script_tag(path=str(axe_script))
        result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
        for violation in result["violations"]:
            if violation["impact"] in ("serious", "critical"):
                targets = [node["target"] for node in violation["nodes"]][:5]
                found.append(f"{name} ({scheme}): {violation['id']} [{violation['impact']}] {violation['help']}: {targets}")
    context.close()
    assert not found, "\n".join(found)


def focus_walk(page, presses: int) -> list[dict]:
    """Press Tab `presses` times; return what had the focus each time, and how its focus shows."""
    seen = []
    for _ in range(presses):
        page.keyboard.press("Tab")
        seen.append(page.evaluate("""() => {
            const e = document.activeElement, r = e.getBoundingClientRect();
            // The focus ring is on the element, or on the card it stands in (Pagefind's results).
            const s = getComputedStyle(e.closest('.pf-result-card') || e);
            return {tag: e.tagName.toLowerCase(), id: e.id, text: (e.innerText || e.value || '').trim().slice(0, 60),
                    href: e.getAttribute('href') || '', where: e.closest('header, nav, main, aside, footer, .similar')
                    ?.className || e.closest('header, nav, main, aside, footer')?.tagName.toLowerCase() || '',
                    similar: !!e.closest('.similar'), nav: !!e.closest('nav'),
                    outline: s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2,
                    shadow: s.boxShadow !== 'none', visible: r.width > 0 && r.height > 0 && r.bottom > 0
                    && r.right > 0 && r.left < innerWidth}
        }"""))
        if seen[-1]["tag"] == "body":
            break
    return seen


def test_article_page_with_the_keyboard_alone(browser, served_example):  # noqa: F811
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.goto(served_example.url + ARTICLE)
    seen = focus_walk(page, 120)
    # The first stop is the skip link, shown on screen while it has the focus.
    assert seen[0]["text"] == "Skip to content" and seen[0]["visible"]
    texts = [s["text"] for s in seen]
    assert "Topics" in texts and any(s["nav"] for s in seen)
    assert any(s["id"] == "site-q" for s in seen), "the header search box is reachable"
    assert texts.index("Topics") < [s["id"] for s in seen].index("site-q")
    assert sum(s["similar"] for s in seen) >= 1, "similar-article links are reachable"
    # Every stop shows where the focus is.
    hidden_focus = [s for s in seen if s["tag"] != "body" and not (s["outline"] or s["shadow"])]
    assert hidden_focus == []
    # The skip link moves the focus past the header: the next Tab lands in the main content.
    page.goto(served_example.url + ARTICLE)
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    assert page.evaluate("!!document.activeElement.closest('main')")
    # The header search box submits with Enter.
    page.locator("#site-q").focus()
    page.keyboard.type("lupus")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/search/\?q=lupus$"))
    context.close()


def test_search_page_with_the_keyboard_alone(browser, served_example):  # noqa: F811
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.goto(served_example.url + "search/")
    search_input = page.locator("pagefind-input input")
    expect(search_input).to_be_focused()  # no query yet: the box has the focus, ready to type
    expect(search_input).to_have_accessible_name(re.compile("Search titles"))
    page.keyboard.type("lupus")
    summary = page.locator("pagefind-summary")
    expect(summary).to_have_text(re.compile(r"^\d+ results? for lupus"))
    page.locator("pagefind-results a.pf-result-link").first.wait_for()
    seen = focus_walk(page, 30)
    stops = [s for s in seen if s["tag"] != "body"]
    assert any(s["href"].startswith("/review-digest/articles/") for s in stops), "results are reachable"
    assert all(s["outline"] or s["shadow"] for s in stops), [s for s in stops if not (s["outline"] or s["shadow"])]
    # A filter opens and applies from the keyboard: Enter opens the list, arrows move, Enter ticks a value.
    trigger = page.locator("pagefind-filter-dropdown[filter=year] button.pf-dropdown-trigger")
    trigger.focus()
    page.keyboard.press("Enter")
    expect(trigger).to_have_attribute("aria-expanded", "true")
    page.keyboard.press("ArrowDown")
    before = summary.inner_text()
    page.keyboard.press("Enter")
    expect(summary).not_to_have_text(before)
    page.keyboard.press("Escape")
    expect(trigger).to_have_attribute("aria-expanded", "false")
    expect(trigger).to_be_focused()
    context.close()
