"""One writer per project: an operating-system lock on ``.mpae/lock``.

Two windows (or a window and a batch run) writing one index would each overwrite the other's work, so the first
one to open a project holds an exclusive lock and the others open it read-only. The lock is the kernel's
(``flock`` on POSIX, ``msvcrt.locking`` on Windows), held through an open file descriptor: when a process ends, however
it ends (kill -9, a power cut), the kernel releases it, so a lock left by a crash is recovered simply by opening
the project again. The file also records who holds it, to say so in the read-only message.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

LOCK_NAME = "lock"

if os.name == "nt":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            return False

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


class ProjectLock:
    """The write lock of one project folder; ``acquire`` says whether this process may write."""

    def __init__(self, project_dir: str | os.PathLike) -> None:
        self.path = Path(project_dir) / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> bool:
        """Take the lock if nobody holds it (a lock of a process that died is free again); True on success."""
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        if not _try_lock(fd):
            os.close(fd)
            return False
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        data = json.dumps(info).encode()
        # the holder's note sits after the first byte: Windows locks byte 0, and a reader must not need that byte
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, b"\n" + data)
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            _unlock(fd)
        except OSError as exc:  # closing the descriptor releases it anyway
            logger.debug("Unlocking %s: %s", self.path, exc)
        os.close(fd)

    def holder(self) -> dict[str, Any]:
        """Who holds the lock, as written by the holder (empty when unreadable)."""
        try:
            text = self.path.read_bytes().decode("utf-8", "replace").strip()
            return json.loads(text) if text else {}
        except (OSError, ValueError):
            return {}

    def describe_holder(self) -> str:
        """'another window (process 123 on host, since 12:03)' — for the read-only message."""
        info = self.holder()
        if not info:
            return "another window or process"
        where = "this computer" if info.get("host") == socket.gethostname() else info.get("host", "another computer")
        return f"another window or process (process {info.get('pid', '?')} on {where}, since {info.get('since', '?')})"

    def __del__(self) -> None:  # a forgotten project must not keep its folder locked
        try:
            self.release()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
