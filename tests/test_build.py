"""End-to-end builds of small digests: what a reader of the site would see."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from generator.errors import DigestError
from tests.conftest import REPO, SEED, build_site, read_tree

SEED_LIKE_PAGE = """\
CAR-T therapy for autoimmune disease
- PMID: 40561659
- DOI: 10.1016/j.coi.2025.102596
CAR-T therapy for autoimmune disease
Abstract
Background: Autoimmune disease is common.
Conclusions: CAR-T cells may reset immunity.
Copyright © 2025 Elsevier Ltd. All rights reserved.
Conflict of interest statement
Nothing to report.
Similar articles
-
CAR T-cells meet autoimmune neurological diseases: a new dawn for therapy.Front Immunol. 2025 Jul 18;16:1604174. doi: 10.3389/fimmu.2025.1604174. eCollection 2025. Front Immunol. 2025. PMID: 40755780 Free PMC article. Review.
-
Managing allorejection in off-the-shelf CAR-engineered cell therapies.Mol Ther. 2025 Jun 4;33(6):2368-2390. doi: 10.1016/j.ymthe.2024.11.035. Epub 2024 Nov 26. Mol Ther. 2025. PMID: 39600090 Review.
Publication types
- Review
MeSH terms
- Autoimmune Diseases/*therapy
Substances
- Receptors, Chimeric Antigen
LinkOut - more resources
Full Text Sources
Medical
"""

NEURO_RECORD = """\
pmid: 40755780
doi: 10.3389/fimmu.2025.1604174
title: "CAR T-cells meet autoimmune neurological diseases: a new dawn for therapy"
authors: ["Smith, Jane", "Doe, John"]
journal: Frontiers in Immunology
journal_abbrev: Front Immunol
published: 2025-07-18
publication_types: [Journal Article, Review]
mesh_terms: ["Autoimmune Diseases/therapy", "Myasthenia Gravis"]
abstract: Neurological autoimmune diseases are a new target.
"""


class PageParser(HTMLParser):
    """Collect links (href, text), headings and visible text of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[tuple[str, str]] = []
        self.headings: list[str] = []
        self.text: list[str] = []
        self._href: str | None = None
        self._link_text: list[str] = []
        self._heading: list[str] | None = None

    BLOCKS = {"p", "div", "li", "h1", "h2", "h3", "dt", "dd", "section", "header", "title", "br", "td", "span"}

    def handle_starttag(self, tag, attrs):
        if tag in self.BLOCKS:
            self.text.append(" ")
        if tag == "a":
            self._href = dict(attrs).get("href")
            self._link_text = []
        if tag in ("h1", "h2", "h3"):
            self._heading = []

    def handle_endtag(self, tag):
        if tag in self.BLOCKS:
            self.text.append(" ")
        if tag == "a" and self._href is not None:
            self.links.append((self._href, " ".join("".join(self._link_text).split())))
            self._href = None
        if tag in ("h1", "h2", "h3") and self._heading is not None:
            self.headings.append(" ".join("".join(self._heading).split()))
            self._heading = None

    def handle_data(self, data):
        self.text.append(data)
        if self._href is not None:
            self._link_text.append(data)
        if self._heading is not None:
            self._heading.append(data)

    @property
    def visible(self) -> str:
        return " ".join("".join(self.text).split())


def parse(path: Path) -> PageParser:
    parser = PageParser()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


@pytest.fixture
def small_digest(make_site):
    return make_site({
        "content/seed.txt": SEED_LIKE_PAGE,
        "content/neuro.yaml": NEURO_RECORD,
        "content/seed-notes.md": "---\npmid: 40561659\nrating: 4\n---\nRead this **first**.\n",
    }, config="title: Test digest\n")


def test_article_page_shows_every_field_and_links(small_digest):
    report = build_site(small_digest)
    assert report.articles == 2
    site = small_digest / "site"
    page = parse(site / "articles/40561659/index.html")
    assert "CAR-T therapy for autoimmune disease" in page.headings
    assert ("https://pubmed.ncbi.nlm.nih.gov/40561659/", "40561659") in page.links
    assert ("https://doi.org/10.1016/j.coi.2025.102596", "10.1016/j.coi.2025.102596") in page.links
    for heading in ("Abstract", "Background", "Conclusions", "Conflict of interest statement", "Similar articles",
                    "Publication types", "MeSH terms", "Substances", "LinkOut – more resources"):
        assert heading in page.headings
    text = page.visible
    assert "Copyright © 2025 Elsevier Ltd. All rights reserved." in text
    assert "Nothing to report." in text
    assert "Receptors, Chimeric Antigen" in text and "Full Text Sources" in text
    # Curator notes from the Markdown record merged into the page-text record.
    assert "Read this first." in text
    # A similar article in the digest links to its page; one outside links to PubMed.
    assert ("../../articles/40755780/", "CAR T-cells meet autoimmune neurological diseases: a new dawn for therapy") in page.links
    assert ("https://pubmed.ncbi.nlm.nih.gov/39600090/",
            "Managing allorejection in off-the-shelf CAR-engineered cell therapies") in page.links
    assert "Mol Ther 2025 Jun 4;33(6):2368-2390" in text
    # Backlink on the other article, and its author/topic links.
    neuro = parse(site / "articles/40755780/index.html")
    assert "Listed as similar by" in neuro.headings
    assert ("../../articles/40561659/", "CAR-T therapy for autoimmune disease") in neuro.links
    assert ("../../authors/jane-smith/", "Jane Smith") in neuro.links
    assert ("../../topics/myasthenia-gravis/", "Myasthenia Gravis") in neuro.links


def test_markdown_page_and_home_page(small_digest):
    build_site(small_digest)
    site = small_digest / "site"
    markdown = (site / "articles/40561659/index.md").read_text(encoding="utf-8")
    assert "# CAR-T therapy for autoimmune disease" in markdown
    assert "**Background:** Autoimmune disease is common." in markdown
    assert "[CAR T-cells meet autoimmune neurological diseases: a new dawn for therapy](../../articles/40755780/index.md)" in markdown
    assert "- Autoimmune Diseases/*therapy" in markdown
    home = parse(site / "index.html")
    titles = [text for href, text in home.links if href.startswith("articles/")]
    assert titles == ["CAR T-cells meet autoimmune neurological diseases: a new dawn for therapy",
                      "CAR-T therapy for autoimmune disease"]  # newest first: 2025-07-18, then 2025 (no date)
    assert "Review" in home.visible


def test_taxonomy_pages_list_their_articles(small_digest):
    build_site(small_digest)
    site = small_digest / "site"
    topic = parse(site / "topics/autoimmune-diseases/index.html")
    assert [t for h, t in topic.links if h.startswith("../../articles/")] == [
        "CAR T-cells meet autoimmune neurological diseases: a new dawn for therapy",
        "CAR-T therapy for autoimmune disease",
    ]
    index = parse(site / "topics/index.html")
    assert ("../topics/autoimmune-diseases/", "Autoimmune Diseases") in index.links
    assert (site / "years/2025/index.html").is_file()
    assert (site / "journals/frontiers-in-immunology/index.html").is_file()
    assert (site / "types/review/index.html").is_file()


def test_two_builds_are_byte_identical(small_digest, tmp_path):
    build_site(small_digest)
    first = read_tree(small_digest / "site")
    build_site(small_digest, output_dir=str(tmp_path / "again"))
    assert read_tree(tmp_path / "again") == first


def test_failed_build_leaves_previous_site_untouched(small_digest):
    build_site(small_digest)
    before = read_tree(small_digest / "site")
    (small_digest / "content/broken.yaml").write_text("title: [unclosed\n", encoding="utf-8")
    with pytest.raises(DigestError):
        build_site(small_digest)
    assert read_tree(small_digest / "site") == before
    # A spare the build had begun is deleted by a process of its own once the build is over.
    deadline = time.monotonic() + 30
    while any(p.name.startswith(".site") for p in small_digest.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(p.name.startswith(".site") for p in small_digest.iterdir())


def test_every_kind_of_bad_input_is_reported_at_once(make_site):
    root = make_site({
        "content/malformed.yaml": "title: A\npmid: [1, 2\n",
        "content/untitled.yaml": "pmid: 111\njournal: J\n",
        "content/dup-a.yaml": "title: A\npmid: 222\n",
        "content/dup-b.md": "---\ntitle: B\npmid: 222\n---\n",
        "content/unsafe.yaml": "title: C\nid: ../../etc\n",
    })
    (root / "content/latin1.yaml").write_bytes("title: caf\xe9\n".encode("latin-1"))
    with pytest.raises(DigestError) as excinfo:
        build_site(root)
    lines = [p.format() for p in excinfo.value.problems]
    assert any(line.startswith("content/malformed.yaml:3: invalid YAML") for line in lines)
    assert "content/untitled.yaml:1: missing title (add 'title: ...' to the record)" in lines
    assert any(line.startswith("content/dup-b.md:2: PMID 222 is also recorded in content/dup-a.yaml:1") for line in lines)
    assert any(line.startswith("content/unsafe.yaml:2: 'id' '../../etc' cannot be used in a URL") for line in lines)
    assert "content/latin1.yaml:1: is not UTF-8 text (byte 0xe9) (save the file as UTF-8)" in lines


def test_unknown_config_key_suggests_the_right_one(make_site):
    root = make_site({}, config="title: T\nbase_ulr: https://x.github.io/r/\n")
    with pytest.raises(DigestError) as excinfo:
        build_site(root)
    assert [p.format() for p in excinfo.value.problems] == [
        "digest.yaml:2: unknown setting 'base_ulr' (did you mean 'base_url'?)"
    ]


def test_user_template_overrides_the_theme(small_digest):
    (small_digest / "templates").mkdir()
    (small_digest / "templates/term.html").write_text("<p>custom {{ term.name }}</p>\n", encoding="utf-8")
    build_site(small_digest)
    assert (small_digest / "site/topics/myasthenia-gravis/index.html").read_text() == "<p>custom Myasthenia Gravis</p>\n"


def test_template_error_names_the_template_and_line(small_digest):
    (small_digest / "templates").mkdir()
    (small_digest / "templates/term.html").write_text("ok\n{{ no_such_variable }}\n", encoding="utf-8")
    with pytest.raises(DigestError) as excinfo:
        build_site(small_digest)
    (problem,) = excinfo.value.problems
    assert problem.path.endswith("templates/term.html") and problem.line == 2
    assert "'no_such_variable' is undefined" in problem.message


class ScriptAudit(HTMLParser):
    """Collect what could run in a browser: script elements, event-handler attributes, script URLs."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.scripts: list[dict] = []
        self.handlers: list[tuple[str, str]] = []
        self.urls: list[str] = []
        self.json_ld: list[str] = []
        self._in_json = False

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "script":
            self.scripts.append(attributes)
            self._in_json = attributes.get("type") == "application/ld+json"
        for name, value in attrs:
            if name.startswith("on"):
                self.handlers.append((tag, name))
            if name in ("href", "src", "action", "formaction", "xlink:href") and value:
                self.urls.append(value)

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_json = False

    def handle_data(self, data):
        if self._in_json:
            self.json_ld.append(data)


def test_untrusted_text_is_escaped_or_sanitised(make_site):
    import json

    root = make_site({"content/x.md": """\
        ---
        title: "<script>alert(1)</script> T </script><script>alert(4)</script>"
        pmid: 5
        authors: ["<img src=x onerror=alert(1)> Bad"]
        abstract: "p<0.05 & <b onclick=x>bold</b>"
        ---
        Notes <script>alert(2)</script> [link](javascript:alert(3)) <a href="https://ok.org" onclick="x">ok</a>
        """})
    build_site(root)
    html = (root / "site/articles/5/index.html").read_text()
    audit = ScriptAudit()
    audit.feed(html)
    assert audit.handlers == []
    dangerous = [u for u in audit.urls if u.strip().lower().startswith(("javascript:", "data:", "vbscript:"))]
    assert dangerous in ([], ["data:,"])  # the theme's empty favicon is the only data URL
    # The only scripts: the theme's own file and the JSON-LD data block, which still parses.
    assert [s.get("type") for s in audit.scripts] == [None, "application/ld+json"]
    assert audit.scripts[0]["src"].startswith("../../assets/digest.")
    (block,) = audit.json_ld
    assert json.loads(block)["name"].startswith("<script>alert(1)</script> T")
    assert "p&lt;0.05 &amp; &lt;b onclick=x&gt;bold&lt;/b&gt;" in html
    assert '<a href="https://ok.org" rel="noopener noreferrer nofollow">ok</a>' in html


def test_dangerous_record_url_is_refused(make_site):
    root = make_site({"content/x.yaml": "title: T\npmid: 5\nurl: javascript:alert(1)\n"})
    with pytest.raises(DigestError) as excinfo:
        build_site(root)
    assert "content/x.yaml:3: 'url' must be an http(s) URL, got 'javascript:alert(1)'" in [
        p.format() for p in excinfo.value.problems]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "generator", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_cli_builds_and_prints_one_summary_line(small_digest):
    result = run_cli("build", cwd=small_digest)
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.strip().splitlines()
    assert line.startswith("Built 2 articles: ") and " pages (" in line and line.endswith(" s")


def test_cli_reports_errors_without_traceback_and_exit_1(make_site):
    root = make_site({"content/bad.yaml": "title: A\npmid: [1\n"})
    result = run_cli("build", cwd=root)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[0].startswith("content/bad.yaml:")
    assert not (root / "site").exists()


def test_cli_help_explains_options(tmp_path):
    result = run_cli("build", "--help", cwd=tmp_path)
    assert result.returncode == 0
    for option in ("--out", "--base-url", "--strict", "--verbose", "--quiet"):
        assert option in result.stdout
    assert run_cli(cwd=tmp_path).returncode == 2


@pytest.mark.skipif(not SEED.exists(), reason="the seed record is not on this machine")
def test_seed_record_builds_into_a_page(make_site):
    root = make_site({"content/seed.txt": SEED.read_text(encoding="utf-8")})
    build_site(root)
    page = parse(root / "site/articles/40561659/index.html")
    assert "Chimeric antigen receptor T cell therapy for autoimmune diseases" in page.headings
    for pmid in ("40755780", "40873568", "40562292", "40771804", "39600090"):
        assert (f"https://pubmed.ncbi.nlm.nih.gov/{pmid}/") in [h for h, _ in page.links]
    assert "Declaration of Competing Interest Nothing to report." in page.visible


def test_example_digest_builds():
    """The repository's own content/ is a digest: it builds without warnings."""
    from generator.build import build
    from generator.config import load_config

    config = load_config(REPO, {"output_dir": None})
    import tempfile

    with tempfile.TemporaryDirectory() as out:
        from dataclasses import replace

        report = build(replace(config, output_dir=out))
        assert report.articles >= 12 and report.warnings == []
        assert (Path(out) / "articles/40561659/index.html").is_file()


def test_digest_json_exports_similar_articles_with_origin(small_digest):
    import json

    build_site(small_digest)
    data = json.loads((small_digest / "site/digest.json").read_text())
    by_id = {a["id"]: a for a in data["articles"]}
    seed = by_id["40561659"]
    assert set(seed) >= {"id", "pmid", "doi", "title", "url", "similar"}
    assert seed["url"] == "articles/40561659/"
    inside = [s for s in seed["similar"] if s["id"] == "40755780"]
    assert inside and inside[0]["source"] == "pubmed" and inside[0]["url"] == "articles/40755780/"
    outside = [s for s in seed["similar"] if s["pmid"] == "39600090"]
    assert outside == [{"doi": "10.1016/j.ymthe.2024.11.035", "id": None, "pmid": "39600090", "score": None,
                        "source": "pubmed", "title": "Managing allorejection in off-the-shelf CAR-engineered cell therapies",
                        "url": None}]
    # No duplicates: one entry per similar article whatever its origins.
    keys = [s["id"] or s["pmid"] for s in seed["similar"]]
    assert len(keys) == len(set(keys))


def test_digest_json_is_json_dumps_of_the_whole_across_the_pieces_it_is_encoded_in(example_copy, monkeypatch):
    """digest.json is encoded some entries at a time: its bytes are still json.dumps of the whole
    (one key, no spaces, keys sorted, letters beyond ASCII as themselves), wherever the pieces end."""
    import json

    import generator.render as render_module

    (example_copy / "content/accents.yaml").write_text(
        "title: Lupus néphritis and CAR-T — Ωmega\npmid: 1\nauthors: [Łukasz Müller]\n", encoding="utf-8")
    monkeypatch.setattr(render_module, "_ENCODED_AT_ONCE", 2)
    build_site(example_copy)
    data = (example_copy / "site/digest.json").read_bytes()
    whole = json.loads(data)
    assert len(whole["articles"]) == 14 and "Ωmega" in data.decode("utf-8")
    assert data == (json.dumps(whole, ensure_ascii=False, separators=(",", ":"), sort_keys=True) + "\n").encode("utf-8")


def test_similar_false_turns_computation_off(make_site):
    import json

    root = make_site({
        "content/a.yaml": "title: CAR T cells in lupus\npmid: 1\nmesh_terms: [Lupus Erythematosus, Systemic]\nkeywords: [CAR-T]\n",
        "content/b.yaml": "title: CAR T cells in lupus nephritis\npmid: 2\nmesh_terms: [Lupus Erythematosus, Systemic]\nkeywords: [CAR-T]\n",
    }, config="similar: false\n")
    build_site(root)
    data = json.loads((root / "site/digest.json").read_text())
    assert all(a["similar"] == [] for a in data["articles"])
    (root / "digest.yaml").write_text("similar: {count: 3, min_score: 0.01}\n")
    build_site(root)
    data = json.loads((root / "site/digest.json").read_text())
    assert [s["source"] for s in data["articles"][0]["similar"]] == ["computed"]


def test_progress_shows_a_rate_only_once_it_can_be_measured(monkeypatch):
    import io

    from generator import progress as progress_module

    clock = iter([10.0, 11.0])
    monkeypatch.setattr(progress_module.time, "perf_counter", lambda: next(clock))
    stream = io.StringIO()
    shown = progress_module.Progress(stream=stream, enabled=True)
    shown.update("render", 1278, 81804)  # the stage's first update: no span to measure a rate over
    shown.update("render", 12780, 81804)
    lines = [line.strip() for line in stream.getvalue().split("\r") if line.strip()]
    assert lines == ["render: 1,278/81,804", "render: 12,780/81,804 (12,780/s)"]


def test_articles_per_year_chart_shows_years_without_articles_unlinked(make_site):
    """The map's chart is a time axis: a year without articles is an empty bar, not a missing one,
    and bars link to year pages only when the digest has them."""
    import re

    root = make_site({
        "content/a.yaml": "title: CAR T cells in lupus\npmid: 1\npublished: 2019-03-01\n",
        "content/b.yaml": "title: CAR T cells in myositis\npmid: 2\npublished: 2022-05-01\n",
        "content/c.yaml": "title: CAR T cells in sclerosis\npmid: 3\npublished: 2022-07-01\n",
    }, config="title: Years\n")
    build_site(root)
    chart = (root / "site/map/index.html").read_text().split('class="bars"')[1].split("</svg>")[0]
    assert re.findall(r"<title>(\d{4}): (\d+) article", chart) == [
        ("2019", "1"), ("2020", "0"), ("2021", "0"), ("2022", "2")]
    assert re.findall(r'href="([^"]+)"', chart) == ["../years/2019/", "../years/2022/"]
    (root / "digest.yaml").write_text("title: Years\ntaxonomies: [topics, authors]\n")
    build_site(root)
    chart = (root / "site/map/index.html").read_text().split('class="bars"')[1].split("</svg>")[0]
    assert "href" not in chart and chart.count("<rect") == 4  # no year pages to link to


def test_markdown_page_keeps_authors_citation_and_ids_apart(small_digest):
    """The Markdown twin, rendered by a Markdown processor: the authors, the journal line and the
    list of identifiers are three blocks, not one paragraph run together."""
    import markdown

    build_site(small_digest)
    html = markdown.markdown((small_digest / "site/articles/40755780/index.md").read_text(encoding="utf-8"))
    assert "<p>Jane Smith, John Doe</p>" in html
    assert "<p><em>Frontiers in Immunology</em> 2025 Jul 18</p>" in html
    assert '<ul>\n<li>PMID: <a href="https://pubmed.ncbi.nlm.nih.gov/40755780/">40755780</a></li>' in html
