"""One installation's view of the repo: what its reconciler loads (projects/ and its own
folder, all a sparse checkout holds). Every fault of the loader's catalogue placed in another
installation leaves it loadable; the same fault in its own folder or in projects/ still stops it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from reconciler.errors import ValidationError
from reconciler.repo import analyze, load_environments
from tests.support.envfiles import INSTALLATION, EnvTree
from tests.unit.test_loader import CASES, Case, _matching

OTHER = "prod-us"


@pytest.fixture
def tree(tmp_path: Path) -> EnvTree:
    """prod-eu (which the catalogue breaks) and a healthy twin, prod-us."""

    tree = EnvTree.create(tmp_path / "env")
    shutil.copytree(tree.root / "installations/prod-eu", tree.root / f"installations/{OTHER}")
    tree.write(
        f"installations/{OTHER}/installation.yaml",
        INSTALLATION.replace("name: prod-eu", f"name: {OTHER}"),
    )
    tree.commit("a second installation")
    return tree


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_fault_holds_only_the_installation_it_is_in(tree: EnvTree, case: Case) -> None:
    case.change(tree)
    own = analyze(tree.root, installation="prod-eu").problems
    other = analyze(tree.root, installation=OTHER)
    if case.path.startswith("projects/"):
        # projects/ is read by every installation: a broken project stops all of them.
        assert _matching(other.problems, case), [p.render() for p in other.problems]
        return
    if case.path.startswith("installations/prod-eu"):
        assert _matching(own, case), "the installation's own fault is still caught"
    assert other.problems == [], [p.render() for p in other.problems]
    assert other.environments is not None
    assert list(other.environments.installations) == [OTHER]
    assert {r.name for r in other.environments.installations[OTHER].releases} == {"api", "postgres"}


@pytest.mark.parametrize(
    "stray",
    [
        "installations/notes.yml",
        "installations/prod-eu/relases/api.yaml",
        "installations/prod-eu/values.yaml",
        "installations/Bad Name/installation.yaml",
    ],
)
def test_stray_files_of_other_installations_do_not_concern_it(tree: EnvTree, stray: str) -> None:
    tree.write(stray, "x: 1\n")
    assert analyze(tree.root).problems, "the whole-repo check still reports it"
    assert analyze(tree.root, installation=OTHER).problems == []


def test_a_stray_file_in_its_own_folder_is_still_reported(tree: EnvTree) -> None:
    tree.write(f"installations/{OTHER}/relases/api.yaml", "x: 1\n")
    problems = analyze(tree.root, installation=OTHER).problems
    assert [p.path for p in problems] == [f"installations/{OTHER}/relases"]


def test_an_undeclared_installation_is_one_problem_naming_it(tree: EnvTree) -> None:
    with pytest.raises(ValidationError) as refused:
        load_environments(tree.root, installation="prod-ap")
    (problem,) = refused.value.problems
    assert problem.path == "installations/prod-ap"
    assert "installation prod-ap is not declared" in problem.message


def test_its_own_folder_as_a_symlink_is_refused(tree: EnvTree) -> None:
    os.symlink(tree.root / "installations/prod-eu", tree.root / "installations/prod-ap")
    problems = analyze(tree.root, installation="prod-ap").problems
    assert [p.path for p in problems] == ["installations/prod-ap"]
    assert "not a" in problems[0].message or "symlink" in problems[0].message
