"""A taxonomy's index in alphabetical order under initial letters (`term_index.py`): authors by family
name, a bar of letters that leads to each letter's heading or, in an index too long for one page, to
each letter's own page; every term listed exactly once; incremental builds that add and drop letter
pages with the bytes of a clean build."""

from __future__ import annotations

import posixpath
import re
from dataclasses import replace
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from generator.build import BuildSession, build
from generator.config import load_config
from generator.link import Term, author_index_name
from generator.model import Author
from generator.term_index import LETTERED_ABOVE, OTHER, SPLIT_PAGES, index_pages, initial, letter_bar, sort_key
from tests.conftest import read_tree
from tests.test_incremental import read_tree_of_clean_build
from tests.test_pagination import paginated

TERM_LINK = re.compile(r'<li><a href="([^"]+)">([^<]+)</a> <span class="n">')
BAR = re.compile(r'<nav class="letters".*?</nav>', re.S)
BAR_LINK = re.compile(r'<a href="([^"]+)"( aria-current="page")?[^>]*>([^<]+)</a>')


def index_html(site: Path, path: str) -> str:
    return (site / path / "index.html").read_text()


def listed(site: Path, path: str) -> list[tuple[str, str]]:
    """The terms an index page lists: (the term's folder, the name shown), checking each leads to a page."""
    found = []
    for href, name in TERM_LINK.findall(index_html(site, path)):
        target = posixpath.normpath(posixpath.join(path, href))
        assert (site / target / "index.html").is_file(), f"{path}: {href} leads nowhere"
        found.append((target, name))
    return found


def bar(site: Path, path: str) -> list[tuple[str, bool, str]]:
    """The bar of letters of an index page: (where each letter leads, whether it is this page's, the letter)."""
    found = BAR.search(index_html(site, path))
    if found is None:
        return []
    return [(href, bool(current), letter) for href, current, letter in BAR_LINK.findall(found.group(0))]


def term_folders(site: Path, taxonomy: str) -> set[str]:
    return {f"{taxonomy}/{p.name}" for p in (site / taxonomy).iterdir() if p.is_dir() and p.name != "letter"}


def test_a_long_index_has_a_page_per_letter_that_lists_each_term_once_in_order(example_copy):
    paginated(example_copy, 2)  # an index of more than 20 terms gets a page per letter
    build(load_config(example_copy))
    site = example_copy / "site"
    for taxonomy in ("authors", "topics"):
        first = bar(site, f"{taxonomy}/")
        assert first[0][1] and first[0][2] == "A"  # the index's own address is its first letter's page
        pages = [posixpath.normpath(posixpath.join(f"{taxonomy}/", href)) + "/" for href, _, _ in first]
        assert pages[0] == f"{taxonomy}/" and all(p == f"{taxonomy}/letter/{letter.lower()}/"
                                                    for p, (_, _, letter) in zip(pages[1:], first[1:]))
        everything = []
        for page, (_, _, letter) in zip(pages, first):
            # Each page has the same bar, with its own letter current, and the letter in its title.
            assert [(current, name) for _, current, name in bar(site, page)] == \
                [(p == page, name) for p, (_, _, name) in zip(pages, first)]
            html = index_html(site, page)
            assert f"<title>{'Authors' if taxonomy == 'authors' else 'Topics'}: {letter} · " in html
            terms = listed(site, page)
            assert terms and all(initial(sort_key(name)) == letter for _, name in terms)
            assert [sort_key(name) for _, name in terms] == sorted(sort_key(name) for _, name in terms)
            everything += terms
        folders = [folder for folder, _ in everything]
        assert sorted(folders) == sorted(term_folders(site, taxonomy))  # every term, exactly once
    authors = dict(listed(site, "authors/letter/b/"))
    assert authors["authors/sebastian-boltz"] == "Böltz, Sebastian"  # by family name, accents folded
    assert "authors/letter/b/" in (site / "sitemap.xml").read_text().replace("https://review-digest.github.io/review-digest/", "")


def test_a_shorter_index_is_one_page_with_a_heading_per_letter(example_copy):
    build(load_config(example_copy))  # paginate: 100
    site = example_copy / "site"
    html = index_html(site, "authors/")
    headings = re.findall(r'<h2 id="([^"]+)" class="letter">([^<]+)</h2>', html)
    assert [(href, letter) for href, _, letter in bar(site, "authors/")] == \
        [(f"#{anchor}", letter) for anchor, letter in headings]
    assert [letter for _, letter in headings] == sorted(letter for _, letter in headings)
    assert not (site / "authors/letter").exists()
    assert sorted(folder for folder, _ in listed(site, "authors/")) == sorted(term_folders(site, "authors"))
    # Years stay newest first, without letters; so does a short index (the example's 4 journals).
    years = [name for _, name in listed(site, "years/")]
    assert years == sorted(years, reverse=True) and not bar(site, "years/") and not bar(site, "journals/")


def test_builds_that_add_and_drop_letter_pages_give_the_bytes_of_a_clean_build(example_copy):
    paginated(example_copy, 2)
    config = load_config(example_copy)
    build(config)
    site = example_copy / "site"
    assert not (site / "authors/letter/o").exists()
    # A new author under a new letter (Ø files with the O's), and a family name changed on its own.
    (example_copy / "content/new.yaml").write_text(
        "pmid: 31234567\ntitle: A record with a new author\npublished: 2025-08-01\n"
        "authors: ['Ødegaard, Zoë', {name: Georg Schett, family: Schett-Berg, given: Georg}]\n")
    build(config)
    assert ("authors/zoe-odegaard", "Ødegaard, Zoë") in listed(site, "authors/letter/o/")
    assert read_tree(site) == read_tree_of_clean_build(example_copy)
    record = example_copy / "content/new.yaml"
    record.write_text(record.read_text().replace("Schett-Berg", "Schett-Baum"))  # (the cache folder's terms)
    build(config)
    assert ("authors/georg-schett", "Schett-Baum, Georg") in listed(site, "authors/letter/s/")
    # In one session (serve's, the daemon's) too, and the page goes with its last author.
    session = BuildSession(config=config)
    build(config, session=session)
    for family in ("Schettberg", "Schett-Bergmann"):  # (the second time, the session's linker remembers terms)
        record.write_text(re.sub(r"family: [^,]+,", f"family: {family},", record.read_text()))
        build(config, session=session)
        assert ("authors/georg-schett", f"{family}, Georg") in listed(site, "authors/letter/s/")
        assert read_tree(site) == read_tree_of_clean_build(example_copy)
    record.unlink()
    build(config, session=session)
    assert not (site / "authors/letter/o").exists()
    assert read_tree(site) == read_tree_of_clean_build(example_copy)
    paginated(example_copy, False)  # one page again, with headings
    config = load_config(example_copy)
    build(config, session=BuildSession(config=config))
    assert not (site / "authors/letter").exists()
    assert read_tree(site) == read_tree_of_clean_build(example_copy)


CRUMB = re.compile(r'<p class="crumbs"><a href="([^"#]+)(?:#([^"]+))?">')


def crumb(site: Path, folder: str) -> tuple[str, str]:
    """Where a term page's way back to its index leads: (the index page's folder, the anchor)."""
    href, anchor = CRUMB.search(index_html(site, folder)).groups()
    return posixpath.normpath(posixpath.join(folder + "/", href)) + "/", anchor or ""


def test_a_term_page_leads_back_to_where_the_index_lists_it(example_copy):
    paginated(example_copy, 2)
    config = load_config(example_copy)
    build(config)
    site = example_copy / "site"
    for taxonomy in ("authors", "topics"):
        pages = [posixpath.normpath(posixpath.join(f"{taxonomy}/", href)) + "/" for href, _, _ in bar(site, f"{taxonomy}/")]
        assert len(pages) > 2
        for page in pages:  # "Böltz" leads to the B page, not the index's first (A)
            assert all(crumb(site, folder) == (page, "") for folder, _ in listed(site, page))
    assert crumb(site, "authors/sebastian-boltz") == ("authors/letter/b/", "")
    # The first letter's last author goes (a family name changed alone): B's page becomes the
    # index's own, and the B authors' pages, whose articles did not change, lead there.
    record = example_copy / "content/autoimmunity/36109639.yaml"
    record.write_text(record.read_text().replace("  - Michael Aigner", "  - {name: Michael Aigner, family: Zaigner, given: Michael}"))
    build(config)
    assert crumb(site, "authors/sebastian-boltz") == ("authors/", "")
    assert crumb(site, "authors/michael-aigner") == ("authors/letter/z/", "")
    assert read_tree(site) == read_tree_of_clean_build(example_copy)
    # An index of one page with a heading per letter: to its letter's heading; years have none.
    paginated(example_copy, False)
    config = load_config(example_copy)
    build(config)
    html = index_html(site, "authors/")
    for folder, name in listed(site, "authors/"):
        page, anchor = crumb(site, folder)
        assert page == "authors/" and anchor == f"letter-{initial(sort_key(name)).lower()}" and f'id="{anchor}"' in html
    assert {crumb(site, folder) for folder, _ in listed(site, "years/")} == {("years/", "")}
    assert read_tree(site) == read_tree_of_clean_build(example_copy)


def test_a_preview_keeps_an_open_letter_page_while_its_letter_has_terms(example_copy):
    from generator.link import link_articles
    from generator.load import load_articles
    from generator.render import PageJob, page_job

    config = replace(load_config(example_copy), per_page=2)
    loaded = load_articles(config.content_path, config.root, jobs=1)
    digest = link_articles(loaded.articles, config.similar, config.taxonomies, fingerprints=loaded.fingerprints)
    last = PageJob("authors/letter/b/index.html", "taxonomy", "k", ("authors", "B", 1))
    assert page_job(digest, last, 2) == PageJob(last.path, "taxonomy", "", ("authors", "B", 1))
    assert page_job(digest, last, 100) is None  # one page now: the letter's page is gone
    gone = PageJob("authors/letter/q/index.html", "taxonomy", "k", ("authors", "Q", 1))
    assert page_job(digest, gone, 2) is None


def test_an_author_is_listed_by_family_name():
    assert author_index_name(Author("Akiko A Bianchi", family="Bianchi", given="Akiko A", initials="AA")) == \
        "Bianchi, Akiko A"
    assert author_index_name(Author("Bianchi AA", family="Bianchi", initials="AA")) == "Bianchi, AA"
    assert author_index_name(Author("CAR-T Study Group", collective=True)) == ""  # listed by its name
    assert author_index_name(Author("Prince", family="Prince")) == ""


NAMES = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=12)
CROWDED = st.text("aAbBä", min_size=1, max_size=8)  # names under two letters: long letters get pages


@settings(max_examples=200)
@given(names=st.lists(st.one_of(NAMES, CROWDED), max_size=120, unique=True), per_page=st.integers(0, 4),
       taxonomy=st.sampled_from(["topics", "authors", "years"]))
@example(names=[f"a{n}" for n in range(45)] + ["b", "Zeta", "7"], per_page=1, taxonomy="authors")
def test_index_pages_list_every_term_once_in_order_under_its_letter(names, per_page, taxonomy):
    terms = [Term(taxonomy, name, f"s{n}", ("1",)) for n, name in enumerate(names)]
    pages = index_pages(taxonomy, terms, per_page)
    listed_terms = [term for page in pages for term in page.terms]
    assert sorted(t.slug for t in listed_terms) == sorted(t.slug for t in terms)
    assert len({page.path for page in pages}) == len(pages) and pages[0].path == "%s/" % taxonomy
    if taxonomy == "years" or len(terms) <= LETTERED_ABOVE:
        assert len(pages) == 1 and listed_terms == terms and not letter_bar(pages, pages[0])
        return
    keys = [(sort_key(t.name), t.slug) for t in listed_terms]
    if len(pages[0].sections) == 1 and not pages[0].sections[0].letter:  # all under one letter
        assert keys == sorted(keys)
        return
    filed = [(initial(key) == OTHER, initial(key), key, slug) for key, slug in keys]
    assert filed == sorted(filed)  # by letter, # last, then by name across a letter's pages too
    letters = list(dict.fromkeys(section.letter for page in pages for section in page.sections))
    for page in pages:
        for section in page.sections:
            assert all(initial(sort_key(t.name)) == section.letter for t in section.terms)
    split = bool(per_page) and len(terms) > SPLIT_PAGES * per_page
    if not split:
        assert len(pages) == 1 and [section.letter for section in pages[0].sections] == letters
    for letter in letters if split else ():
        # A letter of more terms than ten listing pages' worth gets pages of that many, numbered.
        own = [page for page in pages if page.letter == letter]
        total = sum(len(page.terms) for page in own)
        limit = SPLIT_PAGES * per_page
        assert len(own) == -(-total // limit) and all(len(page.terms) <= limit for page in own)
        assert [(page.number, page.count, page.letter_total) for page in own] == \
            [(n, len(own), total) for n in range(1, len(own) + 1)]
        assert all(len(page.terms) == limit for page in own[:-1])  # full pages but the last
        assert all(page.path.startswith(f"{taxonomy}/letter/") for page in own[1:])
    links = letter_bar(pages, pages[-1])
    assert [link.letter for link in links] == letters
    assert all(bool(link.path) == split for link in links)
    # In a split index each letter leads to its first page, and is current on all of its pages.
    assert [link.path for link in links] == ([p.path for p in pages if p.number == 1] if split else [""] * len(links))
    assert [link.current for link in links] == [split and letter == pages[-1].letter for letter in letters]


def test_a_digests_own_index_template_without_the_bar_keeps_every_term_on_one_page(example_copy):
    paginated(example_copy, 2)
    (example_copy / "templates").mkdir()
    own = example_copy / "templates/taxonomy.html"
    own.write_text('{% extends "base.html" %}{% block main %}<ul>{% for term in terms %}'
                   '<li><a href="{{ url(taxonomy ~ \'/\' ~ term.slug ~ \'/\') }}">{{ term.name }}</a> <span class="n">'
                   '</span></li>{% endfor %}</ul>{% endblock %}\n')
    build(load_config(example_copy))
    site = example_copy / "site"
    assert not (site / "authors/letter").exists()  # its pages would be out of reach: no bar leads there
    assert sorted(folder for folder, _ in listed(site, "authors/")) == sorted(term_folders(site, "authors"))
    # One that draws the bar and a long letter's pager gets a page per letter again.
    own.write_text(own.read_text().replace("<ul>", "{% for link in letters %}{{ link.letter }}{% endfor %}<ul>")
                   .replace("{% endblock %}", "{% if pager %}{{ pager.count }}{% endif %}{% endblock %}"))
    build(load_config(example_copy))
    assert (site / "authors/letter/b/index.html").is_file()
    assert read_tree(site) == read_tree_of_clean_build(example_copy)


def add_records(root: Path, count: int) -> Path:
    """Add `count` records to a digest, each with an author of its own, all named Person, and one
    keyword; return their folder."""
    folder = root / "content/many"
    folder.mkdir()
    for n in range(count):
        (folder / f"{n}.yaml").write_text(f"id: many-{n}\ntitle: Record {n}\npublished: 2020-01-01\n"
                                          f"authors: [Author{n:04d} Person]\nkeywords: [Shared topic]\n")
    return folder


def test_a_letter_longer_than_a_page_gets_pages_of_its_own(example_copy):
    """At `paginate: 100` an index of more than 1,000 terms gets a page per letter, and a letter of
    more than 1,000 terms pages of a thousand, linked by a pager; every term is listed once."""
    folder = add_records(example_copy, 1200)
    config = load_config(example_copy)
    build(config)
    site = example_copy / "site"
    letters = [posixpath.normpath(posixpath.join("authors/", href)) + "/" for href, _, _ in bar(site, "authors/")]
    assert "authors/letter/p/" in letters and "authors/letter/p/page/2/" not in letters  # the bar: letters
    first, second = listed(site, "authors/letter/p/"), listed(site, "authors/letter/p/page/2/")
    assert len(first) == 1000 and all(initial(sort_key(name)) == "P" for _, name in first + second)
    assert [sort_key(name) for _, name in first + second] == sorted(sort_key(name) for _, name in first + second)
    everything = [folder for page in letters + ["authors/letter/p/page/2/"] for folder, _ in listed(site, page)]
    assert sorted(everything) == sorted(term_folders(site, "authors"))
    html = index_html(site, "authors/letter/p/page/2/")
    total = len(everything)
    assert "<title>Authors: P · page 2 · " in html and "<h1>Authors: P</h1>" in html
    assert f"{total:,} authors; {len(first + second):,} under P: 1,001–{len(first + second):,} on page 2 of 2" in html
    previous = re.search(r'<a class="pager-step" href="([^"]+)" rel="prev">← Previous</a>', html).group(1)
    assert posixpath.normpath(posixpath.join("authors/letter/p/page/2/", previous)) == "authors/letter/p"
    assert [letter for _, current, letter in bar(site, "authors/letter/p/page/2/") if current] == ["P"]
    assert crumb(site, second[-1][0]) == ("authors/letter/p/page/2/", "")
    assert "authors/letter/p/page/2/</loc>" in (site / "sitemap.xml").read_text()
    # Fewer records: P fits on one page again (the index still has a page per letter), and the
    # build has a clean build's bytes.
    for n in range(len(first + second) - 1000):
        (folder / f"{n}.yaml").unlink()
    build(config)
    assert not (site / "authors/letter/p/page").exists() and len(listed(site, "authors/letter/p/")) == 1000
    assert "Previous" not in index_html(site, "authors/letter/p/")
    assert read_tree(site) == read_tree_of_clean_build(example_copy)


def test_counts_of_thousands_are_written_with_separators(example_copy):
    """A big digest's counts read as English writes them: '1,200 authors', not '1200 authors'; and
    so does the line a build prints."""
    add_records(example_copy, 1200)
    report = build(load_config(example_copy))
    assert report.summary().startswith(f"Built 1,213 articles: {report.pages:,} pages ({report.pages:,} written")
    site = example_copy / "site"
    total = sum(1 for p in (site / "authors").iterdir() if p.is_dir() and p.name != "letter")
    assert total > 1200 and f'<p class="count">{total:,} authors;' in index_html(site, "authors/")
    assert re.search(r'<p class="count">1,2\d\d articles, newest first: 1–100 on page 1 of 13\.', index_html(site, ""))
    assert '<p class="count">1,200 articles, newest first' in index_html(site, "topics/shared-topic")
    assert '>Shared topic</a> <span class="n">1,200</span>' in index_html(site, "topics/")
