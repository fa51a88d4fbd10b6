"""Stage 4, write: keep the output folder a complete site at every instant, and touch only what changed.

Two trees live side by side: the live site (`site/`) and a spare (`.site.spare/`) holding an older
build. A build brings the spare up to date, writing only the files whose fingerprint differs from
what the spare holds (files the live site already has are hard-linked from it), then exchanges the
two folders in one atomic `renameat2(RENAME_EXCHANGE)`. Readers of `site/` and interrupted builds
therefore only ever see a complete old or a complete new site. Where the exchange is not supported,
two renames are used and `recover_interrupted_swap` repairs the gap after a crash.

Each tree carries a small `.digest-tree` file naming it (by a hash of its contents); its manifest (path -> fingerprint) lives in
the cache folder, so deleting the cache only costs one full write.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable

from generator.errors import DigestError, Problem

TREE_MARKER = ".digest-tree"


@dataclass(frozen=True)
class WriteReport:
    removed: int  # files of the previous site that the new one no longer has


def safe_relative_path(path: str) -> PurePosixPath:
    """Return a page path checked to stay inside the output folder (no '..', absolute or empty parts)."""
    pure = PurePosixPath(path)
    if pure.is_absolute() or any(part in ("", ".", "..") for part in pure.parts) or "\\" in path or "\x00" in path:
        raise DigestError(Problem(path, "refusing to write outside the output folder"))
    return pure


def write_file(tree: Path, relative: str, data: bytes) -> None:
    """Write one file of a tree, replacing (never modifying) what is there: it may be a hard link
    shared with the live site."""
    target = tree.joinpath(*safe_relative_path(relative).parts)
    try:
        stream = open(target, "xb")
    except FileNotFoundError:
        target.parent.mkdir(parents=True, exist_ok=True)
        stream = open(target, "xb")
    except FileExistsError:
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink()
        stream = open(target, "xb")
    with stream:
        stream.write(data)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False when unsupported here."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    if result == 0:
        return True
    error = ctypes.get_errno()
    if error in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: this file system cannot exchange
        return False
    raise OSError(error, os.strerror(error), str(a))


class SiteWriter:
    """Brings the spare tree up to date with a build's files and publishes it by exchange."""

    def __init__(self, output: Path, cache_dir: Path, clean: bool = False):
        self.output = output.resolve()
        self.spare = self.output.with_name(f".{self.output.name}.spare")
        self.previous = self.output.with_name(f".{self.output.name}.prev")
        self.manifests = cache_dir / "trees"
        recover_interrupted_swap(self.output)
        self.live: dict[str, str] = {} if clean else self._manifest(self.output)
        self.spare_files: dict[str, str] = {} if clean else self._manifest(self.spare)
        self.new: dict[str, str] = {}
        self.written = 0
        self.linked = 0

    # Manifests --------------------------------------------------------------------------------

    def _tree_id(self, tree: Path) -> str | None:
        try:
            return (tree / TREE_MARKER).read_text(encoding="ascii").strip() or None
        except (OSError, UnicodeDecodeError):
            return None

    def _manifest(self, tree: Path) -> dict[str, str]:
        tree_id = self._tree_id(tree)
        if not tree_id or not tree_id.isalnum():
            return {}
        try:
            data = json.loads((self.manifests / f"{tree_id}.json").read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    # Planning ---------------------------------------------------------------------------------

    def unchanged_site(self, jobs: dict[str, str]) -> bool:
        """Return True when the live site already holds exactly these files and fingerprints."""
        return bool(self.live) and jobs == {k: v for k, v in self.live.items() if k != TREE_MARKER} and \
            self.output.is_dir()

    def check_output(self) -> None:
        """Refuse an output folder that is not a site this tool made (issue 9: nothing is lost).

        Publishing swaps the output folder out and a later build deletes what was swapped out, so
        `--out content` or `--out .` would have thrown away the curator's records.
        """
        output = self.output
        if self.manifests.resolve().is_relative_to(output):
            raise DigestError(Problem(str(output), "the output folder holds the digest itself (its cache "
                                      "folder is inside it); refusing to replace it", hint="choose another --out"))
        if output.is_symlink() or (output.exists() and not output.is_dir()):
            raise DigestError(Problem(str(output), "the output path exists and is not a folder",
                                      hint="choose another --out, or remove it"))
        if output.is_dir() and not (output / TREE_MARKER).is_file() and not (output / ".nojekyll").is_file():
            if any(output.iterdir()):
                raise DigestError(Problem(str(output), "exists and is not a site made by 'digest build'; "
                                          "refusing to replace it", hint="choose another output folder, or empty it"))

    def prepare(self, jobs: dict[str, str]) -> list[str]:
        """Ready the spare tree for `jobs` (path -> fingerprint); return the paths that must be rendered."""
        self.check_output()
        if not self.spare.is_dir() or not self.spare_files:
            # No manifest: its contents are unknown, so start from an empty spare tree.
            if self.spare.exists() or self.spare.is_symlink():
                _remove_tree(self.spare)
            self.spare.mkdir(parents=True)
            self.spare_files = {}
        else:
            # From the first change on, the spare no longer matches its manifest. Drop its marker now,
            # so a build killed half-way leaves a spare that the next build knows nothing about and
            # starts afresh, instead of trusting the old manifest for files this build replaced
            # (issue 9: that published a page of the killed build after the user's edit was undone).
            (self.spare / TREE_MARKER).unlink(missing_ok=True)
        to_render: list[str] = []
        for path, key in jobs.items():
            safe_relative_path(path)
            if self.spare_files.get(path) == key:
                continue
            if self.live.get(path) == key and self._link_from_live(path):
                continue
            to_render.append(path)
        self._remove_stale(set(jobs))
        self.new = dict(jobs)
        return to_render

    def _link_from_live(self, path: str) -> bool:
        source = self.output.joinpath(*PurePosixPath(path).parts)
        target = self.spare.joinpath(*PurePosixPath(path).parts)
        try:
            if target.exists() or target.is_symlink():
                target.unlink()
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
            os.link(source, target)
        except OSError:
            return False
        self.linked += 1
        return True

    def _remove_stale(self, keep: set[str]) -> None:
        for path in sorted(set(self.spare_files) - keep - {TREE_MARKER}):
            target = self.spare.joinpath(*PurePosixPath(path).parts)
            try:
                target.unlink()
            except OSError:
                continue
            parent = target.parent
            while parent != self.spare:
                try:
                    parent.rmdir()
                except OSError:
                    break
                parent = parent.parent

    def live_has_same_articles(self, jobs: dict[str, str]) -> bool:
        """Return True when the live site's article pages have exactly these fingerprints."""
        return bool(self.live) and _article_pages(self.live) == _article_pages(jobs)

    def copy_folder_from_live(self, folder: str) -> None:
        """Replace a folder of the spare tree (e.g. the search index) by hard links to the live one."""
        source, target = self.output / folder, self.spare / safe_relative_path(folder)
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(source, target, copy_function=os.link)

    # Publishing -------------------------------------------------------------------------------

    def publish(self) -> WriteReport:
        """Record the spare's manifest, then make it the live site in one atomic exchange."""
        # Named by its contents: identical builds give identical bytes, marker included.
        tree_id = hashlib.blake2b(json.dumps(self.new, sort_keys=True).encode(), digest_size=16).hexdigest()
        write_file(self.spare, TREE_MARKER, (tree_id + "\n").encode("ascii"))
        self.manifests.mkdir(parents=True, exist_ok=True)
        manifest = dict(self.new, **{TREE_MARKER: tree_id})
        (self.manifests / f"{tree_id}.json").write_text(json.dumps(manifest, sort_keys=True), encoding="utf-8")
        old = self.live
        if not self.output.exists():
            self.spare.rename(self.output)
        elif not self.output.is_dir():
            raise DigestError(Problem(str(self.output), "the output path exists and is not a folder"))
        elif not _exchange(self.spare, self.output):
            self.output.rename(self.previous)
            self.spare.rename(self.output)
            self.previous.rename(self.spare)
        self._prune_manifests({tree_id, self._tree_id(self.spare) or ""})
        return WriteReport(removed=len(set(old) - set(self.new) - {TREE_MARKER}))

    def _prune_manifests(self, keep: set[str]) -> None:
        for path in self.manifests.glob("*.json"):
            if path.stem not in keep:
                path.unlink(missing_ok=True)


def _remove_tree(path: Path) -> None:
    """Remove a folder (or a file or link in its place) without following links out of it."""
    if path.is_symlink() or not path.is_dir():
        path.unlink()
    else:
        shutil.rmtree(path)


def recover_interrupted_swap(output: Path) -> None:
    """Finish a two-rename swap that a crash interrupted, so the output folder is a complete site."""
    previous = output.with_name(f".{output.name}.prev")
    spare = output.with_name(f".{output.name}.spare")
    if previous.exists() and not output.exists():
        if spare.exists():
            spare.rename(output)  # the new site was complete before the swap began
        else:
            previous.rename(output)
            return
    if previous.exists() and not spare.exists():
        previous.rename(spare)
    elif previous.exists():
        shutil.rmtree(previous, ignore_errors=True)
    # Folders left by the earlier writer of this tool (whole-site staging); harmless to remove.
    shutil.rmtree(output.with_name(f".{output.name}.new"), ignore_errors=True)
    shutil.rmtree(output.with_name(f".{output.name}.old"), ignore_errors=True)


def static_files(static_dirs: Iterable[Path]) -> list[tuple[str, Path]]:
    """Return (site path, file) for the digest's `static/` folders, skipping hidden files and symlinks."""
    found: list[tuple[str, Path]] = []
    for static_dir in static_dirs:
        if not static_dir.is_dir():
            continue
        for path in sorted(p for p in static_dir.rglob("*") if p.is_file() and not p.is_symlink()):
            relative = path.relative_to(static_dir).as_posix()
            if not any(part.startswith(".") for part in PurePosixPath(relative).parts):
                found.append((relative, path))
    return found


def write_or_link(tree: Path, live: Path, relative: str, data: bytes) -> bool:
    """Write a rendered file into `tree`, or hard-link the live site's copy when its bytes are the
    same (a page whose inputs changed without changing what it shows keeps its file). Return True
    when new bytes were written."""
    parts = safe_relative_path(relative).parts
    source = live.joinpath(*parts)
    try:
        if source.is_file() and not source.is_symlink() and source.stat().st_size == len(data) \
                and source.read_bytes() == data:
            target = tree.joinpath(*parts)
            if target.exists() or target.is_symlink():
                target.unlink()
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
            os.link(source, target)
            return False
    except OSError:
        pass
    write_file(tree, relative, data)
    return True



def _article_pages(manifest: dict[str, str]) -> dict[str, str]:
    return {p: k for p, k in manifest.items() if p.startswith("articles/") and p.endswith("/index.html")}
