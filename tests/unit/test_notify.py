"""The notification text: counts that keep skipped apart, and helm's text shown, not obeyed."""

from __future__ import annotations

from reconciler.execute import Outcome
from reconciler.notify import summary
from reconciler.plan import Plan
from reconciler.reconcile import PassResult


def test_summary_counts_skipped_apart_and_escapes_slack_markup() -> None:
    outcomes = (
        Outcome("api", "apps", "install", "succeeded", "installed app 0.1.0"),
        Outcome("db", "apps", "upgrade", "failed", "boom <!channel> <https://evil.example|docs> &"),
        Outcome("web", "apps", "install", "skipped", "dependency db did not converge"),
    )
    text = summary("prod", PassResult(Plan("prod", "a" * 40, ()), outcomes))
    assert "1 succeeded, 1 failed, 1 skipped" in text
    assert "<!channel>" not in text
    assert "<https://" not in text
    assert "&lt;!channel&gt; &lt;https://evil.example|docs&gt; &amp;" in text
