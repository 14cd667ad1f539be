"""``wavebox check DOMAIN``: the discovery steps printed, against a real DNS server."""

import importlib
import io
import os
import sys

from twisted.internet import defer, protocol, reactor, utils
from twisted.trial import unittest

from tests import pki
from tests.dnsserver import A, SRV, ZoneServer, standard_records
from wavebox import cli
from wavebox.cli import check as check_command
from wavebox.config import Config, ConfigError, OPTIONS
from wavebox.xmpp import certs, check
from wavebox.xmpp.discovery import DiscoUnavailable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_config(**values):
    config = {o.key: (list(o.default) if o.repeatable else o.default) for o in OPTIONS}
    config.update(values)
    return Config(config)


def no_disco(domain, endpoints):
    return defer.fail(DiscoUnavailable("not available (no S2S layer)"))


def start_peer(testcase, domain="b.test", host="127.0.0.3", certificate_for=None):
    """
    A wavebox S2S service for ``domain`` on ``host`` (port 0), with a
    certificate from the tests' CA (for ``certificate_for`` instead, to make
    a wrong one); stopped at the end.  Its port.
    """
    from wavebox import service as wservice
    from wavebox.config import load
    directory = os.path.abspath(testcase.mktemp())
    os.makedirs(directory)
    cert, key, ca = pki.write_domain_files(certificate_for or domain, directory)
    top = wservice.makeService(load({
        "domain": [domain], "data_dir": os.path.join(directory, "data"),
        "s2s_interface": host, "s2s_port": "0", "certificate": cert, "private_key": key,
        "trusted_ca": ca, "nameserver": "127.0.0.1:1", "dns_timeout": "1",
        "console_port": "0", "web_port": "0", "store": "memory:"}))
    top.startService()
    testcase.addCleanup(top.stopService)
    return top, top.s2s.listening_address()[1], ca


class CheckAgainstZoneTests(unittest.TestCase):

    @defer.inlineCallbacks
    def setUp(self):
        # b.test's wave service: a wavebox S2S listener with the test CA's certificate.
        self.peer, self.port, self.ca = start_peer(self)
        records = standard_records({"b.test": self.port})
        records["_xmpp-server._tcp.c.test"] = [SRV(0, 0, 0, ".")]
        self.zone = yield ZoneServer.start(
            records=records,
            silent=["_xmpp-server._tcp.slow.test", "slow.test",
                    "_xmpp-server._tcp.wave.slow.test", "wave.slow.test"])
        self.addCleanup(self.zone.stop)
        self.config = make_config(nameserver=self.zone.nameserver, dns_timeout=2.0,
                                  trusted_ca=self.ca, data_dir=self.mktemp())

    @defer.inlineCallbacks
    def check(self, domain, disco=no_disco, config=None, **kw):
        out = io.StringIO()
        status = yield check.run_check(reactor, domain, config or self.config, out, disco=disco,
                                       **kw)
        return status, out.getvalue().splitlines()

    @defer.inlineCallbacks
    def test_found_prints_every_step_and_the_certificate_it_verified(self):
        status, lines = yield self.check("b.test")
        self.assertEqual(status, 0, lines)
        self.assertEqual(lines[:-2], [line.replace("PORT", str(self.port)) for line in [
            "checking b.test with name server 127.0.0.1:%d" % (self.zone.port,),
            "  step 1: SRV _xmpp-server._tcp.b.test -> 10 0 PORT wave.b.test.",
            "  step 2: A/AAAA wave.b.test -> 127.0.0.3",
            "  step 5: connect to b.test at 127.0.0.3:PORT and ask disco",
            "  step 5: disco: not available (no S2S layer)",
            "  step 9: guess the wave service JID: wave.b.test",
            "  step 10: SRV _xmpp-server._tcp.wave.b.test -> 10 0 PORT wave.b.test.",
            "  step 10: A/AAAA wave.b.test -> 127.0.0.3",
            "  step 11: wave.b.test is at 127.0.0.3:PORT, the address of step 5",
            "  step 12: use wave.b.test at 127.0.0.3:PORT",
        ]])
        self.assertRegex(lines[-2], r"^  connect to 127\.0\.0\.3:%d -> STARTTLS, certificate "
                                    r"of wave\.b\.test verified \(CN=b\.test, issued by "
                                    r"CN=Wavebox Federation Test CA, expires \d{4}-\d\d-\d\d\)$"
                         % (self.port,))
        self.assertEqual(lines[-1], "b.test: wave service wave.b.test at 127.0.0.3:%d"
                         % (self.port,))

    @defer.inlineCallbacks
    def test_found_but_refusing_connections_exits_1_naming_the_step(self):
        yield self.peer.stopService()
        status, lines = yield self.check("b.test")
        self.assertEqual(status, 1)
        self.assertEqual(lines[-2:], [
            "  connect to 127.0.0.3:%d -> connect failed: connection refused" % (self.port,),
            "b.test: wave service wave.b.test at 127.0.0.3:%d, but connect fails there "
            "(connection refused)" % (self.port,)])

    @defer.inlineCallbacks
    def test_a_certificate_for_another_domain_fails_at_the_tls_step(self):
        _, port, _ = start_peer(self, "d.test", host="127.0.0.4", certificate_for="x.test")
        zone = yield ZoneServer.start(records=dict(standard_records(), **{
            "_xmpp-server._tcp.wave.d.test": [SRV(10, 0, port, "wave.d.test")],
            "wave.d.test": [A("127.0.0.4")]}))
        self.addCleanup(zone.stop)
        config = make_config(nameserver=zone.nameserver, dns_timeout=2.0,
                             trusted_ca=self.ca, data_dir=self.mktemp())
        status, lines = yield self.check("d.test", config=config)
        self.assertEqual(status, 1)
        self.assertRegex(lines[-2], r"^  connect to 127\.0\.0\.4:%d -> TLS failed: TLS "
                                    r"certificate of wave\.d\.test refused: certificate "
                                    r"does not name wave\.d\.test" % (port,))
        self.assertIn(", but TLS fails there (TLS certificate of wave.d.test refused: ",
                      lines[-1])

    @defer.inlineCallbacks
    def test_a_certificate_from_a_ca_we_do_not_trust_fails_at_the_tls_step(self):
        other = os.path.abspath(self.mktemp())
        os.makedirs(other)
        with open(os.path.join(other, "ca.pem"), "wb") as f:
            f.write(certs.cert_pem(certs.make_ca("Another CA")[1]))
        config = make_config(nameserver=self.zone.nameserver, dns_timeout=2.0,
                             trusted_ca=os.path.join(other, "ca.pem"), data_dir=self.mktemp())
        status, lines = yield self.check("b.test", config=config)
        self.assertEqual(status, 1)
        self.assertIn("-> TLS failed: TLS certificate of wave.b.test refused: ", lines[-2])

    @defer.inlineCallbacks
    def test_every_address_is_tried_until_one_works(self):
        tried = []

        def connect(reactor, endpoint, timeout):
            tried.append(str(endpoint))
            return defer.succeed(("connect", "connection refused") if len(tried) == 1
                                 else (None, "STARTTLS, certificate verified"))
        records = standard_records({"b.test": self.port})
        records["wave.b.test"] = [("A", "127.0.0.3"), ("A", "127.0.0.4")]
        zone = yield ZoneServer.start(records=records)
        self.addCleanup(zone.stop)
        config = make_config(nameserver=zone.nameserver, dns_timeout=2.0)
        status, lines = yield self.check("b.test", config=config, connect=connect)
        self.assertEqual(status, 0)
        self.assertEqual(len(tried), 2)
        self.assertEqual(lines[-3:-1], [
            "  connect to %s -> connect failed: connection refused" % (tried[0],),
            "  connect to %s -> STARTTLS, certificate verified" % (tried[1],)])

    @defer.inlineCallbacks
    def test_disco_answer_is_used(self):
        asked = []

        def disco(domain, endpoints):
            asked.append((domain, [str(e) for e in endpoints]))
            return defer.succeed("wave.b.test")
        status, lines = yield self.check("b.test", disco=disco)
        self.assertEqual(status, 0)
        self.assertEqual(asked, [("b.test", ["127.0.0.3:%d" % (self.port,)])])
        self.assertIn("  step 6: disco#items b.test -> wave.b.test (collaboration/google-wave)",
                      lines)

    @defer.inlineCallbacks
    def test_not_found_exits_1_with_the_reason(self):
        status, lines = yield self.check("nowhere.test")
        self.assertEqual(status, 1)
        self.assertEqual(lines[-1], "nowhere.test: NOT FOUND (remote-server-not-found): "
                         "neither nowhere.test nor wave.nowhere.test resolves")

    @defer.inlineCallbacks
    def test_no_service_dot_is_shown(self):
        status, lines = yield self.check("c.test")
        self.assertEqual(status, 1)
        self.assertIn('  step 4: c.test: its SRV target is ".": it offers no XMPP service; '
                      'skip disco, guess the wave service (step 9)', lines)

    @defer.inlineCallbacks
    def test_names_that_time_out_are_a_timeout(self):
        config = make_config(nameserver=self.zone.nameserver, dns_timeout=0.2)
        status, lines = yield self.check("slow.test", config=config)
        self.assertEqual(status, 1)
        self.assertIn("  step 1: SRV _xmpp-server._tcp.slow.test -> timeout", lines)
        self.assertTrue(lines[-1].startswith("slow.test: NOT FOUND (remote-server-timeout)"),
                        lines[-1])

    @defer.inlineCallbacks
    def test_a_name_server_that_never_answers_is_named_after_one_timeout(self):
        silent = reactor.listenUDP(0, protocol.DatagramProtocol(), interface="127.0.0.1")
        self.addCleanup(silent.stopListening)
        port = silent.getHost().port
        config = make_config(nameserver=("127.0.0.1", port), dns_timeout=0.5)
        queries = []
        from wavebox.xmpp import resolver
        real = resolver.DnspythonResolver._query
        self.patch(resolver.DnspythonResolver, "_query",
                   lambda self, r, name, rdtype: (queries.append(name), real(self, r, name,
                                                                             rdtype))[1])
        status, lines = yield self.check("b.test", config=config)
        self.assertEqual(status, 1)
        self.assertEqual(lines[-1], "b.test: NOT CHECKED: the name server 127.0.0.1:%d does "
                                    "not answer (no reply within 0.5s)" % (port,))
        self.assertEqual(len(queries), 1)       # one timeout, not one per step

    @defer.inlineCallbacks
    def test_disco_with_close_is_closed(self):
        closed = []

        def disco(domain, endpoints):
            return defer.succeed(None)
        disco.close = lambda: closed.append(True)
        yield self.check("b.test", disco=disco)
        self.assertEqual(closed, [True])


class CheckCommandLineTests(unittest.TestCase):
    """The real command, in a child process, against a zone server and a peer in this reactor."""

    @defer.inlineCallbacks
    def setUp(self):
        self.peer, self.port, self.ca = start_peer(self)
        self.zone = yield ZoneServer.start(records=standard_records({"b.test": self.port}))
        self.addCleanup(self.zone.stop)

    def run_wavebox(self, *args):
        env = dict(os.environ, PYTHONPATH=ROOT)
        env.pop("WAVEBOX_CONFIG", None)
        return utils.getProcessOutputAndValue(
            sys.executable, ["-m", "wavebox.cli"] + list(args), env=env)

    @defer.inlineCallbacks
    def test_wavebox_check_finds_b_test_and_verifies_its_certificate(self):
        out, err, status = yield self.run_wavebox(
            "check", "b.test", "--nameserver", "127.0.0.1:%d" % (self.zone.port,),
            "--timeout", "2", "--trusted-ca", self.ca, "--data-dir", self.mktemp())
        lines = out.decode().splitlines()
        self.assertEqual(status, 0, (out, err))
        self.assertIn("  step 1: SRV _xmpp-server._tcp.b.test -> 10 0 %d wave.b.test."
                      % (self.port,), lines)
        self.assertIn("  step 12: use wave.b.test at 127.0.0.3:%d" % (self.port,), lines)
        self.assertIn("-> STARTTLS, certificate of wave.b.test verified", lines[-2])
        self.assertEqual(lines[-1], "b.test: wave service wave.b.test at 127.0.0.3:%d"
                         % (self.port,))

    @defer.inlineCallbacks
    def test_without_our_trust_roots_the_certificate_is_refused(self):
        out, err, status = yield self.run_wavebox(
            "check", "b.test", "--nameserver", "127.0.0.1:%d" % (self.zone.port,),
            "--timeout", "2", "--data-dir", self.mktemp())
        self.assertEqual(status, 1, (out, err))
        self.assertIn(b"but TLS fails there (TLS certificate of wave.b.test refused: ", out)

    @defer.inlineCallbacks
    def test_wavebox_check_failure_exits_1(self):
        out, err, status = yield self.run_wavebox(
            "check", "nowhere.test", "--nameserver", "127.0.0.1:%d" % (self.zone.port,))
        self.assertEqual(status, 1, (out, err))
        self.assertIn(b"NOT FOUND (remote-server-not-found)", out)

    @defer.inlineCallbacks
    def test_wavebox_check_takes_the_name_server_and_roots_from_the_config_file(self):
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write("[wavebox]\ndomain = a.test\nnameserver = 127.0.0.1:%d\n"
                    "dns_timeout = 2\ns2s_interface = 127.0.0.2\ns2s_port = 0\n"
                    "trusted_ca = %s\ndata_dir = %s\n" % (
                        self.zone.port, self.ca, os.path.abspath(self.mktemp())))
        out, err, status = yield self.run_wavebox("check", "--config", path, "b.test")
        self.assertEqual(status, 0, (out, err))
        self.assertIn(b"b.test: wave service wave.b.test at 127.0.0.3:%d" % (self.port,), out)


class ArgumentTests(unittest.SynchronousTestCase):

    def capture_stderr(self):
        err = io.StringIO()
        self.patch(sys, "stderr", err)
        return err

    def test_check_is_a_wavebox_subcommand(self):
        self.assertEqual(cli.SUBCOMMANDS["check"][0], "check")
        self.assertIs(importlib.import_module("wavebox.cli.check").main, check_command.main)

    def test_missing_domain_exits_2(self):
        err = self.capture_stderr()
        self.assertEqual(cli.main(["check"]), 2)
        self.assertIn("DOMAIN", err.getvalue())

    def test_bad_timeout_exits_2_naming_the_option(self):
        err = self.capture_stderr()
        self.assertEqual(check_command.main(["b.test", "--timeout", "soon"]), 2)
        self.assertIn("--timeout", err.getvalue())

    def test_bad_domain_exits_2(self):
        err = self.capture_stderr()
        self.assertEqual(check_command.main(["not a domain"]), 2)
        self.assertIn("DOMAIN", err.getvalue())

    def test_options_may_follow_the_domain(self):
        options = check_command.parser().parse_args(["b.test", "--nameserver", "127.0.0.1:5353",
                                              "--timeout", "3"])
        config = check_command.load_config(options)
        self.assertEqual((options.target, config.nameserver, config.dns_timeout),
                         ("b.test", ("127.0.0.1", 5353), 3.0))

    def test_command_line_overrides_the_config_file(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("[wavebox]\ndomain = a.test\nnameserver = 127.0.0.1:5353\n"
                    "dns_timeout = 9\nwave_service_prefix = fed\n")
        options = check_command.parser().parse_args(["b.test", "-c", path, "--timeout", "3"])
        config = check_command.load_config(options)
        self.assertEqual((config.nameserver, config.dns_timeout, config.wave_service_prefix),
                         (("127.0.0.1", 5353), 3.0, "fed"))

    def test_bad_config_file_is_a_config_error(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("[wavebox]\ndomain = a.test\nnameserver = \n")
        options = check_command.parser().parse_args(["b.test", "-c", path])
        self.assertRaises(ConfigError, check_command.load_config, options)

    def test_without_config_the_system_resolver_is_used(self):
        config = check_command.load_config(check_command.parser().parse_args(["b.test"]))
        self.assertIsNone(config.nameserver)
        self.assertEqual(config.dns_timeout, 5.0)


class PeerStreamErrorTests(unittest.TestCase):

    @defer.inlineCallbacks
    def test_a_peer_that_does_not_serve_the_name_says_so_in_the_check(self):
        _, port, ca = start_peer(self, "b.test", host="127.0.0.4")
        zone = yield ZoneServer.start(records=dict(standard_records(), **{
            "_xmpp-server._tcp.wave.e.test": [SRV(10, 0, port, "wave.e.test")],
            "wave.e.test": [A("127.0.0.4")]}))
        self.addCleanup(zone.stop)
        out = io.StringIO()
        status = yield check.run_check(reactor, "e.test", make_config(
            nameserver=zone.nameserver, dns_timeout=2.0, trusted_ca=ca,
            data_dir=self.mktemp()), out, disco=no_disco)
        self.assertEqual(status, 1)
        self.assertIn("XMPP failed: stream to wave.e.test (127.0.0.4:%d) closed: it sent the "
                      "stream error <host-unknown/>" % (port,), out.getvalue())


class CheckBesideTheRunningServerTests(unittest.TestCase):

    @defer.inlineCallbacks
    def test_while_our_server_runs_it_does_the_discovery(self):
        from tests.test_operator import Servers, wavebox_command
        _, port, ca = start_peer(self)
        zone = yield ZoneServer.start(records=standard_records({"b.test": port}))
        self.addCleanup(zone.stop)
        servers = Servers(self)
        yield servers.spawn("--nameserver", "127.0.0.1:%d" % (zone.port,), "--trusted-ca", ca,
                            "--dns-timeout", "2")
        out, err, status = yield wavebox_command(
            "check", "b.test", "--data-dir", servers.data, "--trusted-ca", ca,
            "--nameserver", "127.0.0.1:%d" % (zone.port,), "--timeout", "2")
        lines = out.decode().splitlines()
        self.assertEqual(status, 0, (out, err))
        self.assertEqual(lines[1], "discovery by the running server (through %s)"
                         % (os.path.join(servers.data, "admin.sock"),))
        self.assertIn("  step 12: use wave.b.test at 127.0.0.3:%d" % (port,), lines)
        self.assertIn("-> STARTTLS, certificate of wave.b.test verified", lines[-2])


class SelfCheckTests(unittest.TestCase):
    """``wavebox check --self``: our own domain as peers will see it."""

    @defer.inlineCallbacks
    def self_check(self, records=None, certificate_for=None, nameserver=None):
        top, port, ca = start_peer(self, "a.test", host="127.0.0.2",
                                   certificate_for=certificate_for)
        if records is None:
            records = standard_records({"a.test": port})
        zone = yield ZoneServer.start(records=records)
        self.addCleanup(zone.stop)
        config = make_config(
            domain=["a.test"], nameserver=nameserver or zone.nameserver, dns_timeout=1.0,
            trusted_ca=ca, s2s_interface="127.0.0.2", s2s_port=port,
            certificate=top.getServiceNamed("s2s").tls.cert_file,
            data_dir=self.mktemp())
        out = io.StringIO()
        status = yield check.run_self_check(reactor, config, out)
        return status, out.getvalue(), port

    @defer.inlineCallbacks
    def test_the_recommended_records_and_a_good_certificate_pass(self):
        status, out, port = yield self.self_check()
        self.assertEqual(status, 0, out)
        self.assertIn("  SRV _xmpp-server._tcp.a.test -> 10 0 %d wave.a.test." % (port,), out)
        self.assertIn("  SRV _xmpp-server._tcp.wave.a.test -> 10 0 %d wave.a.test." % (port,),
                      out)
        self.assertIn("-> STARTTLS, certificate of wave.a.test verified", out)
        self.assertIn("the chain verifies against trusted_ca", out)
        # Our test CA is not in the system store: peers that check would refuse it.
        self.assertIn("warning: the chain is not trusted by the system trust store", out)
        self.assertTrue(out.rstrip().endswith("a.test: OK (1 warning(s))"), out)

    @defer.inlineCallbacks
    def test_a_missing_recommended_srv_record_is_named(self):
        records = standard_records()
        status, out, port = yield self.self_check(records=dict(records, **{
            "_xmpp-server._tcp.a.test": [SRV(10, 0, 5269, "wave.a.test")]}))
        self.assertIn("warning: no SRV record _xmpp-server._tcp.wave.a.test (the seed's "
                      "recommended record 3: our disco item is wave.a.test)", out)

    @defer.inlineCallbacks
    def test_a_wave_service_peers_cannot_find_is_a_problem(self):
        records = {name: rrs for name, rrs in standard_records().items()
                   if name != "wave.a.test"}
        status, out, port = yield self.self_check(records=records)
        self.assertEqual(status, 1)
        self.assertIn("PROBLEM: peers cannot find wave.a.test", out)
        self.assertIn("problem(s)", out.splitlines()[-1])

    @defer.inlineCallbacks
    def test_a_certificate_without_our_names_is_a_problem(self):
        status, out, port = yield self.self_check(certificate_for="x.test")
        self.assertEqual(status, 1)
        self.assertIn("PROBLEM: the certificate does not name a.test, wave.a.test", out)

    @defer.inlineCallbacks
    def test_a_silent_name_server_is_a_problem_named_at_once(self):
        silent = reactor.listenUDP(0, protocol.DatagramProtocol(), interface="127.0.0.1")
        self.addCleanup(silent.stopListening)
        status, out, port = yield self.self_check(
            nameserver=("127.0.0.1", silent.getHost().port))
        self.assertEqual(status, 1)
        self.assertIn("PROBLEM: the name server 127.0.0.1:%d does not answer (no reply within "
                      "1s): DNS cannot be checked" % (silent.getHost().port,), out)
