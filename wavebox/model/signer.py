"""
Signer info and signer ids (wave protocol notes section 5; WIAB
``wave/crypto/SignerInfo``).  Pure data and hashing: the certificate and
signature checks live in ``wavebox.crypto``.

A signer id names a certificate chain: the hash of the chain in PkiPath form,
an ASN.1 ``SEQUENCE OF Certificate`` holding the DER certificates root first,
i.e. in the reverse of the order ProtocolSignerInfo lists them.
"""

import hashlib
from dataclasses import dataclass

from wavebox.model.errors import InvalidSignerInfo

SHA256 = "SHA256"
SHA512 = "SHA512"
_HASHES = {SHA256: hashlib.sha256, SHA512: hashlib.sha512}
HASH_ALGORITHMS = tuple(_HASHES)


def _der_length(n):
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def pkipath(der_certificates):
    """The PkiPath DER of a chain given leaf first: SEQUENCE OF the certificates, root first."""
    body = b"".join(bytes(c) for c in reversed(list(der_certificates)))
    return b"\x30" + _der_length(len(body)) + body


def signer_id(der_certificates, hash_algorithm=SHA256):
    """The signer id naming a chain (leaf first): the hash of its PkiPath."""
    try:
        digest = _HASHES[hash_algorithm]
    except (KeyError, TypeError):
        raise InvalidSignerInfo(f"unknown signer-id hash algorithm {hash_algorithm!r}") from None
    return digest(pkipath(der_certificates)).digest()


@dataclass(frozen=True)
class SignerInfo:
    """
    A signer's certificate chain as ProtocolSignerInfo carries it: the domain
    it signs for, the signer-id hash algorithm, and the DER certificates, the
    signer's own first and the CA's last.
    """

    domain: str
    certificates: tuple
    hash_algorithm: str = SHA256

    def __post_init__(self):
        if not isinstance(self.domain, str) or not self.domain:
            raise InvalidSignerInfo(f"signer info needs a domain, got {self.domain!r}")
        try:
            certs = tuple(bytes(c) for c in self.certificates)
        except TypeError:
            raise InvalidSignerInfo(
                f"signer info for {self.domain}: certificates must be DER bytes") from None
        if not certs:
            raise InvalidSignerInfo(f"signer info for {self.domain} has no certificate")
        if self.hash_algorithm not in _HASHES:
            raise InvalidSignerInfo(
                f"signer info for {self.domain}: unknown hash algorithm {self.hash_algorithm!r}")
        object.__setattr__(self, "certificates", certs)

    @property
    def signer_id(self):
        return signer_id(self.certificates, self.hash_algorithm)
