"""A CacheStor configured only by mycache.toml and MYCACHE_* environment variables.

Run it from the project root, where mycache.toml selects in_disk storage and the JSON
serialiser; switch the debug log on without touching the code:

    MYCACHE_IS_DEBUG_LOG=1 python examples/config_driven.py
"""

import json
import subprocess
import sys

from my_cache import CacheStor

cache_stor = CacheStor()


@cache_stor.cache(folder="cache/squares")
def square(n: int) -> int:
    print(f"computing square({n})")
    return n * n


print(cache_stor)
print([square(n) for n in (2, 3, 2, 3)])
cache_stor.close()

# What is stored, as the mycache command lists it (it reads the same settings).
listing = subprocess.run(
    [sys.executable, "-m", "my_cache", "ls", "--function", "square", "--json"],
    capture_output=True,
    check=True,
    text=True,
)
for entry in sorted(json.loads(listing.stdout), key=lambda entry: entry["arg_string"]):
    print(f"catalogued: {entry['function']} {entry['arg_string']} ({entry['size']} bytes)")
