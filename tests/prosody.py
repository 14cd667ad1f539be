"""
A real Prosody as the peer of wavebox's interop tests (issue 6).

:class:`ProsodyPeer` runs Debian's ``prosody`` (0.12) from a scratch
directory: its own config, a self-signed certificate for its domain and every
subdomain, its data, its log.  It listens only on one loopback address, on
ports chosen by binding port 0 first (several test runs share this machine),
for S2S and for XEP-0114 components.  It finds the servers under test through
``tests/prosody/mod_wavebox_test.lua`` (``peers`` below): no DNS query ever
leaves Prosody.

Prosody runs in its own process group; :meth:`ProsodyPeer.stop` signals the
whole group and waits until the process has been reaped, so that a test that
started Prosody ends with no Prosody left behind.

If ``prosody`` or ``prosodyctl`` is missing, :meth:`ProsodyPeer.start` fails
with :class:`ProsodyUnavailable`, whose message says what to install: the
interop tests must fail on such a machine, never pass by skipping.

Prosody facts this relies on (see the project's research notes):

- as root, Prosody refuses to run (and hangs) unless ``run_as_root = true``;
- ``prosody -F`` stays in the foreground, so the spawned pid is Prosody's;
- ``mod_admin_shell`` + ``prosodyctl --config FILE shell CMD`` drive it;
- ``s2s_secure_auth = false`` lets self-signed peers authenticate with
  dialback after STARTTLS (``s2s_require_encryption = true``);
- with ``secure_auth=True`` Prosody gets a certificate from the tests' CA
  (``tests/pki.py``), trusts that CA (``cafile`` in its ``ssl``) and says
  ``s2s_secure_auth = true``: a peer's certificate must be valid.  With
  ``dialback=False`` too, ``mod_dialback`` is not loaded, so SASL EXTERNAL
  (Prosody's ``mod_saslauth``, loaded then, both directions) is the only
  way in.
"""

import datetime
import os
import shutil
import signal
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from twisted.internet import defer, task
from twisted.logger import Logger

from tests.processes import (ChildProcess, accepts_connections, free_port, run_command,
                             signal_group, spawn_in_own_group)
from wavebox import certgen

log = Logger()

PLUGIN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "prosody")

# Logged by tests/prosody/mod_wavebox_test.lua when Prosody's start-up is over.
STARTED_MARKER = "wavebox_test: all hosts and ports are set up"

class ProsodyUnavailable(Exception):
    """Prosody is not installed or did not start; the message says which."""


class _PortTaken(Exception):
    """Prosody could not bind one of its ports (another process took it)."""


def write_self_signed(domain, certificate_path, key_path, days=7):
    """
    A self-signed certificate for ``domain`` and ``*.domain`` (so that it also
    covers components such as ``wave.domain``), made with our own code.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = certgen.issue(domain, key, [
        (x509.SubjectAlternativeName([x509.DNSName(domain), x509.DNSName("*." + domain)]),
         False),
        (x509.BasicConstraints(ca=True, path_length=None), True),
    ], days=days, backdate=datetime.timedelta(days=1))
    with open(key_path, "wb") as f:
        f.write(certgen.key_pem(key))
    with open(certificate_path, "wb") as f:
        f.write(certgen.cert_pem(certificate))


def _lua_string(value):
    return '"%s"' % (str(value).replace("\\", "\\\\").replace('"', '\\"'),)


def _program(name):
    path = shutil.which(name)
    if path is None:
        raise ProsodyUnavailable(
            "%r is not installed (not on PATH): the Prosody interop tests need a real "
            "Prosody; install it with 'apt-get install -y prosody' (.ci/run does this "
            "when run as root)" % (name,))
    return path


class ProsodyPeer:
    """
    One Prosody server for one test.

    :param directory: a scratch directory (created) for config, certs, data, log.
    :param domain: Prosody's virtual host.
    :param ip: the loopback address Prosody listens on.
    :param s2s_port, component_port: default to free ports on ``ip``.
    :param component_jid: the XEP-0114 component Prosody accepts (default
        ``wave.DOMAIN``; ``""`` for none), with ``component_secret``.
    :param peers: ``{domain: (address, port)}``: where Prosody connects for
        S2S with these domains (the servers under test).
    """

    dialback_secret = "prosody-peer-dialback-secret"

    def __init__(self, directory, domain="prosody.test", ip="127.0.0.5", s2s_port=None,
                 component_port=None, component_jid=None, component_secret="secret",
                 peers=None, require_encryption=True, secure_auth=False, dialback=True,
                 reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.directory = os.path.abspath(directory)
        self.domain = domain
        self.ip = ip
        # Ports we picked may be taken by another test run before Prosody
        # binds them; start() then picks new ones (never the caller's).
        self._pick_ports = (s2s_port is None, component_port is None)
        self.s2s_port = s2s_port or free_port(ip)
        self.component_port = component_port or free_port(ip)
        self.component_jid = "wave." + domain if component_jid is None else component_jid
        self.component_secret = component_secret
        self.peers = dict(peers or {})
        self.require_encryption = require_encryption
        self.secure_auth = secure_auth
        self.dialback = dialback
        self._process = None
        self.pid = None
        self._socket_directory = None
        self._log_offset = 0

    # --- paths -------------------------------------------------------------------

    @property
    def config_path(self):
        return os.path.join(self.directory, "prosody.cfg.lua")

    @property
    def log_path(self):
        return os.path.join(self.directory, "prosody.log")

    @property
    def certificate_path(self):
        """Prosody's self-signed certificate: give it to wavebox as trusted CA."""
        return os.path.join(self.directory, "certs", self.domain + ".crt")

    @property
    def ca_path(self):
        """With ``secure_auth``: the tests' CA, which Prosody trusts for peers."""
        return os.path.join(self.directory, "certs", "ca.pem")

    @property
    def key_path(self):
        return os.path.join(self.directory, "certs", self.domain + ".key")

    @property
    def data_path(self):
        return os.path.join(self.directory, "data")

    @property
    def admin_socket_path(self):
        # A Unix socket path must fit in 108 bytes; trial's scratch paths
        # do not, so the socket gets a short directory of its own.
        if self._socket_directory is None:
            self._socket_directory = tempfile.mkdtemp(prefix="prosody-", dir="/tmp")
        return os.path.join(self._socket_directory, "admin.sock")

    def log_text(self):
        """Prosody's log so far (debug level), for assertions and failure messages."""
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    @property
    def running(self):
        return self._process is not None and self._process.running

    # --- files -------------------------------------------------------------------

    def config_text(self):
        d = self.directory
        routes = " ".join("[%s] = { %s, %d };" % (_lua_string(domain), _lua_string(address), port)
                          for domain, (address, port) in sorted(self.peers.items()))
        lines = [
            "-- Written by wavebox's tests/prosody.py for one test; not a deployment config.",
            "run_as_root = true  -- CI runs as root; without it Prosody refuses to start, and hangs",
            "pidfile = %s" % _lua_string(os.path.join(d, "prosody.pid")),
            "data_path = %s" % _lua_string(self.data_path),
            "admin_socket = %s" % _lua_string(self.admin_socket_path),
            "plugin_paths = { %s }" % _lua_string(PLUGIN_DIR),
            'log = { { levels = { min = "debug" }, to = "file", filename = %s } }'
            % _lua_string(self.log_path),
            "",
            "-- Only this loopback address, only S2S and components.",
            "interfaces = { %s }" % _lua_string(self.ip),
            "s2s_interfaces = { %s }" % _lua_string(self.ip),
            "s2s_ports = { %d }" % self.s2s_port,
            "component_interfaces = { %s }" % _lua_string(self.ip),
            "component_ports = { %d }" % self.component_port,
            "c2s_ports = { }",
            "c2s_direct_tls_ports = { }",
            "s2s_direct_tls_ports = { }",
            "http_ports = { }",
            "https_ports = { }",
            "use_ipv6 = false",
            "",
            "modules_enabled = {",
            '\t"tls"; %s"disco"; "ping"; "version";' % ('"dialback"; ' if self.dialback else ""),
            # SASL EXTERNAL for S2S (XEP-0178) lives in mod_saslauth.
            '\t"saslauth";' if self.secure_auth else "",
            '\t"admin_shell";   -- prosodyctl --config FILE shell "..."',
            '\t"wavebox_test";  -- tests/prosody/mod_wavebox_test.lua: routes, disco command',
            "}",
            'modules_disabled = { "c2s"; "offline"%s }' % (
                "" if self.dialback else '; "dialback"'),
            "",
        ]
        if self.secure_auth:
            lines += [
                "-- Peers' certificates must chain to the tests' CA and name them.",
                "s2s_secure_auth = true",
            ]
        else:
            lines += [
                "-- Self-signed peers: STARTTLS, then dialback proves the domain.",
                "s2s_secure_auth = false",
            ]
        lines += [
            "s2s_require_encryption = %s" % ("true" if self.require_encryption else "false"),
            "dialback_secret = %s" % _lua_string(self.dialback_secret),
            "",
            "-- Servers under test, by address; no DNS query leaves this machine.",
            "wavebox_routes = { %s }" % routes,
            'unbound = { resolvconf = false; hoststxt = false; forward = "127.0.0.1" }',
            "",
            "certificates = %s" % _lua_string(os.path.join(d, "certs")),
        ] + (["ssl = { cafile = %s }" % (_lua_string(self.ca_path),)] if self.secure_auth else [
        ]) + [
            "",
            "VirtualHost %s" % _lua_string(self.domain),
            "\tssl = { certificate = %s; key = %s%s }" % (
                _lua_string(self.certificate_path), _lua_string(self.key_path),
                "; cafile = %s" % (_lua_string(self.ca_path),) if self.secure_auth else ""),
        ]
        if self.component_jid:
            lines += [
                "",
                "Component %s" % _lua_string(self.component_jid),
                "\tcomponent_secret = %s" % _lua_string(self.component_secret),
            ]
        return "\n".join(lines) + "\n"

    def write_files(self):
        for sub in ("certs", "data"):
            os.makedirs(os.path.join(self.directory, sub), exist_ok=True)
        if self.secure_auth:
            self._write_ca_issued()
        elif not os.path.exists(self.certificate_path):
            write_self_signed(self.domain, self.certificate_path, self.key_path)
        with open(self.config_path, "w", encoding="utf-8") as f:
            f.write(self.config_text())

    def _write_ca_issued(self):
        from tests import pki
        key, certificate = pki.domain_certificate(self.domain)
        ca_certificate = pki.ca()[1]
        for path, data in ((self.certificate_path, certgen.cert_pem(certificate, ca_certificate)),
                           (self.key_path, certgen.key_pem(key)),
                           (self.ca_path, certgen.cert_pem(ca_certificate))):
            with open(path, "wb") as f:
                f.write(data)

    # --- life cycle --------------------------------------------------------------

    @defer.inlineCallbacks
    def start(self, timeout=20.0, attempts=3):
        """
        Write the files, start Prosody, and fire (with self) once its S2S and
        component ports accept connections and its admin socket exists.
        """
        for attempt in range(attempts):
            try:
                yield self._start_once(timeout)
                return self
            except _PortTaken:
                yield self.stop()
                if self._pick_ports[0]:
                    self.s2s_port = free_port(self.ip)
                if self._pick_ports[1]:
                    self.component_port = free_port(self.ip)
        raise ProsodyUnavailable("prosody could not bind its ports on %s in %d attempts; see %s"
                                 % (self.ip, attempts, self.log_path))

    def _start_once(self, timeout):
        try:
            prosody = _program("prosody")
            _program("prosodyctl")
        except ProsodyUnavailable as e:
            return defer.fail(e)
        if self.running:
            return defer.fail(RuntimeError("this Prosody is already running"))
        self.write_files()
        self._log_offset = len(self.log_text())
        self._process = ChildProcess()
        transport = spawn_in_own_group(self.reactor, self._process,
                                       [prosody, "--config", self.config_path, "-F"],
                                       self.directory)
        self.pid = transport.pid
        return self._wait_until_ready(timeout)

    @defer.inlineCallbacks
    def _wait_until_ready(self, timeout):
        waited = 0.0
        step = 0.05
        process = self._process
        while True:
            if not process.running:
                raise ProsodyUnavailable(
                    "prosody exited during start-up (%s)\n--- output ---\n%s\n--- %s ---\n%s"
                    % (process.status, process.text(), self.log_path, self.log_text()[-4000:]))
            if self._port_taken():
                raise _PortTaken()
            missing = self._not_ready()
            if not missing and not self._port_taken():
                return self
            if waited >= timeout:
                yield self.stop()
                raise ProsodyUnavailable(
                    "prosody did not get ready in %.0f s (%s)\n--- output ---\n%s\n--- %s ---\n%s"
                    % (timeout, missing, process.text(), self.log_path, self.log_text()[-4000:]))
            yield task.deferLater(self.reactor, step, lambda: None)
            waited += step

    def _port_taken(self):
        return "Failed to open server port" in self.log_text()[self._log_offset:]

    def _not_ready(self):
        if STARTED_MARKER not in self.log_text()[self._log_offset:]:
            return "Prosody has not logged %r" % (STARTED_MARKER,)
        if not accepts_connections(self.ip, self.s2s_port):
            return "no S2S listener on %s:%d" % (self.ip, self.s2s_port)
        if self.component_jid and not accepts_connections(self.ip, self.component_port):
            return "no component listener on %s:%d" % (self.ip, self.component_port)
        if not os.path.exists(self.admin_socket_path):
            return "no admin socket %s" % (self.admin_socket_path,)
        return None

    @defer.inlineCallbacks
    def stop(self, timeout=5.0):
        """
        SIGTERM to Prosody's process group; SIGKILL if it has not ended within
        ``timeout`` (Prosody 0.12 has been seen to log its exit and hang).
        Fires once the process has been reaped.
        """
        process = self._process
        if process is None:
            return
        if process.running:
            self._signal_group(signal.SIGTERM)
            ended = process.ended()
            timer = self.reactor.callLater(timeout, ended.cancel)
            try:
                yield ended
            except defer.CancelledError:
                log.warn("prosody {pid} ignored SIGTERM for {t} s; killing it",
                         pid=self.pid, t=timeout)
                self._signal_group(signal.SIGKILL)
                yield process.ended()
            else:
                timer.cancel()
        # Anything else left in the group (Prosody starts no helpers, but be sure).
        self._signal_group(signal.SIGKILL)
        self._process = None
        if self._socket_directory is not None:
            shutil.rmtree(self._socket_directory, ignore_errors=True)
            self._socket_directory = None

    def _signal_group(self, signum):
        signal_group(self.pid, signum)

    @defer.inlineCallbacks
    def restart(self, down_for=0.0):
        """Stop, stay down for ``down_for`` seconds, start again on the same ports."""
        yield self.stop()
        if down_for:
            yield task.deferLater(self.reactor, down_for, lambda: None)
        yield self.start()
        return self

    # --- driving it --------------------------------------------------------------

    @defer.inlineCallbacks
    def shell(self, command, timeout=30.0):
        """
        Run one admin shell command and return what prosodyctl printed, e.g.
        ``shell("xmpp:ping('prosody.test', 'wave.test')")`` →
        ``"Result: pong from wave.test in 0.2s"``.
        """
        prosodyctl = _program("prosodyctl")
        process = yield run_command([prosodyctl, "--config", self.config_path, "shell", command],
                                    self.directory, timeout=timeout, reactor=self.reactor)
        return process.text()

    def ping(self, to, timeout=20):
        """
        Prosody pings a remote server ``to`` over S2S (XEP-0199) with the admin
        shell's own command; the shell's answer ("Result: pong from ...").
        """
        return self.shell("xmpp:ping(%s, %s, %d)" % (_lua_string(self.domain), _lua_string(to),
                                                     timeout), timeout=timeout + 10)

    def ping_local(self, to, timeout=20):
        """
        Prosody pings ``to`` even if it is one of its own hosts, such as a
        connected component (xmpp:ping refuses those); "Result: pong from JID".
        """
        return self.shell(">wavebox_test.ping(%s, %s, %d)" % (
            _lua_string(self.domain), _lua_string(to), timeout), timeout=timeout + 10)

    def disco(self, to, what="info", timeout=20):
        """Prosody asks ``to`` for disco#info or #items; one fact a line."""
        return self.shell(">wavebox_test.disco(%s, %s, %s, %d)" % (
            _lua_string(self.domain), _lua_string(to), _lua_string(what), timeout),
            timeout=timeout + 10)
