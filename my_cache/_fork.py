"""A forked child starts with fresh threads, locks and connections: what it inherits from
its parent belongs to the parent (multiprocessing forks by default on Linux).

Objects that hold such things register here; in each child, their ``after_fork()`` runs
before the child's own code. Inherited SQLite connections are kept, never closed: closing
one in the child would act on the parent's locks and shared-memory index.
"""

from __future__ import annotations

import os
import weakref
from typing import Any, Protocol


class ForkAware(Protocol):
    def after_fork(self) -> None:
        """Drop what the parent's threads own; called in the child, single-threaded."""


_OBJECTS: weakref.WeakSet[Any] = weakref.WeakSet()
_INHERITED: list[Any] = []


def renew_after_fork(obj: ForkAware) -> None:
    """Call ``obj.after_fork()`` in every child forked while ``obj`` lives."""
    _OBJECTS.add(obj)


def keep_unclosed(inherited: Any) -> None:
    """Keep the parent's connections (in whatever holds them) alive and unused: garbage
    collection would close them."""
    _INHERITED.append(inherited)


def _in_child() -> None:
    for obj in list(_OBJECTS):
        obj.after_fork()


os.register_at_fork(after_in_child=_in_child)
