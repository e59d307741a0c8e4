"""The ``mycache`` command: list, count and clear cached entries without writing code.

It reads the same settings as ``CacheStor()`` (``mycache.toml``, ``MYCACHE_*``), and works on
the stores that outlive a process: IN_REDIS's when that is the storage, else IN_DISK's, which
also hold cache_async results.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import click

from my_cache._identity import stale_keys
from my_cache._secrets import masked_url
from my_cache._storages import BACKENDS
from my_cache._storages.base import (
    Backend,
    Entry,
    FolderTotals,
    StoreUnavailable,
    totals_of,
)
from my_cache.settings import CONFIG_ENV_VAR, TypeStorage, expand_path, load_settings

F = TypeVar("F", bound=Callable[..., Any])

COLUMNS = ("FOLDER", "FUNCTION", "KEY", "ARGUMENTS", "SIZE", "CREATED", "EXPIRES", "STALE")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
# The columns shortened first, in this order, when a table is wider than the terminal.
SHRINKABLE = ("KEY", "ARGUMENTS", "FOLDER", "FUNCTION")


def settings_options(command: F) -> F:
    """The options every command takes to find its cache."""
    command = click.option(
        "--config",
        metavar="FILE",
        callback=_existing_config,
        help=f"A TOML settings file, instead of ./mycache.toml or ${CONFIG_ENV_VAR}.",
    )(command)
    return click.option(
        "--db-file", type=click.Path(), help="The catalogue, instead of the setting."
    )(command)


def _existing_config(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    # Checked once ~ and $VARIABLES are expanded, as the settings expand them: click.Path
    # would refuse a quoted '~/s.toml' that exists.
    if value is not None and not os.path.isfile(expand_path(value)):
        raise click.BadParameter(f"{value!r} is not a file", ctx, param)
    return value


def selection_options(command: F) -> F:
    command = click.option(
        "--stale",
        is_flag=True,
        help="Only stale entries: written by other code than the newest entry of their "
        "function in their folder (the function was edited since), or by an older my_cache.",
    )(command)
    command = click.option(
        "--function",
        help="Only this function: its name (module:qualname, also written module.qualname) "
        "or the end of it after a '.' or ':' (func, Cls.method).",
    )(command)
    return click.option(
        "--folder",
        metavar="FOLDER",
        # Not a click.Path: an IN_REDIS folder is a name, whatever files are here.
        help="Only entries stored under this folder.",
    )(command)


@dataclass(frozen=True)
class Catalogue:
    """The persistent backend, and the catalogue it reads as messages name it."""

    backend: Backend
    name: str
    """The absolute db_file (IN_DISK), or the Redis URL with its password masked."""
    missing: bool
    """Whether db_file does not exist: a mistyped --db-file, or a run from another folder
    than the program's when db_file is relative."""
    on_disk: bool
    """Whether folders are paths on this machine, whose permissions can be checked."""

    def nothing(self, lead: str, filters: str) -> str:
        """The line saying that nothing matched: what was read, with which ``filters``."""
        if self.missing:
            return f"{lead}: catalogue {self.name} does not exist{filters}"
        return f"{lead} in catalogue {self.name}{filters}"


def open_catalogue(db_file: str | None, config: str | None) -> Catalogue:
    """The persistent backend, with settings resolved exactly as ``CacheStor()`` does:
    IN_REDIS's when that is the storage, else IN_DISK's (which holds cache_async's too)."""
    settings = load_settings(config=config, db_file=db_file)
    if settings.type_storage is TypeStorage.IN_REDIS:
        backend = BACKENDS[TypeStorage.IN_REDIS](settings)
        return Catalogue(backend, masked_url(settings.redis_url), missing=False, on_disk=False)
    if not settings.db_file:
        raise click.ClickException("the db_file setting is empty: no catalogue to read")
    path = os.path.abspath(settings.db_file)
    backend = BACKENDS[TypeStorage.IN_DISK](settings)
    return Catalogue(backend, path, missing=not os.path.lexists(path), on_disk=True)


def select(
    backend: Backend, folder: str | None, function: str | None, *, only_stale: bool = False
) -> tuple[list[Entry], set[tuple[str, str]]]:
    """The live entries of ``folder`` and ``function`` (None: all), only the stale ones if
    ``only_stale``, and the ``(folder, key)`` of those that are stale."""
    entries = backend.entries(None if folder is None else backend.folder_name(folder), function)
    # Staleness compares the entries of one function in one folder, and a selection by folder
    # or function keeps all of those or none.
    stale = stale_keys(entries)
    if only_stale:
        entries = [entry for entry in entries if (entry.folder, entry.key) in stale]
    return entries, stale


def filters(backend: Backend, folder: str | None, function: str | None, stale: bool) -> str:
    """The selection as messages show it, `` (folder=..., function=...)``; empty for all."""
    given = []
    if folder is not None:
        given.append(f"folder={backend.folder_name(folder)}")
    if function is not None:
        given.append(f"function={function}")
    if stale:
        given.append("stale only")
    return f" ({', '.join(given)})" if given else ""


class _Commands(click.Group):
    """Commands that end with one line on stderr and exit status 1 when anything fails: a
    store that cannot be reached, a refused path, damage, a full disk. Never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Abort, click.exceptions.Exit):
            raise
        except (StoreUnavailable, ValueError) as error:  # their messages name what failed
            raise click.ClickException(str(error)) from None
        except Exception as error:
            raise click.ClickException(f"{type(error).__name__}: {error}") from None


@click.group(cls=_Commands)
@click.version_option(package_name="my_cache", prog_name="mycache")
def main() -> None:
    """List, count and clear what my_cache has stored."""


@main.command("ls")
@selection_options
@click.option("--json", "as_json", is_flag=True, help="One JSON array, an object per entry.")
@settings_options
def list_entries(
    folder: str | None,
    function: str | None,
    stale: bool,
    as_json: bool,
    db_file: str | None,
    config: str | None,
) -> None:
    """One row per entry: folder, function, key, arguments, size, creation and expiry time,
    and whether it is stale (see --stale; `mycache clear --stale` deletes those).

    On a terminal, long cells are cut in the middle to fit its width."""
    catalogue = open_catalogue(db_file, config)
    entries, stale_ones = select(catalogue.backend, folder, function, only_stale=stale)
    if not entries:
        selection = filters(catalogue.backend, folder, function, stale)
        click.echo(catalogue.nothing("no entries", selection), err=True)
    if as_json:
        objects = [
            {**asdict(entry), "stale": (entry.folder, entry.key) in stale_ones} for entry in entries
        ]
        click.echo(json.dumps(objects, ensure_ascii=False, indent=2))
        return
    if not entries:
        return
    rows = [
        (
            entry.folder,
            entry.function,
            entry.key,
            entry.arg_string,
            str(entry.size),
            local_time(entry.created),
            "" if entry.expires is None else local_time(entry.expires),
            "yes" if (entry.folder, entry.key) in stale_ones else "",
        )
        for entry in entries
    ]
    width = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
    click.echo(table(COLUMNS, rows, width, numeric={"SIZE"}))


@main.command()
@selection_options
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='One JSON object: {"catalogue", "folders": [{"folder", "entries", "bytes", '
    '"limit"}], "total": {"entries", "bytes"}}; limit is null for a folder without one.',
)
@settings_options
def stats(
    folder: str | None,
    function: str | None,
    stale: bool,
    as_json: bool,
    db_file: str | None,
    config: str | None,
) -> None:
    """Entries, bytes and size limit per folder, and in total: of all entries, or of those
    of a folder or function, or only the stale ones."""
    catalogue = open_catalogue(db_file, config)
    totals = folder_totals(catalogue.backend, folder, function, only_stale=stale)
    entries, size = sum(t.entries for t in totals), sum(t.size for t in totals)
    if not totals:
        selection = filters(catalogue.backend, folder, function, stale)
        click.echo(catalogue.nothing("no entries", selection), err=True)
    if as_json:
        document = {
            "catalogue": catalogue.name,
            "folders": [
                {"folder": t.folder, "entries": t.entries, "bytes": t.size, "limit": t.limit}
                for t in totals
            ],
            "total": {"entries": entries, "bytes": size},
        }
        click.echo(json.dumps(document, ensure_ascii=False, indent=2))
        return
    if not totals:
        return
    rows = [
        (t.folder, str(t.entries), str(t.size), "-" if t.limit is None else str(t.limit))
        for t in totals
    ]
    rows.append(("total", str(entries), str(size), ""))
    header = ("FOLDER", "ENTRIES", "BYTES", "LIMIT")
    click.echo(table(header, rows, None, numeric={"ENTRIES", "BYTES", "LIMIT"}))


def folder_totals(
    backend: Backend, folder: str | None, function: str | None, *, only_stale: bool
) -> list[FolderTotals]:
    """The totals of each folder holding selected entries, in path order."""
    if function is None and not only_stale:
        return backend.totals(None if folder is None else backend.folder_name(folder))
    entries, _ = select(backend, folder, function, only_stale=only_stale)
    # A limit is a folder's, whatever the selection: asked of only the folders shown.
    shown = {entry.folder for entry in entries}
    limits = {t.folder: t.limit for name in shown for t in backend.totals(name)}
    return totals_of(entries, limits)


@main.command()
@selection_options
@click.option("--yes", is_flag=True, help="Delete without asking.")
@settings_options
def clear(
    folder: str | None,
    function: str | None,
    stale: bool,
    yes: bool,
    db_file: str | None,
    config: str | None,
) -> None:
    """Delete entries (their data and catalogue rows): all, or those of a folder or function,
    or only the stale ones."""
    catalogue = open_catalogue(db_file, config)
    backend = catalogue.backend
    entries, _ = select(backend, folder, function, only_stale=stale)
    if not entries:
        click.echo(
            catalogue.nothing("nothing to delete", filters(backend, folder, function, stale))
        )
        return
    if catalogue.on_disk:
        check_writable(catalogue.name, (entry.folder for entry in entries))
    size = sum(entry.size for entry in entries)
    kind = "stale entries" if stale else "entries"
    question = f"Delete {len(entries)} {kind} ({size} bytes)?"
    if not yes:
        if not sys.stdin.isatty():
            raise click.ClickException(
                f"{question} Refusing without confirmation: stdin is not a terminal. "
                "Pass --yes to delete."
            )
        click.confirm(question, abort=True)
    deleted = backend.delete_entries(entries)
    click.echo(f"deleted {deleted} {kind} ({size} bytes)")


def check_writable(db_file: str, folders: Iterable[str]) -> None:
    """ClickException naming the first of ``folders`` or ``db_file`` that cannot be written.

    Checked before anything is deleted: the backend would fail only at that folder, having
    deleted the entries of those before it, and its error names the catalogue it could not
    update rather than the read-only folder.
    """
    for path in sorted(set(folders)):
        if os.path.isdir(path) and not os.access(path, os.W_OK):
            raise click.ClickException(
                f"cannot delete the entries of {path}: the folder is read-only (cannot be "
                "written); nothing was deleted"
            )
    # Deleting also updates the catalogue, and SQLite writes its journal beside it.
    for path in (os.path.dirname(db_file), db_file):
        if os.path.exists(path) and not os.access(path, os.W_OK):
            raise click.ClickException(
                f"cannot delete: {path} is read-only (cannot be written), and deleting "
                f"updates the catalogue {db_file}; nothing was deleted"
            )


def local_time(epoch: float) -> str:
    return time.strftime(TIME_FORMAT, time.localtime(epoch))


def table(
    header: Sequence[str], rows: Sequence[Sequence[str]], width: int | None, numeric: set[str]
) -> str:
    """Aligned columns; when ``width`` is given, long cells are cut in the middle with "…"
    to fit it."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    if width is not None:
        widths = fit(header, widths, width)
    lines = []
    for row in (header, *rows):
        cells = [
            fitted(cell, w, right=name in numeric)
            for name, cell, w in zip(header, row, widths, strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def fitted(cell: str, width: int, *, right: bool) -> str:
    """``cell`` padded to ``width``; if longer, cut in the middle with "…": the start and the
    end are kept, as the end of a key or folder is what tells rows apart."""
    if len(cell) > width:
        if width <= 0:
            return ""
        kept = width - 1
        head = kept // 2  # the odd character goes to the end
        return cell[:head] + "…" + cell[len(cell) - (kept - head) :]
    return cell.rjust(width) if right else cell.ljust(width)


def fit(header: Sequence[str], widths: list[int], width: int) -> list[int]:
    """Column widths shrunk, SHRINKABLE columns first, so a line fits ``width``."""
    widths = list(widths)
    excess = sum(widths) + 2 * (len(widths) - 1) - width
    for name in SHRINKABLE:
        if excess <= 0 or name not in header:
            continue
        index = header.index(name)
        floor = max(len(name), 12)
        cut = min(excess, widths[index] - floor)
        if cut > 0:
            widths[index] -= cut
            excess -= cut
    return widths
