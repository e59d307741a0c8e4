"""joblib.Memory's interface over a CacheStor, for the libraries that take one.

scikit-learn's ``Pipeline(memory=...)`` (and others) accept any object with joblib.Memory's
``cache``: given ``cache_stor.memory(folder=...)``, a pipeline's fitted transformers are
cached by my_cache, with its rules (equivalent calls, edited code, every storage).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from my_cache.cache_stor import CacheStor


class JoblibMemory:
    """What ``CacheStor.memory(folder)`` returns: ``cache``, ``clear``, ``eval``,
    ``reduce_size`` and ``location``, as joblib.Memory has them."""

    def __init__(self, stor: CacheStor, folder: str | os.PathLike[str]) -> None:
        self._stor = stor
        self._folder = folder
        self._decorated: list[Any] = []
        self.location = os.fspath(folder)
        """The folder results are stored under (a name, with IN_REDIS)."""

    def cache(
        self,
        func: Callable[..., Any] | None = None,
        ignore: Iterable[str] | None = None,
        verbose: int | None = None,
        mmap_mode: str | None = None,
        cache_validation_callback: Callable[..., Any] | None = None,
    ) -> Any:
        """``func`` cached under this folder (``stor.cache(folder)(func)``); without
        ``func``, a decorator. ``ignore`` names parameters left out of the key. joblib's
        ``verbose`` is taken and unused (my_cache logs through ``is_debug_log``);
        ``mmap_mode`` may be ``"r"`` or None; ``cache_validation_callback`` must be None."""
        if mmap_mode not in (None, "r") or cache_validation_callback is not None:
            raise ValueError(
                "my_cache's joblib.Memory face takes mmap_mode 'r' or None, and no "
                "cache_validation_callback"
            )
        if func is None:
            return functools.partial(
                self.cache, ignore=ignore, verbose=verbose, mmap_mode=mmap_mode
            )
        cached = self._stor.cache(
            folder=self._folder, ignore=ignore or (), mmap_mode="r" if mmap_mode else None
        )(func)
        self._decorated.append(cached)
        return cached

    def eval(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``func(*args, **kwargs)``, cached."""
        return self.cache(func)(*args, **kwargs)

    def clear(self, warn: bool = True) -> None:
        """Delete every entry stored under this folder (by any function; in memory, by
        the functions this object decorated)."""
        self._stor._clear_folder(self._folder)
        for cached in self._decorated:
            cached.cache_clear()

    def reduce_size(self, *args: Any, **kwargs: Any) -> None:
        """Nothing to do: a folder's bound is the ``size_limit`` setting."""

    # A handle on the cache, as a joblib.Memory is one on its folder: scikit-learn's clone()
    # deep-copies a pipeline's memory, and a fitted pipeline is pickled with it.
    def __copy__(self) -> JoblibMemory:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> JoblibMemory:
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as its folder; unpickled, it stores through a CacheStor made from the
        settings of the process that loads it."""
        return _memory_of_settings, (self.location,)

    def __repr__(self) -> str:
        return f"JoblibMemory(location={self.location!r}, stor={self._stor!r})"


def _memory_of_settings(location: str) -> JoblibMemory:
    from my_cache.cache_stor import CacheStor  # here: cache_stor imports this module

    return CacheStor().memory(location)
