"""Similar articles: for every article of a digest, its most similar other articles.

PubMed's "Similar articles" list only what PubMed links to; this finds neighbours inside the digest,
in the spirit of pmra (FORMATS.md 1f): a TF-IDF cosine over words and subject terms.

Terms
    Words are runs of two or more letters and digits holding a letter, lowercased, minus PubMed's
    stopwords, with plurals stripped (Harman's S-stemmer). Title words count twice. A MeSH
    descriptor is one term (a major topic weighs 2x), each descriptor/qualifier pair is one more
    at half weight, a keyword is one term. Authors and journals are not used (nor by pmra).
Weights
    Words: (1 + ln tf) x idf; subject terms: their weight x idf. BM25's idf,
    ln(1 + (n - df + 0.5) / (df + 0.5)), is near 0 for a term every article has and never
    negative, so a digest of two articles still scores. Text, MeSH and keywords are each scaled to
    unit length with a share of the score (0.5, 0.35, 0.15), then the whole vector is scaled to
    unit length, so an article without abstract or MeSH is compared on what it has.
Profiles
    X @ X.T costs sum(df^2) multiply-adds and common words dominate it: 42 n^2 on the benchmark
    corpus, 4e9 at 10,000 articles. So each article keeps its heaviest terms, as many as a budget
    of max(2e7, 5,000 n) multiply-adds allows, rescaled to unit length: every term in small
    digests (exact cosines), 48 at 2,000 articles, 16 at 10,000, 8 at 100,000. (Lucene's
    MoreLikeThis likewise queries with a document's 25 best terms.)
Neighbours
    profiles @ profiles.T in scipy.sparse, a block of rows at a time (about 1M multiply-adds), so
    memory follows the block, never n^2. In each row, a histogram of 16e-4-wide score buckets finds
    the cut-off for the `count` best in one linear pass, and only those are sorted, by (score
    rounded to 4 decimals desc, id asc). argpartition would need dense rows, n values each (1e10 at
    100,000 articles) at 4 to 75 ns a value (slowest when many values tie, as zeros do), and which
    of tied values it keeps is unspecified.
Threshold
    A neighbour scores at least `min_score`; `auto` (the default) is a fifth of the median of the
    articles' best scores, rounded down to 0.01 (`auto_units`), because what a related paper scores
    depends on the digest: 0.14-0.15 on the synthetic corpus of 30 topics, 0.04 on the example digest,
    whose articles all share the words of one topic (see `SimilarityConfig`).

Measured with benchmarks/similarity.py (synthetic corpus, 30 topics; count 5, min_score 0.15) on a
2-core Xeon VM that other jobs kept busy (load average 3 to 8: wall time ran up to 2x CPU time).
Memory: ru_maxrss added by the call in a fresh process (tracemalloc peak in brackets).
       n   wall s   CPU s   build_vectors CPU s   memory MB   profile   same-topic share
   2,000     0.56    0.56           0.16            23 (16)       48         1.0000
  10,000     2.08    1.51           0.70            82 (73)       16         1.0000
 100,000    49.8     30.1           9.6            717            8         1.0000
Over all runs, 10,000 took 1.8 to 2.2 s wall (1.2 to 1.95 s CPU); 100,000 took 50 to 75 s wall
(30 to 35 s CPU).
- Baseline, naive pure Python (dicts, an inverted index, exact cosines of the full vectors, same
  terms): 38 to 44 s at 2,000 articles, 50 to 85x slower. compute_neighbours finds 88.8% of its
  exact top 5; the others it picks are near-ties, their exact cosines summing to 99.91% of the
  best possible. At 10,000 that ratio is 0.936, 0.958, 0.976, 0.990 and 0.999 for profiles of 8,
  16, 24, 32 and 48 terms, all with same-topic share 1.0000 (0.9999 at 8).
- Tiny digests, scipy against the naive dicts: 10 articles 3 to 8 ms against 3 to 5; 30: 5 to
  10 against 8 to 15; 100: 13 to 42 against 47 to 105; 300: 41 to 79 against 480 to 906. So
  there is one code path, with no plain-Python branch for small digests.
- Light stemming moved precision@50 by at most 0.3 points on this corpus (title only, or 40
  abstract words only). It stays, for real text, where plurals vary more.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from generator.load import collector_paused
from generator.similarity_settings import FIELDS, PARALLEL_ROWS, SimilarityConfig  # noqa: F401 - also from here
from generator.model import Article
from generator.workers import can_fork, idle_cores, map_with_workers


_SHARES = {"text": 0.5, "mesh": 0.35, "keywords": 0.15}  # of the squared length of a vector
_MAJOR_WEIGHT = 2.0  # a major-topic MeSH heading, relative to a minor one
_PAIR_WEIGHT = 0.5  # a descriptor/qualifier pair, relative to its descriptor
_TITLE_REPEAT = 2  # pmra counts title words twice
_MAX_SHARED = 5

# Profile lengths tried, longest first (None: every term). The longest within budget wins.
_PROFILE_LENGTHS: tuple[int | None, ...] = (None, 64, 48, 32, 24, 16, 12, 8)
_WORK_PER_ARTICLE = 5_000  # multiply-adds of the product, on average per article
_WORK_FLOOR = 20_000_000  # any digest may spend this much (about 0.2 s)
_BLOCK_WORK = 1 << 20  # multiply-adds per block of rows: bounds the block's memory
_BLOCK_ROWS = 4096  # and rows per block: bounds the histogram
_SCALE = 10_000  # scores are handled as integers of 1e-4 so that output bytes are stable
_BUCKET_SHIFT = 4  # histogram buckets are 16e-4 wide
_CHUNK = 256  # articles tokenised together

# PubMed's stopwords (PubMed Help, "Stopwords").
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
class Neighbour:
    """A similar article: its id, the score (4 decimals) and the subject terms both share."""

    id: str
    score: float
    shared_terms: tuple[str, ...] = ()


def compute_neighbours(
    articles: Sequence[Article], config: SimilarityConfig
) -> dict[str, tuple[Neighbour, ...]]:
    """Return every article's most similar other articles, best first, ties broken by id."""
    ordered = sorted(articles, key=lambda article: article.id)
    _check_unique_ids(ordered)
    result: dict[str, tuple[Neighbour, ...]] = {article.id: () for article in ordered}
    if len(ordered) < 2 or config.count == 0:
        return result
    with collector_paused():
        _fill_neighbours(result, ordered, config)
    return result


def _fill_neighbours(
    result: dict[str, tuple[Neighbour, ...]], ordered: Sequence[Article], config: SimilarityConfig
) -> None:
    """Put each article's neighbours in `result` (articles in id order)."""
    vectors = build_vectors(ordered, config.fields)
    pairs, _ = thresholded_pairs(truncate_profiles(vectors.matrix), config)
    result.update(neighbours_by_row([article.id for article in ordered], pairs, shared_terms(vectors, *pairs[:2])))


def min_units(config: SimilarityConfig) -> int | None:
    """Return `config.min_score` in units of 1e-4, at least 1 (a score rounded to 0 never counts);
    None for `min_score: auto` (see `auto_units`)."""
    if config.min_score is None:
        return None
    return min(max(1, math.ceil(round(config.min_score * _SCALE, 6))), _SCALE + 1)


def thresholded_pairs(profiles: sp.csr_matrix, config: SimilarityConfig
                      ) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], int]:
    """Return `top_pairs` at the digest's threshold, and the threshold (units of 1e-4)."""
    units = min_units(config)
    if units is not None:
        return top_pairs(profiles, config.count, units), units
    pairs = top_pairs(profiles, config.count, 1)
    units = auto_units(pairs, profiles.shape[0])
    return pairs_scoring_at_least(pairs, units), units


def auto_units(pairs: tuple[np.ndarray, np.ndarray, np.ndarray], rows: int) -> int:
    """Return `min_score: auto` in units of 1e-4: a fifth of the median of the rows' best scores
    (0 for a row without neighbours; the lower median), rounded down to 0.01, at least 1 unit.

    Pairs kept at a threshold t give the same value as all pairs whenever that value is t: rows
    cut off had best scores below t, so the median is unchanged while it is at least t (a fifth
    of it then is below t unless t is 1 unit, where nothing was cut)."""
    src, _, units = pairs
    best = np.zeros(rows, dtype=np.int64)
    if len(src):
        firsts = np.flatnonzero(np.r_[True, src[1:] != src[:-1]])  # pairs come by row, best first
        best[src[firsts]] = units[firsts]
    median = int(np.sort(best)[(rows - 1) // 2]) if rows else 0
    return max(1, median // 5 // 100 * 100)


def pairs_scoring_at_least(pairs: tuple[np.ndarray, np.ndarray, np.ndarray], min_units: int
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the pairs scoring at least `min_units` (in the same order)."""
    keep = pairs[2] >= min_units
    return pairs[0][keep], pairs[1][keep], pairs[2][keep]


def neighbours_by_row(ids: Sequence[str], pairs: tuple[np.ndarray, np.ndarray, np.ndarray],
                      shared: Sequence[tuple[str, ...]], rows: np.ndarray | None = None
                      ) -> dict[str, tuple[Neighbour, ...]]:
    """Return each row's neighbours (only `rows`' when given) from `top_pairs`-style pairs sorted by
    row and their shared terms."""
    src, dst, units = pairs
    found = [Neighbour(ids[j], u / _SCALE, terms) for j, u, terms in zip(dst.tolist(), units.tolist(), shared)]
    wanted = np.arange(len(ids), dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
    starts = np.searchsorted(src, wanted).tolist()
    ends = np.searchsorted(src, wanted, side="right").tolist()
    return {ids[row]: tuple(found[lo:hi]) for row, lo, hi in zip(wanted.tolist(), starts, ends)}


def _check_unique_ids(ordered: Sequence[Article]) -> None:
    for before, after in zip(ordered, ordered[1:]):
        if before.id == after.id:
            raise ValueError(f"duplicate article id {after.id!r}")


# -------------------------------------------------------------------------------------------------
# Term vectors


@dataclass(frozen=True)
class TermVectors:
    """Unit-length term vectors, one row per article, in the order given.

    `labels[c]` is how column c is shown when it is a MeSH descriptor or a keyword; None for words
    and descriptor/qualifier pairs, which are never shown as shared terms. `keys[c]` names column
    c's term within its `Vocabulary` (part << 40 | term id), so two builds' columns can be matched.
    """

    matrix: sp.csr_matrix
    labels: tuple[str | None, ...]
    keys: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    idf: np.ndarray = field(default_factory=lambda: np.zeros(0))  # per column


def build_vectors(articles: Sequence[Article], fields: Iterable[str] = FIELDS) -> TermVectors:
    """Return the articles' weighted text, MeSH and keyword terms as one vector each."""
    vocabulary = Vocabulary(fields)
    return vocabulary.vectors(vocabulary.extract(articles))


@dataclass(frozen=True)
class _Layout:
    """The columns of a digest's vectors: per part (name, term ids, idf), and over all parts each
    column's label, key and idf (see `TermVectors`)."""

    parts: tuple[tuple[str, np.ndarray, np.ndarray], ...]
    labels: tuple[str | None, ...]
    keys: np.ndarray
    idf: np.ndarray


def _in_columns(matrix: sp.csr_matrix, ids: np.ndarray) -> sp.csr_matrix:
    """Return `matrix` (columns: term ids) with column c holding term ids[c], as float64."""
    column = np.full(matrix.shape[1], -1, dtype=np.int32)
    column[ids] = np.arange(len(ids), dtype=np.int32)
    placed = sp.csr_matrix((matrix.data.astype(np.float64), column[matrix.indices], matrix.indptr.copy()),
                           shape=(matrix.shape[0], len(ids)))
    placed.sort_indices()  # a check only: the rows were put in this order by `extract`
    return placed


def _weigh(matrix: sp.csr_matrix, idf: np.ndarray, share: float) -> sp.csr_matrix:
    """Multiply by idf, scale rows to unit length, then to the block's share of the score."""
    matrix.data *= idf[matrix.indices]
    weighted = _unit_rows(matrix)
    weighted.data *= math.sqrt(share)
    return weighted


def spliced_rows(old: sp.csr_matrix, rows: np.ndarray, made: sp.csr_matrix, moved: np.ndarray,
                 columns: int) -> sp.csr_matrix:
    """Return `old` (sorted indices) with its rows `rows` (sorted) replaced by those of `made`, and
    the other rows' columns renumbered by `moved` (old column -> new, see `column_map`; it keeps
    their order): the runs of kept rows are copied whole (an edit's few rows of 10,000)."""
    identity = len(moved) == columns and bool((moved == np.arange(len(moved))).all())
    old_indices = old.indices if identity else moved[old.indices].astype(old.indices.dtype)
    data: list[np.ndarray] = []
    indices: list[np.ndarray] = []
    starts, made_starts = old.indptr.tolist(), made.indptr.tolist()
    start = 0
    for position, row in enumerate(rows.tolist()):
        kept = slice(starts[start], starts[row])
        fresh = slice(made_starts[position], made_starts[position + 1])
        data += (old.data[kept], made.data[fresh])
        indices += (old_indices[kept], made.indices[fresh])
        start = row + 1
    data.append(old.data[starts[start]:])
    indices.append(old_indices[starts[start]:])
    lengths = np.diff(old.indptr)
    lengths[rows] = np.diff(made.indptr)
    indptr = np.zeros(old.shape[0] + 1, dtype=old.indptr.dtype)
    np.cumsum(lengths, out=indptr[1:])
    matrix = sp.csr_matrix((np.concatenate(data), np.concatenate(indices).astype(old.indices.dtype), indptr),
                           shape=(old.shape[0], columns))
    matrix.has_sorted_indices = True
    return matrix


def column_map(old_keys: np.ndarray, new_keys: np.ndarray) -> np.ndarray:
    """Return, per old column, the new column of the same term (-1 when gone)."""
    order = np.argsort(new_keys, kind="stable")
    ranked = new_keys[order]
    at = np.minimum(np.searchsorted(ranked, old_keys), max(len(ranked) - 1, 0))
    if not len(ranked):
        return np.full(len(old_keys), -1, dtype=np.int64)
    return np.where(ranked[at] == old_keys, order[at], -1)


def _unit_rows(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """Return a float64 copy with each non-empty row scaled to unit length."""
    matrix = sp.csr_matrix(matrix, dtype=np.float64, copy=True)
    matrix.eliminate_zeros()
    norms = np.sqrt(_row_sums(matrix.data**2, matrix.indptr))
    inverse = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    matrix.data *= np.repeat(inverse, np.diff(matrix.indptr))
    return matrix


def _row_sums(values: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    """Return the sum of `values` over each CSR row (0 for an empty row).

    Each sum adds the row's own entries and nothing else, wherever the row is: numpy sums a run
    pairwise in blocks that depend on its length, so a row summed with a trailing zero (as the last
    row once was) could differ in its last bit from the same row elsewhere, and a row's vector must
    not depend on the rows around it (`Vocabulary.updated_vectors` makes some rows alone)."""
    sums = np.zeros(len(indptr) - 1)
    filled = np.flatnonzero(np.diff(indptr))
    if len(filled):
        sums[filled] = np.add.reduceat(values, indptr[:-1][filled])
    return sums


# Words: a byte table lowercases ASCII letters and blanks other ASCII characters, several times
# faster than the regular expression.
_ASCII_WORD_BYTES = bytes(
    ord(chr(c).lower()) if chr(c).isalnum() else ord(" ") for c in range(128)
) + bytes(range(128, 256))
_WORD = re.compile(r"[^\W_]+")
_ARTICLE_BREAK = b"\x00"  # never left in a word, so it can separate articles in one stream
_BREAK_COLUMN = -2


def word_bytes(text: str) -> bytes:
    """Return `text` case-folded, as UTF-8, with each run of non-word characters made a space.

    The byte table handles ASCII; the few tokens left holding other characters (Greek letters,
    dashes, accents) go through the regular expression, which gives the same result.
    """
    if text.isascii():
        return text.encode("ascii").translate(_ASCII_WORD_BYTES)
    tokens = text.encode("utf-8", "surrogatepass").translate(_ASCII_WORD_BYTES).split()
    return b" ".join(token if token.isascii() else _unicode_words(token) for token in tokens)


def _unicode_words(token: bytes) -> bytes:
    return " ".join(_WORD.findall(token.decode("utf-8", "surrogatepass").casefold())).encode("utf-8")


def stem(word: str) -> str:
    """Strip an English plural ending (Harman's S-stemmer), so that 'cells' matches 'cell'."""
    if len(word) < 4 or word[-1] != "s" or word.endswith(("us", "ss", "is")):
        return word
    if word.endswith("ies") and not word.endswith(("eies", "aies")):
        return word[:-3] + "y"
    if word.endswith("es") and not word.endswith(("aes", "ees", "oes")):
        return word[:-1]
    return word[:-1]


_KEY_SHIFT = 40  # a column key is part << 40 | term id (part 0: words, 1: MeSH, 2: keywords)


@dataclass(frozen=True)
class ArticleTerms:
    """What `Vocabulary.extract` read from some articles, one row each; columns are term ids.

    Word counts; MeSH and keyword weights, with per entry the id of the spelling the article first
    wrote the term with (same structure as the weights). Rows can be taken and stacked, so that a
    digest's terms are those of the last build plus the articles read since (`NeighbourIndex`).
    """

    words: sp.csr_matrix
    mesh: sp.csr_matrix
    mesh_spellings: sp.csr_matrix
    keywords: sp.csr_matrix
    keyword_spellings: sp.csr_matrix

    def rows(self, take: np.ndarray) -> ArticleTerms:
        return ArticleTerms(*(matrix[take] for matrix in self._matrices()))

    def widened(self, vocabulary: Vocabulary) -> ArticleTerms:
        """Return the same rows with as many columns as the vocabulary has terms now."""
        words, subjects = len(vocabulary.word_names), len(vocabulary.subject_names)
        return ArticleTerms(*(_with_columns(m, words if i == 0 else subjects)
                              for i, m in enumerate(self._matrices())))

    @staticmethod
    def stacked(parts: Sequence[ArticleTerms]) -> ArticleTerms:
        return ArticleTerms(*(sp.vstack(matrices, format="csr") for matrices in zip(*(p._matrices() for p in parts))))

    def _matrices(self) -> tuple[sp.csr_matrix, ...]:
        return (self.words, self.mesh, self.mesh_spellings, self.keywords, self.keyword_spellings)


def _in_order(rank: np.ndarray, *matrices: sp.csr_matrix) -> tuple[sp.csr_matrix, ...]:
    """Return matrices of one structure with each row's entries ordered by `rank` of their column."""
    first = matrices[0]
    rows = np.repeat(np.arange(first.shape[0], dtype=np.int64), np.diff(first.indptr))
    order = np.argsort(rows * (len(rank) + 1) + rank[first.indices], kind="stable")
    found = []
    for matrix in matrices:
        ordered = sp.csr_matrix((matrix.data[order], matrix.indices[order], matrix.indptr.copy()), shape=matrix.shape)
        ordered.has_sorted_indices = False  # by rank, not by column id: let scipy check before relying on it
        found.append(ordered)
    return tuple(found)


def _with_columns(matrix: sp.csr_matrix, columns: int) -> sp.csr_matrix:
    if matrix.shape[1] == columns:
        return matrix
    return sp.csr_matrix((matrix.data, matrix.indices, matrix.indptr), shape=(matrix.shape[0], columns))


class Vocabulary:
    """Ids for the words and subject terms of articles, one per term, kept between builds by a
    `NeighbourIndex` so that an unchanged article is not read again.

    Ids only name terms, in the order they were first met; vector columns are ordered by the terms'
    text instead (words by their stem, subject terms by kind and case-folded text), so vectors, and
    the float sums made from them, do not depend on which articles a process read first.
    """

    def __init__(self, fields: Iterable[str] = FIELDS):
        self.fields = frozenset(fields)
        self.word_names: list[str] = []  # word id -> stem
        self.subject_names: list[str] = []  # subject id -> "kind:case-folded text"
        self.spellings: list[str | None] = [None]  # spelling id -> label (0: none, for pairs)
        self._tokens = _TokenIds(self)
        self._word_ids: dict[str, int] = {}
        self._subject_ids: dict[str, int] = {}
        self._spelling_ids: dict[str, int] = {}
        self._subjects_seen: dict[tuple[str, str], tuple[int, int]] = {}  # (kind, text) -> ids
        self._ranks: dict[str, tuple[int, np.ndarray]] = {}  # "words"/"subjects" -> (terms ranked, ranks)

    # Reading articles ----------------------------------------------------------------------------

    def extract(self, articles: Sequence[Article]) -> ArticleTerms:
        """Return the terms of `articles`, one row each, in the order given."""
        n = len(articles)
        words = (self._words(articles, "title" in self.fields, "abstract" in self.fields)
                 if self.fields & {"title", "abstract"} else sp.csr_matrix((n, 0)))
        empty = sp.csr_matrix((n, 0))
        mesh = self._subjects(articles, _add_mesh_terms) if "mesh" in self.fields else (empty, empty)
        keywords = self._subjects(articles, _add_keywords) if "keywords" in self.fields else (empty, empty)
        # Each row's terms in the order of their columns (by name, see `_columns`), so that a
        # digest's vectors need no sorting when made: that order never changes for terms already
        # known (a new term goes between them), and rows are taken and stacked as they are.
        words, = _in_order(self._rank("words"), words) if words.shape[1] else (words,)
        mesh = _in_order(self._rank("subjects"), *mesh) if mesh[0].shape[1] else mesh
        keywords = _in_order(self._rank("subjects"), *keywords) if keywords[0].shape[1] else keywords
        return ArticleTerms(words, *mesh, *keywords).widened(self)

    def word_id(self, token: bytes) -> int:
        return self._tokens[token]

    def subject_id(self, kind: str, text: str) -> tuple[int, int]:
        """Return the ids of a subject term and of its spelling; (-1, 0) for a blank one."""
        ids = self._subjects_seen.get((kind, text))
        if ids is None:
            ids = self._subjects_seen[kind, text] = self._new_subject(kind, text)
        return ids

    def _new_subject(self, kind: str, text: str) -> tuple[int, int]:
        shown = " ".join(text.split())
        if not shown:
            return -1, 0
        name = f"{kind}:{shown.casefold()}"
        term = self._subject_ids.setdefault(name, len(self._subject_ids))
        if term == len(self.subject_names):
            self.subject_names.append(name)
        if kind == "pair":
            return term, 0
        spelling = self._spelling_ids.setdefault(shown, len(self.spellings))
        if spelling == len(self.spellings):
            self.spellings.append(shown)
        return term, spelling

    def _words(self, articles: Sequence[Article], title: bool, abstract: bool) -> sp.csr_matrix:
        """Return word counts per article: title words twice (as pmra does), abstract words once."""
        chunks = [_chunk_words(articles[lo : lo + _CHUNK], title, abstract, self._tokens)
                  for lo in range(0, len(articles), _CHUNK)]
        ids = np.concatenate([np.zeros(0, dtype=np.int32)] + [c for c, _ in chunks])
        indptr = np.zeros(len(articles) + 1, dtype=np.int64)
        if chunks:
            np.cumsum(np.concatenate([lengths for _, lengths in chunks]), out=indptr[1:])
        counts = sp.csr_matrix((np.ones(len(ids)), ids, indptr), shape=(len(articles), len(self.word_names)))
        counts.sum_duplicates()  # one entry per (article, term), holding the count
        return counts

    def _subjects(self, articles: Sequence[Article], add_terms: _TermAdder) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """Return the subject-term weights per article that `add_terms` gives, and their spellings."""
        calls = _SubjectCalls(self)
        indptr = [0]
        terms: list[int] = []
        values: list[float] = []
        spellings: list[int] = []
        for article in articles:
            weights: dict[int, float] = {}
            calls.spellings = {}
            add_terms(article, calls, weights)
            for term in sorted(weights):
                terms.append(term)
                values.append(weights[term])
                spellings.append(calls.spellings[term])
            indptr.append(len(terms))
        shape = (len(articles), len(self.subject_names))
        structure = (np.array(terms, dtype=np.int32), np.array(indptr, dtype=np.int64))
        return (sp.csr_matrix((np.array(values, dtype=np.float64), *structure), shape=shape),
                sp.csr_matrix((np.array(spellings, dtype=np.int32), *structure), shape=shape))

    # Vectors --------------------------------------------------------------------------------------

    def vectors(self, terms: ArticleTerms) -> TermVectors:
        """Return the weighted, unit-length vectors of extracted terms (see the module docstring)."""
        layout = self._layout(terms)
        return TermVectors(self._weighted(terms, layout), layout.labels, layout.keys, layout.idf)

    def updated_vectors(self, terms: ArticleTerms, last: TermVectors, edited: np.ndarray,
                        most: float) -> tuple[TermVectors, np.ndarray, np.ndarray] | None:
        """Return `vectors(terms)` made from `last` (the vectors of the same articles before their
        rows `edited` changed), the new column of each of `last`'s (-1: gone) and the rows whose
        vector was made again; None when more than a share `most` of the rows would be.

        Every row's vector is made from that row's terms and the idf of its columns alone (each
        row sum adds the row's own entries, in order), so a row whose terms and idfs are unchanged
        keeps its vector bit for bit: its entries are `last`'s, in new columns. The others, the
        edited rows and those holding a term whose document frequency moved, are made as
        `vectors` makes them (tests compare the two). At 10,000 articles that is 10 to 100 rows
        of an edit, where `vectors` weighs a million entries (0.09 s)."""
        n = terms.words.shape[0]
        if last.matrix.shape[0] != n or len(last.idf) != last.matrix.shape[1]:
            return None
        layout = self._layout(terms)
        if not len(layout.keys):
            return None
        moved = column_map(last.keys, layout.keys)
        stale = (moved < 0) | (last.idf != layout.idf[np.maximum(moved, 0)])  # idf moved, or gone
        again = np.zeros(n, dtype=bool)
        again[edited] = True
        old = last.matrix
        stale_entries = np.flatnonzero(stale[old.indices]) if stale.any() else np.zeros(0, np.int64)
        again[np.searchsorted(old.indptr, stale_entries, side="right") - 1] = True
        rows = np.flatnonzero(again)
        if len(rows) > most * n:
            return None
        made = self._weighted(terms.rows(rows), layout)
        matrix = spliced_rows(old, rows, made, moved, len(layout.keys))
        return TermVectors(matrix, layout.labels, layout.keys, layout.idf), moved, rows

    def _layout(self, terms: ArticleTerms) -> _Layout:
        """Work out the columns of the vectors of `terms` (ordered by name, part by part) and each
        column's idf."""
        n = terms.words.shape[0]
        parts: list[tuple[str, np.ndarray, np.ndarray]] = []
        labels: list[str | None] = []
        keys: list[np.ndarray] = []
        if self.fields & {"title", "abstract"}:
            ids, idf = self._columns(terms.words, "words", n)
            parts.append(("words", ids, idf))
            labels.extend([None] * len(ids))
            keys.append(ids)
        subjects = (("mesh", terms.mesh, terms.mesh_spellings), ("keywords", terms.keywords, terms.keyword_spellings))
        for part, (name, weights, spellings) in enumerate(subjects, start=1):
            if name in self.fields:
                ids, idf = self._columns(weights, "subjects", n)
                parts.append((name, ids, idf))
                labels.extend(self._labels(spellings, ids))
                keys.append(ids | (part << _KEY_SHIFT))
        return _Layout(tuple(parts), tuple(labels), np.concatenate(keys) if keys else np.zeros(0, np.int64),
                       np.concatenate([idf for _, _, idf in parts]) if parts else np.zeros(0))

    def _weighted(self, terms: ArticleTerms, layout: _Layout) -> sp.csr_matrix:
        """Return the weighted, unit-length vectors of `terms` in the columns of `layout`."""
        n = terms.words.shape[0]
        blocks: list[sp.csr_matrix] = []
        for name, ids, idf in layout.parts:
            counts = _in_columns(terms.words if name == "words" else getattr(terms, name), ids)
            if name == "words":
                counts.data = 1.0 + np.log(counts.data)  # sublinear tf
            blocks.append(_weigh(counts, idf, _SHARES["text" if name == "words" else name]))
        if not blocks:
            return sp.csr_matrix((n, 0))
        return _unit_rows(sp.hstack(blocks, format="csr"))

    def _columns(self, matrix: sp.csr_matrix, kind: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Return the ids of the terms `matrix` holds, ordered by name (its columns' terms), and
        their idf over its `n` rows."""
        df = np.bincount(matrix.indices, minlength=matrix.shape[1])
        present = np.flatnonzero(df)
        ids = present[np.argsort(self._rank(kind)[present])].astype(np.int64)
        df = df[ids]
        return ids, np.log1p((n - df + 0.5) / (df + 0.5))  # BM25's idf: near 0 when every article has the term

    def _rank(self, kind: str) -> np.ndarray:
        """Return each word's or subject term's rank by name (worked out again when terms were added)."""
        names = self.word_names if kind == "words" else self.subject_names
        known, rank = self._ranks.get(kind, (-1, np.zeros(0, np.int64)))
        if known != len(names):
            order = sorted(range(len(names)), key=names.__getitem__)
            rank = np.empty(len(names), dtype=np.int64)
            rank[order] = np.arange(len(names))
            self._ranks[kind] = (len(names), rank)
        return rank

    def _labels(self, spellings: sp.csr_matrix, ids: np.ndarray) -> list[str | None]:
        """Return each term's label: as first written, articles in the order given."""
        first = np.full(spellings.shape[1], spellings.nnz, dtype=np.int64)
        np.minimum.at(first, spellings.indices, np.arange(spellings.nnz))
        return [self.spellings[s] for s in spellings.data[first[ids]].tolist()]

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_tokens"] = dict(self._tokens)  # a plain dict: _TokenIds points back at this object
        return state

    def __setstate__(self, state: dict) -> None:
        tokens = state.pop("_tokens")
        self.__dict__.update(state)
        self._tokens = _TokenIds(self)
        self._tokens.update(tokens)


class _TokenIds(dict):
    """Map each distinct token (bytes) to its word id, -1 when ignored; each is judged once."""

    def __init__(self, vocabulary: Vocabulary) -> None:
        super().__init__({_ARTICLE_BREAK: _BREAK_COLUMN})
        self.vocabulary = vocabulary

    def __missing__(self, token: bytes) -> int:
        word = token.decode("utf-8")
        term = -1
        # One letter is mostly debris: the s of "Crohn's", the T of "T-cell" (every article has it).
        if len(word) > 1 and word not in STOPWORDS and any(ch.isalpha() for ch in word):
            vocabulary = self.vocabulary
            stemmed = stem(word)
            term = vocabulary._word_ids.setdefault(stemmed, len(vocabulary._word_ids))
            if term == len(vocabulary.word_names):
                vocabulary.word_names.append(stemmed)
        self[token] = term
        return term


def _chunk_words(
    articles: Sequence[Article], title: bool, abstract: bool, tokens: _TokenIds
) -> tuple[np.ndarray, np.ndarray]:
    """Return the word ids of some articles' words, and how many each article has.

    A chunk goes through one split and one map, as per-article calls cost more than the words;
    chunks bound the memory the token objects take.
    """
    texts = []
    for article in articles:
        parts = [article.title] * _TITLE_REPEAT if title else []
        if abstract:
            parts.extend(section.text for section in article.abstract)
        texts.append(word_bytes(" ".join(parts)))
    stream = (b" " + _ARTICLE_BREAK + b" ").join(texts).split()
    ids = np.fromiter(map(tokens.__getitem__, stream), dtype=np.int64, count=len(stream))
    rows = np.cumsum(ids == _BREAK_COLUMN)
    kept = ids >= 0
    return ids[kept].astype(np.int32), np.bincount(rows[kept], minlength=len(articles))


class _SubjectCalls:
    """What `_add_mesh_terms` and `_add_keywords` ask for a term's column: its subject id, noting
    the spelling an article first gave it."""

    def __init__(self, vocabulary: Vocabulary) -> None:
        self.vocabulary = vocabulary
        self.spellings: dict[int, int] = {}

    def column(self, kind: str, text: str) -> int:
        term, spelling = self.vocabulary.subject_id(kind, text)
        if term >= 0 and term not in self.spellings:
            self.spellings[term] = spelling
        return term


_TermAdder = Callable[[Article, _SubjectCalls, dict[int, float]], None]


def _add_term(weights: dict[int, float], column: int, weight: float) -> None:
    """Record a term once per article, with the highest weight it was given."""
    if column >= 0 and weights.get(column, 0.0) < weight:
        weights[column] = weight


def _add_mesh_terms(article: Article, columns: _SubjectCalls, weights: dict[int, float]) -> None:
    for heading in article.mesh_terms:
        if not heading.descriptor.strip():
            continue
        major = heading.major
        pairs = []
        for qualifier in heading.qualifiers:
            major = major or qualifier.major  # a starred qualifier makes a major topic
            pairs.append(columns.column("pair", f"{heading.descriptor}/{qualifier.name}"))
        weight = _MAJOR_WEIGHT if major else 1.0
        _add_term(weights, columns.column("mesh", heading.descriptor), weight)
        for pair in pairs:
            _add_term(weights, pair, weight * _PAIR_WEIGHT)


def _add_keywords(article: Article, columns: _SubjectCalls, weights: dict[int, float]) -> None:
    for keyword in article.keywords:
        _add_term(weights, columns.column("keyword", keyword), 1.0)


# -------------------------------------------------------------------------------------------------
# Profiles and the product


def truncate_profiles(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """Keep each row's heaviest terms, as many as the work budget allows, at unit length.

    Small digests keep every term, so their scores are exact cosines of the full vectors.
    """
    return profiles_of(matrix)[0]


def profiles_of(matrix: sp.csr_matrix, rank: np.ndarray | None = None, likely: int | None | bool = False,
                counts: dict[int | None, np.ndarray] | None = None) -> tuple[sp.csr_matrix, int | None]:
    """Return `truncate_profiles(matrix)` and the profile length it chose (None: every term).
    `rank` is `entry_ranks(matrix)`, when the caller has it; `likely` the length chosen last time
    for much the same matrix (an edit's), tried first; `counts` receives the `profile_counts` of
    the lengths it tried."""
    rank = entry_ranks(matrix) if rank is None else rank
    counts = {} if counts is None else counts

    def within_budget(candidate: int | None) -> bool:
        counts[candidate] = profile_counts(matrix, rank, candidate)
        return within_work_budget(counts[candidate], matrix.shape[0])

    length = likely_length(likely, within_budget)
    if length is False:
        length = _PROFILE_LENGTHS[-1]
        for candidate in _PROFILE_LENGTHS:
            if within_budget(candidate):
                length = candidate
                break
    if length is None:
        return matrix, None
    return profile_rows(matrix, rank, length), length


def likely_length(likely: int | None | bool, within_budget: Callable[[int | None], bool]) -> int | None | bool:
    """Return `likely` when it is the profile length `profiles_of` chooses, else False.

    A longer profile keeps a superset of a shorter one's entries, so its work is never smaller:
    when the likely length fits and the next longer one does not, trying each would choose it."""
    position = _PROFILE_LENGTHS.index(likely) if likely in _PROFILE_LENGTHS and likely is not False else -1
    if position >= 0 and within_budget(likely) and (position == 0 or not within_budget(_PROFILE_LENGTHS[position - 1])):
        return likely
    return False


def longer_length(length: int | None) -> list[int | None]:
    """The profile lengths `likely_length` asks about for `length`: it and the next longer one."""
    position = _PROFILE_LENGTHS.index(length)
    return list(_PROFILE_LENGTHS[max(position - 1, 0): position + 1])


def profile_counts(matrix: sp.csr_matrix, rank: np.ndarray, candidate: int | None) -> np.ndarray:
    """Return, per column, how many rows keep it in a profile of `candidate` terms (None: all)."""
    kept = matrix.indices if candidate is None else matrix.indices[rank < candidate]
    return np.bincount(kept, minlength=matrix.shape[1])


def within_work_budget(counts: np.ndarray, rows: int) -> bool:
    """Whether the product of profiles with these column counts fits the budget of `rows` articles."""
    df = counts.astype(np.float64)
    return bool(df @ df <= max(_WORK_FLOOR, _WORK_PER_ARTICLE * rows))  # the product's multiply-adds


def profile_rows(matrix: sp.csr_matrix, rank: np.ndarray, length: int) -> sp.csr_matrix:
    """Return each row's `length` heaviest entries (`rank` gives their order), at unit length."""
    profiles = matrix.copy()
    profiles.data[rank >= length] = 0.0
    return _unit_rows(profiles)


def row_entries(indptr: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Return the positions of the entries of `rows` (sorted) in a CSR matrix, in order."""
    starts, ends = indptr[rows], indptr[rows + 1]
    lengths = ends - starts
    return np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())


def entry_ranks(matrix: sp.csr_matrix) -> np.ndarray:
    """Return each entry's rank in its row, heaviest first.

    Weights are compared at 2^-40: closer ones tie and keep column order (the sort is stable and
    CSR columns are sorted), so ranks are deterministic.
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
    """Return (row, neighbour row, score in units of 1e-4) arrays, by row then rank.

    Each row's neighbours are its `count` best other rows by (rounded score desc, row asc) among
    those scoring at least `min_units`.
    """
    transposed = profiles.T.tocsr()
    df = np.diff(transposed.indptr)
    work = _row_sums(df[profiles.indices], profiles.indptr)  # bounds each row's product size
    blocks = _row_blocks(work)
    parts = _blocks_on_cores(profiles, transposed, blocks, work, count, min_units)
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    src, dst, units = (np.concatenate(arrays) for arrays in zip(*parts))
    return src, dst, units


_SHARED: tuple | None = None  # what forked workers compute blocks from (set before forking)


def _select_blocks(blocks: list[tuple[int, int]]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    profiles, transposed, count, min_units = _SHARED  # type: ignore[misc]
    return [_select_block(profiles[lo:hi] @ transposed, np.arange(lo, hi), count, min_units) for lo, hi in blocks]


def _blocks_on_cores(
    profiles: sp.csr_matrix, transposed: sp.csr_matrix, blocks: list[tuple[int, int]], work: np.ndarray,
    count: int, min_units: int,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Compute the blocks' best pairs, on the idle cores when the digest is large.

    This process computes the first share of the rows while forked workers compute the others and
    send back their (small) results; the parts come back in row order, so the result is exactly a
    single process's. Should the pool fail, this process computes their share too.
    """
    global _SHARED
    workers = idle_cores(None) if profiles.shape[0] >= PARALLEL_ROWS else 1
    _SHARED = (profiles, transposed, count, min_units)
    try:
        if workers <= 1 or len(blocks) < 2 or not can_fork():
            return _select_blocks(blocks)
        # Contiguous shares of about equal work (a product's cost is bounded by `work`).
        cumulative = np.cumsum([int(work[lo:hi].sum()) + 1 for lo, hi in blocks])
        edges = np.searchsorted(cumulative, cumulative[-1] * np.arange(1, workers) / workers).tolist()
        shares = [blocks[a:b] for a, b in zip([0] + edges, edges + [len(blocks)]) if b > a]
        found = map_with_workers(_select_blocks, shares[:1], shares[1:], len(shares) - 1)
        return [part for parts in found for part in parts]
    finally:
        _SHARED = None


def _row_blocks(work: np.ndarray) -> list[tuple[int, int]]:
    """Split the rows into runs of about _BLOCK_WORK multiply-adds (at least one row each)."""
    cumulative = np.cumsum(work)
    blocks = []
    lo = 0
    while lo < len(work):
        base = cumulative[lo - 1] if lo else 0
        hi = int(np.searchsorted(cumulative, base + _BLOCK_WORK, side="right"))
        hi = min(max(hi, lo + 1), lo + _BLOCK_ROWS)
        blocks.append((lo, hi))
        lo = hi
    return blocks


def _select_block(
    scores: sp.csr_matrix, row_ids: np.ndarray, count: int, min_units: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the `count` best entries of each row of some rows' scores (row r being row
    `row_ids[r]` of the digest), the row itself excluded."""
    units = (scores.data * _SCALE + 0.5).astype(np.int32)  # rounded half up to 1e-4
    rows = np.repeat(np.arange(scores.shape[0], dtype=np.int32), np.diff(scores.indptr))
    # count + 1: the row itself (score 1) is still among them.
    best = _best_buckets(rows, units, scores.shape[0], count + 1)
    rows, units, cols = rows[best], units[best], scores.indices[best].astype(np.int64)
    keep = (units >= min_units) & (cols != row_ids[rows])
    rows, cols, units = rows[keep], cols[keep], units[keep]
    return best_per_row(np.asarray(row_ids, dtype=np.int64)[rows], cols, units.astype(np.int64), count)


def best_per_row(
    rows: np.ndarray, cols: np.ndarray, units: np.ndarray, count: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the `count` best (col, units) of each row, by row, then units desc, then col."""
    order = np.lexsort((cols, -units, rows))
    rows, cols, units = rows[order], cols[order], units[order]
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]]) if len(rows) else np.zeros(0, np.int64)
    rank = np.arange(len(rows)) - np.repeat(starts, np.diff(np.r_[starts, len(rows)]))
    top = rank < count
    return rows[top], cols[top], units[top]


def _best_buckets(rows: np.ndarray, units: np.ndarray, nrows: int, count: int) -> np.ndarray:
    """Return the positions of each row's entries in its top score buckets, down to the bucket
    where the row reaches `count` entries (all of them when it has fewer)."""
    buckets = units >> _BUCKET_SHIFT
    width = (_SCALE >> _BUCKET_SHIFT) + 2
    histogram = np.bincount(rows * width + buckets, minlength=nrows * width).reshape(nrows, width)
    from_top = np.cumsum(histogram[:, ::-1], axis=1)
    floor = (width - 1 - (from_top < count).sum(axis=1)).astype(np.int32)
    return np.flatnonzero(buckets >= floor[rows])


# -------------------------------------------------------------------------------------------------
# Shared terms


def shared_terms(vectors: TermVectors, src: np.ndarray, dst: np.ndarray) -> list[tuple[str, ...]]:
    """Return, per pair, up to 5 MeSH descriptors and keywords both have, most informative first.

    Most informative: the larger contribution to the pair's score (rarer terms, major topics),
    then by label. A keyword spelled like a descriptor already listed is not repeated.
    """
    columns = np.flatnonzero([label is not None for label in vectors.labels])
    if not len(src) or not len(columns):
        return [()] * len(src)
    labels = [vectors.labels[c] for c in columns]
    shown = vectors.matrix[:, columns]
    both = shown[src].multiply(shown[dst]).tocsr()
    both.eliminate_zeros()
    group, rank = _label_groups(labels)  # type: ignore[arg-type]
    rows = np.repeat(np.arange(both.shape[0]), np.diff(both.indptr))
    order = _order_within_rows(rows, both.data, rank[both.indices])
    rows, cols = rows[order], both.indices[order]
    _, first = np.unique(rows * (group.max() + 1) + group[cols], return_index=True)
    first.sort()  # the heaviest entry of each group, back in order
    rows, cols = rows[first], cols[first]
    start = np.searchsorted(rows, np.arange(len(src)))
    top = np.arange(len(rows)) - start[rows] < _MAX_SHARED
    chosen = np.array(labels, dtype=object)[cols[top]]
    bounds = np.searchsorted(rows[top], np.arange(len(src) + 1)).tolist()
    return [tuple(chosen[lo:hi]) for lo, hi in zip(bounds, bounds[1:])]


def _order_within_rows(rows: np.ndarray, weights: np.ndarray, ties: np.ndarray) -> np.ndarray:
    """Return the order by row, weight descending, then `ties` (np.lexsort is several times slower).

    Weights, all in [0, 1], closer than about 1e-10 count as equal.
    """
    by_tie = np.argsort(ties, kind="stable")
    key = rows[by_tie] + 0.5 * (1.0 - np.clip(weights[by_tie], 0.0, 1.0))
    return by_tie[np.argsort(key, kind="stable")]


def _label_groups(labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Return per label a group id (labels equal ignoring case share it) and its sorted rank."""
    order = sorted(range(len(labels)), key=lambda i: (labels[i].casefold(), labels[i]))
    rank = np.empty(len(labels), dtype=np.int64)
    rank[order] = np.arange(len(labels))
    groups: dict[str, int] = {}
    group = np.array([groups.setdefault(label.casefold(), len(groups)) for label in labels])
    return group, rank
