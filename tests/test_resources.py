"""Bounded resources: a program with a cached function per folder, 1,200 of them, runs under
the common soft limit of 1024 file descriptors and keeps descriptors for its own files."""

from __future__ import annotations

from typing import Any

PROGRAM = """
    import asyncio, os, resource
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
    from my_cache import CacheStor

    stor = CacheStor(db_file="cache/my.db", type_storage="in_disk")
    runs = []

    def make(i):
        def value(n):
            runs.append(i)
            return bytes([i % 256]) * (100 if n else 50_000)  # inline, and a value file
        value.__qualname__ = f"value_{i}"
        return stor.cache(folder=f"cache/f{i}")(value)

    functions = [make(i) for i in range(1200)]
    def make_async(i):
        async def doubled(n):
            runs.append(-1)
            return (i, 2 * n)
        doubled.__qualname__ = f"doubled_{i}"
        return stor.cache_async(folder=f"cache/a{i}")(doubled)

    # The writer threads write to 1,200 more folders: each thread's connections count too.
    doubles = [make_async(i) for i in range(1200)]

    async def main():
        for round_ in range(2):  # the second round's calls hit
            for start in range(0, 1200, 100):
                batch = range(start, start + 100)
                assert await asyncio.gather(*(doubles[i](i) for i in batch)) == [
                    (i, 2 * i) for i in batch
                ]
            await stor.join()

    asyncio.run(main())
    for own in [open(f"own_{k}.txt", "w") for k in range(300)]:  # room for its own files
        own.close()
    for round_ in range(2):  # round-robin: each store is closed before it is used again
        for i, function in enumerate(functions):
            for n in (0, 1):
                assert function(n) == bytes([i % 256]) * (100 if n else 50_000)
    own = [open(f"own_{k}.txt", "w") for k in range(300)]  # the program's own files
    print(len(runs), len(os.listdir("/proc/self/fd")))
    stor.close()
"""


def test_1200_folders_under_1024_descriptors_leave_room_for_the_programs_own(
    run_python: Any,
) -> None:
    first = run_python(PROGRAM)
    assert first.stderr == ""  # no failed read or write was logged
    runs, descriptors = map(int, first.stdout.split())
    assert runs == 1200 * 2 + 1200
    assert descriptors < 1024
    second = run_python(PROGRAM)
    assert second.stderr == ""
    assert second.stdout.split()[0] == "0"  # every call of the second run hits
