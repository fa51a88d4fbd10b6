"""The `digest` command line. Exit codes: 0 ok, 1 bad content or config, 2 usage error."""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from generator import __version__
from generator.errors import DigestError


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", type=Path, default=Path("."), metavar="DIR",
                        help="the digest folder holding content/ and digest.yaml (default: current folder)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print the time of each stage, and tracebacks")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only errors")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="digest",
        description="Build a static website from a folder of biomedical article records.",
        epilog="Run 'digest COMMAND --help' for the options of each command.",
    )
    parser.add_argument("--version", action="version", version=f"digest {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    build = commands.add_parser("build", help="build the site into site/",
                                description="Load content/, link the articles, render every page and write site/. "
                                            "A failed build leaves the previous site/ untouched.")
    _add_common(build)
    build.add_argument("--out", metavar="DIR", help="output folder (default: output_dir from digest.yaml, or site)")
    build.add_argument("--base-url", metavar="URL",
                       help="public address of the site, e.g. https://user.github.io/repo/ (feeds, canonical links)")
    build.add_argument("--strict", action="store_true", help="treat warnings as errors")
    check = commands.add_parser("check", help="load and link only; report every problem without writing",
                                description="Read every record and report problems (path:line: message) "
                                            "without writing anything.")
    _add_common(check)
    check.add_argument("--strict", action="store_true", help="treat warnings as errors")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    try:
        return COMMANDS[args.command](args)
    except DigestError as exc:
        for problem in exc.problems:
            print(problem.format(), file=sys.stderr)
        count = sum(p.severity == "error" for p in exc.problems) or len(exc.problems)
        print(f"Build failed: {count} error{'s' * (count != 1)}. Nothing was written.", file=sys.stderr)
        if args.verbose:
            traceback.print_exc()
        return 1
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130


def _config(args: argparse.Namespace):
    from generator.config import load_config

    overrides = {"output_dir": getattr(args, "out", None), "base_url": getattr(args, "base_url", None)}
    return load_config(args.root, overrides)


def _print_warnings(warnings, quiet: bool) -> None:
    if not quiet:
        for warning in warnings:
            print(warning.format(), file=sys.stderr)


def run_build(args: argparse.Namespace) -> int:
    from generator.build import build

    config = _config(args)
    report = build(config, strict=args.strict)
    _print_warnings(report.warnings, args.quiet)
    if args.verbose:
        for stage, seconds in report.stage_seconds.items():
            print(f"  {stage:<8} {seconds * 1000:8.1f} ms")
    if not args.quiet:
        print(report.summary())
    return 0


def run_check(args: argparse.Namespace) -> int:
    from generator.link import link_articles
    from generator.load import load_articles

    config = _config(args)
    loaded = load_articles(config.content_path, config.root)
    link_articles(loaded.articles, config.similar, config.taxonomies)
    _print_warnings(loaded.warnings, False)
    print(f"Checked {loaded.files} files: {len(loaded.articles)} articles, {len(loaded.warnings)} warnings.")
    return 1 if args.strict and loaded.warnings else 0


COMMANDS = {"build": run_build, "check": run_check}
