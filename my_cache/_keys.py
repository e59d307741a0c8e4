"""Normalising a call against its function's signature, so equivalent calls are one key.

Performance was chosen over brevity here: the signature is read once per function, and the
per-call work is dict and tuple operations only (``inspect.Signature.bind`` costs microseconds
per call, more than a whole in-memory hit should). For the same reason plain calls get keys
from ``marshal`` (``marshal_keys``) rather than from the serialiser.
"""

from __future__ import annotations

import hashlib
import inspect
import marshal
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

Normalised = tuple[tuple[Any, ...], dict[str, Any]]
Normaliser = Callable[[tuple[Any, ...], dict[str, Any]], Normalised]
Flattener = Callable[[tuple[Any, ...], dict[str, Any]], tuple[Any, ...]]
KeyFunction = Callable[[tuple[Any, ...], dict[str, Any]], str]

_P = inspect.Parameter


class RefusedCall(TypeError):
    """A call the function itself would refuse, worded as Python words it."""


class CallShape(NamedTuple):
    """How calls of one function are normalised, read from its signature once."""

    normalise: Normaliser
    """``normalise(args, kwargs) -> (args, kwargs)``: every parameter with defaults applied.
    Positional-only parameters and ``*args`` stay positional; every other parameter, and
    ``**kwargs``, becomes a keyword, in name order. Parameters named in ``ignore`` are left
    out. A call that the function itself would refuse raises the same TypeError."""

    flatten: Flattener | None
    """``flatten(args, kwargs)``: the normalised call as one tuple, positional values then
    keyword values in signature order; None for a function taking ``**kwargs``, whose keyword
    names vary from call to call and so are not implied by the tuple's length."""

    flat_arity: int | None
    """How many positional arguments make a call (without keywords) its own flattened form:
    every parameter passed positionally and none ignored. None if no call is."""


def make_normaliser(func: Callable[..., Any], ignore: Iterable[str] = ()) -> Normaliser:
    """``normalise`` for calls of ``func``: see ``CallShape.normalise``."""
    return read_call_shape(func, ignore, func.__qualname__).normalise


def read_call_shape(func: Callable[..., Any], ignore: Iterable[str], name: str) -> CallShape:
    """Read ``func``'s signature once and return how to normalise its calls; ``name`` is the
    function's name in error messages; TypeError if Python does not tell its parameters."""
    try:
        signature = inspect.signature(func)
    except ValueError as error:  # some builtins: max, print
        raise TypeError(f"cannot cache {name}(): {error}, so calls cannot be keyed") from None
    params = list(signature.parameters.values())
    ignored = frozenset([ignore] if isinstance(ignore, str) else ignore)
    unknown = ignored - signature.parameters.keys()
    if unknown:
        raise ValueError(
            f"{name}() has no parameter or captured variable "
            f"{', '.join(map(repr, sorted(unknown)))} to ignore"
        )
    positional_only = tuple(p.name for p in params if p.kind is _P.POSITIONAL_ONLY)
    positional_or_keyword = tuple(p.name for p in params if p.kind is _P.POSITIONAL_OR_KEYWORD)
    keyword_only = tuple(p.name for p in params if p.kind is _P.KEYWORD_ONLY)
    positional = positional_only + positional_or_keyword
    keywords = frozenset(positional_or_keyword + keyword_only)
    keywords_in_order = tuple(sorted(keywords))
    named = positional + keyword_only
    defaults = {p.name: p.default for p in params if p.default is not _P.empty}
    required = tuple(name for name in named if name not in defaults)
    takes_var_positional = any(p.kind is _P.VAR_POSITIONAL for p in params)
    takes_var_keyword = any(p.kind is _P.VAR_KEYWORD for p in params)
    keeps_var_positional = not any(
        p.kind is _P.VAR_POSITIONAL and p.name in ignored for p in params
    )
    keeps_var_keyword = not any(p.kind is _P.VAR_KEYWORD and p.name in ignored for p in params)
    kept_positional_only = tuple(name for name in positional_only if name not in ignored)
    kept_keywords = tuple(name for name in keywords_in_order if name not in ignored)
    n_positional = len(positional)
    # The common call, every parameter passed positionally, needs no dict of values.
    all_positional_order = tuple(
        sorted((name, i) for i, name in enumerate(positional) if name not in ignored)
    )
    has_fast_path = not positional_only and not keyword_only
    position = {name: index for index, name in enumerate(positional)}
    refuser = _refuser(func, signature)

    def refuse(args: tuple[Any, ...], kwargs: dict[str, Any]) -> TypeError:
        try:
            refuser(*args, **kwargs)
        except TypeError as error:
            return RefusedCall(str(error))
        return RefusedCall(f"{name}() cannot take these arguments")  # pragma: no cover

    def normalise(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Normalised:
        if has_fast_path and not kwargs and len(args) == n_positional:
            return (), {name: args[i] for name, i in all_positional_order}
        if len(args) > n_positional and not takes_var_positional:
            raise refuse(args, kwargs)
        values = dict(defaults)
        values.update(zip(positional, args, strict=False))
        extra_keywords: dict[str, Any] = {}
        for name, value in kwargs.items():
            if name in keywords:
                # Given positionally too? Never so for a keyword-only name, which has no position.
                if position.get(name, len(args)) < len(args):
                    raise refuse(args, kwargs)
                values[name] = value
            elif takes_var_keyword:
                extra_keywords[name] = value
            else:
                raise refuse(args, kwargs)
        if len(values) < len(named) and any(name not in values for name in required):
            raise refuse(args, kwargs)
        call_args = tuple(values[name] for name in kept_positional_only)
        if keeps_var_positional:
            call_args += args[n_positional:]
        call_kwargs = {name: values[name] for name in kept_keywords}
        if extra_keywords and keeps_var_keyword:
            call_kwargs.update(extra_keywords)
            call_kwargs = dict(sorted(call_kwargs.items()))
        return call_args, call_kwargs

    if takes_var_keyword:
        return CallShape(normalise, None, None)
    kept_in_signature_order = tuple(name for name in named if name in kept_keywords)

    def flatten(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        call_args, call_kwargs = normalise(args, kwargs)
        return call_args + tuple(call_kwargs[name] for name in kept_in_signature_order)

    flat_arity = n_positional if has_fast_path and not ignored else None
    return CallShape(normalise, flatten, flat_arity)


def _refuser(func: Callable[..., Any], signature: inspect.Signature) -> Callable[..., None]:
    """A function that does nothing, with ``func``'s parameters and name: a call ``func``
    refuses raises from it the TypeError Python words for ``func``, in every version.
    (Calling ``func`` itself would also run it when the normaliser is wrong.)"""
    # Only which parameters have defaults changes the wording, not the defaults' values.
    stand_in = signature.replace(
        parameters=[
            p.replace(annotation=_P.empty, default=None if p.default is not _P.empty else _P.empty)
            for p in signature.parameters.values()
        ],
        return_annotation=inspect.Signature.empty,
    )
    namespace: dict[str, Any] = {}
    exec(f"def refuser{stand_in}: pass", namespace)  # its text holds parameter names only
    refuser: Callable[..., None] = namespace["refuser"]
    func = inspect.unwrap(func)  # named as the function the signature is read from
    code = getattr(func, "__code__", None)
    refuser.__name__ = getattr(func, "__name__", "function")
    refuser.__qualname__ = str(
        getattr(code, "co_qualname", None) or getattr(func, "__qualname__", refuser.__name__)
    )
    return refuser


# marshal's version 2 writes no back-references, so equal values give equal bytes whatever
# their identity; later versions would tell apart two equal strings by whether one is shared.
# Its output for the plain scalars and containers below has not changed since Python 2.5 and
# is little-endian on every machine (tests/test_memory_keys.py holds it to fixed bytes).
_MARSHAL_VERSION = 2
_MARSHAL_KEY_LIMIT = 256
_PLAIN_SCALARS = frozenset([type(None), bool, int, float, complex, str, bytes])
# marshal's codes for dicts and sets (written in iteration order, which two equal ones need
# not share), for any other buffer (written as bytes: a bytearray would pass for bytes) and
# for code objects (which the serialiser refuses). Numbers and strings may hold these bytes
# too; only then is the slower walk over the values needed.
_CODES_OF_NON_PLAIN = b"{<>sc"


def marshal_keys(
    shape: CallShape, prefix: str, otherwise: KeyFunction, *, local: bool
) -> KeyFunction | None:
    """``key(args, kwargs)`` from marshal's bytes of the flattened call, or
    ``otherwise(args, kwargs)`` for calls these cannot key; None when the function's calls
    cannot be flattened. ``local``: the key is ``prefix`` and the bytes themselves, valid in
    this process only; else ``prefix`` and their hash, the same in every process and Python.
    The values carry no names: ``prefix`` does (the identity's variant holds the signature).

    marshal keys values made only of exact builtin scalars (None, bool, int, float, complex,
    str, bytes) in tuples and lists: its bytes for those are equal exactly when the values
    are equal and of the same types, which is how ``SerialiseBin`` tells calls apart, so for
    one signature the two kinds of key make the same hits. They never collide: a pickle's
    first byte is PROTO (0x80), a flattened call's marshal a tuple's "(". Long values go to
    ``otherwise`` too, so keys stay small and the walk over the values shallow.
    """
    flatten, flat_arity = shape.flatten, shape.flat_arity
    if flatten is None:
        return None
    dumps, blake2b = marshal.dumps, hashlib.blake2b

    def key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        values = args if not kwargs and len(args) == flat_arity else flatten(args, kwargs)
        try:
            data = dumps(values, _MARSHAL_VERSION)
        except ValueError:  # a type marshal refuses, or a cycle
            return otherwise(args, kwargs)
        if len(data) > _MARSHAL_KEY_LIMIT or (
            len(data.translate(None, _CODES_OF_NON_PLAIN)) != len(data) and not _plain(values)
        ):
            return otherwise(args, kwargs)
        if local:
            # Always holds a NUL (in the tuple's length), which tells it apart from a hash.
            return prefix + data.decode("latin-1")
        return prefix + blake2b(data, digest_size=16).hexdigest()

    return key


def _plain(values: tuple[Any, ...] | list[Any]) -> bool:
    # Only called within the length limit: each level costs marshal 5 bytes, so at most ~50
    # levels, far from the recursion limit.
    for value in values:
        kind = type(value)
        if kind in _PLAIN_SCALARS:
            continue
        if (kind is tuple or kind is list) and _plain(value):
            continue
        return False
    return True
