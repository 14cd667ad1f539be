"""
The domain certificate helper: configured files win, else the XMPP layer's
self-signed one, generated once, serves TLS and delta signing alike.
"""

import os

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.trial import unittest

from wavebox import certs, config
from wavebox.xmpp import certs as xmpp_certs


def make_config(data_dir, *domains, **extra):
    values = {"domain": list(domains), "data_dir": data_dir}
    values.update(extra)
    return config.load(values)


def sans(path):
    with open(path, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return set(ext.value.get_values_for_type(x509.DNSName))


class EnsureCertificateTests(unittest.TestCase):

    def test_generated_certificate_names_every_domain_and_wave_jid(self):
        d = self.mktemp()
        cert_path, key_path = certs.ensure_certificate(make_config(d, "a.test", "b.test"))
        self.assertEqual(sans(cert_path), {"a.test", "wave.a.test", "b.test", "wave.b.test"})
        with open(key_path, "rb") as f:
            pem = f.read()
        self.assertTrue(pem.startswith(b"-----BEGIN PRIVATE KEY-----"))  # PKCS#8
        key = serialization.load_pem_private_key(pem, password=None)
        self.assertIsInstance(key, rsa.RSAPrivateKey)
        self.assertEqual(os.stat(key_path).st_mode & 0o777, 0o600)

    def test_generated_certificate_is_reused(self):
        d = self.mktemp()
        c = make_config(d, "a.test")
        cert_path, _ = certs.ensure_certificate(c)
        with open(cert_path, "rb") as f:
            first = f.read()
        certs.ensure_certificate(c)
        with open(cert_path, "rb") as f:
            self.assertEqual(f.read(), first)

    def test_new_domain_makes_a_new_certificate(self):
        d = self.mktemp()
        certs.ensure_certificate(make_config(d, "a.test"))
        cert_path, _ = certs.ensure_certificate(make_config(d, "a.test", "c.test"))
        self.assertIn("c.test", sans(cert_path))

    def test_configured_certificate_wins(self):
        d = self.mktemp()
        os.makedirs(d)
        key, cert = xmpp_certs.make_server_certificate(["a.test"])
        cert_pem, key_pem = xmpp_certs.cert_pem(cert), xmpp_certs.key_pem(key)
        cp, kp = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
        with open(cp, "wb") as f:
            f.write(cert_pem)
        with open(kp, "wb") as f:
            f.write(key_pem)
        c = make_config(os.path.join(d, "data"), "a.test", certificate=cp, private_key=kp)
        self.assertEqual(certs.ensure_certificate(c), (cp, kp))
        self.assertFalse(os.path.exists(os.path.join(d, "data")))

    def test_generated_certificate_is_the_one_tls_uses(self):
        from wavebox.xmpp.tls import policy_from_config
        c = make_config(self.mktemp(), "a.test")
        cert_path, _ = certs.ensure_certificate(c)
        with open(cert_path, "rb") as f:
            first = f.read()
        policy = policy_from_config(c, certs.certificate_names(c))
        self.assertEqual(policy.cert_file, cert_path)
        with open(cert_path, "rb") as f:
            self.assertEqual(f.read(), first)

    def test_generated_key_signs_deltas(self):
        from wavebox.crypto import Signer
        c = make_config(self.mktemp(), "a.test")
        cert_path, key_path = certs.ensure_certificate(c)
        with open(cert_path, "rb") as f, open(key_path, "rb") as g:
            signer = Signer(g.read(), f.read(), "a.test")
        self.assertEqual(len(signer.sign(b"delta bytes").signature_bytes), 256)
