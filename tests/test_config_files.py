"""config/: the example file documents every setting; the schema matches the settings model."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from my_cache import CacheStor, Settings
from my_cache.settings import settings_json_schema

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_FILE = ROOT / "config" / "mycache.schema.json"
EXAMPLE_FILE = ROOT / "config" / "mycache.example.toml"


def load_toml(path: Path) -> dict[str, Any]:
    with path.open("rb") as file:
        return tomllib.load(file)


def test_the_schema_file_is_up_to_date() -> None:
    written = json.loads(SCHEMA_FILE.read_text())
    assert written == settings_json_schema(), "stale: run `make schema` and commit the result"


def test_the_example_documents_every_setting_with_its_default() -> None:
    example = load_toml(EXAMPLE_FILE)
    defaults = Settings().model_dump(mode="json")
    # TOML has no null: a setting whose default is "none" is shown commented out.
    assert example == {key: value for key, value in defaults.items() if value is not None}
    lines = EXAMPLE_FILE.read_text().splitlines()
    for key, value in defaults.items():
        written = f"# {key} = " if value is None else f"{key} = "
        line = next(i for i, text in enumerate(lines) if text.startswith(written))
        assert lines[line - 1].startswith("#"), f"{key} has no comment above it"


@pytest.mark.parametrize("path", [EXAMPLE_FILE, ROOT / "mycache.toml"], ids=lambda p: p.name)
def test_the_shipped_files_are_valid(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jsonschema.validate(load_toml(path), settings_json_schema())
    monkeypatch.setenv("MYCACHE_CONFIG", str(path))
    CacheStor()


@pytest.mark.parametrize(
    "document",
    [
        {"type_storage": "IN_DISK", "serialiser": "MsgPack"},
        {"db_file": "x.db", "is_debug_log": True},
    ],
)
def test_the_schema_accepts_what_the_settings_accept(document: dict[str, Any]) -> None:
    jsonschema.validate(document, settings_json_schema())
    Settings(**document)


@pytest.mark.parametrize(
    "document",
    [{"type_storage": "in_cloud"}, {"serialiser": "yaml"}, {"typo": 1}, {"is_debug_log": "maybe"}],
)
def test_the_schema_rejects_what_the_settings_reject(document: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, settings_json_schema())
