"""The original MyCache example: results of `example` are stored on disk under cache/example.

Run it twice: the second run prints no "param1=..." line, because every result comes from the
cache. Delete the cache/ folder to start over.
"""

from my_cache import CacheStor, TypeStorage

cache_stor = CacheStor(db_file="cache/my.db", type_storage=TypeStorage.IN_DISK)


@cache_stor.cache(folder="cache/example")
def example(param1: str, param2: bool = False, param3: bool = False) -> str:
    print(f"{param1=},{param2=},{param3=}")
    return f"result - {param1=},{param2=},{param3=}"


result = example("param2", param3=True, param2=False)
print(result)
# The same call written differently is the same entry: the function does not run again.
print(example(param1="param2", param3=True))
