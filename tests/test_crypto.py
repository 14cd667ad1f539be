"""Delta signing, signer ids and certificate chains (wave protocol notes 5, vectors 9)."""

import base64
import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from twisted.trial.unittest import SynchronousTestCase

from tests import wave_certs
from wavebox import certgen, certpath, crypto
from wavebox.crypto import (
    AuthorityError, CertificateChainError, ChainValidator, InvalidSignatureError, Signer,
    SignerInfo, SignatureError, UnknownSignerError, check_authority,
    generate_key_and_certificate, key_to_pem, load_private_key, signer_id, validate_chain,
    verify_signature, verify_signed_delta)
from wavebox.model.delta import HashedVersion, Signature, WaveletDelta
from wavebox.model.errors import InvalidSignerInfo
from wavebox.model.operations import NoOp
from wavebox.wire import convert

# The Apache fixtures are valid 2009-01-26 .. 2019-01-24.
IN_2010 = datetime.datetime(2010, 6, 1, tzinfo=datetime.timezone.utc)
IN_2020 = datetime.datetime(2020, 6, 1, tzinfo=datetime.timezone.utc)
NOW = datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)
LATER = NOW + datetime.timedelta(days=1)

APACHE_CHAIN = (wave_certs.SERVER_CERT, wave_certs.INTERMEDIATE_CERT)
SIGNATURE_OF_HELLO = base64.b64decode(
    "TMX5+6tJnEfso3KnbWygPfGBKXtFjRk6K/SQHyj+O5/dMuGeh5n/Da3v/Cq13LcRie18dxUWMginQUGrsgseqse5"
    "orT0C4i0P6ybSxwUZ8OfFnx3lD5K4MEceB+yAMCsnoUZA/F52ullE/aMpv9LIFmNl4QtlvKJmF3UlJCJe/M=")
SIGNER_ID = base64.b64decode("zBYbw+lLkXGao+LfNWbv/faS+yAlsAmUfCNqXBxeFtI=")


class SignerIdVectorTests(SynchronousTestCase):
    """The signer_id vector of section 9 (WIAB SignerInfoTest)."""

    def test_signer_id_is_sha256_of_reversed_pkipath(self):
        self.assertEqual(signer_id(APACHE_CHAIN), SIGNER_ID)

    def test_signer_id_with_sha512(self):
        self.assertEqual(signer_id(APACHE_CHAIN, crypto.SHA512), base64.b64decode(
            "wtbyS7wiCbIoLXJQjuyER6zTxJe9+pRYi3jxtCBl41eE6inQZBC2Eu8V5AoirzWH271i8JXNdn+6x/eV/nog2g=="))

    def test_signer_info_names_its_chain(self):
        self.assertEqual(SignerInfo("example.com", APACHE_CHAIN).signer_id, SIGNER_ID)

    def test_pkipath_uses_long_form_length(self):
        path = crypto.pkipath(APACHE_CHAIN)
        body = wave_certs.INTERMEDIATE_CERT + wave_certs.SERVER_CERT
        self.assertEqual(path, b"\x30\x82" + len(body).to_bytes(2, "big") + body)

    def test_pkipath_uses_short_form_below_128(self):
        self.assertEqual(crypto.pkipath([b"\x01" * 5]), b"\x30\x05" + b"\x01" * 5)

    def test_unknown_hash_algorithm_is_refused(self):
        self.assertRaises(InvalidSignerInfo, signer_id, APACHE_CHAIN, "MD5")


class SignatureVectorTests(SynchronousTestCase):
    """The signature vector of section 9 (WIAB WaveSignerTest / WaveSignatureVerifierTest)."""

    def setUp(self):
        self.signer = Signer(wave_certs.SERVER_KEY, list(APACHE_CHAIN), "Server Cert")

    def test_sha1withrsa_of_hello_is_deterministic_vector(self):
        signature = self.signer.sign(b"hello")
        self.assertEqual(signature.signature_bytes, SIGNATURE_OF_HELLO)
        self.assertEqual(signature.signer_id, SIGNER_ID)
        self.assertEqual(signature.algorithm, "SHA1_RSA")

    def test_vector_signature_verifies_with_server_cert(self):
        verify_signature(b"hello", SIGNATURE_OF_HELLO, wave_certs.SERVER_CERT)

    def test_vector_signature_fails_on_other_bytes(self):
        self.assertRaises(InvalidSignatureError, verify_signature, b"hellO",
                          SIGNATURE_OF_HELLO, wave_certs.SERVER_CERT)

    def test_server_cert_speaks_for_its_cn(self):
        check_authority("Server Cert", wave_certs.SERVER_CERT)

    def test_server_cert_does_not_speak_for_other_authority(self):
        e = self.assertRaises(AuthorityError, check_authority, "some_other_authority.com",
                              wave_certs.SERVER_CERT)
        self.assertIn("some_other_authority.com", str(e))

    def test_key_must_match_leaf(self):
        self.assertRaises(SignatureError, Signer, wave_certs.SERVER_KEY,
                          [wave_certs.INTERMEDIATE_CERT], "x")


class ApacheChainTests(SynchronousTestCase):

    def test_chain_validates_against_root_while_valid(self):
        validate_chain(APACHE_CHAIN, [wave_certs.ROOT_CERT], IN_2010)

    def test_expired_chain_is_refused(self):
        e = self.assertRaises(CertificateChainError, validate_chain, APACHE_CHAIN,
                              [wave_certs.ROOT_CERT], IN_2020)
        self.assertIn("not valid at 2020-06-01", str(e))

    def test_chain_without_trusted_root_is_refused(self):
        e = self.assertRaises(CertificateChainError, validate_chain, APACHE_CHAIN, [], IN_2010)
        self.assertIn("not a trusted root", str(e))

    def test_chain_in_wrong_order_is_refused(self):
        self.assertRaises(CertificateChainError, validate_chain,
                          tuple(reversed(APACHE_CHAIN)), [wave_certs.ROOT_CERT], IN_2010)

    def test_leaf_alone_is_refused_when_root_is_not_its_issuer(self):
        self.assertRaises(CertificateChainError, validate_chain, APACHE_CHAIN[:1],
                          [wave_certs.ROOT_CERT], IN_2010)

    def test_leaf_alone_validates_when_intermediate_is_trusted(self):
        validate_chain(APACHE_CHAIN[:1], [wave_certs.INTERMEDIATE_CERT], IN_2010)


def build_cert(key, subject, issuer_key, issuer_name, ca=False, critical_oids=()):
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(issuer_name)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(NOW - datetime.timedelta(days=1))
               .not_valid_after(NOW + datetime.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    for oid in critical_oids:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier(oid), b"\x05\x00"), critical=True)
    return builder.sign(issuer_key, hashes.SHA256())


class Pki:
    """
    The certificates of these tests, made once: RSA key generation is the
    slow part.  Two roots, both trusted where a test says so; an
    intermediate under ``root``; leaves for a.test (with the critical wave
    extension) under ``root`` and under ``intermediate``; ``other_leaf``
    (b.test) under ``root``; ``untrusted``, a root nobody trusts; and
    :meth:`issue` for one-off certificates (expired, not a CA, ...).
    """

    _made = None

    @classmethod
    def get(cls):
        if cls._made is None:
            cls._made = cls()
        return cls._made

    def __init__(self):
        self.root_key, self.root = generate_key_and_certificate(
            "Test Root", key_size=1024, ca=True, wave_extension=False, now=NOW)
        self.leaf_key, self.leaf = generate_key_and_certificate(
            "a.test", key_size=1024, issuer=(self.root_key, self.root), now=NOW)
        self.other_key, self.self_signed = generate_key_and_certificate(
            "a.test", key_size=1024, now=NOW)
        self.other_root_key, self.other_root = generate_key_and_certificate(
            "Other Root", key_size=1024, ca=True, wave_extension=False, now=NOW)
        self.intermediate_key, self.intermediate = self.issue(
            "Test Intermediate", (self.root_key, self.root), ca=True)
        _, self.leaf_via_intermediate = generate_key_and_certificate(
            "a.test", key_size=1024, issuer=(self.intermediate_key, self.intermediate),
            now=NOW)
        _, self.other_leaf = self.issue("b.test", (self.root_key, self.root))
        self.untrusted_key, self.untrusted = generate_key_and_certificate(
            "Untrusted Root", key_size=1024, ca=True, wave_extension=False, now=NOW)

    def issue(self, name, issuer, ca=False, path_length=None, key_usage=None,
              now=NOW, days=365, backdate=datetime.timedelta(days=1)):
        """
        ``(key, certificate)`` for ``name``, issued by ``issuer`` = (key,
        certificate), valid from ``backdate`` before ``now`` for ``days``;
        ``key_usage`` is a dict of ``x509.KeyUsage`` flags set (the rest off).
        """
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


def delta_by(author, address_path=()):
    return WaveletDelta(author, HashedVersion(0, b""), ["op"], address_path)


class VerifySignedDeltaTests(SynchronousTestCase):

    def setUp(self):
        self.pki = Pki.get()
        self.signer = Signer(key_to_pem(self.pki.leaf_key), [self.pki.leaf], "a.test")
        self.infos = {self.signer.signer_id: self.signer.signer_info}
        self.bytes = b"\x0a\x02\x08\x00serialised delta"
        self.signed = self.signer.sign_delta(self.bytes)

    def verify(self, data=None, signatures=None, delta=None, infos=None, roots=None, **kw):
        verify_signed_delta(self.bytes if data is None else data,
                            self.signed.signatures if signatures is None else signatures,
                            self.infos if infos is None else infos,
                            [self.pki.root] if roots is None else roots,
                            delta=delta or delta_by("bob@a.test"), now=LATER, **kw)

    def test_good_signature_by_authors_domain_verifies(self):
        self.verify()

    def test_wave_extension_is_tolerated_when_critical(self):
        self.assertTrue(self.pki.leaf.extensions.get_extension_for_oid(
            crypto.WAVE_EXTENSION_OID).critical)
        validate_chain([self.pki.leaf], [self.pki.root], LATER)

    def test_other_critical_extension_is_refused(self):
        key = self.pki.other_key
        cert = build_cert(key, "b.test", self.pki.root_key, self.pki.root.subject,
                          critical_oids=["1.2.3.4.5"])
        e = self.assertRaises(CertificateChainError, validate_chain, [cert], [self.pki.root], LATER)
        self.assertIn("1.2.3.4.5", str(e))

    def test_changed_bytes_fail(self):
        self.assertRaises(InvalidSignatureError, self.verify, data=self.bytes + b"x")

    def test_unknown_signer_fails(self):
        e = self.assertRaises(UnknownSignerError, self.verify, infos={})
        self.assertEqual(e.signer_id, self.signer.signer_id)

    def test_missing_signature_fails(self):
        e = self.assertRaises(InvalidSignatureError, self.verify, signatures=())
        self.assertIn("needs 1 signature(s)", str(e))

    def test_one_signature_per_domain_of_address_path_and_author(self):
        delta = delta_by("bob@a.test", ("carol@b.test", "dave@a.test"))
        self.assertEqual(crypto.signing_domains(delta), ["b.test", "a.test"])
        self.assertRaises(InvalidSignatureError, self.verify, delta=delta)

    def test_author_of_other_domain_fails_authority(self):
        self.assertRaises(AuthorityError, self.verify, delta=delta_by("bob@b.test"))

    def test_untrusted_chain_fails(self):
        self.assertRaises(CertificateChainError, self.verify, roots=[self.pki.self_signed])

    def test_untrusted_chain_passes_when_chain_check_disabled(self):
        self.verify(roots=[], check_chain=False)

    def test_self_signed_cert_verifies_when_trusted(self):
        signer = Signer(self.pki.other_key, [self.pki.self_signed], "a.test")
        signed = signer.sign_delta(self.bytes)
        verify_signed_delta(self.bytes, signed.signatures, {signer.signer_id: signer.signer_info},
                            [self.pki.self_signed], delta=delta_by("x@a.test"), now=LATER)

    def test_wrong_algorithm_fails(self):
        sig = self.signed.signatures[0]
        bad = Signature(sig.signature_bytes, sig.signer_id, "MD5_RSA")
        self.assertRaises(InvalidSignatureError, self.verify, signatures=[bad])

    def test_delta_is_parsed_from_the_signed_bytes_when_not_given(self):
        data = convert.serialize_wavelet_delta(
            WaveletDelta("bob@a.test", HashedVersion(0, b""), [NoOp()]))
        signed = self.signer.sign_delta(data)
        verify_signed_delta(data, signed.signatures, self.infos, [self.pki.root], now=LATER)
        other = convert.serialize_wavelet_delta(
            WaveletDelta("bob@b.test", HashedVersion(0, b""), [NoOp()]))
        signed = self.signer.sign_delta(other)
        self.assertRaises(AuthorityError, verify_signed_delta, other, signed.signatures,
                          self.infos, [self.pki.root], now=LATER)

    def test_unparseable_signed_bytes_fail(self):
        e = self.assertRaises(InvalidSignatureError, verify_signed_delta, b"\xff", [], {}, [],
                              now=LATER)
        self.assertIn("does not parse", str(e))

    def test_address_path_is_not_signed(self):
        self.assertRaises(SignatureError, self.signer.sign_delta, self.bytes,
                          delta_by("bob@a.test", ("carol@b.test",)))


class ChainValidatorTests(SynchronousTestCase):

    def setUp(self):
        self.pki = Pki.get()

    def test_good_chain_is_remembered(self):
        validator = ChainValidator([self.pki.root])
        validator.validate([self.pki.leaf], LATER)
        validator.trusted_roots = []
        # Still good: remembered, until the certificate expires.
        validator.validate([self.pki.leaf], LATER)
        self.assertRaises(CertificateChainError, validator.validate, [self.pki.leaf],
                          NOW + datetime.timedelta(days=400))

    def test_own_chain_is_accepted_as_configured(self):
        # Our own deltas come back to us; whoever issued our certificate.
        own = [self.pki.leaf_via_intermediate, self.pki.intermediate]
        validator = ChainValidator([], own=[own])
        validator.validate(own, LATER)
        self.assertRaises(CertificateChainError, validator.validate,
                          [self.pki.leaf_via_intermediate], LATER)
        self.assertRaises(CertificateChainError, validator.validate,
                          [self.pki.leaf, self.pki.intermediate], LATER)

    def test_disabled_validator_accepts_anything(self):
        ChainValidator([], disabled=True).validate([self.pki.self_signed], LATER)


class WholePathTests(SynchronousTestCase):
    """
    A chain is one certification path, as sent (RFC 5280 section 6.1; Java's
    PKIX CertPathValidator, which WIAB's CachedCertPathValidator calls):
    each certificate issued by the next, the last by a trusted root.  The
    first four are the chains of issue 9, finding 9, that passed before.
    """

    def setUp(self):
        self.pki = Pki.get()

    def refused(self, chain, roots, *words, now=LATER):
        e = self.assertRaises(CertificateChainError, validate_chain, chain, roots, now)
        for word in words:
            self.assertIn(word, str(e))
        return e

    # -- the chains of the finding
    def test_root_before_its_leaf_is_refused(self):
        self.refused([self.pki.root, self.pki.leaf], [self.pki.root],
                     "CN=Test Root is issued by CN=Test Root, not by the certificate "
                     "after it, CN=a.test")

    def test_another_trusted_root_after_the_root_is_refused(self):
        self.refused([self.pki.leaf, self.pki.root, self.pki.other_root],
                     [self.pki.root, self.pki.other_root], "CN=Other Root")

    def test_another_leaf_after_the_root_is_refused(self):
        self.refused([self.pki.leaf, self.pki.root, self.pki.other_leaf], [self.pki.root],
                     "not by the certificate after it, CN=b.test")

    def test_an_untrusted_certificate_after_the_root_is_refused(self):
        self.refused([self.pki.leaf_via_intermediate, self.pki.intermediate, self.pki.root,
                      self.pki.untrusted], [self.pki.root], "CN=Untrusted Root")

    def test_an_untrusted_root_after_the_trusted_one_is_refused_even_when_both_are_trusted(self):
        # Trusting the last certificate does not excuse the link before it.
        self.refused([self.pki.leaf, self.pki.root, self.pki.untrusted],
                     [self.pki.root, self.pki.untrusted], "CN=Untrusted Root")

    # -- good chains
    def test_leaf_issued_by_a_trusted_root_validates(self):
        validate_chain([self.pki.leaf], [self.pki.root], LATER)

    def test_leaf_and_its_trusted_root_validate(self):
        validate_chain([self.pki.leaf, self.pki.root], [self.pki.root], LATER)

    def test_leaf_intermediate_and_root_validate(self):
        validate_chain([self.pki.leaf_via_intermediate, self.pki.intermediate, self.pki.root],
                       [self.pki.root], LATER)

    def test_leaf_and_intermediate_validate_with_the_root_only_trusted(self):
        validate_chain([self.pki.leaf_via_intermediate, self.pki.intermediate],
                       [self.pki.root], LATER)

    def test_self_signed_leaf_that_is_itself_trusted_validates(self):
        validate_chain([self.pki.self_signed], [self.pki.self_signed], LATER)

    def test_right_root_is_found_among_several_of_the_same_name(self):
        # Same subject, other key: that anchor is skipped, not the chain refused.
        _, impostor = generate_key_and_certificate(
            "Test Root", key_size=1024, ca=True, wave_extension=False, now=NOW)
        validate_chain([self.pki.leaf], [impostor, self.pki.root], LATER)
        self.refused([self.pki.leaf], [impostor], "does not verify with the key of the "
                     "trusted root CN=Test Root")

    def test_trusted_leaf_alone_is_refused_unless_self_signed(self):
        # Java's rule: an anchor must have issued the chain's last certificate.
        # A self-signed leaf issues itself; a CA-issued one does not.
        self.refused([self.pki.leaf], [self.pki.leaf], "issued by CN=Test Root, which is "
                     "not a trusted root")

    # -- each certificate of the path
    def test_expired_certificate_is_refused(self):
        _, expired = self.pki.issue("a.test", (self.pki.root_key, self.pki.root),
                                    now=NOW - datetime.timedelta(days=400), days=30)
        self.refused([expired], [self.pki.root], "CN=a.test is not valid at 2030-01-02")

    def test_not_yet_valid_certificate_is_refused(self):
        _, early = self.pki.issue("a.test", (self.pki.root_key, self.pki.root),
                                  now=LATER + datetime.timedelta(days=1),
                                  backdate=datetime.timedelta(0))
        self.refused([early], [self.pki.root], "is not valid at")

    def test_expired_intermediate_is_refused(self):
        key, old = self.pki.issue("Old Intermediate", (self.pki.root_key, self.pki.root),
                                  ca=True, now=NOW - datetime.timedelta(days=400), days=30)
        _, leaf = self.pki.issue("a.test", (key, old))
        self.refused([leaf, old], [self.pki.root], "CN=Old Intermediate is not valid at")

    def test_expired_root_in_the_chain_is_refused_but_not_as_an_anchor(self):
        # Java's rule and RFC 5280's: an anchor is taken as configured; a copy
        # of it in the chain is a certificate of the path like any other.
        key, root = self.pki.issue("Old Root", None, ca=True,
                                   now=NOW - datetime.timedelta(days=400), days=30)
        _, leaf = self.pki.issue("a.test", (key, root))
        validate_chain([leaf], [root], LATER)
        self.refused([leaf, root], [root], "CN=Old Root is not valid at")

    def test_issuer_that_is_not_a_ca_is_refused(self):
        key, not_ca = self.pki.issue("a.test", (self.pki.root_key, self.pki.root))
        _, leaf = self.pki.issue("c.test", (key, not_ca))
        self.refused([leaf, not_ca], [self.pki.root],
                     "CN=a.test issues CN=c.test but is not a CA")

    def test_issuer_without_key_cert_sign_is_refused(self):
        key, ca = self.pki.issue("Signing Only CA", (self.pki.root_key, self.pki.root),
                                 ca=True, key_usage={"digital_signature": True})
        _, leaf = self.pki.issue("a.test", (key, ca))
        self.refused([leaf, ca], [self.pki.root], "CN=Signing Only CA issues CN=a.test but "
                     "its key usage does not allow keyCertSign")

    def test_issuer_with_key_cert_sign_validates(self):
        key, ca = self.pki.issue("Signing CA", (self.pki.root_key, self.pki.root), ca=True,
                                 key_usage={"key_cert_sign": True, "crl_sign": True})
        _, leaf = self.pki.issue("a.test", (key, ca))
        validate_chain([leaf, ca], [self.pki.root], LATER)

    def test_ca_below_a_path_length_of_zero_is_refused(self):
        key0, zero = self.pki.issue("CA Zero", (self.pki.root_key, self.pki.root), ca=True,
                                    path_length=0)
        key1, below = self.pki.issue("CA Below", (key0, zero), ca=True)
        _, leaf = self.pki.issue("a.test", (key1, below))
        self.refused([leaf, below, zero], [self.pki.root],
                     "CN=CA Below is one CA too many: CN=CA Zero allows a path length of 0")
        validate_chain([leaf], [below], LATER)
        _, direct = self.pki.issue("a.test", (key0, zero))
        validate_chain([direct, zero], [self.pki.root], LATER)

    def test_path_length_of_a_root_in_the_chain_counts(self):
        key, root = self.pki.issue("Short Root", None, ca=True, path_length=0)
        ikey, intermediate = self.pki.issue("Below Short Root", (key, root), ca=True)
        _, leaf = self.pki.issue("a.test", (ikey, intermediate))
        # Like Java: the anchor's own constraints are not applied...
        validate_chain([leaf, intermediate], [root], LATER)
        # ...those of a certificate in the chain are, a root copy included.
        self.refused([leaf, intermediate, root], [root], "allows a path length of 0")

    def test_signer_leaf_whose_key_usage_excludes_signatures_is_refused(self):
        _, leaf = self.pki.issue("a.test", (self.pki.root_key, self.pki.root),
                                 key_usage={"key_encipherment": True})
        self.refused([leaf], [self.pki.root], "CN=a.test may not be used for "
                     "digital_signature")
        _, signing = self.pki.issue("a.test", (self.pki.root_key, self.pki.root),
                                    key_usage={"digital_signature": True})
        validate_chain([signing], [self.pki.root], LATER)

    def test_tls_leaf_key_usage_is_left_to_openssl(self):
        _, leaf = self.pki.issue("a.test", (self.pki.root_key, self.pki.root),
                                 key_usage={"key_encipherment": True})
        certpath.validate_path([leaf], [self.pki.root], LATER)

    def test_empty_chain_is_refused(self):
        self.refused([], [self.pki.root], "empty certificate chain")


class AuthorityTests(SynchronousTestCase):

    def setUp(self):
        self.pki = Pki.get()

    def wildcard(self):
        return build_cert(self.pki.other_key, "*.example.com", self.pki.other_key,
                          x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))

    def test_dns_subject_alt_name_speaks_for_domain(self):
        check_authority("a.test", self.pki.leaf)

    def test_wildcard_cn_matches_one_label(self):
        check_authority("wave.example.com", self.wildcard())

    def test_wildcard_cn_does_not_match_parent(self):
        self.assertRaises(AuthorityError, check_authority, "example.com", self.wildcard())


class KeyLoadingTests(SynchronousTestCase):

    def setUp(self):
        self.key = Pki.get().leaf_key

    def test_pkcs8_pem_loads(self):
        self.assertIn(b"BEGIN PRIVATE KEY", key_to_pem(self.key))
        loaded = load_private_key(key_to_pem(self.key))
        self.assertEqual(loaded.private_numbers(), self.key.private_numbers())

    def test_traditional_pem_loads(self):
        pem = self.key.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.TraditionalOpenSSL,
                                     serialization.NoEncryption())
        self.assertIn(b"BEGIN RSA PRIVATE KEY", pem)
        self.assertEqual(load_private_key(pem).private_numbers(), self.key.private_numbers())

    def test_pkcs8_der_loads(self):
        self.assertIsInstance(load_private_key(wave_certs.SERVER_KEY).key_size, int)

    def test_garbage_key_is_refused(self):
        e = self.assertRaises(SignatureError, load_private_key,
                              b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
        self.assertIn("cannot load the private key", str(e))


class VerificationWorkTests(SynchronousTestCase):
    """A signer's certificate is parsed once, not once per delta it signed."""

    def test_the_signers_certificate_is_parsed_for_the_first_delta_only(self):
        pki = Pki.get()
        signer = Signer(key_to_pem(pki.leaf_key), [pki.leaf], "a.test")
        infos = {signer.signer_id: signer.signer_info}
        validator = ChainValidator([pki.root])
        self.patch(crypto, "_leaves", {})
        parsed = []
        real_parse = certpath.parse

        def parse(cert):
            parsed.append(cert)
            return real_parse(cert)
        self.patch(certpath, "parse", parse)
        counts = []
        for i in range(20):
            data = b"\x0a\x02\x08\x00delta %d" % (i,)
            before = len(parsed)
            verify_signed_delta(data, signer.sign_delta(data).signatures, infos, validator,
                                delta=delta_by("bob@a.test"), now=LATER)
            counts.append(len(parsed) - before)
        self.assertGreater(counts[0], 0)
        self.assertEqual(counts[1:], [0] * 19)
        # And the one remembered still refuses what it must.
        self.assertRaises(InvalidSignatureError, verify_signed_delta, b"other",
                          signer.sign_delta(b"data").signatures, infos, validator,
                          delta=delta_by("bob@a.test"), now=LATER)
        self.assertRaises(AuthorityError, verify_signed_delta, b"data",
                          signer.sign_delta(b"data").signatures, infos, validator,
                          delta=delta_by("bob@b.test"), now=LATER)
