"""Logs without secrets: API keys (``ft_...``) and bearer tokens are replaced before any log line is
written, by the service's own access log, uvicorn's access and error logs, and tracebacks alike.

Two layers: a :class:`Redact` filter on the loggers (it rewrites the message and its arguments, whatever
handler later writes them) and formatters that redact the finished line (tracebacks included). The
service never logs request headers or bodies; a key sent where it does not belong (a query string) is
caught by both layers.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from uvicorn.logging import AccessFormatter, DefaultFormatter

_SECRETS = (
    (re.compile(r"ft_[A-Za-z0-9_\-]+"), "ft_[redacted]"),
    (re.compile(r"(?i)(bearer\s+)[^\s,;\"']+"), r"\1[redacted]"),
    (re.compile(r"(?i)(x-api-key[\"']?\s*[:=]\s*[\"']?)[^\s,;\"']+"), r"\1[redacted]"),
    (re.compile(r"(?i)((?:api_?key|token|secret)=)[^&\s\"']+"), r"\1[redacted]"),
)
_RENDER = logging.Formatter()
LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "fundtrail", "fundtrail.api", "fundtrail.api.access")


_MARKERS = ("ft_", "bearer", "key", "token", "secret")  # every pattern needs one of these (lower case)


def redact(text: str) -> str:
    low = text.lower()
    if not any(m in low for m in _MARKERS):  # the common case: one scan, no regex
        return text
    for pattern, repl in _SECRETS:
        text = pattern.sub(repl, text)
    return text


class Redact(logging.Filter):
    """Redacts the finished message (arguments merged in), so a placeholder can never be cut in two."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            # uvicorn's access formatter reads the arguments one by one: redact them in place
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
            return True
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:  # a traceback, rendered once and redacted
            record.exc_text = redact(_RENDER.formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class RedactingFormatter(DefaultFormatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class RedactingAccessFormatter(AccessFormatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def install_filters() -> None:
    """Put the redacting filter on the service's loggers (idempotent)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, Redact) for f in logger.filters):
            logger.addFilter(Redact())


def log_config(level: str = "info") -> dict[str, Any]:
    """uvicorn's logging configuration with redacting formatters and filters, and the service's own
    ``fundtrail`` loggers (``fundtrail.api.access``: one line per request) on the same output."""
    fmt = "%(levelprefix)s %(message)s"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": "fundtrail.api.logs.Redact"}},
        "formatters": {
            "default": {"()": "fundtrail.api.logs.RedactingFormatter", "fmt": fmt, "use_colors": None},
            "access": {
                "()": "fundtrail.api.logs.RedactingAccessFormatter",
                "fmt": '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s',
            },
        },
        "handlers": {
            "default": {
                "formatter": "default",
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "filters": ["redact"],
            },
            "access": {
                "formatter": "access",
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "filters": ["redact"],
            },
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": level.upper(), "propagate": False},
            "uvicorn.error": {"level": level.upper()},
            "uvicorn.access": {"handlers": ["access"], "level": level.upper(), "propagate": False},
            "fundtrail": {"handlers": ["default"], "level": level.upper(), "propagate": False},
        },
    }
