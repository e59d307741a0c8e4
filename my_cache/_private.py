"""Owner-only files and folders: cached pickles are code, so no one else may read or plant one.

Modes are set with chmod after creation, so the process umask cannot widen (or narrow) them.
"""

from __future__ import annotations

import os
from pathlib import Path

DIRECTORY_MODE = 0o700
FILE_MODE = 0o600


def private_directory(path: Path) -> None:
    """Create ``path`` and any missing parents, each 0700; existing ones are left as they are."""
    missing = []
    for folder in (path, *path.parents):
        if folder.is_dir():
            break
        missing.append(folder)
    for folder in reversed(missing):
        try:
            folder.mkdir(DIRECTORY_MODE)
        except FileExistsError:
            continue  # another thread or process made it first, and sets the same mode
        os.chmod(folder, DIRECTORY_MODE)


def private_file(path: Path) -> None:
    """Create ``path`` empty and 0600 if it does not exist (its folder is created private)."""
    private_directory(path.parent)
    try:
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, FILE_MODE)
    except FileExistsError:
        return
    try:
        os.fchmod(descriptor, FILE_MODE)
    finally:
        os.close(descriptor)
