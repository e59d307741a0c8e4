"""Typing as users see it: mypy --strict on code that uses the decorators."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

USER_CODE = '''
    import asyncio
    from my_cache import CacheInfo, CacheStor

    stor = CacheStor()

    @stor.cache(folder="cache/f")
    def fetch(url: str, retries: int = 3) -> bytes:
        return url.encode()

    @stor.cache_async(folder="cache/g")
    async def square(n: int) -> int:
        return n * n

    class Client:
        @stor.cache(folder="cache/m", ignore=["self"])
        def get(self, path: str) -> str:
            return path

    data: bytes = fetch("https://example.org", retries=1)
    info: CacheInfo = fetch.cache_info()
    removed: bool = fetch.invalidate("https://example.org")
    fetch.cache_clear()
    body: str = Client().get("/x")
    Client.get.invalidate(Client(), "/x")

    cached: bool = fetch.is_cached("https://example.org", retries=1)
    fresh: bytes = fetch.refresh("https://example.org")
    fetch.store(b"page", "https://example.org", retries=2)
    Client.get.store("body", Client(), "/x")

    async def main() -> None:
        value: int = await square(3)
        known: bool = await square.is_cached(3)
        again: int = await square.refresh(3)
        await square.store(9, 3)

    fetch(42)  # error: arg-type
    fetch("u", retry=1)  # error: call-arg
    text: str = fetch("u")  # error: assignment
    fetch.invalidate(b"u")  # error: arg-type
    Client().get(3)  # error: arg-type
    fetch.store("page", "u")  # error: arg-type
    fetch.store(b"page", 3)  # error: arg-type
    fetch.is_cached("u", tries=1)  # error: call-arg
    late: bytes = fetch.is_cached("u")  # error: assignment

    async def wrong() -> None:
        name: str = await square(3)  # error: assignment
        await square("3")  # error: arg-type
        await square.store("9", 3)  # error: arg-type
        flag: int = await square.refresh("3")  # error: arg-type
'''


def test_mypy_flags_exactly_the_wrong_uses(tmp_path: Path) -> None:
    source = textwrap.dedent(USER_CODE)
    (tmp_path / "user_code.py").write_text(source)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "user_code.py"],
        cwd=tmp_path,
        env={**os.environ, "MYPYPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    expected = {
        (number, re.search(r"# error: (\S+)", line)[1])  # type: ignore[index]
        for number, line in enumerate(source.splitlines(), start=1)
        if "# error:" in line
    }
    errors = re.findall(r"user_code\.py:(\d+): error: .*\[([a-z-]+)\]", result.stdout)
    found = {(int(number), code) for number, code in errors}
    assert found == expected, result.stdout
