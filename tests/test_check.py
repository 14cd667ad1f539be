"""``wavebox check DOMAIN``: the discovery steps printed, against a real DNS server."""

import io
import os
import sys

from twisted.internet import defer, reactor, utils
from twisted.trial import unittest

from tests.dnsserver import SRV, ZoneServer, standard_records
from wavebox import cli
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
        records = standard_records({"b.test": 5269})
        records["_xmpp-server._tcp.c.test"] = [SRV(0, 0, 0, ".")]
        self.zone = yield ZoneServer.start(
            records=records,
            silent=["_xmpp-server._tcp.slow.test", "slow.test",
                    "_xmpp-server._tcp.wave.slow.test", "wave.slow.test"])
        self.addCleanup(self.zone.stop)
        self.config = make_config(nameserver=self.zone.nameserver, dns_timeout=2.0)

    @defer.inlineCallbacks
    def check(self, domain, disco=no_disco, config=None):
        out = io.StringIO()
        status = yield check.run_check(reactor, domain, config or self.config, out, disco=disco)
        return status, out.getvalue().splitlines()

    @defer.inlineCallbacks
    def test_found_prints_every_step_and_the_address(self):
        status, lines = yield self.check("b.test")
        self.assertEqual(status, 0)
        self.assertEqual(lines, [
            "checking b.test with name server 127.0.0.1:%d" % (self.zone.port,),
            "  step 1: SRV _xmpp-server._tcp.b.test -> 10 0 5269 wave.b.test.",
            "  step 2: A/AAAA wave.b.test -> 127.0.0.3",
            "  step 5: connect to b.test at 127.0.0.3:5269 and ask disco",
            "  step 5: disco: not available (no S2S layer)",
            "  step 9: guess the wave service JID: wave.b.test",
            "  step 10: SRV _xmpp-server._tcp.wave.b.test -> 10 0 5269 wave.b.test.",
            "  step 10: A/AAAA wave.b.test -> 127.0.0.3",
            "  step 11: wave.b.test is at 127.0.0.3:5269, where step 5 connected: reuse it",
            "  step 12: use wave.b.test at 127.0.0.3:5269",
            "b.test: wave service wave.b.test at 127.0.0.3:5269",
        ])

    @defer.inlineCallbacks
    def test_disco_answer_is_used(self):
        asked = []

        def disco(domain, endpoints):
            asked.append((domain, [str(e) for e in endpoints]))
            return defer.succeed("wave.b.test")
        status, lines = yield self.check("b.test", disco=disco)
        self.assertEqual(status, 0)
        self.assertEqual(asked, [("b.test", ["127.0.0.3:5269"])])
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


class CheckCommandLineTests(unittest.TestCase):
    """The real command, in a child process, against the zone server in this reactor."""

    @defer.inlineCallbacks
    def setUp(self):
        self.zone = yield ZoneServer.start(records=standard_records({"b.test": 5269}))
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
        self.assertIn("  step 1: SRV _xmpp-server._tcp.b.test -> 10 0 5269 wave.b.test.", lines)
        self.assertIn("  step 12: use wave.b.test at 127.0.0.3:5269", lines)
        self.assertEqual(lines[-1], "b.test: wave service wave.b.test at 127.0.0.3:5269")

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
                    "dns_timeout = 2\n" % (self.zone.port,))
        out, err, status = yield self.run_wavebox("check", "--config", path, "b.test")
        self.assertEqual(status, 0, (out, err))
        self.assertIn(b"b.test: wave service wave.b.test at 127.0.0.3:5269", out)


class ArgumentTests(unittest.SynchronousTestCase):

    def capture_stderr(self):
        err = io.StringIO()
        self.patch(sys, "stderr", err)
        return err

    def test_check_is_a_wavebox_subcommand(self):
        self.assertEqual(cli.SUBCOMMANDS["check"][:2], ("wavebox.xmpp.check", "main"))

    def test_missing_domain_exits_2(self):
        err = self.capture_stderr()
        self.assertEqual(cli.main(["check"]), 2)
        self.assertIn("DOMAIN", err.getvalue())

    def test_bad_timeout_exits_2_naming_the_option(self):
        err = self.capture_stderr()
        self.assertEqual(check.main(["b.test", "--timeout", "soon"]), 2)
        self.assertIn("--timeout", err.getvalue())

    def test_bad_domain_exits_2(self):
        err = self.capture_stderr()
        self.assertEqual(check.main(["not a domain"]), 2)
        self.assertIn("DOMAIN", err.getvalue())

    def test_options_may_follow_the_domain(self):
        options = check._parser().parse_args(["b.test", "--nameserver", "127.0.0.1:5353",
                                              "--timeout", "3"])
        config = check.load_config(options)
        self.assertEqual((options.domain, config.nameserver, config.dns_timeout),
                         ("b.test", ("127.0.0.1", 5353), 3.0))

    def test_command_line_overrides_the_config_file(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("[wavebox]\ndomain = a.test\nnameserver = 127.0.0.1:5353\n"
                    "dns_timeout = 9\nwave_service_prefix = fed\n")
        options = check._parser().parse_args(["b.test", "-c", path, "--timeout", "3"])
        config = check.load_config(options)
        self.assertEqual((config.nameserver, config.dns_timeout, config.wave_service_prefix),
                         (("127.0.0.1", 5353), 3.0, "fed"))

    def test_bad_config_file_is_a_config_error(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("[wavebox]\ndomain = a.test\nnameserver = \n")
        options = check._parser().parse_args(["b.test", "-c", path])
        self.assertRaises(ConfigError, check.load_config, options)

    def test_without_config_the_system_resolver_is_used(self):
        config = check.load_config(check._parser().parse_args(["b.test"]))
        self.assertIsNone(config.nameserver)
        self.assertEqual(config.dns_timeout, 5.0)
