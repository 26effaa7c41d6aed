"""Waiting for the deploy chart's RBAC to count before a test acts as its ServiceAccount."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from testbed import Testbed

# One right from each binding the chart always creates: (verb, resource, group, namespaced).
ALWAYS_GRANTED = (
    ("list", "secrets", "", False),  # the history ClusterRoleBinding
    ("create", "namespaces", "", False),  # the managed-resources ClusterRoleBinding
    ("create", "leases", "coordination.k8s.io", True),  # the Role in its own namespace
)
# With rbac.namespaces, one right from each RoleBinding in each of them.
GRANTED_IN_EACH = (
    ("list", "secrets", ""),  # the history RoleBinding
    ("create", "configmaps", ""),  # the managed-resources RoleBinding (default rules)
)


def wait_for_chart_rights(
    testbed: Testbed, namespace: str, serviceaccount: str, namespaces: Sequence[str] = ()
) -> None:
    """`namespaces`: the chart's rbac.namespaces, when it was installed in namespaced mode."""

    for verb, resource, group, where in _expected(namespace, namespaces):
        testbed.wait_until_allowed(
            namespace, serviceaccount, verb, resource, group=group, in_namespace=where
        )


def _expected(namespace: str, namespaces: Sequence[str]) -> Iterator[tuple[str, str, str, str]]:
    if not namespaces:
        for verb, resource, group, namespaced in ALWAYS_GRANTED:
            yield verb, resource, group, namespace if namespaced else ""
        return
    yield "create", "leases", "coordination.k8s.io", namespace
    for target in namespaces:
        for verb, resource, group in GRANTED_IN_EACH:
            yield verb, resource, group, target
