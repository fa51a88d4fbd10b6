"""Similar articles: for every article of a digest, its most similar other articles.

PLACEHOLDER: design and measured figures are filled in once measured.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np
import scipy.sparse as sp

from generator.model import Article

FIELDS = ("title", "abstract", "mesh", "keywords")

# Share of the score each kind of evidence can carry (squared weights of the combined vector).
_BLOCK_SHARES = {"text": 0.5, "mesh": 0.35, "keywords": 0.15}
_MAJOR_WEIGHT = 2.0  # a major-topic MeSH heading counts this much more than a minor one
_PAIR_WEIGHT = 0.5  # descriptor/qualifier pairs, relative to their descriptor
_TITLE_REPEAT = 2  # pmra counts title words twice

# Profile lengths tried, longest first (None: every term); the longest that fits the work budget wins.
_PROFILE_LENGTHS: tuple[int | None, ...] = (None, 64, 48, 32, 24, 16, 12, 8)
_WORK_PER_ARTICLE = 5_000  # multiply-adds of the similarity product, on average per article
_WORK_FLOOR = 20_000_000  # small digests may always spend this much (a fraction of a second)
_BLOCK_WORK = 1 << 20  # multiply-adds per row block: bounds each block's memory
_BLOCK_ROWS = 4096
_SCALE = 10_000  # scores are kept as integers of 1e-4, so output bytes do not depend on float noise
_BUCKET_SHIFT = 4  # coarse score buckets (16e-4 wide) used to pre-select each row's best
_MAX_SHARED = 5

# PubMed's stopword list (PubMed Help, "Stopwords").
STOPWORDS = frozenset(
    """a about again all almost also although always among an and another any are as at be because
    been before being between both but by can could did do does done due during each either enough
    especially etc for found from further had has have having here how however i if in into is it its
    itself just kg km made mainly make may mg might ml mm most mostly must nearly neither no nor
    obtained of often on our overall perhaps pmid quite rather really regarding seem seen several
    should show showed shown shows significantly since so some such than that the their theirs them
    then there therefore these they this those through thus to upon use used using various very was
    we were what when which while with within without would""".split()
)


@dataclass(frozen=True)
class SimilarityConfig:
    """How neighbours are computed (`similar:` in digest.yaml).

    `min_score` is a cosine in [0, 1]. The default, 0.1, drops pairs that share only a few common
    words: on the synthetic benchmark corpus, unrelated articles score PLACEHOLDER while articles of the
    same topic score PLACEHOLDER.
    """

    count: int = 5
    min_score: float = 0.1
    fields: tuple[str, ...] = FIELDS

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", tuple(self.fields))
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 0:
            raise ValueError(f"similar.count must be a non-negative integer, got {self.count!r}")
        if not 0.0 <= self.min_score <= 1.0:
            raise ValueError(f"similar.min_score must be between 0 and 1, got {self.min_score!r}")
        unknown = [f for f in self.fields if f not in FIELDS]
        if unknown:
            raise ValueError(f"similar.fields: unknown {unknown}; choose from {list(FIELDS)}")


@dataclass(frozen=True)
class Neighbour:
    """A similar article: its id, the cosine score (4 decimals) and the subject terms both share."""

    id: str
    score: float
    shared_terms: tuple[str, ...] = ()


def compute_neighbours(
    articles: Sequence[Article], config: SimilarityConfig
) -> dict[str, tuple[Neighbour, ...]]:
    """Return each article's most similar other articles, best first, ties broken by id."""
    ordered = sorted(articles, key=lambda a: a.id)
    _check_unique_ids(ordered)
    result: dict[str, tuple[Neighbour, ...]] = {a.id: () for a in ordered}
    if len(ordered) < 2 or config.count == 0:
        return result
    vectors = build_vectors(ordered, config.fields)
    profiles = truncate_profiles(vectors.matrix)
    min_units = max(1, math.ceil(round(config.min_score * _SCALE, 6)))
    src, dst, units = top_pairs(profiles, config.count, min_units)
    shared = shared_terms(vectors, src, dst)
    ids = [a.id for a in ordered]
    neighbours = [
        Neighbour(ids[j], u / _SCALE, terms)
        for j, u, terms in zip(dst.tolist(), units.tolist(), shared)
    ]
    bounds = np.searchsorted(src, np.arange(len(ordered) + 1)).tolist()
    for row, (lo, hi) in enumerate(zip(bounds, bounds[1:])):
        if hi > lo:
            result[ids[row]] = tuple(neighbours[lo:hi])
    return result


def _check_unique_ids(ordered: Sequence[Article]) -> None:
    for before, after in zip(ordered, ordered[1:]):
        if before.id == after.id:
            raise ValueError(f"duplicate article id {after.id!r}")


# ---------------------------------------------------------------------------------------------
# Term vectors


@dataclass(frozen=True)
class TermVectors:
    """Unit-length weighted term vectors, one row per article (in id order).

    `labels[c]` is the display form of column c when it is a MeSH descriptor or a keyword (the terms
    shown as shared), None for words and descriptor/qualifier pairs.
    """

    matrix: sp.csr_matrix
    labels: tuple[str | None, ...]


def build_vectors(articles: Sequence[Article], fields: Iterable[str]) -> TermVectors:
    """Return the articles' combined text, MeSH and keyword vectors."""
    fields = set(fields)
    blocks: list[tuple[sp.csr_matrix, list[str | None], float]] = []
    if fields & {"title", "abstract"}:
        counts = word_counts(articles, "title" in fields, "abstract" in fields)
        counts.data = 1.0 + np.log(counts.data)  # sublinear tf, as in most TF-IDF variants
        blocks.append((counts, [None] * counts.shape[1], _BLOCK_SHARES["text"]))
    if "mesh" in fields:
        blocks.append((*subject_terms(articles, _mesh_weights), _BLOCK_SHARES["mesh"]))
    if "keywords" in fields:
        blocks.append((*subject_terms(articles, _keyword_weights), _BLOCK_SHARES["keywords"]))
    if not blocks:
        return TermVectors(sp.csr_matrix((len(articles), 0)), ())
    weighted = [_unit_rows(_times_idf(m)) * math.sqrt(share) for m, _, share in blocks]
    matrix = _unit_rows(sp.hstack(weighted, format="csr"))
    labels = tuple(chain.from_iterable(lab for _, lab, _ in blocks))
    return TermVectors(matrix, labels)


# For ASCII text, a bytes table lowercases letters and blanks everything but letters and digits: the
# same words as the regular expression, several times faster.
_ASCII_WORD_BYTES = bytes(
    ord(chr(c).lower()) if chr(c).isalnum() else ord(" ") for c in range(128)
) + bytes(range(128, 256))
_WORD = re.compile(r"[^\W_]+")


def _word_bytes(text: str) -> bytes:
    """Return `text` lowercased with every run of non-word characters turned into spaces.

    Words are runs of letters and digits (pmra's words, before filtering). NUL never survives, so it
    can separate articles in one stream.
    """
    if text.isascii():
        return text.encode("ascii").translate(_ASCII_WORD_BYTES)
    return " ".join(_WORD.findall(text.casefold())).encode("utf-8")


def stem(word: str) -> str:
    """Strip an English plural ending (Harman's S-stemmer), so 'cells' and 'cell' match."""
    if len(word) < 4 or word[-1] != "s" or word.endswith(("us", "ss", "is")):
        return word
    if word.endswith("ies") and not word.endswith(("eies", "aies")):
        return word[:-3] + "y"
    if word.endswith("es") and not word.endswith(("aes", "ees", "oes")):
        return word[:-1]
    return word[:-1]


_ARTICLE_BREAK = b"\x00"
_BREAK_COLUMN = -2
_CHUNK = 256  # articles tokenised together


class _WordColumns(dict):
    """Map each distinct token (bytes) to its term column, or -1 when ignored; each is examined once."""

    def __init__(self) -> None:
        super().__init__({_ARTICLE_BREAK: _BREAK_COLUMN})
        self.terms: dict[str, int] = {}

    def __missing__(self, token: bytes) -> int:
        word = token.decode("utf-8")
        column = -1
        if word not in STOPWORDS and any(ch.isalpha() for ch in word):
            column = self.terms.setdefault(stem(word), len(self.terms))
        self[token] = column
        return column


def word_counts(articles: Sequence[Article], title: bool, abstract: bool) -> sp.csr_matrix:
    """Return term counts per article: title words twice (as pmra does), abstract words once."""
    columns = _WordColumns()
    chunks = [
        _chunk_columns(articles[lo : lo + _CHUNK], title, abstract, columns)
        for lo in range(0, len(articles), _CHUNK)
    ]
    cols = np.concatenate([c for c, _ in chunks]) if chunks else np.zeros(0, dtype=np.int64)
    lengths = np.concatenate([n for _, n in chunks]) if chunks else np.zeros(0, dtype=np.int64)
    indptr = np.zeros(len(articles) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    shape = (len(articles), len(columns.terms))
    counts = sp.csr_matrix((np.ones(len(cols)), cols, indptr), shape=shape)
    counts.sum_duplicates()  # one entry per (article, term), holding the count
    return counts


def _chunk_columns(
    articles: Sequence[Article], title: bool, abstract: bool, columns: _WordColumns
) -> tuple[np.ndarray, np.ndarray]:
    """Return the term columns of some articles' words, and how many each article has.

    The chunk goes through one split and one map (per-article calls cost more than the words);
    chunking bounds the memory the token objects take.
    """
    texts = []
    for article in articles:
        parts = [article.title] * _TITLE_REPEAT if title else []
        if abstract:
            parts.extend(section.text for section in article.abstract)
        texts.append(_word_bytes(" ".join(parts)))
    stream = (b" " + _ARTICLE_BREAK + b" ").join(texts).split()
    cols = np.fromiter(map(columns.__getitem__, stream), dtype=np.int64, count=len(stream))
    rows = np.cumsum(cols == _BREAK_COLUMN)
    kept = cols >= 0
    return cols[kept], np.bincount(rows[kept], minlength=len(articles))


class _SubjectColumns:
    """Columns of whole subject terms (MeSH descriptors, descriptor/qualifier pairs, keywords).

    Terms match ignoring case and spacing; a label is the term as first written (in id order, so it
    does not depend on input order). Pairs get no label: their descriptor is what users see.
    """

    def __init__(self) -> None:
        self.labels: list[str | None] = []
        self._columns: dict[str, int] = {}
        self._raw: dict[tuple[str, str], int] = {}  # cache of (kind, text as written) -> column

    def column(self, kind: str, text: str) -> int:
        """Return the column of a term (-1 for a blank one)."""
        column = self._raw.get((kind, text))
        if column is None:
            column = self._raw[(kind, text)] = self._new_column(kind, text)
        return column

    def _new_column(self, kind: str, text: str) -> int:
        shown = " ".join(text.split())
        if not shown.strip("/"):
            return -1
        key = f"{kind}:{shown.casefold()}"
        column = self._columns.get(key)
        if column is None:
            column = self._columns[key] = len(self.labels)
            self.labels.append(None if kind == "pair" else shown)
        return column


def _add_term(weights: dict[int, float], column: int, weight: float) -> None:
    """Record a term once per article, with the highest weight it was given."""
    if column >= 0 and weights.get(column, 0.0) < weight:
        weights[column] = weight


def _mesh_weights(article: Article, columns: _SubjectColumns, weights: dict[int, float]) -> None:
    for heading in article.mesh_terms:
        major = heading.major or any(q.major for q in heading.qualifiers)
        weight = _MAJOR_WEIGHT if major else 1.0
        _add_term(weights, columns.column("mesh", heading.descriptor), weight)
        for qualifier in heading.qualifiers:
            pair = f"{heading.descriptor}/{qualifier.name}"
            _add_term(weights, columns.column("pair", pair), weight * _PAIR_WEIGHT)


def _keyword_weights(article: Article, columns: _SubjectColumns, weights: dict[int, float]) -> None:
    for keyword in article.keywords:
        _add_term(weights, columns.column("keyword", keyword), 1.0)


def subject_terms(articles: Sequence[Article], add_terms) -> tuple[sp.csr_matrix, list[str | None]]:
    """Return whole-term weights per article (from `add_terms`) and the columns' labels."""
    columns = _SubjectColumns()
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    for row, article in enumerate(articles):
        weights: dict[int, float] = {}
        add_terms(article, columns, weights)
        rows.extend([row] * len(weights))
        cols.extend(weights)
        vals.extend(weights.values())
    shape = (len(articles), len(columns.labels))
    matrix = sp.csr_matrix((vals, (rows, cols)), shape=shape, dtype=np.float64)
    return matrix, columns.labels


def _times_idf(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """Multiply by BM25's idf, which is near 0 for a term every article has and never negative."""
    n = matrix.shape[0]
    df = np.bincount(matrix.indices, minlength=matrix.shape[1])
    idf = np.log1p((n - df + 0.5) / (df + 0.5))
    out = matrix.copy()
    out.data = out.data * idf[out.indices]
    return out


def _unit_rows(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """Scale each row to unit length (empty rows stay empty)."""
    matrix = sp.csr_matrix(matrix, dtype=np.float64, copy=True)
    matrix.eliminate_zeros()
    norms = np.sqrt(_row_sums(matrix.data**2, matrix.indptr))
    inverse = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    matrix.data *= np.repeat(inverse, np.diff(matrix.indptr))
    return matrix


def _row_sums(values: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    """Return the sum of `values` over each CSR row (0 for empty rows)."""
    sums = np.add.reduceat(np.append(values, 0), indptr[:-1])
    sums[np.diff(indptr) == 0] = 0
    return sums


# ---------------------------------------------------------------------------------------------
# Profiles and the similarity product


def truncate_profiles(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """Keep each row's heaviest terms, as many as the work budget allows, and rescale to unit length.

    The product costs sum(df^2) multiply-adds: common terms dominate it while adding little to a
    cosine. Small digests keep every term and get exact cosines.
    """
    n = matrix.shape[0]
    budget = max(_WORK_FLOOR, _WORK_PER_ARTICLE * n)
    rank = _rank_within_rows(matrix)
    chosen = _PROFILE_LENGTHS[-1]
    for length in _PROFILE_LENGTHS:
        kept = matrix.indices if length is None else matrix.indices[rank < length]
        df = np.bincount(kept, minlength=matrix.shape[1]).astype(np.float64)
        if float(df @ df) <= budget:
            chosen = length
            break
    if chosen is None:
        return matrix
    profile = matrix.copy()
    profile.data = np.where(rank < chosen, profile.data, 0.0)
    return _unit_rows(profile)


def _rank_within_rows(matrix: sp.csr_matrix) -> np.ndarray:
    """Return each entry's rank in its row, heaviest first.

    Weights are compared at 2^-40 resolution; closer ones tie and keep column order (CSR keeps
    columns sorted and the sort is stable), so ranks are deterministic.
    """
    matrix.sort_indices()
    rows = np.repeat(np.arange(matrix.shape[0], dtype=np.int64), np.diff(matrix.indptr))
    lightness = ((1.0 - np.clip(matrix.data, 0.0, 1.0)) * float(1 << 40)).astype(np.int64)
    order = np.argsort((rows << 41) | lightness, kind="stable")
    rank = np.empty(matrix.nnz, dtype=np.int64)
    rank[order] = np.arange(matrix.nnz) - matrix.indptr[rows[order]]
    return rank


def top_pairs(
    profiles: sp.csr_matrix, count: int, min_units: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (source, neighbour, score in 1e-4 units) arrays, by source then rank.

    Cosines come from `profiles @ profiles.T` computed a block of rows at a time, so memory stays
    proportional to the block, never to n^2.
    """
    transposed = profiles.T.tocsr()
    df = np.diff(transposed.indptr)
    work = _row_sums(df[profiles.indices], profiles.indptr)  # upper bound of each row's product
    parts = [
        _select_block(profiles[lo:hi] @ transposed, lo, count, min_units)
        for lo, hi in _row_blocks(work)
    ]
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    return tuple(np.concatenate(arrays) for arrays in zip(*parts))  # type: ignore[return-value]


def _row_blocks(work: np.ndarray) -> list[tuple[int, int]]:
    """Split rows into consecutive blocks of about _BLOCK_WORK multiply-adds (at least one row)."""
    blocks = []
    cumulative = np.cumsum(work)
    lo, n = 0, len(work)
    while lo < n:
        base = cumulative[lo - 1] if lo else 0
        hi = int(np.searchsorted(cumulative, base + _BLOCK_WORK, side="right"))
        hi = min(max(hi, lo + 1), lo + _BLOCK_ROWS, n)
        blocks.append((lo, hi))
        lo = hi
    return blocks


def _select_block(
    scores: sp.csr_matrix, offset: int, count: int, min_units: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keep each row's `count` best columns by (rounded score desc, column asc), itself excluded."""
    nrows = scores.shape[0]
    rows = np.repeat(np.arange(nrows, dtype=np.int32), np.diff(scores.indptr))
    units = (scores.data * _SCALE + 0.5).astype(np.int32)  # round half up to 1e-4
    # +1: the article itself (score 1) is among the best until removed below.
    picked = _best_buckets(rows, units, nrows, count + 1)
    rows, cols, units = rows[picked], scores.indices[picked].astype(np.int64), units[picked]
    keep = (units >= min_units) & (cols != rows + offset)
    rows, cols, units = rows[keep], cols[keep], units[keep]
    order = np.lexsort((cols, -units, rows))
    rows, cols, units = rows[order], cols[order], units[order]
    starts = np.searchsorted(rows, np.arange(nrows))
    best = np.arange(len(rows)) - starts[rows] < count
    return rows[best].astype(np.int64) + offset, cols[best], units[best].astype(np.int64)


def _best_buckets(rows: np.ndarray, units: np.ndarray, nrows: int, count: int) -> np.ndarray:
    """Return the positions of entries in each row's top score buckets holding >= `count` entries.

    Coarse buckets (16e-4 wide) let one linear pass discard most candidates; sorting every
    candidate of every row costs several times more.
    """
    buckets = units >> _BUCKET_SHIFT
    width = (_SCALE >> _BUCKET_SHIFT) + 2
    histogram = np.bincount(rows * width + buckets, minlength=nrows * width).reshape(nrows, width)
    from_top = np.cumsum(histogram[:, ::-1], axis=1)
    floor = (width - 1 - (from_top < count).sum(axis=1)).astype(np.int32)
    return np.flatnonzero(buckets >= floor[rows])


# ---------------------------------------------------------------------------------------------
# Shared terms


def shared_terms(vectors: TermVectors, src: np.ndarray, dst: np.ndarray) -> list[tuple[str, ...]]:
    """Return, per pair, up to 5 MeSH descriptors and keywords both share, most informative first.

    Informative means a larger contribution to the pair's score (rarer, major-topic terms first);
    ties go by label. A keyword spelled like a shared descriptor is shown once.
    """
    shown = np.array([label is not None for label in vectors.labels], dtype=bool)
    if not len(src) or not shown.any():
        return [()] * len(src)
    columns = np.flatnonzero(shown)
    labels = [vectors.labels[c] for c in columns]
    display = vectors.matrix[:, columns]
    both = display[src].multiply(display[dst]).tocsr()
    both.eliminate_zeros()
    rows = np.repeat(np.arange(both.shape[0]), np.diff(both.indptr))
    group, label_rank = _label_groups(labels)
    order = _order_within_rows(rows, both.data, label_rank[both.indices])
    rows, cols = rows[order], both.indices[order]
    _, first = np.unique(rows * (group.max() + 1) + group[cols], return_index=True)
    first.sort()  # the first (heaviest) entry of each group, back in order
    rows, cols = rows[first], cols[first]
    starts = np.searchsorted(rows, np.arange(len(src) + 1))
    top = np.arange(len(rows)) - starts[rows] < _MAX_SHARED
    rows, chosen = rows[top], np.array(labels, dtype=object)[cols[top]]
    bounds = np.searchsorted(rows, np.arange(len(src) + 1))
    return [tuple(chosen[lo:hi]) for lo, hi in zip(bounds[:-1], bounds[1:])]


def _order_within_rows(rows: np.ndarray, weights: np.ndarray, ties: np.ndarray) -> np.ndarray:
    """Return the order by row, then weight descending, then `ties` ascending (np.lexsort is slower).

    Weights (in [0, 1]) closer than about 1e-10 count as equal.
    """
    by_tie = np.argsort(ties, kind="stable")
    key = rows[by_tie] + 0.5 * (1.0 - np.clip(weights[by_tie], 0.0, 1.0))
    return by_tie[np.argsort(key, kind="stable")]


def _label_groups(labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Return, per label, a group id (equal ignoring case) and its rank in sorted order."""
    order = sorted(range(len(labels)), key=lambda i: (labels[i].casefold(), labels[i]))
    rank = np.empty(len(labels), dtype=np.int64)
    rank[order] = np.arange(len(labels))
    groups: dict[str, int] = {}
    group = np.array([groups.setdefault(label.casefold(), len(groups)) for label in labels])
    return group, rank
