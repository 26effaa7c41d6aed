"""reconciler: keeps Kubernetes installations at the Helm releases declared in one git repository."""

__version__ = "0.1.0"
