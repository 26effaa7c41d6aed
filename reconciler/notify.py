"""An optional notification webhook (Slack-compatible `{"text": ...}`) after passes that acted.

Best effort: a notification that cannot be delivered is logged, never retried
and never fails a pass. Messages carry outcomes only, which are already masked.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass

from reconciler import log
from reconciler.errors import UsageError
from reconciler.execute import count_results
from reconciler.reconcile import PassResult

TIMEOUT = 10.0
MAX_LINES = 20


@dataclass(frozen=True)
class Notifier:
    url: str
    installation: str
    only_failures: bool = False

    def __post_init__(self) -> None:
        if not self.url.startswith(("https://", "http://")):
            raise UsageError("the notification URL must start with https:// (or http://)")

    def passed(self, result: PassResult) -> None:
        if not result.outcomes or (self.only_failures and not result.failed):
            return
        self.send(summary(self.installation, result))

    def send(self, text: str) -> None:
        body = json.dumps({"text": text}).encode()
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
            self.url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310 - operator's URL
                response.read()
        except (urllib.error.URLError, OSError) as error:
            log.warning("notification not delivered", error=str(error))


def summary(installation: str, result: PassResult) -> str:
    failed = result.failed
    head = ":x:" if failed else ":white_check_mark:"
    counts = count_results(result.outcomes)
    lines = [f"{head} {_plain(installation)} at {result.plan.revision[:12]}: {counts}"]
    for outcome in result.outcomes[:MAX_LINES]:
        where = _plain(f"{outcome.namespace}/{outcome.release}")
        lines.append(f"• {outcome.kind} {where}: {outcome.result}")
        if outcome.result != "succeeded":
            lines[-1] += f": {_plain(outcome.message)}"
    if len(result.outcomes) > MAX_LINES:
        lines.append(f"… and {len(result.outcomes) - MAX_LINES} more")
    return "\n".join(lines)


def _plain(text: str) -> str:
    """Text from the repo or helm as Slack shows it literally: `<!channel>`, `<@U123>` and
    `<https://x|label>` are mentions and links only when `<`, `>` and `&` are not escaped."""

    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
