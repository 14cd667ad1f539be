"""
What the fixtures of real parts (``tests/prosody.py``, ``tests/ejabberd.py``,
``tests/postgres.py``) share: loopback ports from bind(0), waiting on a
real process, children that can be reaped and killed as a group, and the
process table, for daemons that leave our process group (ejabberd's node).
"""

import os
import signal
import socket
import sys

from twisted.internet import defer, error, protocol, task

# Put the exec'd program in a process group of its own, so that the fixture
# can signal everything it started, and nothing of the test run's.
NEW_PROCESS_GROUP = "import os, sys; os.setpgrp(); os.execvp(sys.argv[1], sys.argv[1:])"


def free_port(address):
    """A port that was free on ``address`` a moment ago (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def accepts_connections(address, port):
    """True if something accepts a TCP connection there (loopback: instant)."""
    try:
        socket.create_connection((address, port), timeout=0.5).close()
        return True
    except OSError:
        return False


@defer.inlineCallbacks
def poll_until(predicate, timeout=20.0, what="the condition", step=0.05, reactor=None,
               diagnostics=None):
    """
    Fire once ``predicate()`` is true; fail with ``what`` (and the text of
    ``diagnostics()``, e.g. the peer's log) after ``timeout`` seconds.  For
    waiting on real processes; unit tests use task.Clock instead.
    """
    if reactor is None:
        from twisted.internet import reactor
    waited = 0.0
    while not predicate():
        if waited >= timeout:
            detail = ("\n" + diagnostics()) if diagnostics else ""
            raise AssertionError("gave up after %.0f s waiting for %s%s" % (timeout, what, detail))
        yield task.deferLater(reactor, step, lambda: None)
        waited += step


class ChildProcess(protocol.ProcessProtocol):
    """Collects a child's output and tells when it has been reaped."""

    def __init__(self):
        self.output = []
        self.status = None
        self._ended = []

    def outReceived(self, data):
        self.output.append(data)

    errReceived = outReceived

    def processEnded(self, reason):
        self.status = reason.value
        waiting, self._ended = self._ended, []
        for d in waiting:
            d.callback(reason.value)

    @property
    def running(self):
        return self.status is None

    @property
    def exit_code(self):
        """The exit status once reaped (None while running, or if killed by a signal)."""
        return getattr(self.status, "exitCode", None)

    def text(self):
        return b"".join(self.output).decode("utf-8", "replace")

    def ended(self):
        """A Deferred that fires once the process has been reaped."""
        if self.status is not None:
            return defer.succeed(self.status)
        d = defer.Deferred()
        self._ended.append(d)
        return d


def spawn_in_own_group(reactor, child, argv, path, env=None):
    """Start ``argv`` as the leader of a new process group; its transport."""
    return reactor.spawnProcess(child, sys.executable,
                                [sys.executable, "-c", NEW_PROCESS_GROUP] + list(argv),
                                env=dict(os.environ) if env is None else env, path=path)


def signal_group(pgid, signum):
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass


@defer.inlineCallbacks
def run_command(argv, path, timeout=30.0, reactor=None, env=None):
    """
    Run a short command (an admin tool of a peer) in a process group of its
    own and fire with the :class:`ChildProcess` once it has been reaped; if it
    has not finished in ``timeout`` seconds, its group is killed and this
    fails with TimeoutError carrying its output.
    """
    if reactor is None:
        from twisted.internet import reactor
    child = ChildProcess()
    transport = spawn_in_own_group(reactor, child, argv, path, env)
    ended = child.ended()
    timer = reactor.callLater(timeout, ended.cancel)
    try:
        yield ended
    except defer.CancelledError:
        signal_group(transport.pid, signal.SIGKILL)
        yield child.ended()
        raise error.TimeoutError("%s did not finish in %s s; output: %s"
                                 % (" ".join(argv), timeout, child.text()))
    timer.cancel()
    return child


class ProcessEntry:
    """One line of the process table."""

    def __init__(self, pid, ppid, state, started, uid, command):
        self.pid, self.ppid, self.state = pid, ppid, state
        self.started = started          # clock ticks after boot: (pid, started) is unique
        self.uid = uid
        self.command = command

    @property
    def program(self):
        return os.path.basename(self.command.split()[0]) if self.command else ""


def process_table():
    """``{pid: ProcessEntry}`` of every process on the machine, zombies left out."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as f:
                stat = f.read().decode("utf-8", "replace")
            with open("/proc/%s/cmdline" % name, "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
            uid = os.stat("/proc/%s" % name).st_uid
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] == "Z":
            continue            # ended; only its parent's reaping is missing
        table[int(name)] = ProcessEntry(int(name), int(fields[1]), fields[0], int(fields[19]), uid,
                                 cmdline or stat.split(" ", 2)[1])
    return table


def process_tree(root, table):
    """``{(pid, started)}`` of ``root`` and all its descendants in ``table``."""
    found, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, proc in table.items():
            if proc.ppid == parent and pid not in found:
                found.add(pid)
                frontier.append(pid)
    return {(pid, table[pid].started) for pid in found if pid in table}
