"""
The domain certificate: one place that answers "which certificate chain and
private key speak for our domains?", for both users of it -- STARTTLS on XMPP
server-to-server streams and the signing of deltas (wave protocol section 5).

With ``--certificate``/``--private-key`` configured, those files are the
answer.  Without them a self-signed certificate is generated once in the data
dir, naming every hosted domain and its wave service JID (``wave.DOMAIN``) as
DNS subjectAltNames.  The key is RSA (SHA1withRSA is the only delta signature
algorithm, section 5) and written as unencrypted PKCS#8 PEM, the form FedOne's
``make_cert.sh`` produced.  Peers trust such a certificate only when told to;
it exists so that a fresh server runs, and signs its deltas, with no set-up.
"""

import datetime
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

CERT_FILE = "selfsigned-cert.pem"
KEY_FILE = "selfsigned-key.pem"

# Long enough that an operator never meets an expiry by surprise; a
# self-signed certificate is trusted by explicit configuration, not by date.
VALIDITY = datetime.timedelta(days=3650)


def certificate_names(config):
    """Every DNS name the certificate must carry: each domain and its wave JID."""
    names = []
    for domain in config.domains:
        for name in (domain, config.service_jid(domain)):
            if name not in names:
                names.append(name)
    return names


def ensure_certificate(config):
    """
    The (certificate chain PEM path, private key PEM path) for our domains.

    A generated certificate is made again when the hosted domains have changed
    since it was made, so it always names every domain we serve.
    """
    if config.certificate:
        return config.certificate, config.private_key
    directory = config.data_dir
    os.makedirs(directory, exist_ok=True)
    cert_path = os.path.join(directory, CERT_FILE)
    key_path = os.path.join(directory, KEY_FILE)
    names = certificate_names(config)
    if _usable(cert_path, key_path, names):
        return cert_path, key_path
    cert_pem, key_pem = make_self_signed(names)
    _write_private(key_path, key_pem)
    _write_atomically(cert_path, cert_pem, 0o644)
    return cert_path, key_path


def make_self_signed(names, key_size=2048, now=None):
    """A self-signed RSA certificate (PEM, PKCS#8 key PEM) for ``names``; CN = names[0]."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = now or datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert_pem, key_pem


def _usable(cert_path, key_path, names):
    """True when both files exist, parse, match, and the cert names every name."""
    try:
        with open(cert_path, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        with open(key_path, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
    except (OSError, ValueError):
        return False
    if cert.public_key().public_numbers() != key.public_key().public_numbers():
        return False
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return False
    present = set(san.value.get_values_for_type(x509.DNSName))
    return set(names) <= present


def _write_private(path, data):
    _write_atomically(path, data, 0o600)


def _write_atomically(path, data, mode):
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
