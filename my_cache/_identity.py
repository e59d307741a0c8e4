"""Which function is this? The part of every key that tells decorated functions apart.

A function has a ``name``, a ``revision`` and a ``variant``:

- ``name``: ``module:qualname``, ``__main__`` named by its program (see ``_naming``).
- ``revision``: what code computes it: ``c`` and a hash of its bytecode and of the functions
  it captures (see ``_fingerprint``), or ``v<version>`` when the decorator pins one.
- ``variant``: what else makes two function objects of one code compute different things:
  the values a closure captures, what a partial is bound to, the ignored parameters, the
  key serialiser (see ``_describe``) and the parameters' names and kinds.

A key is ``<generation>:<variant>:<call hash>``: 16 hex digits of the hash of name and
revision, 12 of the variant's. Short on purpose, since every write stores the key twice
(store and catalogue) and a miss's cost grows with it; the name is in the catalogue's row.
Entries of another generation of the same name are stale: no current code reads them.

Worked out at the first call (a closure's cells may be filled after decoration, as a
recursive one's is), then kept: never per call.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import re
import sys
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from my_cache import _key_format as key_format
from my_cache._describe import Describer, cached_by, python_call
from my_cache._fingerprint import code_form
from my_cache._naming import name_of
from my_cache._storages.base import Entry
from my_cache.serialisers import Serialise

_VERSION = re.compile(r"[A-Za-z0-9._+-]{1,64}")
# How the call part of keys is made: changed with it, so that entries an older my_cache made,
# which no call finds any more, are of another generation: stale (2: marshal's for plain calls).
_KEYS_MADE = 2


@dataclass(frozen=True)
class Identity:
    name: str
    revision: str
    variant: str
    final: bool = True
    """False while a captured cell is empty: worked out again at the next call."""

    @property
    def prefix(self) -> str:
        """Every key of this function object starts with this."""
        generation = f"{self.name}\0{self.revision}\0{_KEYS_MADE}"
        return key_format.prefix(_digest(generation.encode()), self.variant)

    def clears(self, key: str) -> bool:
        """Whether ``cache_clear()`` removes ``key``: an entry of this function object only.
        Not its name's entries of other code: another live function may have the same name
        (two lambdas of one module), and stale entries are ``mycache clear --stale``'s."""
        return key.startswith(self.prefix)


@dataclass(frozen=True)
class Target:
    """What ``cache()`` was given, taken apart once at decoration."""

    call: Callable[..., Any]
    """What the wrapper calls with the caller's arguments."""
    code_owner: Any
    """The function whose code makes the revision and whose captures the variant."""
    signature_of: Callable[..., Any]
    """Whose signature normalises a call: ``call``'s, or the unbound method's when
    ``instance`` is set."""
    name: str
    """``module:qualname``: in keys, logs and the catalogue."""
    instance: Any = None
    """For a bound method or callable object, the ``self`` put before each call's arguments
    and keyed by value, as any method's is; else None."""
    bound: tuple[str, Any] | tuple[()] = ()
    """A partial's (function, args, keywords), labelled for messages: part of the variant."""


def take_apart(func: Any) -> Target:
    """The Target of a decorated callable; TypeError naming it if it cannot be cached."""
    if isinstance(func, functools.partial):
        inner = _unwrapped(func.func)
        bound = ("the partial's arguments", (func.func, func.args, func.keywords))
        return Target(func, inner, func, name_of(inner), bound=bound)
    if isinstance(func, types.MethodType):
        method = func.__func__
        return Target(func, method, method, name_of(method), instance=func.__self__)
    if isinstance(func, types.FunctionType | type):
        inner = _unwrapped(func)  # one of ours cached again: what it caches
        return Target(func, inner, func, name_of(inner))
    call = python_call(func)
    if call is not None:  # a callable object, a class-based decorator too
        # A decorator object is named by what it decorates, as functools.wraps names it.
        wrapped = getattr(func, "__wrapped__", None)
        name = name_of(wrapped) if isinstance(wrapped, types.FunctionType) else name_of(call)
        return Target(func, call, call, name, instance=func)
    owner = getattr(func, "__self__", None)
    if isinstance(func, types.BuiltinMethodType | types.MethodWrapperType) and not (
        owner is None or isinstance(owner, types.ModuleType | type)  # dict.fromkeys: a name
    ):  # {}.get, pattern.findall: their object is keyed by value with each call
        unbound = getattr(type(owner), func.__name__)
        return Target(func, func, unbound, name_of(func), instance=owner)
    if isinstance(getattr(func, "__qualname__", None), str):  # builtins, lru_cache objects
        inner = _unwrapped(func)
        return Target(func, inner, func, name_of(inner))
    raise TypeError(
        f"cache() cannot decorate {func!r}: not a function, method, functools.partial "
        "or object of a class with __call__"
    )


def _unwrapped(func: Any) -> Any:
    """The Python function behind ``func``: a method's, what one of our wrappers caches, or
    what lru_cache and alike wrap."""
    if isinstance(func, types.MethodType):
        return func.__func__
    if cached_by(func) is not func:
        return _unwrapped(cached_by(func))
    wrapped = getattr(func, "__wrapped__", None)
    if not isinstance(func, types.FunctionType) and wrapped is not None:
        return _unwrapped(wrapped)
    return func


def identify(
    target: Target,
    *,
    version: str | None,
    ignore: frozenset[str],
    serialiser: Serialise,
) -> Identity:
    """The identity of a decorated function (see the module's docstring); TypeError naming
    the function and what it captures when that cannot be told apart."""
    owner = target.code_owner
    if isinstance(owner, type):
        _check_still_named(owner)
    describe = Describer(target.name, serialiser, with_code=version is None, ignore=ignore)
    try:
        made_by = (
            # A class: its methods (whose code goes to the revision) and its attributes.
            describe.value("the class", owner)
            if isinstance(owner, type)
            else describe.captures(owner)
        )
        variant = (
            made_by,
            # What a callable object holds and runs (a decorator object's function), even
            # with ignore=['self']: its code and captures, not only its name.
            describe.value("self", _held_callables(target.instance))
            if target.instance is target.call
            else (),
            describe.value(*target.bound) if target.bound else (),
            tuple(sorted(ignore)),
            describe.serialiser(),
            _parameters(target.signature_of),
        )
    except RecursionError:
        raise TypeError(
            f"cannot cache {target.name}(): what it captures is nested too deeply to be told "
            "apart. Pass it as an argument instead, or leave it out with ignore=[...]"
        ) from None
    except TypeError:
        raise
    except Exception as error:  # an object's own __getattr__, __iter__ or __reduce__ failing
        raise TypeError(
            f"cannot cache {target.name}(): telling apart what it captures failed with "
            f"{error!r}. Pass it as an argument instead, or leave it out with ignore=[...]"
        ) from error
    if version is None:
        code = (sys.implementation.cache_tag, code_form(owner), describe.codes)
        revision = "c" + _digest(repr(code).encode())
    else:
        revision = "v" + version
    return Identity(
        target.name, revision, _digest(repr(variant).encode(), 6), final=not describe.saw_empty
    )


def _held_callables(instance: Any) -> dict[str, Any]:
    state = getattr(instance, "__dict__", None)
    if not isinstance(state, dict):
        return {}
    return {name: value for name, value in state.items() if callable(value)}


def _check_still_named(cls: type) -> None:
    """TypeError if ``@cache`` was written on the ``class`` statement: its name is then our
    function, and pickle, which finds a class by its name, cannot store its objects."""
    found: Any = sys.modules.get(cls.__module__)
    for part in cls.__qualname__.split("."):
        found = getattr(found, part, None)
    if found is not None and found is not cls and getattr(found, "__wrapped__", None) is cls:
        raise TypeError(
            f"cannot cache {name_of(cls)}(): @cache on a class statement makes its name a "
            "function, so its objects cannot be stored. Decorate a function that makes "
            f"them, or keep the class: make = cache(...)({cls.__qualname__})"
        )


def checked_version(name: str, version: str | int | None) -> str | None:
    """``version`` as a key holds it; ValueError naming the function if it cannot be one."""
    if version is None:
        return None
    text = str(version) if isinstance(version, int | str) else ""
    if isinstance(version, bool) or not _VERSION.fullmatch(text):
        raise ValueError(
            f"{name}: version must be an int or 1-64 letters, digits and ._+-, got {version!r}"
        )
    return text


def _parameters(func: Any) -> tuple[tuple[str, str], ...]:
    """The names and kinds of ``func``'s parameters, in order: keys hold a call's values by
    position where they can, so a function whose parameters are reordered or renamed, its
    version pinned, must key apart (else it is served another call's entry)."""
    try:
        parameters = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):  # no signature to read: calls are refused anyway
        return ()
    return tuple((p.name, p.kind.name) for p in parameters)


def _digest(data: bytes, size: int = 8) -> str:
    return hashlib.blake2b(data, digest_size=size).hexdigest()


def generation_of(key: str) -> str | None:
    """The generation (name and revision) in an entry's key, or None if an older my_cache
    wrote it."""
    parts = key_format.split(key)
    return None if parts is None or not parts[2] else parts[0]


def stale_keys(entries: Iterable[Entry]) -> set[tuple[str, str]]:
    """``(folder, key)`` of the entries no current code can hit: written by other code than
    the newest entry of the same function in the same folder, or by an older my_cache (its
    key in another shape, or its function unknown)."""
    newest: dict[tuple[str, str], tuple[float, str]] = {}
    generations = []
    for entry in entries:
        generation = generation_of(entry.key) if entry.function else None
        generations.append((entry, generation))
        slot = (entry.folder, entry.function)
        if generation is not None and (slot not in newest or entry.created > newest[slot][0]):
            newest[slot] = (entry.created, generation)
    return {
        (entry.folder, entry.key)
        for entry, generation in generations
        if generation is None or generation != newest[(entry.folder, entry.function)][1]
    }
