"""Delta signing, signer ids and certificate chains (wave protocol notes 5, vectors 9)."""

import base64
import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from twisted.trial.unittest import SynchronousTestCase

from tests import wave_certs
from wavebox import crypto
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
    """A root CA and keys for a.test, made once: RSA key generation is the slow part."""

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

    def test_disabled_validator_accepts_anything(self):
        ChainValidator([], disabled=True).validate([self.pki.self_signed], LATER)


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
