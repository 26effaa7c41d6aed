"""Commit trailers written by promote and read by the mirror and the status reporter."""

from __future__ import annotations

from reconciler import trailers
from reconciler.trailers import Promotion

SHA = "0123456789abcdef0123456789abcdef01234567"


def test_message_round_trips_through_the_trailers() -> None:
    promotion = Promotion("api", SHA, ("prod-eu", "prod-us"), 42, "acme/api")

    message = trailers.commit_message(promotion, ["installations/prod-eu/releases/api.yaml"])

    assert message.splitlines()[0] == "promote api to 0123456789ab in prod-eu, prod-us"
    assert "Deployment-Id: 42\nDeployment-Repository: acme/api\n" in message
    assert trailers.promotion_of(message) == promotion


def test_many_installations_are_counted_in_the_subject() -> None:
    promotion = Promotion("api", SHA, tuple(f"i{n}" for n in range(5)))

    message = trailers.commit_message(promotion, [])

    assert message.startswith("promote api to 0123456789ab in 5 installations\n")
    assert "Installations: i0, i1, i2, i3, i4" in message
    assert trailers.promotion_of(message) == promotion


def test_other_commits_have_no_promotion() -> None:
    assert trailers.promotion_of("fix a typo") is None
    assert trailers.promotion_of("subject\n\nbody text\nProject: api\n") is None
    assert trailers.promotion_of("subject\n\nSigned-off-by: a <a@b>\n") is None
