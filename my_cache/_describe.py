"""What a function captures, walked once into plain data to hash: the values it was made
with (by the key serialiser, like arguments) and the code of the functions among them."""

from __future__ import annotations

import functools
import os
import sys
import sysconfig
import types
from typing import Any

from my_cache._fingerprint import code_form
from my_cache._naming import name_of
from my_cache.serialisers import ArgumentTypeError, Serialise, SerialiseBin

MARKER = "__my_cache__"
"""The attribute a decorated function carries: what it calls, so that a function capturing
it is told apart by what it caches, not by the cache's machinery."""

# What a class defined in C holds: methods and slots, the same for every object of that code.
_C_MEMBERS = (
    types.BuiltinFunctionType,
    types.ClassMethodDescriptorType,
    types.GetSetDescriptorType,
    types.MemberDescriptorType,
    types.MethodDescriptorType,
    types.WrapperDescriptorType,
)


def cached_by(value: Any) -> Any:
    """What one of our wrappers calls, or ``value`` itself. A ``functools.wraps`` wrapper
    around ours copies the marker too, but wraps ours, not what ours calls."""
    if isinstance(value, types.FunctionType):
        called = value.__dict__.get(MARKER)
        if called is not None and value.__dict__.get("__wrapped__") is called:
            return cached_by(called)
    return value


class CapturedValueError(TypeError):
    """A captured value that cannot be told apart, named with its path and a remedy."""


class Describer:
    """One walk over what a function captures.

    Each function, class and object is described at its first sighting and referred to by
    its number after that: a recursive helper ends the walk, and two lists holding the same
    two functions in another order are told apart.
    """

    def __init__(
        self, name: str, serialiser: Serialise, *, with_code: bool, ignore: frozenset[str]
    ) -> None:
        self._name = name
        self._serialiser = serialiser
        self._with_code = with_code
        self._ignore = ignore
        self._path: list[str] = []
        self._numbers: dict[int, int] = {}
        self._walked: list[Any] = []  # alive until the walk ends, so no id is reused
        self._open: set[int] = set()  # containers being walked: one met again is a cycle
        self.codes: list[Any] = []
        """The bytecode of the functions met, in walk order: part of the revision."""
        self.saw_empty = False
        """Whether a captured cell was still empty (filled later, it changes the identity)."""

    def captures(self, function: Any) -> tuple[Any, ...]:
        """What ``function`` captures, but the top level's ignored names. Variables it
        rebinds (nonlocal) count too, as they are now: an accumulator's start changes results."""
        code = getattr(function, "__code__", None)
        cells = getattr(function, "__closure__", None)
        if code is None or not cells:
            return ()
        registry = _dispatch_registry(function)
        if registry is not None:
            # functools.singledispatch: its implementations, not its cache of weak references
            implementations = sorted(
                ((name_of(kind), f) for kind, f in registry.items()), key=lambda item: item[0]
            )
            return (("registry", self.value("its implementations", implementations)),)
        ignored = self._ignore if not self._path else frozenset()
        described: list[Any] = []
        for variable, cell in zip(code.co_freevars, cells, strict=True):
            if variable in ignored:
                continue
            try:
                content = cell.cell_contents
            except ValueError:  # not filled yet
                self.saw_empty = True
                described.append((variable, "<empty>"))
                continue
            if variable == "__class__" and isinstance(content, type):
                # What super() needs: the method's own class, named by its qualname already.
                described.append((variable, "<own class>"))
                continue
            try:
                described.append((variable, self.value(variable, content)))
            except CapturedValueError:
                raise
            except Exception as error:  # an object's own code failing, or a RecursionError
                reason = "it is nested too deeply" if isinstance(error, RecursionError) else (
                    f"reading it failed with {error!r}"
                )
                self._path.append(variable)
                refusal = self._refusal(content, reason)
                self._path.pop()
                raise refusal from error
        return tuple(described)

    def value(self, label: str, value: Any) -> Any:
        """``value`` described, named ``label`` in a refusal's message."""
        self._path.append(label)
        try:
            return self._value(value)
        finally:
            self._path.pop()

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

    def _value(self, value: Any) -> Any:
        value = cached_by(value)
        walked_by_parts = isinstance(value, types.FunctionType | type) or _is_python_callable(
            value
        )
        if walked_by_parts:
            number = self._numbers.get(id(value))
            if number is not None:
                return ("seen", number)
            self._numbers[id(value)] = len(self._numbers)
            self._walked.append(value)
        if isinstance(value, types.FunctionType):
            if self._with_code:
                self.codes.append(code_form(value))
            defaults = self._or_type((value.__defaults__, value.__kwdefaults__))
            held = _held_functions(value)
            return ("function", name_of(value), defaults, self.captures(value), self._value(held))
        if isinstance(value, type):
            return self._class(value)
        if walked_by_parts:  # a callable object of a Python class (a class-based decorator)
            return ("callable", self._value(type(value)), self._value(dict(vars(value))))
        if isinstance(value, types.MethodType):
            return ("method", self._value(value.__func__), self._value(value.__self__))
        if isinstance(value, functools.partial):
            return ("partial", self._value(value.func), self._value((value.args, value.keywords)))
        if isinstance(value, types.ModuleType):
            return ("module", value.__name__)
        if isinstance(value, types.BuiltinFunctionType | types.MethodWrapperType):
            owner = value.__self__
            if owner is None or isinstance(owner, types.ModuleType):
                return ("builtin", name_of(value))
            return ("builtin method", value.__name__, self._value(owner))  # pattern.findall
        wrapped = _attribute(value, "__wrapped__") if callable(value) else None
        if wrapped is not None:  # functools.lru_cache and alike: what they wrap
            return ("wrapper", type(value).__qualname__, self._value(wrapped))
        if type(value) in (tuple, list, dict):
            return self._container(value)
        return ("value", self._serialised(value))

    def _class(self, cls: type) -> Any:
        """A class by its methods (code, defaults, captures), its attributes' values (not
        Python's or Enum's machinery) and its bases; one defined in C or the standard library
        by its name alone."""
        if _is_library(cls):
            return ("class", name_of(cls))
        members: list[Any] = []
        for attribute, member in sorted(vars(cls).items()):
            functions = _functions_in(member)
            if functions:
                members.append((attribute, tuple(self._value(f) for f in functions)))
            elif not _is_internal(attribute) and not isinstance(member, _C_MEMBERS):
                self._path.append(attribute)
                try:
                    members.append((attribute, self._or_type(member)))  # a registry of objects
                finally:
                    self._path.pop()
        bases = tuple(self._value(base) for base in cls.__bases__ if base is not object)
        return ("class", name_of(cls), tuple(members), bases)

    def _or_type(self, value: Any) -> Any:
        """``value`` described, or by its type when the serialiser cannot represent it: for
        what a class or function holds beside its code (a default of pydantic's own
        PydanticUndefined, a registry of objects), which a refusal would make uncachable."""
        walked, codes = len(self._walked), len(self.codes)
        try:
            return self._value(value)
        except TypeError:
            # Undo the numbering of what was met: a later sighting must describe it in full.
            for dropped in self._walked[walked:]:
                del self._numbers[id(dropped)]
            del self._walked[walked:], self.codes[codes:]
            return ("unrepresentable", type(value).__qualname__)

    def _container(self, value: tuple[Any, ...] | list[Any] | dict[Any, Any]) -> Any:
        """Walked, not serialised whole: it may hold functions (a dispatch table)."""
        if id(value) in self._open:
            raise self._refusal(value, "it contains itself")
        self._open.add(id(value))
        try:
            if isinstance(value, dict):
                # Walked in key order: the code of the functions met goes to codes in order.
                keyed = sorted(((self._serialised(k), v) for k, v in value.items()), key=_first)
                return ("dict", tuple((key, self._value(v)) for key, v in keyed))
            return (type(value).__name__, tuple(self._value(item) for item in value))
        finally:
            self._open.discard(id(value))

    def _serialised(self, value: Any) -> str:
        try:
            return self._serialiser._call_hash((value,), {})
        except ArgumentTypeError as error:
            raise self._refusal(value, error.reason) from error
        except (TypeError, RecursionError) as error:
            raise self._refusal(value, str(error) or "it is nested too deeply") from error

    def _refusal(self, value: Any, reason: str) -> CapturedValueError:
        path = ", which captures ".join(repr(label) for label in self._path)
        remedy = (
            f"or leave it out with ignore=[{self._path[0]!r}] if it never changes the result"
            if self._path and self._path[0].isidentifier()
            else "or bind it by name in the function instead"
        )
        return CapturedValueError(
            f"cannot cache {self._name}(): it captures {path} ({type(value).__qualname__}), "
            f"which is part of its identity, but {reason}. Pass it as an argument instead, "
            + remedy
        )


def _dispatch_registry(function: Any) -> types.MappingProxyType[Any, Any] | None:
    """A functools.singledispatch function's registry (not a copy functools.wraps made)."""
    registry = function.__dict__.get("registry")
    if isinstance(registry, types.MappingProxyType) and (
        function.__code__.co_filename == functools.__file__
    ):
        return registry
    return None


def _held_functions(function: types.FunctionType) -> dict[str, Any]:
    """Callables kept in a function's attributes (``wrapper.impl = f``), called as much as
    captured ones; not those functools.wraps copied from the function it wraps, nor a
    singledispatch function's machinery."""
    if _dispatch_registry(function) is not None:
        return {}
    wrapped = getattr(function.__dict__.get("__wrapped__"), "__dict__", {})
    return {
        name: held
        for name, held in function.__dict__.items()
        if callable(held) and name not in (MARKER, "__wrapped__") and wrapped.get(name) is not held
    }


def _first(pair: tuple[str, Any]) -> str:
    return pair[0]


def _is_internal(attribute: str) -> bool:
    """Dunder and _sunder_ names: Python's and Enum's machinery, often filled lazily (Enum's
    value maps), which would make every run another class; and ABCs' _abc_impl."""
    if attribute.startswith("__") and attribute.endswith("__"):
        return True
    return (attribute.startswith("_") and attribute.endswith("_")) or attribute.startswith("_abc_")


def python_call(value: Any) -> types.FunctionType | None:
    """The ``__call__`` a Python class defines for its objects (the class's, not one the
    object may carry), or None."""
    call = getattr(type(value), "__call__", None)  # noqa: B004
    return call if isinstance(call, types.FunctionType) else None


def _is_python_callable(value: Any) -> bool:
    """A callable object of a Python class, whose state is in its ``__dict__``."""
    return python_call(value) is not None and isinstance(_attribute(value, "__dict__"), dict)


def _attribute(value: Any, name: str) -> Any:
    """``value.name`` or None; an object's own ``__getattr__`` may raise anything."""
    try:
        return getattr(value, name, None)
    except Exception:
        return None


_HEAP_TYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: made by a class statement (or type())
_STDLIB = os.path.join(os.path.realpath(sysconfig.get_paths()["stdlib"]), "")


def _is_library(cls: type) -> bool:
    """Defined in C or in the standard library's files: its name and Python's version say
    what it does. Not by module name: a project may have its own ``statistics.py``."""
    if not cls.__flags__ & _HEAP_TYPE:
        return True
    file = getattr(sys.modules.get(cls.__module__ or ""), "__file__", None)
    if not isinstance(file, str):
        return False
    path = os.path.realpath(file)
    return path.startswith(_STDLIB) and "-packages" not in path[len(_STDLIB) :]


def _functions_in(member: Any) -> tuple[Any, ...]:
    """The functions a class attribute runs: a method, or what a descriptor holds (static
    and class methods, property, cached_property, partialmethod, singledispatchmethod and
    alike keep theirs in one of these attributes)."""
    if isinstance(member, types.FunctionType):
        return (member,)
    if not hasattr(type(member), "__get__"):
        return ()
    held = (_attribute(member, name) for name in ("__func__", "func", "fget", "fset", "fdel"))
    return tuple(f for f in held if isinstance(f, types.FunctionType | functools.partial))
