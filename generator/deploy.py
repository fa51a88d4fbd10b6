"""`digest deploy`: commit the built site to a `gh-pages` branch and push it (like `mkdocs gh-deploy`).

It uses a temporary git index and plumbing commands, so the working tree, the current branch and
the user's index are never touched.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
from pathlib import Path

from generator.errors import DigestError, Problem


def _git(args: list[str], cwd: Path, env: dict | None = None, input_text: str | None = None) -> str:
    try:
        result = subprocess.run(["git", *args], cwd=cwd, env=env, input=input_text, capture_output=True,
                                text=True, check=True)
    except FileNotFoundError:
        raise DigestError(Problem("git", "git is not installed", hint="install git to deploy")) from None
    except subprocess.CalledProcessError as exc:
        message = (exc.stderr or exc.stdout).strip().splitlines()
        raise DigestError(Problem("git", f"git {args[0]} failed: {message[-1] if message else exc}")) from None
    return result.stdout.strip()


def commit_site(site: Path, repository: Path, branch: str, message: str) -> str:
    """Commit every file of `site` as the whole tree of `branch` (parented on its tip); return the commit id."""
    if not (site / "index.html").is_file():
        raise DigestError(Problem(str(site), "no built site here", hint="run 'digest build' first"))
    git_dir = _git(["rev-parse", "--absolute-git-dir"], cwd=repository)
    with tempfile.TemporaryDirectory() as scratch:
        # A private index and the site as work tree: the user's index and checkout stay as they are.
        env = {**os.environ, "GIT_DIR": git_dir, "GIT_WORK_TREE": str(site),
               "GIT_INDEX_FILE": str(Path(scratch) / "index")}
        _git(["add", "--all", "--force", "."], cwd=site, env=env)
        tree = _git(["write-tree"], cwd=site, env=env)
    parent = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}"],
                            cwd=repository, capture_output=True, text=True).stdout.strip()
    commit = _git(["commit-tree", tree, "-m", message] + (["-p", parent] if parent else []), cwd=repository)
    _git(["update-ref", f"refs/heads/{branch}", commit], cwd=repository)
    return commit


def run_deploy(args: argparse.Namespace) -> int:
    """Command: build, commit site/ to the gh-pages branch, push unless --no-push."""
    from generator.build import build
    from generator.config import load_config

    config = load_config(args.root, {"base_url": args.base_url})
    report = build(config)
    if not args.quiet:
        print(report.summary())
    repository = config.root
    commit = commit_site(config.output_path, repository, args.branch, args.message)
    if not args.quiet:
        print(f"Committed the site to {args.branch} ({commit[:10]})")
    if not args.no_push:
        _git(["push", args.remote, f"refs/heads/{args.branch}:refs/heads/{args.branch}"], cwd=repository)
        if not args.quiet:
            print(f"Pushed {args.branch} to {args.remote}")
    return 0
