"""The in-place edit of Release files: only the ref changes, comments and layout stay."""

from __future__ import annotations

import pytest
import yaml

from reconciler.releasefile import ReleaseFileError, new_release, set_ref

OLD = "1" * 39 + "a"
NEW = "abcdef0123456789abcdef0123456789abcdef01"

RELEASE = f"""\
# api in production: owned by team-a
apiVersion: reconciler/v1
kind: Release
name: api
project: api
ref: {OLD}  # built by CI
values:
  replicas: 3   # peak load
  ref: not-this-one
"""


def test_replaces_only_the_top_level_ref_value() -> None:
    edit = set_ref(RELEASE, NEW)

    assert edit.changed
    assert (edit.previous_key, edit.previous_value) == ("ref", OLD)
    assert edit.text == RELEASE.replace(f"ref: {OLD}  #", f"ref: {NEW}  #")
    assert "ref: not-this-one" in edit.text


def test_same_ref_is_no_change_and_keeps_the_text() -> None:
    edit = set_ref(RELEASE, OLD)

    assert not edit.changed
    assert edit.text == RELEASE


@pytest.mark.parametrize("quote", ["'", '"'])
def test_keeps_the_quoting_style(quote: str) -> None:
    text = RELEASE.replace(f"ref: {OLD}", f"ref: {quote}{OLD}{quote}")

    edit = set_ref(text, NEW)

    assert f"ref: {quote}{NEW}{quote}  # built by CI" in edit.text


def test_a_sha_of_digits_only_is_quoted_to_stay_a_string() -> None:
    digits = "1234567890" * 4

    edit = set_ref(RELEASE, digits)

    assert yaml.safe_load(edit.text)["ref"] == digits
    assert f'ref: "{digits}"' in edit.text


def test_a_pinned_version_becomes_the_ref() -> None:
    text = RELEASE.replace(f"ref: {OLD}", "version: 1.2.3")

    edit = set_ref(text, NEW)

    assert (edit.previous_key, edit.previous_value) == ("version", "1.2.3")
    assert f"ref: {NEW}  # built by CI" in edit.text
    assert "version" not in yaml.safe_load(edit.text)


def test_missing_ref_is_added_after_project() -> None:
    text = RELEASE.replace(f"ref: {OLD}  # built by CI\n", "")

    edit = set_ref(text, NEW)

    lines = edit.text.splitlines()
    assert lines[lines.index("project: api") + 1] == f"ref: {NEW}"
    assert edit.previous_key is None


def test_an_empty_ref_gets_a_value() -> None:
    edit = set_ref(RELEASE.replace(f"ref: {OLD}  # built by CI", "ref:"), NEW)

    assert yaml.safe_load(edit.text)["ref"] == NEW


def test_windows_line_endings_survive() -> None:
    text = RELEASE.replace("\n", "\r\n")

    edit = set_ref(text, NEW)

    assert edit.text == text.replace(OLD, NEW)


def test_a_document_start_marker_is_fine() -> None:
    edit = set_ref("---\n" + RELEASE, NEW)

    assert edit.text.startswith("---\n# api in production")
    assert yaml.safe_load(edit.text)["ref"] == NEW


@pytest.mark.parametrize(
    "text",
    [
        "{apiVersion: reconciler/v1, kind: Release, name: api, project: api, ref: x}\n",
        f"apiVersion: reconciler/v1\nkind: Release\nname: api\nproject: api\nref: >-\n  {OLD}\n",
        "- not\n- a mapping\n",
        "ref: [unclosed\n",
    ],
    ids=["flow-mapping", "block-scalar", "list", "invalid-yaml"],
)
def test_refuses_what_it_cannot_edit_safely(text: str) -> None:
    with pytest.raises(ReleaseFileError):
        set_ref(text, NEW)


def test_new_release_is_a_valid_release_document() -> None:
    assert yaml.safe_load(new_release("api", "api", NEW)) == {
        "apiVersion": "reconciler/v1",
        "kind": "Release",
        "name": "api",
        "project": "api",
        "ref": NEW,
    }
