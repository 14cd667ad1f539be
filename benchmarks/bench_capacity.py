"""
Capacity as deployed: a.test and b.test as two ``twistd wavebox`` processes
(STARTTLS with certificates from a test CA, dialback, the tests' DNS server
on loopback, SQLite with synchronous=FULL), and this process as the load
generator: N console users logged in over the console's TCP protocol, each
typing lines into a wave hosted on a.test with one line in flight (the next
line is sent only when the previous one has come back as applied).

Cases
  federated  typists on b.test; every wave has a watcher on a.test
  local      typists on a.test; every wave has a watcher on b.test
  long       one typist on b.test, in a fresh wave and again once the wave
             holds --long-wave blips (typed by --per-wave fillers)

For each N it prints lines per second, latency p50/p99 from typed to shown
as applied in the typist's own console ("own") and to shown in the watcher's
console on the other server ("other"), CPU milliseconds per delta of each
server process and of this load generator, and each server's peak RSS.  In
the same run it measures the machine's limits -- RSA-2048 SHA1withRSA signs
per second on 1 and 2 threads, fsyncs per second in the data directory --
and prints each rate as a ratio of them.

With --profile-at N, py-spy samples both servers during that N's window
(``pip install py-spy``) and the busiest functions are printed.

Usage: python benchmarks/bench_capacity.py [--sizes 1,10,50,100,200,500]
       [--seconds 10] [--per-wave 20] [--cases federated,local,long]
       [--long-wave 10000] [--profile-at N] [--profile-case federated]
       [--profile-dir DIR] [--dir DIR] [--keep]
"""

import argparse
import collections
import math
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import defer, reactor, task  # noqa: E402

from benchmarks.limits import Limits  # noqa: E402
from tests.dnsserver import ZoneServer, standard_records  # noqa: E402
from tests.federation_stack import ADDRESSES  # noqa: E402
from tests.pki import write_domain_files  # noqa: E402
from tests.helpers import (  # noqa: E402
    Client, console_login, quick_hash, start_twistd_wavebox)
from wavebox.store import open_store  # noqa: E402

PASSWORD = "secret"
HOST, OTHER = "a.test", "b.test"
CLK_TCK = os.sysconf("SC_CLK_TCK")
#: Seconds any one step of the set-up may take: a guard against hanging.
GUARD = 120


# --- process figures -----------------------------------------------------------------

def cpu_seconds(pid):
    """User + system CPU seconds of a process, all its threads."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def peak_rss_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def own_cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentile(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100.0 * (len(values) - 1))))]


# --- console users ---------------------------------------------------------------------

class ConsoleUser(Client):
    """
    One console session.  While setting up it keeps its lines and waits for
    patterns; while measuring it hands every ``AUTHOR: TEXT`` line to
    ``on_blip`` and keeps nothing.
    """

    MAX_LENGTH = 1 << 20

    def __init__(self):
        Client.__init__(self)
        self.on_blip = None
        self.errors = 0

    def lineReceived(self, line):
        text = line.rstrip(b"\r").decode("utf-8", "replace")
        if self.on_blip is not None:
            author, sep, body = text.partition(": ")
            if sep and "@" in author and " " not in author:
                self.on_blip(author, body)
                return
            if text.startswith("error: "):
                self.errors += 1
                print("  console error: %s" % (text,))
                self.on_blip(None, text)
                return
        self.lines.append(text)
        self._check()

    def expect(self, pattern, guard=GUARD):
        return Client.expect(self, pattern, guard)


@defer.inlineCallbacks
def log_in(port, address):
    user = yield console_login(None, port, address, PASSWORD, re.escape(address),
                               client=ConsoleUser)
    user.address = address
    return user


def gather(ds):
    return defer.gatherResults(list(ds), consumeErrors=True)


def progress(text):
    """What the set-up is doing, on stderr (a stalled step is then plain to see)."""
    sys.stderr.write("  [%s] %s\n" % (time.strftime("%H:%M:%S"), text))
    sys.stderr.flush()


class Measure:
    """The figures of one window: latencies, counts, CPU."""

    def __init__(self):
        self.sent = {}              # text -> time typed
        self.own = []
        self.other = []
        self.acknowledged = 0
        self.seen_other = 0
        self.measuring = False

    def typed(self, text):
        if self.measuring:
            self.sent[text] = time.perf_counter()

    def shown_own(self, text):
        t = self.sent.get(text)
        if t is not None:
            self.own.append(time.perf_counter() - t)
            self.acknowledged += 1

    def shown_other(self, text):
        t = self.sent.get(text)
        if t is not None:
            self.other.append(time.perf_counter() - t)
            self.seen_other += 1


class Typist:
    """Types a line, waits to see it applied in its own console, types the next."""

    def __init__(self, user, tag, measure):
        self.user = user
        self.tag = tag
        self.measure = measure
        self.seq = 0
        self.pending = None
        self.deadline = None
        self.done = None
        user.on_blip = self._blip

    def type_until(self, deadline, at_least=0):
        """Fires with the number of lines typed, once the deadline passed."""
        self.deadline = deadline
        self.at_least = at_least
        self.typed = 0
        self.done = defer.Deferred()
        self._next()
        return self.done

    def _next(self):
        if self.typed >= self.at_least and time.perf_counter() >= self.deadline:
            self.pending = None
            done, self.done = self.done, None
            done.callback(self.typed)
            return
        self.seq += 1
        self.typed += 1
        self.pending = "%s-%d" % (self.tag, self.seq)
        self.measure.typed(self.pending)
        self.user.send(self.pending)

    def _blip(self, author, body):
        if author is None and self.pending is not None:      # an error line
            self._next()
        elif author == self.user.address and body == self.pending:
            self.measure.shown_own(body)
            self._next()


class Watcher:
    def __init__(self, user, measure):
        self.user = user
        self.measure = measure
        self.blips = 0
        user.on_blip = self._blip

    def _blip(self, author, body):
        if author is not None:
            self.blips += 1
            self.measure.shown_other(body)


# --- the deployment -----------------------------------------------------------------------

class Deployment:
    """The DNS server here, a.test and b.test as twistd children."""

    def __init__(self, directory, accounts, extra_args=()):
        self.directory = directory
        self.accounts = accounts         # domain -> [address]
        self.extra_args = list(extra_args)
        self.procs = {}
        self.dns = None

    @defer.inlineCallbacks
    def start(self):
        # The DNS server first, so the children know where it is; the zone
        # gets their S2S ports once they listen.
        self.dns = yield ZoneServer.start(records=standard_records())
        for domain in (HOST, OTHER):
            home = os.path.join(self.directory, domain)
            data = os.path.join(home, "data")
            pki_dir = os.path.join(home, "pki")
            os.makedirs(pki_dir, exist_ok=True)
            cert, key, ca = write_domain_files(domain, pki_dir)
            store = open_store("sqlite:wavebox.sqlite3", data)
            try:
                hashed = quick_hash(PASSWORD)
                yield gather(store.add_account(a, hashed) for a in self.accounts[domain])
            finally:
                yield store.close()
            self.procs[domain], _ = yield start_twistd_wavebox(None, home, [
                "--domain", domain, "--data-dir", data,
                "--store", "sqlite:wavebox.sqlite3",
                "--s2s-interface", ADDRESSES[domain], "--s2s-port", "0",
                "--certificate", cert, "--private-key", key, "--trusted-ca", ca,
                "--nameserver", "%s:%d" % self.dns.nameserver,
                "--console-interface", "127.0.0.1", "--console-port", "0",
                "--log-level", "info"] + self.extra_args, wants_s2s=True)
        self.dns.set_records(standard_records(
            {d: p.s2s_address[1] for d, p in self.procs.items()}))

    def console_port(self, domain):
        return self.procs[domain].console_port

    def pid(self, domain):
        return self.procs[domain].pid

    def data_dir(self, domain):
        return os.path.join(self.directory, domain, "data")

    @defer.inlineCallbacks
    def stop(self):
        for proc in self.procs.values():
            if proc.running:
                proc.transport.signalProcess("TERM")
        for proc in self.procs.values():
            timer = reactor.callLater(30, proc.kill)
            yield proc.ended
            if timer.active():
                timer.cancel()
        if self.dns is not None:
            yield self.dns.stop()


# --- one window -------------------------------------------------------------------------

class Plan:
    """Who takes part in each run: accounts are made before the servers start."""

    def __init__(self, args):
        self.args = args
        self.runs = []           # (case, n, typist domain, watcher domain, run id)
        cases = args.cases
        for case in ("federated", "local"):
            if case in cases:
                typing_on = OTHER if case == "federated" else HOST
                watching_on = HOST if case == "federated" else OTHER
                for n in args.sizes:
                    self.runs.append((case, n, typing_on, watching_on, len(self.runs)))
        self.accounts = {HOST: [], OTHER: []}
        for case, n, typing_on, watching_on, run in self.runs:
            waves = self.waves(n)
            self.accounts[typing_on] += [self.typist(run, i, typing_on) for i in range(n)]
            self.accounts[watching_on] += [self.watcher(run, j, watching_on)
                                           for j in range(waves)]
            self.accounts[HOST] += [self.creator(run, j) for j in range(waves)]
        if "long" in cases:
            run = "long"
            self.accounts[OTHER] += [self.typist(run, i, OTHER)
                                     for i in range(max(1, args.per_wave))]
            self.accounts[HOST] += [self.watcher(run, 0, HOST), self.creator(run, 0)]
        for domain in self.accounts:
            self.accounts[domain] = sorted(set(self.accounts[domain]))

    def waves(self, n):
        return max(1, math.ceil(n / self.args.per_wave))

    @staticmethod
    def typist(run, i, domain):
        return "r%st%d@%s" % (run, i, domain)

    @staticmethod
    def watcher(run, j, domain):
        return "r%sw%d@%s" % (run, j, domain)

    @staticmethod
    def creator(run, j):
        return "r%sc%d@%s" % (run, j, HOST)


@defer.inlineCallbacks
def make_wave(deployment, creator, members):
    """
    ``creator`` (on a.test) makes a wave and adds ``members`` (logged-in
    ConsoleUsers, each waiting for the notice), who then open it; the
    creator hangs up.  Fires with the wave's label.
    """
    host = yield log_in(deployment.console_port(HOST), creator)
    host.send("/new")
    created = yield host.expect(r"^created wave (\S+)")
    label = created.group(1)
    notices = [m.expect(r"added you to wave " + re.escape(label)) for m in members]
    for m in members:
        host.send("/add " + m.address)
        yield host.expect(r"^\* \S+ added " + re.escape(m.address) + "$")
    yield gather(notices)
    for m in members:
        m.send("/open 0")
    yield gather(m.expect(r"^--- wave " + re.escape(label)) for m in members)
    host.transport.loseConnection()
    return label


class Figures:
    def __init__(self, measure, elapsed, cpu, gen_cpu, rss):
        self.measure = measure
        self.elapsed = elapsed
        self.cpu = cpu              # domain -> seconds
        self.gen_cpu = gen_cpu
        self.rss = rss              # domain -> MB
        self.lines = measure.acknowledged
        self.rate = self.lines / elapsed if elapsed else 0.0

    def per_delta_ms(self, seconds):
        return 1000.0 * seconds / self.lines if self.lines else float("nan")


@defer.inlineCallbacks
def window(deployment, typists, watchers, measure, seconds, profile=None):
    """Every typist types for ``seconds``; the watchers see it all.  Fires with Figures."""
    # Warm up: one line each (streams, TLS, dialback, signer infos), unmeasured.
    warm = gather(t.type_until(0, at_least=1) for t in typists)
    warm.addTimeout(GUARD, reactor)
    yield warm
    progress("warmed up: one line each")
    start_cpu = {d: cpu_seconds(deployment.pid(d)) for d in (HOST, OTHER)}
    start_gen = own_cpu_seconds()
    measure.measuring = True
    started = time.perf_counter()
    samplers = profile.start(seconds) if profile else []
    typing = gather(t.type_until(started + seconds) for t in typists)
    typing.addTimeout(seconds + GUARD, reactor)
    try:
        yield typing
    except defer.TimeoutError:
        stuck = [t for t in typists if t.pending is not None]
        print("  !! %d typist(s) never saw their line come back, e.g. %s"
              % (len(stuck), ", ".join("%s: %r" % (t.user.address, t.pending)
                                       for t in stuck[:5])))
        raise
    elapsed = time.perf_counter() - started
    measure.measuring = False
    cpu = {d: cpu_seconds(deployment.pid(d)) - start_cpu[d] for d in (HOST, OTHER)}
    gen = own_cpu_seconds() - start_gen
    # The watchers on the other server see every line (a guard, not a timing).
    waited = time.perf_counter()
    while measure.seen_other < measure.acknowledged and time.perf_counter() - waited < GUARD:
        yield task.deferLater(reactor, 0.05, lambda: None)
    if measure.seen_other < measure.acknowledged:
        print("  !! the watchers saw %d of %d lines" % (measure.seen_other, measure.acknowledged))
    for s in samplers:
        yield s
    rss = {d: peak_rss_mb(deployment.pid(d)) for d in (HOST, OTHER)}
    return Figures(measure, elapsed, cpu, gen, rss)


HEADER = ("      N waves   lines/s   own p50/p99 ms   other p50/p99 ms   "
          "CPU ms/delta a / b / gen   peak RSS MB a / b   /sign2  /fsync")


def row(label, f, limits):
    m = f.measure
    return ("  %11s  %8.0f  %7.1f %7.1f  %8.1f %8.1f     %6.2f %6.2f %6.2f     %6.0f %6.0f"
            "   %6.3f %6.3f" % (
                label, f.rate,
                1000 * percentile(m.own, 50), 1000 * percentile(m.own, 99),
                1000 * percentile(m.other, 50), 1000 * percentile(m.other, 99),
                f.per_delta_ms(f.cpu[HOST]), f.per_delta_ms(f.cpu[OTHER]),
                f.per_delta_ms(f.gen_cpu), f.rss[HOST], f.rss[OTHER],
                f.rate / limits.sign2, f.rate / limits.fsync))


@defer.inlineCallbacks
def run_sweep(deployment, plan, case, limits, profiler):
    args = plan.args
    runs = [r for r in plan.runs if r[0] == case]
    if not runs:
        return
    _, _, typing_on, watching_on, _ = runs[0]
    print()
    print("case %s: typists on %s, waves hosted on %s, one watcher per wave on %s, "
          "up to %d typists per wave" % (case, typing_on, HOST, watching_on, args.per_wave))
    print(HEADER)
    for case, n, typing_on, watching_on, run in runs:
        waves = plan.waves(n)
        measure = Measure()
        typists = yield gather(log_in(deployment.console_port(typing_on),
                                      plan.typist(run, i, typing_on)) for i in range(n))
        watchers = yield gather(log_in(deployment.console_port(watching_on),
                                       plan.watcher(run, j, watching_on))
                                for j in range(waves))
        progress("N=%d: %d typists and %d watchers logged in" % (n, n, waves))
        groups = [typists[j::waves] for j in range(waves)]
        # One wave after the other: made at once, two waves' first updates
        # to b.test have been seen to wait minutes (the note in
        # docs/performance.rst, "Capacity").
        for j in range(waves):
            yield make_wave(deployment, plan.creator(run, j), groups[j] + [watchers[j]])
        progress("N=%d: %d waves made, everyone has theirs open" % (n, waves))
        ts = [Typist(u, "k%st%d" % (run, i), measure) for i, u in enumerate(typists)]
        ws = [Watcher(u, measure) for u in watchers]
        profile = profiler if profiler and profiler.wanted(case, n) else None
        figures = yield window(deployment, ts, ws, measure, args.seconds, profile)
        print(row("%5d %5d" % (n, waves), figures, limits))
        sys.stdout.flush()
        errors = sum(u.errors for u in typists + watchers)
        if errors:
            print("  !! %d console errors" % (errors,))
        yield gather(u.hang_up() for u in typists + watchers)
        if profile:
            profile.report()


@defer.inlineCallbacks
def run_long(deployment, plan, limits):
    """CPU and latency of one typist's line in a fresh wave, then in a long one."""
    args = plan.args
    run = "long"
    fillers_n = max(1, args.per_wave)
    users = yield gather(log_in(deployment.console_port(OTHER), plan.typist(run, i, OTHER))
                         for i in range(fillers_n))
    watcher = yield log_in(deployment.console_port(HOST), plan.watcher(run, 0, HOST))
    yield make_wave(deployment, plan.creator(run, 0), users + [watcher])
    print()
    print("case long: one typist on b.test, its wave on a.test, a watcher on a.test; "
          "the wave's other %d members have it open too" % (fillers_n - 1,))
    print("      blips" + HEADER[13:])
    measure = Measure()
    Watcher(watcher, measure)
    fresh = yield window(deployment, [Typist(users[0], "kf", measure)], [], measure,
                         args.seconds)
    print(row("%d" % (measure.acknowledged,), fresh, limits))
    # Fill: every member types until the wave holds --long-wave blips.
    filled = Measure()
    Watcher(watcher, filled)
    fillers = [Typist(u, "kx%d" % i, filled) for i, u in enumerate(users)]
    started = time.perf_counter()
    blips = fresh.lines + 2 * fillers_n
    while blips < args.long_wave:
        done = yield gather(f.type_until(time.perf_counter() + 5) for f in fillers)
        blips += sum(done)
    print("  (filled to %d blips in %.0f s)" % (blips, time.perf_counter() - started))
    measure = Measure()
    Watcher(watcher, measure)
    late = yield window(deployment, [Typist(users[0], "kl", measure)], [], measure,
                        args.seconds)
    print(row("%d" % (blips,), late, limits))
    for name, host_or_other in (("a.test", HOST), ("b.test", OTHER)):
        print("  %s CPU per delta at %d blips / fresh: %.2f" % (
            name, blips, late.per_delta_ms(late.cpu[host_or_other])
            / fresh.per_delta_ms(fresh.cpu[host_or_other])))
    print("  own latency p50 at %d blips / fresh: %.2f" % (
        blips, percentile(late.measure.own, 50) / percentile(fresh.measure.own, 50)))
    yield gather(u.hang_up() for u in users + [watcher])


# --- profiling ----------------------------------------------------------------------------

class Profiler:
    """py-spy on both servers during one window; the top functions printed."""

    def __init__(self, deployment, case, n, directory, top=25):
        self.deployment = deployment
        self.case, self.n = case, n
        self.directory = directory
        self.top = top
        self.outputs = {}
        exe = os.path.join(os.path.dirname(sys.executable), "py-spy")
        self.exe = exe if os.path.exists(exe) else shutil.which("py-spy")
        if self.exe is None:
            raise SystemExit("--profile-at needs py-spy: pip install py-spy")

    def wanted(self, case, n):
        return case == self.case and n == self.n

    def start(self, seconds):
        done = []
        os.makedirs(self.directory, exist_ok=True)
        for domain in (HOST, OTHER):
            out = os.path.join(self.directory, "%s-%s-%d.folded" % (domain, self.case, self.n))
            self.outputs[domain] = out
            proc = subprocess.Popen(
                [self.exe, "record", "--nonblocking", "-r", "200", "-f", "raw",
                 "-d", str(max(1, int(seconds))), "-o", out,
                 "-p", str(self.deployment.pid(domain))],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            done.append(task.deferLater(reactor, 0, self._wait, proc))
        return done

    def _wait(self, proc):
        d = defer.Deferred()

        def poll():
            if proc.poll() is None:
                reactor.callLater(0.2, poll)
            else:
                d.callback(None)
        poll()
        return d

    def report(self):
        for domain, path in self.outputs.items():
            selfs, totals, samples = collections.Counter(), collections.Counter(), 0
            try:
                with open(path) as f:
                    for line in f:
                        stack, _, count = line.rstrip("\n").rpartition(" ")
                        count = int(count)
                        frames = [re.sub(r":\d+\)$", ")", fr) for fr in stack.split(";")]
                        samples += count
                        selfs[frames[-1]] += count
                        for fr in set(frames):
                            totals[fr] += count
            except OSError as e:
                print("  profile of %s: %s" % (domain, e))
                continue
            print("  profile of %s, %s N=%d: %d samples (CPU only; %s)" % (
                domain, self.case, self.n, samples, path))
            print("    self%   incl%  function")
            for fr, c in selfs.most_common(self.top):
                print("   %5.1f  %6.1f  %s" % (100.0 * c / samples, 100.0 * totals[fr] / samples,
                                              fr))
            print("    top inclusive:")
            for fr, c in totals.most_common(self.top):
                print("   %5.1f  %6.1f  %s" % (100.0 * selfs[fr] / samples,
                                              100.0 * c / samples, fr))


# --- main ---------------------------------------------------------------------------------

async def main_async(args):
    directory = tempfile.mkdtemp(prefix="bench-capacity-", dir=args.dir)
    plan = Plan(args)
    # The console's limits are for people (20 lines a second each, 20
    # sessions from one address, 20 logins in flight from one address before
    # they must wait): the typists here are one program on one address,
    # logging in together and typing as fast as their lines come back.
    sessions = 2 * max([n + plan.waves(n) for n in args.sizes] + [args.per_wave]) + 100
    extra = ["--console-line-rate", "%g" % (args.console_line_rate,),
             "--console-line-burst", "1000",
             "--console-max-sessions", str(sessions),
             "--console-max-sessions-per-ip", str(sessions),
             "--login-ip-failures", str(sessions)]
    deployment = Deployment(directory, plan.accounts, extra)
    try:
        print("machine: %d CPUs (shared with whatever else runs); load average %s"
              % (os.cpu_count(), " ".join("%.2f" % x for x in os.getloadavg())))
        limits = Limits(directory)
        print("limits before: %s" % (limits,))
        await deployment.start()
        print("servers: a.test pid %d, b.test pid %d, twistd wavebox each, SQLite "
              "(WAL, synchronous=FULL), STARTTLS with a test CA, dialback, DNS on loopback"
              % (deployment.pid(HOST), deployment.pid(OTHER)))
        print("servers' console limits for this load generator: %s" % (" ".join(extra),))
        print("ratios: /sign2 = lines/s over the 2-thread sign rate; /fsync = lines/s over "
              "the fsync rate")
        profiler = None
        if args.profile_at is not None:
            profiler = Profiler(deployment, args.profile_case, args.profile_at,
                                args.profile_dir or os.path.join(directory, "profiles"))
        for case in ("federated", "local"):
            if case in args.cases:
                await run_sweep(deployment, plan, case, limits, profiler)
        if "long" in args.cases:
            await run_long(deployment, plan, limits)
        after = Limits(directory)
        print()
        print("limits after:  %s" % (after,))
    finally:
        await deployment.stop()
        for domain, proc in deployment.procs.items():
            with open(os.path.join(directory, domain, "twistd.log"), "wb") as f:
                f.write(proc.output)
        if args.keep:
            print("kept %s" % (directory,))
        else:
            shutil.rmtree(directory, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,10,50,100,200,500",
                        help="numbers of typists, comma-separated (quick: 1,10)")
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="length of each measured window")
    parser.add_argument("--per-wave", type=int, default=20,
                        help="most typists in one wave (more typists: more waves)")
    parser.add_argument("--cases", default="federated,local,long")
    parser.add_argument("--long-wave", type=int, default=10000,
                        help="blips in the long wave of the 'long' case")
    parser.add_argument("--profile-at", type=int, default=None,
                        help="py-spy both servers during the window of this N")
    parser.add_argument("--profile-case", default="federated")
    parser.add_argument("--profile-dir", default=None)
    parser.add_argument("--console-line-rate", type=float, default=1000.0,
                        help="the servers' --console-line-rate (a person's limit is 20)")
    parser.add_argument("--dir", default=None, help="where the servers' files go")
    parser.add_argument("--keep", action="store_true", help="keep the servers' files")
    args = parser.parse_args()
    args.sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    args.cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    resource.setrlimit(resource.RLIMIT_NOFILE, (
        resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
    task.react(lambda _: defer.ensureDeferred(main_async(args)))


if __name__ == "__main__":
    main()
