"""
Whole wave servers in one process, federating for real: each with its
store, wave server core, console, S2S service (STARTTLS with certificates
from a test CA, dialback) and the federation layer, finding each other
through a DNS server on loopback.  Used by the end-to-end tests and by
``benchmarks/bench_federation.py``.

Every port is ephemeral: the S2S services listen first (``wave.a.test`` on
127.0.0.2, ``wave.b.test`` on 127.0.0.3, as the design says), then the DNS
zone is made with the ports they got.
"""

import os

from twisted.internet import defer, reactor
from twisted.logger import Logger

from wavebox import crypto
from wavebox.console.session import ConsoleFactory
from wavebox.federation.service import FederationService
from wavebox.federation.signers import SignerInfos
from wavebox.federation.xmppglue import FederationHandler, S2STransport
from wavebox.server.waveserver import WaveServer
from wavebox.store import open_store
from wavebox.xmpp import certs
from wavebox.xmpp.discovery import WaveServiceDiscovery
from wavebox.xmpp.ping import PingResponder
from wavebox.xmpp.resolver import DnspythonResolver, Trace, resolve_server
from wavebox.xmpp.server import S2SService
from wavebox.xmpp.tls import TLSPolicy

from tests import pki
from tests.dnsserver import TEST_HOSTS, ZoneServer, standard_records
from tests.helpers import quick_hash, service_jid

log = Logger()

ADDRESSES = {"a.test": "127.0.0.2", "b.test": "127.0.0.3"}
PASSWORD = "secret"


class WaveStack:
    """One domain's wave server, federating over real S2S."""

    def __init__(self, domain, directory, store_url="memory:", users=(), port=0,
                 s2s_options=None, **federation_options):
        self.domain = domain
        self.port = port
        self.s2s_options = s2s_options or {}
        self.directory = directory
        self.store_url = store_url
        self.users = list(users)
        self.federation_options = federation_options
        self.interface = ADDRESSES.get(domain, "127.0.0.1")
        os.makedirs(directory, exist_ok=True)
        key, cert = pki.domain_certificate(domain)
        ca_cert = pki.ca()[1]
        self.cert_file, self.key_file, self.ca_file = pki.write_domain_files(domain, directory)
        self.signer = crypto.Signer(certs.key_pem(key), certs.cert_pem(cert, ca_cert), domain)
        self.s2s = None
        self.console_port = None

    # -- life cycle ----------------------------------------------------------

    def listen(self):
        """Open the store and start S2S (port 0): the zone needs the port."""
        self.store = open_store(self.store_url, data_dir=self.directory)
        self.server = WaveServer(self.store, [self.domain], signers={self.domain: self.signer})
        self.resolver = None
        self.s2s = S2SService(
            [self.domain, service_jid(self.domain)], "dialback secret of " + self.domain,
            TLSPolicy(self.cert_file, self.key_file, self.ca_file, required=True),
            self._resolve, interface=self.interface, port=self.port, **self.s2s_options)
        self.s2s.startService()
        self.port = self.s2s.listening_address()[1]
        return self.port

    def _resolve(self, domain):
        return resolve_server(self.resolver, domain, Trace(domain))

    @defer.inlineCallbacks
    def start(self, nameserver):
        """DNS is up: discovery, disco, federation, console and accounts."""
        self.resolver = DnspythonResolver(nameserver=nameserver, timeout=2.0)
        self.discovery = WaveServiceDiscovery(self.resolver, self.s2s.find_wave_service)
        # As wavebox.service wires them: each handler declares its own disco.
        self.s2s.add_handler(PingResponder())
        self.signers = SignerInfos(self.store, own=[self.signer.signer_info],
                                   trusted_roots=[pki.ca()[1]])
        self.federation = FederationService(self.server, S2STransport(self.s2s, self.discovery),
                                            service_jid, self.signers,
                                            **self.federation_options)
        self.s2s.add_handler(FederationHandler(self.federation))
        yield self.federation.startService()
        self.console = ConsoleFactory(self.server, [self.domain])
        self.console_port = reactor.listenTCP(0, self.console, interface="127.0.0.1")
        for user in self.users:
            existing = yield self.store.get_account(user)
            if existing is None:
                yield self.store.add_account(user, quick_hash(PASSWORD))

    @defer.inlineCallbacks
    def stop(self):
        if self.console_port is not None:
            port, self.console_port = self.console_port, None
            yield port.stopListening()
            for session in list(self.console.sessions):
                session.transport.loseConnection()
        if getattr(self, "federation", None) is not None and self.federation.running:
            yield self.federation.stopService()
        if self.s2s is not None and self.s2s.running:
            yield self.s2s.stopService()
        if getattr(self, "store", None) is not None:
            yield self.store.close()
            self.store = None


class Federation:
    """Several WaveStacks and the DNS server that makes them findable."""

    def __init__(self, stacks):
        self.stacks = {s.domain: s for s in stacks}
        self.dns = None

    @defer.inlineCallbacks
    def start(self):
        ports = {domain: stack.listen() for domain, stack in self.stacks.items()}
        self.dns = yield ZoneServer.start(records=standard_records(ports, TEST_HOSTS))
        for stack in self.stacks.values():
            yield stack.start(self.dns.nameserver)
        return self

    def down(self, domain):
        """Stop one server (its store is closed; its files stay)."""
        return self.stacks[domain].stop()

    @defer.inlineCallbacks
    def up(self, domain, **changes):
        """Start a stopped server again: same directory, store, users and port."""
        old = self.stacks[domain]
        options = dict(directory=old.directory, store_url=old.store_url, users=old.users,
                       port=old.port, s2s_options=old.s2s_options)
        options.update(old.federation_options)
        options.update(changes)
        new = self.stacks[domain] = WaveStack(domain, **options)
        new.listen()
        yield new.start(self.dns.nameserver)
        return new

    @defer.inlineCallbacks
    def stop(self):
        for stack in self.stacks.values():
            try:
                yield stack.stop()
            except Exception:
                log.failure("stopping {domain}", domain=stack.domain)
        if self.dns is not None:
            yield self.dns.stop()
            self.dns = None

    def __getitem__(self, domain):
        return self.stacks[domain]
