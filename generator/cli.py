"""The `digest` command line. Exit codes: 0 ok, 1 bad content or config, 2 usage error."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

from generator import __version__
from generator.errors import DigestError

IDLE_MINUTES = 30  # a build daemon ends after this long without a build


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
    build.add_argument("--jobs", "-j", type=int, metavar="N", help="processes for rendering (default: every core)")
    build.add_argument("--clean", action="store_true",
                       help="ignore the cache in .digest-cache/ and render every page again")
    build.add_argument("--daemon", action=argparse.BooleanOptionalAction, default=None,
                       help="build in a process kept warm between builds (started on first use, ends after "
                            f"{IDLE_MINUTES} idle minutes): an edit then costs what it changed. "
                            "Default: on when DIGEST_DAEMON=1")
    check = commands.add_parser("check", help="load and link only; report every problem without writing",
                                description="Read every record and report problems (path:line: message) "
                                            "without writing anything.")
    _add_common(check)
    check.add_argument("--strict", action="store_true", help="treat warnings as errors")

    serve = commands.add_parser("serve", help="build, serve on http://127.0.0.1:8000/, rebuild and reload on save",
                                description="Build the site, serve it locally, watch content/, templates/, static/ "
                                            "and digest.yaml, rebuild what changed and reload open pages.")
    _add_common(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    serve.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0 picks a free one)")
    serve.add_argument("--poll", action="store_true", help="poll for changes (for file systems without events)")
    serve.add_argument("--out", metavar="DIR", help="output folder (default: output_dir from digest.yaml, or site)")
    serve.add_argument("--base-url", metavar="URL", help="public address; its sub-path is served locally too")

    daemon = commands.add_parser("daemon", help="show or stop the warm build process of 'digest build --daemon'",
                                 description="The build daemon keeps a digest's articles, similarity and plan in "
                                             "memory between builds. 'status' shows it, 'stop' ends it; 'run' "
                                             "runs one in the foreground (digest build --daemon starts one itself).")
    daemon.add_argument("action", choices=("status", "stop", "run"), help="what to do")
    daemon.add_argument("--root", type=Path, default=Path("."), metavar="DIR",
                        help="the digest folder (default: current folder)")
    daemon.add_argument("--idle", type=float, default=IDLE_MINUTES * 60, metavar="SECONDS",
                        help="with 'run': end after this long without a build")
    daemon.add_argument("--force", action="store_true",
                        help="with 'stop': signal it instead of asking (for a daemon that does not answer)")
    daemon.add_argument("-v", "--verbose", action="store_true", help="print tracebacks on errors")

    importer = commands.add_parser("import", help="convert exported files into native YAML records in content/",
                                   description="Read MEDLINE, PubMed XML, RIS, BibTeX, CSL-JSON or PubMed page "
                                               "files and write one YAML record per article into content/.")
    _add_common(importer)
    importer.add_argument("files", nargs="+", type=Path, metavar="FILE", help="files to import")
    importer.add_argument("--to", metavar="DIR", help="folder for the records (default: content/)")
    importer.add_argument("--force", action="store_true", help="overwrite records that already exist")

    init = commands.add_parser("init", help="scaffold a new digest with a GitHub Pages workflow",
                               description="Create DIR with digest.yaml, content/ (one sample record), "
                                           ".gitignore and .github/workflows/pages.yml. Never overwrites files.")
    init.add_argument("directory", type=Path, metavar="DIR", help="folder to create (may exist if empty of these files)")
    init.add_argument("-v", "--verbose", action="store_true", help="print tracebacks on errors")

    deploy = commands.add_parser("deploy", help="commit the built site to the gh-pages branch and push it",
                                 description="Build, then commit site/ to a gh-pages branch of the current git "
                                             "repository and push it (like mkdocs gh-deploy).")
    _add_common(deploy)
    deploy.add_argument("--remote", default="origin", help="git remote to push to (default: origin)")
    deploy.add_argument("--branch", default="gh-pages", help="branch to publish (default: gh-pages)")
    deploy.add_argument("--message", default="Deploy digest", help="commit message")
    deploy.add_argument("--no-push", action="store_true", help="commit only")
    deploy.add_argument("--base-url", metavar="URL", help="public address of the site")

    add = commands.add_parser("add", help="fetch articles from PubMed (PMIDs, DOIs, URLs or a query) into content/",
                              description="Fetch complete records from NCBI E-utilities, with PubMed's similar "
                                          "articles, and write one YAML record per article into content/.")
    _add_common(add)
    add.add_argument("ids", nargs="*", metavar="ID", help="PMIDs, DOIs or PubMed URLs")
    add.add_argument("--query", help="a PubMed search; adds its results")
    add.add_argument("--max", type=int, default=20, help="most results to add for --query (default: 20)")
    add.add_argument("--to", metavar="DIR", help="folder for the records (default: content/)")
    add.add_argument("--eutils-url", help="E-utilities base URL (default: $DIGEST_EUTILS_URL or NCBI's)")

    refresh = commands.add_parser("refresh", help="update records fetched from PubMed and report what changed",
                                  description="Re-fetch every record that has a PMID, update only the fields that "
                                              "came from PubMed, and report changes, new retractions first.")
    _add_common(refresh)
    refresh.add_argument("--eutils-url", help="E-utilities base URL (default: $DIGEST_EUTILS_URL or NCBI's)")
    refresh.add_argument("--dry-run", action="store_true", help="report changes without writing")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    command = COMMANDS[args.command]
    if args.command == "build" and _wants_daemon(args):
        command = _in_daemon_else(command)
    return run_command(args, command)


def _in_daemon_else(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Run the build in the digest's daemon, or `command` when none can be had."""

    def run(args: argparse.Namespace) -> int:
        from generator.daemon import build_in_daemon

        code = build_in_daemon(args)
        return command(args) if code is None else code

    return run


def _wants_daemon(args: argparse.Namespace) -> bool:
    """`--daemon`, or DIGEST_DAEMON=1 without `--no-daemon`; never for `--clean` (which must
    ignore what a warm process keeps)."""
    wanted = args.daemon if args.daemon is not None else os.environ.get("DIGEST_DAEMON", "") == "1"
    return wanted and not args.clean


def run_command(args: argparse.Namespace, command: Callable[[argparse.Namespace], int]) -> int:
    """Run one command; report bad content or config as `path:line: message` lines and exit 1."""
    try:
        return command(args)
    except DigestError as exc:
        for problem in exc.problems:
            print(problem.format(), file=sys.stderr)
        count = sum(p.severity == "error" for p in exc.problems) or len(exc.problems)
        plural = f"{count} error{'s' * (count != 1)}"
        if args.command in ("build", "serve", "deploy"):
            print(f"Build failed: {plural}. The previous site was left as it was.", file=sys.stderr)
        else:
            print(f"digest {args.command} failed: {plural}.", file=sys.stderr)
        if getattr(args, "verbose", False):
            traceback.print_exc()
        return 1
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130


def run() -> None:
    """The `digest` command: `main`, then exit without tearing down the interpreter's objects.

    After a build of 10,000 articles, freeing the digest object by object takes Python about a
    second; the process ends anyway, and every file it wrote was closed (and the site published)
    before this returns. Output streams are flushed first. (Tests call `main` and are unaffected.)
    """
    code = main()
    if sys.getprofile() is not None or sys.gettrace() is not None:
        sys.exit(code)  # a profiler or coverage tool writes its report at exit
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def _config(args: argparse.Namespace):
    from generator.config import load_config

    overrides = {"output_dir": getattr(args, "out", None), "base_url": getattr(args, "base_url", None)}
    return load_config(args.root, overrides)


def _print_warnings(warnings, quiet: bool) -> None:
    if not quiet:
        for warning in warnings:
            print(warning.format(), file=sys.stderr)


def run_build(args: argparse.Namespace, session_for: Callable[[Any], Any] | None = None) -> int:
    """`digest build`; `session_for(config)` gives the state a warm process keeps (the daemon)."""
    from generator.build import build

    config = _config(args)
    from generator.progress import Progress

    progress = Progress(enabled=False, notices=False) if args.quiet else Progress()
    session = session_for(config) if session_for is not None else None
    report = build(config, strict=args.strict, jobs=args.jobs, clean=args.clean, progress=progress,
                   session=session, process_ends=session is None)
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


def _lazy(module: str, function: str):
    """Import a command's module only when it runs, so `digest build` stays quick to start."""

    def run(args: argparse.Namespace) -> int:
        import importlib

        return getattr(importlib.import_module(module), function)(args)

    return run


COMMANDS = {
    "build": run_build,
    "check": run_check,
    "serve": _lazy("generator.serve", "run_serve"),
    "daemon": _lazy("generator.daemon", "run_daemon"),
    "import": _lazy("generator.importer", "run_import"),
    "init": _lazy("generator.init", "run_init"),
    "deploy": _lazy("generator.deploy", "run_deploy"),
    "add": _lazy("generator.pubmed_fetch", "run_add"),
    "refresh": _lazy("generator.pubmed_fetch", "run_refresh"),
}
