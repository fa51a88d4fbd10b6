"""Search in real headless Chromium: the example digest built, indexed with Pagefind and served over HTTP
under a sub-path; the header box submits to the search page, which finds and filters articles."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from tests.browser_site import (CHROMIUM, SUB_PATH, browser, pagefind_available, served_example,  # noqa: F401
                                served_example_in_shards)
from tests.conftest import REPO

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's /usr/bin/chromium"),
    pytest.mark.skipif(not pagefind_available(), reason="needs Pagefind: pip install 'pagefind[bin]'"),
]
sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect


def unique_abstract_word() -> tuple[str, str]:
    """Return (word, article id): a word of one article's abstract found nowhere else in the digest.

    'Nowhere else' also rules out words sharing its first six letters, so stemming cannot match others.
    """
    from generator.load import load_articles

    articles = load_articles(REPO / "content", REPO).articles
    texts = {a.id: repr(a).lower() for a in articles}
    candidates = []
    for article in articles:
        for word in set(re.findall(r"[a-z]{8,}", article.abstract_text.lower())):
            others = [i for i, text in texts.items() if i != article.id and word[:6] in text]
            if not others:
                candidates.append((-len(word), word, article.id))
    assert candidates, "the example digest should have a word unique to one abstract"
    _, word, article_id = sorted(candidates)[0]
    return word, article_id


RESULT_LINKS = "pagefind-results a.pf-result-link"


def result_count(page) -> int:
    """Return the number of results Pagefind's summary line reports, once it reports one."""
    summary = page.locator("pagefind-summary")
    expect(summary).to_have_text(re.compile(r"^[\d,]+ results? for"), timeout=10_000)
    return int(summary.inner_text().split()[0].replace(",", ""))


def load_all_results(page, count: int) -> None:
    """Scroll until all `count` results are shown. Pagefind loads a result when its placeholder
    comes within 50 px of the list's view: the first placeholder still waiting is brought to the
    middle each time (scrolling to the last loaded link was not enough when that link was already
    in view and the placeholder after it was not)."""
    for _ in range(50):
        if page.locator(RESULT_LINKS).count() >= count or not page.evaluate(_SCROLL_TO_FIRST_WAITING):
            break
        page.wait_for_timeout(100)


_SCROLL_TO_FIRST_WAITING = """() => {
    const waiting = [...document.querySelectorAll('pagefind-results li')].find(li => !li.querySelector('a.pf-result-link'));
    if (waiting) waiting.scrollIntoView({block: 'center'});
    return Boolean(waiting);
}"""


def choose_filter(page, name: str, value: str) -> None:
    """Open a filter dropdown and tick one of its values."""
    page.locator(f'pagefind-filter-dropdown[filter="{name}"] button.pf-dropdown-trigger').click()
    page.locator(f'pagefind-filter-dropdown[filter="{name}"] [role=option][data-value="{value}"]').click()


@pytest.fixture
def page(browser, served_example):  # noqa: F811
    """A fresh page that records failed requests, requests leaving the site and script errors."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.problems = []
    page.on("pageerror", lambda error: page.problems.append(f"script error: {error}"))
    page.on("console", lambda m: page.problems.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("requestfailed", lambda r: page.problems.append(f"failed: {r.url}"))
    page.on("response", lambda r: page.problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
    page.on("request", lambda r: None if r.url.startswith(served_example.url) or r.url.startswith("data:")
            else page.problems.append(f"left the site: {r.url}"))
    yield page
    context.close()


def test_header_box_finds_the_one_article_whose_abstract_has_the_word(page, served_example):
    word, article_id = unique_abstract_word()
    page.goto(served_example.url + "articles/" + article_id + "/")
    box = page.get_by_role("search").get_by_label("Search articles")
    box.fill(word)
    box.press("Enter")
    page.wait_for_url(re.compile(r"/search/\?q=" + word))
    assert result_count(page) >= 1
    first = page.locator(RESULT_LINKS).first
    expect(first).to_have_attribute("href", f"{SUB_PATH}articles/{article_id}/")
    # The query stays in the search box, and the result opens the article under the sub-path.
    expect(page.locator("pagefind-input input")).to_have_value(word)
    first.click()
    page.wait_for_url(served_example.url + f"articles/{article_id}/")
    assert page.problems == []


def test_a_filter_narrows_the_results(page, served_example):
    page.goto(served_example.url + "search/?q=car")
    before = result_count(page)
    assert before >= 5
    # Filters: year, journal, publication type and topic dropdowns above the results.
    labels = page.locator("pagefind-filter-dropdown .pf-dropdown-trigger-label").all_inner_texts()
    assert labels == ["Year", "Journal", "Publication type", "Topic"]
    page.locator(RESULT_LINKS).first.wait_for()
    sources = page.locator(".pf-result-source").all_inner_texts()
    years = Counter(m.group(0) for s in sources for m in [re.search(r"\b(19|20)\d\d\b", s)] if m)
    year = years.most_common(1)[0][0]
    choose_filter(page, "year", year)
    summary = page.locator("pagefind-summary")
    expect(summary).not_to_have_text(f"{before} results for car")
    after = result_count(page)
    assert 0 < after < before
    page.locator(RESULT_LINKS).first.wait_for()
    expect(page.locator(".pf-result-source").first).to_contain_text(year)
    assert all(year in text for text in page.locator(".pf-result-source").all_inner_texts())
    # Filters in the address work too (the author filter is used that way): ?publication type=Review.
    page.goto(served_example.url + "search/?q=car&publication%20type=Review")
    reviews = result_count(page)
    assert 0 < reviews < before
    assert page.problems == []


def test_an_index_in_shards_finds_and_filters_exactly_what_one_index_does(browser, served_example,  # noqa: F811
                                                                         served_example_in_shards):  # noqa: F811
    """Above 1,500 articles the index is split into shards that the search page merges: a reader
    must not be able to tell. The same query and the same filter give the same articles, and the
    filter lists the same values with the same counts."""
    shards = served_example_in_shards.folder / "pagefind/shards"
    assert len(list(shards.iterdir())) >= 2 and not (served_example.folder / "pagefind/shards").exists()
    found = []
    for site in (served_example, served_example_in_shards):
        context = browser.new_context(viewport={"width": 1200, "height": 900})
        page = context.new_page()
        failed = []
        page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)
        page.on("pageerror", lambda error: failed.append(str(error)))
        page.goto(site.url + "search/?q=car")
        count = result_count(page)
        page.locator(RESULT_LINKS).first.wait_for()
        load_all_results(page, count)
        expect(page.locator(RESULT_LINKS)).to_have_count(count)
        links = sorted(page.locator(RESULT_LINKS).evaluate_all("links => links.map(a => a.getAttribute('href'))"))
        page.locator('pagefind-filter-dropdown[filter="year"] button.pf-dropdown-trigger').click()
        options = page.locator('pagefind-filter-dropdown[filter="year"] [role=option]')
        options.first.wait_for()
        years = sorted(options.all_inner_texts())
        page.locator('pagefind-filter-dropdown[filter="year"] [role=option][data-value="2024"]').click()
        expect(page.locator("pagefind-summary")).not_to_have_text(f"{count} results for car")
        found.append((count, links, years, result_count(page), failed))
        context.close()
    assert found[0][0] >= 5 and found[0][1] and found[0][4] == []
    assert found[1] == found[0]


def test_search_works_with_the_keyboard_and_degrades_without_javascript(browser, served_example):  # noqa: F811
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(served_example.url)
    page.get_by_label("Search articles").fill("lupus")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/search/\?q=lupus$"))
    # Without JavaScript the page still offers a working form and says why there are no results.
    expect(page.get_by_role("search")).to_be_visible()
    assert "needs JavaScript" in page.content()
    context.close()


def test_no_search_box_page_or_index_when_search_is_off(tmp_path):
    from tests.browser_site import build_example

    config = build_example(tmp_path / "site", search=False)
    home = (config.output_path / "index.html").read_text(encoding="utf-8")
    assert 'role="search"' not in home and "data-pagefind" not in home
    article = next((config.output_path / "articles").glob("*/index.html")).read_text(encoding="utf-8")
    assert "data-pagefind" not in article
    assert not (config.output_path / "search").exists()
    assert not (config.output_path / "pagefind").exists()
