"""Component mode options (--component, --component-secret, --component-jid) and wiring."""

from twisted.trial import unittest

from wavebox import config, service
from wavebox.xmpp.component import ExternalComponent


def parse(*argv):
    o = config.Options()
    o.parseOptions(list(argv))
    return o.config()


class ComponentOptionTests(unittest.SynchronousTestCase):

    def test_component_defaults_to_port_5347_and_the_wave_service_jid(self):
        c = parse("--domain", "prosody.test", "--component", "127.0.0.5",
                  "--component-secret", "s3")
        self.assertEqual(c.component, ("127.0.0.5", 5347))
        self.assertEqual(c.component_secret, "s3")
        self.assertEqual(c.component_jid, "wave.prosody.test")

    def test_component_jid_and_port_can_be_given(self):
        c = parse("--domain", "prosody.test", "--component", "127.0.0.5:5400",
                  "--component-secret", "s3", "--component-jid", "Waves.Prosody.Test")
        self.assertEqual(c.component, ("127.0.0.5", 5400))
        self.assertEqual(c.component_jid, "waves.prosody.test")

    def test_component_options_in_config_file(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("[wavebox]\ndomain = prosody.test\ncomponent = 127.0.0.5:5400\n"
                    "component_secret = s3\ncomponent_jid = wave.prosody.test\n")
        c = parse("--config", path)
        self.assertEqual(c.component, ("127.0.0.5", 5400))
        self.assertEqual(c.component_secret, "s3")

    def test_component_without_secret_is_an_error(self):
        e = self.assertRaises(config.ConfigError, parse, "--domain", "prosody.test",
                              "--component", "127.0.0.5")
        self.assertIn("--component-secret", str(e))

    def test_secret_without_component_is_an_error(self):
        e = self.assertRaises(config.ConfigError, parse, "--domain", "prosody.test",
                              "--component-secret", "s3")
        self.assertIn("--component-secret: only meaningful with --component", str(e))

    def test_component_mode_serves_one_domain(self):
        e = self.assertRaises(config.ConfigError, parse, "--domain", "a.test", "--domain",
                              "b.test", "--component", "127.0.0.5", "--component-secret", "s")
        self.assertIn("exactly one domain", str(e))

    def test_no_component_by_default(self):
        c = parse("--domain", "a.test")
        self.assertIsNone(c.component)
        self.assertIsNone(c.component_jid)


class ComponentWiringTests(unittest.SynchronousTestCase):

    def test_component_mode_runs_an_external_component(self):
        c = parse("--domain", "prosody.test", "--component", "127.0.0.5:5400",
                  "--component-secret", "s3", "--data-dir", self.mktemp())
        top = service.makeService(c)
        component = top.getServiceNamed("xmpp-component")
        self.assertIsInstance(component, ExternalComponent)
        self.assertEqual((component.host, component.port, component.jid),
                         ("127.0.0.5", 5400, "wave.prosody.test"))

    def test_s2s_mode_has_no_component(self):
        top = service.makeService(parse("--domain", "a.test", "--data-dir", self.mktemp()))
        self.assertRaises(KeyError, top.getServiceNamed, "xmpp-component")
