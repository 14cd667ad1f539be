"""
Certification path validation (RFC 5280 section 6.1), the one place that does it.

Two callers need it and neither may import the other: :mod:`wavebox.crypto`
checks the certificate chains of delta signers (wave protocol section 5),
and :mod:`wavebox.xmpp.tls` checks the chain a peer sends in its TLS
handshake, on top of what OpenSSL checks.  So this module knows neither
waves nor XMPP.

The rule is Java's PKIX ``CertPathValidator``, which Wave in a Box's
``CachedCertPathValidator`` calls: the chain as sent, leaf first, *is* the
path.  Nothing is reordered, skipped or looked up elsewhere:

- each certificate is issued by the one after it (names chain, signature
  verifies), and the last one by a trust anchor, a certificate we were given
  to trust;
- every certificate of the chain is valid at the time of checking, has no
  critical extension we do not understand, and each one that issues another
  is a CA (basicConstraints cA, or a v1 root copy right under its anchor),
  within every pathLenConstraint above it (self-issued certificates do not
  count, section 6.1.4 (l)) and, when it has a keyUsage, allowed keyCertSign.

So a root copy at the end of the chain is checked like any other
certificate, while the trust anchor itself is not: like RFC 5280 and Java we
take an anchor as configured (its name and key), not its validity or
constraints.  A certificate after the one a trust anchor issued is not
ignored: it is the next link, and then the anchor must have issued *it*.
"""

import datetime
import ssl
import warnings

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtensionOID

# Critical extensions that never stop a path here: the ones checked below,
# and those that only restrict a path for a caller that asks for explicit
# policies, as Java's validator understands them (no caller here does).
UNDERSTOOD_CRITICAL = frozenset([
    ExtensionOID.BASIC_CONSTRAINTS,
    ExtensionOID.KEY_USAGE,
    ExtensionOID.EXTENDED_KEY_USAGE,
    ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
    ExtensionOID.CERTIFICATE_POLICIES,
    ExtensionOID.POLICY_MAPPINGS,
    ExtensionOID.POLICY_CONSTRAINTS,
    ExtensionOID.INHIBIT_ANY_POLICY,
])


class PathError(ValueError):
    """The chain is not one valid path to a trust anchor; the message says why, in one line."""


def name(cert):
    """How a certificate is named in errors: its subject, RFC 4514."""
    return cert.subject.rfc4514_string() or "(empty subject)"


def parse(cert):
    """An ``x509.Certificate`` from itself or its DER bytes."""
    if isinstance(cert, x509.Certificate):
        return cert
    try:
        return x509.load_der_x509_certificate(bytes(cert))
    except ValueError as e:
        raise PathError(f"cannot parse DER certificate: {e}") from None


def load_pem(data):
    """Every certificate of PEM text, in order.  Raises PathError."""
    if isinstance(data, str):
        data = data.encode("ascii")
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as e:
        raise PathError(f"cannot parse certificate: {e}") from None


def system_anchors():
    """
    The platform's default CA bundle (what OpenSSL's default verify paths
    and ``SSL_CERT_FILE`` name; the JVM-default-trust-roots analogue), or [].

    Certificates are loaded one by one: a bundle may hold an old root that
    today's ``cryptography`` frowns on (a non-positive serial number, say),
    and one such root must not cost us all the others.
    """
    paths = ssl.get_default_verify_paths()
    for path in (paths.cafile, paths.openssl_cafile):
        if not path:
            continue
        try:
            with open(path, "rb") as f:
                bundle = f.read()
        except OSError:
            continue
        anchors = []
        end = b"-----END CERTIFICATE-----"
        for block in bundle.split(end)[:-1]:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    anchors.extend(load_pem(block + end))
                except PathError:
                    continue
        if anchors:
            return anchors
    return []


def trust_anchors(pem_file=None):
    """
    The certificates we trust: those of the PEM file ``pem_file`` (the
    ``trusted_ca`` option), or the system's without it.  TLS and delta
    signers ask here, so both trust the same anchors.
    """
    if pem_file:
        with open(pem_file, "rb") as f:
            return load_pem(f.read())
    return system_anchors()


def _self_issued(cert):
    return cert.subject == cert.issuer


def _check_issued_by(cert, issuer, issuer_is):
    """Names chain and ``issuer``'s key verifies ``cert``'s signature (6.1.3 (a)(1), (a)(4))."""
    if cert.issuer != issuer.subject:
        raise PathError(f"{name(cert)} is issued by {cert.issuer.rfc4514_string()}, "
                        f"not by {issuer_is} {name(issuer)}")
    # Not Certificate.verify_directly_issued_by: it refuses SHA-1, which the
    # wave protocol's own certificates (and Java) still use.
    key = issuer.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes,
                       cert.signature_algorithm_parameters, cert.signature_hash_algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes,
                       cert.signature_algorithm_parameters)
        elif isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
            key.verify(cert.signature, cert.tbs_certificate_bytes)
        else:
            raise PathError(f"{name(issuer)} has a {type(key).__name__}, which cannot "
                            f"be checked here")
    except InvalidSignature:
        raise PathError(f"the signature on {name(cert)} does not verify with the key of "
                        f"{issuer_is} {name(issuer)}") from None
    except (UnsupportedAlgorithm, ValueError, TypeError) as e:
        raise PathError(f"cannot check the signature on {name(cert)}: {e}") from None


def _extensions(cert, now, understood):
    """Validity (6.1.3 (a)(2)) and critical extensions; the extensions, parsed."""
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise PathError(
            f"{name(cert)} is not valid at {now:%Y-%m-%d %H:%M:%S}Z (valid "
            f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} to "
            f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M})")
    try:
        extensions = cert.extensions
    except ValueError as e:
        raise PathError(f"{name(cert)} has malformed extensions: {e}") from None
    for ext in extensions:
        if ext.critical and ext.oid not in UNDERSTOOD_CRITICAL and ext.oid not in understood:
            raise PathError(
                f"{name(cert)} has an unrecognised critical extension {ext.oid.dotted_string}")
    return extensions


def _key_usage(extensions):
    try:
        return extensions.get_extension_for_oid(ExtensionOID.KEY_USAGE).value
    except x509.ExtensionNotFound:
        return None


def _path_length(cert, extensions, issued, first_below_anchor):
    """
    The pathLenConstraint of ``cert``, which issues ``issued`` (None: no
    limit), or PathError if it is no CA (6.1.4 (k); like Java, a v1
    certificate passes only as a self-issued copy right under its anchor).
    """
    if cert.version == x509.Version.v1:
        if first_below_anchor and _self_issued(cert):
            return None
        raise PathError(f"{name(cert)} issues {name(issued)} but is an X.509 v1 "
                        f"certificate, not a CA")
    try:
        bc = extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS).value
    except x509.ExtensionNotFound:
        bc = None
    if bc is None or not bc.ca:
        raise PathError(f"{name(cert)} issues {name(issued)} but is not a CA "
                        f"(basicConstraints)")
    return bc.path_length


def validate_path(certificates, anchors, now=None, leaf_key_usage=None, understood=()):
    """
    Check that ``certificates`` (leaf first; ``x509.Certificate`` or DER) are
    one valid path from a certificate of ``anchors`` to the leaf at ``now``,
    by the rule of this module.  ``leaf_key_usage`` names a ``KeyUsage``
    attribute (``"digital_signature"``) the leaf must allow when it has a
    keyUsage; ``understood`` are extra critical extension OIDs the caller
    handles.  Returns the anchor; raises PathError.
    """
    now = now or datetime.datetime.now(datetime.timezone.utc)
    path = [parse(c) for c in certificates]
    if not path:
        raise PathError("empty certificate chain")
    # The links, leaf first: each certificate issued by the one after it.
    for cert, issuer in zip(path, path[1:]):
        _check_issued_by(cert, issuer, "the certificate after it,")
    top = path[-1]
    candidates = [a for a in (parse(a) for a in anchors) if a.subject == top.issuer]
    if not candidates:
        raise PathError(f"the chain ends at {name(top)}, issued by "
                        f"{top.issuer.rfc4514_string()}, which is not a trusted root")
    anchor, failure = None, None
    for candidate in candidates:
        try:
            _check_issued_by(top, candidate, "the trusted root")
        except PathError as e:
            failure = failure or e
            continue
        anchor = candidate
        break
    if anchor is None:
        raise failure
    # From the anchor down (6.1.3, 6.1.4): validity, extensions, CA constraints.
    top_down = path[::-1]
    max_path_length, limit = len(path), None
    for i, cert in enumerate(top_down):
        extensions = _extensions(cert, now, understood)
        if i == len(path) - 1:
            break                   # the leaf: nothing more of it here (6.1.5)
        issued = top_down[i + 1]
        path_length = _path_length(cert, extensions, issued, first_below_anchor=i == 0)
        if not _self_issued(cert):
            if max_path_length <= 0:
                limiting, length = limit
                raise PathError(f"{name(cert)} is one CA too many: {name(limiting)} "
                                f"allows a path length of {length}")
            max_path_length -= 1
        if path_length is not None and path_length < max_path_length:
            max_path_length, limit = path_length, (cert, path_length)
        usage = _key_usage(extensions)
        if usage is not None and not usage.key_cert_sign:
            raise PathError(f"{name(cert)} issues {name(issued)} but its key usage "
                            f"does not allow keyCertSign")
    if leaf_key_usage:
        usage = _key_usage(path[0].extensions)
        if usage is not None and not getattr(usage, leaf_key_usage):
            raise PathError(f"{name(path[0])} may not be used for {leaf_key_usage} "
                            f"(its key usage)")
    return anchor
