"""
What a console login tells by its timing (issue 9, finding 5): the median
time of a /login for a user who does not exist, for a wrong password, and
for the right one, against a real ``twistd wavebox`` whose account was made
as ``wavebox adduser`` makes it.  The rate limits are raised out of the way
(--login-*-failures); what is measured is the cost of one check.  With the
login guard the three are the cost of one scrypt each; ``--checkout DIR``
runs another checkout's server (main before issue 9) as the baseline.

    python benchmarks/bench_login.py [--tries 30]
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import defer, task  # noqa: E402

from benchmarks.bench_console_flood import Cleanups  # noqa: E402
from tests.helpers import CHECKOUT, connect_console, start_twistd_wavebox  # noqa: E402
from wavebox.store import open_store  # noqa: E402
from wavebox.store.accounts import hash_password  # noqa: E402


@defer.inlineCallbacks
def timed_logins(cleanups, port, user, password, tries):
    times = []
    for i in range(tries):
        client = yield connect_console(cleanups, port)
        start = time.perf_counter()
        client.send("/login %s %s" % (user, password))
        yield client.expect("^logged in as|^error: login")
        times.append((time.perf_counter() - start) * 1000)
        client.transport.loseConnection()
        yield client.closed
    return times


@defer.inlineCallbacks
def main(reactor, args):
    tmp = tempfile.mkdtemp(prefix="wavebox-login-")
    data = os.path.join(tmp, "data")
    store = open_store("sqlite:wavebox.sqlite3", data)
    yield store.add_account("alice@a.test", hash_password("secret"))
    yield store.close()
    with open(os.path.join(args.checkout, "wavebox", "config.py")) as f:
        guarded = "login-ip-failures" in f.read()
    limits = ["--login-account-failures", "100000", "--login-ip-failures", "100000"]
    cleanups = Cleanups()
    try:
        proc, port = yield start_twistd_wavebox(cleanups, tmp, [
            "--domain", "a.test", "--data-dir", data, "--console-port", "0",
            "--console-interface", "127.0.0.1", "--s2s-interface", "127.0.0.1",
            "--s2s-port", "0"] + (limits if guarded else []), checkout=args.checkout)
        print("server: %s" % (args.checkout,))
        for label, user, password in (("unknown user", "nobody", "guess"),
                                      ("wrong password", "alice", "guess"),
                                      ("right password", "alice", "secret")):
            times = yield timed_logins(cleanups, port, user, password, args.tries)
            print("%-15s median %7.2f ms  (min %.2f, max %.2f; %d tries)" % (
                label, statistics.median(times), min(times), max(times), len(times)))
    finally:
        yield cleanups.run()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tries", type=int, default=30)
    parser.add_argument("--checkout", default=CHECKOUT)
    task.react(main, [parser.parse_args()])
