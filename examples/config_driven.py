"""A CacheStor configured only by mycache.toml and MYCACHE_* environment variables.

Run it from the project root, where mycache.toml selects in_disk storage and the JSON
serialiser; switch the debug log on without touching the code:

    MYCACHE_IS_DEBUG_LOG=1 python examples/config_driven.py
"""

import sqlite3

from my_cache import CacheStor

cache_stor = CacheStor()


@cache_stor.cache(folder="cache/squares")
def square(n: int) -> int:
    print(f"computing square({n})")
    return n * n


print(cache_stor)
print([square(n) for n in (2, 3, 2, 3)])
cache_stor.close()

with sqlite3.connect(cache_stor.db_file) as catalogue:
    rows = catalogue.execute(
        "SELECT function, arg_string, size FROM entries"
        " WHERE function LIKE '%square' ORDER BY arg_string"
    )
    for function, arg_string, size in rows:
        print(f"catalogued: {function} {arg_string} ({size} bytes)")
