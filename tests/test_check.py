"""``wavebox check DOMAIN``: the discovery steps printed, against a real DNS server."""

import importlib
import io
import os
import sys

from twisted.internet import defer, protocol, reactor, utils
from twisted.trial import unittest

from tests.dnsserver import SRV, ZoneServer, standard_records
from wavebox import cli
from wavebox.cli import check as check_command
from wavebox.config import Config, ConfigError, OPTIONS
from wavebox.xmpp import check
from wavebox.xmpp.discovery import DiscoUnavailable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_config(**values):
    config = {o.key: (list(o.default) if o.repeatable else o.default) for o in OPTIONS}
    config.update(values)
    return Config(config)


def no_disco(domain, endpoints):
    return defer.fail(DiscoUnavailable("not available (no S2S layer)"))


class CheckAgainstZoneTests(unittest.TestCase):

    @defer.inlineCallbacks
    def setUp(self):
        # b.test's wave service: something that accepts connections.
        self.listener = reactor.listenTCP(0, protocol.Factory.forProtocol(protocol.Protocol),
                                          interface="127.0.0.3")
        self.addCleanup(self.listener.stopListening)
        self.port = self.listener.getHost().port
        records = standard_records({"b.test": self.port})
        records["_xmpp-server._tcp.c.test"] = [SRV(0, 0, 0, ".")]
        self.zone = yield ZoneServer.start(
            records=records,
            silent=["_xmpp-server._tcp.slow.test", "slow.test",
                    "_xmpp-server._tcp.wave.slow.test", "wave.slow.test"])
        self.addCleanup(self.zone.stop)
        self.config = make_config(nameserver=self.zone.nameserver, dns_timeout=2.0)

    @defer.inlineCallbacks
    def check(self, domain, disco=no_disco, config=None, **kw):
        out = io.StringIO()
        status = yield check.run_check(reactor, domain, config or self.config, out, disco=disco,
                                       **kw)
        return status, out.getvalue().splitlines()

    @defer.inlineCallbacks
    def test_found_prints_every_step_and_the_address(self):
        status, lines = yield self.check("b.test")
        self.assertEqual(status, 0)
        self.assertEqual(lines, [line.replace("PORT", str(self.port)) for line in [
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
            "  connect to 127.0.0.3:PORT -> accepted",
            "b.test: wave service wave.b.test at 127.0.0.3:PORT",
        ]])

    @defer.inlineCallbacks
    def test_found_but_refusing_connections_exits_1_saying_so(self):
        yield self.listener.stopListening()
        status, lines = yield self.check("b.test")
        self.assertEqual(status, 1)
        self.assertEqual(lines[-2:], [
            "  connect to 127.0.0.3:%d -> connection refused" % (self.port,),
            "b.test: wave service wave.b.test at 127.0.0.3:%d, but it does not accept "
            "connections (connection refused)" % (self.port,)])

    @defer.inlineCallbacks
    def test_every_address_is_tried_until_one_accepts(self):
        tried = []

        def connect(reactor, endpoint, timeout):
            tried.append(str(endpoint))
            return defer.succeed("connection refused" if len(tried) == 1 else None)
        records = standard_records({"b.test": self.port})
        records["wave.b.test"] = [("A", "127.0.0.3"), ("A", "127.0.0.4")]
        zone = yield ZoneServer.start(records=records)
        self.addCleanup(zone.stop)
        config = make_config(nameserver=zone.nameserver, dns_timeout=2.0)
        status, lines = yield self.check("b.test", config=config, connect=connect)
        self.assertEqual(status, 0)
        self.assertEqual(len(tried), 2)
        self.assertEqual(lines[-3:-1], ["  connect to %s -> connection refused" % (tried[0],),
                                        "  connect to %s -> accepted" % (tried[1],)])

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
    def test_silent_name_server_is_a_timeout(self):
        config = make_config(nameserver=self.zone.nameserver, dns_timeout=0.2)
        status, lines = yield self.check("slow.test", config=config)
        self.assertEqual(status, 1)
        self.assertIn("  step 1: SRV _xmpp-server._tcp.slow.test -> timeout", lines)
        self.assertTrue(lines[-1].startswith("slow.test: NOT FOUND (remote-server-timeout)"),
                        lines[-1])

    @defer.inlineCallbacks
    def test_disco_with_close_is_closed(self):
        closed = []

        def disco(domain, endpoints):
            return defer.succeed(None)
        disco.close = lambda: closed.append(True)
        yield self.check("b.test", disco=disco)
        self.assertEqual(closed, [True])


class _HangUp(protocol.Protocol):
    def connectionMade(self):
        self.transport.loseConnection()


class CheckCommandLineTests(unittest.TestCase):
    """The real command, in a child process, against the zone server in this reactor."""

    @defer.inlineCallbacks
    def setUp(self):
        # Accepts and hangs up: enough for the check's connect, and a disco
        # attempt fails at once instead of waiting for its timeout.
        listener = reactor.listenTCP(0, protocol.Factory.forProtocol(_HangUp),
                                     interface="127.0.0.3")
        self.addCleanup(listener.stopListening)
        self.port = listener.getHost().port
        self.zone = yield ZoneServer.start(records=standard_records({"b.test": self.port}))
        self.addCleanup(self.zone.stop)

    def run_wavebox(self, *args):
        env = dict(os.environ, PYTHONPATH=ROOT)
        return utils.getProcessOutputAndValue(
            sys.executable, ["-m", "wavebox.cli"] + list(args), env=env)

    @defer.inlineCallbacks
    def test_wavebox_check_finds_b_test(self):
        out, err, status = yield self.run_wavebox(
            "check", "b.test", "--nameserver", "127.0.0.1:%d" % (self.zone.port,),
            "--timeout", "2")
        lines = out.decode().splitlines()
        self.assertEqual(status, 0, (out, err))
        self.assertIn("  step 1: SRV _xmpp-server._tcp.b.test -> 10 0 %d wave.b.test."
                      % (self.port,), lines)
        self.assertIn("  step 12: use wave.b.test at 127.0.0.3:%d" % (self.port,), lines)
        self.assertEqual(lines[-1], "b.test: wave service wave.b.test at 127.0.0.3:%d"
                         % (self.port,))

    @defer.inlineCallbacks
    def test_wavebox_check_failure_exits_1(self):
        out, err, status = yield self.run_wavebox(
            "check", "nowhere.test", "--nameserver", "127.0.0.1:%d" % (self.zone.port,))
        self.assertEqual(status, 1, (out, err))
        self.assertIn(b"NOT FOUND (remote-server-not-found)", out)

    @defer.inlineCallbacks
    def test_wavebox_check_takes_the_name_server_from_the_config_file(self):
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write("[wavebox]\ndomain = a.test\nnameserver = 127.0.0.1:%d\n"
                    "dns_timeout = 2\ns2s_interface = 127.0.0.2\ns2s_port = 0\n"
                    "data_dir = %s\n" % (self.zone.port, os.path.abspath(self.mktemp())))
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
