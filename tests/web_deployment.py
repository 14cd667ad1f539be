"""
wavebox as deployed for the web client's tests and benchmark: each domain a
``twistd -n wavebox`` child on its test host (a.test on 127.0.0.2, b.test on
127.0.0.3) with its web client on that host, S2S with STARTTLS (certificates
from the tests' one CA) and dialback, found through the tests' DNS server
on loopback, accounts made in each store before it starts.
"""

import os
import re

from twisted.internet import defer

from tests import pki
from tests.dnsserver import ZoneServer, standard_records
from tests.helpers import quick_hash, start_twistd_wavebox
from tests.processes import free_port, poll_until
from wavebox.store import open_store

PASSWORD = "secret"
ADDRESSES = {"a.test": "127.0.0.2", "b.test": "127.0.0.3"}
S2S_LISTENING = re.compile(rb"S2S listening on [\d.]+:(\d+)")
STORE = "sqlite:wavebox.sqlite3"


@defer.inlineCallbacks
def make_accounts(data, addresses, password=PASSWORD):
    store = open_store(STORE, data)
    try:
        for address in addresses:
            yield store.add_account(address, quick_hash(password))
    finally:
        yield store.close()


class Server:
    """One running domain: its process, console port, web address, data directory."""

    def __init__(self, domain, proc, console_port, web_port, data):
        self.domain = domain
        self.proc = proc
        self.console_port = console_port
        self.web_port = web_port
        self.data = data

    @property
    def base(self):
        """The web client's address, as a person types it."""
        return "http://%s:%d" % (ADDRESSES[self.domain], self.web_port)

    @property
    def origin_host(self):
        return "%s:%d" % (ADDRESSES[self.domain], self.web_port)


class WebDeployment:
    """
    ``accounts``: {domain: [address]}.  ``start(testcase)`` brings up the DNS
    server and every domain; the testcase's clean-ups end them all.
    """

    def __init__(self, directory, accounts, extra_args=()):
        self.directory = directory
        self.accounts = accounts
        self.extra_args = list(extra_args)
        self.servers = {}
        self.dns = None

    def __getitem__(self, domain):
        return self.servers[domain]

    @defer.inlineCallbacks
    def start(self, testcase):
        self.dns = yield ZoneServer.start(records=standard_records())
        testcase.addCleanup(self.dns.stop)
        ports = {}
        for domain, addresses in self.accounts.items():
            home = os.path.join(self.directory, domain)
            data = os.path.join(home, "data")
            os.makedirs(data, exist_ok=True)
            cert, key, ca = pki.write_domain_files(domain, home)
            yield make_accounts(data, addresses)
            host = ADDRESSES[domain]
            web_port = free_port(host)
            proc, console_port = yield start_twistd_wavebox(testcase, home, [
                "--domain", domain, "--data-dir", data, "--store", STORE,
                "--s2s-interface", host, "--s2s-port", "0",
                "--certificate", cert, "--private-key", key, "--trusted-ca", ca,
                "--nameserver", "%s:%d" % self.dns.nameserver, "--dns-timeout", "2",
                "--console-port", "0", "--web-interface", host, "--web-port", str(web_port),
                "--federation-retry-max", "2"] + self.extra_args)
            yield poll_until(lambda: S2S_LISTENING.search(proc.output), timeout=30,
                             what="%s's S2S listener" % (domain,))
            yield poll_until(lambda: b"web client listening" in proc.output, timeout=30,
                             what="%s's web client" % (domain,))
            ports[domain] = int(S2S_LISTENING.search(proc.output).group(1))
            self.servers[domain] = Server(domain, proc, console_port, web_port, data)
        self.dns.set_records(standard_records(ports))

    @defer.inlineCallbacks
    def stop(self):
        """SIGTERM every server and wait for each to end (a clean stop: stores closed)."""
        for server in self.servers.values():
            if server.proc.running:
                server.proc.transport.signalProcess("TERM")
        for server in self.servers.values():
            yield server.proc.ended


@defer.inlineCallbacks
def stored_wavelet(data, domains, uri):
    """The wavelet ``uri`` as a stopped server's store holds it (a WaveletState)."""
    from wavebox.model.ids import WaveletName
    from wavebox.server.waveserver import WaveServer
    store = open_store(STORE, data)
    try:
        state = yield WaveServer(store, domains).wavelet(WaveletName.from_uri(uri))
        return state
    finally:
        yield store.close()
