"""
Wiring: turn a validated :class:`wavebox.config.Config` into the running
services of ``twistd wavebox``.  The only module that knows every layer.

In start order: the store and the wave server core, the console; the XMPP
server-to-server service (listening on ``s2s_interface:s2s_port`` for every
hosted domain and its wave service JID), told what to advertise in disco;
the XEP-0199 / FedOne ping responder; peer discovery over DNS; the start-up
ping of each ``--xmpp_server_ping`` domain; and the wave federation service
(it starts after the store is open, and stops before it closes).

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

from wavebox import __version__, logsetup, sdnotify
from wavebox.config import ConfigError

log = Logger()

WAVE_IDENTITY_NAME = "wavebox"


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
            error = listen_error("s2s", e)
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
    option = "--%s-interface" % prefix if code == errno.EADDRNOTAVAIL else "--%s-port" % prefix
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


def advertise(s2s, config):
    """Tell the XMPP layer what each hosted domain and its wave service are (XEP-0030)."""
    from wavebox.xmpp.disco import NS_WAVE_SERVER, WAVE_IDENTITY
    from wavebox.xmpp.ping import NS_PING, NS_RECEIPTS
    disco = s2s.disco
    for domain in config.domains:
        jid = config.service_jid(domain)
        disco.add_identity(domain, "server", "im", WAVE_IDENTITY_NAME)
        disco.add_feature(domain, NS_PING)
        disco.add_item(domain, jid)
        disco.add_identity(jid, WAVE_IDENTITY[0], WAVE_IDENTITY[1], WAVE_IDENTITY_NAME)
        for feature in (NS_PING, NS_RECEIPTS, NS_WAVE_SERVER):
            disco.add_feature(jid, feature)


def makeService(config, reactor=None):
    from wavebox import certpath
    from wavebox.xmpp import streams
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
                         component.locate_wave_service, service_jid=lambda domain: component.jid)
        _make_metrics(config, top, reactor)
        _make_admin(config, top, reactor)
        return top

    resolver = DnspythonResolver(config.nameserver, config.dns_timeout)
    try:
        s2s = streams.service_from_config(config, resolver, port=config.s2s_port,
                                          reactor=reactor)
    except certpath.PathError as e:
        raise ConfigError("--trusted-ca: %s" % (e,))
    except Exception as e:
        # Unreadable certificate or key, mismatched pair: stop with one line.
        raise ConfigError("--certificate: cannot use the TLS certificate and key: %s" % (e,))
    s2s.setServiceParent(top)
    advertise(s2s, config)
    s2s.add_handler(PingResponder())

    discovery = WaveServiceDiscovery(resolver, s2s.find_wave_service, clock=reactor,
                                     service_prefix=config.wave_service_prefix)
    top.discovery = discovery

    def locate(domain):
        def found(result):
            s2s.set_endpoints(result.jid, result.endpoints)
            return result.jid
        return discovery.discover(domain).addCallback(found)

    pinger = ServerPinger(s2s, config.service_jid(config.domains[0]), config.xmpp_server_ping,
                          locate=locate, clock=reactor, forget=discovery.forget)
    pinger.setName("ping")
    pinger.setServiceParent(top)
    top.s2s = s2s
    top.xmpp = s2s
    top.resolver = resolver
    _make_federation(config, top, top.wave_server, s2s, locate, forget=discovery.forget)
    _make_metrics(config, top, reactor)
    _make_admin(config, top, reactor)
    return top


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
            self.lock = acquire(self.config.store, self.config.data_dir)
            self.wave_server.store = open_store(self.config.store, self.config.data_dir)
        except OSError as e:
            raise ConfigError("--data-dir: cannot lock the store under %s: %s"
                              % (self.config.data_dir, e.strerror or e))
        except StoreError as e:
            # Not a database, a directory we may not write to: the operator's
            # to fix, so one line that names the option.
            raise ConfigError("--store: %s" % (e,))
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
            self.listening = reactor.listenTCP(self.port, self.factory, interface=self.interface)
        except CannotListenError as e:
            raise listen_error("console", e)
        host = self.listening.getHost()
        log.info("console listening on {host}:{port}", host=host.host, port=host.port)

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

    def startService(self):
        from twisted.internet import reactor
        service.Service.startService(self)
        try:
            self.listening = reactor.listenTCP(self.port, self.web.site, interface=self.interface)
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


def advertise_component(component, config):
    """In component mode we answer only for the component JID: the wave service."""
    from wavebox.xmpp.disco import NS_WAVE_SERVER, WAVE_IDENTITY
    from wavebox.xmpp.ping import NS_PING, NS_RECEIPTS
    jid = component.jid
    component.disco.add_identity(jid, WAVE_IDENTITY[0], WAVE_IDENTITY[1], WAVE_IDENTITY_NAME)
    for feature in (NS_PING, NS_RECEIPTS, NS_WAVE_SERVER):
        component.disco.add_feature(jid, feature)


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
    advertise_component(component, config)
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


def _make_federation(config, top, wave_server, xmpp, locate, forget=None, service_jid=None):
    """
    The wave federation service (host, remote, outbox) on the XMPP layer
    (``xmpp``: the S2S service or the XEP-0114 component; ``locate(domain)``
    finds a peer's wave service JID).  Added after the wave server core, it
    starts after the store is open and stops before it closes.
    """
    from wavebox.federation.service import FederationService
    from wavebox.federation.signers import SignerInfos
    from wavebox.federation.xmppglue import FederationHandler, XMPPTransport

    signers = SignerInfos(None, own=[s.signer_info for s in wave_server.signers.values()],
                          trusted_roots=_trusted_roots(config),
                          verify_signatures=config.verify_signatures)
    federation = FederationService(
        wave_server, XMPPTransport(xmpp, locate, forget), service_jid or config.service_jid,
        signers, outbox_options={"max_backoff": config.federation_retry_max,
                                 "give_up": config.federation_give_up})
    xmpp.add_handler(FederationHandler(federation))
    federation.setServiceParent(top)
    top.federation = federation
    return federation
