"""Stage 2, link: similar articles (computed and PubMed's), backlinks and taxonomies. Pure: no I/O,
except the optional cache file of a `LinkState`."""

from __future__ import annotations

import hashlib
import itertools
import marshal
import operator
import os
import pickle
import sys
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Protocol, Sequence

from generator.cache_files import dump_with_parts, load_with_parts
from generator.load import collector_paused, replaced_positions, slugify
from generator.model import Article, Author
from generator.similarity_settings import SimilarityConfig

if TYPE_CHECKING:  # numpy and scipy are imported when neighbours are computed (see _compute_neighbours)
    from generator.neighbour_index import NeighbourIndex


# MeSH check tags: indexed on most articles, so they never explain why two articles are alike.
CHECK_TAGS = frozenset({
    "Humans", "Animals", "Male", "Female", "Mice", "Rats", "Adult", "Aged", "Aged, 80 and over", "Middle Aged",
    "Young Adult", "Adolescent", "Child", "Child, Preschool", "Infant", "Infant, Newborn", "Pregnancy",
    "Cattle", "Dogs", "Swine", "Cats", "Rabbits", "Guinea Pigs", "Mice, Inbred C57BL", "Mice, Inbred BALB C",
})
DEFAULT_TAXONOMIES = ("topics", "authors", "journals", "years", "types")


@dataclass(frozen=True)
class SimilarLink:
    """One entry of an article's 'Similar articles' list, in the digest (`target_id`) or outside it."""

    title: str
    target_id: str | None = None
    pmid: str = ""
    doi: str = ""
    journal: str = ""
    date: str = ""
    citation: str = ""
    free_pmc: bool = False
    review: bool = False
    score: float | None = None
    origins: tuple[str, ...] = ()  # "computed" and/or "pubmed"
    shared_terms: tuple[str, ...] = ()

    @property
    def source(self) -> str:
        """Return the origin shown in exports: PubMed's judgement when it lists it, else ours."""
        return "pubmed" if "pubmed" in self.origins else "computed"


class SimilarLists(Mapping[str, tuple[SimilarLink, ...]]):
    """Each article's similar list, by article id. The link stage works out `entries`: per list, a
    link into the digest as (target id, score, origins, shared terms), the rest of it being the
    target's, and a link outside it as its field values. A list's SimilarLink objects are made when
    it is first read: a rebuild renders a few article pages, while the plan, the map and the
    backlinks read the entries (50,000 link objects at 10,000 articles cost a new process 0.3 s).

    `previous` (the last build's lists, in `digest serve`) hands on the objects of every list whose
    entry is the same object: the linker keeps an entry while its article and targets are the same.
    """

    def __init__(self, entries: Mapping[str, tuple], by_id: Mapping[str, Article],
                 previous: SimilarLists | None = None):
        self.entries = entries
        self._by_id = by_id
        self._made: dict[str, tuple[tuple, tuple[SimilarLink, ...]]] = {}
        if previous is not None:
            self._made = {article_id: made for article_id, made in previous._made.items()
                          if entries.get(article_id) is made[0]}
        self._bases: dict[str, dict[str, Any]] = {}

    def __getitem__(self, article_id: str) -> tuple[SimilarLink, ...]:
        entry = self.entries[article_id]
        made = self._made.get(article_id)
        if made is None or made[0] is not entry:
            made = self._made[article_id] = (entry, _expand_entry(entry, self._by_id, self._bases))
        return made[1]

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, article_id: object) -> bool:
        return article_id in self.entries


@dataclass(frozen=True)
class Term:
    """A taxonomy term (a topic, an author, a journal, a year, a publication type) and its articles."""

    taxonomy: str
    name: str
    slug: str
    article_ids: tuple[str, ...]  # newest first
    index_name: str = ""  # how its taxonomy's index lists it when not by `name`: "Bianchi, Akiko A"

    @property
    def listed_as(self) -> str:
        """Return the name the taxonomy's index sorts and shows (an author by family name)."""
        return self.index_name or self.name


@dataclass(frozen=True)
class Digest:
    """The linked digest: what the renderer needs, all of it sorted with fixed tie-breaks."""

    articles: tuple[Article, ...]  # newest first
    by_id: Mapping[str, Article]  # in the order of `articles`: its keys are their ids, read without them
    similar: SimilarLists
    backlinks: Mapping[str, tuple[str, ...]]
    taxonomies: Mapping[str, tuple[Term, ...]]
    term_slugs: Mapping[tuple[str, str], str]  # (taxonomy, name as written) -> slug
    # A key of what every taxonomy's terms are made from (each article's id and names, in order):
    # equal keys, equal terms. Empty when the linker did not work it out.
    terms_key: bytes = b""

    def term_slug(self, taxonomy: str, name: str) -> str | None:
        return self.term_slugs.get((taxonomy, name))


class Fingerprints(Protocol):
    """Content fingerprints of articles (see `generator.load.Fingerprints`): bytes that change
    whenever anything an article holds changes; None for an article it does not know."""

    def get(self, article: Article) -> bytes | None: ...


def link_articles(articles: Sequence[Article], similarity: SimilarityConfig | None,
                  taxonomies: Sequence[str] = DEFAULT_TAXONOMIES, state: LinkState | None = None,
                  fingerprints: Fingerprints | None = None) -> Digest:
    """Build the Digest from loaded articles (already sorted newest first).

    With a `state` (a `LinkState` kept between builds), work whose inputs did not change is reused:
    see `LinkState`. `fingerprints` (`LoadResult.fingerprints`) lets the state recognise articles
    without looking into them; without it the state works them out itself, which costs more.
    The Digest is the same, byte for byte once rendered, with or without a state.
    """
    if state is None:
        state = LinkState()
        state._keep = False  # nothing to keep for a next build: no fingerprints to work out
    return state.link(articles, similarity, taxonomies, fingerprints)


class LinkState:
    """What `link_articles` computed for a digest, so that the next build redoes only what changed.

    Keep one alive between builds in one process (`digest serve`) and pass it to every call, with
    the load stage's fingerprints::

        link_state = LinkState(root / ".digest-cache" / "links.pickle")  # or LinkState(): memory only
        digest = link_articles(loaded.articles, config.similar, config.taxonomies,
                               state=link_state, fingerprints=loaded.fingerprints)

    - Nothing any article holds changed (by fingerprint), nor the articles' order or the settings:
      the similar lists, backlinks and taxonomies of the last build are used as they are.
    - Otherwise the computed neighbours (TF-IDF, the costly part) are reused while no article's
      title, abstract, MeSH terms, keywords or id changed and none was added or removed (a notes,
      tags or rating edit); an article's similar list is reused while it, its neighbours and the
      articles its list points to are the same objects; taxonomy names per article likewise, and a
      taxonomy whose names and articles are all unchanged keeps its terms (the same objects).
    - With a `cache_file`, the state is read back from it by the first build (of a new process) and
      saved there (atomically, only when something changed) after each build, or only when `save()`
      is called if `autosave` is False (at 10,000 articles saving takes 0.2 to 0.3 s after a
      change). Each part (neighbours, the output...) is unpickled only when used. Deleting it is
      always safe; a cache written by other code is ignored.

    It is not thread-safe: builds must not run at the same time.
    """

    VERSION = 5  # 5: the sections are parts of the file (`cache_files.dump_with_parts`)

    def __init__(self, cache_file: Path | None = None, autosave: bool = True, builds_again: bool = False):
        """`builds_again`: the state of a process that builds more than once (serve, the daemon),
        which tracks who reads whom from its first build on (see `_similar_entries`)."""
        self.cache_file = cache_file
        self.autosave = autosave
        self.builds_again = builds_again
        self._keep = True  # False for link_articles' own state, used once
        self._cache_read = cache_file is None
        # Fingerprints this state worked out itself, by identity: id -> (article, fingerprint).
        self._own_fingerprints: dict[int, tuple[Article, bytes]] = {}
        self._links: dict[str, tuple] = {}  # article id -> (article, neighbours, targets, its similar list)
        # The last build's article ids, their neighbours objects and similar lists, in its order.
        self._lists_in_order: tuple[tuple[str, ...], list, dict[str, tuple]] = ((), [], {})
        self._names: dict[int, tuple[Article, dict[str, Any]]] = {}  # id -> (article, names per taxonomy)
        self._taxonomy_memo: dict[str, tuple] = {}  # see `_build_taxonomies`
        self._backlinks: tuple | None = None  # (article ids, similar lists, backlinks) of the last build
        self._sources: dict[str, set[str]] = {}  # article id -> the articles whose similar list reads it
        self._last_lookups: tuple = ((), {}, {}, {})  # the articles, by id, by PMID, by DOI (`_lookups`)
        self._last_articles: tuple[dict, tuple] = ({}, ({}, {}))  # by id, (by PMID, by DOI) of the last build
        self._lists: SimilarLists | None = None  # the last build's, whose link objects the next reuses
        # Kept in the cache file, each pickled apart and unpickled only when needed:
        self._digests: dict[bytes, bytes] | None = {}  # article fingerprint -> its similarity inputs' digest
        self._neighbours_key = b""
        self._index: NeighbourIndex | None = None  # holds compute_neighbours' result for that key
        self._output_key = b""
        self._output: tuple[dict, dict, dict, dict] | None = None  # similar, backlinks, taxonomies, term slugs
        self._slugs: dict[str, str] | None = {}  # name -> slugify(name)
        # (taxonomies, article fingerprint -> digest of the article's id and names in each): see `_taxonomies`
        self._names_digests: tuple[tuple[str, ...], dict[bytes, bytes]] | None = None
        self._terms: tuple[bytes, dict, dict] | None = None  # the last taxonomies: (key, compact terms, term slugs)
        # What made them, for a new process to seed `_taxonomy_memo` with (see `_seed_taxonomy_memo`):
        # (their key, taxonomies, articles' fingerprints in order, taxonomy -> its memo but the terms).
        self._names_memo: tuple[bytes, tuple[str, ...], tuple[bytes, ...], dict[str, tuple]] | None = None
        self._last_terms: tuple[bytes, dict, dict] = (b"", {}, {})  # as returned, in this process
        self._blobs: dict[str, bytes | memoryview] = {}  # section -> its pickle, as in the cache file
        self._changed: set[str] = set()  # sections to pickle again

    def link(self, articles: Sequence[Article], similarity: SimilarityConfig | None, taxonomies: Sequence[str],
             fingerprints: Fingerprints | None = None) -> Digest:
        """Do what `link_articles` does (see there), reusing and updating this state."""
        with collector_paused():
            if not self._cache_read:
                self._cache_read = True
                self._read_cache()
            try:
                return self._link(articles, similarity, tuple(taxonomies), fingerprints)
            finally:
                if self.autosave:
                    self._save()

    def save(self) -> None:
        """Write the cache file now if it does not hold the state (see `autosave`)."""
        with collector_paused():
            self._save()

    def drop_pickles(self) -> None:
        """Free the cache file's bytes of each section this state holds unpickled (a process that
        builds again: 50 MB at 10,000 articles); the next save pickles those again."""
        for name, blob in list(self._blobs.items()):
            if getattr(self, f"_{name}") is not None:
                del self._blobs[name]
                self._changed.add(name)
            elif isinstance(blob, memoryview):  # a view of the file's bytes would keep all of them
                self._blobs[name] = bytes(blob)

    def _link(self, articles: Sequence[Article], similarity: SimilarityConfig | None, taxonomies: tuple[str, ...],
              fingerprints: Fingerprints | None) -> Digest:
        by_id, by_pmid, by_doi = self._lookups(articles)
        prints = self._fingerprints(articles, fingerprints) if self._keep else None
        key = _key(repr((similarity, taxonomies)), articles, prints) if prints is not None else b""
        # A process that builds again takes the last output as it is from its second link on: its
        # first makes the lists as an edit would, so that it holds who reads whom and the lists
        # that the plan's keys are kept by (its first edit would otherwise make them: 2 s at 10,000).
        first_of_many = self.builds_again and not self._lists_in_order[0]
        output = self._output_for(key, by_id) if key and not first_of_many else None
        terms_key = b""
        if output is None:
            compute = similarity is not None and similarity.count > 0
            neighbours = self._compute_neighbours(articles, similarity, prints) if compute else {}
            similar = self._similar_entries(articles, neighbours, by_id, by_pmid, by_doi)
            backlinks = self._backlinks_of(articles, similar)
            terms, slugs = self._taxonomies(articles, taxonomies, prints)
            terms_key = self._last_terms[0]  # (the key `_taxonomies` made them for)
            output = (similar, backlinks, terms, slugs)
            if key:
                self._output_key, self._output = key, output
                self._changed.add("output")
        similar, backlinks, terms, slugs = output
        self._lists = SimilarLists(MappingProxyType(similar), by_id, self._lists)
        return Digest(
            articles=tuple(articles),
            by_id=MappingProxyType(by_id),
            similar=self._lists,
            backlinks=MappingProxyType(backlinks),
            taxonomies=MappingProxyType(terms),
            term_slugs=MappingProxyType(slugs),
            terms_key=terms_key,
        )

    def _lookups(self, articles: Sequence[Article]) -> tuple[dict[str, Article], dict[str, str], dict[str, str]]:
        """Return the articles by id, and their ids by PMID and by lowercase DOI: the last build's
        maps when a few articles are new objects with the same id, PMID and DOI (an edit), the
        first with those articles put in (the same order)."""
        last, by_id, by_pmid, by_doi = self._last_lookups
        if len(last) == len(articles):
            changed = replaced_positions(articles, last)
            if len(changed) <= 1000 and all(
                    (a.id, a.pmid, a.doi) == (b.id, b.pmid, b.doi) for a, b in ((articles[n], last[n]) for n in changed)):
                if changed:
                    by_id = dict(by_id)
                    by_id.update((articles[n].id, articles[n]) for n in changed)
                    self._last_lookups = (tuple(articles), by_id, by_pmid, by_doi)
                return by_id, by_pmid, by_doi
        by_id = {a.id: a for a in articles}
        by_pmid = {a.pmid: a.id for a in articles if a.pmid}
        by_doi = {a.doi.lower(): a.id for a in articles if a.doi}
        self._last_lookups = (tuple(articles), by_id, by_pmid, by_doi)
        return by_id, by_pmid, by_doi

    def _output_for(self, key: bytes, by_id: dict[str, Article]) -> tuple[dict, dict, dict, dict] | None:
        """Return the last output when it was made from the same inputs (`key`), else None."""
        if key != self._output_key:
            return None
        if self._output is None and "output" in self._blobs:
            try:
                similar, backlinks, terms, slugs = pickle.loads(self._blobs["output"])
                self._output = (similar, backlinks, _expand_terms(terms), slugs)
            except Exception:  # noqa: BLE001 - a corrupt cache: compute
                self._output_key, self._output = b"", None
        return self._output

    # Fingerprints and the computed neighbours ----------------------------------------------------

    def _fingerprints(self, articles: Sequence[Article], given: Fingerprints | None) -> list[bytes]:
        """Return each article's fingerprint: the load stage's, else one worked out here (and kept)."""
        own = self._own_fingerprints
        kept: dict[int, tuple[Article, bytes]] = {}
        found = []
        for article in articles:
            fingerprint = given.get(article) if given is not None else None
            if fingerprint is None:
                mine = own.get(id(article))
                if mine is not None and mine[0] is article:
                    fingerprint = mine[1]
                else:
                    fingerprint = b"own:" + _digest(article)
                kept[id(article)] = (article, fingerprint)
            found.append(fingerprint)
        self._own_fingerprints = kept
        return found

    def _compute_neighbours(self, articles: Sequence[Article], similarity: SimilarityConfig,
                            prints: list[bytes] | None) -> dict:
        """Return `compute_neighbours(articles, similarity)`, reused while its inputs are unchanged."""
        # Imported here: with numpy and scipy (0.35 s), which a build that links nothing never needs.
        from generator.neighbour_index import NeighbourIndex
        from generator.similarity import compute_neighbours

        if prints is None:  # no state worth keeping: compute
            return compute_neighbours(articles, similarity)
        known = self._section("digests") or {}
        digests: dict[bytes, bytes] = {}
        inputs = []
        for article, fingerprint in zip(articles, prints):
            digest = known.get(fingerprint)
            if digest is None:
                digest = _digest((article.id, article.title, article.abstract, article.mesh_terms, article.keywords))
            digests[fingerprint] = digest
            inputs.append((article.id, digest))
        # In the articles' order, not sorted (a tenth of this pass at 10,000 articles): a new order
        # of the same articles only costs a call to the index, which answers the same.
        if digests.keys() != known.keys():
            self._digests = digests
            self._changed.add("digests")
        # marshal (version 0: by value alone): 10 times cheaper than repr for 10,000 (id, digest) pairs.
        key = hashlib.blake2b(marshal.dumps((repr(similarity), inputs), 0), digest_size=16).digest()
        index = self._section("index")
        if index is not None and key == self._neighbours_key and index.result is not None:
            return index.result
        if index is None:
            index = self._index = NeighbourIndex()
        # An edit recomputes only the rows it can change; the rest is the last result (exact).
        neighbours = index.neighbours(articles, similarity, [digests[p] for p in prints])
        self._neighbours_key = key
        self._changed.add("index")
        return neighbours

    # Similar lists, backlinks, taxonomies ------------------------------------------------------------

    def _similar_entries(self, articles: Sequence[Article], neighbours: Mapping[str, tuple],
                         by_id: dict[str, Article], by_pmid: dict[str, str], by_doi: dict[str, str]) -> dict[str, tuple]:
        """Return each article's similar list as `SimilarLists.entries`; one whose article, neighbours
        and targets are the same objects as last time is the same tuple.

        When the articles' ids, PMIDs and DOIs are the last build's, an article that is the same
        object, with the same neighbours object, and that does not read an article that changed
        (`_sources`: who reads whom) has the same targets: it is not looked at further."""
        before = self._links
        # Who reads whom is worth knowing in a process that builds again (serve, the daemon), from
        # its first build on: else its first edit finds every list anew (0.2 s at 10,000 articles).
        # A single build (a new `digest build` process) does not make it.
        track = bool(before) or self.builds_again
        last_by_id, last_maps = self._last_articles
        same_maps = track and last_maps == (by_pmid, by_doi) and last_by_id.keys() == by_id.keys()
        if same_maps:
            new_objects = [article_id for article_id, article in by_id.items() if last_by_id[article_id] is not article]
            readers = self._sources
            dirty = set(new_objects).union(*(readers.get(article_id, ()) for article_id in new_objects))
        else:
            readers, dirty = {}, set()
        self._last_articles = ({}, ({}, {}))  # `readers` is changed in place: not trusted unless this ends
        ids = tuple(by_id)  # (in the articles' order)
        computed_lists = list(map(neighbours.get, ids, itertools.repeat(())))
        last_ids, last_computed, last_similar = self._lists_in_order
        self._lists_in_order = ((), [], {})
        if same_maps and last_ids == ids:
            # The articles of the last build in its order: only those with another neighbours object,
            # or dirty, are looked at; the others keep their entries, as the loop below would.
            kept, similar = dict(before), dict(last_similar)
            todo = replaced_positions(computed_lists, last_computed)
            if dirty:
                todo = sorted({*todo, *(n for n, article_id in enumerate(ids) if article_id in dirty)})
        elif not track:
            # A process that links once (a new `digest build`) makes each entry, and keeps nothing
            # for a next link: its targets are what only that would compare (0.03 s at 10,000 articles).
            self._links, self._sources = {}, readers
            return {article.id: _merge_entries(article, computed, by_pmid, by_doi)
                    for article, computed in zip(articles, computed_lists)}
        else:
            kept, similar, todo = {}, {}, range(len(ids))
        for position in todo:
            article = articles[position]
            article_id = article.id
            computed = computed_lists[position]
            memo = before.get(article_id)
            if same_maps and memo is not None and memo[1] is computed and article_id not in dirty:
                kept[article_id] = memo
                similar[article_id] = memo[3]
                continue
            targets = _targets(article, computed, by_id, by_pmid, by_doi)
            if (memo is not None and memo[0] is article and memo[1] == computed and len(memo[2]) == len(targets)
                    and all(a is b for a, b in zip(memo[2], targets))):
                entry = memo[3]
            else:
                entry = _merge_entries(article, computed, by_pmid, by_doi)
            if same_maps and memo is not None:
                for target in memo[2]:
                    if target is not None:
                        readers.get(target.id, set()).discard(article_id)
            if track:
                for target in targets:
                    if target is not None:
                        readers.setdefault(target.id, set()).add(article_id)
            kept[article_id] = (article, computed, targets, entry)
            similar[article_id] = entry
        self._links, self._sources = kept, readers
        if track:
            self._last_articles = (by_id, (by_pmid, by_doi))
            self._lists_in_order = (ids, computed_lists, similar)
        return similar

    def _backlinks_of(self, articles: Sequence[Article], similar: dict[str, tuple]) -> dict[str, tuple[str, ...]]:
        """Return `_backlinks(articles, similar)`: the last build's when no list changed; when some
        did (a quarter at most; a title edit at 10,000 articles changes 230 lists, whose scores drift
        as term weights move) among the same articles in the same order, the last build's with the
        backlinks of the articles those lists link to (or linked to) made again."""
        ids = list(similar)  # (in the articles' order)
        lists = list(similar.values())
        before = self._backlinks
        if before is None or before[0] != ids:
            backlinks = _backlinks(articles, similar)
        else:
            _, old_lists, old = before
            changed = replaced_positions(lists, old_lists)
            if not changed:
                return old
            backlinks = (_backlinks_updated(ids, lists, old_lists, old, changed) if len(changed) <= len(ids) // 4
                         else _backlinks(articles, similar))
        self._backlinks = (ids, lists, backlinks)
        return backlinks

    def _taxonomies(self, articles: Sequence[Article], taxonomies: tuple[str, ...], prints: list[bytes] | None):
        """Return the terms and term slugs. A new process takes the last build's from the cache file
        when every article files under the same names, in the same order (a title or abstract edit):
        0.05 s instead of 0.5 s at 10,000 articles."""
        filed: dict[int, tuple[Article, dict[str, Any]]] = {}  # names the key worked out (see `_build_terms`)
        key = self._names_key(articles, taxonomies, prints, filed) if prints is not None else b""
        if key and self._last_terms[0] == key:  # this process made or read them: the same objects
            return self._last_terms[1], self._last_terms[2]
        stored = self._section("terms") if key and not self._taxonomy_memo else None
        if stored is not None and stored[0] == key:
            terms, slugs = _expand_terms(stored[1]), dict(stored[2])
            self._last_terms = (key, terms, slugs)
            return terms, slugs
        if stored is not None:
            self._seed_taxonomy_memo(articles, taxonomies, prints, stored, filed)  # type: ignore[arg-type]
        terms, slugs = self._build_terms(articles, taxonomies, filed)
        self._last_terms = (key, terms, slugs)
        if key and (self._terms is None or self._terms[0] != key):
            self._terms = (key, _compact_terms(terms), slugs)
            self._changed.add("terms")
            self._names_memo = (key, taxonomies, tuple(prints),  # type: ignore[arg-type]
                                {taxonomy: (ids, lists, slug_items, index_lists)
                                 for taxonomy, (ids, lists, _, slug_items, index_lists) in self._taxonomy_memo.items()})
            self._changed.add("names_memo")
        return terms, slugs

    def _seed_taxonomy_memo(self, articles: Sequence[Article], taxonomies: tuple[str, ...], prints: list[bytes],
                            stored: tuple[bytes, dict, dict], filed: dict[int, tuple[Article, dict[str, Any]]]) -> None:
        """In a new process whose names changed (a journal's, an author's, a tag): give
        `_build_taxonomies` the last build's memo, from the cache file, so that it makes again only
        the taxonomies whose names changed (0.5 s for all five at 10,000 articles), and give each
        article with the last build's fingerprint at its place the names it filed under then."""
        saved = self._section("names_memo")
        if saved is None or saved[0] != stored[0] or saved[1] != taxonomies or len(saved[2]) != len(prints):
            return
        _, _, last_prints, memos = saved
        if set(memos) != set(taxonomies):
            return
        terms = _expand_terms(stored[1])
        self._taxonomy_memo = {taxonomy: (ids, lists, terms[taxonomy], slug_items, index_lists)
                               for taxonomy, (ids, lists, slug_items, index_lists) in memos.items()}
        index_lists = memos["authors"][3] if "authors" in memos else None
        for position, (article, fingerprint) in enumerate(zip(articles, prints)):
            if fingerprint == last_prints[position] and id(article) not in filed:
                known = {taxonomy: memos[taxonomy][1][position] for taxonomy in taxonomies}
                if index_lists is not None:
                    known[_AUTHOR_INDEX_NAMES] = index_lists[position]
                filed[id(article)] = (article, known)

    def _names_key(self, articles: Sequence[Article], taxonomies: tuple[str, ...], prints: list[bytes],
                   filed: dict[int, tuple[Article, dict[str, Any]]]) -> bytes:
        """Return a key of what the taxonomies are made from: each article's id and names (and its
        authors' index names), in order. The names it works out go into `filed`, by article."""
        kept = self._section("names_digests")
        known = kept[1] if kept is not None and kept[0] == taxonomies else {}
        digests: dict[bytes, bytes] = {}
        hasher = hashlib.blake2b(repr(taxonomies).encode("utf-8", "surrogatepass"), digest_size=16)
        names = self._names
        for article, fingerprint in zip(articles, prints):
            digest = known.get(fingerprint)
            if digest is None:
                memo = names.get(id(article))
                if memo is None or memo[0] is not article:
                    memo = filed[id(article)] = (article, {})
                found = _filed_names(article, taxonomies, memo[1])
                digest = _digest((article.id, [found[taxonomy] for taxonomy in taxonomies],
                                  found.get(_AUTHOR_INDEX_NAMES)))
            digests[fingerprint] = digest
            hasher.update(digest)
        if kept is None or kept[0] != taxonomies or digests.keys() != known.keys():
            self._names_digests = (taxonomies, digests)
            self._changed.add("names_digests")
        return hasher.digest()

    def _build_terms(self, articles: Sequence[Article], taxonomies: tuple[str, ...],
                     filed: dict[int, tuple[Article, dict[str, Any]]]):
        """Make the taxonomies, from the names each article files under: kept from the last call
        (`_names`, by article), or worked out by this build's names key (`filed`: all of a cold
        build's), or here."""
        before = self._names
        kept: dict[int, tuple[Article, dict[str, Any]]] = {}
        names = []
        for article in articles:
            memo = before.get(id(article))
            if memo is None or memo[0] is not article:
                memo = filed.get(id(article)) or (article, {})  # (this call's articles: their ids are theirs)
            kept[id(article)] = memo
            names.append(memo[1])
        self._names = kept
        slugs = self._section("slugs")
        if slugs is None:
            slugs = self._slugs = {}
        known = len(slugs)

        def slug_of(name: str) -> str:
            slug = slugs.get(name)
            if slug is None:
                slug = slugs[name] = slugify(name)
            return slug

        result = _build_taxonomies(articles, taxonomies, names, slug_of, self._taxonomy_memo)
        if len(slugs) != known:
            self._changed.add("slugs")
        return result

    # The cache file ---------------------------------------------------------------------------------

    def _section(self, name: str) -> Any:
        """Return a kept section (digests, index, slugs, terms...), unpickling it on first use."""
        value = getattr(self, f"_{name}")
        if value is None and name in self._blobs:
            try:
                value = pickle.loads(self._blobs[name])
            except Exception:  # noqa: BLE001 - a corrupt cache: compute
                self._blobs.pop(name)
                value = None
            setattr(self, f"_{name}", value)
        return value

    def _read_cache(self) -> None:
        try:
            stamp, neighbours_key, output_key, blobs = load_with_parts(self.cache_file)  # type: ignore[arg-type]
            if stamp != (self.VERSION, _code_stamp()):
                return
            self._neighbours_key, self._output_key, self._blobs = neighbours_key, output_key, dict(blobs)
            self._digests = self._index = self._output = self._slugs = self._names_digests = self._terms = \
                self._names_memo = None
        except Exception:  # noqa: BLE001 - a missing, stale or corrupt cache only costs computing again
            pass

    def _save(self) -> None:
        if self.cache_file is None or not self._changed:
            return
        temporary = self.cache_file.with_name(f"{self.cache_file.name}.{os.getpid()}.tmp")
        try:
            for name in self._changed:
                if name == "output":
                    similar, backlinks, terms, slugs = self._output  # type: ignore[misc]
                    value: Any = (similar, backlinks, _compact_terms(terms), slugs)
                else:
                    value = getattr(self, f"_{name}")
                self._blobs[name] = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
            self._changed.clear()
            self.cache_file.parent.mkdir(parents=True, exist_ok=True)
            parts = {name: pickle.PickleBuffer(blob) for name, blob in self._blobs.items()}
            with open(temporary, "wb") as stream:
                dump_with_parts(((self.VERSION, _code_stamp()), self._neighbours_key, self._output_key, parts), stream)
            os.replace(temporary, self.cache_file)
        except Exception:  # noqa: BLE001 - the cache is an optimisation; the next build does the work
            self._changed.clear()
            self._blobs.clear()
            self._neighbours_key = self._output_key = b""
            try:
                temporary.unlink()
            except OSError:
                pass


def link_target(link: tuple) -> str | None:
    """Return the id of the article a link of a `SimilarLists` entry points to; None outside the digest."""
    return link[0] if len(link) == _INTERNAL else None


def split_scores(links: tuple, linked: Callable[[str], str]) -> tuple[list[tuple[str, tuple]], list[float | None]]:
    """Return what each link of a `SimilarLists` entry shows but its score, as (`linked(its target's
    id)`, or '' outside the digest, and its other fields), and the links' scores. One pass over the
    links: the plan asks this of every entry (50,000 links at 10,000 articles)."""
    shown: list[tuple[str, tuple]] = []
    scores: list[float | None] = []
    for link in links:
        if len(link) == _INTERNAL:
            shown.append((linked(link[0]), link[2:]))
            scores.append(link[1])
        else:
            shown.append(("", link[:_SCORE_AT] + link[_SCORE_AT + 1:]))
            scores.append(link[_SCORE_AT])
    return shown, scores


def _expand_entry(entry: tuple, by_id: Mapping[str, Article], bases: dict[str, dict[str, Any]]) -> tuple[SimilarLink, ...]:
    """Return the SimilarLink objects of one list of `SimilarLists.entries`."""
    return tuple(_internal_link(by_id[link[0]], *link[1:], bases) if len(link) == _INTERNAL
                 else _new_link(dict(zip(_LINK_DEFAULTS, link))) for link in entry)


def _compact_terms(terms: Mapping[str, tuple[Term, ...]]) -> dict[str, tuple]:
    return {taxonomy: tuple((t.name, t.slug, t.article_ids, t.index_name) for t in found)
            for taxonomy, found in terms.items()}


def _expand_terms(compact: dict[str, tuple]) -> dict[str, tuple[Term, ...]]:
    return {taxonomy: tuple(_new_term(taxonomy, name, slug, ids, index_name) for name, slug, ids, index_name in found)
            for taxonomy, found in compact.items()}


def _digest(value: Any) -> bytes:
    """Return a hash of a value's pickle: equal pickles for equal values made the same way, and
    never one pickle for two different values."""
    return hashlib.blake2b(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL), digest_size=16).digest()


def _key(settings: str, articles: Sequence[Article], prints: list[bytes]) -> bytes:
    """Return a key for everything the link stage reads: settings, articles in order, their contents."""
    hasher = hashlib.blake2b(settings.encode("utf-8", "surrogatepass"), digest_size=16)
    hasher.update(marshal.dumps([a.id for a in articles], 0))
    hasher.update(marshal.dumps(prints, 0))
    return hasher.digest()


def _code_stamp() -> str:
    """Return a stamp of the code that makes articles and links, so a change never reuses old results."""
    from generator.cache_files import files_stamp
    from generator.load import _code_stamp as load_stamp

    folder = Path(__file__).parent
    stamps = files_stamp(folder / name for name in ("link.py", "similarity.py", "neighbour_index.py"))
    return f"{load_stamp()}:{stamps}:{sys.version_info[:2]}"


def merge_similar(article: Article, computed, by_id, by_pmid, by_doi) -> tuple[SimilarLink, ...]:
    """Merge computed neighbours with PubMed's list into one list without duplicates.

    Articles in the digest come first (by score, PubMed-only ones after in PubMed's order), then
    PubMed's articles that are not in the digest, in PubMed's order.
    """
    return _expand_entry(_merge_entries(article, computed, by_pmid, by_doi), by_id, {})


def _targets(article: Article, computed, by_id, by_pmid, by_doi) -> tuple:
    """Return the articles (or None) an article's similar list is made from, in the order it reads them."""
    found = [by_id[neighbour.id] for neighbour in computed]
    for ref in article.similar:
        target = by_pmid.get(ref.pmid) if ref.pmid else None
        target = target or (by_doi.get(ref.doi.lower()) if ref.doi else None)
        found.append(by_id[target] if target else None)
    return tuple(found)


_LINK_DEFAULTS = {name: getattr(SimilarLink, name, None) for name in SimilarLink.__dataclass_fields__}
# In a `SimilarLists` entry, a link into the digest is (target id, score, origins, shared terms); one
# outside it is its SimilarLink's field values (12, the score among them).
_INTERNAL = 4
_SCORE_AT = list(_LINK_DEFAULTS).index("score")


def _new_link(values: dict[str, Any]) -> SimilarLink:
    """Return SimilarLink(**values) for values holding every field in order, without the frozen
    dataclass's 12 `object.__setattr__` calls (the same object, 5x faster)."""
    link = object.__new__(SimilarLink)
    link.__dict__.update(values)
    return link


def _merge_entries(article: Article, computed, by_pmid, by_doi) -> tuple:
    """Return `merge_similar`'s list as a `SimilarLists` entry."""
    links: dict[str, tuple] = {}
    for neighbour in computed:
        shared = neighbour.shared_terms
        if not CHECK_TAGS.isdisjoint(shared):
            shared = tuple(t for t in shared if t not in CHECK_TAGS)
        links[neighbour.id] = (neighbour.id, neighbour.score, ("computed",), shared)
    external: list[tuple] = []
    seen_external: set[str] = set()
    for ref in article.similar:
        target = by_pmid.get(ref.pmid) if ref.pmid else None
        target = target or (by_doi.get(ref.doi.lower()) if ref.doi else None)
        if target == article.id:
            continue
        if target:
            existing = links.get(target)
            if existing:
                links[target] = (target, existing[1], ("pubmed", "computed"), existing[3])
            else:
                links[target] = (target, None, ("pubmed",), ())
            continue
        key = ref.pmid or ref.doi.lower()
        if key in seen_external:
            continue
        seen_external.add(key)
        external.append(tuple({
            **_LINK_DEFAULTS,
            "title": ref.title or (f"PMID {ref.pmid}" if ref.pmid else f"doi:{ref.doi}"), "pmid": ref.pmid,
            "doi": ref.doi, "journal": ref.journal, "date": ref.date, "citation": ref.citation,
            "free_pmc": ref.free_pmc, "review": ref.review or "Review" in ref.publication_types, "score": ref.score,
            "origins": ("pubmed",),
        }.values()))
    internal = sorted(links.values(), key=lambda link: (link[1] is None, -(link[1] or 0.0)))
    return tuple(internal) + tuple(external)


def linked_fields(other: Article) -> tuple:
    """Return what a link to an article in the digest takes from it: title, id, PMID, DOI, journal,
    date, free full text, review (the renderer keys similar lists by these)."""
    return (other.title, other.id, other.pmid, other.doi, other.journal_abbrev or other.journal,
            other.published.display, bool(other.pmcid), other.is_review)


def _internal_link(other: Article, score: float | None, origins: tuple[str, ...], shared: tuple[str, ...],
                   bases: dict[str, dict[str, Any]]) -> SimilarLink:
    base = bases.get(other.id)
    if base is None:
        title, target_id, pmid, doi, journal, date, free_pmc, review = linked_fields(other)
        base = bases[other.id] = {
            **_LINK_DEFAULTS, "title": title, "target_id": target_id, "pmid": pmid, "doi": doi,
            "journal": journal, "date": date, "citation": "", "free_pmc": free_pmc, "review": review,
        }
    return _new_link({**base, "score": score, "origins": origins, "shared_terms": shared})


def _backlinks(articles: Sequence[Article], similar: Mapping[str, tuple]) -> dict[str, tuple[str, ...]]:
    """Return, per article, the articles whose similar list (`SimilarLists.entries`) links to it,
    in the digest's order (targets and sources alike)."""
    backlinks: dict[str, dict[str, None]] = {}
    for article in articles:  # newest first, so backlink lists are too
        for link in similar[article.id]:
            target = link_target(link)
            if target:
                backlinks.setdefault(target, {})[article.id] = None
    return {article.id: tuple(backlinks[article.id]) for article in articles if article.id in backlinks}


def _backlinks_updated(ids: list[str], lists: list[tuple], old_lists: list[tuple], old: dict[str, tuple[str, ...]],
                       changed: list[int]) -> dict[str, tuple[str, ...]]:
    """Return `_backlinks` for `lists` from `old`, that of `old_lists` (the same articles, `ids`, in
    the same order), when the lists at positions `changed` are the only new ones. An article that
    loses its last backlink leaves the others in order; one that gains its first puts the articles
    in the digest's order again (one pass over the ids, where `_backlinks` reads every list)."""
    sources = {ids[n] for n in changed}
    linking_to: dict[str, list[str]] = {}  # target -> the changed lists' articles that link to it now
    for n in changed:
        for target in dict.fromkeys(map(link_target, lists[n])):
            linking_to.setdefault(target, []).append(ids[n])
    targets = (linking_to.keys() | {link_target(link) for n in changed for link in old_lists[n]}) - {None}
    position = {article_id: n for n, article_id in enumerate(ids)}
    backlinks = dict(old)
    gained = False
    for target in targets:
        kept = [source for source in old.get(target, ()) if source not in sources]
        linking = linking_to.get(target, [])
        if not kept and not linking:
            backlinks.pop(target, None)
            continue
        gained = gained or target not in old
        backlinks[target] = tuple(sorted(dict.fromkeys(kept + linking), key=position.__getitem__))
    if gained:
        backlinks = {article_id: backlinks[article_id] for article_id in ids if article_id in backlinks}
    return backlinks


def article_terms(article: Article, taxonomy: str) -> list[str]:
    """Return the names an article files under in a taxonomy, in the record's order."""
    if taxonomy == "topics":
        names = [m.descriptor for m in article.mesh_terms] + list(article.keywords) + list(article.tags)
    elif taxonomy == "authors":
        names = [a.name for a in article.authors]
    elif taxonomy == "journals":
        names = [article.journal or article.journal_abbrev] if (article.journal or article.journal_abbrev) else []
    elif taxonomy == "years":
        names = [str(article.year)] if article.year else []
    elif taxonomy == "types":
        names = list(article.publication_types)
    else:
        names = []
    return [n for n in dict.fromkeys([n.strip() for n in names]) if n]


_AUTHOR_INDEX_NAMES = "authors:index"  # (a key of the names cache of `_build_taxonomies`)


def _author_index_names(article: Article) -> dict[str, str]:
    """Return the index name of each author of an article that has one, by the name it files under."""
    found: dict[str, str] = {}
    for author in article.authors:
        index_name = author_index_name(author)
        if index_name:
            found.setdefault(author.name.strip(), index_name)
    return found


def _filed_names(article: Article, taxonomies: Sequence[str], known: dict[str, Any]) -> dict[str, Any]:
    """Fill `known` (an article's entry of the names cache, see `_build_taxonomies`) with the names
    the article files under in each taxonomy, and its authors' index names; return it."""
    for taxonomy in taxonomies:
        if taxonomy not in known:
            known[taxonomy] = article_terms(article, taxonomy)
    if "authors" in taxonomies and _AUTHOR_INDEX_NAMES not in known:
        known[_AUTHOR_INDEX_NAMES] = _author_index_names(article)
    return known


def build_taxonomies(articles: Sequence[Article], taxonomies: Sequence[str]):
    """Group articles by term; names that slug alike ('T-Cells', 't cells') are one term."""
    return _build_taxonomies(articles, taxonomies, [{} for _ in articles], slugify)


def author_index_name(author: Author) -> str:
    """Return how an author is listed in the authors' index: family name first ('Bianchi, Akiko A'),
    so the index sorts and groups by it; a collective, or a name with no family part, as it is."""
    if author.collective or not author.family or author.family == author.name:
        return ""
    first = author.given or author.initials
    return f"{author.family}, {first}" if first else author.family


def _new_term(taxonomy: str, name: str, slug: str, article_ids: tuple[str, ...], index_name: str = "") -> Term:
    term = object.__new__(Term)
    term.__dict__.update(taxonomy=taxonomy, name=name, slug=slug, article_ids=article_ids, index_name=index_name)
    return term


def _build_taxonomies(articles: Sequence[Article], taxonomies: Sequence[str], names: list[dict[str, Any]],
                      slug_of, memo: dict[str, tuple] | None = None):
    """`names[i]` caches what `articles[i]` files under (`_filed_names`; filled here when missing).

    `memo` (taxonomy -> ids, names, terms, slugs of the last call) lets a taxonomy whose articles
    and names are all unchanged keep its terms: a notes edit rebuilds none.
    """
    result: dict[str, tuple[Term, ...]] = {}
    slugs: dict[tuple[str, str], str] = {}
    ids_in_order = tuple(a.id for a in articles) if memo is not None else ()
    filed = [_filed_names(article, taxonomies, known) for article, known in zip(articles, names)]
    for taxonomy in taxonomies:
        lists = [known[taxonomy] for known in filed]
        # An author's index name by name, per article (the family name can change alone).
        index_lists = [known[_AUTHOR_INDEX_NAMES] for known in filed] if taxonomy == "authors" else []
        before = memo.get(taxonomy) if memo is not None else None
        if before is not None and before[0] == ids_in_order and before[1] == lists and before[4] == index_lists:
            result[taxonomy] = before[2]
            slugs.update(before[3])
            continue
        index_names: dict[str, str] = {}  # the newest article's, for each name
        for found in reversed(index_lists):
            index_names.update(found)
        first_slug = len(slugs)
        # Articles per name as written, newest first: each article lists a name once, so the length
        # is how many articles spell the term that way.
        by_name: dict[str, list[str]] = {}
        for article, terms in zip(articles, lists):
            article_id = article.id
            for name in terms:
                ids = by_name.get(name)
                if ids is None:
                    by_name[name] = [article_id]
                else:
                    ids.append(article_id)
        by_slug: dict[str, list[str]] = {}  # slug -> its names, in order of first use
        for name in by_name:
            slug = name if taxonomy == "years" else slug_of(name)
            slugs[(taxonomy, name)] = slug
            spellings = by_slug.get(slug)
            if spellings is None:
                by_slug[slug] = [name]
            else:
                spellings.append(name)
        position: dict[str, int] | None = None
        terms_list = []
        for slug, spellings in by_slug.items():
            if len(spellings) == 1:
                name = spellings[0]
                ids = tuple(by_name[name])
            else:  # the most used spelling names the term; its articles are all of theirs, newest first
                name = min(spellings, key=lambda n: (-len(by_name[n]), n))
                if position is None:
                    position = {a.id: i for i, a in enumerate(articles)}
                ids = tuple(sorted({i for n in spellings for i in by_name[n]}, key=position.__getitem__))
            terms_list.append(_new_term(taxonomy, name, slug, ids, index_names.get(name, "")))
        if taxonomy == "years":
            terms_list.sort(key=lambda t: t.slug, reverse=True)
        else:
            terms_list.sort(key=lambda t: (t.name.casefold(), t.slug))
        result[taxonomy] = tuple(terms_list)
        if memo is not None:
            memo[taxonomy] = (ids_in_order, lists, result[taxonomy], list(slugs.items())[first_slug:], index_lists)
    return result, slugs
