"""`reconciler promote`: declare a project at a commit ref in installations and push."""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reconciler.commands import promote_gates, pushing
from reconciler.promote import FileChange, Request, Result
from reconciler.terminal import for_terminal

EPILOG = """\
exit codes: 0 pushed, or nothing to do (the ref is already declared);
1 unknown project/installation, a selector matching nothing, an invalid result, or a failed push;
2 usage error;
3 gate closed (--after/--wave-size): installations in progress or not reported yet, run again later;
4 gate refused (--after/--wave-size): an installation reported the ref failed.

examples:
  reconciler promote --repo https://git.example/envs.git --token-file /run/token \\
      --project api --ref $GITHUB_SHA --selector stage=testing
  reconciler promote --repo ... --project api --ref $SHA -i prod-eu -i prod-us
  reconciler promote --repo ... --project api --ref $SHA --selector stage=production \\
      --after stage=testing --wave-size 10 --github-repo acme/api --github-token-file /run/gh
"""


def register(subparsers: Any, name: str, summary: str) -> None:
    parser = subparsers.add_parser(
        name,
        help=summary,
        description=summary
        + ". Clones the environments repo, edits the release files, validates the whole tree, "
        "commits with trailers (Project, Ref, Installations, Deployment-Id) and pushes; when "
        "another job pushed first it re-applies the change on the new head and retries with "
        "backoff. It never force-pushes.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-p", "--project", required=True, help="the project to promote")
    parser.add_argument("-r", "--ref", required=True, help="the project's full 40-hex commit SHA")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "-i",
        "--installation",
        action="append",
        default=[],
        metavar="NAME",
        help="an installation to promote to (repeatable)",
    )
    target.add_argument(
        "-l",
        "--selector",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="promote to every installation with these labels (repeatable or comma-separated; all must match)",
    )
    parser.add_argument(
        "--create",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="add a release named after the project where an installation has none (default: --create)",
    )
    parser.add_argument(
        "--deployment-id", type=int, help="the GitHub Deployment this promotion answers"
    )
    parser.add_argument(
        "--deployment-repo",
        help="owner/repo of that Deployment (default with --deployment-id: env GITHUB_REPOSITORY)",
    )
    pushing.add_push_flags(parser)
    promote_gates.add_flags(parser)
    parser.add_argument(
        "-o", "--output", choices=["text", "json"], default="text", help="output format"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    request = request_from_args(args)
    if promote_gates.requested(args):
        return promote_gates.run(args, request)
    with tempfile.TemporaryDirectory(prefix="reconciler-promote-") as workdir:
        promoter = pushing.promoter_from_args(args, Path(workdir), depth=1)
        result = promoter.promote(request)
    if args.output == "json":
        pushing.dump_json(result_json(request, result))
    else:
        print_result(request, result)
    return 0


def request_from_args(args: argparse.Namespace) -> Request:
    deployment_repo = args.deployment_repo
    if args.deployment_id is not None and not deployment_repo:
        deployment_repo = os.environ.get("GITHUB_REPOSITORY") or None
    return Request(
        project=args.project,
        ref=args.ref.strip().lower(),
        installations=tuple(args.installation),
        selector=pushing.parse_labels(args.selector, "--selector"),
        create=args.create,
        deployment_id=args.deployment_id,
        deployment_repository=deployment_repo,
    )


def result_json(request: Request, result: Result) -> dict[str, Any]:
    return {
        "status": result.status,
        "project": request.project,
        "ref": request.ref,
        "installations": list(result.installations),
        "commit": result.commit,
        "attempts": result.attempts,
        "deployment_id": request.deployment_id,
        "changes": [c.as_dict() for c in result.changes],
    }


def print_result(request: Request, result: Result) -> None:
    where = ", ".join(result.installations)
    short = request.ref[:12]
    if result.status == "duplicate":
        _say(
            f"deployment {request.deployment_id} of {request.deployment_repository} was already"
            f" mirrored by commit {result.commit}: nothing to commit"
        )
        return
    if result.status == "unchanged":
        pinned = [c for c in result.changes if c.action == "pinned"]
        what = "is already at" if not pinned else "is pinned or already at"
        _say(f"{request.project} {what} {short} in {where}: nothing to commit")
        _changes(pinned)
        return
    tries = f" after {result.attempts} attempts" if result.attempts > 1 else ""
    _say(f"promoted {request.project} to {short} in {where}: commit {result.commit}{tries}")
    _changes(result.changes)


def _changes(changes: Sequence[FileChange]) -> None:
    for change in changes:
        note = {"updated": "was", "pinned": "stays at"}.get(change.action)
        tail = f"  ({note} {change.previous})" if note and change.previous else ""
        _say(f"  {change.action:9} {change.installation:20} {change.path}{tail}")


def _say(text: str) -> None:
    # Refs and paths come from the repo: shown, never obeyed by the terminal.
    print(for_terminal(text))
