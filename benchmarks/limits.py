"""
The machine's limits that a wave server can approach, measured in the same
run as a benchmark's figures so that each figure can be given as a ratio of
them (the machine may be shared): RSA-2048 SHA1withRSA signatures per second
on 1 and 2 threads (every acknowledged delta costs one; ``cryptography``
releases the GIL while signing), and fsyncs per second in a directory (an
acknowledgement waits for one, shared by every delta of its group commit).
"""

import os
import threading
import time

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from wavebox.certgen import new_private_key


def sign_rate(threads, seconds=2.0, key=None):
    """RSA-2048 SHA1withRSA signatures per second on ``threads`` threads."""
    key = key or new_private_key(2048)
    data = b"x" * 120
    counts = [0] * threads
    stop = time.perf_counter() + seconds

    def work(i):
        n = 0
        while time.perf_counter() < stop:
            key.sign(data, padding.PKCS1v15(), hashes.SHA1())
            n += 1
        counts[i] = n
    started = time.perf_counter()
    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(counts) / (time.perf_counter() - started)


def fsync_rate(directory, seconds=2.0):
    """Appends of 4 KiB, each followed by fsync, per second, in ``directory``."""
    path = os.path.join(directory, "fsync-probe")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    block = b"\0" * 4096
    n = 0
    started = time.perf_counter()
    try:
        while time.perf_counter() - started < seconds:
            os.write(fd, block)
            os.fsync(fd)
            n += 1
    finally:
        os.close(fd)
        os.unlink(path)
    return n / (time.perf_counter() - started)


class Limits:
    """The three rates, measured when made."""

    def __init__(self, directory, seconds=2.0):
        key = new_private_key(2048)
        self.sign1 = sign_rate(1, seconds, key)
        self.sign2 = sign_rate(2, seconds, key)
        self.fsync = fsync_rate(directory, seconds)

    def __str__(self):
        return ("sign RSA-2048 SHA1withRSA: %.0f/s on 1 thread, %.0f/s on 2; "
                "fsync of the data directory: %.0f/s" % (self.sign1, self.sign2, self.fsync))
