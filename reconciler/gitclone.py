"""A writable clone of the environments repo: sync, commit, push without force.

Every command goes through `proc.run`; credentials travel in git's environment
and every error message is scrubbed of them. A push that loses a race is
reported as `rejected` so the caller can re-apply its change on the new head;
nothing here ever force-pushes.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from reconciler import proc
from reconciler.errors import CommandError, GitError
from reconciler.source import Credentials

PushResult = Literal["pushed", "rejected", "transient"]
GIT_TIMEOUT = 300.0

# `git push --porcelain` marks a refused ref with "!" and a reason in brackets.
# Losing a race shows as a non-fast-forward ("fetch first") on the client, or as
# a failed ref lock on the server when two pushes arrive at the same moment.
_RACE_REASONS = re.compile(
    r"\[rejected\]|\[remote rejected\].*(lock|failed to update ref|incorrect old value|expected)"
)
# Transport failures after which the push may or may not have landed; a fresh
# fetch tells which.
_TRANSIENT = re.compile(
    r"RPC failed|remote end hung up|Connection reset|Empty reply|HTTP 50[234]|timed out|early EOF"
)


@dataclass(frozen=True)
class Identity:
    name: str
    email: str

    @classmethod
    def parse(cls, text: str) -> Identity:
        """`Name <email>` as git writes it."""

        match = re.fullmatch(r"\s*([^<>]*?)\s*<([^<>\s]+)>\s*", text)
        if not match or not match.group(1):
            raise ValueError(f"expected `Name <email>`, got {text!r}")
        return cls(match.group(1), match.group(2))

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"


@dataclass(frozen=True)
class Remote:
    url: str
    branch: str = "main"
    credentials: Credentials = field(default_factory=Credentials)

    def __post_init__(self) -> None:
        # user:password@ leaves the URL for git's environment: never on a command line.
        url, credentials = self.credentials.without_url_secrets(self.url)
        object.__setattr__(self, "url", url)
        object.__setattr__(self, "credentials", credentials)

    def scrub(self, text: str) -> str:
        return self.credentials.scrub(text)


@dataclass
class Clone:
    """A working clone at `path`; `depth=None` keeps the whole history."""

    remote: Remote
    path: Path
    depth: int | None = 1

    def __post_init__(self) -> None:
        # Absolute: git clones from the parent folder and fetches inside the clone, so a
        # relative path (`--workdir work`) would name two different places.
        self.path = self.path.absolute()

    def sync(self) -> str:
        """Clone, or fetch and hard-reset to the remote branch head; return that head."""

        if not (self.path / ".git").exists():
            self._clone()
            return self.head()
        self._git("fetch", "--quiet", "--no-tags", *self._depth(), "origin", self.remote.branch)
        self._git("reset", "--quiet", "--hard", "FETCH_HEAD")
        self._git("clean", "-fdxq")
        # FETCH_HEAD starts with the fetched SHA: one git process fewer inside the
        # window in which another push can win the race.
        return (self.path / ".git" / "FETCH_HEAD").read_text(encoding="utf-8")[:40]

    def head(self) -> str:
        return self._git("rev-parse", "HEAD").strip()

    def commit(self, paths: list[str], message: str, author: Identity) -> str:
        self._git("add", "--", *paths)
        env = {
            "GIT_AUTHOR_NAME": author.name,
            "GIT_AUTHOR_EMAIL": author.email,
            "GIT_COMMITTER_NAME": author.name,
            "GIT_COMMITTER_EMAIL": author.email,
        }
        # Signing and hooks belong to the people who push by hand, not to this robot commit.
        self._git(
            "-c", "commit.gpgsign=false", "commit", "--quiet", "--no-verify", "-F", "-",
            input=message, extra_env=env,
        )  # fmt: skip
        return self.head()

    def push(self) -> tuple[PushResult, str]:
        """Fast-forward the remote branch to HEAD; never forced."""

        refspec = f"HEAD:refs/heads/{self.remote.branch}"
        done = self._run(["push", "--porcelain", "origin", refspec], check=False)
        output = done.stdout + "\n" + done.stderr
        if done.returncode == 0:
            return "pushed", ""
        detail = self.remote.scrub(output.strip())
        if _RACE_REASONS.search(output):
            return "rejected", detail
        if _TRANSIENT.search(output):
            return "transient", detail
        raise GitError(f"git push to {self._where()} failed: {_tail(detail)}")

    def messages(self, grep: str) -> list[tuple[str, str]]:
        """(sha, message) of every commit in the local history whose message contains `grep`."""

        out = self._git("log", "--format=%H%x00%B%x1e", "--fixed-strings", f"--grep={grep}")
        found = []
        for record in out.split("\x1e"):
            sha, _, message = record.strip("\n").partition("\x00")
            if sha:
                found.append((sha, message))
        return found

    def _clone(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        argv = ["clone", "--quiet", "--no-tags", "--single-branch", "--branch", self.remote.branch]
        self._run([*argv, *self._depth(), self.remote.url, str(self.path)], cwd=self.path.parent)

    def _depth(self) -> list[str]:
        return ["--depth", str(self.depth)] if self.depth else []

    def _git(
        self, *args: str, input: str | None = None, extra_env: dict[str, str] | None = None
    ) -> str:
        return self._run(list(args), input=input, extra_env=extra_env).stdout

    def _run(
        self,
        args: list[str],
        *,
        check: bool = True,
        cwd: Path | None = None,
        input: str | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        env = os.environ | self.remote.credentials.environment() | {"LC_ALL": "C"}
        env |= extra_env or {}
        try:
            return proc.run(
                ["git", *args],
                cwd=cwd or self.path,
                env=env,
                timeout=GIT_TIMEOUT,
                input=input,
                check=check,
            )
        except CommandError as error:
            what = next(a for a in args if not a.startswith("-") and "=" not in a)
            raise GitError(
                self.remote.scrub(f"git {what} ({self._where()}) failed: {_tail(error.stderr)}")
            ) from None

    def _where(self) -> str:
        return f"{self.remote.scrub(self.remote.url)} branch {self.remote.branch}"


def _tail(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " | ".join(lines[-4:]) or "(no output)"
