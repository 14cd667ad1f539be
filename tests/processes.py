"""
What the fixtures of real parts (``tests/prosody.py``, ``tests/ejabberd.py``,
``tests/postgres.py``) share: loopback ports from bind(0), waiting on a
real process, and children that can be reaped and killed as a group.
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
