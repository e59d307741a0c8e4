"""The format of a store key, in one place: ``<generation>:<variant>:<call>``.

The generation (16 hex digits) is a hash of the function's name and revision, the variant
(12 hex) of what else decides its results (see _identity); the call part is a hash of the
arguments (the serialiser's, or of marshal's bytes for a plain call), or for a process-local
store marshal's bytes themselves (see _keys). An older my_cache wrote other shapes: ``split``
returns None for them.
"""

from __future__ import annotations

import re

_KEY = re.compile(r"([0-9a-f]{16}):([0-9a-f]{12}):(.*)", re.DOTALL)


def prefix(generation: str, variant: str) -> str:
    """What every key of one function object starts with."""
    return f"{generation}:{variant}:"


def split(key: str) -> tuple[str, str, str] | None:
    """``(generation, variant, call)`` of a key of this format, else None."""
    match = _KEY.fullmatch(key)
    return None if match is None else (match[1], match[2], match[3])
