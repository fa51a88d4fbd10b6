"""Benchmark generator/similarity.py on synthetic corpora: time, memory and topic precision.

    python benchmarks/similarity.py            # 2,000 and 10,000 articles
    python benchmarks/similarity.py --large    # and 100,000 (about 3 minutes, most of it making
                                               # and loading the corpus)

Corpora come from ../shared/bench/make_corpus.py (30 topic clusters; cached under --workdir). Each
size is measured in a fresh child process, so that `ru_maxrss` (the process's peak resident memory)
measured before and after compute_neighbours gives the peak that call added. Sizes up to 10,000 are
also run under tracemalloc (peak of Python and NumPy allocations; scipy's C++ scratch is not seen).

Baselines measured in the same run:
- vectors: the time build_vectors alone takes (tokenising and weighting, no product);
- naive: the same terms and weights, with a pure-Python inverted index and exact cosines over full
  vectors (at --naive-size articles), which also shows how close the truncated profiles come to
  the exact top 5 ("overlap": share of the exact top 5 found; "score": summed exact cosine of the
  neighbours found over that of the exact top 5);
- tiny digests (10 to 300 articles): compute_neighbours against the same naive code, to decide
  whether small digests need a plain-Python path.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from generator.model import AbstractSection, Article, MeshTerm, Qualifier, SourceRef  # noqa: E402
from generator.similarity import (  # noqa: E402
    SimilarityConfig,
    build_vectors,
    compute_neighbours,
    truncate_profiles,
)

MAKE_CORPUS = REPO.parent / "shared/bench/make_corpus.py"
TARGETS = {2_000: (None, None), 10_000: (2.0, 300.0), 100_000: (60.0, 2048.0)}  # seconds, MB
MIN_PRECISION = 0.99
CONFIG = SimilarityConfig(min_score=0.15)  # what `auto` gives on this corpus, fixed so the naive baseline can use it


# --- corpus -------------------------------------------------------------------------------------


def make_corpus(n: int, seed: int, workdir: Path) -> Path:
    """Return a directory holding records.jsonl and clusters.tsv for n records, made once."""
    out = workdir / f"corpus-{n}-seed{seed}"
    if not (out / "records.jsonl").exists():
        out.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, str(MAKE_CORPUS), "--n", str(n), "--seed", str(seed), "--out", str(out),
             "--formats", "jsonl"],
            check=True,
        )
    return out


def load_articles(corpus: Path, limit: int | None = None) -> tuple[list[Article], dict[str, str]]:
    """Return the corpus's records as Articles (line by line, to keep memory flat) and topics."""
    articles = []
    with open(corpus / "records.jsonl", encoding="utf-8") as lines:
        for line in lines:
            articles.append(to_article(json.loads(line), str(corpus)))
            if limit and len(articles) == limit:
                break
    topics = {}
    for row in (corpus / "clusters.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        pmid, cluster = row.split("\t")[:2]
        topics[pmid] = cluster
    return articles, topics


def to_article(record: dict[str, Any], path: str) -> Article:
    mesh = tuple(
        MeshTerm(
            m["descriptor"],
            major=m["major"] and not m["qualifier"],  # MEDLINE stars the qualifier when there is one
            qualifiers=(Qualifier(m["qualifier"], major=m["major"]),) if m["qualifier"] else (),
        )
        for m in record["mesh"]
    )
    return Article(
        id=record["pmid"], title=record["title"], source=SourceRef(path),
        abstract=(AbstractSection(record["abstract"]),), mesh_terms=mesh,
        keywords=tuple(record["keywords"]),
    )


def precision(pairs: list[tuple[str, str]], topics: dict[str, str]) -> float:
    """Return the share of (article, neighbour) pairs within one topic."""
    same = sum(topics[a] == topics[b] for a, b in pairs)
    return same / len(pairs) if pairs else math.nan


# --- naive baseline -----------------------------------------------------------------------------


def naive_neighbours(
    articles: list[Article], count: int, min_score: float
) -> dict[str, list[tuple[str, float]]]:
    """Return exact top-`count` cosines over the full vectors, with dicts and an inverted index."""
    ordered = sorted(articles, key=lambda a: a.id)
    matrix = build_vectors(ordered, CONFIG.fields).matrix
    rows = [
        dict(zip(matrix.indices[lo:hi].tolist(), matrix.data[lo:hi].tolist()))
        for lo, hi in zip(matrix.indptr[:-1], matrix.indptr[1:])
    ]
    postings: dict[int, list[tuple[int, float]]] = defaultdict(list)
    for i, row in enumerate(rows):
        for term, weight in row.items():
            postings[term].append((i, weight))
    result = {}
    for i, row in enumerate(rows):
        sums: dict[int, float] = defaultdict(float)
        for term, weight in row.items():
            for j, other in postings[term]:
                sums[j] += weight * other
        sums.pop(i, None)
        ranked = sorted((-math.floor(s * 10_000 + 0.5), j) for j, s in sums.items())
        result[ordered[i].id] = [
            (ordered[j].id, -units / 10_000) for units, j in ranked[:count]
            if -units >= max(1, min_score * 10_000)
        ]
    return result


def exact_score(vectors: dict[str, dict[int, float]], a: str, b: str) -> float:
    small, large = sorted((vectors[a], vectors[b]), key=len)
    return sum(w * large.get(t, 0.0) for t, w in small.items())


def compare_with_exact(articles: list[Article], found: dict, exact: dict) -> tuple[float, float]:
    """Return (share of the exact top 5 found, exact score of found / exact score of exact top 5)."""
    ordered = sorted(articles, key=lambda a: a.id)
    matrix = build_vectors(ordered, CONFIG.fields).matrix
    vectors = {
        a.id: dict(zip(matrix.indices[lo:hi].tolist(), matrix.data[lo:hi].tolist()))
        for a, lo, hi in zip(ordered, matrix.indptr[:-1], matrix.indptr[1:])
    }
    hits = total = 0
    got = best = 0.0
    for key, truth in exact.items():
        mine = [n.id for n in found[key]]
        hits += len(set(mine) & {j for j, _ in truth})
        total += len(truth)
        got += sum(exact_score(vectors, key, j) for j in mine)
        best += sum(score for _, score in truth)
    return hits / total, got / best


# --- measurements (each in a child process) --------------------------------------------------------


def measure(corpus: Path, naive: bool, traced: bool) -> dict[str, Any]:
    """Measure one corpus; print nothing, return the figures."""
    articles, topics = load_articles(corpus)
    gc.collect()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cpu, wall = time.process_time(), time.perf_counter()
    found = compute_neighbours(articles, CONFIG)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    rss_added = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024  # KiB on Linux
    pairs = [(key, n.id) for key, neighbours in found.items() for n in neighbours]
    ordered = sorted(articles, key=lambda a: a.id)
    cpu_started, started = time.process_time(), time.perf_counter()
    vectors = build_vectors(ordered, CONFIG.fields)
    vectors_seconds = time.perf_counter() - started
    vectors_cpu = time.process_time() - cpu_started
    profile = _profile_length(vectors.matrix)
    figures: dict[str, Any] = {
        "n": len(articles), "seconds": wall, "cpu": cpu, "rss_mb": rss_added,
        "vectors_seconds": vectors_seconds, "vectors_cpu": vectors_cpu,
        "precision": precision(pairs, topics),
        "pairs": len(pairs), "profile": profile,
    }
    del vectors
    if traced:
        gc.collect()
        tracemalloc.start()
        compute_neighbours(articles, CONFIG)
        figures["traced_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    if naive:
        started = time.perf_counter()
        exact = naive_neighbours(articles, CONFIG.count, CONFIG.min_score)
        figures["naive_seconds"] = time.perf_counter() - started
        figures["naive_precision"] = precision(
            [(key, j) for key, truth in exact.items() for j, _ in truth], topics)
        figures["overlap"], figures["score_ratio"] = compare_with_exact(articles, found, exact)
    return figures


def _profile_length(matrix) -> int:
    profiles = truncate_profiles(matrix)
    return int((profiles.indptr[1:] - profiles.indptr[:-1]).max()) if profiles.shape[0] else 0


def measure_tiny(corpus: Path, sizes: list[int], repeat: int = 5) -> list[dict[str, Any]]:
    """Time compute_neighbours and the naive dict code on the first articles of a corpus."""
    rows = []
    for size in sizes:
        articles, _ = load_articles(corpus, limit=size)
        ours = min(_timed(compute_neighbours, articles, CONFIG) for _ in range(repeat))
        dicts = min(_timed(naive_neighbours, articles, CONFIG.count, CONFIG.min_score)
                    for _ in range(repeat))
        rows.append({"n": size, "ours_ms": ours * 1e3, "naive_ms": dicts * 1e3})
    return rows


def _timed(function, *args) -> float:
    started = time.perf_counter()
    function(*args)
    return time.perf_counter() - started


def run_child(*args: str) -> Any:
    """Run this script in a fresh process with `args` and return the JSON it prints."""
    done = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- report ---------------------------------------------------------------------------------------


def report(results: list[dict[str, Any]], tiny: list[dict[str, Any]]) -> bool:
    """Print the tables; return True when every target is met."""
    print("\ncompute_neighbours (count=5, min_score=0.15). Memory: ru_maxrss increase during the call"
          " in a fresh process (tracemalloc peak in brackets, n <= 10,000). vectors: build_vectors"
          " alone.")
    print(f"{'n':>8} {'wall s':>7} {'cpu s':>7} {'vectors':>13} {'x vectors':>9} {'memory MB':>10}"
          f" {'profile':>7} {'precision':>9}  targets")
    ok = True
    for r in results:
        seconds, megabytes = TARGETS.get(r["n"], (None, None))
        memory_ok = megabytes is None or max(r["rss_mb"], r.get("traced_mb", 0)) <= megabytes
        quality_ok = r["precision"] >= MIN_PRECISION
        if seconds is None or r["seconds"] <= seconds:
            verdict = "met" if memory_ok and quality_ok else "MISSED"
        else:
            verdict = "met on CPU time only" if r["cpu"] <= seconds and memory_ok and quality_ok else "MISSED"
        ok &= verdict == "met"
        traced = f"({r['traced_mb']:.0f})" if "traced_mb" in r else "(-)"
        vectors = f"{r['vectors_seconds']:.2f} ({r['vectors_cpu']:.2f})"
        print(f"{r['n']:>8,} {r['seconds']:7.2f} {r['cpu']:7.2f} {vectors:>13}"
              f" {r['cpu'] / r['vectors_cpu']:9.1f} {r['rss_mb']:5.0f} {traced:>4}"
              f" {r['profile']:>7} {r['precision']:9.4f}  {verdict}")
    for r in results:
        if "naive_seconds" in r:
            print(f"\nnaive pure-Python exact cosines at n={r['n']:,}: {r['naive_seconds']:.1f} s"
                  f" ({r['naive_seconds'] / r['seconds']:.0f}x compute_neighbours),"
                  f" precision {r['naive_precision']:.4f}; compute_neighbours finds"
                  f" {r['overlap']:.1%} of its top 5, score ratio {r['score_ratio']:.4f}")
    if tiny:
        print("\ntiny digests (best of 5): " + ", ".join(
            f"n={t['n']}: {t['ours_ms']:.1f} ms vs naive {t['naive_ms']:.1f} ms" for t in tiny))
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--large", action="store_true", help="also 100,000 articles")
    parser.add_argument("--sizes", default="2000,10000", help="comma-separated sizes")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--naive-size", type=int, default=2000,
                        help="size for the naive baseline (0: skip)")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "digest-bench")
    parser.add_argument("--child", nargs=3, metavar=("CORPUS", "NAIVE", "TRACED"), help=argparse.SUPPRESS)
    parser.add_argument("--tiny", metavar="CORPUS", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        corpus, naive, traced = args.child
        print(json.dumps(measure(Path(corpus), naive == "1", traced == "1")))
        return 0
    if args.tiny:
        print(json.dumps(measure_tiny(Path(args.tiny), [10, 30, 100, 300])))
        return 0
    if not MAKE_CORPUS.exists():
        print(f"needs {MAKE_CORPUS}", file=sys.stderr)
        return 2
    sizes = [int(s) for s in args.sizes.split(",") if s] + ([100_000] if args.large else [])
    results = []
    for n in sizes:
        corpus = make_corpus(n, args.seed, args.workdir)
        print(f"measuring n={n:,} ...", file=sys.stderr, flush=True)
        results.append(run_child("--child", str(corpus), "1" if n == args.naive_size else "0",
                                 "1" if n <= 10_000 else "0"))
    tiny = run_child("--tiny", str(make_corpus(2000, args.seed, args.workdir)))
    return 0 if report(results, tiny) else 1


if __name__ == "__main__":
    sys.exit(main())
