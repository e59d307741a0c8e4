"""A forked child starts with fresh threads, locks and connections: what it inherits from
its parent belongs to the parent (multiprocessing forks by default on Linux).

Objects that hold such things register here; in each child, their ``after_fork()`` runs
before the child's own code. Inherited SQLite connections are kept, never closed: closing
one in the child would act on the parent's locks and shared-memory index.
"""

from __future__ import annotations

import functools
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any, Protocol, TypeVar, cast

F = TypeVar("F", bound=Callable[..., Any])


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


_RECHECK = 0.05  # seconds between looks at the marks, or at the fork, while waiting


class _Mark:
    """A thread's count of the store operations it is inside (0 or 1; more if nested)."""

    __slots__ = ("__weakref__", "depth")

    def __init__(self) -> None:
        self.depth = 0


class _Quiet:
    """Lets a fork wait until no thread of ours is inside SQLite.

    A child forked while another thread is inside SQLite inherits SQLite's mutexes and its
    per-file lock records as they were at that instant: its own first connection then waits
    for locks no one will ever release. Every store operation counts itself in its thread's
    mark, never around code of the user's (a pickle's own code might fork); a fork waits for
    the operations running to end, holds back new ones, and lets them go on in the parent
    once it is done. Each operation is written out where it runs (see ``quiet``)::

        mark = SQLITE.mark()
        mark.depth += 1
        try:
            if SQLITE.forking:
                SQLITE.wait_out(mark)
            ...  # the operation
        finally:
            mark.depth -= 1
            if SQLITE.forking:
                SQLITE.notify()

    Not as calls to enter() and exit(): a signal handler (Ctrl-C) runs at the start of a
    call, and one raising there skipped an exit(), which left an operation counted forever
    and every later fork waiting for it. The count changes by attribute stores, at which no
    handler runs, and each is undone in the ``finally`` right after it.
    """

    # The fast path takes no lock (a hit passes here once: 78 ns, against 0.45 us with one):
    # an operation counts itself and then checks ``forking``; a fork sets ``forking`` and then
    # checks the counts. Under the GIL one of the two always sees the other. The lock and
    # condition are for waiting only.

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._local = threading.local()
        self._marks: weakref.WeakSet[_Mark] = weakref.WeakSet()  # a thread's goes with it
        self.forking = False

    def mark(self) -> _Mark:
        """The calling thread's mark."""
        try:
            mark: _Mark = self._local.mark
        except AttributeError:
            # Listed before it is kept: an interrupt in between leaves a mark listed but
            # unused, never one in use that a fork does not see.
            mark = _Mark()
            with self._lock:
                self._marks.add(mark)
            self._local.mark = mark
        return mark

    def wait_out(self, mark: _Mark) -> None:
        """Called by an operation that counted itself and then saw a fork under way: it waits,
        uncounted, until no fork is (an operation inside another just goes on). On return it
        is counted again and no fork is under way, one that began meanwhile included."""
        if mark.depth != 1:
            return
        while self.forking:
            mark.depth -= 1
            try:
                with self._lock:
                    self._changed.notify_all()
                    while self.forking:
                        self._changed.wait(_RECHECK)
            finally:
                mark.depth += 1

    def notify(self) -> None:
        """An operation ended while a fork waits, or a fork ended (in the parent): those
        waiting look again (they also do every _RECHECK seconds, should this be cut short)."""
        with self._lock:
            self._changed.notify_all()

    def before_fork(self) -> None:
        # A signal handler's exception here would not stop the fork (Python ignores errors
        # of fork hooks): the fork is to go on only once no other thread is inside SQLite.
        # The forking thread's own operation, if a handler forks in the middle of one, is
        # at a bytecode boundary, inside no SQLite call: not waited for (it never ends).
        own = getattr(self._local, "mark", None)
        while True:
            try:
                with self._lock:
                    self.forking = True
                    # Timed: a notify lost to an interrupt must not keep the fork waiting.
                    while any(mark.depth for mark in self._marks if mark is not own):
                        self._changed.wait(_RECHECK)
                return
            except BaseException:  # raised by a signal handler: wait on
                continue


def quiet(method: F) -> F:
    """``method``, a store operation that uses SQLite, made while no fork is under way."""

    @functools.wraps(method)
    def operation(*args: Any, **kwargs: Any) -> Any:
        mark = SQLITE.mark()
        mark.depth += 1
        try:
            if SQLITE.forking:
                SQLITE.wait_out(mark)
            return method(*args, **kwargs)
        finally:
            mark.depth -= 1
            if SQLITE.forking:
                SQLITE.notify()

    return cast(F, operation)


SQLITE = _Quiet()
"""Held around every SQLite operation of the disk stores (see _Quiet)."""

os.register_at_fork(
    before=SQLITE.before_fork,
    # Called in C, with no bytecode of ours before it for a signal handler to run at: the
    # parent's operations can never be held back for good by an interrupted hook.
    after_in_parent=functools.partial(setattr, SQLITE, "forking", False),
    after_in_child=SQLITE._reset,
)
os.register_at_fork(after_in_parent=SQLITE.notify)
