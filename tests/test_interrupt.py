"""A build interrupted at any moment leaves the previous site or the new one, never a mix (issue 9).

A 300-record digest (`shared/bench/make_corpus.py`) and an edited copy of it are built once each as
references. Then `python -m generator build` runs as a subprocess on one version or the other and is
killed (SIGINT, as Ctrl-C does, or SIGKILL, as the OOM killer and CI time-outs do) after a random
delay; the output folder must then be, file for file and byte for byte, one of the two references.
After a few interruptions a build runs to the end and must give exactly the bytes of a clean build.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import REPO, SHARED, read_tree

MAKE_CORPUS = SHARED / "bench" / "make_corpus.py"
INTERRUPTIONS = 20
KILLS_PER_ROUND = 6


def make_versions(base: Path) -> tuple[Path, Path]:
    """Return the content folders of two versions of a 300-record digest."""
    corpus = base / "corpus"
    subprocess.run([sys.executable, str(MAKE_CORPUS), "--n", "300", "--out", str(corpus), "--formats", "medline"],
                   check=True, capture_output=True, timeout=60)
    first = base / "v1"
    shutil.copytree(corpus / "medline", first)
    second = base / "v2"
    shutil.copytree(first, second)
    files = sorted(second.iterdir())
    for path in files[:40]:  # edit titles and abstracts: article pages, listings, feeds, similarity change
        text = path.read_text(encoding="utf-8")
        path.write_text(text.replace("TI  - ", "TI  - Revised: ", 1).replace("AB  - ", "AB  - Update. ", 1),
                        encoding="utf-8")
    for path in files[40:50]:  # remove some: their pages and terms must disappear
        path.unlink()
    return first, second


def make_digest(root: Path, version: Path) -> None:
    """A digest folder on `version`. Search is off: Pagefind's bundle is not byte-reproducible, and
    indexing happens in the new tree before the same atomic publish as every other file."""
    root.mkdir()
    (root / "digest.yaml").write_text("title: Interrupted digest\nsearch: false\n", encoding="utf-8")
    use_content(root, version)


def use_content(root: Path, version: Path) -> None:
    """Make `version` the digest's content/ (a rename, like a checkout)."""
    content = root / "content"
    if content.exists():
        shutil.rmtree(content)
    shutil.copytree(version, root / "content.tmp")
    os.rename(root / "content.tmp", content)


def reference_tree(version: Path, base: Path, name: str) -> dict[str, bytes]:
    from generator.build import build
    from generator.config import load_config

    root = base / name
    make_digest(root, version)
    build(replace(load_config(root, {}), output_dir="site"), clean=True)
    return read_tree(root / "site")


def start_build(root: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-m", "generator", "build", "--root", str(root), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True)


def stop_group(process: subprocess.Popen, sig: int) -> None:
    """Send a signal to the build and its workers (Ctrl-C and CI cancellation reach the whole group)."""
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass
    try:
        process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
    # Wait for the last worker of the group too: nothing may write once we look at the site.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.01)


@pytest.mark.skipif(not MAKE_CORPUS.exists(), reason="shared/bench/make_corpus.py is not there")
def test_interrupted_builds_leave_old_or_new_site_and_recover(tmp_path):
    started = time.monotonic()
    first, second = make_versions(tmp_path)
    references = {"v1": reference_tree(first, tmp_path, "ref1"), "v2": reference_tree(second, tmp_path, "ref2")}
    assert references["v1"] != references["v2"]
    versions = {"v1": first, "v2": second}
    root = tmp_path / "digest"
    make_digest(root, first)
    finished = start_build(root)
    began = time.monotonic()
    finished.communicate(timeout=60)
    full_build = time.monotonic() - began  # kill points are spread over the length of a build
    assert finished.returncode == 0 and read_tree(root / "site") == references["v1"]

    rng = random.Random(9)
    live, target = "v1", "v2"
    interrupted = 0
    outcomes: list[tuple[str, float, str]] = []
    while interrupted < INTERRUPTIONS:
        use_content(root, versions[target])
        for _ in range(KILLS_PER_ROUND):
            process = start_build(root)
            delay = rng.uniform(0.05, 1.0) * full_build
            sig = rng.choice((signal.SIGINT, signal.SIGKILL))
            began = time.monotonic()
            try:
                process.wait(timeout=delay)
                full_build = time.monotonic() - began  # builds get faster as caches fill
            except subprocess.TimeoutExpired:
                interrupted += 1
            stop_group(process, sig)
            site = read_tree(root / "site")
            state = next((name for name, tree in references.items() if tree == site), None)
            outcomes.append((sig.name, round(delay, 2), state or "MIXED"))
            assert state in (live, target), (
                f"after {sig.name} at {delay:.2f} s the site is neither {live} nor {target}: "
                f"{len(set(site) ^ set(references[target]))} files differ in name, these in content from "
                f"{target}: {sorted(p for p in site if p in references[target] and site[p] != references[target][p])[:20]}; "
                f"outcomes so far: {outcomes}")
            assert process.returncode in (0, 1, 130, -signal.SIGKILL, -signal.SIGINT), process.returncode
            live = state
            if state == target:
                break  # published: interrupting the next (no-op) builds would test nothing new
        # The next build, run to the end, gives the bytes of a clean build of what content/ holds.
        process = start_build(root)
        began = time.monotonic()
        _, stderr = process.communicate(timeout=60)
        if live != target:
            full_build = time.monotonic() - began
        assert process.returncode == 0 and b"Traceback" not in stderr, stderr.decode()
        assert read_tree(root / "site") == references[target], f"rebuild after interruptions differs: {outcomes}"
        live, target = target, ("v1" if target == "v2" else "v2")
    assert interrupted >= INTERRUPTIONS
    assert any(state == "v1" for _, _, state in outcomes) and any(state == "v2" for _, _, state in outcomes)
    print(f"{interrupted} interruptions in {len(outcomes)} runs: {outcomes}; {time.monotonic() - started:.1f} s")
