"""``wavebox gencert``, the self-signed fallback, and the TLS policy built from them."""

import datetime
import io
import os
import stat
import sys

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.trial import unittest

from tests.helpers import LogWatch
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
        logs = LogWatch(self)
        data = self.mktemp()
        config = load({"domain": ["a.test"], "data_dir": data})
        policy = tls.policy_from_config(config, ["a.test", "wave.a.test"])
        self.assertTrue(policy.required)
        self.assertTrue(os.path.exists(os.path.join(data, "tls", certs.SELF_SIGNED_CERT)))
        self.assertEqual(logs.count("Peers that check certificates will not trust"), 1)

    def test_certificate_for_another_domain_is_a_warning_at_start_up(self):
        logs = LogWatch(self)
        out = self.mktemp()
        cert_path, key_path = certs.gencert("b.test", out=out)
        config = load({"domain": ["a.test"], "data_dir": self.mktemp(),
                       "certificate": cert_path, "private_key": key_path})
        tls.policy_from_config(config, ["a.test", "wave.a.test"])
        self.assertEqual(logs.count(
            "certificate %s does not name a.test, wave.a.test (it names b.test, "
            "wave.b.test)" % (cert_path,)), 1)

    def test_wildcard_certificate_names_the_wave_service(self):
        logs = LogWatch(self)
        directory = self.mktemp()
        cert_path, key_path = certs.ensure_self_signed(directory, ["a.test", "*.a.test"])
        config = load({"domain": ["a.test"], "data_dir": self.mktemp(),
                       "certificate": cert_path, "private_key": key_path})
        tls.policy_from_config(config, ["a.test", "wave.a.test"])
        self.assertEqual(logs.count("does not name"), 0)

    def test_tls_required_no_warns(self):
        logs = LogWatch(self)
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


class CertificateForRealDeploymentsTests(unittest.TestCase):
    """Issue 13 item 8: names peers compare exactly, ACME certificates, expiry."""

    def acme_dir(self, domain, names=None, days=90, key=None, ca=True):
        """An ACME client's live directory (certbot's layout) for ``domain``."""
        live = os.path.abspath(self.mktemp())
        issuer = certs.make_ca("Test ACME CA") if ca else None
        key = key or certs.new_private_key()
        _, leaf = certs.make_server_certificate(names or [domain, "wave." + domain],
                                                key=key, ca=issuer, days=days)
        chain = certs.cert_pem(leaf, issuer[1]) if issuer else certs.cert_pem(leaf)
        certs.write_file(os.path.join(live, domain, "fullchain.pem"), chain)
        certs.write_file(os.path.join(live, domain, "privkey.pem"), certs.key_pem(key),
                         private=True)
        return live

    def cert(self, *argv):
        from wavebox.cli import cert
        out, err = io.StringIO(), io.StringIO()
        self.patch(sys, "stderr", err)
        return cert.main(list(argv), out=out), out.getvalue(), err.getvalue()

    def test_gencert_writes_lower_case_names_and_a_cn(self):
        out = self.mktemp()
        self.assertEqual(cli.main(["gencert", "A.Test", "--wave-service-prefix", "Wave",
                                   "--out", out]), 0)
        leaf = certs.load_certificate(os.path.join(out, "a.test.crt"))
        self.assertEqual(certs.certificate_names(leaf), ["a.test", "wave.a.test"])
        self.assertEqual(leaf.subject.rfc4514_string(), "CN=a.test")

    def test_import_copies_the_acme_chain_and_the_server_uses_it(self):
        live = self.acme_dir("a.test")
        data = os.path.abspath(self.mktemp())
        status, out, err = self.cert("import", "a.test", live, "--data-dir", data)
        self.assertEqual((status, err), (0, ""))
        self.assertIn("restart wavebox to use it", out)
        cert_path, key_path = certs.imported_files(data, "a.test")
        self.assertEqual(os.stat(key_path).st_mode & 0o777, 0o600)
        with open(cert_path, "rb") as f, \
                open(os.path.join(live, "a.test", "fullchain.pem"), "rb") as g:
            self.assertEqual(f.read(), g.read())
        config = load({"domain": ["a.test"], "data_dir": data})
        self.assertEqual(certs.certificate_files(config, ["a.test", "wave.a.test"]),
                         (cert_path, key_path))

    def test_import_refuses_a_certificate_for_another_domain(self):
        live = self.acme_dir("a.test", names=["b.test"])
        status, out, err = self.cert("import", "a.test", live, "--data-dir", self.mktemp())
        self.assertEqual(status, 1)
        self.assertIn("does not name a.test (it names b.test)", err)

    def test_import_refuses_an_expired_certificate(self):
        live = self.acme_dir("a.test", days=90)
        later = certs._now() + datetime.timedelta(days=91)
        self.patch(certs, "_now", lambda: later)
        status, out, err = self.cert("import", "a.test", live, "--data-dir", self.mktemp())
        self.assertEqual(status, 1)
        self.assertIn("expired on", err)

    def test_import_refuses_a_key_that_is_not_the_certificates(self):
        live = self.acme_dir("a.test")
        certs.write_file(os.path.join(live, "a.test", "privkey.pem"),
                         certs.key_pem(certs.new_private_key()), private=True)
        status, out, err = self.cert("import", "a.test", live, "--data-dir", self.mktemp())
        self.assertEqual(status, 1)
        self.assertIn("is not the key of the certificate", err)

    def test_import_warns_when_the_wave_service_is_not_named(self):
        live = self.acme_dir("a.test", names=["a.test"])
        status, out, err = self.cert("import", "a.test", live, "--data-dir", self.mktemp())
        self.assertEqual(status, 0, err)
        self.assertIn("warning: it does not name wave.a.test", out)

    def test_a_certificate_expiring_within_14_days_is_a_start_up_warning(self):
        for days, warned in ((10, 1), (20, 0)):
            logs = LogWatch(self)
            key, leaf = certs.make_server_certificate(["a.test", "wave.a.test"], days=days)
            out = self.mktemp()
            os.makedirs(out)
            cert_path, key_path = os.path.join(out, "c.crt"), os.path.join(out, "c.key")
            certs.write_file(cert_path, certs.cert_pem(leaf))
            certs.write_file(key_path, certs.key_pem(key), private=True)
            config = load({"domain": ["a.test"], "data_dir": self.mktemp(),
                           "certificate": cert_path, "private_key": key_path})
            tls.policy_from_config(config, ["a.test", "wave.a.test"])
            self.assertEqual(logs.count("expires on"), warned, days)
