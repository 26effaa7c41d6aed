"""Reading the test hooks of a release record: pure logic. `helm test` as a gate on a real
cluster: tests/integration/test_helm_test_gate.py."""

from __future__ import annotations

from reconciler.helmtest import _test_run


def test_test_hooks_of_a_record_give_name_phase_and_kind() -> None:
    hook = {"name": "web-test", "kind": "Pod", "events": ["test"], "last_run": {"phase": "Failed"}}
    assert _test_run(hook) == ("web-test", "Failed", "Pod")
    assert _test_run({**hook, "events": ["test-success"], "last_run": {}})[1] == "not run"  # type: ignore[index]
    assert _test_run({**hook, "events": ["pre-install"]}) is None
    assert _test_run({**hook, "name": "x" * 1000})[0] == "x" * 253  # type: ignore[index]
    assert _test_run("garbage") is None
