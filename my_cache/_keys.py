"""Normalising a call against its function's signature, so equivalent calls are one key.

Performance was chosen over brevity here: the signature is read once per function, and the
per-call work is dict and tuple operations only (``inspect.Signature.bind`` costs microseconds
per call, more than a whole in-memory hit should).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

Normalised = tuple[tuple[Any, ...], dict[str, Any]]
Normaliser = Callable[[tuple[Any, ...], dict[str, Any]], Normalised]

_P = inspect.Parameter


def function_id(func: Callable[..., Any]) -> str:
    """The name a function's entries are stored under: ``module.qualname``."""
    return f"{func.__module__}.{func.__qualname__}"


def make_normaliser(func: Callable[..., Any], ignore: Iterable[str] = ()) -> Normaliser:
    """Return ``normalise(args, kwargs) -> (args, kwargs)`` for calls of ``func``.

    The result holds every parameter with defaults applied: positional-only parameters and
    ``*args`` stay positional; every other parameter, and ``**kwargs``, becomes a keyword,
    in name order. Parameters named in ``ignore`` are left out. A call that ``func`` itself
    would refuse raises the same TypeError.
    """
    signature = inspect.signature(func)
    params = list(signature.parameters.values())
    ignored = frozenset([ignore] if isinstance(ignore, str) else ignore)
    unknown = ignored - signature.parameters.keys()
    if unknown:
        raise ValueError(
            f"{func.__qualname__}() has no parameter {', '.join(map(repr, sorted(unknown)))} "
            "to ignore"
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
    qualname = func.__qualname__

    def refuse(args: tuple[Any, ...], kwargs: dict[str, Any]) -> TypeError:
        try:
            signature.bind(*args, **kwargs)
        except TypeError as error:
            return TypeError(f"{qualname}() {error}")
        return TypeError(f"{qualname}() cannot take these arguments")  # pragma: no cover

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
                if position.get(name, n_positional) < len(args):
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

    return normalise
