"""
One server per store: the SQLite store is locked while a server uses it.

Two servers on one SQLite file would each believe it is the single writer
of every wavelet in it; SQLite would keep the file consistent, but not the
servers' caches, sequence of versions or outboxes.  So a server holds an
exclusive ``flock`` on ``STORE.lock`` beside the store file from start-up to
exit, with its PID written inside, and a second server refuses to start,
naming that PID.  The kernel drops the lock when the process ends, however
it ends (kill -9 included), so a lock is never stale.

A memory store needs no lock (nothing else can see it); a PostgreSQL store
is shared by design (several processes for one domain) and decides the
single writer of each wavelet in the database itself.
"""

import fcntl
import os

from wavebox.store import StoreError, store_path


class StoreLocked(StoreError):
    """Another process holds the store's lock."""

    def __init__(self, path, pid):
        StoreError.__init__(self, path, pid)
        self.path = path
        self.pid = pid

    def __str__(self):
        who = "another wavebox (PID %s)" % (self.pid,) if self.pid else "another process"
        return "the store %s is in use by %s" % (self.path, who)


def lock_path(url, data_dir):
    """The lock file of the store ``url`` names, or None when it needs none."""
    path = store_path(url, data_dir)
    return None if path is None else path + ".lock"


class StoreLock:
    """The held lock of one store; :meth:`release` (or exit) lets it go."""

    def __init__(self, path, fd):
        self.path = path
        self._fd = fd

    def release(self):
        if self._fd is not None:
            os.close(self._fd)      # closing the descriptor drops the flock
            self._fd = None


def holder(url, data_dir):
    """The PID of the process that holds the store's lock, or None when nobody does."""
    path = lock_path(url, data_dir)
    if path is None or not os.path.exists(path):
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(fd) or -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_pid(fd):
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 32).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


def acquire(url, data_dir):
    """
    Lock the store ``url`` names for this process; a :class:`StoreLock`, or
    None when the store needs no lock.  Raises :class:`StoreLocked` naming
    the PID of the process that has it.
    """
    path = lock_path(url, data_dir)
    if path is None:
        return None
    os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = _read_pid(fd)
        os.close(fd)
        raise StoreLocked(store_path(url, data_dir), pid) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.write(fd, b"%d\n" % (os.getpid(),))
    return StoreLock(path, fd)
