"""The original MyCache async example: results of `example` are written to disk in the background.

Both tasks ask for the same call: the coroutine runs once and both get its result. Run it
twice: the second run prints no "nested ..." line, because the result comes from disk.
"""

import asyncio

from my_cache import CacheStor

cache_stor = CacheStor(db_file="cache/my.db")


@cache_stor.cache_async(folder="cache/example_async")
async def example(param1: str, param2: bool = False, param3: bool = False) -> str:
    print(f"nested {param1=},{param2=},{param3=}")
    await asyncio.sleep(1)
    return f"{param1=},{param2=},{param3=}"


async def main() -> None:
    tasks = [
        example("param1", param3=True, param2=False),
        example("param1", param3=True, param2=False),
    ]

    results = await asyncio.gather(*tasks)
    print(results)

    # Wait until the cache's background writes are on disk before leaving the program.
    await cache_stor.join()

    print("all done")


if __name__ == "__main__":
    asyncio.run(main())
