"""Read-only and full disks, for real: a read-only bind mount and a 1 MB tmpfs, each in a
mount namespace of its own (these machines run the tests as root; nothing is skipped)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROGRAM = """
import sys
from my_cache import CacheStor

stor = CacheStor(db_file="cache/my.db", type_storage="in_disk")
computed = []

@stor.cache(folder="cache/f")
def value(n, size):
    computed.append(n)
    return bytes([n % 256]) * size

for _ in range(2):
    for n in range(int(sys.argv[1])):
        size = int(sys.argv[2]) if n == 2 else 100 + n % 2 * 50_000  # inline and value files
        assert value(n, size) == bytes([n % 256]) * size
stor.close()
print(*computed)
"""


def run(cwd: Path, setup: str, *command: str) -> subprocess.CompletedProcess[str]:
    """``command`` in ``cwd`` after the shell ``setup``, in a mount namespace of its own."""
    line = f"{setup} && cd {shlex.quote(str(cwd))} && exec {shlex.join(command)}"
    return subprocess.run(
        ["unshare", "--mount", "sh", "-c", line],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def read_only(folder: Path) -> str:
    quoted = shlex.quote(str(folder))
    return f"mount --bind {quoted} {quoted} && mount -o remount,ro,bind {quoted} {quoted}"


def test_a_read_only_store_serves_what_it_holds_with_one_warning(tmp_path: Path) -> None:
    (tmp_path / "program.py").write_text(PROGRAM)
    python = (sys.executable, "program.py")
    first = run(tmp_path, "true", *python, "4", "100")
    assert (first.stdout, first.stderr) == ("0 1 2 3\n", "")
    second = run(tmp_path, read_only(tmp_path), *python, "6", "100")
    assert second.stdout == "4 5 4 5\n"  # 0-3 are served; 4 and 5 cannot be stored
    (warning,) = second.stderr.splitlines()  # one warning, not one per call
    assert "my_cache.catalogue_failed" in warning and " is read-only (" in warning

    mycache = (sys.executable, "-m", "my_cache")
    listed = run(tmp_path, read_only(tmp_path), *mycache, "ls", "--json")
    assert (listed.returncode, listed.stderr) == (0, "")
    assert len(json.loads(listed.stdout)) == 4
    stats = run(tmp_path, read_only(tmp_path), *mycache, "stats")
    assert stats.stdout.splitlines()[-1].split()[:2] == ["total", "4"]
    cleared = run(tmp_path, read_only(tmp_path), *mycache, "clear", "--yes")
    assert cleared.returncode == 1
    assert cleared.stderr.splitlines()[-1].startswith("Error: ")
    assert " is read-only (" in cleared.stderr.splitlines()[-1]
    assert "Traceback" not in cleared.stderr
    assert run(tmp_path, "true", *python, "6", "100").stdout == "4 5\n"  # writable again


# The end of the programs below: the size of every value file left in the store.
VALUE_FILE_SIZES = """
stor.close()
print(json.dumps(sorted(
    os.path.getsize(os.path.join(folder, name))
    for folder, _, names in os.walk("cache") for name in names if name.endswith(".val")
)))
"""

FULL_DISK = (
    """
import json, os
from my_cache import CacheStor

stor = CacheStor(db_file="cache/my.db", type_storage="in_disk")

@stor.cache(folder="cache/f")
def value(n, size):
    return bytes([n % 256]) * size

# Entry 2 is 2 MB, more than the disk: its value file fails part-way. The others fill it.
for n in range(300):
    size = 2_000_000 if n == 2 else 100 + n % 2 * 50_000
    assert value(n, size) == bytes([n % 256]) * size
"""
    + VALUE_FILE_SIZES
)


def run_on_a_small_disk(
    tmp_path: Path, size: str, program: str
) -> subprocess.CompletedProcess[str]:
    """``program`` in a folder on a tmpfs of ``size`` (as mount's size= takes it)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    setup = f"mount -t tmpfs -o size={size} tmpfs {shlex.quote(str(disk))}"
    return run(disk, setup, sys.executable, "-c", program)


def test_a_full_disk_returns_values_and_leaves_no_partial_file(tmp_path: Path) -> None:
    full = run_on_a_small_disk(tmp_path, "1m", FULL_DISK)
    assert full.returncode == 0, full.stderr  # every value returned right
    # Once when the 2 MB file fails, once when the disk is full for good: not once per call
    # (a write that succeeds in between ends the first episode).
    warnings = full.stderr.splitlines()
    assert len(warnings) == 2
    assert all("my_cache.write_failed" in w and " is full (" in w for w in warnings)
    sizes = json.loads(full.stdout)
    # Whole 50 KB value files only: none holds a part of the 2 MB one.
    assert sizes and len(set(sizes)) == 1 and 50_100 < sizes[0] < 51_000


FULL_DISK_LARGE = (
    """
import json, os
from my_cache import CacheStor
from my_cache._storages import _envelope

_envelope._THREADS = 3  # written by several threads, whatever this machine has
stor = CacheStor(db_file="cache/my.db", type_storage="in_disk")

@stor.cache(folder="cache/f")
def value(n, size):
    return bytes([n]) * size

assert value(1, 100_000) == bytes([1]) * 100_000
big = 2 * _envelope._SIDE_BY_SIDE  # more than the disk holds: its threads fail part-way
assert value(2, big) == bytes([2]) * big
assert value(3, 100_000) == bytes([3]) * 100_000
"""
    + VALUE_FILE_SIZES
)


def test_a_large_value_written_by_several_threads_leaves_no_partial_file(tmp_path: Path) -> None:
    full = run_on_a_small_disk(tmp_path, "40m", FULL_DISK_LARGE)
    assert full.returncode == 0, full.stderr  # every value returned right
    (warning,) = full.stderr.splitlines()
    assert "my_cache.write_failed" in warning and " is full (" in warning
    sizes = json.loads(full.stdout)  # the two small values' files, whole; no part of the big one
    assert len(sizes) == 2 and all(100_000 < size < 101_000 for size in sizes)
