"""
``twistd -n wavebox`` as a child process, with this checkout on its
PYTHONPATH: what the kill -9 tests (tests/test_restart.py) and the capacity
benchmark (benchmarks/bench_capacity.py) start, so both run the program as
it is deployed.  The child's output is kept; the console and S2S ports it
logged (``--console-port 0``, ``--s2s-port 0``) are read from it.
"""

import os
import re
import sys

from twisted.internet import defer, protocol, reactor

import wavebox

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(wavebox.__file__)))
CONSOLE_LISTENING = re.compile(rb"console listening on 127\.0\.0\.1:(\d+)")
S2S_LISTENING = re.compile(rb"S2S listening on ([\d.]+):(\d+)")
#: Seconds to wait for a child to start listening: a guard against hanging.
TIMEOUT = 60


class ServerProcess(protocol.ProcessProtocol):
    """
    A ``twistd -n wavebox`` child: its output, its console port, its S2S
    address (when it listens for S2S), its end.
    """

    def __init__(self, wants_s2s=False):
        self._chunks = []
        self._head = b""                       # the output until both ports are known
        self.port = defer.Deferred()           # the console port
        self.s2s = defer.Deferred()            # (host, port) of the S2S listener
        self.ended = defer.Deferred()
        self.running = True
        self.pid = None
        self.console_port = None               # once logged
        self.s2s_address = None                # once logged
        self._wants_s2s = wants_s2s

    def connectionMade(self):
        self.pid = self.transport.pid

    @property
    def output(self):
        return b"".join(self._chunks)

    def outReceived(self, data):
        self._chunks.append(data)
        if self.console_port is not None and (self.s2s_address is not None
                                              or not self._wants_s2s):
            return
        self._head += data
        if not self.port.called:
            m = CONSOLE_LISTENING.search(self._head)
            if m:
                self.console_port = int(m.group(1))
                self.port.callback(self.console_port)
        if not self.s2s.called:
            m = S2S_LISTENING.search(self._head)
            if m:
                self.s2s_address = (m.group(1).decode("ascii"), int(m.group(2)))
                self.s2s.callback(self.s2s_address)

    errReceived = outReceived

    def processEnded(self, reason):
        self.running = False
        for d in (self.port, self.s2s) if self._wants_s2s else (self.port,):
            if not d.called:
                d.errback(AssertionError("server ended before listening:\n"
                                         + self.output.decode("utf-8", "replace")))
        self.ended.callback((reason.value.exitCode, reason.value.signal))

    def kill(self):
        """SIGKILL, if still running; fires when it has ended."""
        if self.running:
            self.transport.signalProcess("KILL")
            return self.ended
        return defer.succeed(None)


def twistd_args(*options):
    """The command line of ``twistd -n wavebox OPTIONS`` with this interpreter."""
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
            "-n", "--pidfile=", "--logfile=-", "wavebox"] + list(options)


@defer.inlineCallbacks
def start_wavebox(options, cwd, env=None, wants_s2s=False, timeout=TIMEOUT):
    """
    Spawn ``twistd -n wavebox OPTIONS`` in ``cwd``; fires with the
    :class:`ServerProcess` once its console (and, with ``wants_s2s``, its S2S
    service) listens (``console_port``, ``s2s_address``).  The caller ends it (``kill()``, or SIGTERM).
    """
    proc = ServerProcess(wants_s2s)
    if not any(str(o).startswith("--web-port") for o in options):
        options = list(options) + ["--web-port", "0"]   # the web client only where asked
    child_env = dict(os.environ if env is None else env)
    child_env["PYTHONPATH"] = ROOT + os.pathsep + child_env.get("PYTHONPATH", "")
    args = twistd_args(*options)
    reactor.spawnProcess(proc, sys.executable, args, env=child_env, path=cwd)
    waits = [proc.port] + ([proc.s2s] if wants_s2s else [])
    timer = reactor.callLater(timeout, lambda: [d.cancel() for d in waits if not d.called])
    try:
        for d in waits:
            yield d
    except BaseException:
        yield proc.kill()
        raise
    finally:
        if timer.active():
            timer.cancel()
    return proc
