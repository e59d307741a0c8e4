"""Owner-only files and folders: cached pickles are code, so no one else may read or plant one.

Modes are set with chmod after creation, so the process umask cannot widen (or narrow) them.
A team that shares a cache on purpose (the ``trust_group`` setting) gets group-writable ones.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Access:
    """Who may write what my_cache creates and reads: its owner, or its owner's group too."""

    group: bool = False

    @property
    def directory_mode(self) -> int:
        return 0o770 if self.group else 0o700

    @property
    def file_mode(self) -> int:
        return 0o660 if self.group else 0o600

    def distrust(self, path: Path | str, st: os.stat_result | None = None) -> str | None:
        """Why ``path`` must not be read (whoever can write it can run code as us: a value
        is a pickle), or None. A path that does not exist is trusted: we create it."""
        if st is None:
            try:
                st = os.stat(path)
            except FileNotFoundError:
                return None
        fix = f"chmod {'700' if stat.S_ISDIR(st.st_mode) else '600'} {path}"
        if st.st_mode & stat.S_IWOTH:
            return f"{path} is writable by every user; fix: {fix}"
        ours = st.st_gid in {os.getegid(), *os.getgroups()}
        if st.st_uid != os.geteuid() and not (self.group and ours):
            return f"{path} belongs to another user (uid {st.st_uid}); only your own are read"
        if st.st_mode & stat.S_IWGRP and not (self.group and ours):
            return (
                f"{path} is writable by its group (gid {st.st_gid}); fix: {fix}, or set "
                "trust_group = true to share it with your group on purpose"
                if not self.group
                else f"{path} is writable by group {st.st_gid}, which is not yours; fix: {fix}"
            )
        return None

    def distrust_database(self, folder: Path | str, database: Path | str) -> str | None:
        """Why an SQLite ``database`` in ``folder`` must not be read, or None: the folder,
        the file, and the -wal and -shm beside it (SQLite applies a -wal it finds, so whoever
        planted one would write the database)."""
        for path in (folder, database, f"{database}-wal", f"{database}-shm"):
            reason = self.distrust(path)
            if reason is not None:
                return reason
        return None

    def make_directory(self, path: Path) -> None:
        """Create ``path`` and any missing parents with this access; existing ones are left
        as they are."""
        missing = []
        for folder in (path, *path.parents):
            if folder.is_dir():
                break
            missing.append(folder)
        for folder in reversed(missing):
            try:
                folder.mkdir(self.directory_mode)
            except FileExistsError:
                continue  # another thread or process made it first, and sets the same mode
            os.chmod(folder, self.directory_mode)

    def make_file(self, path: Path) -> None:
        """Create ``path`` empty if it does not exist (its folder too), with this access."""
        self.make_directory(path.parent)
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, self.file_mode)
        except FileExistsError:
            return
        try:
            os.fchmod(descriptor, self.file_mode)
        finally:
            os.close(descriptor)
