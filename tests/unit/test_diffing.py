"""Comparing two loaded revisions, and the text and Markdown views of the result."""

from __future__ import annotations

from typing import Any

import pytest
from markdown_it import MarkdownIt

from reconciler.desired import SECRET_MASK
from reconciler.diffing import (
    ABSENT,
    DiffReport,
    InstallationDiff,
    ValueChange,
    build_report,
    diff_releases,
    diff_values,
    dotted,
    report_json,
)
from reconciler.diffview import (
    MARKDOWN_LIMIT,
    printable,
    render_invalid_markdown,
    render_markdown,
    render_text,
)
from reconciler.errors import Problem
from reconciler.model import (
    ChartRef,
    ChartSource,
    DesiredRelease,
    Environments,
    Installation,
    Project,
    Release,
)
from reconciler.revisions import Revision

REF_A = "a" * 40
REF_B = "b" * 40


def env(
    releases: dict[str, list[Release]], project_values: dict[str, Any] | None = None
) -> Environments:
    project = Project("api", ChartSource("oci://r/c", "api"), "api", values=project_values or {})
    return Environments(
        projects={"api": project},
        installations={
            name: Installation(name, releases=tuple(rels)) for name, rels in releases.items()
        },
    )


def report(base: Environments, head: Environments) -> DiffReport:
    return build_report(Revision("base", REF_A), Revision("head", REF_B), base, head)


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        pytest.param({"a": 1}, {"a": 1}, [], id="same"),
        pytest.param({"a": 1}, {"a": 2}, [ValueChange(("a",), 1, 2)], id="changed"),
        pytest.param({}, {"a": {"b": 1}}, [ValueChange(("a", "b"), ABSENT, 1)], id="added-leaf"),
        pytest.param({"a": [1]}, {}, [ValueChange(("a",), [1], ABSENT)], id="removed-list"),
        pytest.param({"a": 1}, {"a": True}, [ValueChange(("a",), 1, True)], id="1-is-not-true"),
        pytest.param({"a": 1}, {"a": None}, [ValueChange(("a",), 1, None)], id="to-null"),
        pytest.param(
            {"a": 5},
            {"a": {"b": 1}},
            [ValueChange(("a",), 5, ABSENT), ValueChange(("a", "b"), ABSENT, 1)],
            id="scalar-to-mapping",
        ),
        pytest.param({"a": {}}, {"a": {}}, [], id="empty-mapping"),
        pytest.param(
            {"l": [1, 2]}, {"l": [2, 1]}, [ValueChange(("l",), [1, 2], [2, 1])], id="order"
        ),
    ],
)
def test_diff_values(
    before: dict[str, Any], after: dict[str, Any], expected: list[ValueChange]
) -> None:
    assert list(diff_values(before, after)) == expected


def test_secret_values_are_masked_on_both_sides() -> None:
    changes = diff_values(
        {"db": {"password": "old-secret", "host": "h1"}},
        {"db": {"password": "new-secret", "host": "h2"}, "token": "t"},
        frozenset({("db", "password"), ("token",)}),
    )
    assert changes == (
        ValueChange(("db", "host"), "h1", "h2"),
        ValueChange(("db", "password"), SECRET_MASK, SECRET_MASK, secret=True),
        ValueChange(("token",), ABSENT, SECRET_MASK, secret=True),
    )


def test_secret_masking_reaches_every_output() -> None:
    chart = ChartRef("oci://r", "api", "1.0.0")
    before = DesiredRelease("api", "api", "api", chart, {"password": "hunter2"})
    after = DesiredRelease("api", "api", "api", chart, {"password": "hunter3"})
    releases = diff_releases([before], [after], {"api": frozenset({("password",)})})
    the_report = DiffReport(
        Revision("a"), Revision("b"), (InstallationDiff("prod", "changed", releases),), {}
    )
    for text in (
        render_text(the_report),
        render_markdown(the_report),
        str(report_json(the_report)),
    ):
        assert "hunter" not in text
        assert "password" in text


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (("image", "tag"), "image.tag"),
        (("podAnnotations", "prometheus.io/scrape"), 'podAnnotations["prometheus.io/scrape"]'),
        (("a b",), '["a b"]'),
        (("x", "line\nbreak"), 'x["line\\nbreak"]'),
    ],
)
def test_dotted(path: tuple[str, ...], expected: str) -> None:
    assert dotted(path) == expected


def test_unchanged_installations_are_left_out() -> None:
    base = env({"a": [Release("api", "api", ref=REF_A)], "b": [Release("api", "api", ref=REF_A)]})
    head = env({"a": [Release("api", "api", ref=REF_B)], "b": [Release("api", "api", ref=REF_A)]})
    result = report(base, head)
    assert [i.name for i in result.installations] == ["a"]
    assert result.summary == {
        "installations": 1,
        "releases": 1,
        "added": 0,
        "removed": 0,
        "changed": 1,
    }


def test_namespace_move_is_a_removal_and_an_addition() -> None:
    base = env({"a": [Release("api", "api", ref=REF_A)]})
    head = env({"a": [Release("api", "api", ref=REF_A, namespace="other")]})
    (inst,) = report(base, head).installations
    assert [(r.namespace, r.change) for r in inst.releases] == [
        ("api", "removed"),
        ("other", "added"),
    ]


def test_pinned_version_change() -> None:
    base = env({"a": [Release("api", "api", version="1.0.0")]})
    head = env({"a": [Release("api", "api", version="1.1.0")]})
    (inst,) = report(base, head).installations
    assert inst.releases[0].changed_fields == ("chart.version",)


def test_text_view_escapes_control_characters() -> None:
    base = env({"a": [Release("api", "api", ref=REF_A, values={"motd": "hi"})]})
    head = env({"a": [Release("api", "api", ref=REF_A, values={"motd": "\x1b[31mred\x9b"})]})
    text = render_text(report(base, head))
    assert "\x1b" not in text
    assert "\x9b" not in text
    assert "\\u001b[31mred" in text
    assert printable("ok\x07") == "ok\\x07"


def test_long_values_are_cut() -> None:
    base = env({"a": [Release("api", "api", ref=REF_A)]})
    head = env({"a": [Release("api", "api", ref=REF_A, values={"blob": "x" * 500})]})
    text = render_text(report(base, head))
    assert "x" * 500 not in text
    assert "…" in text


def test_markdown_stays_under_githubs_comment_limit() -> None:
    names = [f"inst{i:04d}" for i in range(400)]
    base = env({n: [Release("api", "api", ref=REF_A)] for n in names})
    # Every installation differs, so nothing can be grouped.
    head = env(
        {
            n: [Release("api", "api", ref=REF_A, values={f"k{j}": n for j in range(5)})]
            for n in names
        }
    )
    text = render_markdown(report(base, head))
    assert len(text) <= MARKDOWN_LIMIT
    assert text.endswith(
        "_Output truncated: run `reconciler diff --output json` for everything._\n"
    )
    assert text.count("<details>") == text.count("</details>")


def test_many_identical_installations_are_grouped() -> None:
    names = [f"site{i:03d}" for i in range(50)]
    base = env({n: [Release("api", "api", ref=REF_A)] for n in names}, {"replicas": 1})
    head = env({n: [Release("api", "api", ref=REF_A)] for n in names}, {"replicas": 2})
    text = render_markdown(report(base, head))
    assert text.count("### ") == 1
    assert "and 45 more installations" in text
    assert "<summary>all 50 installations</summary>" in text
    assert "**50 installations, 50 releases change" in text


def test_invalid_revision_in_json() -> None:
    problem = Problem("installations/a/installation.yaml", 3, "unknown key `vaules`")
    rev = Revision("HEAD", REF_B, problems=(problem,))
    doc = report_json(build_report(Revision("base"), rev, env({}), env({})))
    assert doc["head"]["valid"] is False
    assert doc["head"]["problems"] == [problem.as_dict()]


def test_invalid_head_markdown_is_capped() -> None:
    problems = tuple(
        Problem(f"installations/i{i}/installation.yaml", 1, "<bad>") for i in range(3000)
    )
    text = render_invalid_markdown(Revision("HEAD", REF_B, problems=problems))
    assert len(text) < MARKDOWN_LIMIT
    assert "3000 problems" in text
    assert "and 2900 more: run `reconciler validate`" in text
    # Problems sit in a fenced code block: shown literally, never as HTML.
    rendered = MarkdownIt("commonmark").render(text)
    assert "<bad>" not in rendered
    assert "&lt;bad&gt;" in rendered
