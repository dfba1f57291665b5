"""Logging for every command: one handler on the root logger, behind a filter that keeps secrets out.

At ``LOG_LEVEL=debug`` botocore and aiobotocore log each request's headers (the SigV4 ``Authorization``
header, whose signature can be replayed for minutes) and the canonical request; httpx logs URLs, which for
a presigned GET carry ``X-Amz-Signature``. The filter sits on the handler, so it sees every record that is
written, whichever library logged it, and it:

- blanks credentials by shape (Authorization values, Bearer tokens, SigV4 signatures and credentials,
  presigned-URL parameters, session tokens) and by value (the keys the settings hold);
- escapes control characters, so a request path with ``%0A`` cannot forge a second log line.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from typing import TextIO

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
MASK = "***"

# Each alternative keeps its lead-in (group "keep") and masks what follows it.
_SHAPES = re.compile(
    r"""
    (?P<keep>
        # 'Authorization': b'AWS4-HMAC-SHA256 Credential=..., Signature=...' (a dict's repr)
        authorization['"]?\s*[:=]\s*b?(?P<quote>['"])
    )(?:(?!(?P=quote)).)*
    |(?P<keep2>authorization\s*[:=]\s*)[^\r\n'"]+          # Authorization: Bearer ... (a header line)
    |(?P<keep3>\bbearer\s+)[A-Za-z0-9._~+/=\-]+            # a bearer token anywhere
    |(?P<keep4>\bsignature\s*[=:]\s*)[0-9a-f]{16,}          # Signature=<hex>, "Signature:\n<hex>"
    |(?P<keep5>\bcredential=)[^,\s'"&]+                     # SigV4 Credential=AKIA.../scope
    |(?P<keep6>x-amz-(?:signature|credential|security-token)=)[^&\s'"]+   # presigned-URL parameters
    |(?P<keep7>x-amz-security-token['"]?\s*[:=]\s*b?['"]?)[^'"\s,}]+      # the session-token header
    """,
    re.IGNORECASE | re.VERBOSE,
)
_KEEP_GROUPS = ("keep", "keep2", "keep3", "keep4", "keep5", "keep6", "keep7")
# Words every shape above contains: most lines (the access log's) have none, and skip the scan.
_HINTS = ("authorization", "bearer", "signature", "credential", "x-amz-")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _mask_shape(match: re.Match[str]) -> str:
    lead = next(match.group(name) for name in _KEEP_GROUPS if match.group(name) is not None)
    return lead + MASK


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return _ESCAPES.get(char) or f"\\x{ord(char):02x}"


def mask(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without credentials (by shape and by value)."""
    for secret in secrets:
        text = text.replace(secret, MASK)
    lowered = text.lower()
    return _SHAPES.sub(_mask_shape, text) if any(hint in lowered for hint in _HINTS) else text


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without credentials and with control characters escaped: safe for one log line."""
    return _CONTROL.sub(_escape, mask(text, secrets))


class RedactingFilter(logging.Filter):
    """Rewrites each record's message through ``redact``; never drops a record."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        # Longest first, so a key that contains another is masked whole. Empty strings would mask nothing.
        self._secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a bad format string in some library: keep its parts visible
            message = f"{record.msg!s} {record.args!r}"
        record.msg, record.args = redact(message, self._secrets), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:  # a traceback keeps its lines, but not a credential an exception carried
            record.exc_text = mask(record.exc_text, self._secrets)
        return True


class _GatewayHandler(logging.StreamHandler[TextIO]):
    """Marks the handler this module installed, so configuring twice replaces it rather than doubling."""


def configure_logging(
    level: str, secrets: Iterable[str] = (), stream: TextIO | None = None
) -> logging.Handler:
    """One redacting handler on the root logger (every library's records reach it). Called by the CLI and
    again by each uvicorn worker process, which starts with logging unconfigured."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _GatewayHandler)]:
        root.removeHandler(handler)
    handler = _GatewayHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(RedactingFilter(secrets))
    root.addHandler(handler)
    root.setLevel(level.upper())
    # httpx logs every request's URL at INFO: noise beside our access log.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))
    return handler
