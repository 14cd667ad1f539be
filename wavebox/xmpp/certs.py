"""
Certificates for server-to-server TLS: what ``wavebox gencert`` makes
(:mod:`wavebox.cli.gencert`), and the self-signed certificate the server makes for itself when none is configured.

A wavebox certificate names the hosted domain and its wave service JID as
DNS subjectAltNames (RFC 6125 DNS-IDs; ``service_identity`` has no pattern
for the XMPP ``id-on-xmppAddr`` otherName, and peers such as Prosody accept
DNS-IDs).  Keys are RSA in PKCS#8 PEM, the form FedOne's
``certificate_private_key`` expects, so the same key can later sign deltas.

``wavebox gencert --make-ca NAME`` makes a small CA for test federations:
give its certificate to every server as ``trusted_ca`` and sign each
server's certificate with it (``wavebox gencert DOMAIN --ca-cert --ca-key``).
"""

import datetime
import os
import re

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

# X.509 generation lives in a module that knows no waves; these names are
# part of this module's API (tests and benchmarks use certs.key_pem etc.).
from wavebox.certgen import cert_pem, issue, key_pem, new_private_key  # noqa: F401

#: Under the data dir, where the self-signed certificate and key live.
SELF_SIGNED_DIR = "tls"
SELF_SIGNED_CERT = "self-signed.crt"
SELF_SIGNED_KEY = "self-signed.key"
RENEW_BEFORE = datetime.timedelta(days=30)


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def server_names(domain, prefix="wave"):
    """The names a server certificate for ``domain`` covers: it and its wave service JID."""
    return [domain, "%s.%s" % (prefix, domain)]


def make_ca(name, key=None, days=3650):
    """A CA certificate (and its key) that can sign server certificates."""
    key = key or new_private_key()
    certificate = issue(name, key, [
        (x509.BasicConstraints(ca=True, path_length=0), True),
        (x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True,
            crl_sign=True, encipher_only=False, decipher_only=False), True),
        (x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False),
    ], days=days)
    return key, certificate


def make_server_certificate(names, key=None, ca=None, days=365):
    """
    A certificate for the server that answers for ``names`` (the first is the
    subject CN).  ``ca`` is ``(ca_key, ca_certificate)``; without it the
    certificate is self-signed.  Both server and client authentication are
    allowed: on S2S streams a server presents it in both roles.
    """
    key = key or new_private_key()
    issuer_public_key = key.public_key() if ca is None else ca[1].public_key()
    certificate = issue(names[0], key, [
        (x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False),
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=True,
            data_encipherment=False, key_agreement=False, key_cert_sign=False,
            crl_sign=False, encipher_only=False, decipher_only=False), True),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                ExtendedKeyUsageOID.CLIENT_AUTH]), False),
        (x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False),
        (x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public_key), False),
    ], issuer=ca, days=days)
    return key, certificate


def write_file(path, data, private=False):
    """Write atomically; private files are readable by their owner only."""
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, mode=0o700 if private else 0o755, exist_ok=True)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def load_certificate(path):
    with open(path, "rb") as f:
        return x509.load_pem_x509_certificates(f.read())[0]


def load_private_key(path):
    with open(path, "rb") as f:
        return serialization.load_pem_private_key(f.read(), password=None)


def certificate_names(certificate):
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return san.value.get_values_for_type(x509.DNSName)


def ensure_self_signed(directory, names, days=365):
    """
    The paths of a self-signed certificate and key for ``names`` in
    ``directory``: the existing pair while it covers every name and is not
    about to expire, else a new one.
    """
    cert_path = os.path.join(directory, SELF_SIGNED_CERT)
    key_path = os.path.join(directory, SELF_SIGNED_KEY)
    try:
        certificate = load_certificate(cert_path)
        load_private_key(key_path)
    except (OSError, ValueError, IndexError):
        certificate = None
    if certificate is not None:
        covers = set(names) <= set(certificate_names(certificate))
        fresh = certificate.not_valid_after_utc - _now() > RENEW_BEFORE
        if covers and fresh:
            return cert_path, key_path
    key, certificate = make_server_certificate(list(names), days=days)
    write_file(key_path, key_pem(key), private=True)
    write_file(cert_path, cert_pem(certificate))
    return cert_path, key_path


def imported_files(data_dir, domain):
    """Where ``wavebox cert import`` keeps ``domain``'s chain and key."""
    directory = os.path.join(data_dir, SELF_SIGNED_DIR)
    return os.path.join(directory, domain + ".crt"), os.path.join(directory, domain + ".key")


def certificate_files(config, names):
    """
    The (certificate chain PEM path, private key PEM path) that speak for
    ``names``: the configured ``certificate``/``private_key`` files, else the
    pair ``wavebox cert import`` put under ``DATA_DIR/tls`` for the first
    hosted domain, else the self-signed pair kept there (see
    ensure_self_signed).  TLS and delta signing both ask here, so they always
    use the same pair.
    """
    if config.certificate:
        return config.certificate, config.private_key
    if config.domains:
        imported = imported_files(config.data_dir, config.domains[0])
        if all(os.path.isfile(p) for p in imported):
            return imported
    return ensure_self_signed(os.path.join(config.data_dir, SELF_SIGNED_DIR), names)


# --- wavebox cert import -------------------------------------------------------

#: Where an ACME client keeps what it got (certbot's layout; prosodyctl cert
#: import looks there too).
ACME_LIVE = "/etc/letsencrypt/live"

#: The file names an ACME client's directory may use: (chain, key).
_ACME_NAMES = [("fullchain.pem", "privkey.pem"), ("{d}.crt", "{d}.key"),
               ("fullchain.cer", "{d}.key"), ("{d}.pem", "{d}.key")]


class ImportRefused(Exception):
    """The certificate cannot be used for the domain; the text says why."""


def find_acme_files(domain, directory=ACME_LIVE):
    """The (chain, key) paths for ``domain`` under an ACME client's directory."""
    for base in (os.path.join(directory, domain), directory):
        for chain, key in _ACME_NAMES:
            paths = (os.path.join(base, chain.format(d=domain)),
                     os.path.join(base, key.format(d=domain)))
            if all(os.path.isfile(p) for p in paths):
                return paths
    raise ImportRefused("no certificate for %s in %s (looked for %s)" % (
        domain, directory, ", ".join("%s + %s" % (c.format(d=domain), k.format(d=domain))
                                     for c, k in _ACME_NAMES)))


def import_certificate(domain, chain_path, key_path, data_dir, names, now=None):
    """
    Check an ACME client's chain and key for ``domain`` and copy them where
    the server looks (:func:`imported_files`, key mode 0600).  Refuses a
    chain that does not name ``domain``, has expired, or does not match the
    key.  Returns ``(cert path, key path, leaf, names the leaf lacks)``.
    """
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    with open(chain_path, "rb") as f:
        chain_pem = f.read()
    with open(key_path, "rb") as f:
        key_pem_data = f.read()
    try:
        chain = x509.load_pem_x509_certificates(chain_pem)
        key = serialization.load_pem_private_key(key_pem_data, password=None)
    except ValueError as e:
        raise ImportRefused("cannot read %s or %s: %s" % (chain_path, key_path, e))
    leaf = chain[0]
    der = (Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    if leaf.public_key().public_bytes(*der) != key.public_key().public_bytes(*der):
        raise ImportRefused("%s is not the key of the certificate in %s" % (key_path,
                                                                           chain_path))
    has = [n.lower() for n in certificate_names(leaf)]
    if not any(name_matches(pattern, domain) for pattern in has):
        raise ImportRefused("the certificate in %s does not name %s (it names %s)"
                            % (chain_path, domain, ", ".join(has) or "nothing"))
    now = now or _now()
    if leaf.not_valid_after_utc <= now:
        raise ImportRefused("the certificate in %s expired on %s" % (
            chain_path, leaf.not_valid_after_utc.date().isoformat()))
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ImportRefused("the key in %s is not RSA: wave deltas are signed with "
                            "SHA1withRSA by the same key (ask the ACME client for an RSA "
                            "key, e.g. certbot --key-type rsa)" % (key_path,))
    missing = [n for n in names if not any(name_matches(p, n) for p in has)]
    cert_out, key_out = imported_files(data_dir, domain)
    write_file(key_out, key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()), private=True)
    write_file(cert_out, chain_pem)
    return cert_out, key_out, leaf, missing


def name_matches(pattern, name):
    """RFC 6125 DNS-ID matching: exact, or a wildcard for one leftmost label."""
    pattern, name = pattern.lower().rstrip("."), name.lower().rstrip(".")
    if pattern.startswith("*."):
        return "." in name and name.split(".", 1)[1] == pattern[2:]
    return pattern == name


# --- wavebox gencert ---------------------------------------------------------

def _file_stem(name):
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")
    return stem or "ca"


def gencert(domain, out=".", ca_cert=None, ca_key=None, days=365, prefix="wave"):
    """Write ``DOMAIN.key`` and ``DOMAIN.crt`` into ``out``; return their paths."""
    ca = None
    if ca_cert:
        ca = (load_private_key(ca_key), load_certificate(ca_cert))
    key, certificate = make_server_certificate(server_names(domain, prefix), ca=ca, days=days)
    key_path = os.path.join(out, domain + ".key")
    cert_path = os.path.join(out, domain + ".crt")
    write_file(key_path, key_pem(key), private=True)
    write_file(cert_path, cert_pem(certificate))
    return cert_path, key_path


def gencert_ca(name, out=".", days=3650):
    """Write ``NAME.key`` and ``NAME.crt`` of a new CA into ``out``; return their paths."""
    key, certificate = make_ca(name, days=days)
    stem = _file_stem(name)
    key_path = os.path.join(out, stem + ".key")
    cert_path = os.path.join(out, stem + ".crt")
    write_file(key_path, key_pem(key), private=True)
    write_file(cert_path, cert_pem(certificate))
    return cert_path, key_path
