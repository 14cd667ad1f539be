"""
Making X.509 keys and certificates (RFC 5280), the one place that does it.

Two layers need certificates and neither may import the other: the XMPP
layer makes TLS certificates (``wavebox gencert``, the self-signed fallback
of :mod:`wavebox.xmpp.certs`), and :mod:`wavebox.crypto` makes the signing
certificates of wave protocol section 5 for new servers and tests.  Both
build the same skeleton -- subject CN, issuer, random serial, a validity
window that starts a little in the past (peers' clocks drift), SHA-256
signature -- and differ only in the extensions they ask for, so this module
knows neither XMPP nor waves: callers pass their extensions in order.

Keys are written as unencrypted PKCS#8 PEM, the form FedOne's
``certificate_private_key`` expects, so one key can serve TLS and signing.
"""

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

#: How far before "now" a new certificate becomes valid.
BACKDATE = datetime.timedelta(minutes=5)


def new_private_key(bits=2048):
    """A new RSA key (RSA, so that it can also sign deltas: SHA1withRSA)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def key_pem(key):
    """Unencrypted PKCS#8 PEM (FedOne's ``certificate_private_key`` format)."""
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def cert_pem(*certificates):
    """The certificates as PEM, one after the other (a chain: leaf first)."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def common_name(name):
    """The X.509 name ``CN=name``."""
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])


def issue(name, key, extensions, issuer=None, days=365, now=None, backdate=BACKDATE):
    """
    A certificate for ``key``'s public key with subject ``CN=name``, valid
    from ``backdate`` before ``now`` until ``days`` after it, carrying
    ``extensions`` -- ``(extension, critical)`` pairs, in that order.  Signed
    with SHA-256 by ``key`` itself unless ``issuer`` is ``(issuer_key,
    issuer_certificate)``.
    """
    now = now or datetime.datetime.now(datetime.timezone.utc)
    subject = common_name(name)
    if issuer is None:
        issuer_key, issuer_name = key, subject
    else:
        issuer_key, issuer_name = issuer[0], issuer[1].subject
    builder = (x509.CertificateBuilder()
               .subject_name(subject)
               .issuer_name(issuer_name)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - backdate)
               .not_valid_after(now + datetime.timedelta(days=days)))
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(issuer_key, hashes.SHA256())
