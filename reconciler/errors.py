"""The one error hierarchy. Adapters raise these with messages a user can act on;
`reconciler.main` maps them to exit codes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class ReconcilerError(Exception):
    """Base of every error the CLI reports without a traceback."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(ReconcilerError):
    """The command line itself is wrong (a missing flag, a path that does not exist)."""

    exit_code = 2


class ValidationError(ReconcilerError):
    """The environments repo at some revision is invalid; carries every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        first = problems[0].render() if problems else "invalid"
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(first + more)


class GitError(ReconcilerError):
    """A git operation failed (clone, fetch, push)."""


class KubeError(ReconcilerError):
    """The Kubernetes API refused or failed a request; `status` is the HTTP code (0 if none)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class NotWorking(ReconcilerError):
    """helm deployed a revision, but the release does not work (its workloads never became
    healthy, its test failed): `revision` is the revision helm wrote (None: unknown)."""

    def __init__(self, message: str, revision: int | None = None) -> None:
        super().__init__(message)
        self.revision = revision


class HelmError(ReconcilerError):
    """A helm command failed."""


class CommandError(ReconcilerError):
    """A subprocess failed; the message shows the command, exit code and stderr."""

    def __init__(self, argv: list[str], returncode: int, stderr: str) -> None:
        self.argv = argv
        self.returncode = returncode
        self.stderr = stderr
        tail = stderr.strip().splitlines()[-5:]
        super().__init__(f"`{' '.join(argv)}` exited {returncode}: " + " | ".join(tail))


@dataclass(frozen=True)
class Problem:
    """One finding of validation: a file, a line, and what to fix."""

    path: str
    line: int | None
    message: str

    def render(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.message}"

    def as_dict(self) -> dict[str, object]:
        return {"path": self.path, "line": self.line, "message": self.message}


def unexpected(error: BaseException) -> str:
    """`unexpected TypeError at reconciler/health.py:454`: what a one-line report says of an
    exception no module raises on purpose. Its text is left out: it may quote a value."""

    import traceback  # only on this rare path: it costs `reconciler validate` ~3 ms

    frames = traceback.extract_tb(error.__traceback__)
    where = ""
    if frames:
        last = frames[-1]
        where = f" at {Path(last.filename).parent.name}/{Path(last.filename).name}:{last.lineno}"
    return f"unexpected {type(error).__name__}{where}"
