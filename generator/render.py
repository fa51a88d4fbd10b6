"""Stage 3, render: the linked digest through Jinja templates into pages (path + bytes). No disk writes.

The user's `templates/` folder comes first on the search path, then the theme shipped with the
package, so a digest overrides any template by adding a file of the same name.
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import itertools
import json
import marshal
import operator
import os
import shutil
import traceback
import types
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple, Sequence

import jinja2
import jinja2.bccache
import jinja2.compiler
import jinja2.filters
import jinja2.meta
import jinja2.nodes
import jinja2.runtime
import jinja2.utils
from markupsafe import Markup, escape

from generator import exports, urls
from generator.cache_files import Journal, load_pickle, save_pickle
from generator.config import SiteConfig
from generator.errors import DigestError, Problem
from generator.link import Digest, article_terms, linked_fields, split_scores
from generator.load import read_back_deferred, replaced_positions
from generator.graph import articles_per_year, build_map, count_lines, map_graph, primary_topics
from generator.graph import forget_digest_memos as forget_graph_memos
from generator.markup import inline_html, markdown_notes, markdown_text, plain_text, render_notes, safe_url, summary
from generator.metadata import page_range, scholarly_json_ld, scholarly_json_ld_text, updated_date
from generator.model import Article
from generator.pagination import ALPHABETICAL_STEPS, make_pager, page_ids
from generator.search import merged_bundles
from generator.term_index import SPLIT_PAGES, IndexPage, index_pages, letter_bar, letter_pager_paths, term_places
from generator.workers import idle_cores, map_with_workers

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
    checksum: `digest serve` rebuilds skip recompiling unchanged templates (~0.5 s each build).

    With a `folder` (in the digest's cache folder, named after this module's code and Jinja's
    version, since the compiler is customised below), they are also kept on disk for the next
    `digest build` (0.3 s of each build otherwise)."""

    def __init__(self) -> None:
        self.store: dict[str, bytes] = {}
        self.folder: Path | None = None

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        data = self.store.get(bucket.key)
        if data is None and self.folder is not None:
            try:
                data = (self.folder / f"{bucket.key}.bc").read_bytes()
            except OSError:
                data = None
        if data is not None:
            bucket.bytecode_from_string(data)  # Jinja checks its own and Python's versions in it

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        data = self.store[bucket.key] = bucket.bytecode_to_string()
        if self.folder is not None:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                temporary = self.folder / f"{bucket.key}.{os.getpid()}.tmp"
                temporary.write_bytes(data)
                os.replace(temporary, self.folder / f"{bucket.key}.bc")
            except OSError:
                pass  # only costs compiling again next time


def _compiler_stamp() -> str:
    """Name the on-disk template cache after the code that compiles templates (this module, Jinja)."""
    info = os.stat(__file__)
    text = f"{jinja2.__version__}:{info.st_size}:{info.st_mtime_ns}"
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


_BYTECODE = _MemoryBytecodeCache()


def keep_compiled_templates(folder: Path | None) -> None:
    """Keep compiled templates in `folder` (the cache folder's `jinja/`) too, or only in memory."""
    if folder is None:
        _BYTECODE.folder = None
        return
    _BYTECODE.folder = folder / _compiler_stamp()
    try:
        for old in folder.iterdir():  # compiled by an earlier version of this code
            if old.name != _BYTECODE.folder.name and old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
    except OSError:
        pass


# Lean paths through Jinja's runtime, which every template (the theme's and a digest's own) takes
# hundreds of times a page: printing a value, calling a helper, starting a context. Output is
# unchanged: these skip bookkeeping, not work.
try:  # MarkupSafe 3: `escape` wraps the C escaper in Python and builds a Markup per call
    from markupsafe._speedups import _escape_inner
except ImportError:  # MarkupSafe 2 (escape is C already) or no speedups
    _escape_inner = None
if _escape_inner is not None and _escape_inner("<&>\"'x") != str(escape("<&>\"'x")):
    _escape_inner = None


def _escape_output(value: Any) -> str:
    """`escape` for a value a template prints, whose result is only joined into the page's text: the
    same characters as `markupsafe.escape`, without making a Markup object for each."""
    if type(value) is str:
        return _escape_inner(value)
    if hasattr(value, "__html__"):
        return value.__html__()
    return _escape_inner(str(value))


class _CodeGenerator(jinja2.compiler.CodeGenerator):
    """Compiles `{{ value }}` under autoescape to `_escape_output` (when MarkupSafe has its C escaper)."""

    def _output_child_pre(self, node: Any, frame: Any, finalize: Any) -> None:
        if _escape_inner is None or frame.eval_ctx.volatile or not frame.eval_ctx.autoescape:
            super()._output_child_pre(node, frame, finalize)
            return
        self.write("environment.escape_output(")
        if finalize.src is not None:
            self.write(finalize.src)


_PLAIN_CALLABLES = (types.FunctionType, types.BuiltinFunctionType, types.MethodType)


class _Context(jinja2.runtime.Context):
    """`context.call` (every `url(...)`, `term_url(...)` in a template) with a short path for plain
    functions: those that do not ask for the context, eval context or environment get just the arguments,
    as `Context.call` would give them."""

    @jinja2.utils.internalcode  # left out of template tracebacks, as Jinja's own is
    def call(__self, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 (Jinja's own signature)
        if type(__obj) not in _PLAIN_CALLABLES or hasattr(__obj, "jinja_pass_arg"):
            return jinja2.runtime.Context.call(__self, __obj, *args, **kwargs)
        if kwargs:
            kwargs.pop("_block_vars", None)
            kwargs.pop("_loop_vars", None)
        try:
            return __obj(*args, **kwargs)
        except StopIteration:
            return __self.environment.undefined(
                "value was undefined because a callable raised a StopIteration exception")


class _Template(jinja2.Template):
    """A template whose contexts start from a plain dict of its globals: Jinja copies them out of a
    ChainMap for every render, include and import, which costs more than rendering a small template.
    (make_environment never changes the globals after it made the environment.)"""

    _plain_globals: dict[str, Any] | None = None

    def new_context(self, vars: dict[str, Any] | None = None, shared: bool = False,
                    locals: Any = None) -> jinja2.runtime.Context:
        plain = self._plain_globals
        if plain is None:
            plain = self._plain_globals = dict(self.globals)
        return jinja2.runtime.new_context(self.environment, self.name, self.blocks, vars, shared, plain, locals)

    def render_with(self, variables: dict[str, Any]) -> str:
        """`render(variables)` for a dict made for this one call, which holds the globals already
        (see `Renderer.render`): the context takes it as it is instead of copying it twice."""
        context = self.new_context(variables, shared=True)
        try:
            return self.environment.concat(self.root_render_func(context))  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - as Template.render: the traceback shows template lines
            self.environment.handle_exception()


class _Environment(jinja2.Environment):
    """Also finds a loaded template in a plain dict: every page asks for its template and every
    template for those it includes, extends and imports (a dozen lookups an article page), and
    Jinja's own cache makes a weak reference and takes a lock for each. Only without `auto_reload`
    (a build's environment never sees a template change) and without extra globals."""

    code_generator_class = _CodeGenerator
    context_class = _Context
    template_class = _Template
    escape_output = staticmethod(_escape_output)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loaded: dict[str, jinja2.Template] = {}

    @jinja2.utils.internalcode
    def _load_template(self, name: str, globals: Any) -> jinja2.Template:
        if globals or self.auto_reload:
            return super()._load_template(name, globals)
        template = self._loaded.get(name)
        if template is None:
            template = self._loaded[name] = super()._load_template(name, globals)
        return template


_jinja_tojson = jinja2.filters.do_tojson


@jinja2.pass_eval_context
def _tojson(eval_ctx: Any, value: Any, indent: int | None = None) -> Markup:
    """Jinja's `tojson` (article.md writes its front matter with it), with a short path for a string
    under Jinja's default JSON policies: the same text, without building a JSON encoder for it."""
    if type(value) is str and indent is None:
        policies = eval_ctx.environment.policies
        if policies["json.dumps_function"] is None and policies["json.dumps_kwargs"] == {"sort_keys": True}:
            return Markup(json.encoder.encode_basestring_ascii(value).replace("<", "\\u003c").replace(">", "\\u003e")
                          .replace("&", "\\u0026").replace("'", "\\u0027"))
    return _jinja_tojson(eval_ctx, value, indent)


def html_lines(items: Any) -> Markup:
    """Return listing entries one per line, as markup (an entry that is not markup is escaped):
    `{{ items|lines }}` in a template. A `{% for %}` loop printing each costs 2.5 microseconds an
    entry, 25-30 ms for the home page or a publication type of 10,000 articles at each edit; Jinja's
    `join` filter escapes each entry again through Python, which costs more."""
    if set(map(type, items)) - {Markup}:
        items = [item if isinstance(item, Markup) else escape(item) for item in items]
    return Markup("\n".join(items))


def make_environment(config: SiteConfig) -> jinja2.Environment:
    """Create the Jinja environment: autoescape for HTML/XML, undefined variables are errors."""
    env = _Environment(
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
        tojson_script=json_for_script, md=markdown_text, md_notes=markdown_notes, tojson=_tojson,
        lines=html_lines, number=grouped_number,
    )
    return env


def grouped_number(value: int) -> str:
    """Return a count as the site's English text writes it: 31,030 (not 31030)."""
    return f"{value:,}"


def scholarly_json_ld_script(article: Article, page_url: str = "") -> Markup:
    """Return `scholarly_json_ld(article, page_url)|tojson_script`, written directly (see metadata.py)."""
    return Markup(scholarly_json_ld_text(article, page_url))


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


_DRAWS_LETTER_PAGES: dict[str, bool] = {}  # taxonomy.html's checksum -> whether it reads `letters` and `pager`


def _draws_letter_pages(env: jinja2.Environment) -> bool:
    """Whether the taxonomy.html in effect reads `letters` (the bar of letters, see `term_index`)
    and `pager` (a long letter's pages): one written before them would leave a split index's other
    letters, or pages, out of reach."""
    try:
        source = env.loader.get_source(env, "taxonomy.html")[0]  # type: ignore[union-attr]
    except jinja2.TemplateNotFound:
        return True
    checksum = hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()
    found = _DRAWS_LETTER_PAGES.get(checksum)
    if found is None:
        try:
            found = {"letters", "pager"} <= jinja2.meta.find_undeclared_variables(env.parse(source))
        except jinja2.TemplateSyntaxError:
            found = False  # reported when the template is used
        _DRAWS_LETTER_PAGES[checksum] = found
    return found


def template_references(config: SiteConfig) -> tuple[bool, bool]:
    """Return whether any template reads `digest` (digest-wide data) or a `.score` attribute.

    Read from the templates' syntax trees, so comments and plain text do not count. A template read
    for the first time is compiled from its tree into the compiled templates (`_BYTECODE`), so that
    loading it does not parse it again, and so that the processes a cold build forks find it
    compiled (each compiled the whole theme: 0.25 s).
    """
    env = make_environment(config)
    effective: set[str] = set()  # names found in a folder before: the loader never reads the later ones
    uses_digest = uses_score = False
    stored = _BYTECODE.folder / "references.pickle" if _BYTECODE.folder is not None else None
    on_disk = None  # what the file holds, when this process has not read or written it yet
    if stored is not None and stored not in _REFERENCES_FILES:
        on_disk = _read_references(stored)
        _REFERENCES.update(on_disk)
    known = len(_REFERENCES) if on_disk is None else len(on_disk)
    for folder in theme_dirs(config):
        for path in sorted(folder.rglob("*")):  # with those in sub-folders, which templates include
            if path.suffix not in TEMPLATE_SUFFIXES or not path.is_file():
                continue
            name = path.relative_to(folder).as_posix()
            source = path.read_bytes()
            checksum = hashlib.sha256(source).hexdigest()
            found = _REFERENCES.get(checksum)
            found_by_loader = name not in effective
            effective.add(name)
            if found is None:
                try:
                    found = _references_and_compile(env, name, source.decode("utf-8"), found_by_loader)
                except (jinja2.TemplateError, UnicodeDecodeError):
                    found = (False, False)  # reported when the template is used
                _REFERENCES[checksum] = found
            uses_digest, uses_score = uses_digest or found[0], uses_score or found[1]
    if stored is not None:
        if len(_REFERENCES) != known:
            save_pickle(stored, _REFERENCES)
        _REFERENCES_FILES.add(stored)
    return uses_digest, uses_score


def _references_and_compile(env: jinja2.Environment, name: str, source: str,
                            found_by_loader: bool) -> tuple[bool, bool]:
    """Return (reads `digest`, reads `.score`) of one template from its syntax tree, and when it is
    the one the loader finds under its name (`found_by_loader`), put its code in the compiled templates.

    Any `digest` it loads counts, even a local variable of that name: taking digest-wide data for
    read where it is not only costs speed. (Jinja's `find_undeclared_variables` tells them apart by
    generating the template's code, which took as long as parsing it.)"""
    if found_by_loader:
        # The text, name and file name the loader gives it are the compiled code's cache key: its
        # text is read as the loader reads it (text mode turns CRLF into LF), not taken from `source`.
        source, filename, _ = env.loader.get_source(env, name)  # type: ignore[union-attr]
        tree = env.parse(source, name, filename)
        bucket = _BYTECODE.get_bucket(env, name, filename, source)
        if bucket.code is None:
            bucket.code = env.compile(tree, name, filename)
            _BYTECODE.set_bucket(bucket)
    else:
        tree = env.parse(source)
    return (any(node.name == "digest" and node.ctx == "load" for node in tree.find_all(jinja2.nodes.Name)),
            any(node.attr == "score" for node in tree.find_all(jinja2.nodes.Getattr)))


# Template source checksum -> references: kept for the process (serve rebuilds) and, beside the
# compiled templates, for the next `digest build` (parsing the theme costs a new process 0.16 s).
_REFERENCES: dict[str, tuple[bool, bool]] = {}
_REFERENCES_FILES: set[Path] = set()  # files read or written by this process (all of _REFERENCES is in them)


def _read_references(path: Path) -> dict[str, tuple[bool, bool]]:
    return {k: v for k, v in load_pickle(path).items() if isinstance(k, str) and isinstance(v, tuple)
            and len(v) == 2 and all(type(x) is bool for x in v)}


def own_article_templates(config: SiteConfig) -> bool:
    """Return True when the digest's templates folder holds a template of its own (one the packaged
    theme lacks, or whose text differs): what its article pages give the search index may then
    depend on more than the article (see build._search_indexing)."""
    folders = theme_dirs(config)
    if len(folders) < 2:
        return False
    for path in folders[0].rglob("*"):
        if path.is_file() and path.suffix in TEMPLATE_SUFFIXES:
            packaged = THEME_DIR / path.relative_to(folders[0])
            if not packaged.is_file() or packaged.read_bytes() != path.read_bytes():
                return True
    return False


def theme_fingerprint(config: SiteConfig, digest: Digest, uses_digest: bool) -> str:
    """Fingerprint what every page depends on: templates, theme assets, configuration, this package.

    A template that mentions `digest` can show digest-wide data, so then the whole digest is included.
    """
    # Where the digest lives on disk does not change a page; what the theme files say does, and so
    # does the code that renders them (a new version of the tool renders every page again).
    portable = replace(config, root=Path("."), output_dir="", content_dir="", templates_dir="", static_dir="")
    parts: list[object] = [__package__, rendering_code_stamp(), repr(portable)]
    for folder in theme_dirs(config):
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.suffix in TEMPLATE_SUFFIXES + ASSET_SUFFIXES:
                parts.append((path.relative_to(folder).as_posix(), hashlib.sha256(path.read_bytes()).hexdigest()))
    if uses_digest:
        parts.append(repr(digest.articles))
    return fingerprint(*parts)


class Renderer:
    """Renders pages; holds the environment, the digest and the helpers every template may call."""

    def __init__(self, digest: Digest, config: SiteConfig, record_fingerprints: Any = None,
                 key_store: dict[str, tuple[str, ...]] | None = None):
        """`record_fingerprints` (the loader's) and `key_store` (kept in the cache folder by the
        build) spare a new process making again the keys of unchanged articles (see `article_keys`)."""
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
            "scholarly_json_ld_script": scholarly_json_ld_script,
            "updated_date": updated_date,
            "entry_id": self.entry_id,
        }
        self.record_fingerprints = record_fingerprints
        self.key_store = key_store
        self.citation_keys = (citation_keys_of(article_keys(digest.articles, record_fingerprints, key_store))
                              if record_fingerprints is not None else exports.citation_keys(digest.articles))
        uses_digest, self.templates_show_scores = template_references(config)
        self.theme_key = theme_fingerprint(config, digest, uses_digest)
        # Articles a listing page, as a taxonomy's index is split by: 0 (one page) for a digest's
        # own taxonomy.html that does not draw the bar of letters and the pager, which lead to the
        # other pages.
        self.index_per_page = config.per_page if _draws_letter_pages(self.env) else 0
        # Listing entries and feed entries, by (fingerprint, depth): kept across builds in the cache,
        # so an edit re-renders the listings that show the article without re-rendering every entry.
        self.fragments: dict[str, str] = {}
        self.new_fragments: dict[str, str] = {}
        self._item_keys: dict[str, str] = {}
        self._article_keys: dict[str, str] = {}
        self._similar_list_keys: dict[str, tuple[str, str]] = {}  # by article id: (with scores, as shown)
        self._depth_vars: dict[int, dict[str, Any]] = {}  # page helpers by folder depth (see _page_vars)
        self._listed: dict[int, dict[str, Markup]] = {}  # listing entries by depth and id (see _listed_entries)
        self._updated_dates: dict[str, str] = {}  # updated_date() by article id
        self._ids: tuple[str, ...] | None = None  # see `ids`
        self.rendered_in_workers = False  # set by build.render_into when it forked workers
        self._cites: dict[tuple[str, str], str] = {}
        # Article id -> (citation key, its cite.bib text) made by another process for this build (the
        # early writer's, see `build._EarlyFiles.handed_over`), taken while the key is the same.
        self.handed_bibtex: dict[str, tuple[str, str]] = {}
        self.plan_jobs: list = []
        # Entry kinds made for each depth, not once for all (see `placed`): a NUL in the settings,
        # or one an entry's template printed, which the markers could not be told from.
        self._placed_only: set[str] = set() if not _has_nul(config) else {"_item.html", "_entry.xml"}

    def use_keys(self, keys: dict[str, ArticleKeys]) -> None:
        """Take the articles' keys (`article_keys`): listing and feed entries are found by them."""
        self._article_keys = {i: k.content for i, k in keys.items()}
        self._item_keys = {i: k.listing for i, k in keys.items()}
        self._updated_dates.update((i, k.updated) for i, k in keys.items())

    def plan(self) -> "SitePlan":
        """Return every job of the site, remembering them for pages that list pages (the sitemap)."""
        plan = SitePlan(self)
        self.plan_jobs = plan.jobs
        return plan

    def ids(self) -> tuple[str, ...]:
        """Return the digest's article ids, in its order (read once per renderer)."""
        if self._ids is None:
            self._ids = tuple(self.digest.by_id)  # (in the articles' order) without reading the articles
        return self._ids

    def newest(self, articles: Iterable[Article]) -> list[Article]:
        """Return the articles a feed shows: newest by date, then id, at most `feed.limit` (ids are
        unique: no two keys tie, so the largest few are the first of the sorted list)."""
        return heapq.nlargest(self.config.feed_limit, articles, key=lambda a: (self.updated(a), a.id))

    def newest_ids(self, ids: Sequence[str]) -> list[str]:
        """Return `newest` of the articles `ids`, as ids: from the dates `use_keys` gave, without
        going through the articles (a topic of 8,000 articles, asked by each plan an edit of one
        of them makes)."""
        dates = self._updated_dates
        try:
            return [i for _, i in heapq.nlargest(self.config.feed_limit, zip(map(dates.__getitem__, ids), ids))]
        except KeyError:  # an article without a kept date
            by_id = self.digest.by_id
            return [a.id for a in self.newest([by_id[i] for i in ids])]

    def updated(self, article: Article) -> str:
        """Return `updated_date(article)`, made once per article (a topic's feed sorts all its articles)."""
        found = self._updated_dates.get(article.id)
        if found is None:
            found = self._updated_dates[article.id] = updated_date(article)
        return found

    def items(self, articles: Sequence[Article], depth: int, ids: Sequence[str] | None = None) -> list[Markup]:
        """Return listing entries for a page `depth` folders deep (`ids`: the articles' ids, when
        the caller has them: reading 10,000 articles' ids in the middle of a build costs 8-12 ms).

        A listing of the same articles, in the same order, as one this process made for the theme
        (the home page, a large topic's) in one of the last plans is that one with the entries of
        the articles whose listing key changed since made again (`_entry`; the memo says which):
        10,000 entries in well under 1 ms instead of 15-20 ms."""
        made, path = self._entries_made("_item.html", depth), "x/" * depth
        ids = tuple(map(_ID, articles)) if ids is None else tuple(ids)
        memo = _KEY_MEMO
        # The plan that gave these keys (whose memo logs which listing keys changed), if any.
        plan = memo.plans if self._item_keys and self._item_keys is memo.items else None
        memo_key = (self.theme_key, depth, ids)
        listed = _LISTINGS.get(memo_key)
        changed = memo.items_changed_since(listed[0]) if listed is not None and plan is not None else None
        if changed is not None:
            entries = listed[1][:]  # type: ignore[index]
            for article_id in changed:
                try:
                    position = ids.index(article_id)
                except ValueError:
                    continue
                entries[position] = self._entry("_item.html", articles[position], path, depth, made)
        else:
            entries = self._listed_entries(articles, ids, path, depth, made)
        # (A listing taken from the memo was checked when it was stored: its ids have keys.)
        if plan is not None and len(ids) >= LISTING_MEMO_MIN and \
                (changed is not None or all(map(self._item_keys.__contains__, ids))):
            if len(_LISTINGS) >= _LISTING_MEMO_MAX and memo_key not in _LISTINGS:
                _LISTINGS.pop(next(iter(_LISTINGS)))
            _LISTINGS[memo_key] = (plan, entries)
        return entries

    def _listed_entries(self, articles: Sequence[Article], ids: tuple[str, ...], path: str, depth: int,
                        made: dict[str, tuple[str, Markup]]) -> list[Markup]:
        """Return the listing entries of `articles` (whose ids are `ids`): looked up in C among those
        this renderer already listed at `depth`, else made or found by `_entry`. The digest's 31,000
        term pages list 227,000 entries at 10,000 articles: 0.44 s through `_entry`, one by one."""
        listed = self._listed.get(depth)
        if listed is None:
            listed = self._listed[depth] = {}
        try:
            return list(map(listed.__getitem__, ids))
        except KeyError:
            entries = [self._entry("_item.html", article, path, depth, made) for article in articles]
            listed.update(zip(ids, entries))
            return entries

    def home_items(self, number: int = 1) -> list[Markup]:
        """Return the listing entries of the home page's page `number`."""
        shown = page_ids(self.ids(), number, self.config.per_page)
        depth = urls.depth(urls.listing_page_path(urls.HOME, number))
        return self.items(_ArticlesOf(self.digest.by_id, shown), depth, shown)

    def term_items(self, term: Any, number: int = 1) -> list[Markup]:
        """Return the listing entries of page `number` of a term's page."""
        shown = page_ids(term.article_ids, number, self.config.per_page)
        depth = urls.depth(urls.listing_page_path(urls.term_path(term.taxonomy, term.slug), number))
        return self.items(_ArticlesOf(self.digest.by_id, shown), depth, shown)

    def entries(self, articles: Iterable[Article], path: str) -> list[Markup]:
        """Return Atom entries for the feed at `path`."""
        depth = urls.depth(path)
        made = self._entries_made("_entry.xml", depth)
        return [self._entry("_entry.xml", article, path, depth, made) for article in articles]

    def _entries_made(self, kind: str, depth: int) -> dict[str, tuple[str, Markup]]:
        """Return the entries of `kind` at `depth` this process made with this theme (see `_entry`),
        without those of articles gone."""
        made = _ENTRIES_MADE.get((self.theme_key, kind, depth))
        if made is None:
            if len(_ENTRIES_MADE) >= 8:  # another theme's or settings' entries
                _ENTRIES_MADE.clear()
            made = _ENTRIES_MADE[(self.theme_key, kind, depth)] = {}
        elif len(made) > 2 * len(self.digest.articles) + 100:
            made = _ENTRIES_MADE[(self.theme_key, kind, depth)] = {
                a.id: made[a.id] for a in self.digest.articles if a.id in made}
        return made

    def _entry(self, kind: str, article: Article, path: str, depth: int, made: dict[str, tuple[str, Markup]]
               ) -> Markup:
        """Return an article's listing entry (`_item.html`) or feed entry (`_entry.xml`) for a page
        at `path`, `depth` folders deep: rendered once for every depth (`placed`) and reused by every
        page and, through the cache, every build; the very object this process made before while the article's key is the
        same (a listing of 10,000 entries in a rebuild of serve or the daemon: 0.015 s, not 0.06 s)."""
        keys = self._item_keys if kind == "_item.html" else self._article_keys
        basis = keys.get(article.id)
        if basis is None:  # a renderer not given the articles' keys (`use_keys`)
            basis = listing_key(article) if kind == "_item.html" else fingerprint(repr(article))
        entry = made.get(article.id)
        if entry is not None and entry[0] == basis:
            return entry[1]
        found = None
        if kind not in self._placed_only:
            key = fragment_key(self.theme_key, kind, basis, ANYWHERE)
            found = self.fragments.get(key)
            if found is None:
                found = self.render(kind, "", article=article, _depth=ANYWHERE).content.decode("utf-8").strip("\n")
                if found.count("\x00") == found.count(_UP) + found.count(_HERE):
                    self.fragments[key] = self.new_fragments[key] = found
                else:  # a NUL the markers do not account for: made for each depth from now on
                    self._placed_only.add(kind)
                    found = None
        if found is not None:
            found = placed(found, depth)
        else:
            key = fragment_key(self.theme_key, kind, basis, depth)
            found = self.fragments.get(key)
            if found is None:
                found = self.render(kind, path, article=article).content.decode("utf-8").strip("\n")
                self.fragments[key] = self.new_fragments[key] = found
        markup = Markup(found)
        made[article.id] = (basis, markup)
        return markup

    def cite(self, article: Article, kind: str) -> str:
        """Return an article's citation file text (`cite.bib`, `cite.ris`, `cite.json`), made once.

        Only the last article's are kept: its page and its files are consecutive jobs, and keeping
        every article's would hold 75 MB at 10,000 articles for the whole build. (A cold build's
        BibTeX, 25 MB, comes made from the early writer: `handed_bibtex`.)"""
        cached = self._cites.get((article.id, kind))
        if cached is None:
            if self._cites and next(iter(self._cites))[0] != article.id:
                self._cites.clear()
            key = self.citation_keys[article.id]
            handed = self.handed_bibtex.get(article.id) if kind == "cite.bib" else None
            cached = handed[1] if handed is not None and handed[0] == key else exports.citation_file(article, kind, key)
            self._cites[(article.id, kind)] = cached
        return cached

    def entry_id(self, article: Article) -> str:
        """Return a feed entry's permanent id: its page URL when the site has an address, else a URN."""
        if self.config.base_url:
            return urls.absolute_url(self.config.base_url, urls.article_path(article.id))
        return f"urn:review-digest:{article.id}"

    def _page_vars(self, depth: int) -> dict[str, Any]:
        """Return the helpers for pages `depth` folders deep (links depend on nothing else), made once
        per depth and remembering the links they made: a page calls them dozens of times."""
        found = self._depth_vars.get(depth)
        if found is not None:
            return found
        digest, taxonomies, assets, base_url = self.digest, self.config.taxonomies, self.assets, self.config.base_url
        links: dict[str, str] = {}
        term_links: dict[tuple[str, str], str] = {}
        article_links: dict[str, str] = {}
        relative = urls.url_from_depth if depth != ANYWHERE else _marked_url

        def url(target: str) -> str:
            found = links.get(target)
            if found is None:
                found = links[target] = relative(depth, target)
            return found

        def term_url(taxonomy: str, name: str) -> str:
            found = term_links.get((taxonomy, name))
            if found is None:
                slug = digest.term_slug(taxonomy, name)
                found = url(urls.term_path(taxonomy, slug)) if slug and taxonomy in taxonomies else ""
                term_links[(taxonomy, name)] = found
            return found

        def article_url(article_id: str) -> str:
            found = article_links.get(article_id)
            if found is None:
                found = article_links[article_id] = url(urls.article_path(article_id))
            return found

        def asset(name: str) -> str:
            return url(assets[name][0])

        found = self._depth_vars[depth] = {
            **self.env.globals,  # what Jinja adds (range, dict, namespace...): see _Template.render_with
            **self.globals,
            "url": url,
            "abs_url": lambda target: urls.absolute_url(base_url, target),
            "article_url": article_url,
            "term_url": term_url,
            "asset": asset,
            "root": url(urls.HOME),
            "taxonomy_urls": {taxonomy: url(urls.taxonomy_path(taxonomy)) for taxonomy in taxonomies},
        }
        return found

    def render(self, template_name: str, path: str, _depth: int | None = None, **context: Any) -> Page:
        """Render one template to the page at `path` (`_depth` ANYWHERE: an entry for pages of any
        depth, see `placed`); template mistakes become DigestErrors."""
        try:
            template = self.env.get_template(template_name)
            variables = self._page_vars(urls.depth(path) if _depth is None else _depth).copy()
            variables["page_path"] = path
            variables.update(context)
            text = template.render_with(variables)  # (the environment's template class: _Template)
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


class _ArticlesOf(Sequence):
    """The articles of some ids, looked up when asked for: a large topic's listing after an edit
    needs only the few whose entries changed (looking up 10,000 cost 1-2 ms a page)."""

    def __init__(self, by_id: dict[str, Article], ids: Sequence[str]):
        self.by_id, self.ids = by_id, ids

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, position):  # type: ignore[override]
        if isinstance(position, slice):
            return [self.by_id[i] for i in self.ids[position]]
        return self.by_id[self.ids[position]]

    def __iter__(self) -> Iterator[Article]:
        return map(self.by_id.__getitem__, self.ids)


class PageJob(NamedTuple):
    """One output file to produce: `key` fingerprints everything the file shows, so an unchanged key
    means the bytes of the previous build can be reused without rendering. (A named tuple: a build
    makes one per file, 80,000 at 10,000 articles, and a frozen dataclass costs 10 times more.)"""

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


def value_key(value: object) -> str:
    """Return a short stable hash of a value made of strings, numbers, booleans, None, tuples and
    lists, from its marshal form (version 0: by value alone, no references or interning; 5 times
    cheaper than `fingerprint`'s text form for a digest's similar lists)."""
    try:
        data = marshal.dumps(value, 0)
    except ValueError:  # another type somewhere: its text form
        data = repr(value).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _hashed(start: Any, data: bytes) -> str:
    """Return the hex digest of `start` (a blake2b hasher, left as it is) followed by `data`."""
    hasher = start.copy()
    hasher.update(data)
    return hasher.hexdigest()


# An article's listing or feed entry is rendered once for pages of every depth (the home page, a
# topic's, its second page: 0, 2 and 4 folders deep), with markers where its relative links climb
# to the site's root, and placed at a depth by putting the climb in (`placed`): 10,000 entries
# rendered once, not three times. Articles hold no control characters (load.py removes them).
ANYWHERE = -1  # the depth such entries are rendered at
_UP = "\x00\x01"  # "../" once per folder
_HERE = "\x00\x02"  # the same, or "./" at the root: a link to the root itself


def _marked_url(depth: int, target: str) -> str:
    """`urls.url_from_depth` for an entry of any depth: the climb left as a marker."""
    quoted = urls.quote_path(target)
    return _UP + quoted if quoted else _HERE


def placed(entry: str, depth: int) -> str:
    """Return an entry rendered at ANYWHERE as it is on a page `depth` folders deep."""
    if "\x00" not in entry:
        return entry
    up = "../" * depth
    return entry.replace(_UP, up).replace(_HERE, up or "./")


def _has_nul(config: SiteConfig) -> bool:
    return any(isinstance(value, str) and "\x00" in value for value in vars(config).values())


@functools.lru_cache(maxsize=1 << 16)
def fragment_key(theme_key: str, kind: str, basis: str, depth: int) -> str:
    """Return the cache key of an article's listing or feed entry (asked for again by every build
    of `digest serve`, for every article: kept)."""
    return fingerprint(theme_key, kind, basis, depth)


def listing_fields(article: Article) -> tuple:
    """Return what a listing shows of an article (see `_item.html`): its key changes only with these.
    Plain values (the date as its fields), so that `value_key` can take them (see `listing_key`)."""
    published = article.published
    return (article.id, article.title, article.title_html, article.journal_abbrev, article.journal,
            (published.year, published.month, published.day, published.raw),
            article.volume, article.issue, article.pages,
            tuple(a.name for a in article.authors[:4]), len(article.authors), article.publication_types,
            article.is_retracted, article.has_erratum, article.has_expression_of_concern, bool(article.pmcid))


def listing_key(article: Article) -> str:
    """Return the key of what a listing shows of an article (`listing_fields`)."""
    return value_key(listing_fields(article))


def subject_fields(article: Article) -> tuple:
    """Return an article's MeSH terms (each with its qualifiers) and keywords as plain values, for
    the key the map's colours depend on: `value_key` of these costs 18 us an article where
    `fingerprint` of the terms themselves, which runs each dataclass's repr, cost 44 us."""
    return ([(m.descriptor, m.major, m.ui, [(q.name, q.major) for q in m.qualifiers] if m.qualifiers else ())
             for m in article.mesh_terms], article.keywords)


@dataclass(frozen=True)
class ArticleKeys:
    """Fingerprints of one article, made once per Article object (see `article_keys`)."""

    article: Article
    content: str  # everything the article holds
    listing: str  # what a listing entry shows (`listing_fields`)
    subjects: str  # its MeSH terms and keywords (the map colours by them)
    updated: str  # the date feeds sort by
    citation: str  # its citation key before duplicates get suffixes (`exports.citation_key`)
    linked: str  # what a similar-article link to it shows of it (`link.linked_fields`)


# The last call's articles and its answer (one tuple: read as one snapshot).
_LAST_KEYS: tuple[tuple, dict[str, ArticleKeys]] = ((), {})


def article_keys(articles: Iterable[Article], records: Any = None,
                 store: dict[str, tuple[str, ...]] | None = None) -> dict[str, ArticleKeys]:
    """Return each article's fingerprints by id.

    The content key comes from the loader's fingerprint of the article's records (`records`, a
    `load.Fingerprints`: file paths, content hashes, positions, id) when it has one, with a stamp
    of the code that reads them; else from the article's `repr` (0.6 s at 10,000 articles).
    The last call's keys of an article are kept while it is the same object (the loader hands back
    the same Article object for an unchanged record, so `digest serve` fingerprints only what a
    save changed), and
    by content key in `store` (kept in the cache folder by `digest build`) for the other keys.
    Many keys to make (a cold build) are made on two cores (see `_derived_keys`).
    """
    global _LAST_KEYS
    articles = tuple(articles)
    last_articles, last_keys = _LAST_KEYS
    replaced: list[int] | None = None
    if len(last_articles) == len(articles):
        replaced = replaced_positions(articles, last_articles)
        if not replaced:
            return last_keys  # the same articles as the last call (a build asks two or three times)
    if replaced is not None and len(replaced) <= len(articles) // 4 \
            and all(articles[n].id == last_articles[n].id for n in replaced):
        # A few articles are new objects with the same ids (an edit): the last answer with theirs.
        found = dict(last_keys)
        for n, keys in zip(replaced, _keys_of([articles[n] for n in replaced], records, store)):
            found[articles[n].id] = keys
    else:
        kept = [keys if (keys := last_keys.get(article.id)) is not None and keys.article is article else None
                for article in articles]  # this very object's keys, from the last call
        made = iter(_keys_of([article for article, keys in zip(articles, kept) if keys is None], records, store))
        found = {article.id: keys if keys is not None else next(made) for article, keys in zip(articles, kept)}
    _LAST_KEYS = (articles, found)
    return found


PARALLEL_KEYS = 2000  # articles whose keys must be made from nothing, from which a second core helps


def _keys_of(articles: list[Article], records: Any, store: dict[str, tuple[str, ...]] | None) -> list[ArticleKeys]:
    """Return the keys of `articles`, in order: the content key here, the others from `store` or made."""
    contents: list[str] = []
    records_key = None
    for article in articles:
        origin = records.get(article) if records is not None else None
        if origin is not None:
            if records_key is None:
                from generator.load import _code_stamp
                records_key = hashlib.blake2b(f"records\x1f{_code_stamp()}\x1f".encode(), digest_size=16)
            contents.append(_hashed(records_key, origin))
        else:
            contents.append("")
    derived: list[tuple[str, ...] | None] = []
    for content in contents:
        found = store.get(content) if store is not None and content else None
        derived.append(found if found is not None and len(found) == 5 else None)
    made = iter(_derived_keys([article for article, found in zip(articles, derived) if found is None]))
    keys = []
    for article, content, found in zip(articles, contents, derived):
        if found is None:
            found = next(made)
            if store is not None and content:
                store[content] = found
        keys.append(ArticleKeys(article, content or fingerprint(repr(article)), *found))
    return keys


def _derived_keys(articles: list[Article]) -> list[tuple[str, ...]]:
    """Return each article's keys but its content key, half of them made by a forked worker when
    there are many (a cold build at 10,000 articles: 0.65 s on one core, while the other is idle).
    The worker finds the articles where it inherits them: sent to it, they would be pickled."""
    global _DERIVING
    workers = idle_cores(None) if len(articles) >= PARALLEL_KEYS else 1
    if workers < 2:
        return _derived_share(articles)
    half = len(articles) // 2
    read_back_deferred(articles)  # (the worker's half too: this process renders them later)
    _DERIVING = articles
    try:
        mine, theirs = map_with_workers(_derived_range, [(0, half)], [(half, len(articles))], 1)
    finally:
        _DERIVING = []
    return mine + theirs


_DERIVING: list[Article] = []  # the articles `_derived_keys` shares out, by position


def _derived_range(bounds: tuple[int, int]) -> list[tuple[str, ...]]:
    return _derived_share(_DERIVING[bounds[0]:bounds[1]])


def _derived_share(articles: Sequence[Article]) -> list[tuple[str, ...]]:
    return [(listing_key(article), value_key(subject_fields(article)), updated_date(article),
             exports.citation_key(article), value_key(linked_fields(article))) for article in articles]


def citation_keys_of(keys: dict[str, ArticleKeys]) -> dict[str, str]:
    """Return `exports.citation_keys` from the articles' keys (their base keys are kept there).
    The last answer is kept: the early writer and the renderer ask for the same."""
    global _LAST_CITATION_KEYS
    bases = {article_id: k.citation for article_id, k in keys.items()}
    last_bases, last_keys, suffixed = _LAST_CITATION_KEYS
    if last_bases != bases:
        found = exports.updated_citation_keys(last_bases, last_keys, suffixed, bases)
        if found is None:
            found = exports.unique_citation_keys(bases)
            suffixed = {base for article_id, base in bases.items() if found[article_id] != base}
        _LAST_CITATION_KEYS = (bases, found, suffixed)
    return _LAST_CITATION_KEYS[1]


# The last call's base keys, keys, and the base keys that got suffixes.
_LAST_CITATION_KEYS: tuple[dict[str, str], dict[str, str], set[str]] = ({}, {}, set())


def _similar_keys(digest: Digest, with_score: bool, keys: dict[str, ArticleKeys],
                  memo: _KeyMemo | None = None) -> dict[str, tuple[str, str]]:
    """Return, per article, fingerprints of its similar-article list: with scores (what digest.json
    shows) and as its page shows it, made from the list's entry (`link.SimilarLists`) and the
    `linked` keys of the articles it links to, without making its link objects.

    Scores drift a little whenever any record changes (term weights are digest-wide), so pages that
    do not print them must not be rewritten for it. The last call's keys of an article's list are
    kept while its entry is the same object (the linker keeps it while the article and the articles
    it links to are the same objects): found by position when the articles are the same ids in the
    same order (an edit), else by id. Otherwise (a new process) from the plan's `memo`, which the
    cache folder keeps: an entry equal to the last plan's, none of whose targets changed, has the
    keys it had (made again for every article, they took 0.11 s of an edit at 10,000 articles)."""
    global _SIMILAR_LAST
    empty = (fingerprint([]), fingerprint([]))

    def linked(target: str) -> str:
        return keys[target].linked

    def made_for(links: tuple | None) -> tuple[str, str]:
        if links is None:
            return empty
        shown, scores = split_scores(links, linked)
        unscored = value_key(shown)
        scored = value_key((unscored, scores))
        return scored, scored if with_score else unscored

    ids = tuple(digest.by_id)  # the articles' ids, in their order
    lists = list(map(digest.similar.entries.get, ids))
    last_ids, last_lists, last_found, last_with_score = _SIMILAR_LAST
    if last_with_score != with_score:
        last_ids, last_lists, last_found = (), [], {}
    if last_ids == ids:
        found = dict(last_found)
        for n in replaced_positions(lists, last_lists):
            found[ids[n]] = made_for(lists[n])
    else:
        kept = dict(zip(last_ids, last_lists))
        if memo is None:
            found = {article_id: last_found[article_id] if article_id in kept and kept[article_id] is links
                     else made_for(links) for article_id, links in zip(ids, lists)}
        else:
            # A list shows what it links to (`linked`): one linking to an article whose content
            # changed is made again (the articles that link to one are its backlinks).
            backlinks = digest.backlinks
            dirty = {source for target in memo.changed_contents for source in backlinks.get(target, ())}
            found = {}
            for article_id, links in zip(ids, lists):
                if article_id in kept and kept[article_id] is links:
                    found[article_id] = last_found[article_id]
                    continue
                name, inputs = ("similar", article_id), (links,)
                made = memo.get(name, inputs) if article_id not in dirty else None
                found[article_id] = made or memo.put(name, inputs, made_for(links))
    _SIMILAR_LAST = (ids, lists, found, with_score)
    return found


# The last call's article ids, their similar-list entries, its answer, and whether with scores.
_SIMILAR_LAST: tuple[tuple[str, ...], list, dict[str, tuple[str, str]], bool | None] = ((), [], {}, None)


class _KeyMemo:
    """Jobs and fingerprints of the last plan, reused by the next plan in this process (`digest
    serve`) when what they were made from is unchanged: the same theme and settings, the same
    articles in the listing, none of whose keys changed since. A plan of 1,000 articles makes
    14,000 keys; an edit changes a few dozen. Entries the last plan did not use are dropped, so
    every entry was checked against the keys of the plan just before.

    `digest build` keeps it in the cache folder (`stored`, `restore`) in a compact form: an article's
    entry as its page and citation keys, a term's as its page and feed keys; the jobs are made again
    from those (whole pickled jobs cost more to read than to make: 0.6 s at 10,000 articles)."""

    def __init__(self) -> None:
        self.owner: tuple = ()
        self.items: dict[str, str] = {}  # listing key by article id, in the last plan
        self.contents: dict[str, str] = {}  # content key by article id, in the last plan
        self.entries: dict[tuple, tuple] = {}
        self.changed_items: set[str] = set()
        self.changed_contents: set[str] = set()
        self.used: dict[tuple, tuple] = {}
        self.kept: list[list[tuple]] = []  # segments of names kept whole by this plan (see `keep`)
        self.plans = 0  # counts `start`
        self.item_changes: list[set[str]] = []  # `changed_items` of the last plans, the newest last
        self.owner_print = ""  # set by `load`: the fingerprint of the owner of the stored entries
        self.generation = 0  # counts the plans and the other changes of `entries`
        # What changed in `entries` since the last `snapshot` (see `changes`): the names put, and
        # the names dropped; None when that is not known (every entry is then compared).
        self.put_names: dict[tuple, None] | None = None
        self.gone_names: list[tuple] = []
        self._hashed: tuple[tuple, HashedInputs] | None = None  # the last inputs `get` hashed, and their key

    def start(self, owner: tuple, items: dict[str, str], contents: dict[str, str]) -> None:
        if owner != self.owner and not (self.owner_print and self.owner_print == _owner_print(owner)):
            self.entries = {}
            self.generation += 1
            self.put_names = None
        self.owner_print = ""
        self.changed_items = {i for i, key in items.items() if self.items.get(i) != key}
        self.plans += 1
        self.item_changes = [*self.item_changes[-(_ITEM_CHANGES_KEPT - 1):], self.changed_items]
        self.changed_contents = {i for i, key in contents.items() if self.contents.get(i) != key}
        self.owner, self.items, self.contents, self.used = owner, items, contents, {}
        self.kept = []

    def items_changed_since(self, plan: int) -> set[str] | None:
        """Return the ids whose listing key changed since the plan counted `plan` (see `plans`),
        None when that is longer ago than the memo remembers."""
        back = self.plans - plan
        if back < 0 or back > len(self.item_changes):
            return None
        return set().union(*self.item_changes[len(self.item_changes) - back:])

    def keep(self, names: list[tuple]) -> None:
        """Keep the entries `names` for the next plan, as `get` would, without looking each up: a
        segment the last plan made in this memo (see `_ArticleSegment`, `_TermSegment`), every
        name of one group (`_group`). The names `get` or `put` after this stay in it."""
        if names:
            self.kept.append(names)

    def finish(self) -> None:
        """Make the entries this plan used the next plan's. When the segments kept whole and the
        other names used cover every entry, the dict is updated in place (42,000 entries at 10,000
        articles, 0.03 s an edit to copy)."""
        used, entries = self.used, self.entries
        if self.kept:
            groups = {_group(names[0]) for names in self.kept}
            covered = sum(map(len, self.kept)) + sum(1 for name in used if name in entries and _group(name) not in groups)
            if covered == len(entries):
                entries.update(used)
            else:
                entries, last = {}, self.entries
                for names in self.kept:
                    entries.update((name, last[name]) for name in names if name in last)
                entries.update(used)
            used = entries
        if self.put_names is not None and used is not self.entries:
            self.gone_names.extend(name for name in self.entries if name not in used)
        self.entries, self.used, self.kept = used, {}, []
        self.generation += 1
        self._hashed = None

    def get(self, name: tuple, inputs: tuple, listed: Sequence[str] = (), contents: Sequence[str] = ()) -> Any:
        """Return what was made for `name` from equal `inputs` last time (None if nothing), unless
        an article in `listed` changed its listing key or one in `contents` its content key."""
        entry = self.entries.get(name)
        if entry is None:
            return None
        known = entry[0]
        if known.__class__ is HashedInputs:
            if known.inputs is None or known.inputs != inputs:  # (by identity first: the last plan's objects)
                key = value_key(inputs)
                if known.key != key:
                    hashed = HashedInputs(key)
                    hashed.inputs = inputs
                    self._hashed = (inputs, hashed)  # what `put` keeps of these inputs, hashed once
                    return None
                known.inputs = inputs
            self._hashed = (inputs, known)
        elif known != inputs:
            return None
        if not self.changed_items.isdisjoint(listed) or not self.changed_contents.isdisjoint(contents):
            return None
        self.used[name] = entry
        return entry[1]

    def put(self, name: tuple, inputs: tuple, made: Any) -> Any:
        hashed = self._hashed
        # Inputs `get` just hashed are kept as that key, not hashed again when the memo is saved.
        self.used[name] = (hashed[1] if hashed is not None and hashed[0] is inputs else inputs, made)
        if self.put_names is not None:
            self.put_names[name] = None
        return made

    def last(self, name: tuple) -> Any:
        """Return what the last plan made for `name` (None if nothing), whatever `get` would say now."""
        entry = self.entries.get(name)
        return entry[1] if entry is not None else None

    def stored(self) -> dict[str, Any]:
        """Return the entries of the last plan as the cache folder keeps them (see `restore`)."""
        return {"owner": _owner_print(self.owner), "items": self.items, "contents": self.contents,
                "entries": {name: _compact_entry(name, entry) for name, entry in self.entries.items()
                            if name[0] != "sitemap"}}

    def snapshot(self) -> tuple:
        """Return what `changes` compares with: the last plan's dicts (each plan makes new `items`
        and `contents`; `entries` may be updated in place, so a copy), and from now on, the names
        of the entries put and dropped."""
        self.put_names, self.gone_names = {}, []
        return (_owner_print(self.owner) if self.owner else self.owner_print, self.items, self.contents,
                dict(self.entries), self.put_names)

    def changes(self, snapshot: tuple) -> dict[str, Any]:
        """Return what changed since `snapshot` as a journal frame (see `PlanMemoFile`). An entry the
        plan reused is the very tuple it was before; a new one is a new tuple. Only the entries put
        since are looked at while the memo knows them (comparing all 42,000 entries at 10,000
        articles took 0.04 s an edit)."""
        owner, items, contents, entries, put_names = snapshot
        if put_names is not None and put_names is self.put_names:
            names: Iterable[tuple] = [name for name in put_names if name in self.entries]
            gone = [name for name in self.gone_names if name not in self.entries]
        else:
            names, gone = self.entries, [name for name in entries if name not in self.entries]
        current = self.entries
        return {"owner": owner,
                "items": {i: key for i, key in self.items.items() if items.get(i) != key},
                "contents": {i: key for i, key in self.contents.items() if contents.get(i) != key},
                "gone_ids": [i for i in items if i not in self.items],
                "entries": {name: _compact_entry(name, current[name]) for name in names
                            if entries.get(name) is not current[name] and name[0] != "sitemap"},
                "gone": gone}

    def restore(self, stored: dict[str, Any]) -> None:
        """Take the entries `stored` gave, unless this process has its own (`digest serve`). They are
        used only by a plan of the same owner, whose theme key includes the rendering code's stamp."""
        if self.entries or self.owner:
            return
        try:
            entries = {}
            for name, (inputs, made) in stored["entries"].items():
                if name[0] == "article":
                    made = article_jobs(name[1], *made)
                elif name[0] == "term":
                    made = term_jobs(name[1], made[0], name[2], *made[1:])  # (index, place, page keys, feed key)
                entries[name] = (inputs, made)
            owner_print, items, contents = stored["owner"], dict(stored["items"]), dict(stored["contents"])
        except Exception:  # noqa: BLE001 - a missing, stale or corrupt cache only costs making keys
            return
        self.owner_print, self.items, self.contents, self.entries = owner_print, items, contents, entries
        self.generation += 1
        self.put_names = None


_ITEM_CHANGES_KEPT = 32  # plans whose changed listing keys the memo remembers (a listing older is made again)


def _group(name: tuple) -> tuple:
    """The group of a memo entry's name: a taxonomy's terms, the articles, or itself."""
    return name[:2] if name[0] == "term" else name[:1]


def _owner_print(owner: tuple) -> str:
    return fingerprint(repr(owner)) if owner else ""


HASHED_ABOVE = 64  # inputs holding a longer sequence are kept as their key


class HashedInputs:
    """What the cache folder keeps of large inputs (the ids a big topic lists, every citation key):
    their `value_key`. A plan compares the key of its inputs with it, and keeps the inputs it found
    equal: the next plan of the process (a session's) compares with those first, without hashing
    them again (31,000 authors, every citation key: 0.03 s an edit of the daemon)."""

    __slots__ = ("key", "inputs")

    def __init__(self, key: str):
        self.key = key
        self.inputs: tuple | None = None  # inputs found to have this key (not kept in the cache folder)

    def __reduce__(self):
        return HashedInputs, (self.key,)


def _compact_entry(name: tuple, entry: tuple) -> tuple:
    """An entry as the cache folder keeps it: an article's or term's jobs as their keys, and large
    inputs as their key (a title edit changes the entries of the topics listing the article, and
    "Humans" lists 9,000 ids)."""
    inputs, made = entry
    if name[0] == "article":
        made = tuple(job.key for job in made if job.kind in ("article", "cite.bib"))
    elif name[0] == "term":  # its index among the taxonomy's terms, its place, its pages' keys, its feed's
        made = (made[0].args[1], made[0].args[3], tuple(job.key for job in made if job.kind == "term"),
                *(job.key for job in made if job.kind == "topic_feed"))
    if inputs.__class__ is tuple and any(len(part) > HASHED_ABOVE for part in inputs
                                         if isinstance(part, (tuple, list, dict))):
        inputs = HashedInputs(value_key(inputs))
    return inputs, made


def _apply_changes(stored: dict[str, Any], frame: dict[str, Any]) -> None:
    """Bring a stored memo forward by one journal frame (`_KeyMemo.changes`)."""
    if frame["owner"] != stored["owner"]:
        raise ValueError("a frame of another owner")
    items, contents, entries = stored["items"], stored["contents"], stored["entries"]
    items.update(frame["items"])
    contents.update(frame["contents"])
    for article_id in frame["gone_ids"]:
        items.pop(article_id, None)
        contents.pop(article_id, None)
    entries.update(frame["entries"])
    for name in frame["gone"]:
        entries.pop(name, None)


# The modules whose code decides a page's bytes, beyond the templates.
RENDERING_MODULES = ("render.py", "urls.py", "pagination.py", "term_index.py", "exports.py", "metadata.py",
                     "markup.py", "graph.py", "model.py")


@functools.lru_cache(maxsize=1)
def rendering_code_stamp() -> str:
    from generator import __version__
    from generator.cache_files import files_stamp

    folder = Path(__file__).parent
    return f"{__version__}:{files_stamp(folder / name for name in RENDERING_MODULES)}"


_KEY_MEMO = _KeyMemo()

# Listings of many entries this process made (see Renderer.items): (theme key, depth, article ids)
# -> (each article's listing key, the entries); the oldest goes first when there are too many.
_LISTINGS: dict[tuple, tuple[list[str], list[Markup]]] = {}
LISTING_MEMO_MIN = 200  # entries: smaller listings cost little to make again
_LISTING_MEMO_MAX = 64
_ID = operator.attrgetter("id")

# Listing and feed entries this process made (see Renderer._entries_of): (theme key, template,
# depth) -> {article id: (its listing or content key, the entry)}.
_ENTRIES_MADE: dict[tuple[str, str, int], dict[str, tuple[str, Markup]]] = {}


class PlanMemoFile:
    """The plan's memo (see _KeyMemo) in the cache folder, for the next `digest build`: a base file
    and a journal of what each plan changed. An edit changes a few dozen of 40,000 entries at
    10,000 articles: appending them (6-12 KB) replaces writing 6 MB again. The base is written anew
    when the journal holds more than a quarter as many entries, the owner (theme, settings) changed,
    or a frame was cut short or damaged (frames after it are ignored: the memo is then that of an
    earlier plan, which is as true: each entry says which keys its inputs gave).

    A frame holds changes since the state before it, so it names the base it follows (a generation
    drawn when the base is written) and its place after it: a frame left from an older base (a
    build killed between writing a base and removing the journal) or written by a build that
    started from the same state as another (two builds at once) is not applied."""

    def __init__(self, path: Path):
        self.files = Journal(path)
        self.snapshot: tuple | None = None  # what the files hold, as `_KeyMemo.snapshot` gives it
        self.generation, self.sequence = "", 0  # the base's generation, and the frames that follow it

    @property
    def damaged(self) -> bool:
        return self.files.damaged

    def load(self, saves: bool = True) -> None:
        """Start this process's plans from the files. `saves`: whether this process will `save`,
        for which the memo then tracks what its plan changes (a session's would grow with every
        edit, for nothing)."""
        files = self.files
        stored, frames = files.read()
        try:
            files.base_entries = len(stored["entries"])
            self.generation = stored["generation"]
            for frame in frames:
                if frame["generation"] != self.generation or frame["sequence"] != self.sequence + 1:
                    files.damaged = True
                    break
                _apply_changes(stored, frame)
                self.sequence += 1
                files.journal_entries += len(frame["entries"]) + len(frame["gone"])
        except Exception:  # noqa: BLE001 - a missing, stale or corrupt cache only costs making keys
            stored, files.damaged = {}, True  # perhaps half brought forward: not used at all
        if stored and not _KEY_MEMO.entries and not _KEY_MEMO.owner:
            _KEY_MEMO.restore(stored)
            if _KEY_MEMO.entries and saves:
                self.snapshot = _KEY_MEMO.snapshot()

    def save(self) -> None:
        """Keep what the last plan made (true whether or not the build then succeeds)."""
        memo, snapshot, files = _KEY_MEMO, self.snapshot, self.files
        if snapshot is None or snapshot[0] != _owner_print(memo.owner) or files.full(0, 1000):
            stored = memo.stored()
            self.generation, self.sequence = os.urandom(8).hex(), 0
            stored["generation"] = self.generation
            files.write_base(stored, len(stored["entries"]))
        else:
            frame = memo.changes(snapshot)
            if frame["items"] or frame["contents"] or frame["gone_ids"] or frame["entries"] or frame["gone"]:
                self.sequence += 1
                files.append({**frame, "generation": self.generation, "sequence": self.sequence},
                             len(frame["entries"]) + len(frame["gone"]))
        self.snapshot = memo.snapshot()


class SitePlan:
    """Every job of a build, with the fingerprints that let unchanged pages be skipped."""

    def __init__(self, renderer: "Renderer"):
        self.renderer = renderer
        digest, config = renderer.digest, renderer.config
        self.theme_key = renderer.theme_key
        self.keys = article_keys(digest.articles, renderer.record_fingerprints, renderer.key_store)
        renderer.use_keys(self.keys)
        self.article_keys, self.item_keys = renderer._article_keys, renderer._item_keys
        self.memo = memo = _KEY_MEMO
        memo.start((self.theme_key, config, renderer.templates_show_scores), self.item_keys, self.article_keys)
        self._segments: list[_TermSegment | _HtmlPaths | _ArticleSegment] = []
        try:
            self._add_jobs(digest, config)
            for segment in self._segments:  # valid for the next plan, if it follows this one
                segment.stamp = memo.generation + 1
        finally:
            memo.finish()

    def _add_jobs(self, digest: "Digest", config: SiteConfig) -> None:
        renderer, memo = self.renderer, self.memo
        self.jobs: list[PageJob] = []
        add = self.add
        for name, (path, data) in sorted(renderer.assets.items()):
            add(path, "asset", fingerprint(path, hashlib.sha256(data).hexdigest()), (name,))
        home = list(renderer.ids())  # read once per renderer: the home page asks too
        keys = memo.get(("home",), (home,), home) or memo.put(
            ("home",), (home,), listing_page_keys(self.theme_key, ("home",), home, self.item_keys, config.per_page))
        for number, key in enumerate(keys, 1):
            add(urls.output_file(urls.listing_page_path(urls.HOME, number)), "home", key, (number,))
        similar_keys = renderer._similar_list_keys = _similar_keys(digest, renderer.templates_show_scores, self.keys,
                                                                   memo)
        jobs = self.jobs
        # An article's five jobs, and a term's page and feed, are reused as they are while what
        # their keys are made from is unchanged (see _KeyMemo): most of a rebuild's plan.
        jobs.extend(itertools.chain.from_iterable(self._articles_jobs(digest, similar_keys)))
        # Whether every taxonomy's terms are those of the last plan (a new process cannot tell by
        # their identity, as `_terms_jobs` does in a session).
        same_terms = False
        if digest.terms_key:
            same_terms = memo.get(("terms",), (digest.terms_key,)) is not None
            if not same_terms:
                memo.put(("terms",), (digest.terms_key,), True)
        for taxonomy, terms in digest.taxonomies.items():
            # A taxonomy's index shows each term's name, slug and count: the last list of them while
            # the linker hands back the same terms (31,000 authors at 10,000 articles).
            last = _SHOWN_TERMS.get(taxonomy)
            if last is not None and last[0] is terms:
                shown = last[1]
            else:
                shown = [(t.name, t.index_name, t.slug, len(t.article_ids)) for t in terms]
                _SHOWN_TERMS[taxonomy] = (terms, shown)
            pages = memo.get(("taxonomy", taxonomy), (shown,))
            places = None
            if pages is None:  # the index changed: where it lists each term may have too
                pages = memo.put(("taxonomy", taxonomy), (shown,), self._index_keys(taxonomy, terms))
                places = term_places_of(digest, taxonomy, renderer.index_per_page)
            for path, letter, number, key in pages:
                add(urls.output_file(path), "taxonomy", key, (taxonomy, letter, number))
            jobs.extend(itertools.chain.from_iterable(self._terms_jobs(taxonomy, terms, places, same_terms)))
        add(urls.output_file(urls.MAP), "map", fingerprint(self.theme_key, self.map_inputs()))
        if config.search:
            merged = tuple(merged_bundles(self.article_keys))  # the search index's other shards
            add(urls.output_file(urls.SEARCH), "search", fingerprint(self.theme_key, merged), merged)
        add(urls.NOT_FOUND, "404", self.theme_key)
        add(urls.FEED, "feed", memo.get(("feed",), (home,), contents=home) or memo.put(
            ("feed",), (home,), self.feed_key("", home)))
        every_id = list(self.article_keys)
        inputs = (renderer.citation_keys, similar_keys)
        found = memo.get(("exports",), inputs, contents=every_id)
        if found is None:
            records = records_key(self.article_keys, renderer.citation_keys)
            found = memo.put(("exports",), inputs, (
                value_key((self.theme_key, records, tuple(similar_keys),
                           tuple(scored for scored, _ in similar_keys.values()))),
                exports_key(self.theme_key, records)))
        add(urls.DIGEST_JSON, "digest_json", found[0])
        for name in ("digest.bib", "digest.ris", "digest.csl.json"):
            add(name, name, found[1])
        if config.base_url:
            html_paths = self._html_paths(home, tuple(digest.taxonomies.values()))
            key = memo.get(("sitemap",), (html_paths,)) or memo.put(
                ("sitemap",), (html_paths,), value_key((self.theme_key, sorted(html_paths))))
            add(urls.SITEMAP, "sitemap", key)
        add("robots.txt", "robots", self.theme_key)
        if config.cname:
            add("CNAME", "cname", fingerprint(config.cname))
        add(".nojekyll", "nojekyll", "")

    def _articles_jobs(self, digest: "Digest", similar_keys: dict[str, tuple[str, str]]) -> list[tuple[PageJob, ...]]:
        """Return each article's jobs, in the digest's order, made from its content key, similar-list
        key, backlinks and citation key (its inputs) unless the memo has them.

        When the articles are those the last plan of this process went through, in the same order,
        and the memo is the one it left, only the articles with an input that is not the very object
        it was, or a backlink whose listing key changed, are looked at: the others' entries are the
        last plan's, as `_KeyMemo.get` would find them (10,000 lookups an edit, 0.04 s, otherwise)."""
        global _ARTICLE_SEGMENT
        memo, ids = self.memo, self.renderer.ids()
        columns = (list(map(self.article_keys.__getitem__, ids)),
                   list(map(operator.itemgetter(1), map(similar_keys.__getitem__, ids))),
                   list(map(digest.backlinks.get, ids, itertools.repeat(()))),
                   list(map(self.renderer.citation_keys.__getitem__, ids)))
        kept = _ARTICLE_SEGMENT
        positions: Iterable[int] | None = None
        if kept is not None and kept.ids == ids and kept.stamp == memo.generation:
            memo.keep(kept.names)
            changed = memo.changed_items
            found = {n for new, old in zip(columns, kept.columns) for n in replaced_positions(new, old)}
            if changed:
                found.update(n for n, linked in enumerate(columns[2]) if linked and not changed.isdisjoint(linked))
            positions = sorted(found)
        if positions is None:
            positions = range(len(ids))
            kept = _ARTICLE_SEGMENT = _ArticleSegment(ids, columns, [("article", i) for i in ids], [()] * len(ids))
        made, names = kept.made, kept.names  # type: ignore[union-attr]
        for n in positions:
            inputs = (columns[0][n], columns[1][n], columns[2][n], columns[3][n])
            made[n] = memo.get(names[n], inputs, inputs[2]) or memo.put(names[n], inputs,
                                                                        self._article_jobs(ids[n], inputs))
        kept.columns = columns  # type: ignore[union-attr]
        self._segments.append(kept)  # type: ignore[arg-type]
        return made

    def _terms_jobs(self, taxonomy: str, terms: Sequence[Any], places: dict[str, tuple[str, str]] | None,
                    same_terms: bool = False) -> list[tuple[PageJob, ...]]:
        """Return the jobs of a taxonomy's terms, each term's page and (a topic's) feed.

        A term's jobs are reused while its index, name and articles are the same and none of them
        changed its listing key (or, with a feed, its content key), as `_KeyMemo.get` decides. When
        the terms are the very list the last plan of this process went through (the linker keeps it
        while no article files under other names), only the terms of the articles whose keys changed
        are looked at: 31,000 author pages at 10,000 articles, 0.09 s a rebuild otherwise.

        A term's page links back to its place in the index, which its jobs carry. `places` are the
        places in an index that changed (None: the index is the last plan's, so is every place, and
        a term's jobs made again take theirs from its last ones): sorting 31,000 authors to find
        them took 0.15 s of an edit that changed no name.

        A new process, which has no segment, goes the same way when the terms are the last plan's
        (`same_terms`: the linker's key of them is) and so is the index: each term's entry is the
        last plan's, made from what it is made from now, unless one of its articles changed (a
        lookup of each of them took 0.08-0.13 s of an edit at 10,000 articles)."""
        memo, feeds = self.memo, taxonomy == "topics"
        changed = memo.changed_items | memo.changed_contents if feeds else memo.changed_items
        index_per_page = self.renderer.index_per_page
        kept = _TERM_SEGMENTS.get(taxonomy)
        positions: Sequence[int] | None = None
        # (The same terms in an index split alike: every term in the same place in it.)
        if kept is not None and kept.terms is terms and kept.stamp == memo.generation \
                and kept.index_per_page == index_per_page:
            memo.keep(kept.names)
            if kept.by_article is None:
                kept.by_article = _positions_by_article(terms)
            positions = sorted({p for i in changed for p in kept.by_article.get(i, ())})
            made = kept.made
        elif same_terms and places is None:
            names = [("term", taxonomy, term.slug) for term in terms]
            found = list(map(memo.entries.get, names))
            if None not in found:
                memo.keep(names)
                made = [entry[1] for entry in found]
                kept = _TermSegment(terms, names, made, index_per_page)
                _TERM_SEGMENTS[taxonomy] = kept
                positions = [n for n, term in enumerate(terms) if not changed.isdisjoint(term.article_ids)]
        if positions is None:
            positions = range(len(terms))
            made = [()] * len(terms)
            kept = _TermSegment(terms, [("term", taxonomy, term.slug) for term in terms], made, index_per_page)
            _TERM_SEGMENTS[taxonomy] = kept
        for index in positions:
            term = terms[index]
            ids = term.article_ids
            inputs = (index, term.name, ids)
            name = kept.names[index]
            found = memo.get(name, inputs, ids, ids if feeds else ())
            if found is not None and (places is None or found[0].args[3] == places[term.slug]):
                made[index] = found
                continue
            if places is not None:
                place = places[term.slug]
            else:
                last = memo.last(name)
                place = last[0].args[3] if last else \
                    term_places_of(self.renderer.digest, taxonomy, index_per_page)[term.slug]
            made[index] = memo.put(name, inputs, self._term_jobs(taxonomy, index, term, place, feeds))
        self._segments.append(kept)
        return made

    def _index_keys(self, taxonomy: str, terms: Sequence[Any]) -> tuple[tuple[str, str, int, str], ...]:
        """Return the path, letter, number among its letter's pages and key of each page of a
        taxonomy's index. A page shows its terms, the bar of letters, the taxonomy's size and where
        it stands among its letter's pages: a new author changes the page of its letter (and, as the
        count goes up, the other letters' pages)."""
        pages = index_pages_of(self.renderer.digest, taxonomy, self.renderer.index_per_page)
        letters = [(page.letter, page.path) for page in pages]
        return tuple((page.path, page.letter, page.number, fingerprint(
            self.theme_key, taxonomy, page.letter, page.number, page.count, page.letter_total, letters, len(terms),
            [(t.name, t.index_name, t.slug, len(t.article_ids)) for t in page.terms],
            [section.letter for section in page.sections])) for page in pages)

    def _html_paths(self, home: list[str], terms: tuple) -> list[str]:
        """Return the paths of the jobs so far that are HTML pages (the sitemap lists them): the last
        plan's when this one follows it with the same articles and the very same terms (80,000
        jobs looked through otherwise)."""
        global _HTML_PATHS
        last = _HTML_PATHS
        if last is not None and last.stamp == self.memo.generation and last.home == home \
                and len(last.terms) == len(terms) and all(map(operator.is_, last.terms, terms)):
            paths = last.paths
        else:
            paths = [path for path in map(_PATH, self.jobs) if path.endswith("index.html")]
            last = _HTML_PATHS = _HtmlPaths(home, terms, paths)
        self._segments.append(last)
        return paths

    def add(self, path: str, kind: str, key: str, args: tuple = ()) -> None:
        self.jobs.append(PageJob(path, kind, key, args))

    def _article_jobs(self, article_id: str, inputs: tuple) -> tuple[PageJob, ...]:
        """Return an article's page, Markdown page and citation files; `inputs` are its content key,
        similar list key, backlinks and citation key."""
        content, similar, linked, citation = inputs
        key = fingerprint(self.theme_key, content, similar, [self.item_keys[i] for i in linked], citation)
        return article_jobs(article_id, key, fingerprint(content, citation))

    def _term_jobs(self, taxonomy: str, index: int, term: Any, place: tuple[str, str], feed: bool
                   ) -> tuple[PageJob, ...]:
        """Return a term's pages (which link to its `place` in the index) and, for a topic, its feed."""
        page_keys = listing_page_keys(self.theme_key, (taxonomy, term.name, place), term.article_ids,
                                      self.item_keys, self.renderer.config.per_page)
        if not feed:
            return term_jobs(taxonomy, index, term.slug, place, page_keys)
        return term_jobs(taxonomy, index, term.slug, place, page_keys, self.feed_key(term.name, term.article_ids))

    def feed_key(self, title: str, ids: Sequence[str]) -> str:
        """Fingerprint a feed by the articles it shows."""
        keys = self.keys
        return fingerprint(self.theme_key, title, [keys[i].content for i in self.renderer.newest_ids(ids)])

    def map_inputs(self) -> str:
        """Fingerprint what the map shows: the articles it draws (their listing fields) and the lines
        between them, every article's subject terms (they pick the colours) and the years. A title
        edit to an article the map does not draw leaves it as it is."""
        digest = self.renderer.digest
        chosen, edges = map_graph(digest)
        return value_key((chosen, edges, [self.item_keys[i] for i in chosen],
                          [k.subjects for k in self.keys.values()], articles_per_year(digest)))


_SHOWN_TERMS: dict[str, tuple[tuple, list[tuple[str, str, str, int]]]] = {}  # taxonomy -> (its terms, what its index shows)
_INDEX_PAGES: dict[str, tuple[tuple, int, list[IndexPage]]] = {}  # taxonomy -> (its terms, per_page, its index's pages)
_TERM_PLACES: dict[str, tuple[list[IndexPage], dict[str, tuple[str, str]]]] = {}  # taxonomy -> (its pages, `term_places`)


def index_pages_of(digest: Digest, taxonomy: str, per_page: int) -> list[IndexPage]:
    """Return the pages of a taxonomy's index (`term_index.index_pages`): the last ones while the
    linker hands back the same terms (sorting 31,000 authors once, not once per letter page)."""
    terms = digest.taxonomies[taxonomy]
    last = _INDEX_PAGES.get(taxonomy)
    if last is not None and last[0] is terms and last[1] == per_page:
        return last[2]
    pages = index_pages(taxonomy, terms, per_page)
    _INDEX_PAGES[taxonomy] = (terms, per_page, pages)
    return pages


def term_places_of(digest: Digest, taxonomy: str, per_page: int) -> dict[str, tuple[str, str]]:
    """Return where a taxonomy's index lists each of its terms (`term_index.term_places`), made
    once for the same index pages."""
    pages = index_pages_of(digest, taxonomy, per_page)
    last = _TERM_PLACES.get(taxonomy)
    if last is not None and last[0] is pages:
        return last[1]
    places = term_places(pages)
    _TERM_PLACES[taxonomy] = (pages, places)
    return places


def index_place_url(place: tuple[str, str], page_path: str) -> str:
    """Return the link from the page at `page_path` to a term's `place` in its index."""
    path, anchor = place
    return urls.relative_url(page_path, path) + (f"#{anchor}" if anchor else "")


@dataclass
class _TermSegment:
    """A taxonomy's terms as the last plan of this process went through them (see
    `SitePlan._terms_jobs`): their memo entries' names and jobs, by position."""

    terms: Sequence[Any]  # the digest's list of them (compared by identity)
    names: list[tuple]
    made: list[tuple[PageJob, ...]]
    index_per_page: int  # how the index was split (`Renderer.index_per_page`): where each term is in it
    stamp: int = -1  # the memo generation this is true in
    by_article: dict[str, list[int]] | None = None  # article id -> positions of its terms, once asked


_TERM_SEGMENTS: dict[str, _TermSegment] = {}


@dataclass
class _ArticleSegment:
    """The articles as the last plan of this process went through them (see
    `SitePlan._articles_jobs`): their inputs as columns, memo entries' names and jobs, by position."""

    ids: tuple[str, ...]
    columns: tuple[list, list, list, list]  # content keys, similar-list keys, backlinks, citation keys
    names: list[tuple]
    made: list[tuple[PageJob, ...]]
    stamp: int = -1  # the memo generation this is true in


_ARTICLE_SEGMENT: _ArticleSegment | None = None


@dataclass
class _HtmlPaths:
    """The HTML pages of the last plan of this process (see `SitePlan._html_paths`)."""

    home: list[str]  # the articles' ids, in order
    terms: tuple  # each taxonomy's terms (compared by identity)
    paths: list[str]
    stamp: int = -1  # the memo generation this is true in


_HTML_PATHS: _HtmlPaths | None = None
_PATH = operator.attrgetter("path")


def warm_up(renderer: Renderer) -> None:
    """Make in this process what the next plan and render of a session (serve, the daemon) reuse
    and a build made only in forked workers (a cold one): the long listings (`Renderer.items`) and
    digest.json's entries, from their fragments, where each article's terms are, and the map's
    topic counts. 0.4 s at 10,000 articles, of which the first edit after a cold build took 0.7 s
    longer otherwise."""
    digest, per_page = renderer.digest, renderer.config.per_page
    if not per_page or per_page >= LISTING_MEMO_MIN:  # (shorter pages are not kept: see `items`)
        for number in range(1, urls.page_count(len(digest.by_id), per_page) + 1):
            renderer.home_items(number)
        for terms in digest.taxonomies.values():
            for term in terms:
                if len(term.article_ids) >= LISTING_MEMO_MIN:
                    for number in range(1, urls.page_count(len(term.article_ids), per_page) + 1):
                        renderer.term_items(term, number)
    digest_json_entries(digest, renderer.config, renderer)
    for segment in _TERM_SEGMENTS.values():
        if segment.by_article is None:
            segment.by_article = _positions_by_article(segment.terms)
    primary_topics(digest, ())  # the map's topic counts (0.2 s), which an edit then updates
    count_lines()  # the map's lines, which an edit then updates


def _positions_by_article(terms: Sequence[Any]) -> dict[str, list[int]]:
    positions: dict[str, list[int]] = {}
    for index, term in enumerate(terms):
        for article_id in term.article_ids:
            positions.setdefault(article_id, []).append(index)
    return positions


def records_key(content_keys: dict[str, str], citation_keys: dict[str, str]) -> str:
    """Fingerprint every article's content and citation key (what the digest-wide exports show), in
    the dicts' order: the digest's, in which the exports list the articles. Sorting them cost two
    thirds of this at 10,000 articles."""
    return value_key((tuple(content_keys), tuple(content_keys.values()),
                      tuple(citation_keys), tuple(citation_keys.values())))


def exports_key(theme_key: str, records: str) -> str:
    """Return the key of `digest.bib`, `digest.ris` and `digest.csl.json` (`records`: `records_key`)."""
    return value_key((theme_key, records))


def article_jobs(article_id: str, page_key: str, cite_key: str) -> tuple[PageJob, ...]:
    """Return an article's page, Markdown page and citation files, with their keys. (Made for
    every article by a new process's plan, from the cache folder: the jobs are made as tuples,
    without the named tuple's own constructor, a Python call each.)"""
    base, args = urls.article_path(article_id), (article_id,)
    return (_new_job(PageJob, (urls.output_file(base), "article", page_key, args)),
            _new_job(PageJob, (urls.article_markdown_path(article_id), "article_md", page_key, args)),
            *[_new_job(PageJob, (base + name, name, cite_key, args)) for name in exports.CITATION_FILES])


def term_jobs(taxonomy: str, index: int, slug: str, place: tuple[str, str], page_keys: tuple[str, ...],
              feed_key: str | None = None) -> tuple[PageJob, ...]:
    """Return a term's pages (`page_keys`: `listing_page_keys`), which link back to its `place` in
    the index (`term_index.term_places`), and, with a `feed_key` (a topic), its feed. (Made for
    31,000 terms by a new process's plan: a term of one page, most of them, without a loop.)"""
    path = urls.term_path(taxonomy, slug)
    if len(page_keys) == 1:
        pages: tuple[PageJob, ...] = (_new_job(PageJob, (urls.output_file(path), "term", page_keys[0],
                                                         (taxonomy, index, 1, place))),)
    else:
        pages = tuple([_new_job(PageJob, (urls.output_file(urls.listing_page_path(path, number)), "term", key,
                                          (taxonomy, index, number, place))) for number, key in enumerate(page_keys, 1)])
    if feed_key is None:
        return pages
    return (*pages, _new_job(PageJob, (path + "feed.xml", "topic_feed", feed_key, (index,))))


_new_job = tuple.__new__  # PageJob(*fields), as `_new_job(PageJob, fields)`


def listing_page_keys(theme_key: str, head: tuple, ids: Sequence[str], item_keys: Any, per_page: int
                      ) -> tuple[str, ...]:
    """Fingerprint each page of a listing of articles `ids` (`listing_page_key`)."""
    return tuple(listing_page_key(theme_key, head, ids, item_keys, per_page, number)
                 for number in range(1, urls.page_count(len(ids), per_page) + 1))


def listing_page_key(theme_key: str, head: tuple, ids: Sequence[str], item_keys: Any, per_page: int,
                     number: int) -> str:
    """Fingerprint page `number` of a listing of articles `ids` (a term's: head is its taxonomy and
    name): the entries it shows and, when the listing has more pages, where it stands among them
    (its pager)."""
    count = urls.page_count(len(ids), per_page)
    if count == 1:
        return value_key((theme_key, head, [item_keys[i] for i in ids]))
    return value_key((theme_key, head, number, count, len(ids),
                      [item_keys[i] for i in page_ids(ids, number, per_page)]))


_PAGE_KINDS = frozenset({"home", "article", "taxonomy", "term", "map", "search", "404"})


def page_job(digest: Digest, last: PageJob | None, per_page: int, index_per_page: int | None = None
             ) -> PageJob | None:
    """Return the job that renders, from `digest`, the HTML page a job of the last plan rendered
    (listings `per_page` articles a page; taxonomy indexes split by `index_per_page`, the
    renderer's, by default the same); None when it is gone or not an HTML page. Its key is left
    blank: only the plan makes keys."""
    if last is None or last.kind not in _PAGE_KINDS:
        return None
    kind, args = last.kind, last.args
    if kind == "article":
        return PageJob(last.path, kind, "", args) if args[0] in digest.by_id else None
    if kind == "taxonomy":
        if args[0] not in digest.taxonomies:
            return None
        pages = index_pages_of(digest, args[0], per_page if index_per_page is None else index_per_page)
        page = next((page for page in pages if urls.output_file(page.path) == last.path), None)
        return PageJob(last.path, kind, "", (args[0], page.letter, page.number)) if page is not None else None
    if kind == "term":
        terms = digest.taxonomies.get(args[0], ())
        base, number = urls.split_listing_page(last.path[: -len("index.html")])
        index = next((i for i, term in enumerate(terms) if urls.term_path(args[0], term.slug) == base), None)
        if index is None or number > urls.page_count(len(terms[index].article_ids), per_page):
            return None
        places = term_places_of(digest, args[0], per_page if index_per_page is None else index_per_page)
        return PageJob(last.path, kind, "", (args[0], index, number, places[terms[index].slug]))
    if kind == "home" and args[0] > urls.page_count(len(digest.by_id), per_page):
        return None
    return PageJob(last.path, kind, "", args)


AGGREGATES = {"digest.bib": "cite.bib", "digest.ris": "cite.ris", "digest.csl.json": "cite.json"}


def produce(renderer: "Renderer", job: PageJob) -> bytes:
    """Render one job's bytes. Aggregate exports are made by `aggregate_export` from per-article files."""
    digest, config = renderer.digest, renderer.config
    kind, args = job.kind, job.args
    if kind == "asset":
        return renderer.assets[args[0]][1]
    if kind == "home":
        number = args[0]
        path = urls.listing_page_path(urls.HOME, number)
        return renderer.render("index.html", path, items=renderer.home_items(number),
                               pager=make_pager(urls.HOME, number, len(digest.by_id), config.per_page)).content
    if kind in ("article", "article_md"):
        return render_article_page(renderer, digest.by_id[args[0]], markdown=kind == "article_md")
    if kind in exports.CITATION_FILES:
        return renderer.cite(digest.by_id[args[0]], kind).encode("utf-8")
    if kind == "taxonomy":
        taxonomy, letter, number = args
        pages = index_pages_of(digest, taxonomy, renderer.index_per_page)
        page = next(page for page in pages if page.letter == letter and page.number == number)
        pager = make_pager(page.path, number, page.letter_total, SPLIT_PAGES * renderer.index_per_page,
                           letter_pager_paths(pages, page), ALPHABETICAL_STEPS) if page.count > 1 else None
        return renderer.render("taxonomy.html", page.path, taxonomy=taxonomy, page=page, terms=page.terms,
                               sections=page.sections, letters=letter_bar(pages, page), pager=pager,
                               total=len(digest.taxonomies[taxonomy])).content
    if kind == "term":
        taxonomy, index, number, place = args
        term = digest.taxonomies[taxonomy][index]
        path = urls.term_path(taxonomy, term.slug)
        page_path = urls.listing_page_path(path, number)
        return renderer.render("term.html", page_path, taxonomy=taxonomy, term=term,
                               index_url=index_place_url(place, page_path), items=renderer.term_items(term, number),
                               pager=make_pager(path, number, len(term.article_ids), config.per_page)).content
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
        return renderer.render("search.html", urls.SEARCH, merged_bundles=list(job.args)).content
    if kind == "404":
        return renderer.render("404.html", urls.NOT_FOUND).content
    if kind == "digest_json":
        return digest_json(digest, config, renderer)
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
    return join_export(kind, [export_item(kind, part) for part in parts])


def export_item(kind: str, part: bytes) -> bytes:
    """Return what an article's citation file adds to the digest-wide export `kind`: the file, or
    for CSL-JSON the one item of its one-item array."""
    return part.strip()[1:-1].strip(b"\n") if kind == "digest.csl.json" else part


def export_frame(kind: str) -> tuple[bytes, bytes, bytes]:
    """Return what comes before the first item of a non-empty export `kind`, between items, and
    after the last."""
    if kind == "digest.csl.json":
        return b"[\n", b",\n", b"\n]\n"
    return b"", b"\n" if kind == "digest.bib" else b"", b""


def join_export(kind: str, items: list[bytes]) -> bytes:
    """Join the items of a digest-wide export (see `export_item`)."""
    if not items:
        return b"[]\n" if kind == "digest.csl.json" else b""
    head, separator, tail = export_frame(kind)
    return head + separator.join(items) + tail


def render_feed(renderer: Renderer, path: str, articles: Iterable[Article], title: str, alternate: str) -> bytes:
    """Render an Atom feed of the newest articles (by publication date, then id)."""
    newest = renderer.newest(articles)
    updated = max((renderer.updated(a) for a in newest), default="1970-01-01T00:00:00Z")
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


def digest_json(digest: Digest, config: SiteConfig, renderer: Renderer | None = None) -> bytes:
    """Return the digest as data, digest.json's bytes: each article with its similar articles
    (issue 4's export format; its entries are `digest_json_entries`).

    The same bytes as json.dumps({"articles": [...]}, ...) of the whole, encoded: one key, entries
    joined by ",". Encoded a thousand entries at a time and joined once: the text of all of them
    at once took 2 to 4 bytes a character as soon as one name had a letter beyond Latin-1, which
    made digest.json (16 MB at 10,000 articles) the daemon's peak memory, 52 MB above the rest of
    an edit."""
    texts = digest_json_entries(digest, config, renderer)
    pieces = [b'{"articles":[']
    for start in range(0, len(texts), _ENCODED_AT_ONCE):
        if start:
            pieces.append(b",")
        pieces.append(",".join(texts[start: start + _ENCODED_AT_ONCE]).encode("utf-8"))
    pieces.append(b"]}\n")
    return b"".join(pieces)


_ENCODED_AT_ONCE = 1000


def digest_json_entries(digest: Digest, config: SiteConfig, renderer: Renderer | None = None) -> list[str]:
    """Return each article's digest.json entry, in the articles' order.

    Each article's entry is the JSON text `json.dumps` would write for it, kept while the article
    and its similar list are the same objects (a rebuild of `digest serve` changes a few: the last
    call's entries are taken by position when the articles are the same ids in the same order),
    and, with a `renderer` that planned the site, in its fragment cache by the article's content
    key and its similar list's key (the next `digest build`).
    """
    global _DIGEST_JSON

    def page_url(article_id: str) -> str:
        path = urls.article_path(article_id)
        return urls.absolute_url(config.base_url, path) if config.base_url else path

    content_keys = renderer._article_keys if renderer is not None else {}
    similar_keys = renderer._similar_list_keys if renderer is not None else {}
    articles = digest.articles
    ids = renderer.ids() if renderer is not None else tuple(a.id for a in articles)
    lists = list(map(digest.similar.entries.get, ids, itertools.repeat(())))
    last = _DIGEST_JSON
    if last[3] == config.base_url and last[0] == ids:
        texts = list(last[4])
        todo = sorted({*replaced_positions(articles, last[1]), *replaced_positions(lists, last[2])})
    else:  # other articles: the entries of the same article and list objects are kept by id
        kept = {i: (a, links, text) for i, a, links, text in zip(last[0], last[1], last[2], last[4])} \
            if last[3] == config.base_url else {}
        texts, todo = [""] * len(ids), []
        for n, (article_id, article, links) in enumerate(zip(ids, articles, lists)):
            found = kept.get(article_id)
            if found is not None and found[0] is article and found[1] is links:
                texts[n] = found[2]
            else:
                todo.append(n)
    for n in todo:
        article_id = ids[n]
        content, similar = content_keys.get(article_id), similar_keys.get(article_id)
        key = digest_entry_key(content, similar[0], config.base_url) if content and similar else None
        text = renderer.fragments.get(key) if key is not None else None  # type: ignore[union-attr]
        if text is None:
            text = _digest_entry(articles[n], digest.similar.get(article_id, ()), page_url)
            if key is not None:
                renderer.fragments[key] = renderer.new_fragments[key] = text  # type: ignore[union-attr]
        texts[n] = text
    _DIGEST_JSON = (ids, articles, lists, config.base_url, texts)
    return texts


# The last call's article ids, articles, similar-list entries, base URL and entries (JSON texts).
_DIGEST_JSON: tuple[tuple[str, ...], Any, list, str | None, list[str]] = ((), (), [], None, [])


def forget_entries_made() -> None:
    """Forget the listing and feed entries this process made. A renderer takes one from here
    without adding it to its fragments (see `Renderer._entry`), so a build that does not start from
    the fragments they went into (a clean one, another digest's, one started from the cache file)
    would leave them out of the cache it saves, and the next process would render them again."""
    _ENTRIES_MADE.clear()


def forget_digest_memos(keep_article_keys: bool = False) -> None:
    """Forget what this process kept of the digests it rendered (this module's memos and the map's
    graph), as a new process starts. For serve and the daemon when a new digest.yaml starts a new
    session: the new configuration makes their entries stale, and they would hold the last build's
    objects beside the new one's (see `build.new_session`). `keep_article_keys`: keep the keys made
    of the articles alone (their fingerprints, citation keys and similar-list keys), which no
    setting changes, for a session that goes on with the same articles."""
    global _KEY_MEMO, _LAST_KEYS, _LAST_CITATION_KEYS, _SIMILAR_LAST, _ARTICLE_SEGMENT, _HTML_PATHS, _DIGEST_JSON
    _KEY_MEMO = _KeyMemo()  # (`_DERIVING` is emptied by the call that fills it)
    if not keep_article_keys:
        _LAST_KEYS, _LAST_CITATION_KEYS, _SIMILAR_LAST = ((), {}), ({}, {}, set()), ((), [], {}, None)
        exports.forget_digest_memos()
    _ARTICLE_SEGMENT, _HTML_PATHS = None, None
    _DIGEST_JSON = ((), (), [], None, [])
    for memo in (_LISTINGS, _ENTRIES_MADE, _SHOWN_TERMS, _INDEX_PAGES, _TERM_PLACES, _TERM_SEGMENTS):
        memo.clear()
    forget_graph_memos()


def digest_entry_key(content_key: str, similar_key: str, base_url: str) -> str:
    """Return the fragment-cache key of an article's digest.json entry (see `digest_json`)."""
    return fingerprint("digest.json", content_key, similar_key, base_url)


def _digest_entry(article: Article, links: Sequence[Any], page_url: Any) -> str:
    entry = {
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
            for link in links
        ],
    }
    # Compact separators keep json on its C encoder: several times faster than an indented dump.
    return json.dumps(entry, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


