"""Search indexing: a digest's index in shards against one Pagefind index, in the same command.

Builds two copies of a synthetic MEDLINE digest (10,000 articles by default) with search on: one as
`digest build` does it (above 1,500 articles the index is split into shards and an edit indexes
again only the shard of the edited article), one with a single index (`SHARD_ARTICLES` raised
past the digest's size, as the tool did before shards). Then it edits one record's title in each,
alternating, and rebuilds. Printed: the search stage and the whole build, cold and per edit
(medians), and the ratio of shards to one index.

    python benchmarks/search.py [--n 10000] [--edits 3] [--work DIR]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAKE_CORPUS = REPO.parent / "shared" / "bench" / "make_corpus.py"


def make_digest(work: Path, n: int, name: str) -> Path:
    """Generate the corpus (once) and return a new digest root whose content/ is its MEDLINE files."""
    corpus = work / f"corpus{n}"
    if not (corpus / "medline").is_dir():
        subprocess.run([sys.executable, str(MAKE_CORPUS), "--n", str(n), "--out", str(corpus),
                        "--formats", "medline"], check=True, stdout=subprocess.DEVNULL)
    root = work / name
    if root.exists():
        shutil.rmtree(root)
    shutil.copytree(corpus / "medline", root / "content")
    (root / "digest.yaml").write_text("title: Search benchmark\nsearch: true\n", encoding="utf-8")
    return root


def timed_build(root: Path, one_index: bool, clean: bool = False) -> tuple[float, float, int]:
    """Build in this process; return (whole build s, search stage s, pages indexed anew)."""
    from generator import search
    from generator.build import build
    from generator.config import load_config

    shard_articles = search.SHARD_ARTICLES
    search.SHARD_ARTICLES = 10**9 if one_index else shard_articles
    try:
        start = time.perf_counter()
        report = build(load_config(root, {}), clean=clean)
        return time.perf_counter() - start, report.stage_seconds.get("search", 0.0), report.searched
    finally:
        search.SHARD_ARTICLES = shard_articles


def edit_title(record: Path, marker: str) -> None:
    text = record.read_text(encoding="utf-8")
    record.write_text(text.replace("TI  - ", f"TI  - [{marker}] ", 1), encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000, help="articles in the digest (default 10000)")
    parser.add_argument("--edits", type=int, default=3, help="title edits per variant (default 3)")
    parser.add_argument("--work", type=Path, help="folder for the corpus and digests (default: a temporary one)")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    work = args.work or Path(tempfile.mkdtemp(prefix="digest-search-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    variants = {"shards": make_digest(work, args.n, "digest-shards"), "one index": make_digest(work, args.n, "digest-one")}
    cold = {name: timed_build(root, name == "one index", clean=True) for name, root in variants.items()}
    edits: dict[str, list[tuple[float, float, int]]] = {name: [] for name in variants}
    for number in range(args.edits):
        for name, root in (variants.items() if number % 2 == 0 else reversed(variants.items())):
            record = sorted((root / "content").glob("*.nbib"))[(number * 3301 + 17) % args.n]
            edit_title(record, f"edit {number}")
            edits[name].append(timed_build(root, name == "one index"))

    def median(values: list[tuple[float, float, int]], field: int) -> float:
        return statistics.median(v[field] for v in values)

    print(f"{args.n} articles, {args.edits} title edits per variant (medians); search = Pagefind stage")
    print(f"{'scenario':<22}{'one index':>12}{'shards':>12}{'ratio':>8}")
    rows = [("cold: search", cold["one index"][1], cold["shards"][1]),
            ("cold: whole build", cold["one index"][0], cold["shards"][0]),
            ("edit: search", median(edits["one index"], 1), median(edits["shards"], 1)),
            ("edit: whole build", median(edits["one index"], 0), median(edits["shards"], 0))]
    for label, one, shards in rows:
        print(f"{label:<22}{one:>11.2f}s{shards:>11.2f}s{shards / one:>8.2f}")
    print(f"pages indexed per edit: one index {median(edits['one index'], 2):.0f}, shards {median(edits['shards'], 2):.0f}")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
