"""pytest fixtures for the test suites of programs that use my_cache; registered as the
``my_cache`` plugin when my_cache is installed (see my_cache.testing)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def mycache_disabled() -> Iterator[None]:
    """Caching off for the test: every call runs its function (see caching_disabled)."""
    from my_cache.testing import caching_disabled  # here: the plugin loads with every pytest

    with caching_disabled():
        yield


@pytest.fixture
def mycache_fresh(tmp_path: Path) -> Iterator[Path]:
    """Every cache starts empty, in stores under the test's tmp_path (see fresh_cache)."""
    from my_cache.testing import fresh_cache

    with fresh_cache(tmp_path / "mycache") as root:
        yield root
