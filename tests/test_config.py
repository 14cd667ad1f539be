"""The configuration: the fixed option names, the config file, validation."""

import io
import os
import sys

from twisted.plugin import getPlugins
from twisted.application.service import IServiceMaker
from twisted.trial import unittest

from wavebox import config


class OptionsTests(unittest.TestCase):

    def parse(self, *argv):
        o = config.Options()
        o.parseOptions(list(argv))
        return o.config()

    def test_fixed_option_names_are_accepted(self):
        ca = self.mktemp()
        with open(ca, "w") as f:
            f.write("x")
        c = self.parse("--domain", "a.test", "--data-dir", "/tmp/x", "--s2s-interface",
                       "127.0.0.2", "--s2s-port", "5270", "--trusted-ca", ca,
                       "--tls-required", "no", "--nameserver", "127.0.0.1:5353",
                       "--xmpp_server_ping", "b.test", "--xmpp-server-ping", "c.test")
        self.assertEqual(c.domain, ["a.test"])
        self.assertEqual(c.s2s_port, 5270)
        self.assertEqual(c.s2s_interface, "127.0.0.2")
        self.assertFalse(c.tls_required)
        self.assertEqual(c.nameserver, ("127.0.0.1", 5353))
        self.assertEqual(c.xmpp_server_ping, ["b.test", "c.test"])
        self.assertEqual(c.trusted_ca, ca)

    def test_domain_is_repeatable_and_lower_cased(self):
        c = self.parse("--domain", "A.Test", "--domain", "b.test")
        self.assertEqual(c.domain, ["a.test", "b.test"])

    def test_defaults(self):
        c = self.parse("--domain", "a.test")
        self.assertEqual(c.s2s_port, 5269)
        self.assertTrue(c.tls_required)
        self.assertEqual(c.service_jid("a.test"), "wave.a.test")
        self.assertEqual((c.console_interface, c.console_port), ("127.0.0.1", 9876))
        self.assertEqual(c.store, "sqlite:wavebox.sqlite3")

    def test_bad_value_names_the_option(self):
        e = self.assertRaises(config.ConfigError, self.parse, "--domain", "a.test",
                              "--s2s-port", "many")
        self.assertIn("--s2s-port", str(e))
        self.assertEqual(len(str(e).splitlines()), 1)

    def test_missing_domain_is_an_error(self):
        e = self.assertRaises(config.ConfigError, self.parse)
        self.assertIn("--domain", str(e))

    def test_config_file_is_overridden_by_command_line(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("[wavebox]\ndomain = a.test, b.test\ns2s_port = 5300\n"
                    "xmpp_server_ping = c.test\ntls-required = no\n")
        c = self.parse("--config", path, "--s2s-port", "5400")
        self.assertEqual(c.domain, ["a.test", "b.test"])
        self.assertEqual(c.s2s_port, 5400)
        self.assertEqual(c.xmpp_server_ping, ["c.test"])
        self.assertFalse(c.tls_required)

    def test_bad_value_in_config_file_names_the_key(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("[wavebox]\ndomain = a.test\ntls_required = maybe\n")
        e = self.assertRaises(config.ConfigError, self.parse, "--config", path)
        self.assertIn("tls_required", str(e))

    def test_unknown_key_in_config_file_is_an_error(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("[wavebox]\ndomain = a.test\nfrobnicate = 1\n")
        e = self.assertRaises(config.ConfigError, self.parse, "--config", path)
        self.assertIn("frobnicate", str(e))

    def test_misspelt_key_in_config_file_suggests_the_real_one(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("[wavebox]\ndomain = a.test\nconsole_prot = 9871\n")
        e = self.assertRaises(config.ConfigError, self.parse, "--config", path)
        self.assertEqual(str(e), "console_prot: unknown option in %s "
                                 "(did you mean console_port?)" % (path,))

    def test_example_config_file_is_valid(self):
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        c = self.parse("--config", os.path.join(here, "etc", "wavebox.conf.example"))
        self.assertTrue(c.domain)

    def test_example_config_file_documents_every_option(self):
        # Issue 3: etc/wavebox.conf.example is "documented line by line":
        # each key appears (set or commented out) under a comment of its own.
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        with open(os.path.join(here, "etc", "wavebox.conf.example")) as f:
            lines = f.read().splitlines()
        for option in config.OPTIONS:
            if option.key == "config":
                continue
            at = [i for i, line in enumerate(lines)
                  if line.lstrip("#").split("=")[0].strip() == option.key]
            self.assertTrue(at, "%s is not in the example config" % (option.key,))
            above = lines[:at[0]]
            while above and above[-1].lstrip("#").split("=")[0].strip() in config.options_by_key():
                above.pop()
            self.assertTrue(above and above[-1].startswith("# "),
                            "%s has no comment above it" % (option.key,))

    def test_fixed_option_names_work_as_config_keys(self):
        ca = self.mktemp()
        with open(ca, "w") as f:
            f.write("x")
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("[wavebox]\ndomain = a.test\ndata_dir = /tmp/x\ns2s_interface = 127.0.0.2\n"
                    "s2s_port = 5270\ncertificate = %s\nprivate_key = %s\ntrusted_ca = %s\n"
                    "tls_required = no\nnameserver = 127.0.0.1:5353\n"
                    "xmpp_server_ping = b.test c.test\n" % (ca, ca, ca))
        c = self.parse("--config", path)
        self.assertEqual((c.domain, c.data_dir, c.s2s_interface, c.s2s_port),
                         (["a.test"], "/tmp/x", "127.0.0.2", 5270))
        self.assertEqual((c.certificate, c.private_key, c.trusted_ca), (ca, ca, ca))
        self.assertFalse(c.tls_required)
        self.assertEqual(c.nameserver, ("127.0.0.1", 5353))
        self.assertEqual(c.xmpp_server_ping, ["b.test", "c.test"])
        self.assertEqual(c.config, path)

    def test_help_lists_every_option(self):
        text = str(config.Options())
        for option in config.OPTIONS:
            self.assertIn("--" + option.name, text)

    def test_help_shows_short_forms_beside_long_ones(self):
        text = str(config.Options())
        self.assertIn("-c, --config=", text)
        self.assertIn("-d, --domain=", text)

    def test_short_form_sets_the_same_option(self):
        self.assertEqual(self.parse("-d", "a.test").domain, ["a.test"])

    def test_unknown_option_is_one_line_without_the_usage_text(self):
        err = io.StringIO()
        self.patch(sys, "stderr", err)
        e = self.assertRaises(SystemExit, self.parse, "--domain", "a.test", "--frobnicate", "1")
        self.assertEqual(e.code, 2)
        self.assertEqual(err.getvalue().count("\n"), 1)
        self.assertIn("--frobnicate", err.getvalue())
        self.assertNotIn("--s2s-port", err.getvalue())

    def test_option_without_its_value_is_one_line(self):
        err = io.StringIO()
        self.patch(sys, "stderr", err)
        self.assertRaises(SystemExit, self.parse, "--domain", "a.test", "--s2s-port")
        self.assertEqual(err.getvalue().splitlines(),
                         ["wavebox: option --s2s-port requires argument "
                          "('twistd wavebox --help' lists the options)"])


class PluginTests(unittest.TestCase):

    def test_twistd_finds_the_wavebox_plugin(self):
        import twisted.plugins
        names = [p.tapname for p in getPlugins(IServiceMaker, twisted.plugins)]
        self.assertIn("wavebox", names)
