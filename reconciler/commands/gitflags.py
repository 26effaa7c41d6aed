"""Git credential flags, shared by the commands that read and those that push.

Free of Kubernetes imports, so `promote` and `mirror` stay light.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

from reconciler.errors import UsageError
from reconciler.source import Credentials


def add_credential_flags(group: argparse._ArgumentGroup, token_help: str) -> None:
    env = os.environ.get
    group.add_argument(
        "--token-file",
        default=env("RECONCILER_GIT_TOKEN_FILE"),
        help=f"{token_help} (env RECONCILER_GIT_TOKEN_FILE)",
    )
    group.add_argument(
        "--ssh-key", default=env("RECONCILER_GIT_SSH_KEY"), help="SSH private key file"
    )
    group.add_argument(
        "--known-hosts", default=env("RECONCILER_GIT_KNOWN_HOSTS"), help="SSH known_hosts file"
    )


def refuse_secrets_in_argv(repo: str, argv: list[str] | None = None) -> None:
    """A `--repo` URL given on the command line must not carry a password or token: every
    user on the machine can read a process's command line (its environment they cannot)."""

    argv = sys.argv[1:] if argv is None else argv
    parts = urlsplit(repo)
    web = parts.scheme in ("http", "https")
    secret = web and (parts.username or parts.password or parts.query)
    if secret and any(repo in arg for arg in argv):
        raise UsageError(
            f"--repo {Credentials().scrub(repo)}: the URL carries a credential, which the process "
            "list shows to every user; pass the token with --token-file, or the URL in "
            "RECONCILER_REPO"
        )


def credentials_from_args(args: argparse.Namespace) -> Credentials:
    token = read_secret(args.token_file, "--token-file")
    ssh_key = file_for_ssh(args.ssh_key, "--ssh-key")
    known_hosts = file_for_ssh(args.known_hosts, "--known-hosts")
    return Credentials(token=token, ssh_key=ssh_key, known_hosts=known_hosts)


def read_secret(path: str | None, flag: str) -> str | None:
    """A credential from a file; a missing or empty file is a usage error."""

    if not path:
        return None
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except OSError as error:
        raise UsageError(f"{flag} {path}: {error.strerror}") from None
    if not value:
        raise UsageError(f"{flag} {path}: the file is empty")
    return value


def file_for_ssh(path: str | None, flag: str) -> str | None:
    """A file that ssh reads, checked here: a wrong path is a usage error naming the flag,
    not a git failure with ssh's complaint somewhere in it.

    The value is never echoed when it looks like a key rather than a path: a key pasted
    into RECONCILER_GIT_SSH_KEY must not end up in an error message or a log.
    """
    if not path:
        return None
    if "\n" in path or "PRIVATE KEY" in path:
        raise UsageError(f"{flag} takes the path of a file, not the file's content")
    if "\t" in path or "${" in path:
        # ssh ends the option at a tab and expands ${VAR}; neither can be escaped.
        raise UsageError(f"{flag} {path!r}: ssh cannot take a path with a tab or '${{'; move it")
    try:
        Path(path).expanduser().open("rb").close()
    except OSError as error:
        raise UsageError(f"{flag} {path}: {error.strerror}") from None
    return path
