"""Single flight for threads: one computation per key at a time, shared by its waiters."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

R = TypeVar("R")


class _Flight(Generic[R]):
    __slots__ = ("done", "owner", "succeeded", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.owner = threading.get_ident()
        self.succeeded = False
        self.value: Any = None


class ThreadFlights(Generic[R]):
    """Concurrent ``run(key, compute)`` calls with one key run ``compute`` once.

    The others wait and get the same value. An exception is never shared: it reaches the
    caller whose computation raised it, and a waiter then runs ``compute`` itself.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._flights: dict[str, _Flight[R]] = {}

    def run(self, key: str, compute: Callable[[], R]) -> R:
        while True:
            with self._lock:
                flight = self._flights.get(key)
                leading = flight is None
                if flight is None:
                    flight = self._flights[key] = _Flight()
            if leading:
                try:
                    flight.value = compute()
                    flight.succeeded = True
                    return flight.value  # type: ignore[no-any-return]
                finally:
                    with self._lock:
                        del self._flights[key]
                    flight.done.set()
            if flight.owner == threading.get_ident():
                raise RecursionError(f"{self._name}() calls itself with the same arguments")
            flight.done.wait()
            if flight.succeeded:
                return flight.value  # type: ignore[no-any-return]
