"""Time from saving a record to the reloaded page showing it, with `digest serve` and headless Chromium.

Builds a digest from the synthetic MEDLINE corpus (1,000 articles by default), runs
`digest serve -v --port 0` on it, opens one article page per edit in headless Chromium, edits that
record's title on disk and waits for the page to reload itself. The latency is the wall-clock time
from just before the write to the reloaded page's DOMContentLoaded (both clocks are this machine's).

Printed: the median and range of the reload latency, the server's rebuild time for the same saves
(from its `-v` stage timings) and a standalone `build()` of the same digest as the baseline, so the
ratio shows what serving adds on top of building (debounce, event, reload, page load).

    python benchmarks/serve_reload.py [--n 1000] [--edits 10] [--work DIR]
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAKE_CORPUS = Path("/work/shared/bench/make_corpus.py")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Stored per page load, so the latency ends when the new page is parsed, not when Python polls.
LOADED_AT = "document.addEventListener('DOMContentLoaded', () => { window.__loadedAt = Date.now(); });"


def make_digest(work: Path, n: int) -> Path:
    """Generate the corpus (once) and return a digest root whose content/ is its MEDLINE files."""
    corpus = work / f"corpus{n}"
    if not (corpus / "medline").is_dir():
        subprocess.run([sys.executable, str(MAKE_CORPUS), "--n", str(n), "--out", str(corpus),
                        "--formats", "medline"], check=True, stdout=subprocess.DEVNULL)
    root = work / f"digest{n}"
    if root.exists():
        shutil.rmtree(root)
    shutil.copytree(corpus / "medline", root / "content")
    (root / "digest.yaml").write_text("title: Serve benchmark\n", encoding="utf-8")
    return root


def baseline_builds(root: Path, edits: int = 3) -> tuple[float, float, dict[str, float]]:
    """Time builds in this process, no server: a full clean build, then one-record edits (median).

    The edits use the last records, so the served edits below (the first ones) are not warmed up.
    """
    sys.path.insert(0, str(REPO))
    from generator.build import build
    from generator.config import load_config

    config = load_config(root, {})
    start = time.perf_counter()
    build(config, clean=True)
    full = time.perf_counter() - start
    times: list[tuple[float, dict[str, float]]] = []
    for n, record in enumerate(sorted((root / "content").glob("*.nbib"))[-edits:]):
        edit_title(record, f"baseline {n}")
        start = time.perf_counter()
        report = build(config)
        times.append((time.perf_counter() - start, report.stage_seconds))
    times.sort(key=lambda t: t[0])
    median, stages = times[len(times) // 2]
    return full, median, stages


class ServerOutput:
    """Read the server's stdout on a thread; keep the URL and each rebuild's total and stage times."""

    def __init__(self, process: subprocess.Popen):
        self.url = ""
        self.ready = threading.Event()
        self.builds: list[tuple[float, dict[str, float]]] = []
        self._stages: dict[str, float] = {}
        self._lock = threading.Lock()
        threading.Thread(target=self._read, args=(process,), daemon=True).start()

    def _read(self, process: subprocess.Popen) -> None:
        for line in process.stdout:
            if match := re.match(r"\s+(\w+)\s+([\d.]+) ms$", line):
                self._stages[match.group(1)] = float(match.group(2)) / 1000
            elif match := re.search(r"Built .* in ([\d.]+) s", line):
                with self._lock:
                    self.builds.append((float(match.group(1)), self._stages))
                self._stages = {}
            elif match := re.search(r"Serving (http://\S+)", line):
                self.url = match.group(1)
                self.ready.set()

    def build_count(self) -> int:
        with self._lock:
            return len(self.builds)


def edit_title(record: Path, marker: str) -> None:
    """Put `marker` at the start of the record's MEDLINE title (TI) and save the file in place."""
    text = record.read_text(encoding="utf-8")
    text = re.sub(r"^TI  - (?:\[[\w ]+\] )?", f"TI  - [{marker}] ", text, count=1, flags=re.MULTILINE)
    record.write_text(text, encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="articles in the digest (default 1000)")
    parser.add_argument("--edits", type=int, default=10, help="saves to time (default 10)")
    parser.add_argument("--work", type=Path, help="folder for the corpus and digest (default: a temporary one)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for one reload")
    options = parser.parse_args()

    from playwright.sync_api import expect, sync_playwright

    work = options.work or Path(tempfile.mkdtemp(prefix="serve-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    root = make_digest(work, options.n)
    print(f"digest: {options.n} articles in {root}")
    full_seconds, build_seconds, build_stages = baseline_builds(root)
    print(f"baseline, no server: full build {full_seconds * 1000:.0f} ms; build after a one-record edit "
          f"{build_seconds * 1000:.0f} ms (" + ", ".join(f"{k} {v * 1000:.0f}" for k, v in build_stages.items()) + ")")

    log = open(work / "serve-stderr.log", "w")  # request log (-v) and any errors
    process = subprocess.Popen([sys.executable, "-m", "generator", "serve", "--root", str(root), "--port", "0", "-v"],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=log, text=True, bufsize=1)
    output = ServerOutput(process)
    latencies: list[float] = []
    server_builds: list[tuple[float, dict[str, float]]] = []
    try:
        if not output.ready.wait(options.timeout):
            raise SystemExit("the server did not start")
        records = sorted((root / "content").glob("*.nbib"))
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(bypass_csp=True)  # the benchmark evaluates its own probes
            page.add_init_script(LOADED_AT)
            for n in range(options.edits):
                record = records[(n * 97) % len(records)]
                page.goto(f"{output.url}articles/{record.stem}/")
                page.wait_for_function("window.__loadedAt !== undefined")
                time.sleep(0.3)  # let the page's event stream connect
                builds_before = output.build_count()
                marker = f"edit {n}"
                written_at = time.time() * 1000
                edit_title(record, marker)
                expect(page.locator("main h1")).to_contain_text(f"[{marker}]", timeout=options.timeout * 1000)
                # The new title can show while the reloaded page is still loading: wait for its load stamp.
                page.wait_for_function("window.__loadedAt !== undefined && window.__loadedAt !== null")
                latency = page.evaluate("window.__loadedAt") - written_at
                latencies.append(latency)
                deadline = time.monotonic() + 5
                while output.build_count() <= builds_before and time.monotonic() < deadline:
                    time.sleep(0.01)
                extra = output.build_count() - builds_before
                server_builds.extend(output.builds[builds_before:])
                rebuild = output.builds[-1][0] * 1000 if extra else float("nan")
                print(f"  edit {n + 1:2}: reloaded page after {latency:6.0f} ms (server rebuild {rebuild:5.0f} ms,"
                      f" {extra} build{'s' * (extra != 1)})")
            browser.close()
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()

    median = statistics.median(latencies)
    rebuild_median = statistics.median(b for b, _ in server_builds) * 1000
    print(f"\nsave -> reloaded page: median {median:.0f} ms (min {min(latencies):.0f}, max {max(latencies):.0f}) "
          f"over {len(latencies)} edits; target <= 300 ms")
    print(f"server rebuild per save: median {rebuild_median:.0f} ms")
    stage_names = server_builds[0][1].keys() if server_builds else ()
    for stage in stage_names:
        values = [stages.get(stage, 0.0) for _, stages in server_builds]
        print(f"  {stage:<8} median {statistics.median(values) * 1000:7.0f} ms")
    print(f"baseline (one-record edit, build alone, no server): {build_seconds * 1000:.0f} ms; "
          f"reload / build = {median / (build_seconds * 1000):.2f}")
    from generator.watch import DEBOUNCE_SECONDS, SETTLED_SECONDS

    print(f"reload median - rebuild median: {median - rebuild_median:.0f} ms (debounce {SETTLED_SECONDS * 1000:.0f}-{DEBOUNCE_SECONDS * 1000:.0f} ms"
          " + event + page load; negative: the open page is rendered and reloaded first, the rest follows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
