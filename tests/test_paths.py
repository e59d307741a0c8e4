"""Paths in the settings and ``folder``: ``~`` and ``$VARIABLE`` are expanded, as a shell would."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from my_cache import CacheStor, SettingsError, TypeStorage
from my_cache import settings as settings_module
from my_cache.settings import load_settings

MYCACHE = str(Path(sys.executable).parent / "mycache")
UNSET = "MY_CACHE_TEST_UNSET_VARIABLE"


@pytest.fixture(autouse=True)
def fresh_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in a new process: nothing warned of yet, and UNSET unset."""
    monkeypatch.setattr(settings_module, "_warned", set())
    monkeypatch.delenv(UNSET, raising=False)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "home"
    folder.mkdir()
    monkeypatch.setenv("HOME", str(folder))
    return folder


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The working directory, apart from HOME and the folders variables name."""
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def fill(stor: CacheStor, folder: str) -> None:
    @stor.cache(folder=folder)
    def square(n: int) -> int:
        return n * n

    assert square(3) == 9


@pytest.fixture
def closing() -> Iterator[list[CacheStor]]:
    """CacheStors to close after the test."""
    made: list[CacheStor] = []
    yield made
    for stor in made:
        stor.close()


def test_tilde_in_db_file_is_the_home_folder(
    home: Path, work: Path, closing: list[CacheStor]
) -> None:
    stor = CacheStor(db_file="~/c/my.db", type_storage="in_disk")
    closing.append(stor)
    fill(stor, "cache/squares")
    assert stor.db_file == str(home / "c" / "my.db")
    assert (home / "c" / "my.db").is_file()
    assert not (work / "~").exists()


@pytest.mark.parametrize("written", ["$DATA/my.db", "${DATA}/my.db"])
@pytest.mark.parametrize("source", ["argument", "environment", "file"])
def test_variables_in_db_file_from_every_source(
    tmp_path: Path,
    work: Path,
    monkeypatch: pytest.MonkeyPatch,
    closing: list[CacheStor],
    written: str,
    source: str,
) -> None:
    monkeypatch.setenv("DATA", str(tmp_path / "data"))
    if source == "environment":
        monkeypatch.setenv("MYCACHE_DB_FILE", written)
    elif source == "file":
        (work / "mycache.toml").write_text(f'db_file = "{written}"\n')
    stor = CacheStor(db_file=written if source == "argument" else None, type_storage="in_disk")
    closing.append(stor)
    fill(stor, "cache/squares")
    assert stor.db_file == str(tmp_path / "data" / "my.db")
    assert (tmp_path / "data" / "my.db").is_file()
    assert not (work / "$DATA").exists()
    assert not (work / "${DATA}").exists()


def test_variables_and_tilde_in_folder_on_disk(
    tmp_path: Path,
    home: Path,
    work: Path,
    monkeypatch: pytest.MonkeyPatch,
    closing: list[CacheStor],
) -> None:
    monkeypatch.setenv("DATA", str(tmp_path / "data"))
    stor = CacheStor(db_file=tmp_path / "catalogue.db", type_storage=TypeStorage.IN_DISK)
    closing.append(stor)
    fill(stor, "$DATA/squares")
    fill(stor, "~/cache/squares")
    assert (tmp_path / "data" / "squares").is_dir()
    assert (home / "cache" / "squares").is_dir()
    assert list(work.iterdir()) == []


def test_variables_in_folder_in_memory(
    tmp_path: Path, work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATA", str(tmp_path / "data"))
    stor = CacheStor(type_storage=TypeStorage.IN_MEMORY, is_debug_log=True)
    with capture_logs() as events:
        fill(stor, "${DATA}/squares")
    assert {event["folder"] for event in events} == {str(tmp_path / "data" / "squares")}


def test_the_mycache_command_expands_db_file_and_folder(
    tmp_path: Path,
    home: Path,
    work: Path,
    monkeypatch: pytest.MonkeyPatch,
    closing: list[CacheStor],
) -> None:
    monkeypatch.setenv("DATA", str(tmp_path / "data"))
    stor = CacheStor(db_file="~/my.db", type_storage="in_disk")
    closing.append(stor)
    fill(stor, "$DATA/squares")
    stor.close()
    listed = subprocess.run(
        [MYCACHE, "ls", "--json", "--db-file", "~/my.db", "--folder", "$DATA/squares"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert '"folder": "' + str(tmp_path / "data" / "squares") + '"' in listed.stdout
    assert listed.stderr == ""


def test_mycache_config_with_a_variable(
    tmp_path: Path, work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "settings.toml").write_text('type_storage = "in_disk"\n')
    monkeypatch.setenv("CONF", str(tmp_path / "conf"))
    monkeypatch.setenv("MYCACHE_CONFIG", "$CONF/settings.toml")
    assert CacheStor().type_storage is TypeStorage.IN_DISK


def test_a_config_argument_with_a_tilde(home: Path, work: Path) -> None:
    (home / "settings.toml").write_text('serialiser = "json"\n')
    assert load_settings(config="~/settings.toml").serialiser == "json"


def test_the_mycache_command_takes_a_quoted_tilde_config(home: Path, work: Path) -> None:
    (home / "settings.toml").write_text(f'db_file = "{home}/elsewhere.db"\n')
    command = [sys.executable, "-m", "my_cache", "stats", "--config"]
    found = subprocess.run([*command, "~/settings.toml"], capture_output=True, text=True)
    assert (found.returncode, found.stderr) == (
        0,
        f"no entries: catalogue {home}/elsewhere.db does not exist\n",
    )
    missing = subprocess.run([*command, "~/nope.toml"], capture_output=True, text=True)
    assert missing.returncode == 2
    assert missing.stderr.splitlines()[-1] == (
        "Error: Invalid value for '--config': '~/nope.toml' is not a file"
    )


def test_a_mycache_config_naming_no_file_shows_it_both_ways(
    home: Path, work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MYCACHE_CONFIG", "~/nowhere.toml")
    expected = f"MYCACHE_CONFIG names ~/nowhere.toml ({home / 'nowhere.toml'}), which is not a file"
    with pytest.raises(SettingsError) as raised:
        CacheStor()
    assert str(raised.value) == expected


def test_an_undefined_variable_is_left_as_written(work: Path) -> None:
    stor = CacheStor(db_file=f"${UNSET}/my.db")
    assert stor.db_file == f"${UNSET}/my.db"
    with capture_logs() as events:
        fill(stor, f"${{{UNSET}}}/squares")
    assert events == []


def test_an_unknown_user_is_left_as_written(work: Path) -> None:
    assert CacheStor(db_file="~no_such_user_of_my_cache/my.db").db_file == (
        "~no_such_user_of_my_cache/my.db"
    )


def test_another_users_home(work: Path) -> None:
    user = "root"
    expected = os.path.expanduser(f"~{user}")
    if expected == f"~{user}":
        pytest.skip(f"no user {user} here")
    assert CacheStor(db_file=f"~{user}/my.db").db_file == f"{expected}/my.db"


def test_an_empty_db_file_stays_empty(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert CacheStor(db_file="").db_file == ""
    monkeypatch.setenv("MYCACHE_DB_FILE", "")
    assert CacheStor().db_file == ""
    with pytest.raises(ValueError, match="db_file is empty"):
        CacheStor(type_storage=TypeStorage.IN_DISK)


def test_a_path_with_a_dollar_that_exists_is_used_when_nothing_expands(
    work: Path, closing: list[CacheStor]
) -> None:
    (work / f"prices${UNSET}").mkdir()
    stor = CacheStor(db_file=f"prices${UNSET}/my.db", type_storage="in_disk")
    closing.append(stor)
    with capture_logs() as events:
        fill(stor, f"prices${UNSET}/squares")
    assert events == []
    assert (work / f"prices${UNSET}" / "my.db").is_file()
    assert (work / f"prices${UNSET}" / "squares").is_dir()


def test_a_path_that_exists_as_written_but_expands_is_warned_of_once(
    home: Path, work: Path, closing: list[CacheStor]
) -> None:
    # What an older my_cache left: a folder named "~" in the working directory.
    (work / "~" / "c").mkdir(parents=True)
    (work / "~" / "c" / "my.db").touch()
    with capture_logs() as events:
        stor = CacheStor(db_file="~/c/my.db", type_storage="in_disk")
        closing.append(stor)
        closing.append(CacheStor(db_file="~/c/my.db", type_storage="in_disk"))
    assert [(e["event"], e["log_level"]) for e in events] == [("my_cache.path_expanded", "warning")]
    assert events[0]["path"] == "~/c/my.db"
    assert events[0]["expanded"] == str(home / "c" / "my.db")
    assert str(work / "~" / "c" / "my.db") in events[0]["reason"]
    assert stor.db_file == str(home / "c" / "my.db")

    (work / "~" / "squares").mkdir()
    with capture_logs() as events:
        fill(stor, "~/squares")
    assert [e["event"] for e in events] == ["my_cache.path_expanded"]
    assert (home / "squares").is_dir()


def test_redis_folders_are_names_not_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("redis")
    from my_cache._storages import BACKENDS

    monkeypatch.setenv("DATA", "/elsewhere")
    backend = BACKENDS[TypeStorage.IN_REDIS](load_settings(type_storage="in_redis"))
    assert backend.folder_name("$DATA/./squares") == "$DATA/squares"
