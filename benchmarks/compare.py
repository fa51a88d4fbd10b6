"""Compare two commits of this repository on the same corpus: cold builds and one-title edits, run
in alternating pairs so that this machine's drift hits both alike.

    python benchmarks/compare.py --base c12ea44                 # HEAD against c12ea44, 10,000 records
    python benchmarks/compare.py --base main~3 --head main --size 1000 --cold 2 --edits 8
    python benchmarks/compare.py --base c12ea44 --daemon --cold 0  # edits through each commit's daemon
    python benchmarks/compare.py --base 9aad728 --drop-caches --edits 0  # cold builds reading from the disk
    python benchmarks/compare.py --base 8b82da2 --cold 0 --edits 0 --retitles 6  # every page rendered again
    python benchmarks/compare.py --base d1c9f0b --cold 0 --edits 0 --retitles 4 --edit-after  # and an edit after each

This VM runs the same build 10 to 30 % slower or faster from one quarter of an hour to the next, so
two benchmark runs made apart cannot show a change of a few per cent. Each commit gets a git
worktree and its own copy of the digest; in each pair both commits build, in turns first, and an
edit changes the same record's title the same way in both copies. Printed: per scenario the
medians of wall and CPU time (and of that, the system's), the head/base ratio, in how many pairs
the head was faster and the medians of peak RSS (the largest process of a build: with `--daemon`
the client's, not the daemon's); per stage the medians of `digest build -v`'s timings. Outputs of
cold builds are moved aside and deleted when measuring is over (see benchmarks/build.py), as are
the worktrees and the copies. On a file system that skips recently freed inodes (this VM's ext4
has no journal), cold builds started within about 6 minutes of a large deletion, such as the end of
another run of this script, are slowed, and not evenly: in one run the head's took 19.6-29.0 s
(44 s of CPU) and the base's 14.0-15.9 s (27 s) for a change that made no difference in quiet
runs (13.3-15.3 s against 13.7-14.2 s, 5.3-6.0 s of system time each). A side whose system time
stands out measured the file system: wait and run again.
With `--search` the digests have search on (Pagefind must be installed: `pip install 'pagefind[bin]'`).
With `--daemon` every build is a `digest build --daemon` client of its commit's own daemon (the
warm process of `digest serve` and the daemon); the daemons are stopped at the end.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("build_benchmark", Path(__file__).with_name("build.py"))
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)  # type: ignore[union-attr]

STAGE = re.compile(r"^\s+(\w[\w ]*?)\s+([\d.]+) ms$", re.MULTILINE)


class Run(NamedTuple):
    """What one build measured."""

    wall: float  # s
    cpu: float  # s, user and system, of the build and its child processes
    system: float  # s of it in the kernel
    peak: float  # MB of RSS
    stages: dict[str, float]  # ms, as `digest build -v` prints them


class Side:
    """One commit: its worktree and its copy of the digest, and what its builds measured."""

    def __init__(self, label: str, commit: str, work: Path, corpus: Path, daemon: bool = False,
                 search: bool = False):
        self.label, self.commit, self.daemon = label, commit, daemon
        self.code = work / f"code-{label}"
        self.digest = work / f"digest-{label}"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "--force", str(self.code), commit],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not (self.digest / "content").is_dir():
            shutil.copytree(corpus / "medline", self.digest / "content")
        (self.digest / "digest.yaml").write_text("title: Benchmark\nbase_url: https://example.org/digest/\n"
                                                 + ("" if search else "search: false\n"))
        self.results: dict[str, list[Run]] = {}  # per scenario, each build's

    def build(self, scenario: str | None) -> Run:
        """Run `digest build -v` with this commit's code; return what it measured, recorded under
        `scenario` (None: a warm-up, not recorded)."""
        env = dict(os.environ, PYTHONPATH=str(self.code))
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        start = time.perf_counter()
        command = [sys.executable, "-m", "generator", "build", "-v", *(["--daemon"] if self.daemon else [])]
        process = subprocess.Popen(command, cwd=self.digest, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        output = process.stdout.read().decode(errors="replace") if process.stdout else ""
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{self.label} ({self.commit}) failed:\n{output[-2000:]}")
        peak = usage.ru_maxrss / 1024  # KiB on Linux: the build's largest process (a --daemon client's own)
        run = Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_stime, peak,
                  {name: float(ms) for name, ms in STAGE.findall(output)})
        if scenario is not None:
            self.results.setdefault(scenario, []).append(run)
        return run

    def edit(self, index: int, tag: int) -> None:
        """Give the `index`-th record (by name) a new title prefix."""
        target = sorted((self.digest / "content").iterdir())[index]
        text = target.read_text()
        target.write_text(re.sub(r"^TI  - (Edit \d+: )?", f"TI  - Edit {tag}: ", text, count=1, flags=re.MULTILINE))

    def retitle(self, tag: int) -> None:
        """Give the site a new title, which every page shows: every page is rendered again."""
        settings = self.digest / "digest.yaml"
        settings.write_text(re.sub(r"^title: .*$", f"title: Benchmark {tag}", settings.read_text(), count=1,
                                   flags=re.MULTILINE))

    def remove(self, keep_digest: bool) -> None:
        if self.daemon:
            env = dict(os.environ, PYTHONPATH=str(self.code))
            subprocess.run([sys.executable, "-m", "generator", "daemon", "stop", "--root", str(self.digest)], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(self.code)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not keep_digest:
            shutil.rmtree(self.digest, ignore_errors=True)


def drop_caches() -> None:
    """Empty the kernel's page, dentry and inode caches (Linux, as root), as after a reboot."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError as exc:
        raise SystemExit(f"--drop-caches: cannot write /proc/sys/vm/drop_caches ({exc.strerror}); run as root")


def compare(sides: list[Side], cold: int, edits: int, trash: bench.Trash, seed: int, uncached: bool = False,
            retitles: int = 0, edit_after: bool = False) -> None:
    for number in range(cold):
        for side in sides if number % 2 == 0 else sides[::-1]:
            for name in ("site", ".site.spare", ".digest-cache"):
                trash.discard(side.digest / name)
            drop_caches() if uncached else os.sync()
            print(f"cold {number + 1}/{cold}: {side.label} {side.build('cold').wall:.2f} s", flush=True)
    rng = random.Random(seed)
    if retitles:
        for side in sides:
            if not (side.digest / "site").is_dir():
                side.build(None)
            side.retitle(rng.randrange(10**6))
            side.build(None)  # from now on the spare tree holds its own copy of every page: not measured
        for number in range(retitles):
            tag, walls = rng.randrange(10**6), []
            index = rng.randrange(len(list((sides[0].digest / "content").iterdir())))
            for side in sides if number % 2 == 0 else sides[::-1]:
                side.retitle(tag)
                walls.append(f"{side.label} {side.build('retitle').wall:.2f} s")
                if edit_after:  # right after a build that changed every page: the spare is two builds old
                    side.edit(index, tag)
                    walls.append(f"then {side.build('edit after').wall:.2f} s")
            print(f"retitle {number + 1}/{retitles}: {', '.join(walls)}", flush=True)
    if not edits:
        return
    count = len(list((sides[0].digest / "content").iterdir()))
    for side in sides:
        if not (side.digest / "site").is_dir():
            side.build(None)  # a cold build first
        side.edit(rng.randrange(count), rng.randrange(10**6))
        side.build(None)  # the first rebuild after a cold build also fills the spare tree: not measured
    for number in range(edits):
        index, tag = rng.randrange(count), rng.randrange(10**6)
        walls = []
        for side in sides if number % 2 == 0 else sides[::-1]:
            side.edit(index, tag)
            walls.append(f"{side.label} {side.build('edit').wall:.2f} s")
        print(f"edit {number + 1}/{edits}: {', '.join(walls)}", flush=True)


SCENARIOS = ("cold", "retitle", "edit after", "edit")


def report(base: Side, head: Side) -> None:
    print(f"\n| scenario | base {base.commit[:10]} wall / CPU (system) s | head {head.commit[:10]} wall / CPU (system) s "
          "| head/base wall | pairs head faster | peak RSS MB base -> head |")
    print("|---|---:|---:|---:|---:|---:|")
    for scenario in SCENARIOS:
        ours, theirs = head.results.get(scenario, []), base.results.get(scenario, [])
        if not ours:
            continue
        walls, cpus, systems, peaks = ([statistics.median(getattr(run, field) for run in runs) for runs in (theirs, ours)]
                                       for field in ("wall", "cpu", "system", "peak"))
        faster = sum(h.wall < b.wall for h, b in zip(ours, theirs))
        print(f"| {scenario} | {walls[0]:.2f} / {cpus[0]:.1f} ({systems[0]:.1f}) | {walls[1]:.2f} / {cpus[1]:.1f} "
              f"({systems[1]:.1f}) | {walls[1] / walls[0]:.3f} | {faster} of {len(ours)} | {peaks[0]:.0f} -> {peaks[1]:.0f} |")
    for scenario in SCENARIOS:
        if scenario not in head.results:
            continue
        stages = list(head.results[scenario][0].stages)
        medians = [{name: statistics.median(r.stages.get(name, 0.0) for r in side.results[scenario]) for name in stages}
                   for side in (base, head)]
        print(f"\n{scenario}, stage medians in ms (base -> head): "
              + ", ".join(f"{name} {medians[0][name]:.0f} -> {medians[1][name]:.0f}" for name in stages))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the commit to compare against")
    parser.add_argument("--head", default="HEAD", help="the commit measured (default HEAD)")
    parser.add_argument("--size", type=int, default=10000, help="records in the corpus")
    parser.add_argument("--cold", type=int, default=4, help="cold builds per commit")
    parser.add_argument("--edits", type=int, default=12, help="one-title edits per commit")
    parser.add_argument("--retitles", type=int, default=0,
                        help="builds after a new site title (every page rendered again) per commit")
    parser.add_argument("--edit-after", action="store_true",
                        help="follow each of those builds with a one-title edit, measured as 'edit after'")
    parser.add_argument("--seed", type=int, default=None, help="which records are edited (default: by time)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/digest-bench"))
    parser.add_argument("--keep", action="store_true", help="keep the two digests (their sites and caches)")
    parser.add_argument("--daemon", action="store_true", help="build through each commit's daemon")
    parser.add_argument("--search", action="store_true",
                        help="with search on, the default (Pagefind indexes what each build changed)")
    parser.add_argument("--drop-caches", action="store_true",
                        help="empty the kernel's caches before each cold build, so that it reads its files from "
                             "the disk (Linux, as root)")
    args = parser.parse_args()
    if args.drop_caches:
        drop_caches()  # fails early without the right to
    commits = [subprocess.run(["git", "-C", str(REPO), "rev-parse", rev], check=True, capture_output=True,
                              text=True).stdout.strip() for rev in (args.base, args.head)]
    work = args.work / f"compare-{args.size}"
    work.mkdir(parents=True, exist_ok=True)
    corpus = bench.make_corpus(args.size, args.work)
    trash = bench.Trash(work / "trash", delete_now=False)
    sides = [Side(label, commit, work, corpus, args.daemon, args.search) for label, commit in zip(("base", "head"), commits)]
    try:
        compare(sides, args.cold, args.edits, trash, args.seed if args.seed is not None else time.time_ns(),
                args.drop_caches, args.retitles, args.edit_after)
        report(*sides)
    finally:
        for side in sides:
            side.remove(args.keep)
        trash.empty()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
