"""Every kind of bad input, one case each: the problem names the file, the line and the fix."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconciler.errors import Problem, UsageError, ValidationError
from reconciler.model import Policy
from reconciler.repo import analyze, check, load_environments
from reconciler.repo.yamldoc import MAX_FILE_BYTES
from tests.support.envfiles import INSTALLATION, PROJECTS, RELEASES, SHA, EnvTree

API = "installations/prod-eu/releases/api.yaml"
PG = "installations/prod-eu/releases/postgres.yaml"
INST = "installations/prod-eu/installation.yaml"
PROJ = "projects/api.yaml"

BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


@dataclass(frozen=True)
class Case:
    id: str
    change: Callable[[EnvTree], object]
    path: str
    line: int | None
    text: str


def replace(relative: str, old: str, new: str) -> Callable[[EnvTree], object]:
    def change(tree: EnvTree) -> None:
        path = tree.root / relative
        content = path.read_text()
        assert old in content, f"{old!r} not in {relative}"
        path.write_text(content.replace(old, new, 1))

    return change


def write(relative: str, content: str | bytes) -> Callable[[EnvTree], object]:
    return lambda tree: tree.write(relative, content)


def release(name: str, body: str) -> str:
    return f"apiVersion: reconciler/v1\nkind: Release\nname: {name}\n{body}"


CASES = [
    Case(
        "pending-timeout-not-above-helm-timeout",
        replace(
            INST,
            "  prune: true",
            "  prune: true\n  timeoutSeconds: 60\n  pendingTimeoutSeconds: 60",
        ),
        INST,
        None,
        "policy.pendingTimeoutSeconds: 60 is not greater than policy.timeoutSeconds 60",
    ),
    Case(
        "unknown-project",
        replace(API, "project: api", "project: apii"),
        API,
        4,
        'project: unknown project "apii" (did you mean "api"?)',
    ),
    Case(
        "duplicate-release-in-namespace",
        write(
            "installations/prod-eu/releases/api2.yaml",
            release("api", f"project: api\nref: {SHA}\n"),
        ),
        "installations/prod-eu/releases/api2.yaml",
        3,
        'release "api" is already declared in namespace "shop"',
    ),
    Case(
        "ref-not-a-sha",
        replace(API, f"ref: {SHA}", 'ref: "abc"'),
        API,
        5,
        'ref: "abc" is not a 40-character commit SHA; write the full SHA (git rev-parse)',
    ),
    Case(
        "ref-uppercase",
        replace(API, f"ref: {SHA}", f"ref: {SHA.upper()}"),
        API,
        5,
        "is not a 40-character commit SHA",
    ),
    Case(
        "ref-short-sha",
        replace(API, f"ref: {SHA}", "ref: 3f78685"),
        API,
        5,
        'ref: "3f78685" is not a 40-character commit SHA',
    ),
    Case(
        "ref-read-as-number",
        replace(API, f"ref: {SHA}", "ref: 1234567"),
        API,
        5,
        "ref: expected a string, got the number 1234567",
    ),
    Case(
        "pinned-version-not-semver",
        replace(PG, "version: 2.3.1", "version: v2.3"),
        PG,
        5,
        'version: "v2.3" is not a SemVer 2 chart version',
    ),
    Case(
        "pinned-version-read-as-number",
        replace(PG, "version: 2.3.1", "version: 2.3"),
        PG,
        5,
        "version: expected a string, got the number 2.3 (quote it",
    ),
    Case(
        "version-template-numeric-prerelease",
        replace(PROJ, "1.0.0-g{ref}", "1.0.0-{ref:7}"),
        PROJ,
        8,
        'chart.versionTemplate: "1.0.0-{ref:7}" gives "1.0.0-0123456"',
    ),
    Case(
        "version-template-without-placeholder",
        replace(PROJ, "1.0.0-g{ref}", "1.0.0"),
        PROJ,
        8,
        "has no {ref} placeholder",
    ),
    Case(
        "version-template-short-ref",
        replace(PROJ, "1.0.0-g{ref}", "1.0.0-g{ref:4}"),
        PROJ,
        8,
        "{ref:4} must take 7 to 40 characters",
    ),
    Case(
        "version-template-ref-in-patch",
        replace(PROJ, "1.0.0-g{ref}", "1.0.{ref:7}"),
        PROJ,
        8,
        "is not a valid SemVer 2 chart version",
    ),
    Case(
        "release-name-too-long",
        write(
            f"installations/prod-eu/releases/{'a' * 54}.yaml",
            release("a" * 54, "project: api\nversion: 1.0.0\n"),
        ),
        f"installations/prod-eu/releases/{'a' * 54}.yaml",
        3,
        "is not a name Helm accepts for a release: at most 53 characters",
    ),
    Case(
        "release-name-not-dns-1123",
        write(
            "installations/prod-eu/releases/Api_Server.yaml",
            release("Api_Server", "project: api\nversion: 1.0.0\n"),
        ),
        "installations/prod-eu/releases/Api_Server.yaml",
        3,
        'name: "Api_Server" is not a name Helm accepts',
    ),
    Case(
        "unknown-depends-on",
        replace(PROJ, "  - postgres", "  - postgress"),
        PROJ,
        10,
        'dependsOn: unknown project "postgress" (did you mean "postgres"?)',
    ),
    Case(
        "cyclic-depends-on",
        replace("projects/postgres.yaml", "values:", "dependsOn: [api]\nvalues:"),
        PROJ,
        10,
        "dependsOn: cycle api -> postgres -> api",
    ),
    Case(
        "self-dependency",
        replace(PROJ, "  - postgres", "  - api"),
        PROJ,
        10,
        "dependsOn: cycle api -> api",
    ),
    Case(
        "project-name-vs-file",
        replace(PROJ, "name: api", "name: api-v2"),
        PROJ,
        3,
        'name: "api-v2" does not match the file name "api"',
    ),
    Case(
        "installation-name-vs-folder",
        replace(INST, "name: prod-eu", "name: prod-us"),
        INST,
        3,
        'name: "prod-us" does not match its folder "prod-eu"',
    ),
    Case(
        "release-name-vs-file",
        replace(API, "name: api", "name: web"),
        API,
        3,
        'name: "web" does not match the file name "api"',
    ),
    Case(
        "misspelled-releases-folder",
        write("installations/prod-eu/relases/web.yaml", RELEASES["api"]),
        "installations/prod-eu/relases",
        None,
        'unexpected folder: an installation folder holds installation.yaml and releases/; did you mean "releases"?',
    ),
    Case(
        "yml-suffix",
        write("projects/redis.yml", PROJECTS["postgres"]),
        "projects/redis.yml",
        None,
        "rename it to .yaml",
    ),
    Case(
        "stray-file-in-installations",
        write("installations/notes.txt", "hello\n"),
        "installations/notes.txt",
        None,
        "unexpected file: each installation is a folder installations/<name>/",
    ),
    Case(
        "missing-installation-file",
        write("installations/staging/releases/api.yaml", RELEASES["api"]),
        "installations/staging/installation.yaml",
        None,
        "missing: every installation folder needs an installation.yaml",
    ),
    Case(
        "duplicate-key",
        replace(API, "values:\n  replicas: 2", "values:\n  replicas: 2\n  replicas: 3"),
        API,
        8,
        'duplicate key "replicas" (first at line 7)',
    ),
    Case("empty-file", write(API, ""), API, 1, "the file is empty"),
    Case("only-comments", write(API, "# nothing yet\n"), API, 1, "the file is empty"),
    Case(
        "several-documents",
        write(API, RELEASES["api"] + "---\n" + RELEASES["api"]),
        API,
        8,
        "the file holds several YAML documents ('---'); keep one document per file",
    ),
    Case(
        "not-utf8",
        write(API, RELEASES["api"].encode() + b"# caf\xe9\n"),
        API,
        8,
        "the file is not UTF-8 (byte 0xe9 cannot be decoded); save it as UTF-8",
    ),
    Case(
        "utf16",
        write(API, RELEASES["api"].encode("utf-16")),
        API,
        1,
        "the file is not UTF-8",
    ),
    Case(
        "too-large",
        write(API, RELEASES["api"] + "#" * MAX_FILE_BYTES),
        API,
        None,
        "over the limit of 1,048,576",
    ),
    Case("alias-bomb", write(API, BILLION_LAUGHS), API, None, "(an alias bomb?)"),
    Case(
        "recursive-alias",
        write(API, "a: &a\n  b: *a\n"),
        API,
        None,
        "a recursive alias",
    ),
    Case(
        "top-is-a-list",
        write(API, "- apiVersion: reconciler/v1\n"),
        API,
        1,
        "the top of the file must be a mapping (key: value), not a list",
    ),
    Case(
        "top-is-a-scalar",
        write(API, "just text\n"),
        API,
        1,
        "not a single value",
    ),
    Case(
        "syntax-error",
        replace(API, "values:\n  replicas: 2", "values:\n  replicas: 2\n bad: indent"),
        API,
        8,
        "invalid YAML",
    ),
    Case(
        "python-tag",
        replace(API, "replicas: 2", "replicas: !!python/object:os.system [ls]"),
        API,
        7,
        "the YAML tag tag:yaml.org,2002:python/object:os.system is not supported",
    ),
    Case(
        "boolean-key",
        replace(API, "replicas: 2", "yes: 2"),
        API,
        7,
        'the key yes is read by helm as "true"; quote it ("yes")',
    ),
    Case(
        "number-key",
        replace(API, "replicas: 2", "0x1F: 2"),
        API,
        7,
        'the key 0x1F is read by helm as "31"',
    ),
    Case(
        "infinity-value",
        replace(API, "replicas: 2", "replicas: .inf"),
        API,
        7,
        ".inf is not a number helm accepts",
    ),
    Case(
        "slash-escape",
        replace(API, "replicas: 2", 'path: "a\\/b"'),
        API,
        7,
        "helm's YAML reader has no escape \\/ in double quotes",
    ),
    Case(
        "null-key",
        replace(API, "replicas: 2", "~: 2"),
        API,
        7,
        "the key ~: null is not a key helm accepts",
    ),
    Case(
        "unknown-field",
        replace(API, "values:", "vaules:"),
        API,
        6,
        'unknown field "vaules"; did you mean "values"?',
    ),
    Case(
        "unknown-nested-field",
        replace(INST, "  prune: true", "  prun: true"),
        INST,
        8,
        'unknown field "prun" in policy; did you mean "prune"?',
    ),
    Case(
        "wrong-kind-for-folder",
        replace(PROJ, "kind: Project", "kind: Release"),
        PROJ,
        2,
        'kind: "Release" must be "Project" in files under projects/',
    ),
    Case(
        "wrong-api-version",
        replace(API, "apiVersion: reconciler/v1", "apiVersion: reconciler/v2"),
        API,
        1,
        'apiVersion: "reconciler/v2" must be "reconciler/v1"',
    ),
    Case(
        "missing-required-field",
        replace(API, "project: api\n", ""),
        API,
        1,
        'missing required field "project"',
    ),
    Case(
        "both-ref-and-version",
        replace(API, f"ref: {SHA}", f"ref: {SHA}\nversion: 1.0.0"),
        API,
        1,
        "exactly one of ref (a commit SHA) or version (a pinned chart version), this one has both",
    ),
    Case(
        "neither-ref-nor-version",
        replace(API, f"ref: {SHA}\n", ""),
        API,
        1,
        "this one has neither",
    ),
    Case(
        "enum",
        replace(INST, "remediation: rollback", "remediation: rolback"),
        INST,
        9,
        'policy.remediation: "rolback" must be one of rollback, uninstall, none',
    ),
    Case(
        "integer-as-string",
        replace(INST, "  prune: true", '  prune: true\n  retries: "3"'),
        INST,
        9,
        'policy.retries: expected a whole number, got the string "3"',
    ),
    Case(
        "minimum",
        replace(INST, "  prune: true", "  prune: true\n  maxPruneShare: 1.5"),
        INST,
        9,
        "policy.maxPruneShare: 1.5 must be at most 1",
    ),
    Case(
        "label-value",
        replace(INST, "stage: production", "stage: prod uction"),
        INST,
        6,
        'labels.stage: "prod uction" is not a Kubernetes label value',
    ),
    Case(
        "repository-trailing-slash",
        replace(PROJ, "oci://registry.example.com/charts", "oci://registry.example.com/charts/"),
        PROJ,
        6,
        "chart.repository",
    ),
    Case(
        "path-traversal-in-project-name",
        replace(API, "project: api", "project: ../../etc/passwd"),
        API,
        4,
        'project: "../../etc/passwd" is not a DNS-1123 label',
    ),
]


@pytest.fixture
def tree(tmp_path: Path) -> EnvTree:
    return EnvTree.create(tmp_path / "env")


def test_the_base_repo_is_valid(tree: EnvTree) -> None:
    assert check(tree.root) == []


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_reported_with_file_line_and_fix(tree: EnvTree, case: Case) -> None:
    case.change(tree)
    tree.commit(case.id)
    problems = check(tree.root)
    assert _matching(problems, case), "\n".join(p.render() for p in problems)


def _matching(problems: list[Problem], case: Case) -> list[Problem]:
    return [
        p
        for p in problems
        if p.path == case.path
        and (case.line is None or p.line == case.line)
        and case.text in p.message
    ]


def test_all_problems_are_reported_in_one_run(tree: EnvTree) -> None:
    chosen = [
        case
        for case in CASES
        if case.id in ("unknown-project", "pinned-version-not-semver", "unknown-depends-on", "enum")
    ]
    for case in chosen:
        case.change(tree)
    problems = check(tree.root)
    for case in chosen:
        assert _matching(problems, case), case.id
    assert len(problems) == 4


def test_load_environments_raises_with_every_problem(tree: EnvTree) -> None:
    replace(API, "project: api", "project: nope")(tree)
    replace(PG, "version: 2.3.1", "version: v2")(tree)
    with pytest.raises(ValidationError) as raised:
        load_environments(tree.root)
    assert {p.path for p in raised.value.problems} == {API, PG}


def test_load_environments_builds_the_model(tree: EnvTree) -> None:
    replace(INST, "  prune: true", "  prune: true\n  retries: 4\n  maxPruneShare: 0.5")(tree)
    env = load_environments(tree.root, revision="abc")
    assert env.revision == "abc"
    assert sorted(env.projects) == ["api", "postgres"]
    api = env.projects["api"]
    assert api.chart.version_template == "1.0.0-g{ref}"
    assert api.depends_on == ("postgres",)
    assert api.path == PROJ
    assert env.projects["postgres"].chart.version_template == "1.0.0-g{ref}"  # the default
    installation = env.installations["prod-eu"]
    assert installation.labels == {"provider": "aws", "stage": "production"}
    assert installation.policy == Policy(
        prune=True, remediation="rollback", retries=4, max_prune_share=0.5
    )
    assert [r.name for r in installation.releases] == ["api", "postgres"]
    assert installation.releases[0].ref == SHA
    assert installation.releases[0].values == {"replicas": 2}
    assert installation.releases[1].version == "2.3.1"


def test_a_project_with_its_own_problems_is_not_also_unknown(tree: EnvTree) -> None:
    replace("projects/postgres.yaml", "namespace: data", "namespace: Data")(tree)
    problems = check(tree.root)
    assert [p.path for p in problems] == ["projects/postgres.yaml"], problems


def test_alias_bomb_fails_fast(tree: EnvTree) -> None:
    tree.write(API, BILLION_LAUGHS)
    started = time.perf_counter()
    problems = check(tree.root)
    assert time.perf_counter() - started < 2
    assert any("alias bomb" in p.message for p in problems)


def test_anchors_aliases_and_merge_keys_are_allowed(tree: EnvTree) -> None:
    tree.write(
        API,
        RELEASES["api"].replace(
            "values:\n  replicas: 2",
            "values:\n  base: &base {cpu: 1, memory: 1Gi}\n  limits:\n    <<: *base\n    cpu: 2",
        ),
    )
    env = load_environments(tree.root)
    values = env.installations["prod-eu"].releases[0].values
    assert values["limits"] == {"cpu": 2, "memory": "1Gi"}


def test_symlink_inside_the_repo_is_followed(tree: EnvTree) -> None:
    target = tree.root / "installations/prod-eu/releases/api.yaml"
    shared = tree.root / "shared-api.yaml"
    shared.write_text(target.read_text())
    target.unlink()
    target.symlink_to(os.path.relpath(shared, target.parent))
    assert check(tree.root) == []


def test_symlink_pointing_outside_is_rejected(tree: EnvTree, tmp_path: Path) -> None:
    outside = tmp_path / "secret.yaml"
    outside.write_text(RELEASES["api"])
    target = tree.root / API
    target.unlink()
    target.symlink_to(outside)
    problems = check(tree.root)
    assert [p.render() for p in problems] == [
        f"{API}: a symlink pointing outside the repo; copy the file in"
    ]


def test_symlink_into_git_is_rejected(tree: EnvTree) -> None:
    """Files under .git/ belong to no commit: what a symlink there reads differs by clone."""

    hidden = tree.root / ".git" / "info" / "api.yaml"
    hidden.parent.mkdir(parents=True, exist_ok=True)
    hidden.write_text(RELEASES["api"])
    target = tree.root / API
    target.unlink()
    target.symlink_to(os.path.relpath(hidden, target.parent))
    problems = check(tree.root)
    assert [p.render() for p in problems] == [
        f"{API}: a symlink into .git/, which no commit holds; copy the file in"
    ]


def test_symlinked_folder_is_rejected(tree: EnvTree, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tree.root / "installations/other").symlink_to(elsewhere)
    problems = check(tree.root)
    assert any(p.path == "installations/other" and "symlink" in p.message for p in problems)


def test_fifo_is_reported_without_blocking(tree: EnvTree) -> None:
    os.mkfifo(tree.root / "installations/prod-eu/releases/pipe.yaml")
    problems = check(tree.root)
    assert any("not a regular file" in p.message for p in problems)


def test_control_characters_in_file_names_are_escaped(tree: EnvTree) -> None:
    tree.write("projects/bad\x1b[31m.yaml", PROJECTS["api"])
    rendered = [p.render() for p in check(tree.root)]
    assert all("\x1b" not in line for line in rendered)
    assert any("bad\\x1b[31m.yaml" in line for line in rendered)


def test_a_folder_that_is_not_an_environments_repo(tmp_path: Path) -> None:
    problems = check(tmp_path)
    assert problems[0].path == "."
    assert "no projects/ or installations/ folder" in problems[0].message


def test_a_missing_folder_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        analyze(tmp_path / "nope")


def test_counts(tree: EnvTree) -> None:
    analysis = analyze(tree.root)
    assert (analysis.projects, analysis.installations, analysis.releases) == (2, 1, 2)
    assert INSTALLATION.startswith("apiVersion")


def test_a_long_dependency_chain_and_its_cycle(tree: EnvTree) -> None:
    for index in range(1500):
        tree.write(
            f"projects/p{index}.yaml",
            PROJECTS["postgres"].replace("name: postgres", f"name: p{index}")
            + f"dependsOn: [p{(index + 1) % 1500}]\n",
        )
    problems = check(tree.root)
    cycles = [p for p in problems if "dependsOn: cycle" in p.message]
    assert len(cycles) == 1
    assert cycles[0].path == "projects/p0.yaml"
    assert cycles[0].message.startswith(
        "dependsOn: cycle p0 -> p1 -> p2 -> p3 -> p4 -> ... (1491 more) -> p1496 -> p1497 -> p1498"
        " -> p1499 -> p0; "
    )


def test_problems_per_file_are_capped(tree: EnvTree) -> None:
    labels = "".join(f"  key{index}: not valid {index}\n" for index in range(100))
    tree.write(INST, INSTALLATION.replace("labels:\n", "labels:\n" + labels))
    problems = [p for p in check(tree.root) if p.path == INST]
    assert len(problems) == 21
    assert problems[-1].message == "... and 80 more problems in this file"


def test_a_huge_list_is_checked_quickly(tree: EnvTree) -> None:
    names = "".join(f"  - dependency-{index}\n" for index in range(40_000))
    tree.write(PROJ, PROJECTS["api"].replace("dependsOn:\n  - postgres\n", "dependsOn:\n" + names))
    started = time.perf_counter()
    problems = [p for p in check(tree.root) if p.path == PROJ]
    assert time.perf_counter() - started < 10
    assert len(problems) == 21
    assert problems[0].message.startswith('dependsOn: unknown project "dependency-0"')


@pytest.mark.parametrize(
    "values",
    [
        "  <<: !!set {a}\n",
        "  <<: [1, 2]\n",
        "  <<: *missing\n",
        "  ? [complex, key]\n  : 1\n",
        "  !!binary aGVsbG8=: 1\n",
        "  a: !!omap [{b: 1}]\n",
    ],
)
def test_odd_yaml_is_a_problem_not_a_crash(tree: EnvTree, values: str) -> None:
    tree.write(API, RELEASES["api"].replace("values:\n  replicas: 2\n", "values:\n" + values))
    problems = check(tree.root)
    assert {p.path for p in problems} == {API}, problems
    assert problems[0].line in (6, 7, 8)
    assert not any("read as null" in p.message for p in problems)


def test_pending_timeout_defaults_above_the_helm_timeout(tree: EnvTree) -> None:
    replace(INST, "  prune: true", "  prune: true\n  timeoutSeconds: 900")(tree)
    policy = load_environments(tree.root).installations["prod-eu"].policy
    assert policy.pending_timeout_seconds == 1800


def test_values_sources_may_be_optional_and_releases_adopted(tree: EnvTree) -> None:
    replace(
        INST,
        "policy:",
        "valuesFrom:\n  configMap: {name: site, optional: true}\n  secret: s\npolicy:",
    )(tree)
    replace(API, "project: api", "project: api\nadopt: true")(tree)
    env = load_environments(tree.root)
    source = env.installations["prod-eu"].values_from
    assert (source.config_map, source.config_map_optional) == ("site", True)
    assert (source.secret, source.secret_optional) == ("s", False)
    assert env.installations["prod-eu"].releases[0].adopt
