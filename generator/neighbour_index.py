"""Similar articles kept between builds: after an edit, only what the edit can change is computed
again, and the result is exactly `compute_neighbours`' for the new articles (tests check it).

Why recomputing part of it is exact. Row i's score with row j is a sum over row i's profile
entries, in column order, of products with row j's weights (scipy's sparse product adds in that
order); row i's list is its best scores. Columns are ordered by the terms' text, so an article whose
vector is bit for bit the same (same terms in the same order, same weights) keeps bit for bit the
same score with every other unchanged article. An edit changes the vectors of the edited articles
and of every article holding a term whose idf moved (its document frequency changed): the changed
rows, A. Those are computed in full. An unchanged row u only needs its scores with A: its new list
is the best of its old list without A plus those, except when A held part of a full old list
(what came next in u's row is unknown then): u is computed in full too.

Anything digest-wide falls back to the full computation: other articles or settings, another
profile length, a label shown for a term that changed, an `auto` threshold that the edit moved, or
more than a quarter of the rows changed.
Articles' terms are read once: the index keeps them by a key that changes with the title, abstract,
MeSH terms and keywords (`LinkState` gives a digest of them), so an edit reads one article.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from generator.load import collector_paused
from generator.model import Article
from generator.similarity import (
    _SCALE,
    ArticleTerms,
    Neighbour,
    SimilarityConfig,
    TermVectors,
    Vocabulary,
    _check_unique_ids,
    _select_block,
    auto_units,
    best_per_row,
    column_map,
    entry_ranks,
    likely_length,
    longer_length,
    min_units,
    neighbours_by_row,
    profile_counts,
    profile_rows,
    profiles_of,
    row_entries,
    shared_terms,
    spliced_rows,
    thresholded_pairs,
    within_work_budget,
)

_MOST_CHANGED = 0.25  # above this share of changed rows, the full computation is as cheap


@dataclass
class _Computed:
    """The last computation: what the next one starts from."""

    config: SimilarityConfig
    ids: list[str]  # articles in id order: row r is ids[r]
    vectors: TermVectors
    length: int | None
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray]  # row, neighbour row, units: by row then rank
    shared: list[tuple[str, ...]]  # per pair
    result: dict[str, tuple[Neighbour, ...]]
    units: int  # the threshold the pairs were kept at (see `min_units`, `auto_units`)
    rank: np.ndarray | None = None  # entry_ranks(vectors.matrix), as int32
    profiles: sp.csr_matrix | None = None  # the rows truncated to `length` terms (see `profiles_of`)
    counts: dict[int | None, np.ndarray] | None = None  # profile_counts for `longer_length(length)`


class NeighbourIndex:
    """`compute_neighbours` that remembers its last result and the terms of the articles it read.

    Keep one between builds (`LinkState` does, and pickles it in its cache file)::

        index = NeighbourIndex()
        neighbours = index.neighbours(articles, config, keys)  # keys: one per article, see below

    `keys[i]` must change whenever articles[i]'s id, title, abstract, MeSH terms or keywords do;
    articles with a known key are not read again. Without keys every article is read.
    The last figures are in `stats`: rows computed in full, rows merged, whether it fell back.
    """

    def __init__(self) -> None:
        self._vocabulary: Vocabulary | None = None
        self._terms: ArticleTerms | None = None
        self._rows: dict[Hashable, int] = {}  # key -> row of _terms
        self._last: _Computed | None = None
        self._order: tuple[list[str], list[int]] = ([], [])  # ids as given last, and their order by id
        self.stats: dict[str, int] = {}

    def neighbours(self, articles: Sequence[Article], config: SimilarityConfig,
                   keys: Sequence[Hashable] | None = None) -> dict[str, tuple[Neighbour, ...]]:
        """Return `compute_neighbours(articles, config)`, computing only what changed since the last call."""
        given = [article.id for article in articles]
        if given == self._order[0]:  # the same ids in the same order: already sorted and checked
            order = self._order[1]
            ordered = [articles[i] for i in order]
        else:
            order = sorted(range(len(articles)), key=given.__getitem__)
            ordered = [articles[i] for i in order]
            _check_unique_ids(ordered)
            self._order = (given, order)
        if len(ordered) < 2 or config.count == 0:
            self._last = None
            return {article.id: () for article in ordered}
        with collector_paused():
            terms, edited = self._terms_of(ordered, [keys[i] for i in order] if keys is not None else None, config)
            ids = [article.id for article in ordered]
            vectors, changes = self._vectors(config, ids, terms, edited)
            rank = self._entry_ranks(vectors.matrix, changes)
            profiles, length, counts = self._profiles(vectors.matrix, rank, changes)
            auto = config.min_score is None  # `auto`: the last threshold, unless the edit moves it
            units = (self._last.units if self._last is not None else None) if auto else min_units(config)
            computed = self._update(config, ids, vectors, profiles, length, units, changes) if units else None
            if computed is not None and auto and auto_units(computed.pairs, len(ids)) != units:
                computed = None  # every list may change
            if computed is None:
                pairs, units = thresholded_pairs(profiles, config)
                shared = shared_terms(vectors, *pairs[:2])
                computed = _Computed(config, ids, vectors, length, pairs, shared,
                                     neighbours_by_row(ids, pairs, shared), units)
                self.stats = {"full": 1, "rows": len(ids), "merged": 0}
            computed.rank, computed.profiles, computed.counts = rank, profiles, counts
            self._last = computed
            return computed.result

    @property
    def result(self) -> dict[str, tuple[Neighbour, ...]] | None:
        """The last call's result (None before the first)."""
        return self._last.result if self._last is not None else None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_order"] = ([], [])  # made again from the articles at the next call
        last = self._last
        if last is not None:  # neighbours are made again from the pairs: pickling them costs more
            state["_last"] = _Computed(last.config, last.ids, last.vectors, last.length, last.pairs, last.shared, {},
                                       last.units, last.rank, last.profiles, last.counts)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        last = self._last
        if last is not None:
            last.result = neighbours_by_row(last.ids, last.pairs, last.shared)

    # Terms -------------------------------------------------------------------------------------------

    def _terms_of(self, ordered: list[Article], keys: list[Hashable] | None,
                  config: SimilarityConfig) -> tuple[ArticleTerms, np.ndarray | None]:
        """Return the articles' terms, reading only articles whose key is new, and, when every
        other article's terms are the last call's in the same row, the rows read (else None)."""
        vocabulary = self._vocabulary
        if vocabulary is None or vocabulary.fields != frozenset(config.fields):
            vocabulary = self._vocabulary = Vocabulary(config.fields)
            self._terms, self._rows, self._last = None, {}, None
        if keys is None:
            self._terms, self._rows = None, {}
            return vocabulary.extract(ordered), None
        known = self._rows
        rows = np.array([known.get(key, -1) for key in keys], dtype=np.int64)
        missing = np.flatnonzero(rows < 0)
        kept = self._terms
        in_place = kept is not None and len(rows) == kept.words.shape[0] and \
            bool((rows[rows >= 0] == np.flatnonzero(rows >= 0)).all())
        if kept is None or len(missing) == len(rows):
            terms = vocabulary.extract(ordered)
        elif not len(missing) and in_place:
            terms = kept
        else:
            read = vocabulary.extract([ordered[i] for i in missing.tolist()])
            rows[missing] = kept.words.shape[0] + np.arange(len(missing))
            terms = ArticleTerms.stacked([kept.widened(vocabulary), read]).rows(rows)
        self._terms, self._rows = terms, dict(zip(keys, range(len(keys))))
        return terms, missing if in_place else None

    def _vectors(self, config: SimilarityConfig, ids: list[str], terms: ArticleTerms, edited: np.ndarray | None
                 ) -> tuple[TermVectors, tuple[np.ndarray, np.ndarray] | None]:
        """Return the articles' vectors and, against the last computation, the new column of each
        old one and the rows whose vector changed (None: no last computation for these articles
        and settings). After an edit, only the rows it can change are weighed again
        (`Vocabulary.updated_vectors`)."""
        last = self._last
        vocabulary: Vocabulary = self._vocabulary  # type: ignore[assignment]
        if edited is not None and last is not None and last.config == config and last.ids == ids:
            update = vocabulary.updated_vectors(terms, last.vectors, edited, _MOST_CHANGED)
            if update is not None:
                vectors, moved, again = update
                changed = _changed_rows(last.vectors.matrix[again], vectors.matrix[again], moved)
                return vectors, (moved, again[changed])
        vectors = vocabulary.vectors(terms)
        return vectors, self._row_changes(config, ids, vectors)

    # The partial computation ---------------------------------------------------------------------------

    def _row_changes(self, config: SimilarityConfig, ids: list[str], vectors: TermVectors
                     ) -> tuple[np.ndarray, np.ndarray] | None:
        """Return, against the last computation, the new column of each old one and the rows whose
        vector changed; None when there is no last computation for the same articles and settings."""
        last = self._last
        if last is None or last.config != config or last.ids != ids:
            return None
        vectors.matrix.sort_indices()
        moved = column_map(last.vectors.keys, vectors.keys)
        return moved, _changed_rows(last.vectors.matrix, vectors.matrix, moved)

    def _entry_ranks(self, matrix: sp.csr_matrix, changes: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
        """Return `entry_ranks(matrix)`, taking an unchanged row's from the last computation (its
        entries are bit for bit the same, in the same order: so are their ranks). Ranking every
        entry sorts a million of them at 10,000 articles (0.1 s)."""
        last = self._last
        if changes is None or last is None or last.rank is None or len(last.rank) != last.vectors.matrix.nnz:
            return entry_ranks(matrix).astype(np.int32)
        changed = changes[1]
        if not len(changed):
            return last.rank
        in_changed = np.zeros(matrix.shape[0], dtype=bool)
        in_changed[changed] = True
        rank = np.empty(matrix.nnz, dtype=np.int32)
        kept_new = np.repeat(~in_changed, np.diff(matrix.indptr))
        rank[kept_new] = last.rank[np.repeat(~in_changed, np.diff(last.vectors.matrix.indptr))]
        rank[~kept_new] = entry_ranks(matrix[changed])
        return rank

    def _profiles(self, matrix: sp.csr_matrix, rank: np.ndarray, changes: tuple[np.ndarray, np.ndarray] | None
                  ) -> tuple[sp.csr_matrix, int | None, dict[int | None, np.ndarray]]:
        """Return `profiles_of(matrix, rank, last length)` and the column counts of the profile
        lengths the next call will ask about (`longer_length`). After an edit, the counts are the
        last ones less the changed rows' old entries plus their new ones, and the profiles of the
        rows that did not change are the last ones (a row's profile is made from that row and the
        length alone): 0.03 s of passes over a million entries at 10,000 articles otherwise."""
        last = self._last
        rows = matrix.shape[0]
        if changes is not None and last is not None and last.counts is not None and last.rank is not None \
                and last.profiles is not None:
            moved, changed = changes
            old, columns = last.vectors.matrix, matrix.shape[1]
            old_entries, new_entries = row_entries(old.indptr, changed), row_entries(matrix.indptr, changed)
            old_columns = moved[old.indices[old_entries]]
            counts: dict[int | None, np.ndarray] = {}
            for candidate, known in last.counts.items():
                found = np.zeros(columns, dtype=np.int64)
                found[moved[moved >= 0]] = known[moved >= 0]
                gone = old_columns >= 0 if candidate is None else (old_columns >= 0) & (last.rank[old_entries] < candidate)
                came = matrix.indices[new_entries] if candidate is None else \
                    matrix.indices[new_entries[rank[new_entries] < candidate]]
                counts[candidate] = found - np.bincount(old_columns[gone], minlength=columns) + \
                    np.bincount(came, minlength=columns)
            length = likely_length(last.length, lambda c: c in counts and within_work_budget(counts[c], rows))
            if length is not False and length == last.length:
                if length is None:
                    return matrix, None, counts
                made = profile_rows(matrix[changed], rank[new_entries], length)
                return spliced_rows(last.profiles, changed, made, moved, columns), length, counts
        tried: dict[int | None, np.ndarray] = {}
        profiles, length = profiles_of(matrix, rank, last.length if last is not None else False, tried)
        return profiles, length, {c: tried[c] if c in tried else profile_counts(matrix, rank, c)
                                  for c in longer_length(length)}

    def _update(self, config: SimilarityConfig, ids: list[str], vectors: TermVectors, profiles: sp.csr_matrix,
                length: int | None, min_units: int, changes: tuple[np.ndarray, np.ndarray] | None) -> _Computed | None:
        """Return the new computation from the last one, or None when it must be done in full."""
        last = self._last
        if changes is None or last is None or last.length != length or last.units != min_units:
            return None
        moved, changed = changes
        if _labels_changed(last.vectors.labels, vectors.labels, moved):
            return None
        n, count = len(ids), config.count
        if not len(changed):
            self.stats = {"full": 0, "rows": 0, "merged": 0}
            return _Computed(config, ids, vectors, length, last.pairs, last.shared, last.result, min_units)
        if len(changed) > _MOST_CHANGED * n:
            return None
        in_changed = np.zeros(n, dtype=bool)
        in_changed[changed] = True
        old_src, old_dst, old_units = last.pairs
        # Unchanged rows whose list held a changed row: merged, or computed in full when the list was full.
        touched = np.unique(old_src[in_changed[old_dst] & ~in_changed[old_src]])
        listed = np.bincount(old_src, minlength=n)
        recompute = touched[listed[touched] >= count]
        # Unchanged rows' scores with the changed rows (each sum made as in the full product).
        cross = (profiles @ profiles[changed].T.tocsr()).tocoo()
        cross_units = (cross.data * _SCALE + 0.5).astype(np.int64)
        cross_rows = cross.row.astype(np.int64)
        fresh = (cross_units >= min_units) & ~in_changed[cross_rows]
        cross_rows, cross_dst, cross_units = cross_rows[fresh], changed[cross.col[fresh]], cross_units[fresh]
        in_recompute = np.zeros(n, dtype=bool)
        in_recompute[recompute] = True
        # A cross score below the last of a full kept list cannot enter it (a tie still can: by
        # column). So an untouched row none of whose cross scores can enter keeps its list as it
        # is: it is not merged (a changed article scores with thousands of others, and rarely
        # enters their lists: merging them all sorted 70,000 entries an edit at 10,000 articles).
        keep_all = ~in_changed[old_dst]
        floor = np.full(n, -1, dtype=np.int64)
        kept_src, kept_units = old_src[keep_all], old_units[keep_all]
        full = np.flatnonzero(np.bincount(kept_src, minlength=n) >= count)
        if len(full):
            starts = np.searchsorted(kept_src, full)  # each row's kept units are in rank order
            floor[full] = kept_units[starts + count - 1]
        could_enter = cross_units >= floor[cross_rows]
        merge = np.setdiff1d(np.union1d(touched, cross_rows[could_enter]), recompute)
        in_merge = np.zeros(n, dtype=bool)
        in_merge[merge] = True

        full_rows = np.union1d(changed, recompute)
        transposed = profiles.T.tocsr()
        parts = [_select_block(profiles[full_rows] @ transposed, full_rows, count, min_units)] if len(full_rows) else []
        keep_old = in_merge[old_src] & keep_all
        from_cross = in_merge[cross_rows] & could_enter
        merged = best_per_row(np.concatenate([old_src[keep_old], cross_rows[from_cross]]),
                              np.concatenate([old_dst[keep_old], cross_dst[from_cross]]),
                              np.concatenate([old_units[keep_old], cross_units[from_cross]]), count)
        # A merged row may still come out as it was (a tie that loses by column, a touched row
        # whose changed neighbour keeps its place): those keep their pairs, shared terms and
        # neighbours.
        kept = _same_lists(last.pairs, merged, in_merge)
        in_merge[kept] = False
        parts.append(tuple(part[in_merge[merged[0]]] for part in merged))
        redone = in_changed | in_recompute | in_merge
        unchanged = ~redone[old_src]
        new_src, new_dst, new_units = (np.concatenate(arrays) for arrays in zip(*parts))
        by_row = np.argsort(new_src, kind="stable")  # the parts' rows are disjoint
        new_src, new_dst, new_units = new_src[by_row], new_dst[by_row], new_units[by_row]
        new_shared = shared_terms(vectors, new_src, new_dst)
        src = np.concatenate([old_src[unchanged], new_src])
        order = np.argsort(src, kind="stable")  # each row's pairs come from one part, in rank order
        pairs = (src[order], np.concatenate([old_dst[unchanged], new_dst])[order],
                 np.concatenate([old_units[unchanged], new_units])[order])
        kept_shared = [terms for terms, keep in zip(last.shared, unchanged.tolist()) if keep]
        both = kept_shared + new_shared
        shared = [both[i] for i in order.tolist()]
        result = dict(last.result)
        fresh_result = neighbours_by_row(ids, (new_src, new_dst, new_units), new_shared, rows=np.flatnonzero(redone))
        for article_id, found in fresh_result.items():
            if found != result[article_id]:
                result[article_id] = found
        self.stats = {"full": 0, "rows": len(full_rows), "merged": len(merge) - len(kept)}
        return _Computed(config, ids, vectors, length, pairs, shared, result, min_units)


def _same_lists(old: tuple[np.ndarray, np.ndarray, np.ndarray], new: tuple[np.ndarray, np.ndarray, np.ndarray],
                rows: np.ndarray) -> np.ndarray:
    """Return the rows (those `rows` marks) whose pairs in `new` are their pairs in `old`: the same
    neighbours with the same units. Both are sorted by row, then rank; `new` holds only those rows."""
    old_src, old_dst, old_units = old
    new_src, new_dst, new_units = new
    among = rows[old_src]
    old_src, old_dst, old_units = old_src[among], old_dst[among], old_units[among]
    same = rows & (np.bincount(old_src, minlength=len(rows)) == np.bincount(new_src, minlength=len(rows)))
    old_kept, new_kept = same[old_src], same[new_src]  # the same rows with as many pairs each: aligned
    differs = (old_dst[old_kept] != new_dst[new_kept]) | (old_units[old_kept] != new_units[new_kept])
    same[old_src[old_kept][differs]] = False
    return np.flatnonzero(same)


def _labels_changed(old: tuple[str | None, ...], new: tuple[str | None, ...], moved: np.ndarray) -> bool:
    return any(old[c] != new[m] for c, m in enumerate(moved.tolist()) if m >= 0 and old[c] is not None)


def _changed_rows(old: sp.csr_matrix, new: sp.csr_matrix, moved: np.ndarray) -> np.ndarray:
    """Return the rows whose vector is not bit for bit the same (terms, order and weights)."""
    old_lengths, new_lengths = np.diff(old.indptr), np.diff(new.indptr)
    same = old_lengths == new_lengths
    old_entries, new_entries = np.repeat(same, old_lengths), np.repeat(same, new_lengths)
    differs = ((moved[old.indices[old_entries]] != new.indices[new_entries])
               | (old.data[old_entries] != new.data[new_entries]))
    rows = np.repeat(np.flatnonzero(same), old_lengths[same])
    changed = ~same
    changed[rows[differs]] = True
    return np.flatnonzero(changed)
