"""An environments repo inside a git checkout, loaded at any revision.

A revision is a commit (its files are copied out of git, never checked out, so the
user's work tree is left alone), the working tree as it is on disk, or nothing
(the side before the first commit). Files come from the repository, which anyone
opening a pull request controls: regular files are copied, symlinks only when they
point inside the environments repo (as the loader allows them), submodules never,
and no path may leave the temporary folder.
"""

from __future__ import annotations

import errno
import os
import posixpath
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from reconciler import proc
from reconciler.errors import CommandError, GitError, Problem, UsageError, ValidationError
from reconciler.model import Environments
from reconciler.repo import load_environments

# Branches whose merge-base with HEAD is the natural "before" of a pull request.
UPSTREAM_CANDIDATES = ("origin/HEAD", "origin/main", "origin/master", "main", "master")
EMPTY = Environments(projects={}, installations={})


@dataclass(frozen=True)
class Revision:
    """One side of a diff: a commit, the working tree, or nothing (before the first commit)."""

    label: str
    commit: str | None = None
    worktree: bool = False
    problems: tuple[Problem, ...] = ()

    @property
    def valid(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class Checkout:
    """An environments repo at `toplevel/prefix` inside a git work tree."""

    toplevel: Path
    prefix: str

    @classmethod
    def open(cls, path: Path) -> Checkout:
        if not path.is_dir():
            raise UsageError(f"{path}: not a directory")
        try:
            top = _git(path, "rev-parse", "--show-toplevel").strip()
            prefix = _git(path, "rev-parse", "--show-prefix").strip().rstrip("/")
        except GitError as error:
            raise UsageError(f"{path}: not inside a git work tree ({error})") from None
        return cls(Path(top), prefix)

    @property
    def root(self) -> Path:
        return self.toplevel / self.prefix

    def git(self, *args: str, check: bool = True) -> str:
        return _git(self.toplevel, *args, check=check)

    def commit(self, ref: str) -> str | None:
        """The commit `ref` names, or None if it names none."""

        spec = f"{ref}^{{commit}}"
        out = self.git("rev-parse", "--verify", "--quiet", "--end-of-options", spec, check=False)
        return out.strip() or None

    def resolve(self, ref: str, flag: str) -> Revision:
        if ref.startswith("-"):
            raise UsageError(f"{flag} {ref!r}: a revision cannot start with '-'")
        commit = self.commit(ref)
        if commit is None:
            raise UsageError(f"{flag} {ref!r}: no such commit in {self.toplevel}")
        return Revision(label=ref, commit=commit)

    def is_dirty(self) -> bool:
        pathspec = self.prefix or "."
        status = self.git("status", "--porcelain", "--untracked-files=all", "--", pathspec)
        return bool(status.strip())

    def default_head(self) -> Revision:
        """The working tree when it has changes under the environments root, else HEAD."""

        head = self.commit("HEAD")
        if head is None or self.is_dirty():
            return Revision(label="working tree", worktree=True)
        return Revision(label="HEAD", commit=head)

    def default_base(self, head: Revision) -> Revision:
        """The merge-base with upstream on a branch; else HEAD for local edits; else head~1."""

        anchor = head.commit or self.commit("HEAD")
        if anchor is None:
            return Revision(label="nothing (no commits yet)")
        for candidate in UPSTREAM_CANDIDATES:
            base = self._merge_base(anchor, candidate)
            if base is not None and base != anchor:
                return Revision(label=f"merge-base with {candidate}", commit=base)
        if head.worktree:
            return Revision(label="HEAD", commit=anchor)
        parent = self.commit(f"{anchor}~1")
        if parent is not None:
            return Revision(label=f"{head.label}~1", commit=parent)
        if self.git("rev-parse", "--is-shallow-repository").strip() == "true":
            raise UsageError(
                f"{head.label} has no parent in this shallow clone: "
                "fetch more history (fetch-depth: 2) or pass --base"
            )
        return Revision(label=f"nothing ({head.label} is the first commit)")

    def _merge_base(self, anchor: str, candidate: str) -> str | None:
        if self.commit(candidate) is None:
            return None
        out = self.git("merge-base", anchor, candidate, check=False)
        return out.strip() or None

    def load(self, rev: Revision) -> Environments:
        """The environments at `rev`; raises ValidationError if they are invalid."""

        if rev.worktree:
            return _load(self.root)
        if rev.commit is None:
            return EMPTY
        try:
            return self._load_commit(rev.commit, _memory_tmpdir())
        except OSError as error:
            if error.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise GitError(
                    f"cannot copy {rev.label} into a temporary folder: {error}"
                ) from None
        # A small /dev/shm (64 MiB in a default Docker container) fills up: use the disk.
        try:
            return self._load_commit(rev.commit, None)
        except OSError as error:
            raise GitError(f"cannot copy {rev.label} into a temporary folder: {error}") from None

    def _load_commit(self, commit: str, parent: str | None) -> Environments:
        with tempfile.TemporaryDirectory(prefix="reconciler-rev-", dir=parent) as tmp:
            dest = Path(tmp)
            refused = self._materialize(commit, dest)
            return _load(dest / self.prefix, commit, refused)

    def _materialize(self, commit: str, dest: Path) -> list[Problem]:
        """Copy the files under `prefix` at `commit` into `dest`; the symlinks refused."""

        entries = list(self._entries(commit))
        contents = _cat_blobs(self.toplevel, [e.sha for e in entries]) if entries else []
        made: set[Path] = set()
        links = []
        for entry, data in zip(entries, contents, strict=True):
            if entry.is_link:
                links.append((entry, os.fsdecode(data)))
                continue
            target = _safe_target(dest, entry.path)
            if target.parent not in made:
                target.parent.mkdir(parents=True, exist_ok=True)
                made.add(target.parent)
            target.write_bytes(data)
        # Links come last, so that no file is ever written through one.
        return [p for entry, text in links if (p := self._link(dest, entry, text)) is not None]

    def _link(self, dest: Path, entry: _Entry, text: str) -> Problem | None:
        if not _link_stays_inside(entry.path, text, self.prefix):
            where = entry.path.removeprefix(f"{self.prefix}/") if self.prefix else entry.path
            return Problem(where, None, _OUTSIDE)
        target = _safe_target(dest, entry.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(text)
        return None

    def _entries(self, commit: str) -> Iterator[_Entry]:
        pathspec = [self.prefix] if self.prefix else []
        listing = proc.run_bytes(
            ["git", "--literal-pathspecs", "ls-tree", "-r", "-z", commit, "--", *pathspec],
            cwd=self.toplevel,
        ).stdout
        for line in listing.split(b"\0"):
            if not line:
                continue
            meta, _, raw_path = line.partition(b"\t")
            mode, kind, sha = meta.decode().split()
            # Submodules (mode 160000) are other repositories: not part of this one.
            if kind == "blob" and mode in ("100644", "100755", "120000"):
                yield _Entry(sha, os.fsdecode(raw_path), is_link=mode == "120000")


# The loader's own words for a symlink it refuses, so both revisions read alike.
_OUTSIDE = "a symlink pointing outside the repo; copy the file in"


@dataclass(frozen=True)
class _Entry:
    sha: str
    path: str
    is_link: bool


def _link_stays_inside(path: str, target: str, prefix: str) -> bool:
    # Judged on the link's text alone; the loader checks the real path again before reading.
    if posixpath.isabs(target):
        return False
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
    if joined == ".." or joined.startswith("../"):
        return False
    return not prefix or joined.startswith(f"{prefix}/")


def _memory_tmpdir() -> str | None:
    # Tens of thousands of small files are written per revision; on a disk that costs
    # seconds, in memory a fraction of one. An explicit TMPDIR is respected.
    if os.environ.get("TMPDIR"):
        return None
    shm = "/dev/shm"  # noqa: S108 - a private mkdtemp folder is made inside it
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None


def _safe_target(dest: Path, rel: str) -> Path:
    # `dest` is a fresh folder holding no symlink yet, so a relative path without
    # `..` stays inside it; no need to resolve anything.
    parts = rel.split("/")
    if rel.startswith("/") or any(p in ("", ".", "..") or p.lower() == ".git" for p in parts):
        raise GitError(f"refusing to copy unsafe path from the repository: {rel!r}")
    return dest.joinpath(*parts)


def _cat_blobs(cwd: Path, shas: list[str]) -> list[bytes]:
    """The contents of `shas` in order, with one `git cat-file --batch` for all of them."""

    batch = "".join(f"{sha}\n" for sha in shas)
    out = proc.run_bytes(["git", "cat-file", "--batch"], cwd=cwd, input=batch).stdout
    contents = []
    pos = 0
    for sha in shas:
        header_end = out.index(b"\n", pos)
        header = out[pos:header_end].decode(errors="replace").split()
        if len(header) != 3 or header[0] != sha:
            raise GitError(f"git cat-file: unexpected answer for {sha}: {' '.join(header)}")
        start = header_end + 1
        size = int(header[2])
        contents.append(out[start : start + size])
        pos = start + size + 1
    return contents


def _git(cwd: Path, *args: str, check: bool = True) -> str:
    try:
        return proc.run(["git", "--literal-pathspecs", *args], cwd=cwd, check=check).stdout
    except CommandError as error:
        raise GitError(error.message) from None


def _load(root: Path, revision: str = "", refused: list[Problem] | None = None) -> Environments:
    if not root.is_dir():
        return replace(EMPTY, revision=revision)
    problems = list(refused or [])
    try:
        env = load_environments(root, revision=revision)
    except ValidationError as error:
        problems.extend(error.problems)
        raise ValidationError(sorted(problems, key=_order)) from None
    if problems:
        raise ValidationError(problems)
    return env


def _order(problem: Problem) -> tuple[str, int, str]:
    return problem.path, problem.line or 0, problem.message
