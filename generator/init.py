"""`digest init DIR`: scaffold a new digest that builds and publishes to GitHub Pages as it is."""

from __future__ import annotations

import argparse
from pathlib import Path

from generator.errors import DigestError, Problem

DIGEST_YAML = """\
# digest.yaml: settings of this digest. Every key is optional; unknown keys are errors.
title: My review digest
description: A curated reading list.
# author: Your Name
language: en
# Public address of the site. A GitHub project site lives under /<repository>/:
# base_url: https://<user>.github.io/<repository>/
# cname: digest.example.org      # a custom domain (writes site/CNAME)
similar:
  count: 5                       # computed similar articles per article; `similar: false` turns them off
  min_score: auto                # the lowest score listed, 0 to 1; auto: a fifth of the articles' median best score
feed:
  limit: 50                      # newest articles in feed.xml
paginate: 100                    # articles per page of the home page and each topic, author...; false: one page
# taxonomies: [topics, authors, journals, years, types]
# search: true
"""

SAMPLE_RECORD = """\
---
# One article. Put records here as YAML, Markdown like this one, or as exports from PubMed
# (.nbib, .xml, a saved abstract page as .txt), Zotero or EndNote (.ris, .bib, CSL .json).
pmid: 36109639
doi: 10.1038/s41591-022-02017-5
title: Anti-CD19 CAR T cell therapy for refractory systemic lupus erythematosus
authors: [Andreas Mackensen, Fabian Müller, Dimitrios Mougiakakos, Georg Schett]
journal: Nature Medicine
journal_abbrev: Nat Med
published: 2022-10
volume: "28"
issue: "10"
pages: 2124-2132
publication_types: [Journal Article]
mesh_terms:
  - Lupus Erythematosus, Systemic/*therapy
  - Receptors, Chimeric Antigen
keywords: [CAR-T, lupus]
abstract: >-
  A sample record: write a short summary here in your own words, or import the abstract from
  PubMed with 'digest add 36109639'.
added: 2025-07-01
---
Your notes, in Markdown: why this article matters, what to read next.
"""

GITIGNORE = "/site/\n/.site.spare/\n/.site.prev/\n/.site.trash-*/\n.digest-cache/\n__pycache__/\n"


WORKFLOW = """\
# Build the digest and publish it to GitHub Pages (Settings → Pages → Source: GitHub Actions).
name: Publish digest
on:
  push:
    branches: [main]
  workflow_dispatch:
permissions:
  contents: read
  pages: write
  id-token: write
concurrency:
  group: pages
  cancel-in-progress: true
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with:
          python-version: "3.11"
      - id: pages
        uses: actions/configure-pages@v5
      - name: Install review digest
        # From PyPI, or pin the tool's repository: pip install "git+https://github.com/OWNER/review-digest"
        run: pip install review-digest
      - name: Build the site
        run: digest build --base-url "${{ steps.pages.outputs.base_url }}/"
      - uses: actions/upload-pages-artifact@v3
        with:
          path: site
  deploy:
    needs: build
    runs-on: ubuntu-latest
    environment:
      name: github-pages
      url: ${{ steps.deployment.outputs.page_url }}
    steps:
      - id: deployment
        uses: actions/deploy-pages@v4
"""


def scaffold(directory: Path) -> list[Path]:
    """Create the digest's files; refuse (writing nothing) if any of them exists."""
    files = {
        "digest.yaml": DIGEST_YAML,
        "content/36109639.md": SAMPLE_RECORD,
        ".gitignore": GITIGNORE,
        ".github/workflows/pages.yml": WORKFLOW,
    }
    existing = [directory / name for name in files if (directory / name).exists()]
    if existing:
        raise DigestError([Problem(str(p), "already exists; digest init never overwrites files",
                                   hint="choose an empty folder") for p in existing])
    written = []
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def run_init(args: argparse.Namespace) -> int:
    written = scaffold(args.directory)
    for path in written:
        print(f"created {path}")
    print(f"Next: cd {args.directory} && digest build   (or digest serve to preview)")
    return 0
