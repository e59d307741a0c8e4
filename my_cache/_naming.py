"""The name an entry's key starts with: ``module:qualname``, with ``__main__`` named by its
program, so that two programs never share a name and one program run again keeps its own."""

from __future__ import annotations

import hashlib
import os
import sys
from typing import Any

_MAIN_MODULES = frozenset({"__main__", "__mp_main__"})  # __mp_main__: a spawned worker's


def name_of(func: Any) -> str:
    """``module:qualname`` of a function, class or method. The colon keeps a module path and
    a class path apart: ``pkg.a:b`` is not ``pkg:a.b``."""
    module = getattr(func, "__module__", None) or "<no module>"
    qualname = getattr(func, "__qualname__", None) or getattr(func, "__name__", "<unnamed>")
    return f"{program(module)}:{qualname}"


def program(module: str) -> str:
    """``module``, or for the ``__main__`` module the program it is: the module of
    ``python -m``, the script's real path, the notebook, or a hash of the ``-c`` text."""
    if module not in _MAIN_MODULES:
        return module
    main = sys.modules.get(module)
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name not in _MAIN_MODULES:
        return str(spec.name)
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
        digest = hashlib.blake2b(command.encode("utf-8", "surrogateescape"), digest_size=6)
        return f"<-c {digest.hexdigest()}>"
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
    return c_argument(words[1:])


def c_argument(words: list[str]) -> str | None:
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
