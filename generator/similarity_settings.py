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
    (so a `min_score` above 1 turns neighbours off). The default, 0.15, was set on the synthetic
    corpus (digests of 30 to 600 articles, 30 topics): pairs from different topics score 0.03 to
    0.08 (median), 0.11 to 0.18 (99th percentile), at most 0.30 (sibling topics); pairs from the
    same topic score 0.32 or more (median 0.66). In a 300-article digest whose smallest topics have
    4 articles, 0.1 let 18 cross-topic pairs (<= 0.13) fill their top 5; 0.15 lets none.
    """

    count: int = 5
    min_score: float = 0.15
    fields: tuple[str, ...] = FIELDS

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", tuple(self.fields))
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 0:
            raise ValueError(f"similar.count must be a whole number >= 0, got {self.count!r}")
        score = self.min_score
        if isinstance(score, bool) or not isinstance(score, Real) or not 0.0 <= score < math.inf:
            raise ValueError(f"similar.min_score must be a number >= 0, got {score!r}")
        unknown = [name for name in self.fields if name not in FIELDS]
        if unknown:
            raise ValueError(f"similar.fields: unknown {unknown}; known: {list(FIELDS)}")
