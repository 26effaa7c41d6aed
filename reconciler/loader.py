"""The public entry points of environments-repo loading (implemented in reconciler.repo)."""

from reconciler.repo import Analysis, analyze, check, load_environments

__all__ = ["Analysis", "analyze", "check", "load_environments"]
