"""The gate decisions, pure: verdicts from statuses, waves, and the next step of a run."""

from __future__ import annotations

import pytest

from reconciler import gates
from reconciler.commands.promote_gates import decide
from reconciler.model import Environments, Installation, Release
from reconciler.promote import Request

REF, OLD = "b" * 40, "a" * 40
NAMES = ("p-1", "p-2", "p-3", "p-4", "p-5")


def status(
    state: str, installation: str, at: str = "2024-01-01T00:00:00Z", n: int = 1
) -> dict[str, object]:
    return {
        "id": n,
        "state": state,
        "description": f"api converged in {installation}",
        "created_at": at,
    }


def test_the_newest_status_of_each_installation_decides() -> None:
    reports = gates.newest_reports(
        [
            (1, [status("failure", "p-1", "2024-01-01T00:00:00Z"), status("success", "p-2")]),
            (2, [status("success", "p-1", "2024-01-01T00:05:00Z"), status("in_progress", "p-2")]),
        ]
    )
    assert reports["p-1"].verdict == "healthy", "a later success replaces a failure"
    assert reports["p-2"].verdict == "in-progress", "same second: the later deployment wins"


@pytest.mark.parametrize(
    ("description", "installation"),
    [
        ("api converged in prod-eu-1", "prod-eu-1"),
        ("reconciling api in prod-eu-1", "prod-eu-1"),
        ("api failed in prod-eu-1", "prod-eu-1"),
        ("api failed in prod-eu-1: install of 0.2.0 failed in dev: timed out", "prod-eu-1"),
        ("api failed in prod-eu-1 because", None),
        ("Deployed by hand in prod-eu-1", None),
        ("Deployed by hand", None),
        ("api converged in Prod_EU", None),
        (None, None),
    ],
)
def test_whose_status_it_is_comes_from_the_description(
    description: str | None, installation: str | None
) -> None:
    assert gates.installation_of({"description": description}) == installation


def test_verdicts_and_the_gate() -> None:
    reports = gates.newest_reports(
        [
            (
                1,
                [
                    status("success", "p-1"),
                    status("error", "p-2"),
                    status("queued", "p-3"),
                    status("inactive", "p-4"),
                ],
            )
        ]
    )
    gate = gates.evaluate(NAMES, reports)
    assert gate.as_dict() == {
        "healthy": ["p-1"], "failed": ["p-2"], "in_progress": ["p-3"], "missing": ["p-4", "p-5"]
    }  # fmt: skip
    assert not gate.open
    assert gate.failed
    assert not gates.evaluate((), reports).open, "a gate on nothing never opens"


def test_waves_are_slices_in_order() -> None:
    assert gates.waves(NAMES, 2) == [("p-1", "p-2"), ("p-3", "p-4"), ("p-5",)]
    assert gates.waves(NAMES, None) == [NAMES]


def env(declared: dict[str, str]) -> Environments:
    installations = {
        name: Installation(name, releases=(Release("api", "api", ref=declared.get(name, OLD)),))
        for name in (*NAMES, "t-1")
    }
    return Environments({}, installations)


def healthy(*names: str) -> dict[str, gates.Report]:
    return {name: gates.Report(name, "success") for name in names}


REQUEST = Request("api", REF, selector={"stage": "production"})


@pytest.mark.parametrize(
    ("declared", "reports", "after", "expected"),
    [
        ({}, {}, ("t-1",), ("waiting", 1, "--after")),
        ({}, {"t-1": gates.Report("t-1", "failure")}, ("t-1",), ("failed", 1, "--after")),
        ({}, healthy("t-1"), ("t-1",), ("promote", 1, "")),
        ({"p-1": REF, "p-2": REF}, healthy("t-1", "p-1"), ("t-1",), ("waiting", 2, "wave 1")),
        ({"p-1": REF, "p-2": REF}, healthy("t-1", "p-1", "p-2"), ("t-1",), ("promote", 2, "")),
        ({n: REF for n in NAMES}, healthy("p-1", "p-2", "p-3", "p-4"), (), ("done", 3, "")),
        ({n: REF for n in NAMES[:4]}, healthy("p-1", "p-2"), (), ("waiting", 3, "wave 2")),
    ],
    ids=["silent", "failed", "open", "wave-1-pending", "wave-1-healthy", "done", "wave-2-pending"],
)
def test_the_next_step(
    declared: dict[str, str],
    reports: dict[str, gates.Report],
    after: tuple[str, ...],
    expected: tuple[str, int, str],
) -> None:
    step = decide(env(declared), REQUEST, NAMES, after, reports, 2)
    assert (step.status, step.wave, step.waiting_on) == expected


def test_a_wave_whose_pinned_release_stays_behind_counts_as_declared() -> None:
    from reconciler.commands.promote_gates import _declared
    from reconciler.model import Environments, Installation, Release
    from reconciler.promote import Request

    new, old = "a" * 40, "b" * 40
    releases = (
        Release("api", "api", ref=new),
        Release("api-canary", "api", ref=old, pinned=True),
    )
    env = Environments({}, {"p-1": Installation("p-1", releases=releases)})
    assert _declared(env, ("p-1",), Request("api", new)), "a pinned release never moves"
    moved = (Release("api", "api", ref=old), releases[1])
    env = Environments({}, {"p-1": Installation("p-1", releases=moved)})
    assert not _declared(env, ("p-1",), Request("api", new))
