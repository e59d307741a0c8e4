"""Which function is this? The part of every key that tells decorated functions apart.

A key is ``<name>:<revision>:<variant>:<call>``:

- ``name``: ``module:qualname``. The colon keeps a module path and a class path apart
  (``pkg.a:b`` is not ``pkg:a.b``). A function in ``__main__`` is named by its program: the
  script's real path, the module of ``python -m``, the notebook, or the ``-c`` command text.
- ``revision``: what code computes it: ``c`` and a hash of the bytecode (its own code and
  that of the functions it captures; not line numbers, so comments and blank lines do not
  count), or ``v<version>`` when the decorator pins one.
- ``variant``: a hash of what else makes two function objects of one code compute different
  things: the values a closure captures, a partial's bound arguments, the ignored
  parameters and the key serialiser.

All three are computed once per decorated function, at its first call (a closure's cells may
be filled after decoration, as a recursive one's is), never per call.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import sys
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from my_cache._storages.base import Entry
from my_cache.serialisers import Serialise, SerialiseBin

_MAIN_MODULES = frozenset({"__main__", "__mp_main__"})  # __mp_main__: a spawned worker's
_VERSION = re.compile(r"[A-Za-z0-9._+-]{1,64}")
_REVISION = re.compile(r"(c[0-9a-f]{16}|v[A-Za-z0-9._+-]{1,64})")
MARKER = "__my_cache__"
"""The attribute a decorated function carries: its Target (for functions that capture it)."""


@dataclass(frozen=True)
class Identity:
    name: str
    revision: str
    variant: str
    final: bool = True
    """False while a captured cell is empty (filled later, it changes the identity)."""

    @property
    def prefix(self) -> str:
        """Every key of this function object starts with this."""
        return f"{self.name}:{self.revision}:{self.variant}:"

    def clears(self, key: str) -> bool:
        """Whether ``cache_clear()`` removes ``key``: an entry of this function object only.
        Not its name's entries of other code: another live function may have the same name
        (two lambdas of one module), and stale entries are ``mycache clear --stale``'s."""
        return key.startswith(self.prefix)


class Target(NamedTuple):
    """What ``cache()`` was given, taken apart once at decoration."""

    call: Callable[..., Any]
    """What the wrapper calls with the caller's arguments."""
    code_owner: Any
    """The function (or class) whose name and code make the name and revision."""
    signature_of: Callable[..., Any]
    """Whose signature normalises a call: ``call``'s, or the unbound method's when
    ``instance`` is set."""
    instance: Any
    """For a bound method or callable instance, the ``self`` passed by value with each call
    (like any method's); else None."""
    has_instance: bool
    bound: tuple[str, Any] | tuple[()]
    """What else the call is bound to, as part of the variant: (label, value), such as a
    partial's (func, args, keywords); else ()."""
    name: str


def take_apart(func: Any) -> Target:
    """The Target of a decorated callable; TypeError naming it if it cannot be cached."""
    if isinstance(func, functools.partial):
        inner = _code_owner(func.func)
        bound = ("the partial's arguments", (func.func, func.args, func.keywords))
        return Target(func, inner, func, None, False, bound, name_of(inner))
    if isinstance(func, types.MethodType):
        return Target(func, func.__func__, func.__func__, func.__self__, True, (), name_of(func))
    if isinstance(func, types.FunctionType | type):
        return Target(func, func, func, None, False, (), name_of(func))
    call = getattr(type(func), "__call__", None)  # noqa: B004 (the class's, not the object's)
    if isinstance(call, types.FunctionType):  # a callable object, a class-based decorator too
        return Target(func, call, call, func, True, (), name_of(call))
    if _has_name(func):  # a builtin, functools.lru_cache and alike
        owner = _code_owner(func)
        bound_to = getattr(func, "__self__", None)
        if bound_to is None or isinstance(bound_to, types.ModuleType):
            return Target(func, owner, func, None, False, (), name_of(owner))
        bound = ("the object of the method", bound_to)  # {1: 2}.get, pattern.findall
        return Target(func, owner, func, None, False, bound, name_of(owner))
    raise TypeError(
        f"cache() cannot decorate {func!r}: not a function, method, functools.partial, class "
        "or instance of a class with __call__"
    )


def _has_name(func: Any) -> bool:
    return isinstance(getattr(func, "__qualname__", None), str)


def _code_owner(func: Any) -> Any:
    if isinstance(func, types.MethodType):
        return func.__func__
    if isinstance(func, types.FunctionType | type):
        return func
    wrapped = getattr(func, "__wrapped__", None)
    if wrapped is not None:  # functools.lru_cache and alike: the function they wrap
        return _code_owner(wrapped)
    if _has_name(func):
        return func
    return getattr(type(func), "__call__", func)  # noqa: B004


def name_of(func: Any) -> str:
    """``module:qualname`` of a function, class or method; ``__main__`` named by its program."""
    module = getattr(func, "__module__", None) or "<no module>"
    qualname = getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func))
    return f"{program(module)}:{qualname}"


def program(module: str) -> str:
    """``module``, or for the ``__main__`` module the program it is: the same program run
    again gives the same name; two programs give two."""
    if module not in _MAIN_MODULES:
        return module
    main = sys.modules.get(module)
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name not in _MAIN_MODULES:
        return str(spec.name)  # python -m package.module
    file = getattr(main, "__file__", None)
    if isinstance(file, str):
        return os.path.realpath(file)
    namespace = vars(main) if main is not None else {}
    # Jupyter names its notebook in __session__ (or the environment), VS Code in its own.
    notebook = (
        namespace.get("__vsc_ipynb_file__")
        or namespace.get("__session__")
        or os.environ.get("JPY_SESSION_NAME")
    )
    if isinstance(notebook, str) and notebook:
        return notebook
    command = _command_text()
    if command is not None:
        return f"<-c {_digest(command.encode(), 6)}>"
    return f"<interactive in {os.getcwd()}>"


def _command_text() -> str | None:
    """The program text of ``python -c TEXT`` (which Python keeps nowhere else), or None.
    Read from /proc: elsewhere (macOS) all ``-c`` programs of one directory are one."""
    if sys.argv[:1] != ["-c"]:
        return None
    try:
        with open("/proc/self/cmdline", "rb") as file:
            words = [w.decode("utf-8", "surrogateescape") for w in file.read().split(b"\0")]
    except OSError:
        return None
    return _c_argument(words[1:])


def _c_argument(words: list[str]) -> str | None:
    """The argument of ``-c`` in an interpreter's options (``-c TEXT``, ``-Bc TEXT``,
    ``-cTEXT``); None if it has none."""
    position = 0
    while position < len(words):
        word = words[position]
        if not word.startswith("-") or word in ("-", "--") or word.startswith("--"):
            return None  # a script, stdin, or a long option: no -c before it
        for index, letter in enumerate(word[1:], start=1):
            if letter in "cWX":  # these take the rest of the word, or the next word
                rest = word[index + 1 :]
                if not rest:
                    position += 1
                    rest = words[position] if position < len(words) else ""
                if letter == "c":
                    return rest
                break
        position += 1
    return None


def identify(
    target: Target,
    *,
    version: str | None,
    ignore: frozenset[str],
    serialiser: Serialise,
) -> Identity:
    """The identity of a decorated function (see the module's docstring)."""
    owner = target.code_owner
    describe = _Describer(target.name, serialiser, with_code=version is None, ignore=ignore)
    if version is None:
        revision = "c" + _digest(repr((sys.implementation.cache_tag, _code_of(owner))).encode())
    else:
        revision = "v" + version
    variant = (
        describe.members(owner) if isinstance(owner, type) else describe.captures(owner),
        describe.value(target.bound[0], target.bound[1]) if target.bound else (),
        tuple(sorted(ignore)),
        describe.serialiser(),
    )
    return Identity(
        target.name, revision, _digest(repr(variant).encode()), final=not describe.saw_empty
    )


def checked_version(name: str, version: str | int | None) -> str | None:
    """``version`` as a key holds it; ValueError naming the function if it cannot be one."""
    if version is None:
        return None
    text = str(version) if isinstance(version, int | str) else ""
    if isinstance(version, bool) or not _VERSION.fullmatch(text):
        raise ValueError(
            f"{name}: version must be an int or 1-64 letters, digits and ._+-, "
            f"got {version!r}"
        )
    return text


# What a C-level class holds: methods and slots, the same for every object of that code.
_C_MEMBERS = (
    types.BuiltinFunctionType,
    types.ClassMethodDescriptorType,
    types.GetSetDescriptorType,
    types.MemberDescriptorType,
    types.MethodDescriptorType,
    types.WrapperDescriptorType,
)


class _Describer:
    """Turns what a function captures into plain data to hash, in one walk."""

    def __init__(
        self, name: str, serialiser: Serialise, *, with_code: bool, ignore: frozenset[str]
    ) -> None:
        self._name = name
        self._serialiser = serialiser
        self._with_code = with_code
        self._ignore = ignore
        self._path: list[str] = []
        self._seen: set[int] = set()  # functions and classes described already
        self._open: set[int] = set()  # containers being walked: one met again is a cycle
        self.saw_empty = False
        """Whether a captured cell was still empty: the identity is not final yet."""

    def captures(self, owner: Any) -> tuple[Any, ...]:
        """What ``owner`` (a function) captures, but the top level's ignored names; variables
        it rebinds (nonlocal) too, as they are now: an accumulator's start can change results."""
        code = getattr(owner, "__code__", None)
        cells = getattr(owner, "__closure__", None)
        if code is None or not cells:
            return ()
        ignored = self._ignore if not self._path else frozenset()
        described = []
        for variable, cell in zip(code.co_freevars, cells, strict=True):
            if variable in ignored:
                continue
            try:
                content = cell.cell_contents
            except ValueError:  # not filled yet: filled later, it must count then
                self.saw_empty = True
                described.append((variable, "<empty>"))
                continue
            described.append((variable, self.value(variable, content)))
        return tuple(described)

    def members(self, cls: type) -> tuple[Any, ...]:
        """What a class's methods capture and its attributes' values; for a class defined in
        C or the standard library, nothing (its name and Python's version say it all)."""
        if _is_library(cls):
            return ()
        described: list[Any] = []
        for attribute, member in sorted(vars(cls).items()):
            functions = _functions_in(member)
            if functions:
                described.append((attribute, tuple(self.captures(f) for f in functions)))
            elif not _is_dunder(attribute) and not isinstance(member, _C_MEMBERS):
                try:
                    described.append((attribute, self.value(attribute, member)))
                except TypeError:  # e.g. a registry of objects: its type must do
                    described.append((attribute, ("unrepresentable", type(member).__qualname__)))
        bases = tuple(self._value(base) for base in cls.__bases__ if base is not object)
        return (tuple(described), bases)

    def serialiser(self) -> Any:
        """The key serialiser: its class, and its settings when it has any (by pickle: a
        custom serialiser may represent only the arguments it is made for)."""
        kind = f"{type(self._serialiser).__module__}:{type(self._serialiser).__qualname__}"
        settings = getattr(self._serialiser, "__dict__", None)
        if not settings:
            return kind
        try:
            return (kind, SerialiseBin()._call_hash((settings,), {}))
        except TypeError:
            return (kind, "unrepresentable settings")

    def value(self, label: str, value: Any) -> Any:
        self._path.append(label)
        try:
            return self._value(value)
        finally:
            self._path.pop()

    def _value(self, value: Any) -> Any:
        marked = getattr(value, MARKER, None)
        if isinstance(marked, Target) and isinstance(value, types.FunctionType):
            value = marked.call  # one of ours: what it caches, not its machinery
        if isinstance(value, types.FunctionType):
            if id(value) in self._seen:  # recursion: it is being described already
                return ("function", name_of(value))
            self._seen.add(id(value))
            code = _code_of(value) if self._with_code else ()
            defaults = self._value((value.__defaults__, value.__kwdefaults__))
            return ("function", name_of(value), code, defaults, self.captures(value))
        if isinstance(value, types.MethodType):
            return ("method", self._value(value.__func__), self._value(value.__self__))
        if isinstance(value, functools.partial):
            return ("partial", self._value(value.func), self._value((value.args, value.keywords)))
        if isinstance(value, types.ModuleType):
            return ("module", value.__name__)
        if isinstance(value, type):
            if id(value) in self._seen:
                return ("class", name_of(value))
            self._seen.add(id(value))
            code = _code_of(value) if self._with_code else ()
            return ("class", name_of(value), code, self.members(value))
        if isinstance(value, types.BuiltinFunctionType | types.MethodWrapperType):
            owner = value.__self__
            if owner is None or isinstance(owner, types.ModuleType):
                return ("builtin", name_of(value))
            return ("builtin method", value.__name__, self._value(owner))  # re.compile(p).match
        call = getattr(type(value), "__call__", None)  # noqa: B004 (the class's, not the object's)
        state = getattr(value, "__dict__", None)
        if isinstance(call, types.FunctionType) and isinstance(state, dict):
            # A callable object of a Python class (a class-based decorator): its state.
            return ("callable", self._value(type(value)), self._value(dict(state)))
        if callable(value):
            wrapped = getattr(value, "__wrapped__", None)
            if wrapped is not None:  # functools.lru_cache and alike: what they wrap
                return ("wrapper", type(value).__qualname__, self._value(wrapped))
        if type(value) in (tuple, list, dict):
            return self._container(value)
        return ("value", self._serialised(value))

    def _container(self, value: tuple[Any, ...] | list[Any] | dict[Any, Any]) -> Any:
        """Walked, not serialised whole: it may hold functions (a dispatch table)."""
        if id(value) in self._open:
            raise self._refusal(value, "it contains itself")
        self._open.add(id(value))
        try:
            if isinstance(value, dict):
                items = sorted((self._serialised(k), self._value(v)) for k, v in value.items())
                return ("dict", tuple(items))
            return (type(value).__name__, tuple(self._value(item) for item in value))
        finally:
            self._open.discard(id(value))

    def _serialised(self, value: Any) -> str:
        try:
            return self._serialiser._call_hash((value,), {})
        except (TypeError, RecursionError) as error:
            raise self._refusal(value, str(error) or "it is nested too deeply") from error

    def _refusal(self, value: Any, reason: str) -> TypeError:
        path = ", which captures ".join(repr(label) for label in self._path)
        remedy = (
            f"or leave it out with ignore=[{self._path[0]!r}] if it never changes the result"
            if self._path[0].isidentifier()
            else "or bind it by name in the function instead"
        )
        return TypeError(
            f"cannot cache {self._name}(): it captures {path} ({type(value).__qualname__}), "
            f"which is part of its identity, but {reason}. Pass it as an argument instead, "
            + remedy
        )


def _is_library(cls: type) -> bool:
    top = cls.__module__.partition(".")[0]
    return top == "builtins" or top in sys.stdlib_module_names


def _is_dunder(name: str) -> bool:
    # __module__, __doc__, __firstlineno__ (3.13: moves with the lines), ABCs' _abc_impl
    return (name.startswith("__") and name.endswith("__")) or name.startswith("_abc_")


def _functions_in(member: Any) -> tuple[types.FunctionType, ...]:
    """The Python functions a class attribute runs: a method, static or class method's, or a
    property's accessors."""
    if isinstance(member, staticmethod | classmethod):
        member = member.__func__
    if isinstance(member, property):
        accessors = (member.fget, member.fset, member.fdel)
        return tuple(f for f in accessors if isinstance(f, types.FunctionType))
    return (member,) if isinstance(member, types.FunctionType) else ()


def _code_of(owner: Any) -> Any:
    """The bytecode of a function, or of what a class's attributes and bases run, without
    line numbers."""
    if isinstance(owner, type):
        if _is_library(owner):
            return ("class", name_of(owner))
        methods = sorted(
            (name, tuple(_code_of(function) for function in _functions_in(member)))
            for name, member in vars(owner).items()
        )
        bases = tuple(_code_of(base) for base in owner.__bases__ if base is not object)
        return ("class", tuple(m for m in methods if m[1]), bases)
    code = getattr(owner, "__code__", None)
    if not isinstance(code, types.CodeType):
        return ("builtin", name_of(owner))
    return _code_form(code, getattr(owner, "__doc__", None))


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


def _digest(data: bytes, size: int = 8) -> str:
    return hashlib.blake2b(data, digest_size=size).hexdigest()


def revision_of(function: str, key: str) -> str | None:
    """The revision in an entry's key, or None if an older my_cache wrote it."""
    revision = key[len(function) + 1 :].partition(":")[0]
    return revision if key.startswith(function + ":") and _REVISION.fullmatch(revision) else None


def stale_keys(entries: Iterable[Entry]) -> set[tuple[str, str]]:
    """``(folder, key)`` of the entries no current code can hit: written by other code than
    the newest entry of the same function in the same folder, or by an older my_cache."""
    newest: dict[tuple[str, str], tuple[float, str]] = {}
    revisions = []
    for entry in entries:
        revision = revision_of(entry.function, entry.key)
        revisions.append((entry, revision))
        slot = (entry.folder, entry.function)
        if revision is not None and (slot not in newest or entry.created > newest[slot][0]):
            newest[slot] = (entry.created, revision)
    return {
        (entry.folder, entry.key)
        for entry, revision in revisions
        if revision is None or revision != newest[(entry.folder, entry.function)][1]
    }
