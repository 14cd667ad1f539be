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
    _make_wave_services(config, top)
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
