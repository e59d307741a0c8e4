"""A value is a pickle: a store or db_file that others may write is not read, with one warning
naming the path and the fix; the trust_group setting shares stores with a group on purpose."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from my_cache import CacheStor, TypeStorage

NOBODY = pwd.getpwnam("nobody").pw_uid
LARGE = 200_000  # a result this long lives in a value file of its own


def make(tmp_path: Path) -> tuple[CacheStor, Callable[[int], bytes], list[int]]:
    stor = CacheStor(db_file=tmp_path / "c.db", type_storage=TypeStorage.IN_DISK)
    runs: list[int] = []

    @stor.cache(folder="cache/values", ignore=["runs"])
    def value(n: int) -> bytes:
        runs.append(n)
        return bytes([n]) * (100 if n % 2 else LARGE)

    return stor, value, runs


def fill(tmp_path: Path) -> None:
    stor, value, _ = make(tmp_path)
    assert [len(value(n)) for n in (1, 2)] == [100, LARGE]
    stor.close()


def uses(tmp_path: Path) -> tuple[list[int], list[dict[str, Any]]]:
    """Call the function three times over two keys in a new CacheStor: its runs, its events."""
    stor, value, runs = make(tmp_path)
    with capture_logs() as events:
        assert [len(value(n)) for n in (1, 2, 1)] == [100, LARGE, 100]
    stor.close()
    return runs, events


@pytest.mark.parametrize("mode", [0o777, 0o707, 0o770, 0o730])
def test_a_store_others_may_write_is_not_read(tmp_path: Path, mode: int) -> None:
    fill(tmp_path)
    store = tmp_path / "cache" / "values"
    store.chmod(mode)
    runs, events = uses(tmp_path)
    assert runs == [1, 2, 1]  # computed, never read nor written
    assert [e["event"] for e in events] == ["my_cache.untrusted_store"]  # once, not per call
    assert events[0]["reason"].startswith(f"store not used: {store} is writable by ")
    assert f"fix: chmod 700 {store}" in events[0]["reason"]
    store.chmod(0o700)
    assert uses(tmp_path) == ([], [])  # what it held is intact, and read again


def test_a_store_made_again_by_others_while_open_is_trusted_only_if_it_may_be(
    tmp_path: Path,
) -> None:
    stor, value, runs = make(tmp_path)
    assert [len(value(n)) for n in (1, 2)] == [100, LARGE]
    store = tmp_path / "cache" / "values"
    shutil.rmtree(store)
    fill(tmp_path)  # another program makes it again...
    store.chmod(0o777)  # ...and anyone may write it now
    with capture_logs() as events:
        assert [len(value(n)) for n in (3, 1, 3)] == [100, 100, 100]
    assert runs == [1, 2, 3, 1, 3]  # nothing read from it, nothing written to it
    assert [e["event"] for e in events] == ["my_cache.missing_store", "my_cache.untrusted_store"]
    stor.close()
    store.chmod(0o700)


def test_a_group_writable_store_is_read_with_trust_group(tmp_path: Path, monkeypatch: Any) -> None:
    fill(tmp_path)
    (tmp_path / "cache" / "values").chmod(0o770)
    monkeypatch.setenv("MYCACHE_TRUST_GROUP", "true")
    assert uses(tmp_path) == ([], [])
    (tmp_path / "cache" / "values").chmod(0o777)  # every user: never
    runs, events = uses(tmp_path)
    assert runs == [1, 2, 1] and [e["event"] for e in events] == ["my_cache.untrusted_store"]


def test_trust_group_creates_group_writable_stores(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("MYCACHE_TRUST_GROUP", "1")
    os.umask(0o077)
    try:
        fill(tmp_path)
    finally:
        os.umask(0o022)
    cache = tmp_path / "cache"
    modes = {path: path.stat().st_mode & 0o777 for path in [cache, *cache.rglob("*")]}
    assert any(path.suffix == ".val" for path in modes)
    assert {oct(m) for p, m in modes.items() if p.is_dir()} == {"0o770"}
    assert {oct(m) for p, m in modes.items() if not p.is_dir()} == {"0o660"}


def test_a_store_of_another_user_is_not_read(tmp_path: Path, monkeypatch: Any) -> None:
    fill(tmp_path)
    store = tmp_path / "cache" / "values"
    os.chown(store, NOBODY, os.getegid())
    runs, events = uses(tmp_path)
    assert runs == [1, 2, 1]
    assert events[0]["reason"] == (
        f"store not used: {store} belongs to another user (uid {NOBODY}); only your own are read"
    )
    monkeypatch.setenv("MYCACHE_TRUST_GROUP", "true")  # it is our group's: shared on purpose
    assert uses(tmp_path) == ([], [])


def test_a_value_file_planted_by_another_user_is_not_read(tmp_path: Path) -> None:
    fill(tmp_path)
    (planted,) = (tmp_path / "cache" / "values").rglob("*.val")
    os.chown(planted, NOBODY, -1)
    runs, events = uses(tmp_path)
    assert runs == [2]  # only the entry in that file is computed again
    assert [e["event"] for e in events] == ["my_cache.damaged_entry"]


def test_a_db_file_others_may_write_is_not_used(tmp_path: Path) -> None:
    fill(tmp_path)
    (tmp_path / "c.db").chmod(0o666)
    stor, value, runs = make(tmp_path)
    with capture_logs() as events:
        assert len(value(3)) == 100  # computed; not stored in a folder it cannot list
        assert len(value(1)) == 100  # the store itself is ours: still read
    stor.close()
    assert runs == [3]
    assert [e["event"] for e in events] == ["my_cache.untrusted_catalogue"]
    listing = subprocess.run(
        [sys.executable, "-m", "my_cache", "ls", "--db-file", str(tmp_path / "c.db")],
        capture_output=True,
        text=True,
    )
    assert listing.returncode == 1
    assert listing.stderr.endswith(
        f"Error: db_file not used: {tmp_path / 'c.db'} is writable by every user; "
        f"fix: chmod 600 {tmp_path / 'c.db'}\n"
    )


def test_trust_group_trusts_only_groups_we_belong_to(tmp_path: Path, monkeypatch: Any) -> None:
    fill(tmp_path)
    store = tmp_path / "cache" / "values"
    nogroup = pwd.getpwnam("nobody").pw_gid
    assert nogroup not in {os.getegid(), *os.getgroups()}
    os.chown(store, -1, nogroup)
    store.chmod(0o770)
    monkeypatch.setenv("MYCACHE_TRUST_GROUP", "true")
    runs, events = uses(tmp_path)
    assert runs == [1, 2, 1]
    assert [e["event"] for e in events] == ["my_cache.untrusted_store"]
    assert f"writable by group {nogroup}, which is not yours" in events[0]["reason"]


def test_a_wal_planted_beside_the_store_is_not_applied(tmp_path: Path) -> None:
    fill(tmp_path)
    database = tmp_path / "cache" / "values" / "cache.db"
    planted = Path(f"{database}-wal")
    planted.write_bytes(b"")  # what matters is who may have written it
    os.chown(planted, NOBODY, -1)
    runs, events = uses(tmp_path)
    assert runs == [1, 2, 1]
    assert [e["event"] for e in events] == ["my_cache.untrusted_store"]
    assert str(planted) in events[0]["reason"]
