"""A child forked after its parent used the cache (multiprocessing's default start method on
Linux) works on its own: join() never waits for the parent's writes, calls never wait for
the parent's computations, and what the child computes is stored."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from my_cache import CacheStor, TypeStorage
from my_cache._fork import _Quiet
from tests.conftest import RunPython
from tests.helpers import threads_waiting_in_flight

FORK = multiprocessing.get_context("fork")
# Python 3.12+ warns when a process with threads forks: these tests fork such a process on
# purpose, as a program whose cache has writer threads does.
pytestmark = pytest.mark.filterwarnings(
    "ignore:This process .* is multi-threaded, use of fork:DeprecationWarning"
)
# Objects pickled in the parent's writer thread wait for this: a write in flight at the fork.
RELEASE = threading.Event()
PICKLING = threading.Event()


class SlowToPickle:
    def __init__(self, n: int) -> None:
        self.n = n

    def __reduce__(self) -> tuple[Any, ...]:
        if threading.current_thread() is not threading.main_thread():
            PICKLING.set()
            RELEASE.wait()
        return (SlowToPickle, (self.n,))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SlowToPickle) and other.n == self.n

    __hash__ = None  # type: ignore[assignment]


def in_child(target: Any, *args: Any) -> int | None:
    """Run ``target(*args)`` in a forked child; its exit code (None: it hung for 60 s)."""
    child = FORK.Process(target=target, args=args)
    child.start()
    child.join(60)
    if child.is_alive():
        child.kill()
        child.join()
        return None
    return child.exitcode


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """A file each run of a function appends a line to, in whatever process it runs."""
    return tmp_path / "runs.txt"


def count(runs: Path) -> int:
    return len(runs.read_text().splitlines()) if runs.exists() else 0


def test_a_child_forked_during_a_cache_async_write_joins_and_stores(
    tmp_path: Path, runs: Path
) -> None:
    stor = CacheStor(db_file=tmp_path / "c.db", type_storage=TypeStorage.IN_DISK)

    @stor.cache_async(folder="cache/async")
    async def value(n: int) -> SlowToPickle:
        with runs.open("a") as file:
            file.write(f"{n}\n")
        return SlowToPickle(n)

    async def parent_calls() -> None:
        assert await value(1) == SlowToPickle(1)

    asyncio.run(parent_calls())
    assert PICKLING.wait(30)  # the parent's writer thread is inside its write

    def child() -> None:
        async def calls() -> None:
            assert await value(2) == SlowToPickle(2)
            await stor.join()  # the child's own write, not the parent's stuck one

        RELEASE.set()  # the child's own writer pickles without waiting
        asyncio.run(calls())
        stor.close()

    try:
        assert in_child(child) == 0
    finally:
        RELEASE.set()
    asyncio.run(stor.join())  # the parent's write lands in the parent
    assert count(runs) == 2

    async def both_hit() -> None:
        assert [await value(1), await value(2)] == [SlowToPickle(1), SlowToPickle(2)]

    reader = CacheStor(db_file=tmp_path / "c.db", type_storage=TypeStorage.IN_DISK)
    value = reader.cache_async(folder="cache/async")(value.__wrapped__)
    asyncio.run(both_hit())
    reader.close()
    stor.close()
    assert count(runs) == 2


def test_a_child_does_not_wait_for_a_computation_of_another_parent_thread(
    tmp_path: Path, runs: Path
) -> None:
    stor = CacheStor(db_file=tmp_path / "c.db", type_storage=TypeStorage.IN_DISK)
    started, release = threading.Event(), threading.Event()

    @stor.cache(folder="cache/sync", ignore=["started", "release"])
    def value(n: int) -> int:
        with runs.open("a") as file:
            file.write(f"{n}\n")
        if threading.current_thread() is not threading.main_thread():
            started.set()
            release.wait()
        return n * 10

    computing = threading.Thread(target=value, args=(1,))
    computing.start()
    assert started.wait(30)

    def child() -> None:
        assert value(1) == 10  # computed here: the parent's flight never lands in the child
        assert value(3) == 30

    try:
        assert in_child(child) == 0
    finally:
        release.set()
        computing.join()
    assert value(3) == 30  # the child stored it
    assert count(runs) == 3
    assert threads_waiting_in_flight() == 0
    stor.close()


@pytest.mark.parametrize("type_storage", [TypeStorage.IN_DISK, TypeStorage.IN_MEMORY])
def test_parent_and_child_both_keep_working_after_a_fork(
    tmp_path: Path, runs: Path, type_storage: TypeStorage
) -> None:
    stor = CacheStor(db_file=tmp_path / "c.db", type_storage=type_storage)

    @stor.cache(folder="cache/sync")
    def value(n: int) -> bytes:
        with runs.open("a") as file:
            file.write(f"{n}\n")
        return bytes([n]) * (100 if n % 2 else 100_000)

    assert [len(value(n)) for n in (1, 2)] == [100, 100_000]

    def child() -> None:
        assert [len(value(n)) for n in (1, 2, 3, 4)] == [100, 100_000, 100, 100_000]

    for _ in range(3):
        assert in_child(child) == 0
    assert [len(value(n)) for n in (1, 2, 3, 4, 5)] == [100, 100_000] * 2 + [100]
    stor.close()
    persistent = type_storage is TypeStorage.IN_DISK
    # On disk the children's entries are shared. In memory each child starts with a copy of
    # its parent's entries, as any forked memory, and computes the rest itself.
    assert count(runs) == (5 if persistent else 2 + 3 * 2 + 3)


def test_forks_while_other_threads_write_and_hit_give_children_that_work(tmp_path: Path) -> None:
    stor = CacheStor(db_file=tmp_path / "c.db", type_storage=TypeStorage.IN_DISK)

    @stor.cache(folder="cache/busy")
    def tagged(tag: str, n: int) -> tuple[str, int]:
        return (tag, n)

    stop = threading.Event()

    def write(k: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            assert tagged(f"parent{k}", n) == (f"parent{k}", n)

    def hit() -> None:
        while not stop.is_set():
            assert tagged("hot", 0) == ("hot", 0)

    writers = [threading.Thread(target=write, args=(k,)) for k in range(2)]
    writers += [threading.Thread(target=hit) for _ in range(2)]
    for writer in writers:
        writer.start()

    def child(n: int) -> None:
        assert [tagged(f"child{n}", i) for i in range(5)] == [(f"child{n}", i) for i in range(5)]
        misses = tagged.cache_info().misses
        assert [tagged(f"child{n}", i) for i in range(5)] == [(f"child{n}", i) for i in range(5)]
        assert tagged.cache_info().misses == misses  # stored: the second pass hits

    try:
        # Forks land while the threads are inside SQLite, writing or reading; before, half
        # the children waited forever for locks held by threads that do not exist in them.
        exits = [in_child(child, n) for n in range(10)]
    finally:
        stop.set()
        for writer in writers:
            writer.join()
    stor.close()
    assert exits == [0] * 10


# Python 3.12+ warns of forks in a process with threads (the programs' watchdog timers).
QUIET_FORKS = {"PYTHONWARNINGS": "ignore::DeprecationWarning"}

INTERRUPTED_HITS = """
import os, signal, sys, threading, time
from my_cache import CacheStor, TypeStorage
stor = CacheStor(type_storage=TypeStorage.IN_DISK, db_file=sys.argv[1] + "/catalogue.db")
@stor.cache(folder=sys.argv[1] + "/store")
def f(a):
    return a
for i in range(50):
    f(i)
class Interrupt(BaseException):
    pass
armed = False
def handler(*_):
    if armed:
        raise Interrupt
signal.signal(signal.SIGALRM, handler)
signal.setitimer(signal.ITIMER_REAL, 0.0002, 0.0002)
interrupts, deadline = 0, time.monotonic() + 2
while time.monotonic() < deadline:
    try:
        try:
            armed = True
            f(interrupts % 100)
        finally:
            armed = False
    except Interrupt:
        interrupts += 1
signal.setitimer(signal.ITIMER_REAL, 0, 0)
threading.Timer(10, lambda: (print("the fork waits", flush=True), os._exit(3))).start()
pid = os.fork()
if pid == 0:
    os._exit(0 if f(1) == 1 else 1)
print("interrupted", interrupts, "child", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
os._exit(0)
"""


def test_forks_go_on_after_interrupts_anywhere_in_calls(
    tmp_path: Path, run_python: RunPython
) -> None:
    """Ctrl-C (an exception raised by a signal handler) may land at any point of a call: a
    store operation then still counts as ended, and a fork does not wait for it forever."""
    done = run_python(INTERRUPTED_HITS, args=(str(tmp_path),), env=QUIET_FORKS)
    interrupted, count, child, status = done.stdout.split()
    assert (interrupted, child, status) == ("interrupted", "child", "0")
    assert int(count) > 1000


def guarded_by(
    quiet: _Quiet, ran: list[bool], then: Callable[[], object] = lambda: None
) -> Callable[[], None]:
    """An operation guarded as the stores' are (see _Quiet): it records whether a fork was
    under way as it ran, then calls ``then``."""

    def operation() -> None:
        mark = quiet.mark()
        mark.depth += 1
        try:
            if quiet.forking:
                quiet.wait_out(mark)
            ran.append(quiet.forking)
            then()
        finally:
            mark.depth -= 1

    return operation


class _PausingLock:
    """A lock for _Quiet's condition that tells when the operation's thread lets it go, and
    can hold that thread just after one release: where a thread switch may come."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.released = threading.Event()  # by the operation's thread
        self.pause = threading.Event()  # set: its next release waits for go
        self.paused = threading.Event()
        self.go = threading.Event()

    def acquire(self, *args: Any) -> bool:
        return self._lock.acquire(*args)

    def release(self) -> None:
        self._lock.release()
        if threading.current_thread().name != "operation":
            return
        self.released.set()
        if self.pause.is_set():
            self.pause.clear()
            self.paused.set()
            self.go.wait()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def test_an_operation_waiting_out_a_fork_waits_out_the_next_one_too() -> None:
    """An operation that waited for a fork is uncounted until it counts itself again: a fork
    beginning just then does not wait for it, so the operation must wait for that one."""
    quiet = _Quiet()
    lock = _PausingLock()
    quiet._lock, quiet._changed = lock, threading.Condition(lock)  # type: ignore[assignment]
    ran_while_forking: list[bool] = []
    operation = guarded_by(quiet, ran_while_forking, then=lock.released.set)

    quiet.before_fork()  # a first fork under way
    thread = threading.Thread(target=operation, name="operation", daemon=True)
    thread.start()
    assert lock.released.wait(10)  # waiting for the fork
    lock.pause.set()
    quiet.forking = False  # the fork ends: the operation wakes, and is held as it lets go
    quiet.notify()
    assert lock.paused.wait(10)
    quiet.before_fork()  # a second fork: the operation is not counted, so it goes on at once
    lock.released.clear()
    lock.go.set()
    assert lock.released.wait(10)  # the operation waits again, or has run
    assert ran_while_forking == []
    quiet.forking = False
    quiet.notify()
    thread.join(10)
    assert ran_while_forking == [False]


def test_a_fork_left_unannounced_holds_no_operation_for_good() -> None:
    """Should the wake-up after a fork be lost (an interrupt in the parent's hook), the
    operations held back still go on: they look again on their own."""
    quiet = _Quiet()
    ran: list[bool] = []
    operation = guarded_by(quiet, ran)

    quiet.before_fork()
    thread = threading.Thread(target=operation, daemon=True)  # a failure must not hang
    thread.start()
    quiet.forking = False  # as the parent's hook does first, its notify lost
    thread.join(10)
    assert ran == [False]


FORKING_HANDLER = """
import os, signal, sys, threading, time
from my_cache import CacheStor, TypeStorage
stor = CacheStor(type_storage=TypeStorage.IN_DISK, db_file=sys.argv[1] + "/catalogue.db")
@stor.cache(folder=sys.argv[1] + "/store")
def f(a):
    return a
forks = 0
def handler(*_):
    global forks
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    forks += 1
signal.signal(signal.SIGALRM, handler)
threading.Timer(30, lambda: (print("hangs", flush=True), os._exit(3))).start()
signal.setitimer(signal.ITIMER_REAL, 0.005, 0.005)
calls, deadline = 0, time.monotonic() + 2
while time.monotonic() < deadline:
    assert f(calls % 50) == calls % 50
    calls += 1
signal.setitimer(signal.ITIMER_REAL, 0, 0)
print(forks, calls)
os._exit(0)
"""


def test_a_signal_handler_may_fork_in_the_middle_of_a_call(
    tmp_path: Path, run_python: RunPython
) -> None:
    """The fork does not wait for the forking thread's own operation, which can only go on
    once the handler returns."""
    done = run_python(FORKING_HANDLER, args=(str(tmp_path),), env=QUIET_FORKS)
    forks, calls = map(int, done.stdout.split())
    assert forks > 50 and calls > 1000
