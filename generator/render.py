"""Stage 3, render: the linked digest through Jinja templates into pages (path + bytes). No disk writes.

The user's `templates/` folder comes first on the search path, then the theme shipped with the
package, so a digest overrides any template by adding a file of the same name.
"""

from __future__ import annotations

import hashlib
import json
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable

import jinja2
import jinja2.bccache
import jinja2.meta
import jinja2.nodes
from markupsafe import Markup

from generator import exports, urls
from generator.config import SiteConfig
from generator.errors import DigestError, Problem
from generator.link import Digest, article_terms
from generator.graph import build_map
from generator.markup import inline_html, markdown_notes, markdown_text, plain_text, render_notes, safe_url, summary
from generator.metadata import page_range, scholarly_json_ld, updated_date
from generator.model import Article

THEME_DIR = Path(__file__).resolve().parent / "theme"
if not THEME_DIR.is_dir():  # a source checkout: the theme lives in the repository's templates/
    THEME_DIR = Path(__file__).resolve().parent.parent / "templates"
ASSET_SUFFIXES = (".css", ".js", ".svg", ".png", ".ico", ".woff2")


@dataclass(frozen=True)
class Page:
    """One output file: its path under the output folder and its bytes."""

    path: str
    content: bytes


def theme_dirs(config: SiteConfig) -> list[Path]:
    """Return template folders in lookup order: the digest's own, then the packaged theme."""
    dirs = [config.templates_path] if config.templates_path.is_dir() else []
    if THEME_DIR.resolve() not in [d.resolve() for d in dirs]:
        dirs.append(THEME_DIR)
    return dirs


class _MemoryBytecodeCache(jinja2.BytecodeCache):
    """Compiled templates kept for the life of the process, keyed by Jinja on name and source
    checksum: `digest serve` rebuilds skip recompiling unchanged templates (~0.5 s each build)."""

    def __init__(self) -> None:
        self.store: dict[str, bytes] = {}

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        data = self.store.get(bucket.key)
        if data is not None:
            bucket.bytecode_from_string(data)

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        self.store[bucket.key] = bucket.bytecode_to_string()


_BYTECODE = _MemoryBytecodeCache()


def make_environment(config: SiteConfig) -> jinja2.Environment:
    """Create the Jinja environment: autoescape for HTML/XML, undefined variables are errors."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(d) for d in theme_dirs(config)]),
        autoescape=jinja2.select_autoescape(["html", "xml"], default_for_string=False, default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,  # one environment per build: no need to stat every template on every page
        bytecode_cache=_BYTECODE,
    )
    env.filters.update(
        notes=render_notes, inline=inline_html, summary=summary, safe_url=safe_url, plain=plain_text,
        tojson_script=json_for_script, md=markdown_text, md_notes=markdown_notes,
    )
    return env


def json_for_script(value: Any) -> Markup:
    """Return JSON safe inside <script>: no `</script>` breakout, no HTML comment tricks."""
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def collect_assets(config: SiteConfig) -> dict[str, tuple[str, bytes]]:
    """Return theme assets as name -> (fingerprinted path, bytes), so browsers never use stale copies."""
    assets: dict[str, tuple[str, bytes]] = {}
    for folder in reversed(theme_dirs(config)):  # the digest's own assets override the theme's
        asset_dir = folder / "assets"
        if not asset_dir.is_dir():
            continue
        for path in sorted(asset_dir.iterdir()):
            if path.suffix in ASSET_SUFFIXES and path.is_file():
                data = path.read_bytes()
                digest = hashlib.sha256(data).hexdigest()[:10]
                assets[path.name] = (f"assets/{path.stem}.{digest}{path.suffix}", data)
    return assets


TEMPLATE_SUFFIXES = (".html", ".md", ".xml", ".txt", ".json")


def template_references(config: SiteConfig) -> tuple[bool, bool]:
    """Return whether any template reads `digest` (digest-wide data) or a `.score` attribute.

    Read from the templates' syntax trees, so comments and plain text do not count.
    """
    env = make_environment(config)
    uses_digest = uses_score = False
    for folder in theme_dirs(config):
        for path in sorted(folder.glob("*")):
            if path.suffix not in TEMPLATE_SUFFIXES or not path.is_file():
                continue
            source = path.read_bytes()
            found = _REFERENCES.get(source)
            if found is None:
                try:
                    tree = env.parse(source.decode("utf-8"))
                    found = ("digest" in jinja2.meta.find_undeclared_variables(tree),
                             any(node.attr == "score" for node in tree.find_all(jinja2.nodes.Getattr)))
                except (jinja2.TemplateError, UnicodeDecodeError):
                    found = (False, False)  # reported when the template is used
                _REFERENCES[source] = found
            uses_digest, uses_score = uses_digest or found[0], uses_score or found[1]
    return uses_digest, uses_score


_REFERENCES: dict[bytes, tuple[bool, bool]] = {}  # template source -> references (serve rebuilds reuse it)


def theme_fingerprint(config: SiteConfig, digest: Digest, uses_digest: bool) -> str:
    """Fingerprint what every page depends on: templates, theme assets, configuration, this package.

    A template that mentions `digest` can show digest-wide data, so then the whole digest is included.
    """
    # Where the digest lives on disk does not change a page; what the theme files say does.
    portable = replace(config, root=Path("."), output_dir="", content_dir="", templates_dir="", static_dir="")
    parts: list[object] = [__package__, repr(portable)]
    for folder in theme_dirs(config):
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.suffix in TEMPLATE_SUFFIXES + ASSET_SUFFIXES:
                parts.append((path.relative_to(folder).as_posix(), hashlib.sha256(path.read_bytes()).hexdigest()))
    if uses_digest:
        parts.append(repr(digest.articles))
    return fingerprint(*parts)


class Renderer:
    """Renders pages; holds the environment, the digest and the helpers every template may call."""

    def __init__(self, digest: Digest, config: SiteConfig):
        self.digest = digest
        self.config = config
        self.env = make_environment(config)
        self.assets = collect_assets(config)
        self.globals = {
            "site": config,
            "digest": digest,
            "taxonomy_titles": {t: urls.TAXONOMY_TITLES[t] for t in config.taxonomies},
            "pubmed_url": urls.pubmed_url,
            "doi_url": urls.doi_url,
            "pmc_url": urls.pmc_url,
            "article_terms": article_terms,
            "page_range": page_range,
            "scholarly_json_ld": scholarly_json_ld,
            "updated_date": updated_date,
            "entry_id": self.entry_id,
        }
        self.citation_keys = exports.citation_keys(digest.articles)
        uses_digest, self.templates_show_scores = template_references(config)
        self.theme_key = theme_fingerprint(config, digest, uses_digest)
        # Listing entries and feed entries, by (fingerprint, depth): kept across builds in the cache,
        # so an edit re-renders the listings that show the article without re-rendering every entry.
        self.fragments: dict[str, str] = {}
        self.new_fragments: dict[str, str] = {}
        self._item_keys: dict[str, str] = {}
        self._article_keys: dict[str, str] = {}
        self._urls: dict[int, dict[str, str]] = {}
        self._cites: dict[tuple[str, str], str] = {}
        self.plan_jobs: list = []

    def plan(self) -> "SitePlan":
        """Return every job of the site, remembering them for pages that list pages (the sitemap)."""
        plan = SitePlan(self)
        self.plan_jobs = plan.jobs
        return plan

    def newest(self, articles: Iterable[Article]) -> list[Article]:
        """Return the articles a feed shows: newest by date, then id, at most `feed.limit`."""
        return sorted(articles, key=lambda a: (updated_date(a), a.id), reverse=True)[: self.config.feed_limit]

    def fragment(self, kind: str, article: Article, path: str) -> Markup:
        """Return an article's listing entry (`_item.html`) or feed entry (`_entry.xml`) for a page
        at `path`'s depth, rendered once and reused by every page and, through the cache, every build."""
        depth = urls.depth(path)
        if kind == "_item.html":
            basis = self._item_keys.get(article.id) or fingerprint(listing_fields(article))
        else:
            basis = self._article_keys.get(article.id) or fingerprint(repr(article))
        key = fingerprint(self.theme_key, kind, basis, depth)
        found = self.fragments.get(key)
        if found is None:
            found = self.render(kind, path, article=article).content.decode("utf-8").strip("\n")
            self.fragments[key] = self.new_fragments[key] = found
        return Markup(found)

    def items(self, articles: Iterable[Article], depth: int) -> list[Markup]:
        """Return listing entries for a page `depth` folders deep."""
        path = "x/" * depth
        return [self.fragment("_item.html", article, path) for article in articles]

    def entries(self, articles: Iterable[Article], path: str) -> list[Markup]:
        """Return Atom entries for the feed at `path`."""
        return [self.fragment("_entry.xml", article, path) for article in articles]

    def cite(self, article: Article, kind: str) -> str:
        """Return an article's citation file text (`cite.bib`, `cite.ris`, `cite.json`), made once."""
        cached = self._cites.get((article.id, kind))
        if cached is None:
            key = self.citation_keys[article.id]
            if kind == "cite.bib":
                cached = exports.article_to_bibtex(article, key)
            elif kind == "cite.ris":
                cached = exports.article_to_ris(article)
            else:
                cached = exports.article_to_csl_json(article, key)
            self._cites[(article.id, kind)] = cached
        return cached

    def entry_id(self, article: Article) -> str:
        """Return a feed entry's permanent id: its page URL when the site has an address, else a URN."""
        if self.config.base_url:
            return urls.absolute_url(self.config.base_url, urls.article_path(article.id))
        return f"urn:review-digest:{article.id}"

    def page_context(self, path: str) -> dict[str, Any]:
        """Return the helpers bound to one page: every link they make is relative to it."""

        prefix_depth = urls.depth(path)
        cache = self._urls.setdefault(prefix_depth, {})

        def url(target: str) -> str:
            found = cache.get(target)
            if found is None:
                found = cache[target] = urls.relative_url(path, target)
            return found

        def term_url(taxonomy: str, name: str) -> str:
            slug = self.digest.term_slug(taxonomy, name)
            return url(urls.term_path(taxonomy, slug)) if slug and taxonomy in self.config.taxonomies else ""

        def asset(name: str) -> str:
            return url(self.assets[name][0])

        return {
            "page_path": path,
            "url": url,
            "abs_url": lambda target: urls.absolute_url(self.config.base_url, target),
            "article_url": lambda article_id: url(urls.article_path(article_id)),
            "term_url": term_url,
            "asset": asset,
            "root": url(urls.HOME),
        }

    def render(self, template_name: str, path: str, **context: Any) -> Page:
        """Render one template to the page at `path`; template mistakes become DigestErrors."""
        try:
            template = self.env.get_template(template_name)
            text = template.render(**self.globals, **self.page_context(path), **context)
        except jinja2.TemplateSyntaxError as exc:
            raise DigestError(Problem(_template_path(exc.filename, exc.name, self.config.root),
                                      f"template syntax: {exc.message}",
                                      line=exc.lineno)) from None
        except jinja2.TemplateNotFound as exc:
            raise DigestError(Problem(template_name, f"template not found: {exc.name}",
                                      hint="is it missing from templates/?")) from None
        except (jinja2.UndefinedError, TypeError, ValueError, KeyError, AttributeError) as exc:
            filename, line = _template_frame(exc, self.config.root)
            raise DigestError(Problem(filename or template_name, f"while rendering {path or 'the home page'}: {exc}",
                                      line=line)) from None
        return Page(path=urls.output_file(path), content=text.encode("utf-8"))


def _template_path(filename: str | None, name: str | None, root: Path | None = None) -> str:
    """Return a template's path relative to the digest folder when it is inside it (as content paths are)."""
    if filename:
        try:
            return Path(filename).resolve().relative_to((root or Path.cwd()).resolve()).as_posix()
        except ValueError:
            return filename
    return name or "template"


def _template_frame(exc: BaseException, root: Path | None = None) -> tuple[str | None, int | None]:
    """Find the innermost template frame of a rendering error (Jinja rewrites frames to template lines)."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename.endswith((".html", ".md", ".xml", ".txt", ".json")):
            return _template_path(frame.filename, None, root), frame.lineno
    return None, None


@dataclass(frozen=True)
class PageJob:
    """One output file to produce: `key` fingerprints everything the file shows, so an unchanged key
    means the bytes of the previous build can be reused without rendering."""

    path: str
    kind: str
    key: str
    args: tuple = ()


def fingerprint(*parts: object) -> str:
    """Return a short stable hash of the parts' text forms."""
    digest = hashlib.blake2b(digest_size=16)
    for part in parts:
        digest.update(str(part).encode("utf-8", "surrogatepass"))
        digest.update(b"\x1f")
    return digest.hexdigest()


def listing_fields(article: Article) -> tuple:
    """Return what a listing shows of an article (see `_item.html`): its key changes only with these."""
    return (article.id, article.title, article.title_html, article.journal_abbrev, article.journal,
            article.published, article.volume, article.issue, article.pages,
            tuple(a.name for a in article.authors[:4]), len(article.authors), article.publication_types,
            article.is_retracted, article.has_erratum, article.has_expression_of_concern, bool(article.pmcid))


class SitePlan:
    """Every job of a build, with the fingerprints that let unchanged pages be skipped."""

    def __init__(self, renderer: "Renderer"):
        self.renderer = renderer
        digest, config = renderer.digest, renderer.config
        self.theme_key = renderer.theme_key
        self.article_keys = renderer._article_keys = {a.id: fingerprint(repr(a)) for a in digest.articles}
        self.item_keys = renderer._item_keys = {a.id: fingerprint(listing_fields(a)) for a in digest.articles}
        self.jobs: list[PageJob] = []
        add = self.add
        for name, (path, data) in sorted(renderer.assets.items()):
            add(path, "asset", fingerprint(path, hashlib.sha256(data).hexdigest()), (name,))
        add(urls.output_file(urls.HOME), "home", self.listing_key("home", [a.id for a in digest.articles]))
        for article in digest.articles:
            key = self.article_page_key(article)
            base = urls.article_path(article.id)
            add(urls.output_file(base), "article", key, (article.id,))
            add(urls.article_markdown_path(article.id), "article_md", key, (article.id,))
            cite_key = fingerprint(self.article_keys[article.id], renderer.citation_keys[article.id])
            for name in ("cite.bib", "cite.ris", "cite.json"):
                add(base + name, name, cite_key, (article.id,))
        for taxonomy, terms in digest.taxonomies.items():
            add(urls.output_file(urls.taxonomy_path(taxonomy)), "taxonomy",
                fingerprint(self.theme_key, taxonomy, [(t.name, t.slug, len(t.article_ids)) for t in terms]), (taxonomy,))
            for index, term in enumerate(terms):
                add(urls.output_file(urls.term_path(taxonomy, term.slug)), "term",
                    self.listing_key(taxonomy, term.name, term.article_ids), (taxonomy, index))
                if taxonomy == "topics":
                    add(urls.term_path(taxonomy, term.slug) + "feed.xml", "topic_feed",
                        self.feed_key(term.name, term.article_ids), (index,))
        add(urls.output_file(urls.MAP), "map", fingerprint(self.theme_key, self.map_inputs()))
        if config.search:
            add(urls.output_file(urls.SEARCH), "search", self.theme_key)
        add(urls.NOT_FOUND, "404", self.theme_key)
        add(urls.FEED, "feed", self.feed_key("", [a.id for a in digest.articles]))
        all_keys = fingerprint(sorted(self.article_keys.items()), sorted(renderer.citation_keys.items()))
        add(urls.DIGEST_JSON, "digest_json", fingerprint(self.theme_key, all_keys, self.similar_inputs()))
        for name in ("digest.bib", "digest.ris", "digest.csl.json"):
            add(name, name, fingerprint(self.theme_key, all_keys))
        html_paths = sorted(j.path for j in self.jobs if j.path.endswith("index.html"))
        if config.base_url:
            add(urls.SITEMAP, "sitemap", fingerprint(self.theme_key, html_paths))
        add("robots.txt", "robots", self.theme_key)
        if config.cname:
            add("CNAME", "cname", fingerprint(config.cname))
        add(".nojekyll", "nojekyll", "")

    def add(self, path: str, kind: str, key: str, args: tuple = ()) -> None:
        self.jobs.append(PageJob(path=path, kind=kind, key=key, args=args))

    def listing_key(self, *parts: object) -> str:
        *head, ids = parts
        return fingerprint(self.theme_key, *head, [self.item_keys[i] for i in ids])

    def article_page_key(self, article: Article) -> str:
        digest = self.renderer.digest
        backlinks = [self.item_keys[i] for i in digest.backlinks.get(article.id, ())]
        similar = digest.similar.get(article.id, ())
        if not self.renderer.templates_show_scores:
            # Scores drift a little whenever any record changes (term weights are digest-wide), but
            # the theme does not print them: leave them out so those pages are not rewritten.
            similar = tuple(replace(link, score=None) for link in similar)
        return fingerprint(self.theme_key, self.article_keys[article.id], similar, backlinks,
                           self.renderer.citation_keys[article.id])

    def feed_key(self, title: str, ids: Iterable[str]) -> str:
        newest = self.renderer.newest([self.renderer.digest.by_id[i] for i in ids])
        return fingerprint(self.theme_key, title, [self.article_keys[a.id] for a in newest])

    def map_inputs(self) -> str:
        digest = self.renderer.digest
        edges = sorted((a, l.target_id) for a, links in digest.similar.items() for l in links if l.target_id)
        return fingerprint(edges, [listing_fields(a) for a in digest.articles],
                           [(a.mesh_terms, a.keywords) for a in digest.articles])

    def similar_inputs(self) -> str:
        return fingerprint(sorted(self.renderer.digest.similar.items()))


AGGREGATES = {"digest.bib": "cite.bib", "digest.ris": "cite.ris", "digest.csl.json": "cite.json"}


def produce(renderer: "Renderer", job: PageJob) -> bytes:
    """Render one job's bytes. Aggregate exports are made by `aggregate_export` from per-article files."""
    digest, config = renderer.digest, renderer.config
    kind, args = job.kind, job.args
    if kind == "asset":
        return renderer.assets[args[0]][1]
    if kind == "home":
        return renderer.render("index.html", urls.HOME, items=renderer.items(digest.articles, 0)).content
    if kind in ("article", "article_md"):
        return render_article_page(renderer, digest.by_id[args[0]], markdown=kind == "article_md")
    if kind in ("cite.bib", "cite.ris", "cite.json"):
        return renderer.cite(digest.by_id[args[0]], kind).encode("utf-8")
    if kind == "taxonomy":
        taxonomy = args[0]
        return renderer.render("taxonomy.html", urls.taxonomy_path(taxonomy), taxonomy=taxonomy,
                               terms=digest.taxonomies[taxonomy]).content
    if kind == "term":
        taxonomy, index = args
        term = digest.taxonomies[taxonomy][index]
        items = renderer.items([digest.by_id[i] for i in term.article_ids], 2)
        return renderer.render("term.html", urls.term_path(taxonomy, term.slug), taxonomy=taxonomy, term=term,
                               items=items).content
    if kind == "topic_feed":
        term = digest.taxonomies["topics"][args[0]]
        return render_feed(renderer, job.path, [digest.by_id[i] for i in term.article_ids],
                           f"{config.title}: {term.name}", urls.term_path("topics", term.slug))
    if kind == "feed":
        return render_feed(renderer, urls.FEED, digest.articles, config.title, urls.HOME)
    if kind == "map":
        before = set(renderer.fragments)
        digest_map = build_map(digest, renderer.fragments)
        renderer.new_fragments.update({k: renderer.fragments[k] for k in set(renderer.fragments) - before})
        return renderer.render("map.html", urls.MAP, digest_map=digest_map).content
    if kind == "search":
        return renderer.render("search.html", urls.SEARCH).content
    if kind == "404":
        return renderer.render("404.html", urls.NOT_FOUND).content
    if kind == "digest_json":
        return digest_json(digest, config).encode("utf-8")
    if kind == "sitemap":
        paths = sorted(j.path[: -len("index.html")] for j in renderer.plan_jobs if j.path.endswith("index.html")
                       and j.path not in (urls.NOT_FOUND, urls.output_file(urls.SEARCH)))
        return renderer.render("sitemap.xml", urls.SITEMAP, paths=paths).content
    if kind == "robots":
        return renderer.render("robots.txt", "robots.txt").content
    if kind == "cname":
        return (config.cname.strip() + "\n").encode("ascii", "ignore")
    if kind == "nojekyll":
        return b""
    if kind in AGGREGATES:
        return aggregate_export(kind, [renderer.cite(a, AGGREGATES[kind]).encode("utf-8") for a in digest.articles])
    raise ValueError(f"unknown page kind {kind!r}")


def aggregate_export(kind: str, parts: list[bytes]) -> bytes:
    """Join per-article citation files into the digest-wide export of the same format."""
    if kind == "digest.csl.json":
        # Each cite.json is a one-item array: join the items into one array.
        items = [part.strip()[1:-1].strip(b"\n") for part in parts]
        return b"[\n" + b",\n".join(items) + b"\n]\n" if items else b"[]\n"
    separator = b"\n" if kind == "digest.bib" else b""
    return separator.join(parts)


def render_feed(renderer: Renderer, path: str, articles: Iterable[Article], title: str, alternate: str) -> bytes:
    """Render an Atom feed of the newest articles (by publication date, then id)."""
    newest = renderer.newest(articles)
    updated = max((updated_date(a) for a in newest), default="1970-01-01T00:00:00Z")
    feed_id = (urls.absolute_url(renderer.config.base_url, path) if renderer.config.base_url
               else f"urn:review-digest:feed:{path}")
    return renderer.render("feed.xml", path, entries=renderer.entries(newest, path), feed_title=title,
                           feed_id=feed_id, updated=updated, alternate_path=alternate).content


def render_article_page(renderer: Renderer, article: Article, markdown: bool) -> bytes:
    """Render an article's HTML page, or its Markdown twin."""
    context = {
        "article": article,
        "similar": renderer.digest.similar.get(article.id, ()),
        "backlinks": [renderer.digest.by_id[i] for i in renderer.digest.backlinks.get(article.id, ())],
    }
    if markdown:
        return renderer.render("article.md", urls.article_markdown_path(article.id), **context).content
    return renderer.render("article.html", urls.article_path(article.id), bibtex=renderer.cite(article, "cite.bib"),
                           **context).content


def digest_json(digest: Digest, config: SiteConfig) -> str:
    """Return the digest as data: each article with its similar articles (issue 4's export format)."""

    def page_url(article_id: str) -> str:
        path = urls.article_path(article_id)
        return urls.absolute_url(config.base_url, path) if config.base_url else path

    articles = []
    for article in digest.articles:
        articles.append({
            "id": article.id,
            "pmid": article.pmid or None,
            "doi": article.doi or None,
            "title": article.title,
            "url": page_url(article.id),
            "similar": [
                {
                    "id": link.target_id,
                    "pmid": link.pmid or None,
                    "doi": link.doi or None,
                    "title": link.title,
                    "url": page_url(link.target_id) if link.target_id else None,
                    "score": link.score,
                    "source": link.source,
                }
                for link in digest.similar.get(article.id, ())
            ],
        })
    # Compact separators keep json on its C encoder: several times faster than an indented dump.
    return json.dumps({"articles": articles}, ensure_ascii=False, separators=(",", ":"), sort_keys=True) + "\n"


