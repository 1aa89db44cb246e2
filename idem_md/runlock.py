"""A lock file for a run directory, so that two training processes never write the same run.

The lock holds the owner's PID and host. A second process that finds a live owner stops with
one line naming it; a lock left by a process that no longer exists (killed with -9) is taken
over. Under torch.distributed only rank 0 takes the lock.

Examples
--------
>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> with RunLock(d):
...     (d / LOCK_NAME).is_file()
True
>>> (d / LOCK_NAME).exists()
False
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

__all__ = ["RunLock", "RunLockedError", "LOCK_NAME"]

LOCK_NAME = "run.lock"


class RunLockedError(RuntimeError):
    """The run directory is locked by another live process."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class RunLock:
    """Context manager holding ``<run>/run.lock`` for this process.

    Parameters
    ----------
    run : path
        The run directory (created if missing).
    """

    def __init__(self, run: str | os.PathLike):
        self.path = Path(run) / LOCK_NAME
        self.held = False
        self.created_dir = False

    def acquire(self) -> "RunLock":
        run = self.path.parent
        if run.exists() and not run.is_dir():
            raise FileExistsError(f"{run} is a file, not a run directory; choose another --out")
        self.created_dir = not run.exists()
        try:
            run.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise PermissionError(f"cannot create the run directory {run}: {err.strerror}") from None
        me = {"pid": os.getpid(), "host": socket.gethostname()}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                same_host = owner.get("host") == me["host"]
                pid = owner.get("pid")
                if isinstance(pid, int) and (not same_host or _alive(pid)):
                    where = "" if same_host else f" on host {owner.get('host')}"
                    raise RunLockedError(f"{self.path.parent} is in use by process {pid}{where} (lock file "
                                         f"{self.path}); wait for it to finish, or delete the lock if it is gone")
                self.path.unlink(missing_ok=True)  # stale: its process is dead
                continue
            with os.fdopen(fd, "w") as fh:
                json.dump(me, fh)
            self.held = True
            return self
        raise RunLockedError(f"could not take the lock {self.path} (another process keeps recreating it)")

    def _owner(self) -> dict:
        try:
            data = json.loads(self.path.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def release(self) -> None:
        """Remove the lock, and the run directory too when this lock created it and nothing else was written."""
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False
            if self.created_dir and not any(self.path.parent.iterdir()):
                self.path.parent.rmdir()

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> bool:
        self.release()
        return False
