"""Where the environments repo comes from: a remote git URL or a local folder.

A remote is cloned shallow once; each poll first asks the server for the
branch head (`git ls-remote`, no objects transferred) and fetches only when it
moved. Credentials travel in git's environment, never in a URL, and every
message is scrubbed of them.

A reconciler needs only projects/ and its own installations/<name>/ (see
`sparse_paths`): it clones those as a partial clone (`--filter=blob:none`: commits
and trees, and only the blobs of its sparse checkout), so a fleet of 1,000
installations does not make each one download and check out all of them. A
server that cannot filter (`uploadpack.allowFilter` off) answers with every
object; the clone is then an ordinary shallow clone with the same sparse checkout.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shlex
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import git

from reconciler import scratch
from reconciler.errors import GitError, UsageError

DEEPEN_STEPS, DEEPEN_BY = 5, 20  # look back at most 100 commits for deployment trailers
# Everything between `scheme://` and the LAST `@` before the path: a password may hold `@`.
USERINFO = re.compile(r"(?<=://)[^/\s]*@")
TOKEN_LIKE = 20  # characters: a URL user name this long is taken for a token
# Values in a URL's query string (`?access_token=...`): shown as *** in every message.
QUERY_VALUE = re.compile(r"(?<=[?&;])([^=&#\s]+)=[^&#\s]*")
INSTALLATION_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
# What git prints (LC_ALL=C) when the server ignores --filter and sends every object.
_NO_FILTER = "filtering not recognized by server"
# A folder a symlink points to is added to the sparse checkout only when each part of its
# path is plain: nothing git could read as a pattern.
_PLAIN_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
MAX_SYMLINK_ROUNDS = 3  # a link to a link to a link outside the checkout


@dataclass(frozen=True)
class Credentials:
    """HTTPS token (sent as basic auth, user `x-access-token`) or an SSH private key file."""

    token: str | None = None
    ssh_key: str | None = None
    known_hosts: str | None = None
    # `user:password@` taken out of an https URL: git gets them in its environment.
    url_user: str | None = None
    url_password: str | None = None

    def without_url_secrets(self, url: str) -> tuple[str, Credentials]:
        """`url` without its `user:password@`, and credentials that carry them instead.

        git then never sees them on its command line (every user on the machine can read
        a process list). A token in the query string cannot travel any other way: refused.
        """

        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            return url, self
        if parts.query:
            raise UsageError(
                f"repo URL {self.scrub(url)}: a token in the query string would show in git's "
                "process list; remove it and pass the token with --token-file"
            )
        if "@" not in parts.netloc:
            return url, self
        userinfo, _, host = parts.netloc.rpartition("@")
        user, _, password = userinfo.partition(":")
        clean = urlunsplit((parts.scheme, host, parts.path, "", parts.fragment))
        # `https://TOKEN@host/` (a token as the user name, GitHub's form) is a credential too.
        return clean, replace(self, url_user=unquote(user), url_password=unquote(password))

    def environment(self) -> dict[str, str]:
        env: dict[str, str] = {"GIT_TERMINAL_PROMPT": "0"}
        basic_auth = (
            f"x-access-token:{self.token}"
            if self.token
            else f"{self.url_user}:{self.url_password}"
            if self.url_user is not None
            else None
        )
        if basic_auth:
            basic = base64.b64encode(basic_auth.encode()).decode()
            env |= {
                "GIT_CONFIG_COUNT": "1",
                "GIT_CONFIG_KEY_0": "http.extraHeader",
                "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}",
            }
        if self.ssh_key:
            env["GIT_SSH_COMMAND"] = shlex.join(ssh_command(self.ssh_key, self.known_hosts))
        return env

    def scrub(self, text: str) -> str:
        """`text` without any credential: userinfo and query values of URLs, the token and
        the URL's password (also URL-encoded)."""

        text = USERINFO.sub("***@", text)
        text = QUERY_VALUE.sub(lambda m: f"{m.group(1)}=***", text)
        # A user name as long as a token is one (`https://ghp_...@github.com/`).
        user = self.url_user if self.url_user and len(self.url_user) >= TOKEN_LIKE else None
        for secret in (self.token, self.url_password, user):
            if secret:
                text = text.replace(secret, "***").replace(quote(secret, safe=""), "***")
        return text


def ssh_command(key: str, known_hosts: str | None) -> list[str]:
    """ssh with this key only, and BatchMode: never a prompt (a passphrase) to hang on.

    Without known_hosts the first host key seen is trusted and kept in ~/.ssh.
    """
    hosts = ["-o", "StrictHostKeyChecking=accept-new"]
    if known_hosts:
        listed = _ssh_file(known_hosts)
        hosts = ["-o", f"UserKnownHostsFile={listed}", "-o", "StrictHostKeyChecking=yes"]
    # IdentityFile, not -i: ssh checks an -i path as given, then %-expands it.
    identity = ["-o", f"IdentityFile={_ssh_file(key)}", "-o", "IdentitiesOnly=yes"]
    return ["ssh", *identity, "-o", "BatchMode=yes", *hosts]


def _ssh_file(path: str) -> str:
    """A file as the value of an ssh -o option.

    Absolute, because git runs ssh in the checkout to fetch and elsewhere to clone.
    ssh expands %-tokens in it (%% is a literal %) and splits it into words like a
    line of ssh_config, so a blank, quote or backslash is escaped.
    """
    absolute = str(Path(path).expanduser().absolute()).replace("%", "%%")
    return re.sub(r"""([ '"\\])""", r"\\\1", absolute)


class Source(Protocol):
    """What the reconcile loop needs of the environments repo."""

    def head(self) -> str:
        """The revision the next sync would produce, as cheaply as it can be asked."""

    def sync(self) -> tuple[str, Path]:
        """Bring the working tree to the newest revision; return it and the tree's root."""


def sparse_paths(installation: str) -> tuple[str, ...]:
    """The folders one installation's reconciler reads: projects/ and its own folder.

    `installation` must be a DNS-1123 label (the format's rule), which also keeps it from
    being read as a pattern or a path outside installations/.
    """

    if len(installation) > 63 or not INSTALLATION_NAME.fullmatch(installation):
        raise GitError(
            f"installation {installation!r} is not an installation name"
            " (lower-case letters, digits and '-', at most 63 characters)"
        )
    return ("projects", f"installations/{installation}")


@dataclass
class GitSource:
    """A shallow clone of `branch`; with `sparse`, a partial clone checking out only those
    folders. `mode` says what the server gave: "partial", "full" (it cannot filter, or no
    `sparse` was asked for), or "" before the first sync."""

    url: str
    branch: str = "main"
    workdir: Path | None = None
    credentials: Credentials = field(default_factory=Credentials)
    sparse: tuple[str, ...] = ()
    fetches: int = 0
    mode: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _sparse_set: bool = False
    _linked: tuple[str, ...] = ()  # folders outside `sparse` that symlinks in it point into

    def __post_init__(self) -> None:
        self.url, self.credentials = self.credentials.without_url_secrets(self.url)
        if self.workdir is None:
            self.workdir = scratch.make("repo", until_exit=True)
        # Absolute: git clones with another working directory than it fetches with.
        self.workdir = self.workdir.absolute()

    @property
    def checkout(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "checkout"

    def head(self) -> str:
        ref = f"refs/heads/{self.branch}"
        out = self._git(lambda g: str(g.ls_remote(self.url, ref)))
        for line in out.splitlines():
            sha, _, name = line.partition("\t")
            if name == ref:
                return sha
        raise GitError(f"branch {self.branch!r} not found at {self.credentials.scrub(self.url)}")

    def sync(self) -> tuple[str, Path]:
        with self._lock:
            self.fetches += 1
            if not (self.checkout / ".git").exists():
                self._clone()
            else:
                self._fetch()
            if self.sparse:
                self._follow_symlinks()
            repo = git.Repo(self.checkout)
            return repo.head.commit.hexsha, self.checkout

    def messages_since(self, old: str, new: str) -> list[str]:
        """Commit messages after `old` up to `new`, oldest first.

        The clone is shallow, so history is deepened a step at a time until `old`
        is found; without `old` (or past the limit) only `new`'s own message.
        """

        repo = git.Repo(self.checkout)
        env = self.credentials.environment()
        try:
            with repo.git.custom_environment(**env):
                found = bool(old) and self._deepen_to(repo, old)
                span = [f"{old}..{new}"] if found else ["-1", new]
                out = str(repo.git.log("--reverse", "--format=%B%x00", *span))
        except git.GitCommandError as error:
            raise self._error("log", error) from None
        return [message.strip() for message in out.split("\x00") if message.strip()]

    def _deepen_to(self, repo: git.Repo, commit: str) -> bool:
        for _ in range(DEEPEN_STEPS):
            try:
                repo.git.cat_file("-e", f"{commit}^{{commit}}")
                return True
            except git.GitCommandError:
                repo.git.fetch("--deepen", str(DEEPEN_BY), "--no-tags", "origin", self.branch)
        return False

    def _clone(self) -> None:
        env = self.credentials.environment()
        if not self.sparse:
            try:
                git.Repo.clone_from(
                    self.url, self.checkout, env=env, depth=1, branch=self.branch,
                    single_branch=True, no_tags=True,
                )  # fmt: skip
            except git.GitCommandError as error:
                raise self._error("clone", error) from None
            self.mode = "full"
            return
        self._sparse_clone(env)

    def _sparse_clone(self, env: dict[str, str]) -> None:
        argv = [
            "git", "clone", "--quiet", "--filter=blob:none", "--no-checkout", "--depth", "1",
            "--branch", self.branch, "--single-branch", "--no-tags", "--", self.url,
            str(self.checkout),
        ]  # fmt: skip
        runner = git.Git()
        try:
            _, _, stderr = runner.execute(
                argv, with_extended_output=True, env={**env, "LC_ALL": "C"}
            )
        except git.GitCommandError as error:
            raise self._error("clone", error) from None
        repo = git.Repo(self.checkout)
        self.mode = "full" if _NO_FILTER in str(stderr) else "partial"
        try:
            with repo.git.custom_environment(**env):
                if self.mode == "full":
                    # Later fetches need not ask a server for a filter it ignores.
                    for key in ("remote.origin.partialclonefilter", "remote.origin.promisor"):
                        repo.git.config("--unset", key, with_exceptions=False)
                repo.git.sparse_checkout("set", "--cone", "--", *self.sparse)
                self._sparse_set = True
                # Fetches the blobs of the sparse folders, in one request.
                repo.git.reset("--hard", "--quiet", "HEAD")
        except git.GitCommandError as error:
            raise self._error("clone", error) from None

    def _fetch(self) -> None:
        repo = git.Repo(self.checkout)
        env = self.credentials.environment()
        try:
            with repo.git.custom_environment(**env):
                if self.sparse and not self._sparse_set:
                    # A clone this process did not make (a kept --workdir) may check out
                    # another installation's folder, or everything.
                    repo.git.sparse_checkout("set", "--cone", "--", *self.sparse, *self._linked)
                    self._sparse_set = True
                repo.git.fetch("--depth", "1", "--no-tags", "origin", self.branch)
                repo.git.reset("--hard", "FETCH_HEAD")
                repo.git.clean("-fdx")
        except git.GitCommandError as error:
            raise self._error("fetch", error) from None

    def _follow_symlinks(self) -> None:
        """The format lets an environment file be a symlink to a file anywhere in the repo;
        its target's folder joins the sparse checkout so that the load can read it."""

        repo = git.Repo(self.checkout)
        for _ in range(MAX_SYMLINK_ROUNDS):
            missing = [
                f
                for f in dangling_link_folders(self.checkout, self.sparse)
                if f not in self._linked
            ]
            if not missing:
                return
            self._linked = (*self._linked, *missing)
            try:
                with repo.git.custom_environment(**self.credentials.environment()):
                    repo.git.sparse_checkout("set", "--cone", "--", *self.sparse, *self._linked)
            except git.GitCommandError as error:
                raise self._error("sparse-checkout", error) from None

    def _git(self, call: Callable[[git.Git], str]) -> str:
        runner = git.Git()
        try:
            with runner.custom_environment(**self.credentials.environment()):
                return call(runner)
        except git.GitCommandError as error:
            raise self._error("ls-remote", error) from None

    def _error(self, what: str, error: git.GitCommandError) -> GitError:
        stderr = one_line(str(error.stderr or "")).removeprefix("stderr: ").strip("' ")
        message = (
            f"git {what} of {self.url} (branch {self.branch}) failed, exit {error.status}: {stderr}"
        )
        return GitError(self.credentials.scrub(message))


def dangling_link_folders(root: Path, tops: tuple[str, ...]) -> list[str]:
    """Folders of the repo at `root`, outside what is checked out, that symlinks under `tops`
    point into; only plain paths inside the repo (the load reports the other links)."""

    real_root = os.path.realpath(root)
    found: list[str] = []
    for top in tops:
        for folder, dirs, files in os.walk(root / top):
            for name in (*dirs, *files):
                path = os.path.join(folder, name)
                if not os.path.islink(path) or os.path.exists(path):
                    continue
                target = os.path.realpath(path)
                if os.path.commonpath([real_root, target]) != real_root:
                    continue
                relative = os.path.relpath(os.path.dirname(target), real_root)
                parts = relative.split(os.sep)
                if relative != "." and all(_PLAIN_PART.fullmatch(part) for part in parts):
                    found.append("/".join(parts))
    return sorted(set(found))


def one_line(text: str) -> str:
    """Command output as one line for a log or a terminal.

    ssh ends its messages with CR-LF, and a bare CR left in a line makes a terminal
    overwrite the start of it; the `@` frame of ssh's host key warning is noise.
    """
    lines = (line.strip().strip("@").strip() for line in text.splitlines())
    return " ".join(" ".join(line.split()) for line in lines if line)


@dataclass
class LocalSource:
    """A folder on disk (a checkout or not), for development with a file watch."""

    path: Path

    def head(self) -> str:
        return fingerprint(self.path)

    def sync(self) -> tuple[str, Path]:
        if not self.path.is_dir():
            raise GitError(f"{self.path} is not a folder")
        return fingerprint(self.path), self.path


def fingerprint(root: Path) -> str:
    """A revision for a folder: its git HEAD when it is a clean checkout, else a content hash."""

    digest = hashlib.sha256()
    for folder in ("projects", "installations"):
        base = root / folder
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*")):
            if path.is_file():
                stat = path.stat()
                digest.update(
                    f"{path.relative_to(root)}:{stat.st_size}:{stat.st_mtime_ns}".encode()
                )
    return "local-" + digest.hexdigest()[:12]


def open_source(
    repo: str,
    branch: str,
    workdir: Path | None,
    credentials: Credentials,
    installation: str | None = None,
) -> GitSource | LocalSource:
    """A URL (`https://`, `http://`, `ssh://`, `git@host:`, `file://`) is cloned (sparse, for
    `installation`'s folders only, when given); a folder is read in place."""

    if "://" in repo or re.match(r"^[\w.-]+@[\w.-]+:", repo):
        sparse = sparse_paths(installation) if installation is not None else ()
        return GitSource(repo, branch, workdir, credentials, sparse)
    return LocalSource(Path(repo))
