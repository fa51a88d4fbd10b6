"""`digest import FILE...`: convert exports into native YAML records, one file per article, named by id."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from generator.config import load_config
from generator.errors import DigestError, Problem
from generator.load import merge_records, read_file
from generator.native import article_to_native, dump_record, write_record_file


def import_files(files: list[Path], target: Path, force: bool = False) -> tuple[list[Path], list[Path], list[Problem]]:
    """Read exported files and write one record per article; return (written, skipped, problems)."""
    records = []
    problems: list[Problem] = []
    for path in files:
        if not path.is_file():
            problems.append(Problem(str(path), "no such file"))
            continue
        found, found_problems = read_file(path, str(path))
        records.extend(found)
        problems.extend(found_problems)
    articles, merge_problems = merge_records(records)
    problems.extend(merge_problems)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise DigestError(problems)
    target.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    skipped: list[Path] = []
    for article in articles:
        destination = target / f"{article.id}.yaml"
        if destination.exists() and not force:
            skipped.append(destination)
            continue
        sources = ", ".join(sorted({s.path for s in article.sources}))
        text = dump_record(article_to_native(article), header=f"# Imported from {sources}\n")
        write_record_file(destination, text)
        written.append(destination)
    return written, skipped, problems


def run_import(args: argparse.Namespace) -> int:
    """Command: import files into content/ (or --to), never overwriting without --force."""
    config = load_config(args.root, {})
    target = Path(args.to) if args.to else config.content_path
    written, skipped, problems = import_files(list(args.files), target, force=args.force)
    for problem in problems:
        print(problem.format(), file=sys.stderr)
    for path in skipped:
        print(f"{path}: exists, kept (use --force to overwrite)", file=sys.stderr)
    if not args.quiet:
        print(f"Imported {len(written)} record{'s' * (len(written) != 1)} into {target}"
              + (f"; {len(skipped)} kept as they were" if skipped else ""))
    return 0
