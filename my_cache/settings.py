"""Typed settings: CacheStor arguments > ``MYCACHE_*`` variables > ``mycache.toml`` > defaults."""

from __future__ import annotations

import difflib
import os
import threading
import tomllib
from collections.abc import Iterable
from contextvars import ContextVar
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, ValidationInfo, WithJsonSchema, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from my_cache import _log
from my_cache._secrets import masked_url, redis_url_problem

ENV_PREFIX = "MYCACHE_"
CONFIG_ENV_VAR = "MYCACHE_CONFIG"
DEFAULT_CONFIG_FILE = "mycache.toml"


class TypeStorage(Enum):
    """Where results live: ``IN_MEMORY`` (this process only), ``IN_DISK`` (diskcache), or
    ``IN_REDIS`` (a Redis server shared by many processes and machines)."""

    IN_MEMORY = "in_memory"
    IN_DISK = "in_disk"
    IN_REDIS = "in_redis"


SerialiserName = Literal["bin", "json", "msgpack"]


def _any_case_pattern(*words: str) -> str:
    """A JSON Schema pattern matching any of ``words`` in any letter case."""
    alternatives = (
        "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in word) for word in words
    )
    return "^(" + "|".join(alternatives) + ")$"


class SettingsError(ValueError):
    """A setting is invalid; the message names the field and where its value came from."""


class Settings(BaseSettings):
    """The settings of a CacheStor. Field names are the TOML keys; ``MYCACHE_<FIELD>`` env vars."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        validate_default=True,
        # A ValidationError printed as is would quote redis_url, password included;
        # load_settings words its own message, with the URL masked.
        hide_input_in_errors=True,
    )

    db_file: str = Field(
        default="cache/my.db",
        description="The catalogue: an SQLite file listing every IN_DISK folder. ~ and "
        "$VARIABLE or ${VARIABLE} are expanded; an undefined variable is left as written.",
    )
    type_storage: Annotated[
        TypeStorage,
        WithJsonSchema(
            {"type": "string", "pattern": _any_case_pattern(*(t.value for t in TypeStorage))}
        ),
    ] = Field(
        default=TypeStorage.IN_MEMORY,
        description="in_memory, in_disk or in_redis, in any letter case.",
    )
    is_debug_log: bool = Field(
        default=False,
        description="Log every hit, miss and write through structlog.",
    )
    enabled: bool = Field(
        default=True,
        description="false turns caching off: every call runs its function, and nothing is "
        "read or written (no file, folder or Redis connection is made).",
    )
    serialiser: Annotated[
        SerialiserName,
        WithJsonSchema({"type": "string", "pattern": _any_case_pattern("bin", "json", "msgpack")}),
    ] = Field(
        default="bin",
        description="How arguments become keys: bin (pickle), json or msgpack, in any letter case.",
    )

    max_workers: int = Field(
        default=2,
        ge=1,
        description="Threads that pickle and write cache_async results in the background.",
    )

    expire: float | None = Field(
        default=None,
        gt=0,
        description="Default lifetime of an entry in seconds; none means entries never expire.",
    )
    size_limit: int | None = Field(
        default=None,
        gt=0,
        description="Bytes each folder may hold: in_disk its entries' stored size (the least "
        "recently stored are evicted first), in_memory their pickled size (the least recently "
        "used first). A larger value is returned, not stored. in_redis: Redis's maxmemory. "
        "none means no limit and no eviction.",
    )

    mmap_mode: Literal["r"] | None = Field(
        default=None,
        description='"r": large arrays of in_disk and cache_async results are mapped '
        "read-only from their files on a hit, as joblib's mmap_mode='r': results larger "
        "than memory can be used; such arrays cannot be written to. none: read into memory.",
    )

    trust_group: bool = Field(
        default=False,
        description="Share in_disk stores with your group on purpose: read stores and db_file "
        "that the group may write, create them group-writable. Whoever can write a store can "
        "run code as every user of it (a value is a pickle): only for a group you trust.",
    )

    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        description="The Redis server of in_redis: redis://[:password@]host:port/db, "
        "rediss://... for TLS, or unix:///path/to/socket.",
    )
    redis_connect_timeout: float = Field(
        default=2.0,
        gt=0,
        description="Seconds to wait for a connection to Redis before calling it unreachable.",
    )
    redis_read_timeout: float = Field(
        default=2.0,
        gt=0,
        description="Seconds to wait for a Redis reply before calling it unreachable.",
    )
    redis_lock_timeout: float = Field(
        default=60.0,
        gt=0,
        description="in_redis computes each key once across processes: the others wait up to "
        "this many seconds for it, then compute it themselves. A process that dies frees its "
        "keys within 5 s (its locks are leases it renews while it computes).",
    )
    redis_cluster: bool = Field(
        default=False,
        description="in_redis: redis_url is a node of a Redis Cluster (redis:// or rediss://, "
        "database 0); entries spread over its nodes, and listings and clears reach them all.",
    )

    @field_validator("db_file")
    @classmethod
    def _expand_db_file(cls, value: str) -> str:
        return expand_path(value)

    @field_validator("redis_cluster")
    @classmethod
    def _cluster_url(cls, value: bool, info: ValidationInfo) -> bool:
        # A field's error, not the model's: the model's would quote every setting, the
        # password in redis_url included.
        url = info.data.get("redis_url", "")
        if value and (url.startswith("unix://") or urlsplit(url).path not in ("", "/", "/0")):
            raise ValueError(
                "needs a redis:// or rediss:// redis_url of database 0 "
                "(a cluster has no other databases)"
            )
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        # Here rather than at the first connection, where redis-py's messages may quote the
        # password (a password cut at an unencoded '/' is read as the port).
        problem = redis_url_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        # repr() and str() show redis_url without its password.
        for name, value in super().__repr_args__():
            yield name, masked_url(value) if name == "redis_url" else value

    @field_validator("type_storage", "serialiser", mode="before")
    @classmethod
    def _lower_case(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _TomlSource(settings_cls, config_file())


class _TomlSource(TomlConfigSettingsSource):
    """The TOML source, failing with the file's name when the file is not valid TOML."""

    def _read_file(self, file_path: Any) -> dict[str, Any]:
        try:
            return super()._read_file(file_path)
        except tomllib.TOMLDecodeError as error:
            raise SettingsError(f"{file_path} is not valid TOML: {error}") from error
        except UnicodeDecodeError as error:
            # Python's own message names neither the file nor the line.
            line = error.object[: error.start].count(b"\n") + 1
            byte = error.object[error.start]
            raise SettingsError(
                f"{file_path} is not UTF-8, as TOML must be: line {line} has byte "
                f"0x{byte:02x}; save the file as UTF-8"
            ) from None


def expand_path(path: str, *, on_disk: bool = True) -> str:
    """``path`` with ``~``, ``~user``, ``$VARIABLE`` and ``${VARIABLE}`` expanded, as a shell
    would. An undefined variable or unknown user is left as written: guessing would put the
    cache somewhere nobody asked for.

    ``on_disk``: the path names something on disk. A path that changes on expansion but
    exists as written (a ``~`` folder made by an older my_cache, a name with a ``$``) is
    warned of once, since the expanded path is used and whatever is there is left behind.
    """
    expanded = os.path.expanduser(os.path.expandvars(path))
    if on_disk and expanded != path and os.path.lexists(path):
        literal = os.path.abspath(path)
        if _first_time(f"path {literal}"):
            _log.warning(
                "my_cache.path_expanded",
                path=path,
                expanded=expanded,
                reason=f"{literal} exists, but ~ and $VARIABLES in paths are expanded: "
                f"{expanded} is used instead; move {literal} there to keep using it",
            )
    return expanded


# The file ``load_settings(config=...)`` reads, while it reads it.
_chosen_config: ContextVar[str | None] = ContextVar("_chosen_config", default=None)


def config_file() -> Path:
    """The TOML file settings are read from: the one ``load_settings`` was given, else
    ``$MYCACHE_CONFIG``, else ``./mycache.toml``."""
    chosen = _chosen_config.get()
    if chosen is not None:
        return Path(expand_path(chosen))
    named = os.environ.get(CONFIG_ENV_VAR)
    if not named:
        return Path(DEFAULT_CONFIG_FILE)
    path = Path(expand_path(named))
    if not path.is_file():
        # Both spellings: the expanded one shows a variable that was not set, or set wrong.
        shown = named if str(path) == named else f"{named} ({path})"
        raise SettingsError(f"{CONFIG_ENV_VAR} names {shown}, which is not a file")
    return path


def load_settings(config: str | None = None, **explicit: Any) -> Settings:
    """Resolve the settings; ``explicit`` values (None means "not given") win over every source.

    ``config`` names the TOML file to read instead of ``$MYCACHE_CONFIG`` or ./mycache.toml.
    Raises SettingsError naming the field and its source when a value is invalid.
    """
    given = {name: value for name, value in explicit.items() if value is not None}
    _warn_of_unknown_variables()
    token = _chosen_config.set(config)
    try:
        return Settings(**given)
    except ValidationError as error:
        raise SettingsError(_describe(error, given)) from None
    finally:
        _chosen_config.reset(token)


# What has been warned of in this process: an application creating many CacheStors, or a
# long-lived one, would otherwise repeat the same warning on every one.
_warned: set[str] = set()
_warned_lock = threading.Lock()


def _first_time(subject: str) -> bool:
    with _warned_lock:
        if subject in _warned:
            return False
        _warned.add(subject)
        return True


def _warn_of_unknown_variables() -> None:
    """Warn of each ``MYCACHE_*`` variable that is no setting: a typo is ignored otherwise,
    while the same typo in mycache.toml is an error."""
    known = {field.upper() for field in Settings.model_fields}
    known.add(CONFIG_ENV_VAR.removeprefix(ENV_PREFIX))
    for variable in os.environ:
        # Case-insensitive, as pydantic-settings reads them.
        name = variable.upper()
        if not name.startswith(ENV_PREFIX):
            continue
        suffix = name.removeprefix(ENV_PREFIX)
        if suffix in known or not _first_time(f"variable {variable}"):
            continue
        # Compared without the prefix, which every name shares and would make any two close.
        close = difflib.get_close_matches(suffix, sorted(known), n=1)
        reason = "not a my_cache setting, ignored"
        if close:
            reason += f"; did you mean {ENV_PREFIX}{close[0]}?"
        # The value is never shown: a misspelt MYCACHE_REDIS_URL holds a password.
        _log.warning("my_cache.unknown_setting", variable=variable, reason=reason)


def _describe(error: ValidationError, given: dict[str, Any]) -> str:
    problems = []
    for detail in error.errors():
        field = str(detail["loc"][0]) if detail["loc"] else "?"
        where = f"setting {field!r}"
        if detail["type"] != "extra_forbidden":
            # An unknown key's value is left out: a misspelt redis_url holds the password.
            where += f" = {_shown(field, detail.get('input'))}"
        problems.append(f"{where} from {_source_of(field, given)}: {detail['msg']}")
    return "invalid my_cache settings: " + "; ".join(problems)


def _shown(field: str, value: Any) -> str:
    """``value`` as an error shows it: redis_url without its password."""
    if field != "redis_url":
        return repr(value)
    if isinstance(value, str):
        return repr(masked_url(value))
    return f"<{type(value).__name__}>"  # a list or table might hold the password


def _source_of(field: str, given: dict[str, Any]) -> str:
    if field in given:
        return "the CacheStor argument"
    env_var = ENV_PREFIX + field.upper()
    if any(name.upper() == env_var for name in os.environ):
        return f"environment variable {env_var}"
    path = config_file()
    if path.is_file():
        with path.open("rb") as file:
            if field in tomllib.load(file):
                return f"file {path}"
    return "the defaults"


def settings_json_schema() -> dict[str, Any]:
    """The JSON Schema of ``mycache.toml`` (``config/mycache.schema.json`` is this, written out)."""
    schema: dict[str, Any] = {"$schema": "https://json-schema.org/draft/2020-12/schema"}
    schema |= Settings.model_json_schema()
    schema["title"] = "mycache.toml"
    schema["additionalProperties"] = False
    return schema
