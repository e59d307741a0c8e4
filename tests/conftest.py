from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from my_cache import CacheStor, TypeStorage
from tests.redis_server import RedisServer

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Tests never write into the work tree: hypothesis keeps its files elsewhere, and no database.
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", tempfile.mkdtemp(prefix="hypothesis-"))
settings.register_profile("my_cache", database=None)
settings.load_profile("my_cache")


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test runs in its own empty folder, untouched by the user's MYCACHE_* settings."""
    for name in list(os.environ):
        if name.upper().startswith("MYCACHE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(params=[TypeStorage.IN_MEMORY, TypeStorage.IN_DISK], ids=["memory", "disk"])
def stor(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CacheStor]:
    cache_stor = CacheStor(db_file=tmp_path / "catalogue.db", type_storage=request.param)
    yield cache_stor
    cache_stor.close()


@pytest.fixture
def disk_stor(tmp_path: Path) -> Iterator[CacheStor]:
    cache_stor = CacheStor(db_file=tmp_path / "catalogue.db", type_storage=TypeStorage.IN_DISK)
    yield cache_stor
    cache_stor.close()


RunPython = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run_python(tmp_path: Path) -> RunPython:
    """Run Python source in a real subprocess, in tmp_path, importing this work tree's my_cache."""

    def run(
        source: str,
        *,
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        # Named by its text: the same program run twice is the same program (a script's
        # functions are named by its path), two programs are two.
        text = textwrap.dedent(source)
        script = tmp_path / f"script_{hashlib.sha256(text.encode()).hexdigest()[:12]}.py"
        script.write_text(text)
        full_env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), **(env or {})}
        result = subprocess.run(
            [sys.executable, str(script), *args],
            cwd=tmp_path,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"subprocess failed:\n{result.stdout}\n{result.stderr}")
        return result

    return run


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the session; each test using ``redis_url`` starts it empty."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    with redis_server.client() as client:
        client.flushall()
    return redis_server.url


@pytest.fixture
def own_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, which the test may stop and start."""
    server = RedisServer(tmp_path / "own-redis")
    yield server
    server.stop()


@pytest.fixture
def redis_env(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {"MYCACHE_TYPE_STORAGE": "in_redis", "MYCACHE_REDIS_URL": redis_url}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def redis_stor(redis_env: dict[str, str]) -> Iterator[CacheStor]:
    stor = CacheStor()
    yield stor
    stor.close()
