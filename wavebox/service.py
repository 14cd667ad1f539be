"""
Wiring: turn a validated :class:`wavebox.config.Config` into the running
services of ``twistd wavebox``.  The only module that knows every layer.
"""

import sys

from twisted.application import service
from twisted.logger import Logger

from wavebox.config import ConfigError

log = Logger()


def makeServiceFromOptions(options):
    """Entry point of the twistd plugin: a bad value stops start-up with one line."""
    try:
        config = options.config()
    except ConfigError as e:
        sys.stderr.write("wavebox: %s\n" % (e,))
        raise SystemExit(2)
    return makeService(config)


def makeService(config):
    top = service.MultiService()
    top.setName("wavebox")
    wave_server = _make_wave_services(config, top)
    _make_federation(config, top, wave_server)
    return top


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

    def __init__(self, config, wave_server):
        self.config = config
        self.wave_server = wave_server

    @property
    def store(self):
        return self.wave_server.store

    def startService(self):
        from wavebox.store import open_store
        self.wave_server.store = open_store(self.config.store, self.config.data_dir)
        service.Service.startService(self)

    def stopService(self):
        service.Service.stopService(self)
        store = self.wave_server.store
        if store is not None:
            return store.close()


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
        self.listening = reactor.listenTCP(self.port, self.factory, interface=self.interface)
        host = self.listening.getHost()
        log.info("console listening on {host}:{port}", host=host.host, port=host.port)

    def stopService(self):
        service.Service.stopService(self)
        if self.listening is not None:
            d, self.listening = self.listening.stopListening(), None
            for session in list(self.factory.sessions):
                session.transport.loseConnection()
            return d


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
    from wavebox.console.session import ConsoleFactory
    from wavebox.server.waveserver import WaveServer

    try:
        signers = _make_signers(config)
    except Exception as e:
        sys.stderr.write("wavebox: cannot load the signing certificate: %s\n" % (e,))
        raise SystemExit(2)
    wave_server = WaveServer(None, config.domains, signers=signers,
                             snapshot_interval=config.snapshot_interval)
    WaveServerService(config, wave_server).setServiceParent(top)
    console = ConsoleFactory(wave_server, config.domains)
    ConsoleService(console, config.console_port, config.console_interface).setServiceParent(top)
    return wave_server


# --- federation over XMPP server-to-server (issue 5) ---------------------------

def _make_s2s(config, top):
    """
    The S2S service for every hosted domain and its wave service JID, with
    disco saying where the wave service is, ping answers, the start-up
    FedOne pings, and the seed's peer discovery.  Returns (s2s, discovery).
    """
    from wavebox.federation.stanzas import NS_WAVE
    from wavebox.xmpp import dialback, tls
    from wavebox.xmpp.discovery import Trace, WaveServiceDiscovery
    from wavebox.xmpp.ping import PingResponder, ServerPinger
    from wavebox.xmpp.resolver import DnspythonResolver, resolve_server
    from wavebox.xmpp.streams import S2SService, local_names

    names = local_names(config)
    resolver = DnspythonResolver(config.nameserver, config.dns_timeout)
    s2s = S2SService(names, dialback.secret_from_config(config),
                     tls.policy_from_config(config, names),
                     lambda domain: resolve_server(resolver, domain, Trace(domain)),
                     tls_required=config.tls_required, interface=config.s2s_interface,
                     port=config.s2s_port)
    s2s.setServiceParent(top)
    for domain in config.domains:
        jid = config.service_jid(domain)
        s2s.disco.add_identity(domain, "server", "im")
        s2s.disco.add_item(domain, jid)
        s2s.disco.add_identity(jid, "collaboration", "google-wave", "wavebox")
        s2s.disco.add_feature(jid, NS_WAVE)
    s2s.add_handler(PingResponder())
    discovery = WaveServiceDiscovery(resolver, s2s.find_wave_service,
                                     service_prefix=config.wave_service_prefix)
    if config.xmpp_server_ping:
        ServerPinger(s2s, config.service_jid(config.domains[0]), config.xmpp_server_ping,
                     locate=lambda d: discovery.discover(d).addCallback(lambda r: r.jid),
                     prefix=config.wave_service_prefix).setServiceParent(top)
    return s2s, discovery


def _trusted_roots(config):
    """The CA certificates that delta signers' chains must lead to."""
    from wavebox import crypto
    if config.trusted_ca:
        with open(config.trusted_ca, "rb") as f:
            return crypto.load_certificates(f.read())
    return crypto.system_trusted_roots()


def _make_federation(config, top, wave_server, s2s=None, discovery=None):
    """
    The wave federation service (host, remote, outbox) on the S2S service,
    added after the wave server core so that it starts after the store is
    open and stops before it closes.
    """
    from wavebox.federation.component import FederationService
    from wavebox.federation.signers import SignerInfos
    from wavebox.federation.xmppglue import FederationHandler, S2STransport

    if s2s is None:
        s2s, discovery = _make_s2s(config, top)
    signers = SignerInfos(None, own=[s.signer_info for s in wave_server.signers.values()],
                          trusted_roots=_trusted_roots(config),
                          verify_signatures=config.verify_signatures)
    federation = FederationService(
        wave_server, S2STransport(s2s, discovery), config.service_jid, signers,
        outbox_options={"max_backoff": config.federation_retry_max})
    s2s.add_handler(FederationHandler(federation))
    federation.setServiceParent(top)
    return federation
