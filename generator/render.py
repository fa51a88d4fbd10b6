"""Stage 3, render: the linked digest through Jinja templates into pages (path + bytes). No disk writes.

The user's `templates/` folder comes first on the search path, then the theme shipped with the
package, so a digest overrides any template by adding a file of the same name.
"""

from __future__ import annotations

import hashlib
import json
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import jinja2
from markupsafe import Markup

from generator import urls
from generator.config import SiteConfig
from generator.errors import DigestError, Problem
from generator.link import Digest, article_terms
from generator import exports
from generator.graph import build_map
from generator.markup import inline_html, plain_text, render_notes, safe_url, summary
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


def make_environment(config: SiteConfig) -> jinja2.Environment:
    """Create the Jinja environment: autoescape for HTML/XML, undefined variables are errors."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(d) for d in theme_dirs(config)]),
        autoescape=jinja2.select_autoescape(["html", "xml"], default_for_string=False, default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        notes=render_notes, inline=inline_html, summary=summary, safe_url=safe_url, plain=plain_text,
        tojson_script=json_for_script,
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

    def entry_id(self, article: Article) -> str:
        """Return a feed entry's permanent id: its page URL when the site has an address, else a URN."""
        if self.config.base_url:
            return urls.absolute_url(self.config.base_url, urls.article_path(article.id))
        return f"urn:review-digest:{article.id}"

    def page_context(self, path: str) -> dict[str, Any]:
        """Return the helpers bound to one page: every link they make is relative to it."""

        def url(target: str) -> str:
            return urls.relative_url(path, target)

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
            raise DigestError(Problem(_template_path(exc.filename, exc.name), f"template syntax: {exc.message}",
                                      line=exc.lineno)) from None
        except jinja2.TemplateNotFound as exc:
            raise DigestError(Problem(template_name, f"template not found: {exc.name}",
                                      hint="is it missing from templates/?")) from None
        except (jinja2.UndefinedError, TypeError, ValueError, KeyError, AttributeError) as exc:
            filename, line = _template_frame(exc)
            raise DigestError(Problem(filename or template_name, f"while rendering {path or 'the home page'}: {exc}",
                                      line=line)) from None
        return Page(path=urls.output_file(path), content=text.encode("utf-8"))


def _template_path(filename: str | None, name: str | None) -> str:
    if filename:
        try:
            return Path(filename).resolve().relative_to(Path.cwd()).as_posix()
        except ValueError:
            return filename
    return name or "template"


def _template_frame(exc: BaseException) -> tuple[str | None, int | None]:
    """Find the innermost template frame of a rendering error (Jinja rewrites frames to template lines)."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename.endswith((".html", ".md", ".xml", ".txt", ".json")):
            return _template_path(frame.filename, None), frame.lineno
    return None, None


def render_site(digest: Digest, config: SiteConfig) -> list[Page]:
    """Render every page of the site, in a fixed order."""
    renderer = Renderer(digest, config)
    pages = [Page(path=path, content=data) for path, data in sorted(renderer.assets.values())]
    pages.append(renderer.render("index.html", urls.HOME, articles=digest.articles))
    for article in digest.articles:
        pages.extend(render_article(renderer, article))
    pages.extend(render_taxonomies(renderer))
    pages.append(renderer.render("map.html", urls.MAP, digest_map=build_map(digest)))
    pages.append(renderer.render("404.html", urls.NOT_FOUND))
    pages.extend(render_publishing(renderer, pages))
    return pages


def render_feed(renderer: Renderer, path: str, articles: Iterable[Article], title: str, alternate: str) -> Page:
    """Render an Atom feed of the newest articles (by publication date, then id)."""
    newest = sorted(articles, key=lambda a: (updated_date(a), a.id), reverse=True)[: renderer.config.feed_limit]
    updated = max((updated_date(a) for a in newest), default="1970-01-01T00:00:00Z")
    feed_id = (urls.absolute_url(renderer.config.base_url, path) if renderer.config.base_url
               else f"urn:review-digest:feed:{path}")
    return renderer.render("feed.xml", path, articles=newest, feed_title=title, feed_id=feed_id, updated=updated,
                           alternate_path=alternate)


def render_publishing(renderer: Renderer, pages: list[Page]) -> list[Page]:
    """Render what hosting and readers' tools need: feeds, sitemap, robots.txt, exports, CNAME."""
    digest, config = renderer.digest, renderer.config
    out = [render_feed(renderer, urls.FEED, digest.articles, config.title, urls.HOME)]
    for term in digest.taxonomies.get("topics", ()):
        out.append(render_feed(renderer, urls.term_path("topics", term.slug) + "feed.xml",
                               [digest.by_id[i] for i in term.article_ids], f"{config.title}: {term.name}",
                               urls.term_path("topics", term.slug)))
    html_paths = sorted(p.path[: -len("index.html")] for p in pages
                        if p.path.endswith("index.html") and p.path != urls.NOT_FOUND)
    if config.base_url:
        out.append(renderer.render("sitemap.xml", urls.SITEMAP, paths=html_paths))
    out.append(renderer.render("robots.txt", "robots.txt"))
    out.append(Page(urls.DIGEST_JSON, digest_json(digest, config).encode("utf-8")))
    articles = digest.articles
    out.append(Page("digest.bib", exports.articles_to_bibtex(articles).encode("utf-8")))
    out.append(Page("digest.ris", exports.articles_to_ris(articles).encode("utf-8")))
    out.append(Page("digest.csl.json", exports.articles_to_csl_json(articles).encode("utf-8")))
    if config.cname:
        out.append(Page("CNAME", (config.cname.strip() + "\n").encode("ascii", "ignore")))
    out.append(Page(".nojekyll", b""))
    return out


def render_article(renderer: Renderer, article: Article) -> list[Page]:
    """Render an article's HTML page and its Markdown twin."""
    path = urls.article_path(article.id)
    context = {
        "article": article,
        "similar": renderer.digest.similar.get(article.id, ()),
        "backlinks": [renderer.digest.by_id[i] for i in renderer.digest.backlinks.get(article.id, ())],
    }
    key = renderer.citation_keys[article.id]
    bibtex = exports.article_to_bibtex(article, key)
    html = renderer.render("article.html", path, bibtex=bibtex, **context)
    markdown = renderer.render("article.md", urls.article_markdown_path(article.id), **context)
    return [
        html,
        Page(urls.article_markdown_path(article.id), markdown.content),
        Page(path + "cite.bib", bibtex.encode("utf-8")),
        Page(path + "cite.ris", exports.article_to_ris(article).encode("utf-8")),
        Page(path + "cite.json", exports.article_to_csl_json(article, key).encode("utf-8")),
    ]


def render_taxonomies(renderer: Renderer) -> Iterable[Page]:
    digest = renderer.digest
    for taxonomy, terms in digest.taxonomies.items():
        yield renderer.render("taxonomy.html", urls.taxonomy_path(taxonomy), taxonomy=taxonomy, terms=terms)
        for term in terms:
            articles = [digest.by_id[i] for i in term.article_ids]
            yield renderer.render("term.html", urls.term_path(taxonomy, term.slug), taxonomy=taxonomy,
                                  term=term, articles=articles)


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
    return json.dumps({"articles": articles}, ensure_ascii=False, indent=1, sort_keys=True) + "\n"


RenderFunction = Callable[[Digest, SiteConfig], list[Page]]
