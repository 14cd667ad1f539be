"""
Wiring: turn a validated :class:`wavebox.config.Config` into the running
services of ``twistd wavebox``.  The only module that knows every layer.

In start order: the store and the wave server core, the console; the XMPP
server-to-server service (listening on ``s2s_interface:s2s_port`` for every
hosted domain and its wave service JID); the XEP-0199 / FedOne ping
responder; peer discovery over DNS; the start-up ping of each
``--xmpp_server_ping`` domain; and the wave federation service (it starts
after the store is open, and stops before it closes), joined to the XMPP
layer by :mod:`wavebox.federation.xmppglue` as the tests join it.  Each
handler declares its own disco identities and features.

In component mode (``--component``, XEP-0114) an XMPP server does S2S for
us: instead of the S2S service there is one component stream, with the same
API (send, request, add_handler, disco) and the same handlers.
"""

import errno
import gc
import os
import signal
import sys

from twisted.application import service
from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.logger import ILogObserver, Logger

from wavebox import __version__, logsetup, ports, sdnotify
from wavebox.config import ConfigError

log = Logger()

class WaveboxService(service.MultiService):
    """
    The top service.  Under twistd it also sets up the log
    (:mod:`wavebox.logsetup`: twistd's destination, ``--log-format``,
    filtered by ``--log-level``; twistd looks for an ``ILogObserver`` on the
    application *after* the plugin made its service), tells systemd when the
    ports listen (:mod:`wavebox.sdnotify`), and makes SIGTERM a clean stop
    that exits 0.
    """

    def __init__(self, log_level="info", log_format="text", domains=()):
        service.MultiService.__init__(self)
        self.domains = list(domains)
        self.log_level = log_level
        self.log_format = log_format
        self.twistd_options = None
        self.started_at = None

    def setServiceParent(self, parent):
        service.MultiService.setServiceParent(self, parent)
        if self.twistd_options is None:
            return
        get = getattr(parent, "getComponent", None)
        if get is None or get(ILogObserver, None) is not None:
            return
        observer = logsetup.observer(self.twistd_options, self.log_level, self.log_format)
        if observer is not None:
            parent.setComponent(ILogObserver, observer)

    def startService(self):
        # A port that is taken is the commonest start-up mistake.  Under
        # twistd it would be a traceback; say it in one line that names the
        # option, and exit as a bad option does.
        try:
            service.MultiService.startService(self)
        except CannotListenError as e:      # the S2S listener; the console names itself
            error = listen_error(getattr(e, "wavebox_option", "s2s"), e)
        except ConfigError as e:
            error = e
        else:
            self._started()
            return
        if self.twistd_options is None:
            raise error
        log.critical("cannot start: {error}", error=error)
        _tell_twistd_parent(self.twistd_options, error)
        _remove_own_pidfile(self.twistd_options.get("pidfile"))
        raise SystemExit(2)

    def _started(self):
        from twisted.internet import reactor
        self.started_at = reactor.seconds()
        # The reactor installs its signal handlers while it starts, after the
        # services started: ours, and then READY, once it runs.
        reactor.callWhenRunning(self._running)

    def _running(self):
        if self.twistd_options is not None:
            # The reactor's own SIGTERM handler makes twistd end by killing
            # itself with the signal after a clean stop; an init system
            # (and an operator's script) reads that as a failure.
            signal.signal(signal.SIGTERM, _stop_on_sigterm)
            # What start-up built lives as long as the process: out of the
            # collector's way, so that a full collection walks only what came
            # since.  With a thousand hostile streams open, a full collection
            # held the reactor for 130 ms (issue 9, docs/performance.rst).
            gc.collect()
            gc.freeze()
        sdnotify.notify("READY=1", "STATUS=serving %s" % (", ".join(self.domains),),
                        "MAINPID=%d" % (os.getpid(),))

    def stopService(self):
        sdnotify.notify("STOPPING=1")
        return service.MultiService.stopService(self)


def _stop_on_sigterm(number, frame):
    from twisted.internet import reactor
    log.info("Received SIGTERM, shutting down.")
    reactor.callFromThread(reactor.stop)


def listen_error(prefix, e):
    """A :class:`ConfigError` naming the option behind a failed listen."""
    code = getattr(e.socketError, "errno", None)
    if code == errno.EADDRNOTAVAIL:
        option = "--%s-interface" % prefix.replace("-tls", "")     # one address for both
    else:
        option = "--%s-port" % prefix
    reason = getattr(e.socketError, "strerror", None) or str(e.socketError)
    return ConfigError("%s: cannot listen on %s:%s: %s" % (
        option, e.interface or "*", e.port, reason))


def _tell_twistd_parent(options, error):
    """
    Daemonized, twistd's first process waits on a pipe for the daemon's
    "0" (started) or "1 REASON"; a daemon that exits without writing leaves
    it waiting forever.  It prints REASON (at most 100 bytes) and exits 1.
    """
    try:
        pipe = options.get("statusPipe")
    except AttributeError:
        return
    if pipe is None:
        return
    options["statusPipe"] = None
    message = ("1 %s" % (error,)).encode("ascii", "backslashreplace")[:100]
    try:
        os.write(pipe, message)
        os.close(pipe)
    except OSError:
        pass


def _remove_own_pidfile(path):
    """twistd removes its pid file only on its own exits; this is one of ours."""
    try:
        with open(path) as f:
            if int(f.read().strip()) == os.getpid():
                os.unlink(path)
    except (TypeError, OSError, ValueError):
        pass


def version_line(config):
    """The first line wavebox logs: what runs, and which configuration it read."""
    import twisted
    where = ("config %s (%s)" % (config.config, config.config_source)
             if config.config else "no config file")
    return "wavebox %s (Python %s, Twisted %s) for %s; %s" % (
        __version__, sys.version.split()[0], twisted.__version__,
        ", ".join(config.domains), where)


def makeServiceFromOptions(options):
    """Entry point of the twistd plugin: a bad value stops start-up with one line."""
    try:
        config = options.config()
        # Logged before twistd starts its own log; twisted.logger keeps
        # early events and replays them, so this is the first line.
        log.info("{line}", line=version_line(config))
        top = makeService(config)
    except ConfigError as e:
        sys.stderr.write("wavebox: %s\n" % (e,))
        raise SystemExit(2)
    top.twistd_options = getattr(options, "parent", None)
    return top


def makeService(config, reactor=None):
    from wavebox import certpath
    from wavebox.federation.xmppglue import S2STransport, XMPPTransport
    from wavebox.xmpp import server as s2sserver
    from wavebox.xmpp.discovery import WaveServiceDiscovery
    from wavebox.xmpp.ping import PingResponder, ServerPinger
    from wavebox.xmpp.resolver import DnspythonResolver

    if reactor is None:
        from twisted.internet import reactor

    top = WaveboxService(config.log_level, config.log_format, config.domains)
    top.setName("wavebox")
    # First in, last out: the store closes after everything that uses it.
    top.wave_server = _make_wave_services(config, top)

    if config.component:
        top = _component_mode(top, config, reactor)
        component = top.xmpp
        _make_federation(config, top, top.wave_server, component,
                         XMPPTransport(component, component.locate_wave_service),
                         service_jid=lambda domain: component.jid)
        _make_metrics(config, top, reactor)
        _make_admin(config, top, reactor)
        return top

    resolver = DnspythonResolver(config.nameserver, config.dns_timeout)
    try:
        s2s = s2sserver.service_from_config(config, resolver, port=config.s2s_port,
                                          reactor=reactor, tls_port=config.s2s_tls_port)
    except certpath.PathError as e:
        raise ConfigError("--trusted-ca: %s" % (e,))
    except Exception as e:
        # Unreadable certificate or key, mismatched pair: stop with one line.
        raise ConfigError("--certificate: cannot use the TLS certificate and key: %s" % (e,))
    s2s.setServiceParent(top)
    s2s.add_handler(PingResponder())

    discovery = WaveServiceDiscovery(resolver, s2s.find_wave_service, clock=reactor,
                                     service_prefix=config.wave_service_prefix)
    top.discovery = discovery
    transport = S2STransport(s2s, discovery)
    pinger = ServerPinger(s2s, config.service_jid(config.domains[0]), config.xmpp_server_ping,
                          locate=transport.discover, clock=reactor, forget=transport.forget)
    pinger.setName("ping")
    pinger.setServiceParent(top)
    top.s2s = s2s
    top.xmpp = s2s
    top.resolver = resolver
    _AnswerRelay(top.wave_server, s2s).setServiceParent(top)
    _make_federation(config, top, top.wave_server, s2s, transport)
    _make_metrics(config, top, reactor)
    _make_admin(config, top, reactor)
    return top


class _AnswerRelay(service.Service):
    """
    Several processes for one domain on one database: a peer answers our
    iq requests (disco, history, submit) over its own stream to our domain,
    which SRV may have sent to another of our processes.  That process
    hands the answer on through the store (``broadcast("iq", ...)``); the
    one whose request it answers takes it.  The stanza was checked on the
    stream it came in on, and only our processes write to the database.
    """

    #: PostgreSQL's NOTIFY takes at most 8000 bytes.
    MAX_BYTES = 7800

    def __init__(self, wave_services, s2s):
        self.wave_services = wave_services
        self.s2s = s2s
        self.store = None

    def startService(self):
        service.Service.startService(self)
        store = self.wave_services.store
        if getattr(store, "shared", False):
            self.store = store
            store.broadcast_observers.append(self.heard)
            self.s2s.unmatched_answer = self.relay

    def stopService(self):
        if self.store is not None:
            if self.heard in self.store.broadcast_observers:
                self.store.broadcast_observers.remove(self.heard)
            self.s2s.unmatched_answer = None
            self.store = None
        return service.Service.stopService(self)

    def relay(self, iq):
        text = iq.toXml()
        if len(text.encode("utf-8")) > self.MAX_BYTES:
            log.warn("an answer (iq {id}, {n} bytes) for no request of this process is too "
                     "big to hand to the others; its request will time out",
                     id=iq.getAttribute("id"), n=len(text))
            return False
        d = self.store.broadcast("iq", text)
        d.addErrback(lambda f: log.failure("cannot hand an answer to the other processes", f))
        return True

    def heard(self, topic, text):
        if topic != "iq":
            return
        from wavebox.federation.stanzas import element_from_xml
        try:
            iq = element_from_xml(text)
        except Exception:
            log.warn("an answer handed on by another process does not parse")
            return
        self.s2s.answer_request(iq)


def _make_metrics(config, top, reactor):
    """/metrics and /health (issue 13), when a metrics port is configured."""
    if config.metrics_port is None:
        return
    from wavebox.metrics import Metrics, MetricsService
    metrics = Metrics(top, config.domains, clock=reactor)
    metrics.attach(top.wave_server, getattr(top, "s2s", None))
    top.metrics = metrics
    MetricsService(metrics, top, config.metrics_port, config.metrics_interface,
                   reactor=reactor).setServiceParent(top)


def _make_admin(config, top, reactor):
    """The admin socket (``wavebox status`` and friends), last in: it reads everything."""
    from wavebox.admin import AdminService, ServerCommands, socket_path
    path = socket_path(config)
    if path is not None:
        AdminService(path, ServerCommands(top, config, reactor).table(),
                     reactor=reactor).setServiceParent(top)


# --- the wave server core and the console (issue 4) ---------------------------

class WaveServerService(service.Service):
    """
    Owns the store and the wave server core.  Named ``wave-server`` so that
    other wiring (federation) finds ``.wave_server`` with
    ``top.getServiceNamed("wave-server")``.  The store is opened when the
    service starts, not before: twistd may fork to daemonize after
    ``makeService``, and the store's threads must live in the process that
    runs.  Added before the services that use it, it stops after them, and
    the store closes last, once every request already made is finished.
    """

    name = "wave-server"
    lock = None

    def __init__(self, config, wave_server):
        self.config = config
        self.wave_server = wave_server

    @property
    def store(self):
        return self.wave_server.store

    def startService(self):
        from wavebox.store import StoreError, open_store
        from wavebox.store.lock import acquire
        try:
            # The data directory holds more than an SQLite store (the admin
            # socket, the dialback secret, keys): made even when the store
            # is a database elsewhere.
            os.makedirs(self.config.data_dir, mode=0o700, exist_ok=True)
            self.lock = acquire(self.config.store, self.config.data_dir)
            self.wave_server.store = open_store(self.config.store, self.config.data_dir)
        except OSError as e:
            raise ConfigError("--data-dir: cannot lock the store under %s: %s"
                              % (self.config.data_dir, e.strerror or e))
        except StoreError as e:
            # Not a database, a directory we may not write to: the operator's
            # to fix, so one line that names the option.
            raise ConfigError("--store: %s" % (e,))
        if getattr(self.wave_server.store, "shared", False) and not self.config.dialback_secret:
            log.warn("the store {store} may be shared by several processes for one domain: "
                     "give them all the same dialback_secret in their config files, or a "
                     "dialback key one makes fails on another",
                     store=getattr(self.wave_server.store, "where", self.config.store))
        if self.wave_server.signing_pool is not None:
            self.wave_server.signing_pool.start()
        service.Service.startService(self)

    def stopService(self):
        service.Service.stopService(self)
        if self.wave_server.signing_pool is not None:
            self.wave_server.signing_pool.stop()
        store = self.wave_server.store
        d = defer.maybeDeferred(store.close) if store is not None else defer.succeed(None)
        return d.addBoth(self._unlock)

    def _unlock(self, result):
        if self.lock is not None:
            self.lock.release()
            self.lock = None
        return result


class ConsoleService(service.Service):
    """Listens on the console port; logs the address it got (port 0 = any)."""

    name = "console"

    def __init__(self, factory, port, interface):
        self.factory = factory
        self.port = port
        self.interface = interface
        self.listening = None

    def startService(self):
        from twisted.internet import reactor
        service.Service.startService(self)
        try:
            self.listening = ports.listen_tcp(reactor, self.port, self.factory,
                                              interface=self.interface)
        except CannotListenError as e:
            raise listen_error("console", e)
        host = self.listening.getHost()
        log.info("console listening on {host}:{port}", host=host.host, port=host.port)

    @property
    def sessions(self):
        """The console sessions open now (what ``wavebox_sessions`` counts)."""
        return self.factory.sessions

    def stopService(self):
        service.Service.stopService(self)
        if self.listening is not None:
            d, self.listening = self.listening.stopListening(), None
            for session in list(self.factory.sessions):
                session.transport.loseConnection()
            return d


class WebService(service.Service):
    """The web client's listener (issue 14); logs the address it got."""

    name = "web"

    def __init__(self, web, port, interface):
        self.web = web
        self.port = port
        self.interface = interface
        self.listening = None

    @property
    def sessions(self):
        """The browsers logged in now (what ``wavebox_sessions`` counts)."""
        return self.web.sessions

    def startService(self):
        from twisted.internet import reactor
        service.Service.startService(self)
        try:
            self.listening = ports.listen_tcp(reactor, self.port, self.web.site,
                                              interface=self.interface)
        except CannotListenError as e:
            raise listen_error("web", e)
        host = self.listening.getHost()
        log.info("web client listening on http://{host}:{port}/", host=host.host, port=host.port)

    def stopService(self):
        service.Service.stopService(self)
        # Logged-in pages are told, and their sockets closed, before the store closes.
        self.web.sessions.end_all()
        listening, self.listening = self.listening, None
        if listening is not None:
            return listening.stopListening()


def _make_signers(config):
    """One delta signer per hosted domain, from the domain certificate (certs.py)."""
    from wavebox.certs import ensure_certificate
    from wavebox.crypto import Signer
    cert_path, key_path = ensure_certificate(config)
    with open(cert_path, "rb") as f:
        chain = f.read()
    with open(key_path, "rb") as f:
        key = f.read()
    return {domain: Signer(key, chain, domain) for domain in config.domains}


def _make_wave_services(config, top):
    """The store, the wave server core and the console, added to ``top``."""
    from wavebox.console.limits import ConsoleLimits
    from wavebox.console.session import ConsoleFactory
    from wavebox.server.login import LoginGuard
    from wavebox.server.waveserver import SigningPool, WaveServer

    try:
        signers = _make_signers(config)
    except Exception as e:
        if config.certificate:
            raise ConfigError("--certificate: cannot load the signing certificate: %s" % (e,))
        # No certificate given: the one we make lives in the data dir.
        raise ConfigError("--data-dir: cannot make or read the self-signed certificate "
                          "under %s: %s" % (config.data_dir, e))
    # Signing releases the GIL: a thread per core signs beside the reactor.
    wave_server = WaveServer(None, config.domains, signers=signers,
                             snapshot_interval=config.snapshot_interval,
                             signing_pool=SigningPool(max(2, min(4, os.cpu_count() or 1))),
                             max_loaded=config.max_loaded_wavelets,
                             idle_time=config.wavelet_idle_time)
    WaveServerService(config, wave_server).setServiceParent(top)
    # One login guard for every front end, so that they share its limits.
    top.login_guard = LoginGuard.from_config(wave_server, config)
    console = ConsoleFactory(wave_server, config.domains, login_guard=top.login_guard,
                             limits=ConsoleLimits.from_config(config))
    ConsoleService(console, config.console_port, config.console_interface).setServiceParent(top)
    if config.web_port:
        from wavebox.web.site import WebClient
        top.web = WebClient.from_config(wave_server, top.login_guard, config)
        WebService(top.web, config.web_port, config.web_interface).setServiceParent(top)
    return wave_server


def makeComponentService(config, reactor=None):
    """
    Component mode (XEP-0114): one stream to the XMPP server's component port,
    carrying the same handlers as an S2S stream.
    """
    from wavebox.xmpp.component import ExternalComponent
    from wavebox.xmpp.ping import PingResponder

    host, port = config.component
    component = ExternalComponent(host, port, config.component_jid, config.component_secret,
                                  reactor=reactor)
    component.add_handler(PingResponder())
    return component


def _component_mode(top, config, reactor):
    """The XMPP server does S2S and finds peers: no listener, no DNS of our own."""
    from wavebox.xmpp.ping import ServerPinger

    component = makeComponentService(config, reactor)
    component.setServiceParent(top)
    pinger = ServerPinger(component, component.jid, config.xmpp_server_ping,
                          locate=component.locate_wave_service, clock=reactor,
                          prefix=config.wave_service_prefix)
    pinger.setName("ping")
    pinger.setServiceParent(top)
    top.xmpp = component
    top.s2s = None
    return top


# --- the wave federation protocol (issue 5) ------------------------------------

def _trusted_roots(config):
    """The CA certificates that delta signers' chains must lead to (TLS trusts the same)."""
    from wavebox import certpath
    try:
        return certpath.trust_anchors(config.trusted_ca)
    except (certpath.PathError, OSError) as e:
        raise ConfigError("--trusted-ca: cannot use %s: %s" % (
            config.trusted_ca, getattr(e, "strerror", None) or e))


def _make_federation(config, top, wave_server, xmpp, transport, service_jid=None):
    """
    The wave federation service (host, remote, outbox) on the XMPP layer
    (``xmpp``: the S2S service or the XEP-0114 component; ``transport``: the
    xmppglue transport over it).  Added after the wave server core, it
    starts after the store is open and stops before it closes.
    """
    from wavebox.federation.service import FederationService
    from wavebox.federation.signers import SignerInfos
    from wavebox.federation.xmppglue import FederationHandler
    from wavebox.retry import RetryPolicy

    signers = SignerInfos(None, own=[s.signer_info for s in wave_server.signers.values()],
                          trusted_roots=_trusted_roots(config),
                          verify_signatures=config.verify_signatures)
    federation = FederationService(
        wave_server, transport, service_jid or config.service_jid,
        signers, outbox_options={"retry": RetryPolicy(
                                     min(1.0, config.federation_retry_max),
                                     config.federation_retry_max),
                                 "give_up": config.federation_give_up})
    xmpp.add_handler(FederationHandler(federation))
    federation.setServiceParent(top)
    top.federation = federation
    return federation
