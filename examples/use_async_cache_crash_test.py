"""A stampede: 1200 concurrent tasks over 100 distinct keys, each call sleeping at random.

Every key's coroutine runs exactly once however many tasks await it, and different keys run
concurrently, so the whole batch takes about as long as the slowest call. The results are
written to disk in the background; `join()` waits for them. On a second run nothing executes.
"""

import asyncio
import random
import time

from my_cache import CacheStor

TASKS = 1200
KEYS = 100

cache_stor = CacheStor(db_file="cache/my.db")
executions = 0


@cache_stor.cache_async(folder="cache/crash_test")
async def fetch(key: int) -> dict[str, int]:
    global executions
    executions += 1
    await asyncio.sleep(random.uniform(0.1, 0.5))
    return {"key": key, "square": key * key}


async def main() -> None:
    started = time.perf_counter()
    results = await asyncio.gather(*(fetch(i % KEYS) for i in range(TASKS)))
    elapsed = time.perf_counter() - started
    assert all(result["square"] == (i % KEYS) ** 2 for i, result in enumerate(results))
    await cache_stor.join()
    print(f"{TASKS} tasks over {KEYS} keys in {elapsed:.2f} s")
    print(f"executions: {executions}")


if __name__ == "__main__":
    asyncio.run(main())
