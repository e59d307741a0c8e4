"""Rewrite the generated blocks of README.md and docs/*.md from real runs.

    python docs/generate.py          # rewrite every stale block
    python docs/generate.py --check  # write nothing; exit 1 listing the stale blocks

Run it with a Python that has my_cache installed (``.venv-3.11/bin/python docs/generate.py``,
or ``make docs``). A block sits between two marker comments in a Markdown file::

    <!-- generated: cli-session -->
    ...everything here is rewritten...
    <!-- end generated -->

Each block is made by a function of this file (``BLOCKS``): most run real commands with
``bash`` in a scratch project of their own under /tmp (the repository is never written) and
show them as a terminal would, ``$ command`` then its output. Commands run with this
checkout's my_cache first on PYTHONPATH, ``python`` and ``mycache`` from this Python's
``bin`` folder on PATH, no ``MYCACHE_*`` variable from the caller's environment, ``TZ=UTC``
and 100 columns.

Code shown in the docs is run too: a ``python`` fence right after ``<!-- runnable: NAME -->``
is written to the scratch project as NAME (a block's commands may run it); every runnable
fence is run at least once, by ``python NAME``, or by pytest when NAME starts with
``test_``, and must succeed.

Output that changes from run to run is normalised when it is captured:

* the scratch project's path (always 9 characters, ``/tmp/`` and 4 random ones, so that the
  columns of a table stay aligned) is shown as ``~/project``;
* dates and times (``2026-11-26 07:06:48``) are shown as ``YYYY-MM-DD hh:mm:ss``;
* pytest's durations (``in 0.42s``) as ``in 0.01s``; colour codes are removed.

``--check`` compares each block with a fresh run, ignoring the keys' hashes as well
(``0699a016f83ce5a0:2beff1d9d8ae:8a4b...``): they include the Python version's bytecode, so
a block made with Python 3.11 is not stale under 3.13.

The ``bench`` block is not run (``make bench`` takes minutes): it is the file
``docs/bench-results.txt``, which ``make bench`` writes from ``benchmarks/compare.py``; the
``large-values`` and ``async-pauses`` blocks likewise come from
``docs/large-values-results.txt`` (``benchmarks/large_values.py``).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import string
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
BENCH_RESULTS = DOCS / "bench-results.txt"
LARGE_VALUES_RESULTS = DOCS / "large-values-results.txt"
SHOWN_PROJECT = "~/project"

BLOCK = re.compile(
    r"(?P<start><!-- generated: (?P<name>[\w-]+) -->\n)(?P<body>.*?)"
    r"(?P<end><!-- end generated -->)",
    re.DOTALL,
)
RUNNABLE = re.compile(
    r"<!-- runnable: (?P<name>[\w.]+) -->\n```python\n(?P<code>.*?)```", re.DOTALL
)
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?")
DURATION = re.compile(r"\bin \d+\.\d+s\b")
COLOUR = re.compile(r"\x1b\[[0-9;]*m")
KEY = re.compile(r"\b[0-9a-f]{16}:[0-9a-f]{12}:[0-9a-f]{32}\b")


class GenerateError(Exception):
    """A command of a block did not do what the block expects."""


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def runnable_sources() -> dict[str, str]:
    """Every ``<!-- runnable: NAME -->`` fence of the docs, by NAME."""
    sources: dict[str, str] = {}
    for path in markdown_files():
        for match in RUNNABLE.finditer(path.read_text(encoding="utf-8")):
            name = match["name"]
            if name in sources:
                raise GenerateError(f"{path.name}: a second runnable fence is named {name}")
            sources[name] = match["code"]
    return sources


def scratch_dir() -> Path:
    """A new empty folder whose path is as long as SHOWN_PROJECT: /tmp/ and 4 characters."""
    alphabet = string.ascii_lowercase + string.digits
    for _ in range(1000):
        path = Path("/tmp", "".join(random.choices(alphabet, k=4)))
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            continue
        return path
    raise GenerateError("no free /tmp/XXXX folder for a scratch project")


def normalise(text: str, project: Path) -> str:
    text = COLOUR.sub("", text)
    for path in {str(project.resolve()), str(project)}:  # /tmp may be a link (macOS)
        text = text.replace(path, SHOWN_PROJECT)
    text = TIMESTAMP.sub("YYYY-MM-DD hh:mm:ss", text)
    return DURATION.sub("in 0.01s", text)


def comparable(text: str) -> str:
    """What --check compares: the text without the keys' hashes."""
    return KEY.sub("<key>", text)


def command_env(project: Path, bin_dir: Path) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("MYCACHE_") and name not in {"PYTHONPATH", "COLUMNS", "LINES"}
    }
    python_path = [str(ROOT), os.environ.get("PYTHONPATH", "")]
    env |= {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
        "PYTHONPATH": os.pathsep.join(part for part in python_path if part),
        "PYTHONDONTWRITEBYTECODE": "1",  # my_cache is imported from the repository
        "HOME": str(project),
        "TZ": "UTC",
        "LC_ALL": "C.UTF-8",
        "COLUMNS": "100",
        "NO_COLOR": "1",
    }
    env.pop("VIRTUAL_ENV", None)
    return env


def tool_dir(scratch: Path) -> Path:
    """A folder holding ``python`` and ``mycache`` of this Python: its own bin folder when it
    has both (a venv), else small scripts that run it."""
    own = Path(sys.executable).parent
    if (own / "python").exists() and (own / "mycache").exists():
        return own
    tools = scratch / ".tools"
    tools.mkdir()
    for name, command in (("python", ""), ("mycache", " -m my_cache")):
        script = tools / name
        script.write_text(f'#!/bin/sh\nexec "{sys.executable}"{command} "$@"\n')
        script.chmod(0o755)
    return tools


@dataclass
class Session:
    """A scratch project, and what has been shown of it so far."""

    project: Path
    env: dict[str, str]
    sources: dict[str, str]
    used: set[str]
    fences: list[tuple[str, list[str]]] = field(default_factory=list)

    def write(self, name: str, text: str) -> None:
        path = self.project / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")

    def copy_runnable(self, name: str) -> None:
        """Put the docs' runnable fence NAME in the project, as NAME."""
        if name not in self.sources:
            raise GenerateError(f"no <!-- runnable: {name} --> fence in the docs")
        self.used.add(name)
        self.write(name, self.sources[name])

    def show_file(self, name: str) -> None:
        """Show a file of the project (Python or TOML), its name in a first comment."""
        text = (self.project / name).read_text(encoding="utf-8")
        language = {".py": "python", ".toml": "toml"}[Path(name).suffix]
        self.fences.append((language, [f"# {name}", *text.rstrip("\n").splitlines()]))

    def run(self, command: str, *, expect: int = 0, show: bool = True) -> str:
        """Run COMMAND with bash in the project; show it, and its output (stderr included)."""
        result = subprocess.run(
            ["bash", "-c", command],
            cwd=self.project,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=120,
            check=False,
        )
        output = normalise(result.stdout, self.project)
        if result.returncode != expect:
            raise GenerateError(
                f"`{command}` exited with {result.returncode}, not {expect}:\n{output}"
            )
        if show:
            if not self.fences or self.fences[-1][0] != "text":
                self.fences.append(("text", []))
            self.fences[-1][1].extend([f"$ {command}", *output.rstrip("\n").splitlines()])
        return output

    def render(self) -> str:
        return "".join(
            "```" + language + "\n" + "".join(line.rstrip() + "\n" for line in lines) + "```\n"
            for language, lines in self.fences
        )


@contextmanager
def session(sources: dict[str, str], used: set[str]) -> Iterator[Session]:
    project = scratch_dir()
    try:
        yield Session(project, command_env(project, tool_dir(project)), sources, used)
    finally:
        shutil.rmtree(project, ignore_errors=True)


# The blocks. Each takes the runnable sources and the set of those it ran, and returns the
# text between its markers.

SQUARES = """\
from my_cache import CacheStor, TypeStorage

stor = CacheStor(db_file="cache/catalogue.db", type_storage=TypeStorage.IN_DISK)


@stor.cache(folder="cache/squares")
def square(n: int) -> int:
    return n * n


print([square(n) for n in (2, 3)])
"""


def squares_project(s: Session) -> None:
    s.write("squares.py", SQUARES)
    # Run through an import, so that the function is named squares:square, not by the path of
    # a script (which would be the scratch folder's).
    s.write("run.py", "import squares\n")
    s.write("mycache.toml", 'db_file = "cache/catalogue.db"\n')


def quick_start(sources: dict[str, str], used: set[str]) -> str:
    with session(sources, used) as s:
        s.copy_runnable("quick_start.py")
        s.run("python quick_start.py")
        s.run("python quick_start.py        # again: the result comes from cache/example")
        return s.render()


def async_run(sources: dict[str, str], used: set[str]) -> str:
    with session(sources, used) as s:
        s.copy_runnable("async_example.py")
        s.run("python async_example.py")
        s.run("ls cache                      # cache_async stores on disk, even with in_memory")
        return s.render()


def controls(sources: dict[str, str], used: set[str]) -> str:
    with session(sources, used) as s:
        s.copy_runnable("controls.py")
        s.run("python controls.py")
        return s.render()


def cli_short(sources: dict[str, str], used: set[str]) -> str:
    with session(sources, used) as s:
        s.copy_runnable("quick_start.py")
        s.run("python quick_start.py", show=False)
        s.run("mycache ls")
        return s.render()


def cli_session(sources: dict[str, str], used: set[str]) -> str:
    with session(sources, used) as s:
        squares_project(s)
        s.show_file("squares.py")
        s.show_file("mycache.toml")
        s.run("python run.py                  # run.py is `import squares`")
        s.run("sed -i 's/n \\* n/n ** 2/' squares.py && python run.py   # edit, run again")
        s.run("mycache ls")
        s.run("mycache stats")
        s.run("mycache stats --function square --json")
        s.run("mycache ls --stale")
        s.run("mycache clear --stale --yes")
        s.run("mycache ls --function cube")
        s.run("mycache --version")
        return s.render()


def cli_help(sources: dict[str, str], used: set[str]) -> str:
    with session(sources, used) as s:
        for command in (
            "mycache --help",
            "mycache ls --help",
            "mycache stats --help",
            "mycache clear --help",
        ):
            s.run(command)
        return s.render()


def settings_errors(sources: dict[str, str], used: set[str]) -> str:
    with session(sources, used) as s:
        make = "python -c 'from my_cache import CacheStor; CacheStor()'"
        s.run(f"MYCACHE_TYPE_STORAGE=in_cloud {make} 2>&1 | tail -n 1")
        s.run(f"MYCACHE_TYPE_STORGE=in_disk {make}")
        return s.render()


def results(path: Path) -> str:
    """A results file that ``make bench`` writes, as it is."""
    if not path.is_file():
        raise GenerateError(f"{path.relative_to(ROOT)} is missing: run `make bench`")
    return path.read_text(encoding="utf-8").rstrip("\n")


def bench(sources: dict[str, str], used: set[str]) -> str:
    return "```text\n" + results(BENCH_RESULTS) + "\n```\n"


def large_values(sources: dict[str, str], used: set[str]) -> str:
    text = results(LARGE_VALUES_RESULTS)
    table = text.split("\n\ncache_async:")[0]  # the pauses have a block of their own
    targets = text.split("\n\n")[-1]
    return "```text\n" + table + "\n\n" + targets + "\n```\n"


def async_pauses(sources: dict[str, str], used: set[str]) -> str:
    (pauses,) = [
        part
        for part in results(LARGE_VALUES_RESULTS).split("\n\n")
        if part.startswith("cache_async:")
    ]
    return "```text\n" + pauses + "\n```\n"


BLOCKS: dict[str, Callable[[dict[str, str], set[str]], str]] = {
    "quick-start": quick_start,
    "async-run": async_run,
    "controls": controls,
    "cli-short": cli_short,
    "cli-session": cli_session,
    "cli-help": cli_help,
    "settings-errors": settings_errors,
    "bench": bench,
    "large-values": large_values,
    "async-pauses": async_pauses,
}


def run_alone(name: str, code: str) -> None:
    """Run a runnable fence that no block runs: it must succeed."""
    with session({name: code}, set()) as s:
        s.copy_runnable(name)
        if name.startswith("test_"):
            s.run(f"python -m pytest -q -p no:cacheprovider {name}", show=False)
        else:
            s.run(f"python {name}", show=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a block is stale"
    )
    options = parser.parse_args()

    texts = {path: path.read_text(encoding="utf-8") for path in markdown_files()}
    found = {match["name"]: path for path, text in texts.items() for match in BLOCK.finditer(text)}
    problems = [
        f"{path.relative_to(ROOT)}: unknown block {name!r}"
        for name, path in found.items()
        if name not in BLOCKS
    ]
    problems += [f"block {name!r} is in no Markdown file" for name in BLOCKS if name not in found]

    sources = runnable_sources()
    used: set[str] = set()
    made: dict[str, str] = {}
    for name in BLOCKS:
        if name not in found:
            continue
        try:
            made[name] = BLOCKS[name](sources, used)
        except (GenerateError, OSError, subprocess.SubprocessError) as error:
            problems.append(f"block {name!r} could not be made: {error}")
    for name, code in sources.items():
        if name not in used:
            try:
                run_alone(name, code)
            except (GenerateError, OSError, subprocess.SubprocessError) as error:
                problems.append(f"runnable fence {name!r} failed: {error}")

    stale: list[str] = []
    for path, text in texts.items():

        def replace(match: re.Match[str], path: Path = path) -> str:
            name = match["name"]
            if name not in made:
                return match[0]
            if comparable(match["body"]) == comparable(made[name]):
                return match[0]  # the same but for the keys' hashes: left as it is
            stale.append(f"{path.relative_to(ROOT)}: block {name!r} is stale")
            return match["start"] + made[name] + match["end"]

        new_text = BLOCK.sub(replace, text)
        if not options.check and new_text != text:
            path.write_text(new_text, encoding="utf-8")

    for line in problems:
        print(line, file=sys.stderr)
    if options.check:
        for line in stale:
            print(line, file=sys.stderr)
        if stale:
            print("run `python docs/generate.py` (or `make docs`) to rewrite them", file=sys.stderr)
        return 1 if stale or problems else 0
    for line in stale:
        print(line.replace("is stale", "rewritten"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
