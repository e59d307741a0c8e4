"""The mycache command, run as installed, on a cache filled by a real program."""

from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

MYCACHE = str(Path(sys.executable).parent / "mycache")
LONG_NAME = "x" * 300

FILL = f"""
    import asyncio
    from my_cache import CacheStor

    cache_stor = CacheStor()  # settings from ./mycache.toml

    @cache_stor.cache(folder="cache/squares")
    def square(n):
        print("square", n)
        return n * n

    @cache_stor.cache(folder="cache/greetings")
    def greet(name):
        print("greet", name)
        return "hello " + name

    @cache_stor.cache_async(folder="cache/greetings")
    async def shout(name):
        return name.upper()

    for n in (1, 2, 3):
        square(n)
    greet("ada")
    greet({LONG_NAME!r})

    async def main():
        await shout("bob")
        await cache_stor.join()

    asyncio.run(main())
"""


def mycache(*args: str, cwd: Path, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MYCACHE, *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=60,
    )


@pytest.fixture
def filled(tmp_path: Path, run_python: Any) -> Path:
    (tmp_path / "mycache.toml").write_text(
        'type_storage = "in_disk"\nserialiser = "json"\ndb_file = "cache/catalogue.db"\n'
    )
    run_python(FILL)
    return tmp_path


def ls_json(cwd: Path, *args: str) -> list[dict[str, Any]]:
    result = mycache("ls", "--json", *args, cwd=cwd)
    assert result.returncode == 0, result.stderr
    entries: list[dict[str, Any]] = json.loads(result.stdout)
    return entries


def test_ls_prints_one_whole_row_per_entry_when_piped(filled: Path) -> None:
    result = mycache("ls", cwd=filled)
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["FOLDER", "FUNCTION", "KEY", "ARGUMENTS", "SIZE", "CREATED"]
    assert len(rows) == 6
    assert any(f'{{"args":[],"kwargs":{{"name":"{LONG_NAME}"}}}}' in row for row in rows)
    squares = str(filled / "cache" / "squares")
    assert any(squares in row and "__main__.square" in row for row in rows)
    assert "…" not in result.stdout


def test_ls_json_lists_every_field(filled: Path) -> None:
    entries = ls_json(filled)
    assert len(entries) == 6
    square = next(e for e in entries if json.loads(e["arg_string"])["kwargs"] == {"n": 2})
    assert square["folder"] == str(filled / "cache" / "squares")
    assert square["function"] == "__main__.square"
    assert square["key"].startswith("__main__.square:")
    assert square["size"] > 0
    assert square["expires"] is None
    assert set(square) == {"folder", "function", "key", "arg_string", "size", "created", "expires"}


def test_ls_selects_by_folder_and_function(filled: Path) -> None:
    assert len(ls_json(filled, "--folder", "cache/squares")) == 3
    assert len(ls_json(filled, "--folder", "cache/greetings")) == 3
    assert len(ls_json(filled, "--function", "greet")) == 2
    assert len(ls_json(filled, "--function", "__main__.shout")) == 1
    assert ls_json(filled, "--function", "gree") == []
    assert len(ls_json(filled, "--folder", "cache/greetings", "--function", "shout")) == 1


def test_stats_counts_entries_and_bytes_per_folder(filled: Path) -> None:
    entries = ls_json(filled)
    result = mycache("stats", cwd=filled)
    assert result.returncode == 0, result.stderr
    lines = [line.split() for line in result.stdout.splitlines()]
    greetings_bytes = sum(e["size"] for e in entries if e["folder"].endswith("greetings"))
    squares_bytes = sum(e["size"] for e in entries if e["folder"].endswith("squares"))
    assert lines == [
        ["FOLDER", "ENTRIES", "BYTES"],
        [str(filled / "cache" / "greetings"), "3", str(greetings_bytes)],
        [str(filled / "cache" / "squares"), "3", str(squares_bytes)],
        ["total", "6", str(greetings_bytes + squares_bytes)],
    ]


def test_clear_refuses_without_yes_when_stdin_is_not_a_terminal(filled: Path) -> None:
    result = mycache("clear", cwd=filled, stdin="y\n")
    assert result.returncode == 1
    assert "stdin is not a terminal" in result.stderr
    assert "--yes" in result.stderr
    assert len(ls_json(filled)) == 6


def test_clear_with_yes_deletes_data_and_rows(filled: Path, run_python: Any) -> None:
    result = mycache("clear", "--function", "square", "--yes", cwd=filled)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("deleted 3 entries")
    assert [e["function"] for e in ls_json(filled)] == ["__main__.greet"] * 2 + ["__main__.shout"]
    rerun = run_python(FILL)
    assert rerun.stdout.splitlines() == ["square 1", "square 2", "square 3"]


def test_clear_asks_on_a_terminal(filled: Path) -> None:
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [MYCACHE, "clear", "--folder", "cache/greetings"],
        cwd=filled,
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
    )
    os.close(terminal)
    prompt = b""
    while b"[y/N]" not in prompt:
        prompt += os.read(controller, 1024)
    assert b"Delete 3 entries" in prompt
    os.write(controller, b"y\n")
    assert process.wait(timeout=60) == 0
    os.close(controller)
    assert [e["function"] for e in ls_json(filled)] == ["__main__.square"] * 3


def test_python_dash_m_and_explicit_config_and_db_file(filled: Path, tmp_path_factory: Any) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    config = filled / "mycache.toml"
    by_config = subprocess.run(
        [sys.executable, "-m", "my_cache", "ls", "--json", "--config", str(config)],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    # Relative paths in the settings are taken from the working directory, as for CacheStor.
    assert by_config.returncode == 0, by_config.stderr
    assert json.loads(by_config.stdout) == []
    catalogue = str(filled / "cache" / "catalogue.db")
    by_db_file = mycache(
        "ls", "--json", "--config", str(config), "--db-file", catalogue, cwd=elsewhere
    )
    assert len(json.loads(by_db_file.stdout)) == 6


def test_entries_whose_data_is_gone_are_not_listed(filled: Path) -> None:
    shutil.rmtree(filled / "cache" / "squares")
    assert [e["function"] for e in ls_json(filled)] == ["__main__.greet"] * 2 + ["__main__.shout"]


def test_an_invalid_setting_is_reported_with_its_source(filled: Path) -> None:
    result = mycache("ls", cwd=filled, MYCACHE_TYPE_STORAGE="in_cloud")
    assert result.returncode == 1
    assert "environment variable MYCACHE_TYPE_STORAGE" in result.stderr
    assert "Traceback" not in result.stderr
