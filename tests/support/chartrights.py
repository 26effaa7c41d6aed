"""Waiting for the deploy chart's RBAC to count before a test acts as its ServiceAccount."""

from __future__ import annotations

from testbed import Testbed

# One right from each binding the chart always creates.
ALWAYS_GRANTED = (
    ("list", "secrets", "", False),  # the history ClusterRoleBinding
    ("create", "namespaces", "", False),  # the managed-resources ClusterRoleBinding
    ("create", "leases", "coordination.k8s.io", True),  # the Role in its own namespace
)


def wait_for_chart_rights(testbed: Testbed, namespace: str, serviceaccount: str) -> None:
    for verb, resource, group, namespaced in ALWAYS_GRANTED:
        testbed.wait_until_allowed(
            namespace,
            serviceaccount,
            verb,
            resource,
            group=group,
            in_namespace=namespace if namespaced else "",
        )
