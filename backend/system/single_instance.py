"""SQLite is single-instance: a second process on the same database file is refused at start.

An exclusive ``flock`` on a file beside the database does it. The kernel drops the lock when the
process dies, so a crash never leaves a stale lock behind. flock locks belong to the open file, so
a second app in the *same* process is refused too.
"""

import fcntl
import os
from pathlib import Path
from typing import IO


class AnotherInstanceRunning(Exception):
    message_is_safe_to_log = True

    def __init__(self, lock_path: Path) -> None:
        super().__init__(
            f"another Interlude instance is already using this SQLite database (lock {lock_path}); "
            "SQLite supports one instance, use PostgreSQL to run several"
        )


class InstanceLock:
    def __init__(self, database_path: Path) -> None:
        self.path = database_path.with_name(database_path.name + ".instance-lock")
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise AnotherInstanceRunning(self.path) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None
