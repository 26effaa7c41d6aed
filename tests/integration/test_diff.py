"""`reconciler diff` on real git repositories with real commits, branches and refs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from envrepo import EnvRepo

from reconciler.main import main

REPO_ROOT = Path(__file__).resolve().parents[2]
CLI = REPO_ROOT / ".venv" / "bin" / "reconciler"
REGISTRY = "oci://registry.example.com/charts"
REF_A = "1111111111111111111111111111111111111111"
REF_B = "2222222222222222222222222222222222222222"
REF_C = "0123456789abcdef0123456789abcdef01234567"


def run_diff(repo: EnvRepo, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """The command in-process: fast, and a traceback would fail the test."""

    code = main(["diff", *args, str(repo.root)])
    out, err = capsys.readouterr()
    return code, out, err


def diff_json(repo: EnvRepo, *args: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    code, out, err = run_diff(repo, "--output", "json", *args, capsys=capsys)
    assert code == 0, err
    document: dict[str, Any] = json.loads(out)
    return document


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [str(CLI), *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=60
    )


def by_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in items}


@pytest.fixture
def repo(tmp_path: Path) -> EnvRepo:
    """prod and staging run api (depends on db) and db; commit 1 on main."""

    env = EnvRepo.local(tmp_path / "envs", REGISTRY)
    env.project("db", namespace="db", chart="db", values={"persistence": {"size": "1Gi"}})
    env.project(
        "api",
        namespace="api",
        chart="api",
        depends_on=("db",),
        values={"replicas": 1, "image": {"repository": "example/api", "tag": "latest"}},
    )
    for inst in ("prod", "staging"):
        env.installation(inst)
        env.release(inst, "api", ref=REF_A)
        env.release(inst, "db", version="15.2.0")
    env.commit("initial")
    return env


def test_version_bump(repo: EnvRepo, capsys: pytest.CaptureFixture[str]) -> None:
    base = repo.git("rev-parse", "HEAD")
    repo.release("prod", "api", ref=REF_B)
    head = repo.commit("promote api to prod")

    doc = diff_json(repo, "--base", "HEAD~1", "--head", "HEAD", capsys=capsys)

    assert doc["base"] == {"ref": "HEAD~1", "commit": base, "valid": True, "problems": []}
    assert doc["head"]["commit"] == head
    assert doc["summary"] == {
        "installations": 1,
        "releases": 1,
        "added": 0,
        "removed": 0,
        "changed": 1,
    }
    (inst,) = doc["installations"]
    assert (inst["name"], inst["change"]) == ("prod", "changed")
    (release,) = inst["releases"]
    assert release["change"] == "changed"
    assert release["changed"] == ["chart.version", "ref"]
    assert release["before"]["chart"]["version"] == f"1.0.0-g{REF_A}"
    assert release["after"]["chart"] == {
        "repository": REGISTRY,
        "name": "api",
        "version": f"1.0.0-g{REF_B}",
    }
    assert (release["before"]["ref"], release["after"]["ref"]) == (REF_A, REF_B)
    assert release["values"] == []

    code, out, _ = run_diff(repo, "--base", "HEAD~1", "--head", "HEAD", capsys=capsys)
    assert code == 0
    assert f"version 1.0.0-g{REF_A} -> 1.0.0-g{REF_B}" in out
    assert "ref 1111111 -> 2222222" in out
    assert "1 installation, 1 release change (0 added, 0 removed, 1 changed)" in out


def test_added_and_removed_releases(repo: EnvRepo, capsys: pytest.CaptureFixture[str]) -> None:
    repo.project("worker", namespace="worker", chart="worker")
    repo.release("staging", "worker", ref=REF_C)
    repo.remove("installations/staging/releases/db.yaml")
    repo.commit("add worker, drop db from staging")

    doc = diff_json(repo, "--base", "HEAD~1", "--head", "HEAD", capsys=capsys)

    (inst,) = doc["installations"]
    assert inst["name"] == "staging"
    releases = by_name(inst["releases"])
    assert releases["worker"]["change"] == "added"
    assert releases["worker"]["before"] is None
    assert releases["worker"]["after"]["chart"]["version"] == f"1.0.0-g{REF_C}"
    assert releases["db"]["change"] == "removed"
    assert releases["db"]["after"] is None
    # api depended on db; losing the dependency alone changes nothing helm would do.
    assert "api" not in releases
    assert doc["summary"]["added"] == 1
    assert doc["summary"]["removed"] == 1

    code, out, _ = run_diff(repo, "--base", "HEAD~1", "--head", "HEAD", capsys=capsys)
    assert code == 0
    assert "+ worker [worker]  added: worker 1.0.0-g0123456" in out
    assert "- db [db]  removed (was db 15.2.0)" in out


def test_project_default_change_fans_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = EnvRepo.local(tmp_path / "envs", REGISTRY)
    repo.project(
        "api", namespace="api", chart="api", values={"replicas": 1, "log": {"level": "info"}}
    )
    repo.project("web", namespace="web", chart="web")
    for inst in ("dev", "stage", "prod-eu", "prod-us"):
        repo.installation(inst, values={"replicas": 3} if inst == "prod-us" else None)
    for inst in ("dev", "stage", "prod-eu", "prod-us"):
        repo.release(inst, "api", ref=REF_A)
    repo.release("dev", "web", ref=REF_A)
    repo.installation("edge")
    repo.release("edge", "web", ref=REF_A)
    repo.commit("initial")
    repo.project(
        "api", namespace="api", chart="api", values={"replicas": 2, "log": {"level": "debug"}}
    )
    repo.commit("api defaults: 2 replicas, debug logs")

    doc = diff_json(repo, "--base", "HEAD~1", capsys=capsys)

    affected = by_name(doc["installations"])
    assert sorted(affected) == ["dev", "prod-eu", "prod-us", "stage"]
    for name in ("dev", "stage", "prod-eu"):
        (release,) = affected[name]["releases"]
        assert release["changed"] == ["values"]
        assert [v["key"] for v in release["values"]] == ["log.level", "replicas"]
    # prod-us overrides replicas in its installation values: only the log level moves.
    (release,) = affected["prod-us"]["releases"]
    assert release["values"] == [
        {
            "key": "log.level",
            "path": ["log", "level"],
            "change": "changed",
            "before": "info",
            "after": "debug",
            "secret": False,
        }
    ]
    assert doc["summary"]["installations"] == 4
    assert doc["summary"]["releases"] == 4


def test_value_key_changes(repo: EnvRepo, capsys: pytest.CaptureFixture[str]) -> None:
    repo.release(
        "prod",
        "api",
        ref=REF_A,
        values={
            "image": {"tag": "v2"},
            "resources": {"limits": {"cpu": "500m"}},
            "podAnnotations": {"prometheus.io/scrape": "true"},
            "args": ["--verbose"],
        },
    )
    repo.commit("tune prod api")
    repo.release(
        "prod",
        "api",
        ref=REF_A,
        values={
            "image": {"tag": "v3"},
            "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
            "podAnnotations": {"prometheus.io/scrape": "false"},
            "args": ["--verbose", "--trace"],
            "replicas": None,
        },
    )
    repo.commit("tune prod api again")

    doc = diff_json(repo, "--base", "HEAD~1", capsys=capsys)

    (inst,) = doc["installations"]
    (release,) = inst["releases"]
    changes = {v["key"]: v for v in release["values"]}
    assert list(changes) == [
        "args",
        "image.tag",
        'podAnnotations["prometheus.io/scrape"]',
        "replicas",
        "resources.limits.cpu",
        "resources.limits.memory",
    ]
    assert changes["image.tag"]["before"] == "v2"
    assert changes["image.tag"]["after"] == "v3"
    assert changes["args"]["after"] == ["--verbose", "--trace"]
    # `null` stays in the values (so helm drops the chart default too): a change from 1 to null.
    assert (changes["replicas"]["before"], changes["replicas"]["after"]) == (1, None)
    assert changes["resources.limits.memory"]["change"] == "added"
    assert "before" not in changes["resources.limits.memory"]
    assert release["changed"] == ["values"]

    code, out, _ = run_diff(repo, "--base", "HEAD~1", capsys=capsys)
    assert code == 0
    assert '~ image.tag: "v2" -> "v3"' in out
    assert '+ resources.limits.memory: "1Gi"' in out
    assert "~ replicas: 1 -> null" in out


def test_installation_added_and_removed(repo: EnvRepo, capsys: pytest.CaptureFixture[str]) -> None:
    for rel in ("installation.yaml", "releases/api.yaml", "releases/db.yaml"):
        repo.remove(f"installations/staging/{rel}")
    repo.installation("qa")
    repo.release("qa", "api", ref=REF_B)
    repo.commit("replace staging by qa")

    doc = diff_json(repo, "--base", "HEAD~1", capsys=capsys)

    insts = by_name(doc["installations"])
    assert insts["qa"]["change"] == "added"
    assert [r["change"] for r in insts["qa"]["releases"]] == ["added"]
    assert insts["staging"]["change"] == "removed"
    assert sorted(r["name"] for r in insts["staging"]["releases"]) == ["api", "db"]
    assert "prod" not in insts


def test_markdown_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = EnvRepo.local(tmp_path / "envs", REGISTRY)
    repo.project("api", namespace="api", chart="api", values={"replicas": 1})
    for inst in ("a", "b", "c"):
        repo.installation(inst)
        repo.release(inst, "api", ref=REF_A)
    repo.installation("d")
    repo.release("d", "api", ref=REF_A, values={"note": "x|<b>y</b>"})
    repo.commit("initial")
    repo.project("api", namespace="api", chart="api", values={"replicas": 2})
    repo.release("d", "api", ref=REF_B, values={"note": "z|<i>w</i>"})
    repo.commit("change")

    code, out, _ = run_diff(repo, "--base", "HEAD~1", "--output", "markdown", capsys=capsys)

    assert code == 0
    assert out.startswith("## reconciler diff\n")
    assert "**4 installations, 4 releases change (0 added, 0 removed, 4 changed)**" in out
    # a, b and c change identically: one section names all three.
    assert "### `a`, `b`, `c`\n" in out
    assert "### `d`\n" in out
    assert "<details>" in out
    assert "<summary>1 value change</summary>" in out
    assert "<summary>2 value changes</summary>" in out
    assert "| `api` | `replicas` | `1` | `2` |" in out
    # What a pull request writes is code: it cannot break the table or inject HTML.
    assert '| `api` | `note` | `"x\\|<b>y</b>"` | `"z\\|<i>w</i>"` |' in out
    assert f"version `1.0.0-g{REF_A}` → `1.0.0-g{REF_B}`" in out


def test_markdown_folds_long_tables(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = EnvRepo.local(tmp_path / "envs", REGISTRY)
    repo.installation("big")
    repo.commit("empty installation")
    for i in range(12):
        repo.project(f"svc{i}", namespace=f"svc{i}", chart=f"svc{i}")
        repo.release("big", f"svc{i}", ref=REF_A)
    repo.commit("twelve services")

    code, out, _ = run_diff(repo, "--base", "HEAD~1", "-o", "markdown", capsys=capsys)

    assert code == 0
    assert "<summary>12 releases</summary>" in out
    assert "**1 installation, 12 releases change (12 added, 0 removed, 0 changed)**" in out


def test_json_output_through_the_cli(repo: EnvRepo) -> None:
    repo.release("staging", "api", ref=REF_B, values={"image": {"tag": "v9"}})
    head = repo.commit("staging api v9")

    done = cli("diff", "--base", "HEAD~1", "--output", "json", str(repo.root), cwd=repo.top)

    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert list(doc) == ["version", "base", "head", "summary", "installations"]
    assert doc["version"] == 1
    assert doc["head"] == {"ref": "HEAD", "commit": head, "valid": True, "problems": []}
    (inst,) = doc["installations"]
    (release,) = inst["releases"]
    assert list(release) == [
        "name",
        "namespace",
        "change",
        "changed",
        "before",
        "after",
        "values",
    ]
    assert release["changed"] == ["chart.version", "ref", "values"]
    assert release["values"][0]["key"] == "image.tag"
    assert release["before"]["project"] == "api"


def test_invalid_head_reports_problems(repo: EnvRepo) -> None:
    repo.release("prod", "api", project="no-such-project", ref=REF_A)
    repo.commit("typo")

    done = cli("diff", "--base", "HEAD~1", "--head", "HEAD", ".", cwd=repo.root)

    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "head HEAD" in done.stderr
    assert "is invalid" in done.stderr
    assert "installations/prod/releases/api.yaml" in done.stderr
    assert "no-such-project" in done.stderr

    md = cli("diff", "--base", "HEAD~1", "--output", "markdown", ".", cwd=repo.root)
    assert md.returncode == 1
    assert "is invalid" in md.stdout
    assert "no-such-project" in md.stdout

    js = cli("diff", "--base", "HEAD~1", "--output", "json", ".", cwd=repo.root)
    assert js.returncode == 1
    doc = json.loads(js.stdout)
    assert doc["head"]["valid"] is False
    assert any("no-such-project" in p["message"] for p in doc["head"]["problems"])
    assert doc["installations"] == []


def test_invalid_yaml_in_the_working_tree(repo: EnvRepo) -> None:
    (repo.root / "installations/prod/releases/api.yaml").write_text("name: [unclosed\n")

    done = cli("diff", ".", cwd=repo.root)

    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "head working tree is invalid" in done.stderr
    assert "installations/prod/releases/api.yaml" in done.stderr


def test_invalid_base_is_a_warning(repo: EnvRepo, capsys: pytest.CaptureFixture[str]) -> None:
    repo.release("prod", "api", project="no-such-project", ref=REF_A)
    repo.commit("broken")
    repo.release("prod", "api", ref=REF_A)
    repo.commit("fixed")

    code, out, err = run_diff(repo, "--base", "HEAD~1", "-o", "json", capsys=capsys)

    assert code == 0
    assert "warning: base HEAD~1" in err
    doc = json.loads(out)
    assert doc["base"]["valid"] is False
    assert {i["change"] for i in doc["installations"]} == {"added"}


def test_exit_code_flag(repo: EnvRepo) -> None:
    assert cli("diff", "--base", "HEAD", "--exit-code", ".", cwd=repo.root).returncode == 0
    repo.release("prod", "api", ref=REF_B)
    repo.commit("bump")
    changed = cli("diff", "--base", "HEAD~1", "--exit-code", ".", cwd=repo.root)
    assert changed.returncode == 2
    assert "1 installation, 1 release change" in changed.stdout
    assert cli("diff", "--base", "HEAD~1", ".", cwd=repo.root).returncode == 0


def test_no_changes(repo: EnvRepo, capsys: pytest.CaptureFixture[str]) -> None:
    repo.commit("empty commit")
    code, out, _ = run_diff(repo, "--base", "HEAD~1", capsys=capsys)
    assert code == 0
    assert out.endswith("no changes\n")
    code, out, _ = run_diff(repo, "--base", "HEAD~1", "-o", "markdown", capsys=capsys)
    assert "**No changes**" in out


# --- default revisions ------------------------------------------------------------


def test_default_head_is_the_working_tree_when_dirty(
    repo: EnvRepo, capsys: pytest.CaptureFixture[str]
) -> None:
    repo.release("prod", "api", ref=REF_B)  # not committed

    doc = diff_json(repo, capsys=capsys)

    assert doc["head"] == {"ref": "working tree", "commit": None, "valid": True, "problems": []}
    assert doc["base"]["ref"] == "HEAD"
    assert [i["name"] for i in doc["installations"]] == ["prod"]


def test_default_base_on_a_clean_main_is_the_last_commit(
    repo: EnvRepo, capsys: pytest.CaptureFixture[str]
) -> None:
    first = repo.git("rev-parse", "HEAD")
    repo.release("prod", "api", ref=REF_B)
    head = repo.commit("bump")

    doc = diff_json(repo, capsys=capsys)

    assert (doc["base"]["ref"], doc["base"]["commit"]) == ("HEAD~1", first)
    assert (doc["head"]["ref"], doc["head"]["commit"]) == ("HEAD", head)
    assert doc["summary"]["releases"] == 1


def test_default_base_on_a_branch_is_the_merge_base(
    repo: EnvRepo, capsys: pytest.CaptureFixture[str]
) -> None:
    fork = repo.git("rev-parse", "HEAD")
    repo.git("checkout", "-q", "-b", "promote-api")
    repo.release("prod", "api", ref=REF_B)
    repo.commit("promote api to prod")
    repo.release("staging", "api", ref=REF_B)
    repo.commit("promote api to staging")
    repo.git("checkout", "-q", "main")
    repo.project("db", namespace="db", chart="db", values={"persistence": {"size": "5Gi"}})
    repo.commit("main moves on")
    repo.git("checkout", "-q", "promote-api")

    doc = diff_json(repo, capsys=capsys)

    assert doc["base"] == {
        "ref": "merge-base with main",
        "commit": fork,
        "valid": True,
        "problems": [],
    }
    # Both branch commits, and nothing of what main did meanwhile.
    assert sorted(i["name"] for i in doc["installations"]) == ["prod", "staging"]
    assert all(r["name"] == "api" for i in doc["installations"] for r in i["releases"])


def test_first_commit_is_all_added(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = EnvRepo.local(tmp_path / "envs", REGISTRY)
    repo.project("api", namespace="api", chart="api")
    repo.installation("prod")
    repo.release("prod", "api", ref=REF_A)
    repo.commit("initial")

    doc = diff_json(repo, capsys=capsys)

    assert doc["base"] == {
        "ref": "nothing (HEAD is the first commit)",
        "commit": None,
        "valid": True,
        "problems": [],
    }
    assert doc["installations"][0]["change"] == "added"


def test_environments_in_a_subfolder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = EnvRepo.local(tmp_path / "monorepo", REGISTRY, subdir="deploy/environments")
    (repo.top / "src.txt").write_text("application code\n")
    repo.project("api", namespace="api", chart="api")
    repo.installation("prod")
    repo.release("prod", "api", ref=REF_A)
    repo.commit("initial")
    repo.release("prod", "api", ref=REF_B)
    (repo.top / "src.txt").write_text("changed\n")
    repo.commit("bump")

    doc = diff_json(repo, "--base", "HEAD~1", capsys=capsys)
    assert doc["summary"]["releases"] == 1

    # Changes outside the environments folder leave it clean: head is HEAD.
    (repo.top / "src.txt").write_text("uncommitted\n")
    doc = diff_json(repo, capsys=capsys)
    assert doc["head"]["ref"] == "HEAD"


def test_symlink_out_of_the_repo_is_refused_at_a_commit(repo: EnvRepo, tmp_path: Path) -> None:
    outside = tmp_path / "outside.yaml"
    outside.write_text("apiVersion: reconciler/v1\nkind: Project\nname: evil\n")
    (repo.root / "projects" / "evil.yaml").symlink_to(outside)
    repo.commit("a symlink out of the repo")

    done = cli("diff", "--base", "HEAD~1", "--head", "HEAD", ".", cwd=repo.root)

    assert done.returncode == 1
    assert "projects/evil.yaml: a symlink pointing outside the repo" in done.stderr


def test_symlink_inside_the_repo_reads_alike_at_a_commit_and_on_disk(
    repo: EnvRepo, capsys: pytest.CaptureFixture[str]
) -> None:
    repo.release("staging", "api", ref=REF_B)
    link = repo.root / "installations/prod/releases/api.yaml"
    link.unlink()
    link.symlink_to("../../staging/releases/api.yaml")

    on_disk = diff_json(repo, capsys=capsys)
    repo.commit("prod follows staging through a symlink")
    committed = diff_json(repo, capsys=capsys)

    assert on_disk["head"]["ref"] == "working tree"
    assert committed["head"]["ref"] == "HEAD"
    assert on_disk["installations"] == committed["installations"]
    assert sorted(i["name"] for i in committed["installations"]) == ["prod", "staging"]


def test_crafted_tree_cannot_write_outside(repo: EnvRepo, tmp_path: Path) -> None:
    # `git mktree` accepts a tree entry named "..", which no checkout would.
    blob = repo.git("hash-object", "-w", "--stdin", stdin="apiVersion: reconciler/v1\n")
    inner = repo.git("mktree", stdin=f"100644 blob {blob}\tescaped.yaml\n")
    evil = repo.git("mktree", stdin=f"040000 tree {inner}\t..\n")
    top = repo.git("mktree", stdin=f"040000 tree {evil}\tprojects\n")
    commit = repo.git("commit-tree", "-p", "HEAD", "-m", "crafted", top)

    done = cli("diff", "--base", "HEAD", "--head", commit, ".", cwd=repo.root)

    assert done.returncode == 1
    assert (
        "refusing to copy unsafe path from the repository: 'projects/../escaped.yaml'"
        in done.stderr
    )
    assert "Traceback" not in done.stderr


# --- usage errors -----------------------------------------------------------------


def test_unknown_base_is_a_usage_error(repo: EnvRepo) -> None:
    done = cli("diff", "--base", "no-such-branch", ".", cwd=repo.root)
    assert done.returncode == 2
    assert "--base 'no-such-branch': no such commit" in done.stderr
    assert "Traceback" not in done.stderr


def test_option_like_ref_is_refused(repo: EnvRepo) -> None:
    done = cli("diff", "--head=--output=/tmp/x", ".", cwd=repo.root)
    assert done.returncode == 2
    assert "cannot start with '-'" in done.stderr


def test_not_a_git_checkout(tmp_path: Path) -> None:
    done = cli("diff", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 2
    assert "not inside a git work tree" in done.stderr


def test_help_documents_defaults_and_exit_codes() -> None:
    done = cli("diff", "--help", cwd=REPO_ROOT)
    assert done.returncode == 0
    for text in ("--base", "--head", "merge-base", "HEAD~1", "--exit-code", "markdown", "json"):
        assert text in done.stdout


def test_module_entry_point(repo: EnvRepo) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", "diff", "--base", "HEAD", "."],
        cwd=repo.root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("no changes\n")
