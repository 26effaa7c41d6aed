"""`reconciler fleet`: installations x projects, declared refs, reported health, laggards."""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path
from typing import Any

from reconciler import fleetview, gates
from reconciler.commands import githubflags, pushing
from reconciler.errors import UsageError
from reconciler.loader import load_environments
from reconciler.model import Environments

EPILOG = """\
Cells hold the declared ref (first 12 characters) or pinned version of each release of the
project; `*` (text) or `behind` (markdown) marks a ref older than the project's newest
declared ref, taken from the git history of PATH (unknown in a shallow clone where refs tie).
With --github-token-file and --github-repo PROJECT=OWNER/REPO, each cell also says what the
installation last reported for its declared ref: ok, FAILED, in progress or not reported.

exit codes: 0 shown; 1 invalid repo or a GitHub error; 2 usage error.
"""


def register(subparsers: Any, name: str, summary: str) -> None:
    parser = subparsers.add_parser(
        name,
        help=summary,
        description=summary,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "path", nargs="?", type=Path, default=Path("."), help="environments repo (default: .)"
    )
    parser.add_argument(
        "-o", "--output", choices=["text", "markdown", "json"], default="text", help="output format"
    )
    parser.add_argument(
        "--github-repo",
        action="append",
        default=[],
        metavar="PROJECT=OWNER/REPO",
        help="where a project's Deployment statuses are (repeatable)",
    )
    githubflags.add_status_reader_flags(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.path.is_dir():
        raise UsageError(f"{args.path}: not a folder; pass the path of an environments repo")
    env = load_environments(args.path)
    reports = _reports(args, env)
    fleet = fleetview.build(env, declared_times(args.path, env), reports)
    if args.output == "json":
        pushing.dump_json(fleetview.as_json(fleet))
    elif args.output == "markdown":
        print(fleetview.as_markdown(fleet), end="")
    else:
        print(fleetview.as_text(fleet))
    return 0


def _reports(
    args: argparse.Namespace, env: Environments
) -> dict[str, dict[str, dict[str, gates.Report]]] | None:
    repositories = {}
    for item in args.github_repo:
        project, sep, repository = item.partition("=")
        if not sep or not project or repository.count("/") != 1:
            raise UsageError(f"--github-repo {item!r}: expected PROJECT=OWNER/REPO")
        repositories[project] = repository
    client = githubflags.status_reader(args)
    if client is None or not repositories:
        return None
    reports: dict[str, dict[str, dict[str, gates.Report]]] = {}
    for project, repository in repositories.items():
        refs = {
            r.ref
            for inst in env.installations.values()
            for r in inst.releases
            if r.project == project and r.ref
        }
        reports[project] = {
            ref: gates.read_reports(client, repository, ref) for ref in sorted(refs)
        }
    return reports


def declared_times(root: Path, env: Environments) -> dict[str, float]:
    """ref -> how recently it was declared: minus the position (0 = HEAD) of the newest
    commit that touched a release file declaring it. Positions, not commit times, order
    commits made within one second; refs declared by the same commit tie.

    One `git log` over the history of installations/; empty outside a git work tree.
    """

    try:
        prefix = _git(root, "rev-parse", "--show-prefix").strip()
        log = _git(
            root, "log", "--format=%x01%ct", "--name-only", "--no-renames", "--", "installations"
        )
    except (OSError, subprocess.CalledProcessError):
        return {}
    changed: dict[str, float] = {}
    when = 1.0
    for line in log.splitlines():
        if line.startswith("\x01"):
            when -= 1.0
        elif line and line.startswith(prefix):
            changed.setdefault(line[len(prefix) :], when)
    times: dict[str, float] = {}
    for installation in env.installations.values():
        for release in installation.releases:
            if release.ref and release.path in changed:
                # HEAD's time is 0.0: `max` with a default, never a truth test of it.
                known = times.get(release.ref, float("-inf"))
                times[release.ref] = max(known, changed[release.path])
    return times


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "core.quotePath=false", *args],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
