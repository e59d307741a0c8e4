"""Single flight: one computation per key at a time, shared by those waiting for that key."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from my_cache._fork import renew_after_fork

R = TypeVar("R")


class _Flight(Generic[R]):
    __slots__ = ("done", "owner", "succeeded", "value")

    def __init__(self) -> None:
        # Held until the computation ends; waiters pass through it. A plain lock rather than
        # an Event: every miss makes one, and an Event costs 1.4 us to create, a lock 0.1.
        self.done = threading.Lock()
        self.done.acquire()
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
        self.landed = 0
        """Computations finished so far: unchanged since a lookup, no flight has stored since."""
        renew_after_fork(self)

    def after_fork(self) -> None:
        """In a forked child, computations of the parent's other threads never land."""
        self._lock = threading.Lock()
        self._flights = {}

    def run(self, key: str, compute: Callable[[], R], shared: Callable[[], None]) -> R:
        """``compute()``'s value, or that of the same key's computation running meanwhile
        in another thread: then ``shared()`` is called."""
        while True:
            flight, leading = self._claim(key)
            if leading:
                return self._lead(key, flight, compute)
            self._wait(flight)
            if flight.succeeded:
                shared()
                return flight.value  # type: ignore[no-any-return]

    def run_fresh(self, key: str, compute: Callable[[], R]) -> R:
        """``compute()``'s value, computed once the key's computation running now (if any)
        has ended, never shared from it: a refresh must not be undone by an older value
        landing after it. Calls meanwhile wait for this one's value."""
        while True:
            flight, leading = self._claim(key)
            if leading:
                return self._lead(key, flight, compute)
            self._wait(flight)

    def _claim(self, key: str) -> tuple[_Flight[R], bool]:
        """The key's flight, and whether the caller made it (and so is to compute it)."""
        with self._lock:
            flight = self._flights.get(key)
            if flight is not None:
                return flight, False
            flight = self._flights[key] = _Flight()
            return flight, True

    def _wait(self, flight: _Flight[R]) -> None:
        if flight.owner == threading.get_ident():
            raise RecursionError(f"{self._name}() calls itself with the same arguments")
        with flight.done:  # until the computation ends
            pass

    def _lead(self, key: str, flight: _Flight[R], compute: Callable[[], R]) -> R:
        try:
            flight.value = compute()
            flight.succeeded = True
            return flight.value  # type: ignore[no-any-return]
        finally:
            with self._lock:
                del self._flights[key]
                self.landed += 1
            flight.done.release()


_FAILED: Any = object()


class AsyncFlights(Generic[R]):
    """Concurrent ``await run(key, compute)`` calls with one key, in one event loop, await
    ``compute()`` once; the others get its value.

    As with threads, an exception (or cancellation) of the computation is never shared:
    a waiter then computes itself. A cancelled waiter does not cancel the computation.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._flights: dict[str, tuple[asyncio.Future[Any], asyncio.Task[Any] | None]] = {}

    async def run(
        self, key: str, compute: Callable[[], Awaitable[R]], shared: Callable[[], None]
    ) -> R:
        """``await compute()``'s value, or that of the same key's computation awaited
        meanwhile by another task: then ``shared()`` is called."""
        while (flight := self._running(key)) is not None:
            value = await asyncio.shield(flight)
            if value is not _FAILED:
                shared()
                return value  # type: ignore[no-any-return]
        return await self._lead(key, compute)

    async def run_fresh(self, key: str, compute: Callable[[], Awaitable[R]]) -> R:
        """``await compute()``'s value, awaited once the key's computation running now (if
        any) has ended, never shared from it (see ThreadFlights.run_fresh)."""
        while (flight := self._running(key)) is not None:
            await asyncio.shield(flight)
        return await self._lead(key, compute)

    def _running(self, key: str) -> asyncio.Future[Any] | None:
        """The future of the key's computation in this event loop, if one runs."""
        flight = self._flights.get(key)
        if flight is None or flight[0].get_loop() is not asyncio.get_running_loop():
            return None
        if flight[1] is asyncio.current_task():
            raise RecursionError(f"{self._name}() awaits itself with the same arguments")
        return flight[0]

    async def _lead(self, key: str, compute: Callable[[], Awaitable[R]]) -> R:
        # Another event loop (another thread) may hold a flight for this key: this loop's
        # computation then runs on its own, unregistered.
        future = asyncio.get_running_loop().create_future()
        registered = key not in self._flights
        if registered:
            self._flights[key] = (future, asyncio.current_task())
        try:
            value = await compute()
        except BaseException:
            future.set_result(_FAILED)
            raise
        else:
            future.set_result(value)
            return value
        finally:
            if registered:
                del self._flights[key]
