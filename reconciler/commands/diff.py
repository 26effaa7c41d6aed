"""`reconciler diff`: what a change to the environments repo does per installation."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from reconciler.diffing import build_report, report_json
from reconciler.diffview import (
    render_invalid_markdown,
    render_invalid_text,
    render_markdown,
    render_text,
)
from reconciler.errors import ValidationError
from reconciler.model import Environments
from reconciler.revisions import EMPTY, Checkout, Revision

EPILOG = """\
revisions:
  --head defaults to the working tree when files under PATH differ from HEAD
  (modified or untracked), else to HEAD.
  --base defaults to the first that applies:
    1. the merge-base of the head commit (HEAD for the working tree) with
       origin/HEAD, origin/main, origin/master, main or master: the first
       that exists and whose merge-base is not the head commit itself (on a
       branch: everything the branch changes, as its pull request shows it);
    2. HEAD, when the head is the working tree (your uncommitted edits);
    3. the head commit's parent, HEAD~1 by default (the last commit; in a
       GitHub pull-request merge commit that is the target branch, so check
       out with fetch-depth: 2);
    4. nothing, when the head commit has no parent (everything is added).
  An invalid base is reported as a warning and compared as an empty repo.

what is compared:
  per installation, the releases added, removed, moved to another chart
  version or ref, and whose effective values change (project < installation
  < release values, layered as the reconciler does; in-cluster ConfigMap and
  Secret values are not visible here). Changed keys are shown as dotted paths.

exit codes:
  0  compared (with or without changes)
  1  the head revision is invalid (its problems are printed), or git failed
  2  usage error; with --exit-code, also: there are changes
"""


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], name: str, summary: str
) -> None:
    parser = subparsers.add_parser(
        name,
        help=summary,
        description=summary,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "path",
        nargs="?",
        default=".",
        type=Path,
        metavar="PATH",
        help="the environments repo, inside a git work tree (default: .)",
    )
    parser.add_argument("--base", metavar="REF", help="the revision before the change (see below)")
    parser.add_argument("--head", metavar="REF", help="the revision after the change (see below)")
    parser.add_argument(
        "-o",
        "--output",
        choices=["text", "markdown", "json"],
        default="text",
        help="text for a terminal (default), markdown for a pull-request comment, "
        "or json (structure documented in reconciler.diffing)",
    )
    parser.add_argument(
        "--exit-code",
        action="store_true",
        help="exit 2 when there are changes, like `git diff --exit-code`",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    checkout = Checkout.open(args.path)
    head = checkout.resolve(args.head, "--head") if args.head else checkout.default_head()
    base = checkout.resolve(args.base, "--base") if args.base else checkout.default_base(head)
    head_env, head = _load(checkout, head)
    if not head.valid:
        _print_invalid_head(head, args.output, base)
        return 1
    base_env, base = _load(checkout, base)
    if not base.valid:
        print(f"warning: {render_invalid_text(base, 'base')}", end="", file=sys.stderr)
    report = build_report(base, head, base_env, head_env)
    if args.output == "json":
        _print_json(report_json(report))
    elif args.output == "markdown":
        sys.stdout.write(render_markdown(report))
    else:
        sys.stdout.write(render_text(report))
    return 2 if args.exit_code and report.has_changes else 0


def _load(checkout: Checkout, rev: Revision) -> tuple[Environments, Revision]:
    try:
        return checkout.load(rev), rev
    except ValidationError as error:
        return EMPTY, replace(rev, problems=tuple(error.problems))


def _print_invalid_head(head: Revision, output: str, base: Revision) -> None:
    sys.stderr.write(render_invalid_text(head, "head"))
    if output == "json":
        _print_json(report_json(build_report(base, head, EMPTY, EMPTY)))
    elif output == "markdown":
        sys.stdout.write(render_invalid_markdown(head))


def _print_json(document: object) -> None:
    json.dump(document, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
