"""Hashed versions and delta values (wave protocol notes 4, vectors 9)."""

import base64

from twisted.trial.unittest import SynchronousTestCase

from wavebox.model.delta import (
    AppliedDelta, HashedVersion, SignedDelta, TransformedDelta, WaveletDelta, next_hash)
from wavebox.model.errors import InvalidDelta, InvalidHashedVersion, InvalidParticipantId
from wavebox.model.ids import ParticipantId, WaveletName


def b64(text):
    return base64.b64decode(text)


# The delta values do not look inside their operations; any token will do.
OP = "an operation"

SPEC_APPLIED_DELTA = b64("CiIKIAoFCNIJEgASF2ZvenppZUBpbml0ZWNoLWNvcnAuY29tEgUI0gkSABgCINKF2MwE")


class VersionZeroTests(SynchronousTestCase):
    """The version_zero_hash vectors of section 9."""

    def test_version_zero_hash_is_uri_bytes_with_wave_domain(self):
        name = WaveletName.from_uri("wave://acmewave.com/google.com!wave/wavelet")
        zero = HashedVersion.zero(name)
        self.assertEqual(zero.version, 0)
        self.assertEqual(zero.history_hash, b64(
            "d2F2ZTovL2FjbWV3YXZlLmNvbS9nb29nbGUuY29tIXdhdmUvd2F2ZWxldA=="))

    def test_version_zero_hash_is_uri_bytes_same_domain(self):
        name = WaveletName.of("example.com", "w+abc", "example.com", "conv+root")
        zero = HashedVersion.zero(name)
        self.assertEqual(zero.history_hash, b64("d2F2ZTovL2V4YW1wbGUuY29tL3crYWJjL2NvbnYrcm9vdA=="))
        self.assertEqual(len(zero.history_hash), 34)


class NextHashTests(SynchronousTestCase):

    def test_spec_applied_delta_next_hash(self):
        prev = b"wave://acmewave.com/initech-corp.com!w+a/conv+b"
        self.assertEqual(next_hash(prev, SPEC_APPLIED_DELTA), b64("f2iKHqPBVOW3b2hTxdvvDm+0qpY="))

    def test_next_hashed_version_adds_operations_applied(self):
        name = WaveletName.from_uri("wave://acmewave.com/initech-corp.com!w+a/conv+b")
        after = HashedVersion.zero(name).next(SPEC_APPLIED_DELTA, 2)
        self.assertEqual(after, HashedVersion(2, b64("f2iKHqPBVOW3b2hTxdvvDm+0qpY=")))

    def test_every_later_hash_is_20_bytes(self):
        self.assertEqual(len(next_hash(b"", b"")), 20)

    def test_equality_compares_number_and_bytes(self):
        self.assertNotEqual(HashedVersion(3, b"a"), HashedVersion(3, b"b"))
        self.assertNotEqual(HashedVersion(3, b"a"), HashedVersion(4, b"a"))
        self.assertEqual(HashedVersion(3, bytearray(b"a")), HashedVersion(3, b"a"))

    def test_negative_version_is_refused(self):
        self.assertRaises(InvalidHashedVersion, HashedVersion, -1, b"")

    def test_text_hash_is_refused(self):
        e = self.assertRaises(InvalidHashedVersion, HashedVersion, 1, "abc")
        self.assertIn("must be bytes", str(e))

    def test_zero_needs_a_wavelet_name(self):
        self.assertRaises(InvalidHashedVersion, HashedVersion.zero, "wave://a/b/c")


class DeltaValueTests(SynchronousTestCase):

    def test_delta_author_is_parsed(self):
        delta = WaveletDelta("Bob@Example.com", HashedVersion(0, b""), [OP])
        self.assertEqual(delta.author, ParticipantId("bob@example.com"))
        self.assertEqual(len(delta), 1)

    def test_delta_with_bad_author_is_refused(self):
        self.assertRaises(InvalidParticipantId, WaveletDelta, "bob", HashedVersion(0, b""), [])

    def test_applied_delta_resulting_version_hashes_received_bytes(self):
        prev = HashedVersion(1234, b"wave://acmewave.com/initech-corp.com!w+a/conv+b")
        applied = AppliedDelta(SignedDelta(b"x"), prev, 2, 1234567890, SPEC_APPLIED_DELTA)
        self.assertEqual(applied.resulting_version,
                         HashedVersion(1236, b64("f2iKHqPBVOW3b2hTxdvvDm+0qpY=")))

    def test_transformed_delta_checks_version_arithmetic(self):
        e = self.assertRaises(InvalidDelta, TransformedDelta, "a@b.example", HashedVersion(3, b"h"),
                              HashedVersion(5, b"i"), [OP], 0)
        self.assertIn("cannot result in version 5", str(e))

    def test_transformed_from_applied_checks_operation_count(self):
        delta = WaveletDelta("a@b.example", HashedVersion(0, b""), [OP])
        applied = AppliedDelta(SignedDelta(b"x", (), delta), HashedVersion(0, b""), 1, 5, b"raw")
        self.assertRaises(InvalidDelta, TransformedDelta.from_applied, applied, [])
        t = TransformedDelta.from_applied(applied, delta.operations)
        self.assertEqual(t.resulting_version, applied.resulting_version)
