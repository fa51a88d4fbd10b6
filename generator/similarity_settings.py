"""The similarity's settings (`similar:` in digest.yaml), apart from `similarity.py`: reading the
configuration or checking that nothing changed must not import numpy and scipy (0.35 s)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real

FIELDS = ("title", "abstract", "mesh", "keywords")
PARALLEL_ROWS = 20_000  # below this many articles, forking costs about what the products save


@dataclass(frozen=True)
class SimilarityConfig:
    """How neighbours are computed (`similar:` in digest.yaml).

    Scores are cosines in [0, 1]; a neighbour needs a score >= `min_score` and above 0 once rounded
    (so a `min_score` above 1 turns neighbours off). None (the default, `min_score: auto`) is a
    fifth of the median of the articles' best scores, rounded down to 0.01 (`similarity.auto_units`):
    what counts as related depends on the digest. On the synthetic corpus (30 topics; digests of 30
    to 600 articles) pairs from different topics score 0.03 to 0.08 (median), 0.11 to 0.18 (99th
    percentile); pairs from the same topic 0.32 or more (median 0.66); an article's best scores
    0.73 to 0.76 (median, at 300, 2,000 and 10,000 articles), so the rule gives 0.14 to 0.15, the
    value set on it earlier (the
    10,000-record benchmark's lists are the same with 0.14 as with 0.15; in a 300-article
    digest whose smallest topics have 4 articles, 0.1 let 18 cross-topic pairs fill their top 5,
    0.15 none). In a digest on one narrow topic every article shares the topic's words, which then
    weigh little: the example digest's related papers score 0.05 to 0.3, its best scores' median is
    0.22, and the rule gives 0.04, where 0.15 left 5 of its 13 articles without a neighbour. Records
    with little text score low too: a 3,700-entry Zotero library, mostly titles of many fields, gets
    0.05 (median best 0.29) and 4.89 neighbours an article instead of 4.42, the added ones weaker.
    """

    count: int = 5
    min_score: float | None = None
    fields: tuple[str, ...] = FIELDS

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", tuple(self.fields))
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 0:
            raise ValueError(f"similar.count must be a whole number >= 0, got {self.count!r}")
        score = self.min_score
        if score is not None and (isinstance(score, bool) or not isinstance(score, Real) or not 0.0 <= score < math.inf):
            raise ValueError(f"similar.min_score must be a number >= 0, got {score!r}")
        unknown = [name for name in self.fields if name not in FIELDS]
        if unknown:
            raise ValueError(f"similar.fields: unknown {unknown}; known: {list(FIELDS)}")
