"""
The tests' one PKI.

- The test CA (:func:`ca`), made once per test process, issues every
  certificate the tests' servers use: TLS certificates on S2S streams, each
  for a domain and its wave service JID (``a.test`` and ``wave.a.test``,
  :func:`domain_certificate`), and delta signing certificates
  (:func:`signer`).  The in-process federation stacks, the twistd children
  and the real peers (``tests/ejabberd.py``) all take theirs from here, so
  every party can trust every other by trusting this one CA.
- :func:`ca` with another name is a CA nobody else trusts, for the tests of
  refusals.
- :func:`chains` holds the certificate shapes of the path-validation tests
  (intermediates, several roots, one-off certificates made at a fixed
  "now"), and the ``APACHE_*`` constants are the Apache Wave crypto test
  fixtures behind the protocol's signature vectors.
"""

import base64
import datetime
import functools
import os

from wavebox import certgen, crypto
from wavebox.xmpp import certs

TEST_CA = "Wavebox Federation Test CA"


def ca(name=TEST_CA):
    """(key, certificate) of the tests' CA; another ``name`` is a CA of its own."""
    return _ca(name)


@functools.lru_cache(maxsize=None)
def _ca(name):
    return certs.make_ca(name)


def domain_certificate(domain, ca_name=TEST_CA):
    """(key, certificate) for ``domain`` and ``wave.domain``, issued by the CA ``ca_name``."""
    return _domain_certificate(domain, ca_name)


@functools.lru_cache(maxsize=None)
def _domain_certificate(domain, ca_name):
    return certs.make_server_certificate(certs.server_names(domain), ca=ca(ca_name))


@functools.lru_cache(maxsize=None)
def signer(domain):
    """A delta signer for ``domain``, its certificate (wave extension on) issued by the test CA."""
    key, certificate = crypto.generate_key_and_certificate(domain, issuer=ca(), key_size=1024)
    return crypto.Signer(key, [certificate, ca()[1]], domain)


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return path


def write_domain_files(domain, directory):
    """
    ``cert.pem`` (the domain's certificate, then the CA's), ``key.pem`` and
    ``ca.pem`` in ``directory``, as wavebox's --certificate, --private-key
    and --trusted-ca take them; their paths, in that order.
    """
    key, certificate = domain_certificate(domain)
    ca_certificate = ca()[1]
    paths = tuple(os.path.join(directory, name) for name in ("cert.pem", "key.pem", "ca.pem"))
    for path, data in zip(paths, (certs.cert_pem(certificate, ca_certificate),
                                  certs.key_pem(key), certs.cert_pem(ca_certificate))):
        _write(path, data)
    return paths


def write_ca_file(directory, name=TEST_CA):
    """The CA ``name``'s certificate as PEM in ``directory`` (made if need be); its path."""
    os.makedirs(directory, exist_ok=True)
    stem = "".join(c if c.isalnum() else "-" for c in name)
    return _write(os.path.join(directory, stem + ".crt"), certs.cert_pem(ca(name)[1]))


def write_certificate_files(domain, directory, ca_name=TEST_CA):
    """
    ``DOMAIN.crt`` (the certificate for ``domain`` and ``wave.domain`` alone,
    no chain) and ``DOMAIN.key`` in ``directory``; their paths, in that order.
    """
    os.makedirs(directory, exist_ok=True)
    key, certificate = domain_certificate(domain, ca_name)
    return (_write(os.path.join(directory, domain + ".crt"), certs.cert_pem(certificate)),
            _write(os.path.join(directory, domain + ".key"), certs.key_pem(key)))


# --- certificate paths, at a fixed time -------------------------------------

NOW = datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)


class Chains:
    """
    The certificates of the path-validation tests, made at :data:`NOW`.  Two
    roots, both trusted where a test says so; an intermediate under
    ``root``; leaves for a.test (with the critical wave extension) under
    ``root`` and under ``intermediate``; ``other_leaf`` (b.test) under
    ``root``; ``untrusted``, a root nobody trusts; and :meth:`issue` for
    one-off certificates (expired, not a CA, ...).
    """

    def __init__(self):
        make = crypto.generate_key_and_certificate
        self.root_key, self.root = make(
            "Test Root", key_size=1024, ca=True, wave_extension=False, now=NOW)
        self.leaf_key, self.leaf = make(
            "a.test", key_size=1024, issuer=(self.root_key, self.root), now=NOW)
        self.other_key, self.self_signed = make("a.test", key_size=1024, now=NOW)
        self.other_root_key, self.other_root = make(
            "Other Root", key_size=1024, ca=True, wave_extension=False, now=NOW)
        self.intermediate_key, self.intermediate = self.issue(
            "Test Intermediate", (self.root_key, self.root), ca=True)
        _, self.leaf_via_intermediate = make(
            "a.test", key_size=1024, issuer=(self.intermediate_key, self.intermediate),
            now=NOW)
        _, self.other_leaf = self.issue("b.test", (self.root_key, self.root))
        self.untrusted_key, self.untrusted = make(
            "Untrusted Root", key_size=1024, ca=True, wave_extension=False, now=NOW)

    def issue(self, name, issuer, ca=False, path_length=None, key_usage=None,
              now=NOW, days=365, backdate=datetime.timedelta(days=1)):
        """
        ``(key, certificate)`` for ``name``, issued by ``issuer`` = (key,
        certificate), valid from ``backdate`` before ``now`` for ``days``;
        ``key_usage`` is a dict of ``x509.KeyUsage`` flags set (the rest off).
        """
        from cryptography import x509
        key = certgen.new_private_key(1024)
        extensions = [(x509.BasicConstraints(ca=ca, path_length=path_length), True)]
        if key_usage is not None:
            flags = dict.fromkeys(
                ["digital_signature", "content_commitment", "key_encipherment",
                 "data_encipherment", "key_agreement", "key_cert_sign", "crl_sign",
                 "encipher_only", "decipher_only"], False)
            flags.update(key_usage)
            extensions.append((x509.KeyUsage(**flags), True))
        return key, certgen.issue(name, key, extensions, issuer=issuer, days=days,
                                  now=now, backdate=backdate)


@functools.lru_cache(maxsize=None)
def chains():
    """The :class:`Chains`, made once: RSA key generation is the slow part."""
    return Chains()


# --- the Apache Wave fixtures -------------------------------------------------
# Certificates and key from the Apache Wave crypto tests (WIAB
# wave/src/test/java/org/waveprotocol/wave/crypto/CertConstants.java), as
# base64 DER: the fixtures behind the signer-id and signature vectors of the
# wave protocol notes, section 9.  RSA-1024 with SHA-1, valid 2009-01-26 to
# 2019-01-24; the server certificate is X.509 v1.

APACHE_SERVER_CERT = base64.b64decode(
    "MIIBoDCCAQkCAlJKMA0GCSqGSIb3DQEBBQUAMBoxGDAWBgNVBAMTD0ludGVybWVkaWF0ZSBD"
    "QTAeFw0wOTAxMjYwMTIxNTdaFw0xOTAxMjQwMTIxNTdaMBYxFDASBgNVBAMTC1NlcnZlciBD"
    "ZXJ0MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDHRD5/GaTA1Li56i6Yw4/cJzH82rMc"
    "vy4T9UNeeAQaxafqNqomRvgItjYUAfHCTFUZJKiL/Wy9cnyZ7vjII33yE29khkrQiOcW8PIQ"
    "eelzjFJ1uUR3Top5CpF77IWplZdPM97bmF16BZzIsTqKEyzwssdLLoPW4wJEm3pcNZokcwID"
    "AQABMA0GCSqGSIb3DQEBBQUAA4GBAMrTM5YwMKqeTKRBs9ssqhLFphCoIDS4AQJgOduLZLme"
    "saPgTx1C2NN0Q7qyOe2TDXeiVgUBtholCt7hpHQh7C6d+sl7hzAWRJjwcCfyEL1VqImpx3R+"
    "hbr0jkYyYda8lBIBK0TnRN+d7PTprAyDr0B5Qef2qGG49TdF5w+isreU"
)

APACHE_SERVER_KEY = base64.b64decode(
    "MIICdwIBADANBgkqhkiG9w0BAQEFAASCAmEwggJdAgEAAoGBAMdEPn8ZpMDUuLnqLpjDj9wn"
    "Mfzasxy/LhP1Q154BBrFp+o2qiZG+Ai2NhQB8cJMVRkkqIv9bL1yfJnu+MgjffITb2SGStCI"
    "5xbw8hB56XOMUnW5RHdOinkKkXvshamVl08z3tuYXXoFnMixOooTLPCyx0sug9bjAkSbelw1"
    "miRzAgMBAAECgYA3dYbvWPPBt3KyS7ssSUGAxGflN/khxxPL+jcF0+FQkjJpvU0d2iKuSghD"
    "CUeADD6jANDoJWBeWb7UGO6kxTwH5ZDL24X5jbArrodLHPOA8bjwLxhi1lK7FnDKJCTta1IX"
    "U5l1igpX38Y/tW1U7rmBMdSsFznWPuuWFF51aUhgAQJBAPjV9kr+/W5CIXZLFT+o2YZxN53Y"
    "DtCHTCnBXU6A+0ytnhDLZV6+hkYm1l4W+ZAgspaGzbJTqm19od/uGx/UWTMCQQDNAO70+5W/"
    "VgGfqcPtBcvNYFFOgNDucIRUEiHqm1btTHY42PKVPl0mVhDtAUkoH1TbRXWu2xmykrZ+oMbQ"
    "o4fBAkBxllnjShqtpgpYUVXVxWHmePAGYYYBsoEV3mqVV1NfYTFyQSZ45Uet5jScpqgtHn/n"
    "LonfCUoWyO6Hpc1D7k75AkEAuFyQiaz/3NTCHQ6VbsF5qTdnp4vdWbHCr8Cm08/jewD6iOFC"
    "N8mgB+v6yMoROo4CyDdNQHU2RQwAJxz774JBgQJBANlyS8pf4UnlJwm95H1YcZy1JH4+TI4p"
    "b8nE5+7ej03OKGjqt0vr2LEXAHSrbDWCT/QL1lY/0zi4OxRB8IMy4WA="
)

APACHE_INTERMEDIATE_CERT = base64.b64decode(
    "MIIBtjCCAR+gAwIBAgICBCowDQYJKoZIhvcNAQEFBQAwEjEQMA4GA1UEAxMHUm9vdCBDQTAe"
    "Fw0wOTAxMjYwMTIxNTdaFw0xOTAxMjQwMTIxNTdaMBoxGDAWBgNVBAMTD0ludGVybWVkaWF0"
    "ZSBDQTCBnzANBgkqhkiG9w0BAQEFAAOBjQAwgYkCgYEA2L+QnHV7ZIH7QLwACk2wK+1WIK8n"
    "0OjAH/KBPsQ9wUf7NlqMpCMxJFROTBI/O7VhLh8nMp0e8m9EDUxicu3J4lHaBba0QpxvKv+U"
    "hB8XjjJQD8DZC0HpB+vlTr4iHXGWHfFQg+n6M6SnlTeLGfzqeFU1Bz30oUtuUoWGeJDdBl8C"
    "AwEAAaMTMBEwDwYDVR0TBAgwBgEB/wIBATANBgkqhkiG9w0BAQUFAAOBgQAggI9LTLVV+QOn"
    "Qa0ULNWD78iylJnxktNNkkNrR+m30I/eNaIBwy/n7s3cb9sP5pCbtAtQV9NtKE5tGP7Tra2B"
    "gCjFQkrV//0o+eKS/FrIMrgUB942a1hhRbtbb/1ZD9g3UohF5lUdUc7ry9qo9adDbtJKNu+o"
    "/Y4z8zpigyVM4Q=="
)

APACHE_ROOT_CERT = base64.b64decode(
    "MIICFTCCAX6gAwIBAgIJAIwGUa4pdgHWMA0GCSqGSIb3DQEBBQUAMBIxEDAOBgNVBAMTB1Jv"
    "b3QgQ0EwHhcNMDkwMTI2MDEyMTU3WhcNMTkwMTI0MDEyMTU3WjASMRAwDgYDVQQDEwdSb290"
    "IENBMIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDFDrZQMh7muUyC3OohMvgwcxUncGsZ"
    "WDJlmZRyWVb2RPCFXCIFjAihB2XiCFj+b7NKpGy2/yqp+Q0nNzlOYg8Dzsg0l0zeumAi5zAQ"
    "Y2Aggj/7d9165CSady+yFZEDzEvnfj9qcO4t6G4IxF1HOOS0TO7D2opCFLmOZD2K66KpLwID"
    "AQABo3MwcTAdBgNVHQ4EFgQU3PYnIJf1SMZbJtSkR0hlfNY1Dj4wQgYDVR0jBDswOYAU3PYn"
    "IJf1SMZbJtSkR0hlfNY1Dj6hFqQUMBIxEDAOBgNVBAMTB1Jvb3QgQ0GCCQCMBlGuKXYB1jAM"
    "BgNVHRMEBTADAQH/MA0GCSqGSIb3DQEBBQUAA4GBAHS42YQ5/nVi6bqDmDmVLx28D50TToaA"
    "5YaCR6nCfNgwjAja4YBuZ2WPTJ198S8ahKLGPidVCWhzvJuq1hdOexMnf5eEjs4hnh6b1fUK"
    "t60gg3iJs/49RFh32kqBSYLISDvQZIpwetNTdACmxBxX8LWnNqyMca5fv9/K/Kpi5vNM"
)
