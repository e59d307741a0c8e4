"""Helpers shared by the tests."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from my_cache._storages.base import Entry
from my_cache._storages.disk import DiskBackend
from my_cache.settings import load_settings


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Poll a condition that other threads make true; False if it is still false at timeout."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not condition():
        if time.monotonic() > deadline:
            return False
        pause.wait(0.001)
    return True


def threads_waiting_in_flight() -> int:
    """How many threads are blocked waiting for another thread's computation of their key."""
    waiting = 0
    for frame in sys._current_frames().values():
        caller = frame
        while caller is not None and caller.f_code.co_filename == threading.__file__:
            caller = caller.f_back
        if caller is not None and caller.f_code.co_filename.endswith("_flight.py"):
            waiting += 1
    return waiting


def listed(db_file: Path) -> list[Entry]:
    """The IN_DISK entries ``mycache ls --db-file db_file`` lists, oldest first."""
    backend = DiskBackend(load_settings(db_file=str(db_file)))
    try:
        return backend.entries()
    finally:
        backend.close()
