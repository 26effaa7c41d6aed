"""`reconciler validate` as users and CI run it: a real process on a real git checkout."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.envfiles import EXAMPLES, RELEASES, SHA, EnvTree, run_cli
from tests.unit.test_loader import BILLION_LAUGHS

API = "installations/prod-eu/releases/api.yaml"


@pytest.fixture
def tree(tmp_path: Path) -> EnvTree:
    return EnvTree.create(tmp_path / "env")


def test_example_environments_are_valid() -> None:
    run = run_cli("validate", str(EXAMPLES))
    assert run.code == 0, run.output
    assert run.stdout.strip() == "valid: 23 projects, 4 installations, 69 releases"


def test_default_path_is_the_current_folder(tree: EnvTree) -> None:
    run = run_cli("validate", cwd=tree.root)
    assert run.code == 0, run.output
    assert "valid: 2 projects, 1 installation, 2 releases" in run.stdout


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            RELEASES["api"].replace(f"ref: {SHA}", 'ref: "abc"'),
            f'{API}:5: ref: "abc" is not a 40-character commit SHA; write the full SHA'
            " (git rev-parse)",
        ),
        (
            RELEASES["api"].replace("project: api", "project: apii"),
            f'{API}:4: project: unknown project "apii" (did you mean "api"?)',
        ),
        (
            RELEASES["api"] + "values:\n  a: 1\n",
            f'{API}:8: duplicate key "values" (first at line 6)',
        ),
        (RELEASES["api"].encode("latin-1") + b"# \xff\n", f"{API}:8: the file is not UTF-8"),
        (
            RELEASES["api"] + "---\nkind: Release\n",
            f"{API}:8: the file holds several YAML documents",
        ),
        ("", f"{API}:1: the file is empty"),
        (BILLION_LAUGHS, "(an alias bomb?)"),
        ("[unclosed\n", f"{API}:2: invalid YAML"),
    ],
    ids=[
        "ref",
        "unknown-project",
        "duplicate-key",
        "not-utf8",
        "documents",
        "empty",
        "bomb",
        "syntax",
    ],
)
def test_bad_input_exits_1_with_the_message_and_no_traceback(
    tree: EnvTree, content: str | bytes, expected: str
) -> None:
    tree.write(API, content)
    tree.commit("break it")
    run = run_cli("validate", str(tree.root))
    assert run.code == 1, run.output
    assert expected in run.stdout, run.output
    assert "Traceback" not in run.output
    assert run.stderr.startswith("invalid: 1 problem in 1 file")


def test_many_problems_at_once(tree: EnvTree) -> None:
    tree.write(API, RELEASES["api"].replace("project: api", "project: nope"))
    tree.write("installations/prod-eu/relases/x.yaml", RELEASES["api"])
    tree.write("projects/api.yaml", "kind: Project\n")
    tree.commit("break it thrice")
    run = run_cli("validate", str(tree.root))
    assert run.code == 1
    lines = run.stdout.splitlines()
    assert any(line.startswith("installations/prod-eu/relases:") for line in lines)
    assert any(line.startswith("projects/api.yaml:1: missing required field") for line in lines)
    assert any(line.startswith(f'{API}:4: project: unknown project "nope"') for line in lines)


def test_json_output(tree: EnvTree) -> None:
    tree.write(API, RELEASES["api"].replace(f"ref: {SHA}", "ref: abc"))
    run = run_cli("validate", "--output", "json", str(tree.root))
    assert run.code == 1
    report = json.loads(run.stdout)
    assert report["valid"] is False
    assert report["problems"] == [
        {
            "path": API,
            "line": 5,
            "message": 'ref: "abc" is not a 40-character commit SHA; write the full SHA'
            " (git rev-parse)",
        }
    ]
    assert report["counts"] == {"files": 5, "projects": 2, "installations": 1, "releases": 2}


def test_json_output_when_valid(tree: EnvTree) -> None:
    run = run_cli("validate", "--output", "json", str(tree.root))
    assert run.code == 0
    assert json.loads(run.stdout)["valid"] is True


def test_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    run = run_cli("validate", str(tmp_path / "nope"))
    assert run.code == 2
    assert "no such folder" in run.stderr
    assert "Traceback" not in run.output


def test_bad_option_is_a_usage_error(tree: EnvTree) -> None:
    run = run_cli("validate", "--output", "xml", str(tree.root))
    assert run.code == 2


def test_help() -> None:
    run = run_cli("validate", "--help")
    assert run.code == 0
    assert "--output" in run.stdout


def test_validate_never_imports_the_kubernetes_client(tree: EnvTree) -> None:
    # Also on an invalid repo, where jsonschema is needed for the messages.
    tree.write(API, RELEASES["api"].replace("project: api", "project: 1"))
    code = (
        "import sys\n"
        "from reconciler.main import main\n"
        f"code = main(['validate', {str(EXAMPLES)!r}])\n"
        f"code += main(['validate', {str(tree.root)!r}])\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('kubernetes', 'urllib3')))\n"
        "print(code)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.stdout.splitlines()[-2:] == ["[]", "1"], done.stdout + done.stderr


def test_importtime_shows_no_kubernetes() -> None:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "reconciler", "validate", str(EXAMPLES)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0
    imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()]
    assert "reconciler.repo.loader" in imported
    assert not [name for name in imported if name.startswith("kubernetes")]
