"""The library's structlog logger: debug events when asked for, warnings always.

structlog is never configured here: the application owns that. When it has configured
structlog, events go through its configuration; until then they are printed to stderr with
structlog's defaults, so that stdout stays the program's own.
"""

from __future__ import annotations

import hashlib
import sys
from typing import Any

import structlog

from my_cache import _key_format as key_format

LOGGER_NAME = "my_cache"


def _logger() -> Any:
    if structlog.is_configured():
        return structlog.get_logger(LOGGER_NAME)
    return structlog.wrap_logger(structlog.PrintLogger(sys.stderr))


def debug(event: str, **fields: Any) -> None:
    """One debug event; callers check ``is_debug_log`` first, so it costs nothing when off."""
    _emit("debug", event, fields)


def warning(event: str, **fields: Any) -> None:
    """A warning, emitted whatever ``is_debug_log`` says."""
    _emit("warning", event, fields)


def _emit(level: str, event: str, fields: dict[str, Any]) -> None:
    try:
        getattr(_logger(), level)(event, **fields)
    except Exception as error:
        # structlog's configuration is not thread-safe: a writer thread logging while the
        # application reconfigures it can fail. The cache operation that logs must not.
        print(f"my_cache: could not log {event} ({fields}): {error!r}", file=sys.stderr)


def short_key(key: str) -> str:
    """The first characters of a key's hash: enough to tell entries apart in a log."""
    parts = key_format.split(key)
    call = key if parts is None else parts[2]
    if "\0" in call:  # a process-local key, marshal's bytes (see _keys.marshal_keys)
        return hashlib.blake2b(call.encode(), digest_size=6).hexdigest()
    return call[:12]
