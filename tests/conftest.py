"""Shared fixtures: tiny digests written inline, built with the real pipeline."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Callable

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SEED = SHARED / "seed" / "000_090769ea9b0f13e6.txt"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture
def make_site(tmp_path: Path) -> Callable[..., Path]:
    """Write a digest folder from a {relative path: text} mapping and return its root."""

    def make(files: dict[str, str], config: str | None = None) -> Path:
        root = tmp_path / "digest"
        for relative, text in files.items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        (root / "content").mkdir(parents=True, exist_ok=True)
        if config is not None:
            (root / "digest.yaml").write_text(textwrap.dedent(config), encoding="utf-8")
        return root

    return make


@pytest.fixture
def example_copy(tmp_path: Path) -> Path:
    """A copy of the example digest's records and settings, to edit and build."""
    import shutil

    root = tmp_path / "digest"
    shutil.copytree(REPO / "content", root / "content")
    shutil.copy(REPO / "digest.yaml", root / "digest.yaml")
    return root


def build_site(root: Path, **overrides):
    """Build the digest at `root` with the real pipeline; return the report."""
    from generator.build import build
    from generator.config import load_config

    return build(load_config(root, overrides))


def read_tree(folder: Path, with_search_index: bool = False) -> dict[str, bytes]:
    """Return every file under a folder as {relative path: bytes}.

    Pagefind's bundle is left out unless asked for: Pagefind itself does not write byte-identical
    filter and metadata files from one run to the next (upstream Pagefind/pagefind#638).
    """
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and (with_search_index or not p.relative_to(folder).as_posix().startswith("pagefind/"))}
