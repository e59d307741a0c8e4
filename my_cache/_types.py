"""The types of what the decorators return."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, NamedTuple, ParamSpec, Protocol, TypeVar, overload

P = ParamSpec("P")
Q = ParamSpec("Q")
# Invariant: store(value) takes what the function returns.
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)
S = TypeVar("S")
T = TypeVar("T")


class CacheStoreError(RuntimeError):
    """An explicit management call (``cache_clear``, ``invalidate``) could not do its job: the
    store could not be reached or refused the change. The message names the function and the
    store. Decorated calls never raise it: a store that fails makes them compute."""


class CacheInfo(NamedTuple):
    """A decorated function's statistics since it was decorated or last cleared.

    ``misses`` counts runs of the function; ``hits`` counts calls answered without one.
    """

    hits: int
    misses: int


class _Controls(Protocol[P]):
    """The controls every decorated function has, sync or async."""

    __name__: str
    __qualname__: str

    def cache_info(self) -> CacheInfo:
        """Hits and misses so far, as ``functools.lru_cache`` reports them."""
        ...

    def cache_clear(self) -> None:
        """Delete every entry of this function (all versions) and reset its statistics;
        CacheStoreError if the store cannot."""
        ...

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Delete the entry of this call; True if there was one; CacheStoreError if the store
        cannot."""
        ...


class CachedFunction(_Controls[P], Protocol[P, R]):
    """A function decorated by ``cache``: call it as the original.

    ``cache_info()``, ``cache_clear()`` and ``invalidate(...)`` act on this function's
    entries only; ``is_cached(...)``, ``refresh(...)`` and ``store(value, ...)`` on the entry
    of one call (equivalent calls are one entry). On a method, reach them through the class
    and pass the instance: ``Class.method.invalidate(obj, x)``.
    """

    @property
    def __wrapped__(self) -> Callable[P, R]: ...

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...

    def is_cached(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Whether this call would be a hit now; nothing is counted."""
        ...

    def refresh(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function, store its result in place of this call's entry, return it."""
        ...

    def store(self, value: R, /, *args: P.args, **kwargs: P.kwargs) -> None:
        """Store ``value`` as this call's result; CacheStoreError if the store cannot."""
        ...

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> CachedFunction[P, R]: ...

    @overload
    def __get__(
        self: CachedFunction[Concatenate[S, Q], T], instance: S, owner: type[Any]
    ) -> BoundCachedFunction[Q, T]: ...


class AsyncCachedFunction(_Controls[P], Protocol[P, R]):
    """An ``async def`` function decorated by ``cache_async``: await it as the original.
    Its controls are those of CachedFunction; ``is_cached``, ``refresh`` and ``store`` are
    coroutine functions."""

    @property
    def __wrapped__(self) -> Callable[P, Coroutine[Any, Any, R]]: ...

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]: ...

    async def is_cached(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Whether this call would be a hit now; nothing is counted."""
        ...

    async def refresh(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Await the coroutine, store its result in place of this call's entry, return it."""
        ...

    async def store(self, value: R, /, *args: P.args, **kwargs: P.kwargs) -> None:
        """Store ``value`` as this call's result, written when this returns;
        CacheStoreError if the store cannot."""
        ...

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> AsyncCachedFunction[P, R]: ...

    @overload
    def __get__(
        self: AsyncCachedFunction[Concatenate[S, Q], T], instance: S, owner: type[Any]
    ) -> BoundCachedFunction[Q, Coroutine[Any, Any, T]]: ...


class BoundCachedFunction(Protocol[P, R_co]):
    """A decorated method reached through an instance."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...

    def cache_info(self) -> CacheInfo: ...

    def cache_clear(self) -> None: ...
