"""Settings: CacheStor arguments > MYCACHE_* variables > mycache.toml > defaults."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from my_cache import (
    CacheStor,
    SerialiseBin,
    SerialiseJson,
    SerialiseMsgpack,
    SettingsError,
    TypeStorage,
)
from my_cache import settings as settings_module


@pytest.fixture(autouse=True)
def nothing_warned_yet(monkeypatch: pytest.MonkeyPatch) -> None:
    """Warnings are given once a process: each test starts as a new process does."""
    monkeypatch.setattr(settings_module, "_warned", set())


def test_defaults_without_file_or_environment() -> None:
    stor = CacheStor()
    assert stor.db_file == "cache/my.db"
    assert stor.type_storage is TypeStorage.IN_MEMORY
    assert stor.is_debug_log is False
    assert type(stor.serialiser) is SerialiseBin


def test_mycache_toml_in_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "mycache.toml").write_text(
        'db_file = "data/catalogue.db"\ntype_storage = "in_disk"\n'
        'is_debug_log = true\nserialiser = "msgpack"\n'
    )
    stor = CacheStor()
    assert stor.db_file == "data/catalogue.db"
    assert stor.type_storage is TypeStorage.IN_DISK
    assert stor.is_debug_log is True
    assert type(stor.serialiser) is SerialiseMsgpack


def test_environment_wins_over_the_file_and_arguments_win_over_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mycache.toml").write_text('db_file = "from-file.db"\nserialiser = "json"\n')
    monkeypatch.setenv("MYCACHE_DB_FILE", "from-env.db")
    monkeypatch.setenv("MYCACHE_TYPE_STORAGE", "IN_DISK")
    stor = CacheStor()
    assert stor.db_file == "from-env.db"
    assert stor.type_storage is TypeStorage.IN_DISK
    assert type(stor.serialiser) is SerialiseJson
    explicit = CacheStor(db_file="from-argument.db", type_storage=TypeStorage.IN_MEMORY)
    assert explicit.db_file == "from-argument.db"
    assert explicit.type_storage is TypeStorage.IN_MEMORY


def test_mycache_config_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "elsewhere" / "settings.toml"
    config.parent.mkdir()
    config.write_text('type_storage = "In_Disk"\n')
    (tmp_path / "mycache.toml").write_text('type_storage = "in_memory"\n')
    monkeypatch.setenv("MYCACHE_CONFIG", str(config))
    assert CacheStor().type_storage is TypeStorage.IN_DISK


def test_a_missing_mycache_config_file_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MYCACHE_CONFIG", "nowhere.toml")
    with pytest.raises(SettingsError, match=r"MYCACHE_CONFIG names nowhere\.toml"):
        CacheStor()


@pytest.mark.parametrize("spelling", ["in_disk", "IN_DISK", "In_Disk"])
def test_type_storage_accepts_any_case(monkeypatch: pytest.MonkeyPatch, spelling: str) -> None:
    monkeypatch.setenv("MYCACHE_TYPE_STORAGE", spelling)
    assert CacheStor().type_storage is TypeStorage.IN_DISK
    assert CacheStor(type_storage=spelling).type_storage is TypeStorage.IN_DISK


@pytest.mark.parametrize(
    ("name", "cls"), [("bin", SerialiseBin), ("JSON", SerialiseJson), ("msgpack", SerialiseMsgpack)]
)
def test_serialiser_names(monkeypatch: pytest.MonkeyPatch, name: str, cls: type) -> None:
    monkeypatch.setenv("MYCACHE_SERIALISER", name)
    assert type(CacheStor().serialiser) is cls


def test_debug_log_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MYCACHE_IS_DEBUG_LOG", "1")
    assert CacheStor().is_debug_log is True


def test_an_invalid_environment_value_names_field_and_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MYCACHE_TYPE_STORAGE", "in_cloud")
    with pytest.raises(SettingsError) as raised:
        CacheStor()
    message = str(raised.value)
    assert "'type_storage'" in message
    assert "'in_cloud'" in message
    assert "environment variable MYCACHE_TYPE_STORAGE" in message


def test_an_invalid_file_value_names_field_and_file(tmp_path: Path) -> None:
    (tmp_path / "mycache.toml").write_text('serialiser = "yaml"\n')
    with pytest.raises(SettingsError) as raised:
        CacheStor()
    message = str(raised.value)
    assert "'serialiser'" in message
    assert "file mycache.toml" in message


def test_an_invalid_argument_names_field_and_argument() -> None:
    expected = "'is_debug_log' = 'perhaps' from the CacheStor argument"
    with pytest.raises(SettingsError, match=expected):
        CacheStor(is_debug_log="perhaps")  # type: ignore[arg-type]


def test_an_unknown_key_in_the_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "mycache.toml").write_text('type_storge = "in_disk"\n')
    with pytest.raises(SettingsError, match=r"'type_storge'.*file mycache\.toml"):
        CacheStor()


def test_malformed_toml_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "mycache.toml").write_text("type_storage = in_disk\n")
    with pytest.raises(SettingsError, match=r"mycache.toml is not valid TOML"):
        CacheStor()


def test_in_disk_with_an_empty_db_file_is_refused() -> None:
    with pytest.raises(ValueError, match="db_file is empty"):
        CacheStor(db_file="", type_storage=TypeStorage.IN_DISK)


def test_settings_errors_are_value_errors() -> None:
    assert issubclass(SettingsError, ValueError)


def test_an_unknown_variable_warns_once_with_the_closest_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MYCACHE_TYPE_STORGE", "in_disk")
    with capture_logs() as events:
        first = CacheStor()
        second = CacheStor()
    assert first.type_storage is second.type_storage is TypeStorage.IN_MEMORY
    assert events == [
        {
            "event": "my_cache.unknown_setting",
            "log_level": "warning",
            "variable": "MYCACHE_TYPE_STORGE",
            "reason": "not a my_cache setting, ignored; did you mean MYCACHE_TYPE_STORAGE?",
        }
    ]


def test_an_unknown_variable_in_lower_case_names_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("mycache_is_debug", "1")
    with capture_logs() as events:
        CacheStor()
    assert [(e["variable"], e["reason"]) for e in events] == [
        ("mycache_is_debug", "not a my_cache setting, ignored; did you mean MYCACHE_IS_DEBUG_LOG?")
    ]


def test_an_unknown_variable_like_no_setting_has_no_suggestion(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MYCACHE_COLOUR", "blue")
    with capture_logs() as events:
        CacheStor()
    assert [(e["variable"], e["reason"]) for e in events] == [
        ("MYCACHE_COLOUR", "not a my_cache setting, ignored")
    ]


def test_known_variables_in_any_case_are_not_warned_of(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("mycache_serialiser", "json")
    monkeypatch.setenv("MYCACHE_REDIS_URL", "redis://127.0.0.1:6379/1")
    monkeypatch.setenv("MYCACHE_CONFIG", "")
    with capture_logs() as events:
        assert type(CacheStor().serialiser) is SerialiseJson
    assert events == []


def test_the_warning_never_shows_the_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MYCACHE_REDIS_ULR", "redis://:s3cret-pass@cache.example:6379/0")
    with capture_logs() as events:
        CacheStor()
    assert [e["variable"] for e in events] == ["MYCACHE_REDIS_ULR"]
    assert "MYCACHE_REDIS_URL?" in events[0]["reason"]
    assert "s3cret" not in repr(events)


def test_a_toml_file_that_is_not_utf8_is_one_line_naming_it(tmp_path: Path) -> None:
    (tmp_path / "mycache.toml").write_bytes(b'type_storage = "in_disk"\ndb_file = "caf\xe9.db"\n')
    with pytest.raises(SettingsError) as raised:
        CacheStor()
    assert str(raised.value) == (
        "mycache.toml is not UTF-8, as TOML must be: line 2 has byte 0xe9; save the file as UTF-8"
    )


def test_the_mycache_command_shows_a_non_utf8_file_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "mycache.toml").write_bytes(b'db_file = "caf\xe9.db"\n')
    mycache = str(Path(sys.executable).parent / "mycache")
    result = subprocess.run(
        [mycache, "ls"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        "Error: mycache.toml is not UTF-8, as TOML must be: line 1 has byte 0xe9; "
        "save the file as UTF-8\n"
    )
