"""Entries an older my_cache wrote to Redis, before an entry was one key: listed (as stale:
no call reads them any more) so that ``mycache clear`` can delete them.

That layout kept a value under ``mycache:value:<folder>:<key>``, its description as JSON in
the hash ``mycache:rows:<folder>``, and expiring keys in ``mycache:expiring:<folder>``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from my_cache._storages._envelope import is_ours
from my_cache._storages.base import Entry

if TYPE_CHECKING:
    from my_cache._storages.redis_store import _Server

FUNCTION = ""
"""The function of an older entry, whatever its row said: unknown, so stale."""

_VALUE, _ROWS, _EXPIRING = "mycache:value:", "mycache:rows:", "mycache:expiring:"
# A key began with a 16- and a 12-digit hex part: the folder is what comes before.
_NAME = re.compile(r"(.*?):([0-9a-f]{16}:[0-9a-f]{12}:.*)", re.DOTALL)


def is_older(name: str) -> bool:
    """Whether a key's name is that of an older entry's value."""
    return name.startswith(_VALUE)


def entries(server: _Server, names: Iterable[str], folder: str | None) -> list[Entry]:
    """The older entries (of ``folder``, or all) among the keys ``names`` whose value is
    still stored."""
    found = []
    for name in names:
        parsed = _NAME.fullmatch(name[len(_VALUE) :])
        if parsed is not None and (folder is None or parsed[1] == folder):
            found.append((name, parsed[1], parsed[2]))
    if not found:
        return []

    def read(client: Any) -> list[Any]:
        with client.pipeline(transaction=False) as pipeline:
            for name, entry_folder, key in found:
                pipeline.getrange(name, 0, 2)
                pipeline.strlen(name)
                pipeline.hget(_ROWS + entry_folder, key)
            return list(pipeline.execute(raise_on_error=False))

    replies = server.call(read)
    listed = []
    for (_, entry_folder, key), head, size, row in zip(
        found, replies[::3], replies[1::3], replies[2::3], strict=True
    ):
        if isinstance(head, bytes) and is_ours(head) and isinstance(size, int):
            created, arg_string = _described(row)
            listed.append(Entry(entry_folder, FUNCTION, key, arg_string, size, created, None))
    return listed


def _described(row: Any) -> tuple[float, str]:
    """``(created, arg_string)`` from an older row; nothing (0, "") from a damaged one."""
    try:
        fields = json.loads(row)
        return float(fields["created"]), str(fields["arg_string"])
    except (TypeError, ValueError, KeyError):
        return 0.0, ""


def delete(server: _Server, older: Iterable[Entry]) -> int:
    """Delete these older entries, value and row."""
    doomed = list(older)
    if not doomed:
        return 0

    def remove(client: Any) -> int:
        with client.pipeline(transaction=False) as pipeline:
            for entry in doomed:
                pipeline.delete(f"{_VALUE}{entry.folder}:{entry.key}")
                pipeline.hdel(_ROWS + entry.folder, entry.key)
                pipeline.zrem(_EXPIRING + entry.folder, entry.key)
            replies = pipeline.execute(raise_on_error=False)
        return sum(1 for deleted in replies[::3] if deleted == 1)

    return server.call(remove)
