"""
A real ejabberd as the peer of wavebox's interop tests (issue 15, item 4).

:class:`EjabberdPeer` runs Debian's ``ejabberd`` (23.01) through its own
``ejabberdctl``, from a scratch directory under ``/tmp`` of its own: its
``ejabberd.yml``, ``ejabberdctl.cfg``, ``vm.args`` (node name and cookie),
``inetrc`` (Erlang's resolver), certificate, Mnesia spool and logs.  No
system service, no file of ``/etc/ejabberd`` is used.  It listens on one
loopback address (127.0.0.36) only: S2S, c2s (for the test's own user, who
makes ejabberd send stanzas over S2S), and the Erlang distribution port,
which ``ejabberdctl`` reaches directly (``ERL_DIST_PORT``), so no ``epmd``
runs at all.

ejabberd finds the servers under test through the tests' DNS server
(``tests/dnsserver.py``): the ``inetrc`` names it as Erlang's only name
server.  Its S2S certificate comes from the tests' one CA (``tests/pki.py``),
which it also trusts for peers (``s2s_cafile``): STARTTLS is required, and
with ``mod_s2s_dialback`` the peer may authenticate with dialback.

ejabberd and Erlang facts this relies on (checked on Debian 12; see
docs/xmpp.rst, "ejabberd as a test peer"):

- as root, ``ejabberdctl`` runs the node as the ``ejabberd`` user through
  ``su``, which puts it in a session of its own: the process group of the
  ``ejabberdctl`` we spawn does not hold the node.  The node's processes
  (``beam.smp`` and the port programs of ``erl_child_setup``, each again in
  a session of its own) are recorded by pid and ended by pid;
- ``ejabberdctl foreground-quiet`` keeps the node attached to the command we
  spawn, so its end is seen, and prints only critical messages;
- Erlang's resolver reads ``$CONFIG_DIR/inetrc``; ``{resolv_conf, ""}``
  there keeps ``/etc/resolv.conf`` out of it.  Twisted's DNS server answers
  with RD clear, and Erlang's resolver drops answers whose RD differs from
  its query unless recursion is off: ``inet_db:res_option(recurse, false)``
  in ``vm.args`` (inetrc has no such option);
- ejabberd looks SRV targets up with ``getaddrinfo``, not its DNS resolver,
  so the records that lead ejabberd somewhere name an IP literal
  (:func:`srv_to`).

If ejabberd is missing, :meth:`EjabberdPeer.start` fails with
:class:`EjabberdUnavailable`, whose message says what to install: the
interop tests must fail on such a machine, never pass by skipping.
"""

import json
import os
import pwd
import secrets
import shutil
import signal
import tempfile

from twisted.internet import defer, ssl, task
from twisted.logger import Logger
from twisted.words.protocols.jabber import client, jid as xmpp_jid, xmlstream

from tests import pki
from tests.dnsserver import SRV
from tests.processes import (ChildProcess, accepts_connections, free_port, poll_until,
                             process_table, process_tree, run_command, spawn_in_own_group)
from wavebox.xmpp import certs

log = Logger()

#: Where Debian installs it (``/usr/sbin`` is not on every PATH).
EJABBERDCTL = "/usr/sbin/ejabberdctl"
#: The user ``ejabberdctl`` runs the node as (its INSTALLUSER).
INSTALL_USER = "ejabberd"
#: Logged once the node has started (the listeners follow at once).
STARTED_MARKER = "is started in the node"

NS_PING = "urn:xmpp:ping"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"


class EjabberdUnavailable(Exception):
    """ejabberd is not installed or did not start; the message says which."""


class _PortTaken(Exception):
    """ejabberd could not bind one of its ports (another process took it)."""


def srv_to(address, port):
    """
    The SRV record that leads ejabberd to ``address``:``port``: its target
    is the IP literal, since ejabberd resolves targets with getaddrinfo.
    """
    return SRV(0, 0, port, address)


def _yaml(value):
    # JSON strings are YAML double-quoted scalars: paths and names need no
    # quoting rules of their own.
    return json.dumps(value)


class EjabberdPeer:
    """
    One ejabberd server for one test.

    :param directory: the test's scratch directory (created); ejabberd's own
        files live under ``/tmp`` (the ``ejabberd`` user must reach them) and
        its log is copied here when it stops.
    :param domain: ejabberd's virtual host.
    :param ip: the loopback address ejabberd listens on.
    :param nameserver: ``(address, port)`` of the DNS server Erlang's resolver
        asks (set it before :meth:`start`).
    :param dialback: load ``mod_s2s_dialback``; without it ejabberd
        authenticates peers by certificate (SASL EXTERNAL) only.
    :param extra_config: YAML text appended to ``ejabberd.yml``.
    """

    def __init__(self, directory, domain="ejabberd.test", ip="127.0.0.36", nameserver=None,
                 dialback=True, loglevel="debug", extra_config="", ejabberdctl=EJABBERDCTL,
                 reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.directory = os.path.abspath(directory)
        self.domain = domain
        self.ip = ip
        self.nameserver = nameserver
        self.dialback = dialback
        self.loglevel = loglevel
        self.extra_config = extra_config
        self.ejabberdctl = ejabberdctl
        self.node = "wavebox-test-%s@%s" % (secrets.token_hex(4), ip)
        self.cookie = secrets.token_hex(16)
        self.s2s_port = self.c2s_port = self.dist_port = None
        self.run_directory = None       # under /tmp, while it runs
        self.beam_pid = None
        self.pids = set()               # (pid, start time) of every node process seen
        self._process = None
        self._epmd_before = set()
        self._users = []

    # --- paths -------------------------------------------------------------------

    def _path(self, *names):
        return os.path.join(self.run_directory, *names)

    @property
    def config_path(self):
        return self._path("ejabberd.yml")

    @property
    def log_path(self):
        return self._path("log", "ejabberd.log")

    @property
    def ca_path(self):
        """The tests' CA: ejabberd's ``s2s_cafile``, and wavebox's ``trusted_ca``."""
        return self._path("ca.pem")

    def log_text(self):
        """ejabberd's log so far, for assertions and failure messages."""
        for path in ([self.log_path] if self.run_directory else []) + [
                os.path.join(self.directory, "ejabberd.log")]:
            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    return f.read()
            except OSError:
                continue
        return ""

    def log_lines(self, *texts):
        """The log lines (first lines of entries) containing every one of ``texts``."""
        return [line for line in self.log_text().splitlines()
                if all(text in line for text in texts)]

    def log_summary(self, lines=40):
        """The last info-or-worse log lines, without the XML traffic: for failure messages."""
        kept = [line[:300] for line in self.log_text().splitlines()
                if any(level in line for level in ("[info]", "[warning]", "[error]"))]
        return "--- ejabberd log (%s), last %d info lines ---\n%s" % (
            self.log_path if self.run_directory else self.directory, lines,
            "\n".join(kept[-lines:]))

    def wait_for_log(self, text, timeout=20.0):
        """
        Fire with the first log line containing ``text``.  ejabberd's logger
        writes its file with a delay (about 2 s), so a line is waited for,
        never looked for once.
        """
        d = poll_until(lambda: self.log_lines(text), timeout=timeout, step=0.1,
                       what="ejabberd to log %r" % (text,), reactor=self.reactor,
                       diagnostics=self.log_summary)
        return d.addCallback(lambda _: self.log_lines(text)[0])

    @property
    def running(self):
        return self._process is not None and self._process.running

    # --- files -------------------------------------------------------------------

    def config_text(self):
        modules = ["  mod_disco: {}", "  mod_ping: {}"]
        if self.dialback:
            modules.append("  mod_s2s_dialback: {}")
        lines = [
            "# Written by wavebox's tests/ejabberd.py for one test; not a deployment config.",
            "hosts: [%s]" % _yaml(self.domain),
            "loglevel: %s" % self.loglevel,
            "log_rotate_count: 0",
            "",
            "# Our certificate, from the tests' CA; the same CA checks S2S peers.",
            "# ca_file too: ejabberd checks its own certfiles against ca_file (the",
            "# system store by default) and warns 'signed by unknown CA'.",
            "certfiles: [%s]" % _yaml(self._path("ejabberd.pem")),
            "ca_file: %s" % _yaml(self.ca_path),
            "s2s_cafile: %s" % _yaml(self.ca_path),
            "s2s_use_starttls: required",
            "# SRV targets are IP literals (getaddrinfo); IPv4 loopback only.",
            "outgoing_s2s_families: [ipv4]",
            "",
            "# Only this loopback address: S2S, and c2s for the test's own user.",
            "listen:",
            "  - port: %d" % self.s2s_port,
            "    ip: %s" % _yaml(self.ip),
            "    module: ejabberd_s2s_in",
            "  - port: %d" % self.c2s_port,
            "    ip: %s" % _yaml(self.ip),
            "    module: ejabberd_c2s",
            "    starttls_required: true",
            "",
            "# The test's user logs in with PLAIN over TLS (what twisted.words speaks).",
            "auth_method: [internal]",
            "disable_sasl_mechanisms: [digest-md5, x-oauth2]",
            "acl:",
            "  local:",
            '    user_regexp: ""',
            "access_rules:",
            "  c2s:",
            "    allow: all",
            "  local:",
            "    allow: local",
            "",
            "modules:",
        ] + modules
        text = "\n".join(lines) + "\n"
        if self.extra_config:
            text += "\n# Added by the test.\n" + self.extra_config.rstrip("\n") + "\n"
        return text

    def ctl_config_text(self):
        """``ejabberdctl.cfg``: sourced by ejabberdctl for the node and its ctl commands."""
        return "\n".join([
            "# Written by wavebox's tests/ejabberd.py for one test.",
            "ERLANG_NODE=%s" % self.node,
            "# The distribution port, reached directly: no epmd is started or asked.",
            "ERL_DIST_PORT=%d" % self.dist_port,
            "EJABBERD_PID_PATH=%s" % self._path("ejabberd.pid"),
            "ERL_OPTIONS='-env ERL_CRASH_DUMP_BYTES 0'",
            "EJABBERD_BYPASS_WARNINGS=true",
        ]) + "\n"

    def vm_args_text(self):
        a, b, c, d = self.ip.split(".")
        return "\n".join([
            "-setcookie %s" % self.cookie,
            "-kernel inet_dist_use_interface {%s,%s,%s,%s}" % (a, b, c, d),
            # Twisted's DNS server answers with RD clear (see the docstring).
            "-eval inet_db:res_option(recurse,false)",
        ]) + "\n"

    def inetrc_text(self):
        host, port = self.nameserver
        return "\n".join([
            '{resolv_conf, ""}.',
            '{hosts_file, ""}.',
            "{nameserver, {%s}, %d}." % (",".join(host.split(".")), port),
        ]) + "\n"

    def _write_files(self, user):
        key, certificate = pki.domain_certificate(self.domain)
        files = {
            "ejabberd.yml": self.config_text(),
            "ejabberdctl.cfg": self.ctl_config_text(),
            "vm.args": self.vm_args_text(),
            "inetrc": self.inetrc_text(),
            "ejabberd.pem": (certs.cert_pem(certificate) + certs.key_pem(key)).decode("ascii"),
            "ca.pem": certs.cert_pem(pki.ca()[1]).decode("ascii"),
        }
        for sub in ("spool", "log"):
            os.makedirs(self._path(sub), exist_ok=True)
        for name, text in files.items():
            with open(self._path(name), "w", encoding="ascii") as f:
                f.write(text)
        for name in ("ejabberd.pem", "vm.args"):        # key and cookie
            os.chmod(self._path(name), 0o600)
        if os.geteuid() == 0:
            for where, subdirs, names in os.walk(self.run_directory):
                for name in [where] + [os.path.join(where, n) for n in subdirs + names]:
                    os.chown(name, user.pw_uid, user.pw_gid)

    # --- life cycle --------------------------------------------------------------

    def _command(self, *args):
        return [self.ejabberdctl, "--config-dir", self.run_directory,
                "--logs", self._path("log"), "--spool", self._path("spool")] + list(args)

    def _check_installed(self):
        if not os.access(self.ejabberdctl, os.X_OK):
            raise EjabberdUnavailable(
                "%s is not installed: the ejabberd interop tests need a real ejabberd; "
                "install it with 'apt-get install -y ejabberd' (.ci/run does this when "
                "run as root)" % (self.ejabberdctl,))
        try:
            user = pwd.getpwnam(INSTALL_USER)
        except KeyError:
            raise EjabberdUnavailable(
                "there is no %r user, which ejabberdctl runs the node as: reinstall "
                "the ejabberd package ('apt-get install --reinstall ejabberd')" % (INSTALL_USER,))
        if os.geteuid() not in (0, user.pw_uid):
            raise EjabberdUnavailable(
                "ejabberdctl runs only as root or as %r; these tests run as uid %d"
                % (INSTALL_USER, os.geteuid()))
        return user

    @defer.inlineCallbacks
    def start(self, timeout=60.0, attempts=3):
        """
        Write the files, start the node, and fire (with self) once it has
        logged its start and its S2S and c2s ports accept connections.
        """
        if self.nameserver is None:
            raise ValueError("EjabberdPeer.start: set nameserver (the tests' DNS server) first")
        if self.running:
            raise RuntimeError("this ejabberd is already running")
        user = self._check_installed()
        os.makedirs(self.directory, exist_ok=True)
        self._epmd_before = self._epmd_pids()
        for attempt in range(attempts):
            try:
                yield self._start_once(user, timeout)
                return self
            except _PortTaken:
                yield self.stop()
        raise EjabberdUnavailable("ejabberd could not bind its ports on %s in %d attempts; "
                                  "see %s" % (self.ip, attempts, self.log_path))

    def _start_once(self, user, timeout):
        self.s2s_port, self.c2s_port, self.dist_port = (free_port(self.ip) for _ in range(3))
        self.run_directory = tempfile.mkdtemp(prefix="wavebox-ejabberd-", dir="/tmp")
        os.chmod(self.run_directory, 0o755)
        self._write_files(user)
        self._process = ChildProcess()
        spawn_in_own_group(self.reactor, self._process, self._command("foreground-quiet"),
                           self.run_directory)
        return self._wait_until_ready(timeout)

    @defer.inlineCallbacks
    def _wait_until_ready(self, timeout, step=0.1):
        waited = 0.0
        process = self._process
        while True:
            log_text = self.log_text()
            if "eaddrinuse" in log_text:
                raise _PortTaken()
            if not process.running:
                raise EjabberdUnavailable(
                    "ejabberd exited during start-up (%s)\n--- output ---\n%s\n--- %s ---\n%s"
                    % (process.status, process.text(), self.log_path, log_text[-4000:]))
            missing = self._not_ready(log_text)
            if not missing:
                break
            if waited >= timeout:
                yield self.stop()
                raise EjabberdUnavailable(
                    "ejabberd did not get ready in %.0f s (%s)\n--- output ---\n%s\n--- log ---\n%s"
                    % (timeout, missing, process.text(), log_text[-4000:]))
            yield task.deferLater(self.reactor, step, lambda: None)
            waited += step
        with open(self._path("ejabberd.pid")) as f:
            self.beam_pid = int(f.read().strip())
        self._record_processes()
        return self

    def _not_ready(self, log_text):
        if STARTED_MARKER not in log_text:
            return "ejabberd has not logged %r" % (STARTED_MARKER,)
        for what, port in (("S2S", self.s2s_port), ("c2s", self.c2s_port)):
            if not accepts_connections(self.ip, port):
                return "no %s listener on %s:%d" % (what, self.ip, port)
        if not os.path.exists(self._path("ejabberd.pid")):
            return "no pid file"
        return None

    def _record_processes(self):
        if self.beam_pid is not None:
            self.pids |= process_tree(self.beam_pid, process_table())

    @staticmethod
    def _epmd_pids():
        return {(proc.pid, proc.started) for proc in process_table().values()
                if proc.program == "epmd"}

    def _ours(self, table):
        """The processes of ``table`` that this peer started: ``{pid: command line}``."""
        if self.beam_pid is not None and self.beam_pid in table:
            self.pids |= process_tree(self.beam_pid, table)
        marks = [self.node] + ([self.run_directory] if self.run_directory else [])
        return {pid: proc.command for pid, proc in table.items()
                if (pid, proc.started) in self.pids
                or any(mark in proc.command for mark in marks)}

    def processes_left(self):
        """
        ``{pid: command line}`` of every process of this peer still running:
        the node and its port programs (by the pids recorded, with their
        start times), anything naming its node or directory (ejabberdctl,
        su, sh, erl), and any epmd of the ejabberd user that was not running
        before it started (the node must start none).
        """
        table = process_table()
        left = self._ours(table)
        user = self._install_uid()
        left.update({pid: proc.command for pid, proc in table.items()
                     if proc.program == "epmd" and proc.uid == user
                     and (pid, proc.started) not in self._epmd_before})
        return left

    @staticmethod
    def _install_uid():
        try:
            return pwd.getpwnam(INSTALL_USER).pw_uid
        except KeyError:
            return None

    @defer.inlineCallbacks
    def stop(self, timeout=30.0):
        """
        ``ejabberdctl stop``; then SIGKILL to whatever of the node is left, by
        the pids recorded (``su`` put it out of our process group), even if
        the gentle stop went wrong.  Fires once nothing of it runs, having
        copied its log to the test's directory and removed its files.
        """
        process = self._process
        try:
            yield self._stop_gently(process, timeout)
        finally:
            if process is not None:
                self._kill_what_is_left()
        if process is None:
            return
        yield process.ended()
        yield poll_until(lambda: not self.processes_left(), timeout=timeout,
                         what="the processes of ejabberd %s to end" % (self.node,),
                         reactor=self.reactor, diagnostics=lambda: repr(self.processes_left()))
        self._process = None
        self._clean_up()

    @defer.inlineCallbacks
    def _stop_gently(self, process, timeout):
        users, self._users = self._users, []
        for user in users:
            try:
                yield user.close()
            except Exception as e:      # stopping the node closes it anyway
                log.warn("{jid}: {error}", jid=user.jid.full(), error=e)
        if process is None:
            return
        self._record_processes()
        if not (process.running and self.beam_pid is not None):
            return
        try:
            done = yield run_command(self._command("stop"), self.run_directory,
                                     timeout=timeout, reactor=self.reactor)
            if done.exit_code != 0:
                log.warn("ejabberdctl stop: {output}", output=done.text().strip())
        except Exception as e:
            log.warn("ejabberdctl stop failed: {error}", error=e)
        ended = process.ended()
        timer = self.reactor.callLater(timeout, ended.cancel)
        try:
            yield ended
        except defer.CancelledError:
            log.warn("ejabberd {node} did not end {t} s after ejabberdctl stop; killing it",
                     node=self.node, t=timeout)
        else:
            timer.cancel()

    def _kill_what_is_left(self):
        # Only what is certainly ours: an epmd is reported, never killed.
        for pid in self._ours(process_table()):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _clean_up(self):
        if self.run_directory is None:
            return
        try:
            shutil.copy(self.log_path, os.path.join(self.directory, "ejabberd.log"))
        except OSError:
            pass
        shutil.rmtree(self.run_directory, ignore_errors=True)
        self.run_directory = None

    # --- driving it --------------------------------------------------------------

    @defer.inlineCallbacks
    def ctl(self, *args, timeout=30.0):
        """Run one ``ejabberdctl`` command on the node; what it printed.  Fails if it fails."""
        done = yield run_command(self._command(*args), self.run_directory, timeout=timeout,
                                 reactor=self.reactor)
        if done.exit_code != 0:
            raise RuntimeError("ejabberdctl %s failed (%s): %s"
                               % (" ".join(args), done.status, done.text().strip()))
        return done.text()

    @defer.inlineCallbacks
    def user(self, name="tester", password="secret", resource="probe"):
        """
        A registered user of ejabberd, logged in on c2s (STARTTLS checked
        against the tests' CA, SASL PLAIN, a bound resource): the
        :class:`C2SClient` that makes ejabberd talk S2S.  Logged out by stop().
        """
        yield self.ctl("register", name, self.domain, password)
        user = C2SClient(self, "%s@%s/%s" % (name, self.domain, resource), password)
        self._users.append(user)
        yield user.connect()
        return user


class C2SClient:
    """One logged-in user of the :class:`EjabberdPeer`, asking over its c2s stream."""

    def __init__(self, peer, full_jid, password):
        self.peer = peer
        self.jid = xmpp_jid.JID(full_jid)
        self.password = password
        self.xmlstream = None
        self._factory = None

    def connect(self, timeout=30.0):
        ca = ssl.Certificate.loadPEM(certs.cert_pem(pki.ca()[1]))
        tls = ssl.optionsForClientTLS(self.peer.domain, trustRoot=ca)
        self._factory = client.XMPPClientFactory(self.jid, self.password,
                                                 configurationForTLS=tls)
        self._factory.maxRetries = 0
        ready = defer.Deferred()

        def authenticated(xs):
            self.xmlstream = xs
            if not ready.called:
                ready.callback(self)

        def failed(failure):
            if not ready.called:
                ready.errback(failure)

        self._factory.addBootstrap(xmlstream.STREAM_AUTHD_EVENT, authenticated)
        self._factory.addBootstrap(xmlstream.INIT_FAILED_EVENT, failed)
        self._factory.clientConnectionFailed = lambda connector, reason: failed(reason)
        self.peer.reactor.connectTCP(self.peer.ip, self.peer.c2s_port, self._factory)
        return ready.addTimeout(timeout, self.peer.reactor)

    def request(self, to, namespace, name="query", timeout=30.0):
        """An ``<iq type='get'>`` with one ``<name xmlns=namespace/>`` to ``to``; the answer."""
        iq = xmlstream.IQ(self.xmlstream, "get")
        iq.addElement((namespace, name))
        return iq.send(to).addTimeout(timeout, self.peer.reactor)

    def ping(self, to, timeout=30.0):
        return self.request(to, NS_PING, "ping", timeout)

    def disco_info(self, to, timeout=30.0):
        return self.request(to, NS_DISCO_INFO, timeout=timeout)

    def disco_items(self, to, timeout=30.0):
        return self.request(to, NS_DISCO_ITEMS, timeout=timeout)

    @defer.inlineCallbacks
    def close(self, timeout=10.0):
        """
        Log out; fires once the connection is closed.  A TLS
        loseConnection() was seen not to finish within 10 s here (the TLS
        shutdown waits on ejabberd), so the connection is aborted once the
        stream's footer is out.
        """
        self._factory.stopTrying()
        xs = self.xmlstream
        if xs is None or xs.transport is None or not xs.transport.connected:
            return
        xs.sendFooter()
        xs.transport.abortConnection()
        yield poll_until(lambda: not xs.transport.connected, timeout=timeout,
                         what="the c2s connection of %s to close" % (self.jid.full(),),
                         reactor=self.peer.reactor)
