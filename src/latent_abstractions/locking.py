"""One trainer per state directory: an OS-level lock held for the whole training run.

When Snakemake itself is killed, a running training job can live on as an orphan that keeps checkpointing
into ``state/<model>/``; after ``snakemake --unlock`` a rerun would start a second trainer on the same
directory. :func:`state_lock` takes an exclusive ``fcntl.flock`` on ``<state_dir>/lock`` (the file records
the holder's PID and host). The kernel drops the lock when the holder's process ends, however it ends, so a
stale file left by a killed trainer never blocks a new one; a live holder makes the second trainer fail at
once with :class:`StateLockedError` naming its PID.

Some cluster file systems are mounted without flock support (NFS without a lock manager, some Lustre and FUSE
mounts): there ``flock`` fails with ENOLCK, EOPNOTSUPP or ENOSYS, and the trainer runs unlocked after one warning
per state directory, rather than every training job failing.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

LOCK_NAME = "lock"
#: flock's errors on a file system that cannot lock (not "held by another process", which is BlockingIOError).
NO_FLOCK_ERRNOS = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS})

log = logging.getLogger(__name__)
_warned: set[Path] = set()  # state directories already warned about (check_state_free, then state_lock)


class StateLockedError(RuntimeError):
    """Another live process holds the state directory's lock."""


@contextmanager
def state_lock(state_dir: str | os.PathLike) -> Iterator[Path]:
    """Hold an exclusive lock on ``state_dir`` (created if needed) for the ``with`` block.

    Where the file system has no flock (:data:`NO_FLOCK_ERRNOS`) the block runs unlocked, after one warning.

    Raises:
        StateLockedError: at once, if another process holds it; the message names that process.
    """
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    locked = True
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown process"
            raise StateLockedError(
                f"{state_dir} is in use by another trainer ({holder}). Two trainers must not write one "
                f"state directory: wait for it to finish, or stop it (kill <pid>) if it is an orphan of a killed "
                f"Snakemake, then rerun."
            ) from None
        except OSError as err:
            if err.errno not in NO_FLOCK_ERRNOS:
                raise
            locked = False
            if state_dir.resolve() not in _warned:
                _warned.add(state_dir.resolve())
                log.warning(
                    "%s: the file system does not support flock (%s); training goes on without the lock that keeps a "
                    "second trainer out of this state directory: make sure only one job trains this model",
                    state_dir,
                    os.strerror(err.errno),
                )
        os.ftruncate(fd, 0)
        os.pwrite(
            fd, f"PID {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0
        )
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)  # the file stays (unlinking would race a waiting locker); its text goes
            if locked:
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def check_state_free(state_dir: str | os.PathLike) -> None:
    """Fail at once if another process holds ``state_dir``'s lock (before a long data load, say).

    Raises:
        StateLockedError: as :func:`state_lock`.
    """
    if (Path(state_dir) / LOCK_NAME).exists():
        with state_lock(state_dir):
            pass
