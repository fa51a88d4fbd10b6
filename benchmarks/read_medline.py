"""Time the MEDLINE reader on the 10,000-record synthetic corpus, against just reading the files.

    python benchmarks/read_medline.py                 # generate the corpus in a temporary folder
    python benchmarks/read_medline.py --corpus DIR    # reuse DIR/medline/*.nbib (or DIR/*.nbib)
    python benchmarks/read_medline.py --profile       # also print the top of a cProfile run

The baseline reads and decodes every file; the measured pass does the same and calls `medline.read`.
Both run `--repeat` times in one process and the best time of each is reported, so the figures are
comparable on a busy machine. Target: at most 2 s for 10,000 files.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from generator.readers import medline  # noqa: E402

MAKE_CORPUS = REPO.parent / "shared" / "bench" / "make_corpus.py"
TARGET_SECONDS = 2.0


class Timing(NamedTuple):
    wall: float
    cpu: float


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="medline-bench-") as scratch:
        folder = find_files(args.corpus) if args.corpus else generate(Path(scratch), args.n, args.make_corpus)
        files = sorted(folder.glob("*.nbib"))
        if not files:
            print(f"no .nbib files under {folder}", file=sys.stderr)
            return 2
        baseline = best_of(args.repeat, lambda: read_only(files))
        measured = best_of(args.repeat, lambda: read_and_parse(files))
        records, problems = read_and_parse(files)
        report(len(files), records, problems, baseline, measured)
        if args.profile:
            profile(files)
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, help="existing corpus folder (with medline/*.nbib)")
    parser.add_argument("--n", type=int, default=10_000, help="records to generate (default 10000)")
    parser.add_argument("--repeat", type=int, default=3, help="passes of each kind; the best counts")
    parser.add_argument("--make-corpus", type=Path, default=MAKE_CORPUS, help="path of make_corpus.py")
    parser.add_argument("--profile", action="store_true", help="print the top of a cProfile run")
    return parser.parse_args(argv)


def find_files(corpus: Path) -> Path:
    """Accept either the corpus root or its medline/ folder."""
    return corpus / "medline" if (corpus / "medline").is_dir() else corpus


def generate(scratch: Path, n: int, make_corpus: Path) -> Path:
    """Write the deterministic synthetic corpus with the shared generator and return its medline/ folder."""
    if not make_corpus.exists():
        raise SystemExit(f"{make_corpus} not found: pass --make-corpus or --corpus")
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(make_corpus), "--n", str(n), "--out", str(scratch), "--formats", "medline"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"make_corpus.py failed:\n{done.stderr}")
    print(f"generated {n} records in {time.perf_counter() - started:.1f} s")
    return scratch / "medline"


def read_only(files: list[Path]) -> tuple[int, int]:
    """The baseline: read and decode every file, as the loader must anyway."""
    total = 0
    for path in files:
        total += len(path.read_bytes().decode("utf-8"))
    return total, 0


def read_and_parse(files: list[Path]) -> tuple[int, int]:
    """Read, decode and parse every file; return (records, problems)."""
    records = problems = 0
    read = medline.read
    for path in files:
        result = read(path.read_bytes().decode("utf-8"), str(path))
        records += len(result.records)
        problems += len(result.problems)
    return records, problems


def best_of(repeat: int, run: Callable[[], object]) -> Timing:
    """Return the best wall-clock and CPU times of `repeat` runs (CPU time is steadier on a busy machine)."""
    wall = cpu = float("inf")
    for _ in range(max(1, repeat)):
        started, started_cpu = time.perf_counter(), time.process_time()
        run()
        wall = min(wall, time.perf_counter() - started)
        cpu = min(cpu, time.process_time() - started_cpu)
    return Timing(wall, cpu)


def report(files: int, records: int, problems: int, baseline: Timing, measured: Timing) -> None:
    print(f"files: {files}, records: {records}, problems: {problems}")
    for name, timing in (
        ("baseline (read + decode)", baseline),
        ("medline.read (read + decode + parse)", measured),
    ):
        print(
            f"{name:37s} {timing.wall:7.3f} s wall {timing.cpu:7.3f} s cpu  {files / timing.wall:10,.0f} files/s"
        )
    print(
        f"ratio to baseline: {measured.wall / baseline.wall:.1f}x; parsing alone {measured.wall - baseline.wall:.3f} s"
    )
    scaled = measured.wall * 10_000 / files
    verdict = "within" if scaled <= TARGET_SECONDS else "OVER"
    print(f"per 10,000 files: {scaled:.2f} s ({verdict} the {TARGET_SECONDS:.0f} s target)")


def profile(files: list[Path]) -> None:
    profiler = cProfile.Profile()
    profiler.runcall(read_and_parse, files)
    pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    raise SystemExit(main())
