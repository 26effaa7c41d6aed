"""Promotion: declare a project at a commit ref in installations, validate, commit, push.

The change is computed from the request on every attempt, never replayed as a
patch: when another job pushed first, the clone is reset onto the new head and
the same request is applied again, so nobody's commit is overwritten or dropped.
The whole tree is validated before each push; an invalid tree is never pushed.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from reconciler import trailers
from reconciler.errors import GitError, ReconcilerError
from reconciler.gitclone import Clone, Identity
from reconciler.loader import load_environments
from reconciler.model import Environments, Installation, Release
from reconciler.releasefile import new_release, set_ref

Status = Literal["pushed", "unchanged", "duplicate"]
DEFAULT_AUTHOR = Identity("reconciler", "reconciler@localhost")


class PromoteError(ReconcilerError):
    """The request names something that does not exist, or cannot be applied."""


@dataclass(frozen=True)
class Request:
    """Declare `project` at `ref` in the named installations, or in those the selector matches."""

    project: str
    ref: str
    installations: tuple[str, ...] = ()
    selector: Mapping[str, str] = field(default_factory=dict)
    create: bool = True
    deployment_id: int | None = None
    deployment_repository: str | None = None

    def describe_target(self) -> str:
        if self.installations:
            return ", ".join(self.installations)
        return ",".join(f"{k}={v}" for k, v in sorted(self.selector.items()))


@dataclass(frozen=True)
class FileChange:
    installation: str
    release: str
    path: str
    action: Literal["updated", "created", "unchanged", "pinned"]
    previous: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "installation": self.installation,
            "release": self.release,
            "path": self.path,
            "action": self.action,
            "previous": self.previous,
        }


@dataclass(frozen=True)
class Result:
    status: Status
    installations: tuple[str, ...]
    changes: tuple[FileChange, ...]
    commit: str | None
    attempts: int


@dataclass(frozen=True)
class RetryPolicy:
    """Jittered exponential backoff between attempts to push."""

    attempts: int = 30
    base_seconds: float = 0.1
    cap_seconds: float = 3.0

    def delay(self, attempt: int, rng: Callable[[], float], attempt_seconds: float = 0.0) -> float:
        # Full jitter: racing jobs spread out instead of colliding again in lockstep.
        # The unit is at least one attempt's duration, the window in which pushes
        # collide, so the first retries already spread on a slow or loaded machine.
        unit = max(self.base_seconds, attempt_seconds)
        ceiling: float = min(self.cap_seconds, unit * 2.0 ** (attempt - 1))
        return rng() * ceiling


@dataclass(frozen=True)
class _Attempt:
    """One try: `done` ends the promotion; `unconfirmed` is a push whose transport
    failed, which may still have landed (the next fetch tells)."""

    done: Result | None = None
    unconfirmed: Result | None = None
    detail: str = ""


@dataclass
class Promoter:
    clone: Clone
    author: Identity = DEFAULT_AUTHOR
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Callable[[float], None] = time.sleep
    rng: Callable[[], float] = random.random

    def promote(self, request: Request) -> Result:
        check_request(request)
        step = _Attempt()
        for attempt in range(1, self.retry.attempts + 1):
            started = time.monotonic()
            head = self.clone.sync()
            if step.unconfirmed and head == step.unconfirmed.commit:
                return step.unconfirmed  # it landed although the transport reported an error
            step = self._attempt(request, attempt)
            if step.done:
                return step.done
            if attempt < self.retry.attempts:
                took = time.monotonic() - started
                self.sleep(self.retry.delay(attempt, self.rng, took))
        raise GitError(
            f"gave up after {self.retry.attempts} attempts to push to "
            f"{self.clone.remote.scrub(self.clone.remote.url)}: other pushes kept winning"
            f" (last: {step.detail}); nothing was force-pushed, run promote again"
        )

    def _attempt(self, request: Request, attempt: int) -> _Attempt:
        root = self.clone.path
        duplicate = self._mirrored_before(request)
        if duplicate:
            return _Attempt(done=Result("duplicate", request.installations, (), duplicate, attempt))
        env = load_environments(root)
        names = select_installations(env, request)
        planned = plan_changes(root, env, names, request)
        changes = tuple(change for change, _ in planned)
        if all(text is None for _, text in planned):
            return _Attempt(done=Result("unchanged", names, changes, None, attempt))
        written = write_changes(root, planned)
        load_environments(root)  # raises ValidationError: an invalid tree is never pushed
        return self._commit_and_push(
            request, Result("pushed", names, changes, None, attempt), written
        )

    def _commit_and_push(self, request: Request, planned: Result, written: list[str]) -> _Attempt:
        promotion = trailers.Promotion(
            request.project,
            request.ref,
            planned.installations,
            request.deployment_id,
            request.deployment_repository,
        )
        message = trailers.commit_message(promotion, written)
        result = dataclasses.replace(
            planned, commit=self.clone.commit(written, message, self.author)
        )
        outcome, detail = self.clone.push()
        if outcome == "pushed":
            return _Attempt(done=result)
        return _Attempt(unconfirmed=result if outcome == "transient" else None, detail=detail)

    def _mirrored_before(self, request: Request) -> str | None:
        """The commit that already mirrored this GitHub Deployment, if any (trailers in history)."""

        if request.deployment_id is None or not request.deployment_repository:
            return None
        needle = f"{trailers.DEPLOYMENT_ID}: {request.deployment_id}"
        for sha, message in self.clone.messages(needle):
            found = trailers.promotion_of(message)
            if (
                found
                and found.deployment_id == request.deployment_id
                and (found.deployment_repository or "").lower()
                == request.deployment_repository.lower()
            ):
                return sha
        return None


def check_request(request: Request) -> None:
    if bool(request.installations) == bool(request.selector):
        raise PromoteError("give installations or a selector (exactly one of them)")
    if len(request.ref) != 40 or any(c not in "0123456789abcdef" for c in request.ref):
        raise PromoteError(f"ref {request.ref!r} is not a full 40-character lowercase commit SHA")


def select_installations(env: Environments, request: Request) -> tuple[str, ...]:
    if request.project not in env.projects:
        raise PromoteError(
            f"unknown project {request.project!r} (projects/{request.project}.yaml does not exist)"
        )
    if request.installations:
        unknown = [n for n in request.installations if n not in env.installations]
        if unknown:
            raise PromoteError(f"unknown installation(s): {', '.join(unknown)}")
        return tuple(dict.fromkeys(request.installations))
    matched = tuple(
        sorted(n for n, inst in env.installations.items() if _matches(inst, request.selector))
    )
    if not matched:
        raise PromoteError(f"selector {request.describe_target()} matches no installation")
    return matched


def _matches(installation: Installation, selector: Mapping[str, str]) -> bool:
    return all(installation.labels.get(key) == value for key, value in selector.items())


def plan_changes(
    root: Path, env: Environments, names: tuple[str, ...], request: Request
) -> list[tuple[FileChange, str | None]]:
    """Each release file's change and its new text (None when it already declares the ref)."""

    planned: list[tuple[FileChange, str | None]] = []
    for name in names:
        installation = env.installations[name]
        releases = [r for r in installation.releases if r.project == request.project]
        if not releases:
            planned.append(_new_file(root, installation, request))
        for release in releases:
            if release.pinned:
                planned.append((_pinned(root, installation, release), None))
            else:
                planned.append(_edit_file(root, installation, release, request.ref))
    return planned


def _pinned(root: Path, installation: Installation, release: Release) -> FileChange:
    """A release with `pinned: true` stays at its ref or version (say, while a bug is fixed)."""

    path = release_path(root, installation, release.name, release.path)
    at = f"ref {release.ref}" if release.ref else f"version {release.version}"
    return FileChange(
        installation.name, release.name, path.relative_to(root).as_posix(), "pinned", at
    )


def _edit_file(
    root: Path, installation: Installation, release: Release, ref: str
) -> tuple[FileChange, str | None]:
    path = release_path(root, installation, release.name, release.path)
    relative = path.relative_to(root).as_posix()
    _refuse_links(root, path, relative)
    edit = set_ref(path.read_text(encoding="utf-8"), ref, relative)
    previous = f"{edit.previous_key} {edit.previous_value}" if edit.previous_key else None
    action: Literal["updated", "unchanged"] = "updated" if edit.changed else "unchanged"
    change = FileChange(installation.name, release.name, relative, action, previous)
    return change, edit.text if edit.changed else None


def _new_file(root: Path, installation: Installation, request: Request) -> tuple[FileChange, str]:
    name = request.project
    if not request.create:
        raise PromoteError(
            f"installation {installation.name} has no release of project {request.project}"
            " (without --no-create, promote adds one)"
        )
    taken = next((r for r in installation.releases if r.name == name), None)
    if taken:
        raise PromoteError(
            f"installation {installation.name} has no release of project {request.project}, and"
            f" the release name {name} is taken by project {taken.project}; add the release by hand"
        )
    path = release_path(root, installation, name, "")
    relative = path.relative_to(root).as_posix()
    _refuse_links(root, path, relative)
    change = FileChange(installation.name, name, relative, "created")
    return change, new_release(name, request.project, request.ref)


def _refuse_links(root: Path, path: Path, relative: str) -> None:
    """Promote writes regular files only: through a symbolic link it would change (or
    commit) a file elsewhere, or fail at the commit with no useful message."""

    for part in (path, *path.parents):
        if part == root or root not in part.parents:
            break
        if part.is_symlink():
            link = part.relative_to(root).as_posix()
            raise PromoteError(
                f"{relative}: {link} is a symbolic link; promote edits only regular files "
                "in the repo: replace the link with the file it points to"
            )


def release_path(root: Path, installation: Installation, release: str, declared: str) -> Path:
    if declared:
        path = Path(declared)
        return path if path.is_absolute() else root / path
    return root / "installations" / installation.name / "releases" / f"{release}.yaml"


def write_changes(root: Path, planned: list[tuple[FileChange, str | None]]) -> list[str]:
    written: list[str] = []
    for change, text in planned:
        if text is None:
            continue
        path = root / change.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(change.path)
    return written
