"""Flags and wiring shared by the commands that push to the environments repo (`promote`, `mirror`).

Kept apart from `common` so that these commands never import the Kubernetes client.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from reconciler.commands.gitflags import (
    add_credential_flags,
    credentials_from_args,
    refuse_secrets_in_argv,
)
from reconciler.errors import UsageError
from reconciler.gitclone import Clone, Identity, Remote
from reconciler.promote import DEFAULT_AUTHOR, Promoter, RetryPolicy


def add_push_flags(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    group = parser.add_argument_group("environments repo")
    group.add_argument(
        "--repo",
        default=env("RECONCILER_REPO"),
        help="git URL of the environments repo to push to (env RECONCILER_REPO)",
    )
    group.add_argument(
        "--branch", default=env("RECONCILER_BRANCH", "main"), help="branch (default: main)"
    )
    add_credential_flags(group, "file holding an HTTPS token with write access")
    group.add_argument(
        "--author",
        default=env("RECONCILER_GIT_AUTHOR"),
        help=f"commit author as 'Name <email>' (env RECONCILER_GIT_AUTHOR; default: {DEFAULT_AUTHOR})",
    )
    group.add_argument(
        "--max-attempts",
        type=int,
        default=30,
        help="push attempts when other jobs push first (default: 30)",
    )


def remote_from_args(args: argparse.Namespace) -> Remote:
    if not args.repo:
        raise UsageError("--repo is required (or set RECONCILER_REPO)")
    refuse_secrets_in_argv(args.repo)
    return Remote(args.repo, args.branch, credentials_from_args(args))


def promoter_from_args(args: argparse.Namespace, workdir: Path, depth: int | None) -> Promoter:
    try:
        author = Identity.parse(args.author) if args.author else DEFAULT_AUTHOR
    except ValueError as error:
        raise UsageError(f"--author: {error}") from None
    if args.max_attempts < 1:
        raise UsageError("--max-attempts must be at least 1")
    clone = Clone(remote_from_args(args), workdir / "checkout", depth)
    return Promoter(clone, author, RetryPolicy(attempts=args.max_attempts))


def dump_json(document: Any) -> None:
    json.dump(document, sys.stdout, indent=2)
    sys.stdout.write("\n")


def parse_labels(items: list[str], flag: str) -> dict[str, str]:
    """`k=v` items, each maybe comma-separated, as one selector."""

    labels: dict[str, str] = {}
    for item in items:
        for part in filter(None, (p.strip() for p in item.split(","))):
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise UsageError(f"{flag} {part!r}: expected key=value")
            labels[key.strip()] = value.strip()
    return labels
