"""`reconciler validate [PATH]`: schemas and cross-file rules of an environments repo.

Exit 0 when valid, 1 with every problem listed, 2 for a usage error. Fast enough
for a pre-commit hook; it never imports the Kubernetes client.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from reconciler.repo import Analysis, analyze
from reconciler.terminal import for_terminal


def register(subparsers: Any, name: str, summary: str) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name,
        help=summary,
        description=summary
        + ". Prints one 'path:line: message' per problem; exit 0 valid, 1 invalid, 2 usage error.",
    )
    parser.add_argument(
        "path",
        nargs="?",
        default=".",
        type=Path,
        help="root of the environments repo (default: the current folder)",
    )
    parser.add_argument(
        "--output",
        choices=("text", "json"),
        default="text",
        help="text (default) or json",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    analysis = analyze(args.path, model=False)
    if args.output == "json":
        json.dump(as_json(analysis), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for problem in analysis.problems:
            print(for_terminal(problem.render()))
        print(summary(analysis), file=sys.stderr if analysis.problems else sys.stdout)
    return 1 if analysis.problems else 0


def summary(analysis: Analysis) -> str:
    checked = ", ".join(
        _count(n, what)
        for n, what in (
            (analysis.projects, "project"),
            (analysis.installations, "installation"),
            (analysis.releases, "release"),
        )
    )
    if not analysis.problems:
        return f"valid: {checked}"
    files = len({p.path for p in analysis.problems})
    problems = _count(len(analysis.problems), "problem")
    return f"invalid: {problems} in {_count(files, 'file')} ({checked})"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def as_json(analysis: Analysis) -> dict[str, object]:
    return {
        "valid": not analysis.problems,
        "problems": [p.as_dict() for p in analysis.problems],
        "counts": {
            "files": analysis.files,
            "projects": analysis.projects,
            "installations": analysis.installations,
            "releases": analysis.releases,
        },
    }
