"""The environments repo: its files, their schemas and rules, and the model they load into."""

from reconciler.repo.loader import Analysis, analyze, check, load_environments

__all__ = ["Analysis", "analyze", "check", "load_environments"]
