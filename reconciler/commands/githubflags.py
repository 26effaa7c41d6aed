"""The flags of commands that read GitHub Deployment statuses (`fleet`, promotion gates)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from reconciler.commands.gitflags import read_secret
from reconciler.githubapi import DEFAULT_API_URL, Client


def add_status_reader_flags(parser: Any) -> None:
    """`--github-token-file` and `--github-api-url` on a parser or argument group."""

    env = os.environ.get
    parser.add_argument(
        "--github-token-file",
        default=env("RECONCILER_GITHUB_TOKEN_FILE"),
        help="file holding a GitHub token with Deployments: read (env RECONCILER_GITHUB_TOKEN_FILE)",
    )
    parser.add_argument(
        "--github-api-url",
        default=env("RECONCILER_GITHUB_API_URL", DEFAULT_API_URL),
        help=f"GitHub API base URL (env RECONCILER_GITHUB_API_URL; default: {DEFAULT_API_URL})",
    )


def status_reader(args: argparse.Namespace) -> Client | None:
    """A client for reading statuses, or None without a token."""

    token = read_secret(args.github_token_file, "--github-token-file")
    if not token:
        return None
    # A CLI answers now; a long rate-limit wait belongs to the CI job's retry.
    return Client(args.github_api_url, token, max_wait=60.0)
