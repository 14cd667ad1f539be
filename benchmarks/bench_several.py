"""
One domain, one or two processes, one PostgreSQL (issue 12): what the
second process buys.  a.test runs as ``twistd wavebox`` children on a
PostgreSQL cluster of our own (tests/postgres.py, fsync on), and this
process is the load generator: N console users, spread over the processes,
typing into waves of --per-wave typists each (with two processes the waves
alternate between them; with --spread the typists of each wave are on both,
so every wave is written from both), one line in flight per typist (the next is typed when the previous one came
back as applied).

Cases, in one run, each on a fresh database and fresh processes:

  sqlite    one process, the SQLite store (the embedded default): the baseline
  pg-1      one process on PostgreSQL
  pg-2      two processes on one PostgreSQL database

For each it prints deltas per second, latency p50/p99 from typed to shown
applied in the typist's console, and CPU seconds per delta of the wavebox
processes and of PostgreSQL's (the postmaster and its backends) together;
then the ratios the issue asks about.

Usage: python benchmarks/bench_several.py [--typists 40] [--per-wave 4]
       [--seconds 10] [--cases sqlite,pg-1,pg-2] [--spread] [--dir DIR]
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import defer, reactor, task  # noqa: E402

from benchmarks.bench_capacity import (  # noqa: E402
    GUARD, Measure, Typist, cpu_seconds, gather, log_in, percentile, progress)
from tests.helpers import quick_hash, start_twistd_wavebox  # noqa: E402
from tests.postgres import PostgresCluster  # noqa: E402
from wavebox.store import open_store  # noqa: E402

PASSWORD = "secret"
ADDRESSES = ("127.0.0.21", "127.0.0.22")


def postgres_pids(cluster):
    """The postmaster and every process it started (backends, writers)."""
    with open(os.path.join(cluster.data, "postmaster.pid")) as f:
        postmaster = int(f.readline())
    pids = [postmaster]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == postmaster:
                        pids.append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return pids


def total_cpu(pids):
    seconds = 0.0
    for pid in pids:
        try:
            seconds += cpu_seconds(pid)
        except OSError:
            pass        # a backend that ended meanwhile
    return seconds


@defer.inlineCallbacks
def run_case(case, args, cluster, directory):
    processes = 2 if case == "pg-2" else 1
    if case == "sqlite":
        url = "sqlite:wavebox.sqlite3"
    else:
        url = cluster.url(cluster.create_database(case.replace("-", "_")))
    typists = ["t%d@a.test" % i for i in range(args.typists)]
    waves = [typists[i:i + args.per_wave] for i in range(0, len(typists), args.per_wave)]
    creators = ["c%d@a.test" % j for j in range(len(waves))]
    homes = [os.path.join(directory, case, "p%d" % n) for n in range(processes)]
    store = open_store(url, os.path.join(homes[0], "data"))
    try:
        hashed = quick_hash(PASSWORD)
        yield gather(store.add_account(a, hashed) for a in typists + creators)
    finally:
        yield store.close()
    procs = []
    try:
        for n, home in enumerate(homes):
            os.makedirs(home, exist_ok=True)
            procs.append((yield start_twistd_wavebox(None, home, [
                 "--domain", "a.test", "--data-dir", os.path.join(home, "data"),
                 "--store", url, "--dialback-secret", "bench",
                 "--s2s-interface", ADDRESSES[n], "--s2s-port", "0",
                 "--nameserver", "127.0.0.1:9", "--dns-timeout", "0.5",
                 "--console-interface", "127.0.0.1", "--console-port", "0",
                 # Every typist logs in from 127.0.0.1.
                 "--console-max-sessions", "10000", "--console-max-sessions-per-ip", "10000",
                 "--log-level", "info"]))[0])
        progress("%s: %d process(es) up" % (case, processes))
        measure = Measure()
        typing = []
        for j, (members, creator) in enumerate(zip(waves, creators)):
            users = []
            for i, address in enumerate(members):
                port = procs[((i if args.spread else 0) + j) % processes].console_port
                users.append((yield log_in(port, address)))
            host = yield log_in(procs[j % processes].console_port, creator)
            host.send("/new")
            created = yield host.expect(r"^created wave (\S+)")
            for u in users:
                host.send("/add " + u.address)
                yield host.expect(r"^\* \S+ added " + u.address.replace(".", r"\.") + "$")
            for u in users:
                yield u.expect("added you to wave " + created.group(1).replace("+", r"\+"))
                u.send("/open 0")
                yield u.expect(r"^--- wave ")
            host.transport.loseConnection()
            typing += [Typist(u, "%s-%d-%d" % (case, j, i), measure)
                       for i, u in enumerate(users)]
        warm = gather(t.type_until(0, at_least=1) for t in typing)
        warm.addTimeout(GUARD, reactor)
        yield warm
        progress("%s: warmed up" % (case,))
        pids = [p.pid for p in procs]
        pg = postgres_pids(cluster) if case != "sqlite" else []
        start_wb, start_pg = total_cpu(pids), total_cpu(pg)
        measure.measuring = True
        started = time.perf_counter()
        run = gather(t.type_until(started + args.seconds) for t in typing)
        run.addTimeout(args.seconds + GUARD, reactor)
        yield run
        elapsed = time.perf_counter() - started
        measure.measuring = False
        wb = total_cpu(pids) - start_wb
        pgc = total_cpu(postgres_pids(cluster)) - start_pg if case != "sqlite" else 0.0
        for t in typing:
            t.user.transport.loseConnection()
        return {"case": case, "deltas": measure.acknowledged, "elapsed": elapsed,
                "rate": measure.acknowledged / elapsed,
                "p50": percentile(measure.own, 50), "p99": percentile(measure.own, 99),
                "cpu_wavebox": wb, "cpu_postgres": pgc}
    finally:
        for p in procs:
            if p.running:
                p.transport.signalProcess("TERM")
        for p, home in zip(procs, homes):
            timer = reactor.callLater(30, p.kill)
            yield p.ended
            if timer.active():
                timer.cancel()
            with open(os.path.join(home, "wavebox.log"), "wb") as f:
                f.write(p.output)


@defer.inlineCallbacks
def main(reactor_, args):
    directory = args.dir or tempfile.mkdtemp(prefix="wavebox-bench-several-")
    cluster = PostgresCluster().start()
    results = []
    try:
        for case in args.cases:
            results.append((yield run_case(case, args, cluster, directory)))
    finally:
        cluster.stop()
        if not args.dir:
            shutil.rmtree(directory, ignore_errors=True)
    print("%d typists, %d per wave%s, %gs windows, PostgreSQL %s (fsync on)"
          % (args.typists, args.per_wave, ", spread" if args.spread else "", args.seconds, os.path.basename(
              os.path.dirname(cluster.bindir or "/?/bin"))))
    print("%-7s %8s %9s %8s %8s %12s %12s %12s" % (
        "case", "deltas", "deltas/s", "p50 ms", "p99 ms", "wavebox s/d", "postgres s/d",
        "total s/d"))
    by = {}
    for r in results:
        per = lambda s: s / r["deltas"] if r["deltas"] else float("nan")  # noqa: E731
        r["total_per_delta"] = per(r["cpu_wavebox"] + r["cpu_postgres"])
        by[r["case"]] = r
        print("%-7s %8d %9.1f %8.1f %8.1f %12.6f %12.6f %12.6f" % (
            r["case"], r["deltas"], r["rate"], 1000 * r["p50"], 1000 * r["p99"],
            per(r["cpu_wavebox"]), per(r["cpu_postgres"]), r["total_per_delta"]))
    if "pg-1" in by and "pg-2" in by:
        one, two = by["pg-1"], by["pg-2"]
        print("two processes / one: throughput x%.2f (goal >= 1.3), CPU per delta x%.2f "
              "(goal <= 1.25)" % (two["rate"] / one["rate"],
                                  two["total_per_delta"] / one["total_per_delta"]))
    if "pg-1" in by and "sqlite" in by:
        print("one process, PostgreSQL / SQLite: throughput %.0f%% (goal >= 70%%)"
              % (100.0 * by["pg-1"]["rate"] / by["sqlite"]["rate"]))


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--typists", type=int, default=40)
    p.add_argument("--per-wave", type=int, default=4)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--cases", type=lambda s: s.split(","), default=["sqlite", "pg-1", "pg-2"])
    p.add_argument("--spread", action="store_true",
                   help="put each wave's typists on both processes (every wave written from "
                        "both); by default each wave's typists share one process, the waves "
                        "alternating between them")
    p.add_argument("--dir", default=None, help="keep the processes' directories here")
    return p.parse_args(argv)


if __name__ == "__main__":
    task.react(main, [parse(sys.argv[1:])])
