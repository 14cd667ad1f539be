"""``wavebox gencert``, the self-signed fallback, and the TLS policy built from them."""

import io
import os
import stat
import sys

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.trial import unittest

from wavebox import cli
from wavebox.config import load
from wavebox.xmpp import certs, tls


class GencertTests(unittest.SynchronousTestCase):

    def setUp(self):
        self.out = self.mktemp()
        os.makedirs(self.out)
        self.stdout = io.StringIO()
        self.patch(sys, "stdout", self.stdout)

    def run_cli(self, *argv):
        return cli.main(["gencert"] + list(argv))

    def test_gencert_is_a_wavebox_subcommand(self):
        self.assertIn("gencert", cli.SUBCOMMANDS)

    def test_self_signed_certificate_names_the_domain_and_its_wave_service(self):
        self.assertEqual(self.run_cli("b.test", "--out", self.out, "--days", "10"), 0)
        cert = certs.load_certificate(os.path.join(self.out, "b.test.crt"))
        self.assertEqual(certs.certificate_names(cert), ["b.test", "wave.b.test"])
        self.assertEqual(cert.issuer, cert.subject)
        life = cert.not_valid_after_utc - cert.not_valid_before_utc
        self.assertLess(abs(life.days - 10), 2)

    def test_key_is_rsa_pkcs8_and_private(self):
        self.run_cli("b.test", "--out", self.out)
        path = os.path.join(self.out, "b.test.key")
        with open(path, "rb") as f:
            self.assertTrue(f.read().startswith(b"-----BEGIN PRIVATE KEY-----"))
        self.assertIsInstance(certs.load_private_key(path), rsa.RSAPrivateKey)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)

    def test_certificate_signed_by_a_test_ca_verifies_with_it(self):
        self.assertEqual(self.run_cli("--make-ca", "Test CA", "--out", self.out), 0)
        ca_cert = os.path.join(self.out, "Test-CA.crt")
        ca_key = os.path.join(self.out, "Test-CA.key")
        ca = certs.load_certificate(ca_cert)
        self.assertTrue(ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
        self.assertEqual(self.run_cli("a.test", "--ca-cert", ca_cert, "--ca-key", ca_key,
                                      "--out", self.out), 0)
        leaf = certs.load_certificate(os.path.join(self.out, "a.test.crt"))
        leaf.verify_directly_issued_by(ca)
        self.assertIn("wrote", self.stdout.getvalue())

    def test_ca_certificate_without_its_key_is_refused(self):
        self.assertRaises(SystemExit, self.run_cli, "a.test", "--ca-cert", "x.crt")

    def test_domain_and_make_ca_together_are_refused(self):
        self.assertRaises(SystemExit, self.run_cli, "a.test", "--make-ca", "X")


class SelfSignedTests(unittest.SynchronousTestCase):

    def test_existing_certificate_is_kept_while_it_covers_every_name(self):
        directory = self.mktemp()
        first = certs.ensure_self_signed(directory, ["a.test", "wave.a.test"])
        with open(first[0], "rb") as f:
            before = f.read()
        certs.ensure_self_signed(directory, ["a.test"])
        with open(first[0], "rb") as f:
            self.assertEqual(f.read(), before)
        certs.ensure_self_signed(directory, ["a.test", "wave.a.test", "c.test"])
        cert = certs.load_certificate(first[0])
        self.assertEqual(certs.certificate_names(cert), ["a.test", "wave.a.test", "c.test"])

    def test_policy_from_config_makes_a_self_signed_certificate_and_warns(self):
        from tests.xmpp_fakes import LogCapture
        logs = LogCapture(self)
        data = self.mktemp()
        config = load({"domain": ["a.test"], "data_dir": data})
        policy = tls.policy_from_config(config, ["a.test", "wave.a.test"])
        self.assertTrue(policy.required)
        self.assertTrue(os.path.exists(os.path.join(data, "tls", certs.SELF_SIGNED_CERT)))
        self.assertEqual(logs.count("Peers that check certificates will not trust"), 1)

    def test_certificate_for_another_domain_is_a_warning_at_start_up(self):
        from tests.xmpp_fakes import LogCapture
        logs = LogCapture(self)
        out = self.mktemp()
        cert_path, key_path = certs.gencert("b.test", out=out)
        config = load({"domain": ["a.test"], "data_dir": self.mktemp(),
                       "certificate": cert_path, "private_key": key_path})
        tls.policy_from_config(config, ["a.test", "wave.a.test"])
        self.assertEqual(logs.count(
            "--certificate %s does not name a.test, wave.a.test (it names b.test, "
            "wave.b.test)" % (cert_path,)), 1)

    def test_wildcard_certificate_names_the_wave_service(self):
        from tests.xmpp_fakes import LogCapture
        logs = LogCapture(self)
        directory = self.mktemp()
        cert_path, key_path = certs.ensure_self_signed(directory, ["a.test", "*.a.test"])
        config = load({"domain": ["a.test"], "data_dir": self.mktemp(),
                       "certificate": cert_path, "private_key": key_path})
        tls.policy_from_config(config, ["a.test", "wave.a.test"])
        self.assertEqual(logs.count("does not name"), 0)

    def test_tls_required_no_warns(self):
        from tests.xmpp_fakes import LogCapture
        logs = LogCapture(self)
        config = load({"domain": ["a.test"], "data_dir": self.mktemp(), "tls_required": "no"})
        policy = tls.policy_from_config(config, ["a.test"])
        self.assertFalse(policy.required)
        self.assertEqual(logs.count("tls_required is off"), 1)

    def test_bad_key_file_stops_at_start_up(self):
        directory = self.mktemp()
        cert_path, key_path = certs.ensure_self_signed(directory, ["a.test"])
        other_key = certs.key_pem(certs.new_private_key())
        certs.write_file(key_path, other_key, private=True)
        self.assertRaises(Exception, tls.TLSPolicy, cert_path, key_path)
