"""my_cache: decorate a function once; equivalent calls return its stored result."""

from my_cache._types import (
    AsyncCachedFunction,
    BoundCachedFunction,
    CachedFunction,
    CacheInfo,
    CacheStoreError,
)
from my_cache._writer import CacheWriteError
from my_cache.cache_stor import CacheStor
from my_cache.serialisers import Serialise, SerialiseBin, SerialiseJson, SerialiseMsgpack
from my_cache.settings import Settings, SettingsError, TypeStorage

__all__ = [
    "AsyncCachedFunction",
    "BoundCachedFunction",
    "CacheInfo",
    "CacheStor",
    "CacheStoreError",
    "CacheWriteError",
    "CachedFunction",
    "Serialise",
    "SerialiseBin",
    "SerialiseJson",
    "SerialiseMsgpack",
    "Settings",
    "SettingsError",
    "TypeStorage",
]
