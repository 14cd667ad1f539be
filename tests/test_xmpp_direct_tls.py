"""
The direct TLS listener (XEP-0368, ``--s2s-tls-port``) as a peer sees it:
TLS from the first byte with our certificate, ALPN ``xmpp-server`` answered,
and a stream whose features offer no STARTTLS (it is TLS already) but SASL
EXTERNAL and dialback.  The client is Python's own ``ssl`` module, not our
code, in a worker thread.
"""

import os
import socket
import ssl

from twisted.internet import threads
from twisted.trial import unittest

from tests import pki

HEADER = (b"<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
          b"xmlns:stream='http://etherx.jabber.org/streams' from='b.test' to='a.test' "
          b"version='1.0'>")


def probe(host, port, ca, alpn=("xmpp-server",), header=HEADER):
    """Blocking: TLS to host:port, a stream header; (ALPN chosen, peer's names, reply)."""
    context = ssl.create_default_context(cafile=ca)
    context.set_alpn_protocols(list(alpn))
    with socket.create_connection((host, port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="a.test") as tls:
            chosen = tls.selected_alpn_protocol()
            names = [value for kind, value in tls.getpeercert().get("subjectAltName", ())]
            tls.sendall(header)
            reply = b""
            while b"</stream:features>" not in reply and b"<stream:features/>" not in reply:
                data = tls.recv(4096)
                if not data:
                    break
                reply += data
    return chosen, names, reply


class DirectTLSListenerTests(unittest.TestCase):

    def setUp(self):
        from wavebox import service as wservice
        from wavebox.config import load
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        cert, key, self.ca = pki.write_domain_files("a.test", directory)
        self.top = wservice.makeService(load({
            "domain": ["a.test"], "data_dir": os.path.join(directory, "data"),
            "s2s_interface": "127.0.0.2", "s2s_port": "0", "s2s_tls_port": "0",
            "certificate": cert, "private_key": key, "trusted_ca": self.ca,
            "nameserver": "127.0.0.1:1", "dns_timeout": "1", "console_port": "0",
            "web_port": "0", "store": "memory:"}))
        self.top.startService()
        self.addCleanup(self.top.stopService)
        self.s2s = self.top.s2s

    def test_tls_from_the_first_byte_with_alpn_and_no_starttls_offered(self):
        host, port = self.s2s.listening_address(direct_tls=True)
        self.assertNotEqual(port, self.s2s.listening_address()[1])
        d = threads.deferToThread(probe, host, port, self.ca)

        def check(result):
            chosen, names, reply = result
            self.assertEqual(chosen, "xmpp-server")
            self.assertIn("a.test", names)
            self.assertIn(b"<stream:stream", reply)
            self.assertNotIn(b"urn:ietf:params:xml:ns:xmpp-tls", reply)     # no STARTTLS
            self.assertIn(b"urn:xmpp:features:dialback", reply)
            # b.test sent no certificate: nothing to authenticate by EXTERNAL.
            self.assertNotIn(b"<mechanism>EXTERNAL</mechanism>", reply)
        return d.addCallback(check)

    def test_a_client_without_alpn_is_served_too(self):
        host, port = self.s2s.listening_address(direct_tls=True)
        d = threads.deferToThread(probe, host, port, self.ca, alpn=())
        return d.addCallback(lambda result: (self.assertIsNone(result[0]),
                                             self.assertIn(b"<stream:features", result[2])))

    def test_the_starttls_port_still_offers_starttls(self):
        host, port = self.s2s.listening_address()

        def plain():
            with socket.create_connection((host, port), timeout=10) as s:
                s.sendall(HEADER)
                reply = b""
                while b"</stream:features>" not in reply:
                    data = s.recv(4096)
                    if not data:
                        break
                    reply += data
            return reply
        d = threads.deferToThread(plain)
        return d.addCallback(lambda reply: self.assertIn(b"urn:ietf:params:xml:ns:xmpp-tls",
                                                         reply))


class DirectTLSOptionTests(unittest.TestCase):

    def test_off_by_default(self):
        from wavebox.config import load
        self.assertIsNone(load({"domain": ["a.test"]}).s2s_tls_port)

    def test_a_bad_port_names_the_option(self):
        from wavebox.config import ConfigError, load
        with self.assertRaises(ConfigError) as caught:
            load({"domain": ["a.test"], "s2s_tls_port": "70000"})
        self.assertIn("--s2s-tls-port", str(caught.exception))
