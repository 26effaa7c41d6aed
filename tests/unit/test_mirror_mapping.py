"""The mirror's mapping file: what it accepts, and clear errors for what it does not."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from reconciler.mirror.mapping import MappingError, Target, load_mapping, parse_mapping
from reconciler.mirror.webhook import signature, verify_signature

GOOD = """\
apiVersion: reconciler/v1
kind: DeploymentMapping
repositories:
  Acme/API:
    project: api
    environments:
      Production: [prod-eu, prod-us]
      staging: staging-1
      testing: {selector: {stage: testing}}
  acme/web:
    project: web
    unlistedEnvironments: reject
    tasks: [deploy, deploy:canary]
    environments:
      production: {installations: [prod-eu]}
"""


def test_a_good_mapping(tmp_path: Path) -> None:
    path = tmp_path / "mapping.yaml"
    path.write_text(GOOD)

    mapping = load_mapping(path)

    api = mapping.for_repository("acme/api")
    assert api is not None
    assert api.project == "api"
    assert api.target("production") == Target(installations=("prod-eu", "prod-us"))
    assert api.target("STAGING") == Target(installations=("staging-1",))
    assert api.target("testing") == Target(selector={"stage": "testing"})
    # Unlisted environments are rejected unless the mapping opts in to same-name.
    assert api.target("qa-3") is None
    web = mapping.for_repository("ACME/web")
    assert web is not None
    assert web.target("qa-3") is None
    assert web.tasks == ("deploy", "deploy:canary")
    assert mapping.for_repository("acme/other") is None


def test_every_problem_is_reported_with_where_it_is() -> None:
    document = {
        "apiVersion": "v2",
        "kind": "DeploymentMapping",
        "extra": 1,
        "repositories": {
            "not-a-repo": {"project": "api"},
            "acme/api": {
                "project": "API",
                "unlistedEnvironments": "maybe",
                "environments": {"prod": {"selector": {}}, "qa": [1]},
                "colour": "blue",
            },
        },
    }

    with pytest.raises(MappingError) as caught:
        parse_mapping(document, "m.yaml")

    message = str(caught.value)
    for expected in (
        "apiVersion: must be reconciler/v1",
        "extra: unknown field",
        "repositories.not-a-repo: expected owner/repo",
        "repositories.acme/api.project: required",
        "repositories.acme/api.unlistedEnvironments: must be reject, same-name or ignore",
        "repositories.acme/api.environments.prod.selector: expected labels",
        "repositories.acme/api.environments.qa: expected installation names",
        "repositories.acme/api.colour: unknown field",
    ):
        assert expected in message


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match=r"mapping file .*: No such file"):
        load_mapping(tmp_path / "absent.yaml")
    (tmp_path / "bad.yaml").write_text("repositories: [\n")
    with pytest.raises(MappingError, match="not valid YAML"):
        load_mapping(tmp_path / "bad.yaml")


def test_signature_matches_githubs_scheme() -> None:
    # The example from GitHub's documentation on validating webhook deliveries.
    secret, body = b"It's a Secret to Everybody", b"Hello, World!"
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

    assert signature(secret, body) == expected
    assert verify_signature(secret, body, expected)
    assert not verify_signature(secret, body, None)
    assert not verify_signature(secret, body, expected.replace("7", "8"))
    assert not verify_signature(b"other", body, expected)


def test_same_name_is_an_explicit_opt_in() -> None:
    def mapping(entry: str) -> str:
        return f"apiVersion: reconciler/v1\nkind: DeploymentMapping\nrepositories:\n  acme/api:\n{entry}"

    with pytest.raises(MappingError) as error:
        parse_mapping(yaml.safe_load(mapping("    project: api\n")))
    assert "repositories.acme/api: lists no environments" in str(error.value)
    assert "unlistedEnvironments: same-name" in str(error.value)

    opted = parse_mapping(
        yaml.safe_load(mapping("    project: api\n    unlistedEnvironments: same-name\n"))
    ).for_repository("acme/api")
    assert opted is not None
    assert opted.target("qa-3") == Target(installations=("qa-3",))


def test_ignored_environments_match_names_and_globs() -> None:
    document = yaml.safe_load(
        "apiVersion: reconciler/v1\nkind: DeploymentMapping\nrepositories:\n"
        "  acme/api:\n    project: api\n    ignoreEnvironments: [github-pages, 'PR-*']\n"
        "    environments: {production: prod-eu}\n"
    )
    api = parse_mapping(document).for_repository("acme/api")
    assert api is not None
    assert api.ignores("github-pages")
    assert api.ignores("pr-1234")
    assert not api.ignores("production")
    assert not api.ignores("staging"), "unlisted, not ignored: rejected"
