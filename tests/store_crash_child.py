"""
The child process of the SIGKILL test in ``tests/test_store.py``.

It appends deltas to several wavelets at once through the SQLite store, for
ever, and prints ``WAVELET VERSION`` on stdout as soon as each append's
Deferred has fired, that is, once the store acknowledged it as durable.  The
parent kills it with SIGKILL mid-stream and checks that every acknowledged
delta survived, byte for byte.

Usage: python -m tests.store_crash_child PATH WAVELETS
"""

import hashlib
import sys

WAVELET = "wave://crash.test/w+%d/conv+root"


def expected_delta(wavelet, applied_at_version):
    """The delta the child appends at a version: deterministic, every byte value, NULs."""
    from wavebox.store.interface import StoredDelta
    seed = hashlib.sha256(b"%d:%d" % (wavelet, applied_at_version)).digest()
    body = seed * (1 + applied_at_version % 5) + bytes(range(256)) + b"\x00" * (seed[0] % 9)
    return StoredDelta(
        applied_at_version=applied_at_version,
        resulting_version=applied_at_version + 1 + seed[1] % 3,
        resulting_hash=hashlib.sha1(body).digest(),
        applied_delta=body,
        author="writer%d@crash.test" % (wavelet,),
        timestamp_ms=1700000000000 + applied_at_version)


async def _append_forever(store, wavelet):
    version = 0
    while True:
        delta = expected_delta(wavelet, version)
        await store.append_delta(WAVELET % (wavelet,), delta)
        sys.stdout.write("%d %d\n" % (wavelet, delta.resulting_version))
        sys.stdout.flush()
        version = delta.resulting_version


def main(argv):
    from twisted.internet import defer, task
    from wavebox.store.sqlite import SqliteStore
    path, wavelets = argv[0], int(argv[1])

    async def run(reactor):
        store = SqliteStore(path, reactor=reactor)
        await defer.gatherResults(
            [defer.ensureDeferred(_append_forever(store, w)) for w in range(wavelets)])

    task.react(lambda reactor: defer.ensureDeferred(run(reactor)))


if __name__ == "__main__":
    main(sys.argv[1:])
