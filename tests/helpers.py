"""
Helpers that several test modules share, kept in one place: the telnet-like
console client and its login, cheap password hashes, a document insertion,
the wave service JID of the fixtures, a log watcher, and the deployments of
wavebox beside (and behind) the real Prosody of ``tests/prosody.py`` and beside
the real ejabberd of ``tests/ejabberd.py``.
"""

import os
import re
import sys

from twisted.internet import defer, protocol, reactor
from twisted.logger import formatEvent, globalLogPublisher
from twisted.protocols.basic import LineReceiver

import wavebox
from tests import pki
from tests.dnsserver import A, SRV, ZoneServer
from tests.ejabberd import srv_to
from tests.processes import poll_until
from wavebox import service as wservice
from wavebox.config import load
from wavebox.model.docop import DocOpBuilder
from wavebox.store.accounts import hash_password

#: How long a console client waits for an expected line before it fails.
TIMEOUT = 10


def quick_hash(password):
    """A cheap scrypt hash: verification reads the parameters from the string."""
    return hash_password(password, n=2 ** 4, r=8, p=1)


def insert(text, at=0, size=0):
    """A document op inserting ``text`` at ``at`` in a document of ``size`` items."""
    b = DocOpBuilder()
    if at:
        b.retain(at)
    b.characters(text)
    if size - at:
        b.retain(size - at)
    return b.build()


def service_jid(domain):
    """The wave service JID of a domain in the federation fixtures."""
    return "wave." + domain


# --- the console, as telnet drives it ----------------------------------------------

class Client(LineReceiver):
    """A telnet-like test client: collects lines, waits for the ones it expects."""

    delimiter = b"\n"

    def __init__(self):
        self.lines = []
        self.cursor = 0
        self.waiting = None
        self.closed = defer.Deferred()

    def lineReceived(self, line):
        self.lines.append(line.rstrip(b"\r").decode("utf-8"))
        self._check()

    def connectionLost(self, reason):
        self.closed.callback(None)

    def send(self, text):
        self.transport.write(text.encode("utf-8") + b"\r\n")

    def expect(self, pattern):
        """Fires with the first line from the cursor on matching ``pattern`` (a regex)."""
        d = defer.Deferred()
        self.waiting = (re.compile(pattern), d)
        timer = reactor.callLater(TIMEOUT, self._timeout, pattern, d)
        d.addBoth(self._cancel, timer)
        self._check()
        return d

    def _cancel(self, result, timer):
        if timer.active():
            timer.cancel()
        return result

    def _timeout(self, pattern, d):
        if self.waiting and self.waiting[1] is d:
            self.waiting = None
            d.errback(AssertionError("no line matching %r; got %r"
                                     % (pattern, self.lines[self.cursor:])))

    def _check(self):
        if self.waiting is None:
            return
        regex, d = self.waiting
        while self.cursor < len(self.lines):
            line = self.lines[self.cursor]
            self.cursor += 1
            match = regex.search(line)
            if match:
                self.waiting = None
                d.callback(match)
                return

    def since(self, mark):
        return self.lines[mark:]


def _hang_up(client):
    if client.transport.connected:
        client.transport.loseConnection()
        return client.closed


@defer.inlineCallbacks
def connect_console(testcase, port):
    """A Client on the console at 127.0.0.1:``port``, past its banner; hung up at the end."""
    client = yield protocol.ClientCreator(reactor, Client).connectTCP("127.0.0.1", port)
    testcase.addCleanup(_hang_up, client)
    yield client.expect("^wavebox console")
    return client


@defer.inlineCallbacks
def console_login(testcase, port, user, password, address=""):
    """
    A Client logged in as ``user``; the console must answer "logged in as
    ADDRESS" (a regex; empty: any address).
    """
    client = yield connect_console(testcase, port)
    client.send("/login %s %s" % (user, password))
    yield client.expect("^logged in as " + address)
    return client


# --- the real program: twistd -n wavebox in a child process ---------------------------

#: The checkout whose code the child runs (put first on its PYTHONPATH).
CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(wavebox.__file__)))
#: What the child runs: twistd, as the ``twistd`` script does.
TWISTD = "from twisted.scripts.twistd import run; run()"
_CONSOLE_LISTENING = re.compile(rb"console listening on 127\.0\.0\.1:(\d+)")
#: How long a test waits for the server to start or stop before it fails.
TWISTD_TIMEOUT = 60


class ServerProcess(protocol.ProcessProtocol):
    """A ``twistd -n wavebox`` child: its output, its console port, its end."""

    def __init__(self):
        self.output = b""
        self.port = defer.Deferred()
        self.ended = defer.Deferred()
        self.running = True

    def outReceived(self, data):
        self.output += data
        m = _CONSOLE_LISTENING.search(self.output)
        if m and not self.port.called:
            self.port.callback(int(m.group(1)))

    errReceived = outReceived

    def processEnded(self, reason):
        self.running = False
        if not self.port.called:
            self.port.errback(AssertionError("server ended before listening:\n"
                                             + self.output.decode("utf-8", "replace")))
        self.ended.callback((reason.value.exitCode, reason.value.signal))

    def count(self, text):
        """How many times ``text`` (bytes) is in the output so far."""
        return self.output.count(text)


def _reap(proc):
    if proc.running:
        proc.transport.signalProcess("KILL")
        return proc.ended


@defer.inlineCallbacks
def start_twistd_wavebox(testcase, directory, args, main=TWISTD, checkout=CHECKOUT):
    """
    ``twistd -n wavebox ARGS`` started in ``directory`` (its console on
    127.0.0.1, port 0); fires with (the ServerProcess, its console port)
    once it listens.  Killed at the end of the test if still running.
    ``main`` is the Python the child runs (tests may wrap twistd);
    ``checkout`` the code it runs (benchmarks compare two).
    """
    proc = ServerProcess()
    if not any(a.startswith("--web-port") for a in args):
        args = list(args) + ["--web-port", "0"]      # the web client only where a test asks
    argv = [sys.executable, "-c", main, "-n", "--pidfile=", "--logfile=-", "wavebox"] + args
    env = dict(os.environ, PYTHONPATH=checkout + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("WAVEBOX_CONFIG", None)     # only the options given
    reactor.spawnProcess(proc, sys.executable, argv, env=env, path=directory)
    testcase.addCleanup(_reap, proc)
    timer = reactor.callLater(TWISTD_TIMEOUT, proc.port.cancel)
    port = yield proc.port
    timer.cancel()
    return proc, port


# --- logs -------------------------------------------------------------------------

class LogWatch:
    """Log lines, and Deferreds that fire when a line containing some text appears."""

    def __init__(self, testcase, guard=20):
        self.lines = []
        self.guard = guard
        self._waiting = []
        globalLogPublisher.addObserver(self._event)
        testcase.addCleanup(globalLogPublisher.removeObserver, self._event)

    def _event(self, event):
        line = formatEvent(event)
        self.lines.append(line)
        for text, d in list(self._waiting):
            if text in line:
                self._waiting.remove((text, d))
                d.callback(line)

    def wait_for(self, text):
        for line in self.lines:
            if text in line:
                return defer.succeed(line)
        d = defer.Deferred()
        self._waiting.append((text, d))
        return d.addTimeout(self.guard, reactor)

    def count(self, text):
        return sum(1 for line in self.lines if text in line)


# --- wavebox with a real Prosody ----------------------------------------------------

#: Where the standalone wavebox of wave.test listens beside Prosody.
WAVE_IP = "127.0.0.2"
#: Seconds: a guard against hanging, never an assertion about speed.
PROSODY_GUARD = 30


def start_wavebox(testcase, options):
    """wavebox as twistd builds it from ``options`` (config keys); stopped at the end."""
    options = dict({"web_port": "0"}, **options)     # the web client only where a test asks
    top = wservice.makeService(load(options))
    top.startService()
    testcase.addCleanup(top.stopService)
    return top


@defer.inlineCallbacks
def wavebox_beside_prosody(testcase, peer, data_dir, component=False, **options):
    """
    A standalone wavebox for ``wave.test`` on WAVE_IP (STARTTLS required,
    the Prosody ``peer``'s certificate as its trusted CA), a DNS server on
    loopback that leads it to ``prosody.test`` (and, with ``component``, to
    ``wave.prosody.test`` through Prosody), then the peer itself, routed to
    the wavebox.  ``options`` add to or override the config.  Fires with
    (wavebox, zone server).
    """
    peer.write_files()      # Prosody's certificate first: wavebox trusts it as its CA.
    values = {"domain": ["wave.test"], "data_dir": data_dir,
              "s2s_interface": WAVE_IP, "s2s_port": "0", "tls_required": "yes",
              "console_port": "0", "trusted_ca": peer.certificate_path,
              "nameserver": "127.0.0.1:1", "dns_timeout": "2"}
    values.update(options)
    wavebox = start_wavebox(testcase, values)
    port = wavebox.s2s.listening_address()[1]
    prosody = [SRV(0, 0, peer.s2s_port, "prosody.test")]
    records = {"prosody.test": [A(peer.ip)], "_xmpp-server._tcp.prosody.test": prosody}
    if component:
        records["_xmpp-server._tcp.wave.prosody.test"] = prosody
    zone = yield ZoneServer.start(records=records)
    testcase.addCleanup(zone.stop)
    wavebox.resolver.nameserver = zone.nameserver
    peer.peers = {"wave.test": (WAVE_IP, port), "wave.wave.test": (WAVE_IP, port)}
    yield peer.start()
    return wavebox, zone


@defer.inlineCallbacks
def wavebox_behind_prosody(testcase, peer, data_dir, what="the component handshake",
                           **options):
    """
    wavebox for ``prosody.test`` as the XEP-0114 component of the running
    Prosody ``peer`` (``--component``), as makeService builds it.  Fires
    with it once the component handshake is done.
    """
    values = {"domain": ["prosody.test"], "data_dir": data_dir,
              "component": "%s:%d" % (peer.ip, peer.component_port),
              "component_secret": peer.component_secret, "console_port": "0"}
    values.update(options)
    top = start_wavebox(testcase, values)
    yield poll_until(lambda: top.xmpp.authenticated, timeout=PROSODY_GUARD, what=what,
                     diagnostics=peer.log_text)
    return top


# --- wavebox with a real ejabberd ---------------------------------------------------

#: The domain of the standalone wavebox beside ejabberd (on WAVE_IP).
EJABBERD_WAVE_DOMAIN = "a.test"


def ejabberd_zone(peer, wavebox_port, domain=EJABBERD_WAVE_DOMAIN):
    """
    DNS records for wavebox ``domain`` (and its wave service) on
    WAVE_IP:``wavebox_port`` beside the ejabberd ``peer``: SRV records with
    IP-literal targets for ejabberd (which resolves targets with
    getaddrinfo), and SRV plus A records of ejabberd's domain for wavebox.
    """
    records = {}
    for name in (domain, service_jid(domain)):
        records[name] = [A(WAVE_IP)]
        records["_xmpp-server._tcp." + name] = [srv_to(WAVE_IP, wavebox_port)]
    if peer.s2s_port is not None:
        records[peer.domain] = [A(peer.ip)]
        records["_xmpp-server._tcp." + peer.domain] = [SRV(0, 0, peer.s2s_port, peer.domain)]
    return records


@defer.inlineCallbacks
def wavebox_beside_ejabberd(testcase, peer, data_dir, **options):
    """
    A standalone wavebox for ``a.test`` on WAVE_IP (STARTTLS required, a
    certificate from the tests' CA, which it trusts), the tests' DNS server,
    and the ejabberd ``peer`` asking that server; both find each other
    through it.  ``options`` add to or override wavebox's config.  Fires
    with (wavebox, zone server) once ejabberd is up.
    """
    os.makedirs(data_dir, exist_ok=True)
    certificate, key, ca = pki.write_domain_files(EJABBERD_WAVE_DOMAIN, data_dir)
    values = {"domain": [EJABBERD_WAVE_DOMAIN], "data_dir": data_dir,
              "s2s_interface": WAVE_IP, "s2s_port": "0", "tls_required": "yes",
              "console_port": "0", "certificate": certificate, "private_key": key,
              "trusted_ca": ca, "nameserver": "127.0.0.1:1", "dns_timeout": "2"}
    values.update(options)
    wavebox = start_wavebox(testcase, values)
    port = wavebox.s2s.listening_address()[1]
    # ejabberd is told where the DNS server is before its own port is known.
    zone = yield ZoneServer.start(records=ejabberd_zone(peer, port))
    testcase.addCleanup(zone.stop)
    wavebox.resolver.nameserver = zone.nameserver
    peer.nameserver = zone.nameserver
    yield peer.start()
    zone.serve(ejabberd_zone(peer, port))
    return wavebox, zone
