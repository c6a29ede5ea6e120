"""One trainer per run directory. A second one (a relaunch while orphaned ranks still run, two jobs given the same
``train.run_dir``) would interleave metrics and race on checkpoints, so it refuses to start instead.

Rank 0 holds an exclusive ``flock`` on ``<run_dir>/.lock`` for the whole run. The kernel releases it when the
process ends, however it ends, so a ``kill -9`` leaves no stale lock to clean up by hand."""
import fcntl
import os
import socket
import time
from pathlib import Path


class RunDirInUse(RuntimeError):
    """Another trainer holds the run directory; the message names its host and pid."""


class RunLock:
    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / ".lock"
        self.fd: int | None = None

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode(errors="replace").strip() or "unknown process"
            os.close(fd)
            raise RunDirInUse(f"{self.path.parent} is in use by another trainer ({holder}); stop it first, "
                              f"or give this run another train.run_dir") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
                 .encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None
