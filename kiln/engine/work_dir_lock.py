"""One training per work_dir: a lock file, and the temp files of interrupted saves cleaned at start.

Two runs started into one work_dir would interleave their logs and overwrite each other's
checkpoints and ``last_checkpoint`` pointer. :class:`WorkDirLock` makes the second fail at once with
a message naming the running process. A lock left by a process that no longer exists on this
machine (killed with SIGKILL, machine rebooted) is taken over with a warning; a lock held from
another machine (shared file system) cannot be checked, so the message says how to remove it.

Checkpoint saves write ``.NAME.pth.XXXX.tmp`` and rename it into place; a process killed during a
save leaves the temp file behind (as large as a checkpoint). With the lock held no other process
can be writing one, so :func:`remove_stale_temp_files` deletes them.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import sys
import time

__all__ = ["LOCK_NAME", "WorkDirBusyError", "WorkDirLock", "remove_stale_temp_files"]

logger = logging.getLogger("kiln.engine.runner")

#: the lock file's name inside the work_dir
LOCK_NAME = ".kiln_train.lock"

# tempfile.mkstemp(prefix=".NAME.", suffix=".tmp") as kiln's atomic writes name them
_TEMP_RE = re.compile(r"^\..+\.[A-Za-z0-9_]{6,}\.tmp$")


class WorkDirBusyError(RuntimeError):
    """Another training process holds the work_dir."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class WorkDirLock:
    """Exclusive lock on ``work_dir`` for the duration of a training run (a context manager).

    Re-entrant within one process: acquiring a lock this process already holds is a no-op, and only
    the outer holder releases it.

    Args:
        work_dir: the run's directory (created if missing).
    """

    def __init__(self, work_dir: str) -> None:
        self.work_dir = work_dir
        self.path = os.path.join(work_dir, LOCK_NAME)
        self._held = False

    def _record(self) -> dict:
        return {"pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv)[:500]}

    def _read(self) -> dict:
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def acquire(self) -> None:
        """Take the lock, or raise :class:`WorkDirBusyError` naming the process that holds it."""
        os.makedirs(self.work_dir, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._read()
                pid, host = holder.get("pid"), holder.get("host")
                if pid == os.getpid() and host == socket.gethostname():
                    return  # this process holds it already (the CLI locks before it writes anything)
                if host == socket.gethostname() and isinstance(pid, int) and pid != os.getpid() \
                        and not _pid_alive(pid):
                    logger.warning("work_dir %s: taking over the lock of process %s, which no longer runs "
                                   "(started %s).", self.work_dir, pid, holder.get("started", "?"))
                    try:
                        os.unlink(self.path)
                    except FileNotFoundError:
                        pass
                    continue
                who = (f"process {pid} on {host}, started {holder.get('started', '?')}: "
                       f"{holder.get('command', '?')}") if pid else "an unreadable lock file"
                raise WorkDirBusyError(
                    f"work_dir '{self.work_dir}' is in use by another training run ({who}). Two runs in one "
                    f"work_dir would overwrite each other's checkpoints. Wait for it to finish, stop it, or "
                    f"train into another directory (--work-dir / OUTPUT_DIR). If that process is gone (e.g. "
                    f"it ran on another machine that crashed), delete {self.path}."
                ) from None
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self._record(), f)
            self._held = True
            return

    def release(self) -> None:
        """Remove the lock file if this process holds it."""
        if self._held:
            self._held = False
            if self._read().get("pid") == os.getpid():
                try:
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass

    def __enter__(self) -> WorkDirLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def remove_stale_temp_files(directory: str) -> list[str]:
    """Delete the temp files interrupted saves left in ``directory``; returns their names.

    Call only while holding the directory's :class:`WorkDirLock` (no save can be in progress).
    """
    if not os.path.isdir(directory):
        return []
    removed, size = [], 0
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if _TEMP_RE.match(name) and os.path.isfile(path):
            try:
                size += os.path.getsize(path)
                os.unlink(path)
                removed.append(name)
            except OSError as e:
                logger.warning("Could not remove the stale temp file %s: %s", path, e)
    if removed:
        logger.info("Removed %d temp file(s) of interrupted saves from %s (%.1f MB): %s", len(removed),
                    directory, size / 2**20, ", ".join(removed[:5]) + (" ..." if len(removed) > 5 else ""))
    return removed
