"""The schemas in schema/: valid draft 2020-12, strict, and in step with the Python rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from reconciler.repo.schemas import KINDS, schema_of
from reconciler.repo.versions import SEMVER, WORST_CASE_REFS, is_semver, template_problems
from tests.support.envfiles import REPO_ROOT

SCHEMA_DIR = REPO_ROOT / "schema"


def objects(schema: Any, path: str = "#") -> list[tuple[str, dict[str, Any]]]:
    found = []
    if isinstance(schema, dict):
        if schema.get("type") == "object":
            found.append((path, schema))
        for key, value in schema.items():
            found += objects(value, f"{path}/{key}")
    return found


@pytest.mark.parametrize("kind", KINDS)
def test_schema_is_valid_draft_2020_12(kind: Any) -> None:
    schema = schema_of(kind)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("kind", KINDS)
def test_every_object_is_strict_except_free_form_values(kind: Any) -> None:
    for path, schema in objects(schema_of(kind)):
        if path.endswith("/values") or path.endswith("/labels"):
            continue  # values are free-form; labels constrain their entries instead
        assert schema.get("additionalProperties") is False, path


@pytest.mark.parametrize("kind", KINDS)
def test_every_property_is_described(kind: Any) -> None:
    def walk(schema: Any, path: str) -> None:
        for name, sub in schema.get("properties", {}).items():
            assert sub.get("description"), f"{path}.{name}"
            walk(sub, f"{path}.{name}")

    walk(schema_of(kind), kind)


def test_the_package_reads_the_files_in_schema() -> None:
    for kind in KINDS:
        on_disk = json.loads((SCHEMA_DIR / f"{kind.lower()}.schema.json").read_text())
        assert schema_of(kind) == on_disk


def test_schema_semver_pattern_is_the_python_one() -> None:
    pattern = schema_of("Release")["properties"]["version"]["pattern"]
    assert pattern == SEMVER.pattern


@pytest.mark.parametrize(
    ("version", "valid"),
    [
        ("1.0.0", True),
        ("1.0.0-g0123456", True),
        ("1.0.0-rc.1+build.5", True),
        ("1.0.0-0123456", False),
        ("01.0.0", False),
        ("v1.0.0", False),
        ("1.0", False),
        ("1.0.0-", False),
    ],
)
def test_semver(version: str, valid: bool) -> None:
    assert is_semver(version) is valid


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ("1.0.0-g{ref}", None),
        ("1.0.0-g{ref:12}", None),
        ("0.1.0+{ref}", None),
        ("1.0.0-{ref}", "not a valid SemVer 2"),
        ("1.0.0-{ref:7}", 'gives "1.0.0-0123456"'),
        ("1.{ref:7}.0", "not a valid SemVer 2"),
        ("1.0.0", "no {ref} placeholder"),
        ("1.0.0-g{ref:3}", "7 to 40 characters"),
        ("1.0.0-g{ref:41}", "7 to 40 characters"),
        ("1.0.0-g{sha}", "no {ref} placeholder"),
        ("1.0.0-g{ref}{x}", "a brace that is not a placeholder"),
    ],
)
def test_version_templates(template: str, fragment: str | None) -> None:
    problems = template_problems(template)
    if fragment is None:
        assert problems == []
    else:
        assert any(fragment in p for p in problems), problems


def test_worst_case_refs_are_shas() -> None:
    assert all(len(ref) == 40 and int(ref, 16) >= 0 for ref in WORST_CASE_REFS)


def test_schema_files_are_standalone() -> None:
    for path in SCHEMA_DIR.glob("*.json"):
        assert '"$ref"' not in Path(path).read_text(), path
