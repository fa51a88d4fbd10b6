"""Properties of the whole pipeline over arbitrary records (issue 9), with Hypothesis.

Records with any Unicode (control characters, right-to-left marks, line separators, markup, template
syntax) in every text field, and similar-article lists that point at each other and outside: the
build succeeds, every page is well-formed, every internal link leads to a file of the site, and two
builds of the same input are byte-identical.
"""

from __future__ import annotations

import tempfile
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from generator.build import build
from generator.config import load_config
from tests.conftest import read_tree
from tests.test_xss import check_html

# Every code point but surrogates (files are UTF-8); control characters on purpose.
ANY_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=24)
SPICY = st.sampled_from(["<script>alert(1)</script>", "{{7*7}}", "[x](javascript:alert(1))", "\u202e", "\u2028",
                         "&amp;", "\x00", "\x1b[31m", "../..", "*", "# h", "|", "\\", "\"'", "日本語", "α"])
TEXT = st.one_of(ANY_TEXT, st.lists(st.one_of(ANY_TEXT, SPICY), max_size=4).map("".join))
NAME = st.one_of(TEXT, st.builds(lambda a, b: f"{a}, {b}", TEXT, TEXT))


@st.composite
def digests(draw) -> list[dict]:
    count = draw(st.integers(1, 4))
    pmids = draw(st.lists(st.integers(1, 999_999_999), min_size=count, max_size=count, unique=True))
    outside = st.integers(1, 999_999_999).filter(lambda p: p not in pmids)
    records = []
    for pmid in pmids:
        record = {
            "title": draw(st.sampled_from("ATZ")) + draw(TEXT),  # a title needs a visible character
            "pmid": pmid,
            "abstract": draw(TEXT),
            "authors": draw(st.lists(NAME, max_size=3)),
            "keywords": draw(st.lists(TEXT, max_size=3)),
            "mesh_terms": draw(st.lists(TEXT, max_size=3)),
            "notes": draw(TEXT),
            "journal": draw(TEXT),
            "published": draw(st.sampled_from([2020, "2021-02", "2019 Winter", None])),
            "similar": draw(st.lists(st.one_of(st.sampled_from(pmids), outside), max_size=3)),
        }
        records.append({k: v for k, v in record.items() if v not in (None, "", [])})
    return records


class WellFormed(HTMLParser):
    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.head_titles = 0
        self.links: list[str] = []
        self.counts = {"html": 0, "/html": 0}

    def handle_starttag(self, tag, attrs):
        if tag in ("html",):
            self.counts["html"] += 1
        if tag == "title" and self.stack and self.stack[-1] == "head":
            self.head_titles += 1
        self.links += [v for k, v in attrs if k in ("href", "src") and v is not None]
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.links += [v for k, v in attrs if k in ("href", "src") and v is not None]

    def handle_endtag(self, tag):
        if tag == "html":
            self.counts["/html"] += 1
        if tag in self.VOID:
            return
        if tag in self.stack:
            while self.stack and self.stack[-1] != tag:  # elements HTML closes implicitly (li, p...)
                self.stack.pop()
            self.stack.pop()
        else:
            self.errors.append(f"stray </{tag}>")


def internal_target(page: Path, href: str) -> Path | None:
    """Return the file a relative link points to, or None for external links and fragments."""
    parts = urlsplit(href)
    if parts.scheme or parts.netloc or not parts.path:
        return None
    target = (page.parent / unquote(parts.path)).resolve()
    return target / "index.html" if href.split("#")[0].split("?")[0].endswith("/") or target.is_dir() else target


def build_into(root: Path, out: str) -> Path:
    config = load_config(root, {"output_dir": out})
    build(config, clean=True, jobs=1)
    return config.output_path


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(digests())
def test_any_records_build_into_a_well_formed_linked_reproducible_site(records):
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "content").mkdir()
        (root / "digest.yaml").write_text("title: Property digest\nsearch: false\n", encoding="utf-8")
        for index, record in enumerate(records):
            (root / "content" / f"r{index}.yaml").write_text(yaml.safe_dump(record, allow_unicode=True),
                                                              encoding="utf-8")
        site = build_into(root, "site")
        pages = sorted(site.rglob("*.html"))
        assert len(list(site.glob("articles/*/index.html"))) == len(records)
        for page in pages:
            text = page.read_text(encoding="utf-8")
            parser = WellFormed()
            parser.feed(text)
            parser.close()
            name = page.relative_to(site).as_posix()
            assert parser.counts == {"html": 1, "/html": 1}, name
            assert parser.head_titles == 1, name
            assert not parser.errors, (name, parser.errors[:5])
            assert not check_html(text, name, base_url="").violations, name
            for href in parser.links:
                target = internal_target(page, href)
                if target is not None:
                    assert target.is_file() and target.is_relative_to(site.resolve()), (name, href)
        for feed in site.rglob("*.xml"):
            ET.parse(feed)
        again = build_into(root, "site2")
        assert read_tree(site) == read_tree(again)


READER_FORMATS = ("yaml_records", "markdown_records", "pubmed_page", "medline", "ris", "bibtex", "csl_json",
                  "pubmed_xml")
LINE = st.one_of(TEXT, st.sampled_from(["---", "- PMID: 12", "PMID- 12", "TI  - x", "TY  - JOUR", "ER  - ", "Abstract",
                                        "Similar articles", "- x PMID: 3", "@article{k,", "title = {x},", "}", "[", "{",
                                        "<PubmedArticleSet>", "<PubmedArticle>", "title: x", "- a", "  b: &a [1]",
                                        "c: *a", "MeSH terms", "Comment in", "AU  - A, B", "DP  - 2020 Jan"]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(READER_FORMATS), st.lists(LINE, max_size=12).map("\n".join))
def test_readers_fail_only_with_located_problems(format_name, text):
    """Any text: a reader returns records and problems, or raises ReaderError; nothing else escapes."""
    from generator.errors import DigestError
    from generator.readers import read_text

    try:
        result = read_text(format_name, text, "x")
    except DigestError as exc:
        assert all(p.path == "x" for p in exc.problems)
        return
    assert all(p.path == "x" for p in result.problems)
