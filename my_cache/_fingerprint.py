"""What a function's code computes, as plain data to hash: its bytecode without line numbers,
so comments, blank lines and moved code keep their entries and any other edit does not."""

from __future__ import annotations

import types
from collections.abc import Iterable
from typing import Any

from my_cache._naming import name_of


def code_form(function: Any) -> tuple[Any, ...]:
    """The bytecode of a Python function, constants included (a changed ``return 2`` is
    another function), line numbers and its docstring's text left out; for a callable
    defined in C, its name."""
    code = getattr(function, "__code__", None)
    if not isinstance(code, types.CodeType):
        return ("builtin", name_of(function))
    if code.co_filename.startswith("<attrs generated"):
        # attrs writes hash(<a string>) into the code it generates: it changes every run.
        return ("generated", code.co_filename.partition(" ")[2], code.co_name)
    return _code_form(code, getattr(function, "__doc__", None))


def _code_form(code: types.CodeType, doc: object) -> tuple[Any, ...]:
    consts: Iterable[Any] = code.co_consts
    if isinstance(doc, str) and code.co_consts[:1] == (doc,):
        # An edited docstring computes nothing else; its slot keeps the other indices.
        consts = ("<docstring>", *code.co_consts[1:])
    return (
        code.co_code,
        code.co_argcount,
        code.co_posonlyargcount,
        code.co_kwonlyargcount,
        code.co_flags,
        code.co_names,
        code.co_varnames,
        code.co_freevars,
        code.co_cellvars,
        code.co_exceptiontable,
        tuple(_const_form(const) for const in consts),
    )


def _const_form(const: Any) -> Any:
    if isinstance(const, types.CodeType):
        return ("code", _code_form(const, None))
    if isinstance(const, tuple):
        return ("tuple", tuple(_const_form(item) for item in const))
    if isinstance(const, frozenset):
        # Its iteration order varies with PYTHONHASHSEED.
        return ("frozenset", tuple(sorted(repr(_const_form(item)) for item in const)))
    return (type(const).__name__, repr(const))
