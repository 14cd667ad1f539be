"""
Delta signing and verification, signer ids and certificate chains (wave
protocol notes section 5; WIAB ``wave/crypto/{SignerInfo, WaveSigner,
WaveSignatureVerifier, CachedCertPathValidator}``,
``CertificateManagerImpl.verifyDelta``).

A server signs the exact bytes of each serialised ProtocolWaveletDelta its
users author (SHA1withRSA, RSASSA-PKCS1-v1_5 over SHA-1), and names its
certificate chain by the *signer id*: the hash of the chain in PkiPath form
(an ASN.1 SEQUENCE OF Certificate, root first).  A receiver looks the signer
id up, checks the chain against its trusted roots, checks the signature over
the bytes as received, and checks that the certificate speaks for the
author's domain.
"""

import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtensionOID, NameOID

from wavebox import certgen, certpath
from wavebox.model.delta import SHA1_RSA, Signature, SignedDelta
from wavebox.model.errors import ModelError
from wavebox.model.signer import SHA256, SHA512, SignerInfo, pkipath, signer_id  # noqa: F401
from wavebox.wire import convert

#: The "wave" certificate extension; certificates may mark it critical so
#: that they cannot double as TLS server certificates.
WAVE_EXTENSION_OID = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.1.1")

class SignatureError(Exception):
    """A signed delta or signer info does not verify; the message says why."""


class UnknownSignerError(SignatureError):
    """No signer info is known for a signature's signer id (WIAB UnknownSignerException)."""

    def __init__(self, message, signer_id=None):
        SignatureError.__init__(self, message)
        self.signer_id = signer_id


class InvalidSignatureError(SignatureError):
    """The signature bytes do not verify, or there are too few or too many signatures."""


class AuthorityError(SignatureError):
    """The certificate is valid but does not speak for the domain it signed for."""


class CertificateChainError(SignatureError):
    """The certificate chain is malformed, expired or does not lead to a trusted root."""


# --- loading --------------------------------------------------------------------

def load_private_key(data, password=None):
    """
    An RSA private key from PEM (PKCS#8 ``BEGIN PRIVATE KEY``, as FedOne's
    make_cert.sh writes, or traditional ``BEGIN RSA PRIVATE KEY``) or DER.
    """
    if isinstance(data, str):
        data = data.encode("ascii")
    try:
        if b"-----BEGIN" in data:
            key = serialization.load_pem_private_key(data, password)
        else:
            key = serialization.load_der_private_key(data, password)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise SignatureError(f"cannot load the private key: {e}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise SignatureError(f"the signing key must be RSA (SHA1withRSA), "
                             f"not {type(key).__name__}")
    return key


def load_certificates(data):
    """Every certificate in PEM text (in order), or the one certificate of DER bytes."""
    if isinstance(data, x509.Certificate):
        return [data]
    if isinstance(data, str):
        data = data.encode("ascii")
    try:
        if b"-----BEGIN" in data:
            return certpath.load_pem(data)
        return [certpath.parse(data)]
    except certpath.PathError as e:
        raise CertificateChainError(str(e)) from None


def load_chain(chain):
    """
    A certificate chain, leaf first, from PEM text holding several
    certificates, or from a list whose items are certificates, DER bytes or
    PEM text.
    """
    if isinstance(chain, (bytes, bytearray, str)):
        return load_certificates(bytes(chain) if not isinstance(chain, str) else chain)
    certs = []
    for item in chain:
        certs.extend(load_certificates(item))
    return certs


def _certificate(cert):
    try:
        return certpath.parse(cert)
    except certpath.PathError as e:
        raise CertificateChainError(str(e)) from None


# --- signing -----------------------------------------------------------------------

class Signer:
    """Signs the delta bytes of one domain's users with that domain's key and chain."""

    def __init__(self, key, chain, domain, hash_algorithm=SHA256):
        if not isinstance(key, rsa.RSAPrivateKey):
            key = load_private_key(key)
        certs = load_chain(chain)
        if not certs:
            raise CertificateChainError("the signing chain holds no certificate")
        if certs[0].public_key().public_numbers() != key.public_key().public_numbers():
            raise SignatureError(
                "the signing key does not match the first certificate of the chain")
        self.key = key
        self.domain = domain
        self.signer_info = SignerInfo(
            domain, [c.public_bytes(serialization.Encoding.DER) for c in certs], hash_algorithm)
        self.signer_id = self.signer_info.signer_id

    def sign(self, delta_bytes):
        """A SHA1withRSA signature over exactly ``delta_bytes``."""
        signature = self.key.sign(bytes(delta_bytes), padding.PKCS1v15(), hashes.SHA1())
        return Signature(signature, self.signer_id, SHA1_RSA)

    def sign_delta(self, delta_bytes, delta=None):
        """The signed delta carrying ``delta_bytes`` and our one signature."""
        if delta is not None and delta.address_path:
            # WIAB refuses to sign these: nobody knows who should co-sign.
            raise SignatureError("cannot sign a delta with a non-empty address path")
        return SignedDelta(delta_bytes, (self.sign(delta_bytes),), delta)


# --- verification ---------------------------------------------------------------

#: Signer certificates whose parse is remembered (``_leaf``); past this many the
#: memory starts again, so posted signer infos cannot make it grow without end.
LEAF_CACHE_SIZE = 1024
_leaves = {}


def _leaf(certificate):
    """
    ``(certificate, public key, common names, DNS names)`` of a signer's
    certificate, worked out once per certificate: every delta of a signer is
    checked against the same one, and parsing it, taking its key out and
    reading its names cost more than the RSA verification itself.
    """
    key = certificate if isinstance(certificate, x509.Certificate) else bytes(certificate)
    facts = _leaves.get(key)
    if facts is None:
        cert = _certificate(certificate)
        facts = (cert, cert.public_key(), _common_names(cert), _dns_names(cert))
        if len(_leaves) >= LEAF_CACHE_SIZE:
            _leaves.clear()
        _leaves[key] = facts
    return facts


def verify_signature(data, signature_bytes, certificate):
    """Raise InvalidSignatureError unless ``signature_bytes`` is SHA1withRSA of ``data``."""
    public_key = _leaf(certificate)[1]
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise InvalidSignatureError(
            f"the signer certificate holds a {type(public_key).__name__}, not an RSA key")
    try:
        public_key.verify(bytes(signature_bytes), bytes(data), padding.PKCS1v15(), hashes.SHA1())
    except InvalidSignature:
        raise InvalidSignatureError("the SHA1withRSA signature does not verify") from None


def _common_names(cert):
    return [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
            if isinstance(a.value, str)]


def _dns_names(cert):
    try:
        san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    except x509.ExtensionNotFound:
        return []
    except ValueError:
        return []
    return san.value.get_values_for_type(x509.DNSName)


def check_authority(domain, certificate):
    """
    Raise AuthorityError unless the certificate speaks for ``domain``: its
    subject CN or a DNS subjectAltName equals it, or a ``*.`` CN matches
    everything after the domain's first dot.
    """
    cert, _, common_names, dns_names = _leaf(certificate)
    wanted = domain.lower()
    names = [n.lower() for n in common_names + dns_names]
    if wanted in names:
        return
    if "." in wanted:
        parent = wanted.split(".", 1)[1]
        for cn in common_names:
            cn = cn.lower()
            if cn.startswith("*.") and cn[2:] == parent:
                return
    raise AuthorityError(
        f"certificate {cert.subject.rfc4514_string()} does not speak for {domain!r}")


def validate_chain(certificates, trusted_roots, now=None):
    """
    Check a signer's chain (leaf first) as one certification path from one
    of ``trusted_roots`` (:func:`wavebox.certpath.validate_path`: Java's PKIX
    validator, which WIAB's ``CachedCertPathValidator`` calls, with no
    revocation checking and the wave extension understood).  The leaf signs
    deltas, so when it has a keyUsage it must allow digitalSignature.
    Raises CertificateChainError.
    """
    try:
        certpath.validate_path(certificates, trusted_roots, now,
                               leaf_key_usage="digital_signature",
                               understood=(WAVE_EXTENSION_OID,))
    except certpath.PathError as e:
        raise CertificateChainError(str(e)) from None


def _ders(certificates):
    return tuple(bytes(c) if not isinstance(c, x509.Certificate)
                 else c.public_bytes(serialization.Encoding.DER) for c in certificates)


class ChainValidator:
    """
    ``validate_chain`` with the results remembered (WIAB
    ``CachedCertPathValidator``): a chain once found good stays good until
    its first certificate expiry.  ``own`` are chains accepted as they are,
    ours as configured: our own deltas come back to us in the updates of
    wavelets hosted elsewhere, whoever issued our certificate.  ``disabled``
    accepts every chain, as ``waveserver_disable_signer_verification`` does.
    """

    def __init__(self, trusted_roots, disabled=False, own=()):
        self.trusted_roots = list(trusted_roots)
        self.disabled = disabled
        self.own = {_ders(chain) for chain in own}
        self._good_until = {}

    def validate(self, certificates, now=None):
        if self.disabled:
            return
        now = now or datetime.datetime.now(datetime.timezone.utc)
        key = _ders(certificates)
        if key in self.own:
            return
        until = self._good_until.get(key)
        if until is not None and now <= until:
            return
        validate_chain(key, self.trusted_roots, now)
        self._good_until[key] = min(_certificate(c).not_valid_after_utc for c in key)


def verify_signer_info(signer_info, validator, now=None):
    """Check a posted or fetched signer info before storing it: its chain must validate."""
    if isinstance(validator, ChainValidator):
        validator.validate(signer_info.certificates, now)
    else:
        validate_chain(signer_info.certificates, validator, now)


def signing_domains(delta):
    """The domains that must sign a delta: of its address path, then its author, de-duplicated."""
    domains = []
    for address in tuple(delta.address_path) + (delta.author.address,):
        domain = address.rsplit("@", 1)[-1]
        if domain not in domains:
            domains.append(domain)
    return domains


def verify_signed_delta(signed_delta_bytes, signatures, signer_infos_by_id, trusted_roots,
                        delta=None, now=None, check_chain=True):
    """
    Verify an incoming signed delta (WIAB ``CertificateManagerImpl.verifyDelta``):
    one signature per signing domain, each by a known signer whose chain
    validates against ``trusted_roots`` (a list of certificates or a
    ChainValidator; skipped when ``check_chain`` is false, as with
    ``waveserver_disable_signer_verification``), over exactly
    ``signed_delta_bytes``, by a certificate that speaks for that domain.

    ``delta`` is the parsed delta; when not given it is parsed from the bytes.
    ``signer_infos_by_id`` maps signer ids to SignerInfo (a dict or anything
    with ``get``).  Raises a SignatureError subclass.
    """
    if delta is None:
        try:
            delta = convert.parse_wavelet_delta(signed_delta_bytes)
        except ModelError as e:
            raise InvalidSignatureError(f"the signed delta does not parse: {e}") from None
    domains = signing_domains(delta)
    signatures = list(signatures)
    if len(signatures) != len(domains):
        raise InvalidSignatureError(
            f"delta by {delta.author} needs {len(domains)} signature(s) "
            f"({', '.join(domains)}), has {len(signatures)}")
    for domain, signature in zip(domains, signatures):
        if signature.algorithm != SHA1_RSA:
            raise InvalidSignatureError(f"unsupported signature algorithm {signature.algorithm!r}")
        info = signer_infos_by_id.get(bytes(signature.signer_id))
        if info is None:
            raise UnknownSignerError(
                f"unknown signer id {bytes(signature.signer_id).hex()} for {domain}",
                bytes(signature.signer_id))
        if check_chain:
            verify_signer_info(info, trusted_roots, now)
        verify_signature(signed_delta_bytes, signature.signature_bytes, info.certificates[0])
        check_authority(domain, info.certificates[0])


# --- certificates for new servers and tests -------------------------------------------

def generate_key_and_certificate(domain, days=365, key_size=2048, issuer=None,
                                 wave_extension=True, ca=False, now=None):
    """
    A fresh RSA key and a certificate for ``domain`` (CN and DNS SAN), with
    the critical wave extension unless told otherwise.  Self-signed unless
    ``issuer`` = (issuer_key, issuer_certificate).  Returns
    ``(key, certificate)``; see ``key_to_pem``/``certificate_to_pem``.
    """
    key = certgen.new_private_key(key_size)
    extensions = [(x509.BasicConstraints(ca=ca, path_length=None), True)]
    if not ca:
        extensions.append((x509.SubjectAlternativeName([x509.DNSName(domain)]), False))
    if wave_extension:
        extensions.append((x509.UnrecognizedExtension(WAVE_EXTENSION_OID, b"\x05\x00"), True))
    return key, certgen.issue(domain, key, extensions, issuer=issuer, days=days, now=now)


def key_to_pem(key):
    """Unencrypted PKCS#8 PEM, the form the protocol's servers load."""
    return certgen.key_pem(key)


def certificate_to_pem(certificate):
    return certgen.cert_pem(certificate)
