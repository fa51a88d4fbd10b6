"""Stage 2, link: similar articles (computed and PubMed's), backlinks and taxonomies. Pure: no I/O."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping, Sequence

from generator.load import slugify
from generator.model import Article
from generator.similarity import SimilarityConfig, compute_neighbours


# MeSH check tags: indexed on most articles, so they never explain why two articles are alike.
CHECK_TAGS = frozenset({
    "Humans", "Animals", "Male", "Female", "Mice", "Rats", "Adult", "Aged", "Aged, 80 and over", "Middle Aged",
    "Young Adult", "Adolescent", "Child", "Child, Preschool", "Infant", "Infant, Newborn", "Pregnancy",
    "Cattle", "Dogs", "Swine", "Cats", "Rabbits", "Guinea Pigs", "Mice, Inbred C57BL", "Mice, Inbred BALB C",
})


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


@dataclass(frozen=True)
class Term:
    """A taxonomy term (a topic, an author, a journal, a year, a publication type) and its articles."""

    taxonomy: str
    name: str
    slug: str
    article_ids: tuple[str, ...]  # newest first


@dataclass(frozen=True)
class Digest:
    """The linked digest: what the renderer needs, all of it sorted with fixed tie-breaks."""

    articles: tuple[Article, ...]  # newest first
    by_id: Mapping[str, Article]
    similar: Mapping[str, tuple[SimilarLink, ...]]
    backlinks: Mapping[str, tuple[str, ...]]
    taxonomies: Mapping[str, tuple[Term, ...]]
    term_slugs: Mapping[tuple[str, str], str]  # (taxonomy, name as written) -> slug

    def term_slug(self, taxonomy: str, name: str) -> str | None:
        return self.term_slugs.get((taxonomy, name))


def link_articles(articles: Sequence[Article], similarity: SimilarityConfig | None,
                  taxonomies: Sequence[str] = ("topics", "authors", "journals", "years", "types")) -> Digest:
    """Build the Digest from loaded articles (already sorted newest first)."""
    by_id = {a.id: a for a in articles}
    by_pmid = {a.pmid: a.id for a in articles if a.pmid}
    by_doi = {a.doi.lower(): a.id for a in articles if a.doi}
    neighbours = compute_neighbours(articles, similarity) if similarity and similarity.count > 0 else {}
    similar = {
        a.id: merge_similar(a, neighbours.get(a.id, ()), by_id, by_pmid, by_doi) for a in articles
    }
    backlinks: dict[str, list[str]] = defaultdict(list)
    for article in articles:  # newest first, so backlink lists are too
        for link in similar[article.id]:
            if link.target_id and article.id not in backlinks[link.target_id]:
                backlinks[link.target_id].append(article.id)
    terms, slugs = build_taxonomies(articles, taxonomies)
    return Digest(
        articles=tuple(articles),
        by_id=MappingProxyType(by_id),
        similar=MappingProxyType(similar),
        backlinks=MappingProxyType({k: tuple(v) for k, v in backlinks.items()}),
        taxonomies=MappingProxyType(terms),
        term_slugs=MappingProxyType(slugs),
    )


def merge_similar(article: Article, computed, by_id, by_pmid, by_doi) -> tuple[SimilarLink, ...]:
    """Merge computed neighbours with PubMed's list into one list without duplicates.

    Articles in the digest come first (by score, PubMed-only ones after in PubMed's order), then
    PubMed's articles that are not in the digest, in PubMed's order.
    """
    links: dict[str, SimilarLink] = {}
    for neighbour in computed:
        other = by_id[neighbour.id]
        shared = tuple(t for t in neighbour.shared_terms if t not in CHECK_TAGS)
        links[other.id] = _internal_link(other, score=neighbour.score, origins=("computed",), shared=shared)
    external: list[SimilarLink] = []
    seen_external: set[str] = set()
    for ref in article.similar:
        target = by_pmid.get(ref.pmid) if ref.pmid else None
        target = target or (by_doi.get(ref.doi.lower()) if ref.doi else None)
        if target == article.id:
            continue
        if target:
            existing = links.get(target)
            if existing:
                links[target] = SimilarLink(**{**existing.__dict__, "origins": ("pubmed", "computed")})
            else:
                links[target] = _internal_link(by_id[target], score=None, origins=("pubmed",), shared=())
            continue
        key = ref.pmid or ref.doi.lower()
        if key in seen_external:
            continue
        seen_external.add(key)
        external.append(SimilarLink(
            title=ref.title or (f"PMID {ref.pmid}" if ref.pmid else f"doi:{ref.doi}"), pmid=ref.pmid, doi=ref.doi,
            journal=ref.journal, date=ref.date, citation=ref.citation, free_pmc=ref.free_pmc,
            review=ref.review or "Review" in ref.publication_types, score=ref.score, origins=("pubmed",),
        ))
    internal = sorted(links.values(), key=lambda l: (l.score is None, -(l.score or 0.0)))
    return tuple(internal) + tuple(external)


def _internal_link(other: Article, score: float | None, origins: tuple[str, ...], shared: tuple[str, ...]) -> SimilarLink:
    return SimilarLink(
        title=other.title, target_id=other.id, pmid=other.pmid, doi=other.doi,
        journal=other.journal_abbrev or other.journal, date=other.published.display, citation="",
        free_pmc=bool(other.pmcid), review=other.is_review, score=score, origins=origins, shared_terms=shared,
    )


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
    return [n for n in dict.fromkeys(n.strip() for n in names) if n]


def build_taxonomies(articles: Sequence[Article], taxonomies: Sequence[str]):
    """Group articles by term; names that slug alike ('T-Cells', 't cells') are one term."""
    result: dict[str, tuple[Term, ...]] = {}
    slugs: dict[tuple[str, str], str] = {}
    for taxonomy in taxonomies:
        members: dict[str, dict[str, None]] = defaultdict(dict)  # ordered sets: newest first
        spellings: dict[str, Counter] = defaultdict(Counter)
        for article in articles:
            for name in article_terms(article, taxonomy):
                slug = name if taxonomy == "years" else slugify(name)
                slugs[(taxonomy, name)] = slug
                spellings[slug][name] += 1
                members[slug][article.id] = None
        terms = [
            Term(taxonomy=taxonomy, name=min(spellings[s].items(), key=lambda kv: (-kv[1], kv[0]))[0],
                 slug=s, article_ids=tuple(ids))
            for s, ids in members.items()
        ]
        if taxonomy == "years":
            terms.sort(key=lambda t: t.slug, reverse=True)
        else:
            terms.sort(key=lambda t: (t.name.casefold(), t.slug))
        result[taxonomy] = tuple(terms)
    return result, slugs
