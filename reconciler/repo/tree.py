"""Finds and reads the files of an environments repo, trusting none of its names.

Only three places hold environment files: projects/<project>.yaml,
installations/<name>/installation.yaml and installations/<name>/releases/<release>.yaml.
Anything else under projects/ or installations/ is reported (a typo such as
`relases/` would otherwise be silently ignored). Symlinks may point only to regular
files inside the repo; every file is read with a size limit.

A scan may be confined to one installation (what its reconciler reads, and all a
sparse checkout holds): projects/ and installations/<name>/ only, so another
installation's broken or stray files neither block nor concern it.
"""

from __future__ import annotations

import difflib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.errors import Problem
from reconciler.repo.schemas import Kind
from reconciler.repo.yamldoc import MAX_FILE_BYTES

PROJECTS = "projects"
INSTALLATIONS = "installations"
INSTALLATION_FILE = "installation.yaml"
RELEASES = "releases"
SUFFIX = ".yaml"
# Files people keep next to environment files; neither read nor reported.
IGNORED = frozenset({"README.md", ".gitkeep", ".keep"})


@dataclass(frozen=True)
class SourceFile:
    """One environment file: its repo-relative path, what it declares, its bytes."""

    path: str
    kind: Kind
    stem: str
    data: bytes
    installation: str = ""


@dataclass
class Tree:
    files: list[SourceFile] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    installations: list[str] = field(default_factory=list)


def shown(text: str) -> str:
    """Text as it may be printed: file names and keys are untrusted and may hold control
    characters (a terminal escape sequence in a file name must not reach the terminal)."""

    return text if text.isprintable() else ascii(text)[1:-1]


def scan(root: Path, installation: str | None = None) -> Tree:
    """Every environment file under `root`, or only those one installation reads."""

    tree = _Scanner(root, installation)
    projects = root / PROJECTS
    installations = root / INSTALLATIONS
    if not projects.is_dir() and not installations.is_dir():
        tree.problem(
            ".",
            "not an environments repo: there is no projects/ or installations/ folder here;"
            " pass the repo's path (reconciler validate PATH)",
        )
        return tree.result
    if tree.folder_ok(PROJECTS):
        tree.scan_projects()
    if tree.folder_ok(INSTALLATIONS):
        tree.scan_installations()
    if installation is not None and not tree.seen_only:
        tree.problem(
            f"{INSTALLATIONS}/{installation}",
            f"missing: installation {installation} is not declared at this revision;"
            " check --installation, or add the folder with an installation.yaml",
        )
    return tree.result


class _Scanner:
    def __init__(self, root: Path, installation: str | None = None) -> None:
        self.root = root
        self.only = installation
        self.seen_only = False
        self.real_root = os.path.realpath(root)
        self.result = Tree()

    def problem(self, path: str, message: str, line: int | None = None) -> None:
        self.result.problems.append(Problem(shown(path), line, shown(message)))

    def folder_ok(self, relative: str) -> bool:
        path = os.path.join(self.root, relative)
        if os.path.islink(path):
            self.problem(relative, "a symlinked folder is not supported; use a real folder")
            return False
        return os.path.isdir(path)

    def entries(self, relative: str) -> list[os.DirEntry[str]]:
        with os.scandir(os.path.join(self.root, relative)) as listing:
            return sorted(listing, key=lambda e: e.name)

    def scan_projects(self) -> None:
        for entry in self.entries(PROJECTS):
            relative = f"{PROJECTS}/{entry.name}"
            if entry.name in IGNORED:
                continue
            if entry.name.endswith(SUFFIX) and not entry.is_dir(follow_symlinks=False):
                self.read(entry, relative, "Project", entry.name[: -len(SUFFIX)])
            else:
                self.unknown(entry, relative, "projects are files projects/<project>.yaml")

    def scan_installations(self) -> None:
        for entry in self.entries(INSTALLATIONS):
            relative = f"{INSTALLATIONS}/{entry.name}"
            if entry.name in IGNORED or (self.only is not None and entry.name != self.only):
                continue
            self.seen_only = True
            if entry.is_symlink() or not entry.is_dir():
                self.unknown(entry, relative, "each installation is a folder installations/<name>/")
                continue
            self.result.installations.append(entry.name)
            self.scan_installation(entry.name, relative)

    def scan_installation(self, name: str, relative: str) -> None:
        found = False
        for entry in self.entries(relative):
            child = f"{relative}/{entry.name}"
            if entry.name == INSTALLATION_FILE and not entry.is_dir(follow_symlinks=False):
                found = True
                self.read(entry, child, "Installation", name, installation=name)
            elif entry.name == RELEASES and entry.is_dir(follow_symlinks=False):
                self.scan_releases(name, child)
            elif entry.name not in IGNORED:
                self.unknown(
                    entry,
                    child,
                    "an installation folder holds installation.yaml and releases/",
                    suggestions=(INSTALLATION_FILE, RELEASES),
                )
        if not found:
            self.problem(
                f"{relative}/{INSTALLATION_FILE}",
                "missing: every installation folder needs an installation.yaml"
                " (apiVersion, kind: Installation, name)",
            )

    def scan_releases(self, installation: str, relative: str) -> None:
        for entry in self.entries(relative):
            child = f"{relative}/{entry.name}"
            if entry.name in IGNORED:
                continue
            if entry.name.endswith(SUFFIX) and not entry.is_dir(follow_symlinks=False):
                stem = entry.name[: -len(SUFFIX)]
                self.read(entry, child, "Release", stem, installation=installation)
            else:
                self.unknown(entry, child, "releases are files releases/<release>.yaml")

    def unknown(
        self,
        entry: os.DirEntry[str],
        relative: str,
        rule: str,
        suggestions: tuple[str, ...] = (),
    ) -> None:
        if entry.is_symlink():
            self.problem(relative, f"a symlink is not supported here: {rule}")
            return
        what = "folder" if entry.is_dir(follow_symlinks=False) else "file"
        close = difflib.get_close_matches(entry.name, suggestions, n=1, cutoff=0.6)
        if close:
            fix = f'; did you mean "{close[0]}"?'
        elif entry.name.endswith(".yml"):
            fix = "; rename it to .yaml"
        else:
            fix = "; move or remove it"
        self.problem(relative, f"unexpected {what}: {rule}{fix}")

    def read(
        self, entry: os.DirEntry[str], relative: str, kind: Kind, stem: str, installation: str = ""
    ) -> None:
        data = self.read_bytes(entry, relative)
        if data is not None:
            self.result.files.append(SourceFile(relative, kind, stem, data, installation))

    def read_bytes(self, entry: os.DirEntry[str], relative: str) -> bytes | None:
        path = entry.path
        if entry.is_symlink():
            target = os.path.realpath(path)
            if os.path.commonpath([self.real_root, target]) != self.real_root:
                self.problem(relative, "a symlink pointing outside the repo; copy the file in")
                return None
            if ".git" in Path(os.path.relpath(target, self.real_root)).parts:
                # git's own files are not part of any commit: what is read differs by clone.
                self.problem(
                    relative, "a symlink into .git/, which no commit holds; copy the file in"
                )
                return None
            path = target
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
        except OSError as error:
            self.problem(relative, f"cannot be read: {error.strerror}")
            return None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                self.problem(relative, "not a regular file; environment files are plain files")
                return None
            if info.st_size > MAX_FILE_BYTES:
                self.problem(
                    relative,
                    f"the file is {info.st_size:,} bytes, over the limit of {MAX_FILE_BYTES:,};"
                    " environment files are small, move large values elsewhere",
                )
                return None
            return os.read(fd, info.st_size + 1)
        finally:
            os.close(fd)
