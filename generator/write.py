"""Stage 4, write: put the rendered pages on disk so the output folder is always a complete site.

The new site is assembled in a sibling folder, then swapped in with two renames; a crash between
them is repaired by the next build (`recover_interrupted_swap`). Files whose bytes did not change
are hard-linked from the previous site instead of written again, which keeps their timestamps.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable

from generator.errors import DigestError, Problem
from generator.render import Page


@dataclass(frozen=True)
class WriteReport:
    written: int  # files whose bytes are new or changed
    unchanged: int
    removed: int


def _staging(output: Path) -> Path:
    return output.with_name(f".{output.name}.new")


def _previous(output: Path) -> Path:
    return output.with_name(f".{output.name}.old")


def recover_interrupted_swap(output: Path) -> None:
    """Finish or undo a swap that a crash interrupted, so the output folder is a complete site."""
    previous, staging = _previous(output), _staging(output)
    if previous.exists() and not output.exists():
        previous.rename(output)
    if previous.exists():
        shutil.rmtree(previous, ignore_errors=True)
    if staging.exists():
        shutil.rmtree(staging, ignore_errors=True)


def safe_relative_path(path: str) -> PurePosixPath:
    """Return a page path checked to stay inside the output folder (no '..', absolute or hidden parts)."""
    pure = PurePosixPath(path)
    if pure.is_absolute() or any(part in ("", ".", "..") for part in pure.parts) or "\\" in path or "\x00" in path:
        raise DigestError(Problem(path, "refusing to write outside the output folder"))
    return pure


def write_site(pages: Iterable[Page], output: Path, static_dirs: Iterable[Path] = ()) -> WriteReport:
    """Write pages and static files into `output`, atomically replacing what was there."""
    output = output.resolve()
    recover_interrupted_swap(output)
    staging = _staging(output)
    staging.mkdir(parents=True)
    written = unchanged = 0
    try:
        pages = list(pages) + list(static_pages(static_dirs))
        seen: set[str] = set()
        for page in pages:
            relative = safe_relative_path(page.path)
            key = relative.as_posix()
            if key in seen:
                continue  # the first page for a path wins: generated pages come before static files
            seen.add(key)
            target = staging.joinpath(*relative.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            old = output.joinpath(*relative.parts)
            if _same_bytes(old, page.content):
                os.link(old, target)
                unchanged += 1
            else:
                target.write_bytes(page.content)
                written += 1
        removed = _count_removed(output, seen)
        _swap(staging, output)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise DigestError(Problem(str(output), f"cannot write the site: {exc.strerror or exc}",
                                  hint="check free disk space and permissions; the previous site is untouched"))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return WriteReport(written=written, unchanged=unchanged, removed=removed)


def static_pages(static_dirs: Iterable[Path]) -> Iterable[Page]:
    """Yield the files of the digest's `static/` folders as pages, skipping hidden files and symlinks."""
    for static_dir in static_dirs:
        if not static_dir.is_dir():
            continue
        for path in sorted(p for p in static_dir.rglob("*") if p.is_file() and not p.is_symlink()):
            relative = path.relative_to(static_dir).as_posix()
            if not any(part.startswith(".") for part in PurePosixPath(relative).parts):
                yield Page(relative, path.read_bytes())


def _same_bytes(path: Path, content: bytes) -> bool:
    try:
        if path.is_symlink() or path.stat().st_size != len(content):
            return False
        return path.read_bytes() == content
    except OSError:
        return False


def _count_removed(output: Path, kept: set[str]) -> int:
    if not output.is_dir():
        return 0
    return sum(1 for p in output.rglob("*") if p.is_file() and p.relative_to(output).as_posix() not in kept)


def _swap(staging: Path, output: Path) -> None:
    previous = _previous(output)
    if output.exists():
        if not output.is_dir():
            raise DigestError(Problem(str(output), "the output path exists and is not a folder"))
        output.rename(previous)
    staging.rename(output)
    shutil.rmtree(previous, ignore_errors=True)
