"""The ``mycache`` command: list, count and clear cached entries without writing code.

It reads the same settings as ``CacheStor()`` (``mycache.toml``, ``MYCACHE_*``), and works on
the stores that outlive a process: IN_REDIS's when that is the storage, else IN_DISK's, which
also hold cache_async results.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any, TypeVar

import click

from my_cache._identity import stale_keys
from my_cache._storages import BACKENDS
from my_cache._storages.base import Backend, Entry, StoreUnavailable
from my_cache.settings import CONFIG_ENV_VAR, TypeStorage, load_settings

F = TypeVar("F", bound=Callable[..., Any])

COLUMNS = ("FOLDER", "FUNCTION", "KEY", "ARGUMENTS", "SIZE", "CREATED", "STALE")
# The columns shortened first, in this order, when a table is wider than the terminal.
SHRINKABLE = ("KEY", "ARGUMENTS", "FOLDER", "FUNCTION")


def settings_options(command: F) -> F:
    """The options every command takes to find its cache."""
    command = click.option(
        "--config",
        type=click.Path(exists=True, dir_okay=False),
        help=f"A TOML settings file, instead of ./mycache.toml or ${CONFIG_ENV_VAR}.",
    )(command)
    return click.option(
        "--db-file", type=click.Path(), help="The catalogue, instead of the setting."
    )(command)


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


def open_backend(db_file: str | None, config: str | None) -> Backend:
    """The persistent backend, with settings resolved exactly as ``CacheStor()`` does:
    IN_REDIS's when that is the storage, else IN_DISK's (which holds cache_async's too)."""
    settings = load_settings(config=config, db_file=db_file)
    if settings.type_storage is TypeStorage.IN_REDIS:
        return BACKENDS[TypeStorage.IN_REDIS](settings)
    if not settings.db_file:
        raise click.ClickException("the db_file setting is empty: no catalogue to read")
    return BACKENDS[TypeStorage.IN_DISK](settings)


def select(
    db_file: str | None,
    config: str | None,
    folder: str | None,
    function: str | None,
    *,
    only_stale: bool = False,
) -> tuple[Backend, list[Entry], set[tuple[str, str]]]:
    """The backend, its live entries of ``folder`` and ``function`` (None: all), only the
    stale ones if ``only_stale``, and the ``(folder, key)`` of those that are stale."""
    backend = open_backend(db_file, config)
    entries = backend.entries(None if folder is None else backend.folder_name(folder), function)
    # Staleness compares the entries of one function in one folder, and a selection by folder
    # or function keeps all of those or none.
    stale = stale_keys(entries)
    if only_stale:
        entries = [entry for entry in entries if (entry.folder, entry.key) in stale]
    return backend, entries, stale


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
    """One row per entry: folder, function, key, arguments, size, creation time, and whether
    it is stale (see --stale; `mycache clear --stale` deletes those)."""
    _, entries, stale_ones = select(db_file, config, folder, function, only_stale=stale)
    if as_json:
        objects = [
            {**asdict(entry), "stale": (entry.folder, entry.key) in stale_ones} for entry in entries
        ]
        click.echo(json.dumps(objects, ensure_ascii=False, indent=2))
        return
    if not entries:
        click.echo("no entries", err=True)
        return
    rows = [
        (
            entry.folder,
            entry.function,
            entry.key,
            entry.arg_string,
            str(entry.size),
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.created)),
            "yes" if (entry.folder, entry.key) in stale_ones else "",
        )
        for entry in entries
    ]
    width = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
    click.echo(table(COLUMNS, rows, width, numeric={"SIZE"}))


@main.command()
@settings_options
def stats(db_file: str | None, config: str | None) -> None:
    """Entries and bytes per folder, and in total."""
    totals = open_backend(db_file, config).totals()
    rows = [(t.folder, str(t.entries), str(t.size)) for t in totals]
    rows.append(("total", str(sum(t[1] for t in totals)), str(sum(t[2] for t in totals))))
    click.echo(table(("FOLDER", "ENTRIES", "BYTES"), rows, None, numeric={"ENTRIES", "BYTES"}))


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
    backend, entries, _ = select(db_file, config, folder, function, only_stale=stale)
    if not entries:
        click.echo("nothing to delete")
        return
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


def table(
    header: Sequence[str], rows: Sequence[Sequence[str]], width: int | None, numeric: set[str]
) -> str:
    """Aligned columns; when ``width`` is given, long cells are cut with "…" to fit it."""
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
    if len(cell) > width:
        return cell[: width - 1] + "…"
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
