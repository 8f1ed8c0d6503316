"""Secrets stay out of the logs: one filter every log line of the operator passes through.

What must never be logged, at any level: bearer tokens and passwords, the path of
a webhook URL (a Slack incoming webhook carries its secret there), and bodies of
answers from Prometheus, webhooks or the API server. Two measures, both applied by
`telemetry.configure_logging`:

- the HTTP libraries' own loggers (urllib3, requests, httpx, httpcore, the
  kubernetes client, which logs whole response bodies at DEBUG) are held at
  WARNING whatever `--log-level` says;
- `RedactingFilter` replaces, in every formatted line, the values registered with
  `remember_secret` (token file contents, webhook URLs and their paths) and
  anything shaped like an `Authorization` value.
"""

from __future__ import annotations

import logging
import re
import threading

QUIET_LOGGERS = ("urllib3", "requests", "httpx", "httpcore", "kubernetes")
"""Loggers of HTTP libraries that write URLs, headers or bodies at INFO or DEBUG."""
REDACTED = "[redacted]"
_MIN_SECRET = 6
"""Shorter values are not registered: redacting them would garble ordinary words."""
_CREDENTIALS = re.compile(r"(?i)\b(bearer|basic|token)(\s+|[=:]\s*)[A-Za-z0-9._~+/=-]{6,}")

_secrets: set[str] = set()
_lock = threading.Lock()


def remember_secret(value: str) -> None:
    """Register a value that must never appear in a log line."""
    value = value.strip()
    if len(value) >= _MIN_SECRET:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """The text with every registered secret and credential-shaped value replaced."""
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return _CREDENTIALS.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)


class RedactingFilter(logging.Filter):
    """Formats each record once, redacted, so no handler sees the raw arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        for key in ("reason", "rollout", "step"):
            value = getattr(record, key, None)
            if isinstance(value, str):
                setattr(record, key, redact(value))
        return True


def quiet_http_libraries() -> None:
    """Hold the HTTP libraries' loggers at WARNING, whatever the root level."""
    for name in QUIET_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET or logger.level < logging.WARNING:
            logger.setLevel(logging.WARNING)
