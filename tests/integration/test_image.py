"""The image's build and run steps, without a container engine.

The build stage's commands run on the same build context the Dockerfile COPYs; the
result is made read-only and started with the final stage's environment (scratch dirs
moved to a temporary folder), as the image's user when the tests run as root.
"""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dockerfile import ROOT, Stage, arg_defaults, copy_sources, parse

PREFIX_IN_IMAGE = "/opt/reconciler"


def _run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        argv, capture_output=True, text=True, check=False, timeout=600, **kwargs
    )  # type: ignore[call-overload]
    assert result.returncode == 0, f"{shlex.join(argv)}: {result.stdout}\n{result.stderr}"
    return result


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(path.relative_to(root)): (path.lstat().st_mtime_ns, path.lstat().st_size)
        for path in root.rglob("*")
    }


def _image_environment(final: Stage, prefix: Path, scratch: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in final.all("ENV"):
        for pair in shlex.split(args):
            key, _, value = pair.partition("=")
            if value == "/tmp" or value.startswith("/tmp/"):
                value = str(scratch) + value.removeprefix("/tmp")
            value = value.replace("${PATH}", "/usr/local/bin:/usr/bin:/bin")
            env[key] = value.replace(PREFIX_IN_IMAGE, str(prefix))
    return env


@pytest.fixture
def workspace() -> Iterator[Path]:
    # Not under pytest's tmp_path: the image's user must be able to reach it.
    base = Path(tempfile.mkdtemp(prefix="reconciler-image-"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(base)], check=False)
        shutil.rmtree(base, ignore_errors=True)


def test_image_steps_install_a_reconciler_that_runs_on_a_read_only_install(
    workspace: Path,
) -> None:
    _, stages = parse()
    build, final = next(s for s in stages if s.name == "build"), stages[-1]

    context = workspace / "context"
    context.mkdir()
    for source in copy_sources(build):
        path = ROOT / source
        assert path.exists(), f"the Dockerfile copies {source}, which the repository lacks"
        if path.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
            shutil.copytree(path, context / source, symlinks=True, ignore=ignore)
        else:
            shutil.copy2(path, context / source)

    # The build stage's RUN, step by step.
    wheels, prefix = workspace / "wheels", workspace / "opt-reconciler"
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(wheels), "."],
        cwd=context,
    )
    _run([sys.executable, "-m", "venv", str(prefix)])
    _run([str(prefix / "bin" / "pip"), "install", "--quiet", *map(str, wheels.glob("*.whl"))])
    _run([str(prefix / "bin" / "pip"), "uninstall", "--yes", "pip"])
    assert not (prefix / "bin" / "pip").exists()

    # The final stage: a read-only install, writable scratch only.
    subprocess.run(["chmod", "-R", "a-w", str(prefix)], check=True)
    scratch = workspace / "scratch"
    scratch.mkdir(mode=0o777)
    scratch.chmod(0o777 | stat.S_ISVTX)
    env = _image_environment(final, prefix, scratch)
    as_user: list[str] = []
    if os.geteuid() == 0:
        uid = arg_defaults(final)["UID"]
        as_user = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]
    before = _snapshot(prefix)

    entrypoint, command = final.exec_form("ENTRYPOINT"), final.exec_form("CMD")
    top = _run([*as_user, *entrypoint, "--help"], env=env, cwd=scratch)
    assert "run" in top.stdout
    run = _run([*as_user, *entrypoint, *command, "--help"], env=env, cwd=scratch)
    assert "--installation" in run.stdout
    assert "--leader-elect" in run.stdout

    assert _snapshot(prefix) == before, "the reconciler wrote into its install directory"
