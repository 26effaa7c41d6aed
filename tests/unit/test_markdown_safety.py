"""The PR-comment Markdown renders values as code: no renderer turns them into links,
images, mentions or HTML, and no value breaks the table it sits in."""

from __future__ import annotations

import re

from markdown_it import MarkdownIt

from reconciler.diffing import build_report
from reconciler.diffview import code, render_markdown
from reconciler.model import ChartSource, Environments, Installation, Project, Release
from reconciler.revisions import Revision

HOSTILE = {
    "link": "[click me](https://evil.example/login)",
    "image": "![tracker](https://evil.example/pixel.png)",
    "mention": "ping @octocat and @acme/admins",
    "autolink": "see https://evil.example/x and www.evil.example",
    "html": "<img src=https://evil.example/y.png><a href='https://evil.example'>z</a>",
    "pipes": "a | b ` c `` d",
    "ticks": "`",
    "newline": "line one\n| forged | row |",
    "[key](https://evil.example/k)": "keys are shown as code too",
}


def rendered() -> str:
    project = Project("api", ChartSource("oci://r/c", "api"), "api")
    before = Release("api", "api", version="1.0.0")
    after = Release("api", "api", version="1.0.0", values=HOSTILE)

    def env(release: Release) -> Environments:
        return Environments({"api": project}, {"site": Installation("site", releases=(release,))})

    markdown = render_markdown(
        build_report(
            Revision("base", "a" * 40), Revision("head", "b" * 40), env(before), env(after)
        )
    )
    renderer = MarkdownIt("commonmark", {"linkify": True, "html": True}).enable(
        ["table", "linkify", "strikethrough"]
    )
    return renderer.render(markdown)


def outside_code(html: str) -> str:
    return re.sub(r"<code>.*?</code>", "", html, flags=re.DOTALL)


def test_values_never_render_as_links_images_or_html() -> None:
    html = rendered()
    outside = outside_code(html)
    assert "<a " not in html
    assert "<img" not in html
    assert "evil.example" not in outside
    assert "@octocat" not in outside, "a mention outside code pings the user"
    assert "click me" in html, "the value is still shown, as code"


def test_values_keep_the_table_whole() -> None:
    html = rendered()
    rows = re.findall(r"<tr>(.*?)</tr>", html, flags=re.DOTALL)
    value_rows = [row for row in rows if "<code>api</code>" in row and row.count("<td>") == 4]
    assert len(value_rows) == len(HOSTILE), rows
    assert "forged" not in outside_code(html)


def test_code_span_fences_are_longer_than_backtick_runs() -> None:
    assert code("a `` b") == "```a `` b```"
    assert code("`") == "`` ` ``"
    assert code("x|y") == "`x\\|y`"
    assert code("a\nb") == "`a\\nb`"
