"""The types of what the decorators return."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Concatenate, NamedTuple, ParamSpec, Protocol, TypeVar, overload

P = ParamSpec("P")
Q = ParamSpec("Q")
R = TypeVar("R", covariant=True)
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


class CachedFunction(Protocol[P, R]):
    """A function decorated by ``cache`` or ``cache_async``: call it as the original.

    ``cache_info()``, ``cache_clear()`` and ``invalidate(...)`` act on this function's
    entries only. On a method, reach them through the class and pass the instance:
    ``Class.method.invalidate(obj, x)``.
    """

    __name__: str
    __qualname__: str

    @property
    def __wrapped__(self) -> Callable[P, R]: ...

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...

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

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> CachedFunction[P, R]: ...

    @overload
    def __get__(
        self: CachedFunction[Concatenate[S, Q], T], instance: S, owner: type[Any]
    ) -> BoundCachedFunction[Q, T]: ...


class BoundCachedFunction(Protocol[P, R]):
    """A decorated method reached through an instance."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...

    def cache_info(self) -> CacheInfo: ...

    def cache_clear(self) -> None: ...
