"""Logs: JSON lines in a Pod (or when asked), readable lines on a terminal.

Callers pass structured fields; nothing Secret-sourced is ever handed to a log call.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from reconciler.terminal import for_terminal

LOGGER = logging.getLogger("reconciler")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "msg": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        # Fields carry repo and helm text: escaped, so they cannot steer the terminal.
        fields = getattr(record, "fields", {})
        extra = " ".join(f"{k}={for_terminal(str(v))}" for k, v in fields.items())
        stamp = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        return f"{stamp} {record.levelname.lower():7} {for_terminal(record.getMessage())}" + (
            f"  {extra}" if extra else ""
        )


def setup(fmt: str = "auto", level: str = "info") -> None:
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    LOGGER.handlers[:] = [handler]
    LOGGER.setLevel(level.upper())
    LOGGER.propagate = False


def debug(message: str, /, **fields: Any) -> None:
    LOGGER.debug(message, extra={"fields": fields})


def info(message: str, /, **fields: Any) -> None:
    LOGGER.info(message, extra={"fields": fields})


def warning(message: str, /, **fields: Any) -> None:
    LOGGER.warning(message, extra={"fields": fields})


def error(message: str, /, **fields: Any) -> None:
    LOGGER.error(message, extra={"fields": fields})
