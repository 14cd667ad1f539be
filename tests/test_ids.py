"""Wave ids, participant ids and the wave:// URI (wave protocol notes 3, vectors 9)."""

import os
import random

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from wavebox.model.errors import InvalidId, InvalidParticipantId
from wavebox.model.ids import (
    IdGenerator, ParticipantId, WaveId, WaveletId, WaveletName, decode_local_id,
    encode_local_id, random_token, user_data_wavelet_id, web64_counter_token)

EXAMPLES = int(os.environ.get("HYPOTHESIS_EXAMPLES", "1000"))


def name(wave, wavelet):
    return WaveletName(WaveId(*wave), WaveletId(*wavelet))


class UriVectorTests(SynchronousTestCase):
    """The wavelet_name_uri vectors of section 9, one test each."""

    def check(self, wave, wavelet, uri):
        self.assertEqual(name(wave, wavelet).uri, uri)

    def test_same_domain_omits_wave_domain(self):
        uri = "wave://acmewave.com/wave/wavelet"
        self.check(("acmewave.com", "wave"), ("acmewave.com", "wavelet"), uri)
        self.assertEqual(WaveletName.from_uri(uri),
                         name(("acmewave.com", "wave"), ("acmewave.com", "wavelet")))

    def test_other_wave_domain_written_before_bang(self):
        uri = "wave://acmewave.com/google.com!wave/wavelet"
        self.check(("google.com", "wave"), ("acmewave.com", "wavelet"), uri)
        self.assertEqual(WaveletName.from_uri(uri),
                         name(("google.com", "wave"), ("acmewave.com", "wavelet")))

    def test_user_data_wavelet_keeps_at_and_plus(self):
        uri = "wave://example.org/example.com!w+abc/user+bob@example.org"
        self.check(("example.com", "w+abc"), ("example.org", "user+bob@example.org"), uri)
        self.assertEqual(WaveletName.from_uri(uri).wavelet_id.id, "user+bob@example.org")

    def test_slash_and_hash_are_percent_encoded(self):
        uri = "wave://example.com/w+a%2Fb%23c/conv+root"
        self.check(("example.com", "w+a/b#c"), ("example.com", "conv+root"), uri)
        self.assertEqual(WaveletName.from_uri(uri).wave_id.id, "w+a/b#c")

    def test_non_ascii_is_utf8_percent_encoded_upper_case(self):
        uri = "wave://example.com/w+t%C3%B6m/conv+root"
        self.check(("example.com", "w+t\u00f6m"), ("example.com", "conv+root"), uri)
        self.assertEqual(WaveletName.from_uri(uri).wave_id.id, "w+t\u00f6m")

    def test_space_becomes_plus_and_does_not_round_trip(self):
        uri = "wave://example.com/w+a+b/conv+root"
        self.check(("example.com", "w+a b"), ("example.com", "conv+root"), uri)
        self.assertEqual(WaveletName.from_uri(uri).wave_id.id, "w+a+b")


class UriParsingErrorTests(SynchronousTestCase):

    def assertBadUri(self, uri, *fragments):
        e = self.assertRaises(InvalidId, WaveletName.from_uri, uri)
        for fragment in fragments:
            self.assertIn(fragment, str(e))

    def test_wrong_scheme_is_refused(self):
        self.assertBadUri("http://example.com/w+a/conv+root", "does not start with 'wave://'")

    def test_two_path_parts_are_refused(self):
        self.assertBadUri("wave://example.com/w+a", "got 2 path part")

    def test_four_path_parts_are_refused(self):
        self.assertBadUri("wave://example.com/w+a/conv+root/x", "got 4 path part")

    def test_empty_wavelet_id_is_refused(self):
        self.assertBadUri("wave://example.com/w+a/", "path part")

    def test_bad_percent_escape_names_offset(self):
        self.assertBadUri("wave://example.com/w+a%2/conv+root", "bad percent escape", "offset 3")

    def test_non_hex_percent_escape_is_refused(self):
        self.assertBadUri("wave://example.com/w+a%zz/conv+root", "'%zz'")

    def test_invalid_utf8_is_refused(self):
        self.assertBadUri("wave://example.com/w+%C3/conv+root", "valid UTF-8")

    def test_two_bangs_are_refused(self):
        self.assertBadUri("wave://example.com/a.com!b.com!w+a/conv+root", "unescaped '!'")

    def test_escaped_bang_is_not_a_separator(self):
        parsed = WaveletName.from_uri("wave://example.com/w+a~!b/conv+root")
        self.assertEqual(parsed.wave_id, WaveId("example.com", "w+a~!b"))

    def test_bad_domain_is_refused(self):
        self.assertBadUri("wave://exa mple.com/w+a/conv+root", "not a valid domain")

    def test_non_string_is_refused(self):
        self.assertRaises(InvalidId, WaveletName.from_uri, b"wave://example.com/w+a/conv+root")


class IdValidationTests(SynchronousTestCase):

    def test_empty_local_id_is_refused(self):
        e = self.assertRaises(InvalidId, WaveId, "example.com", "")
        self.assertIn("wave id is empty", str(e))

    def test_unescaped_bang_in_wave_id_is_refused(self):
        self.assertRaises(InvalidId, WaveId, "example.com", "w+a!b")

    def test_lone_surrogate_is_refused(self):
        e = self.assertRaises(InvalidId, WaveletId, "example.com", "conv+\ud800")
        self.assertIn("lone surrogate at index 5", str(e))

    def test_domain_with_slash_is_refused(self):
        self.assertRaises(InvalidId, WaveletId, "example.com/x", "conv+root")

    def test_hosting_domain_is_the_wavelet_domain(self):
        self.assertEqual(name(("a.test", "w+1"), ("b.test", "conv+1")).hosting_domain, "b.test")

    def test_user_data_wavelet_lives_in_users_domain(self):
        self.assertEqual(user_data_wavelet_id("bob@beta.example"),
                         WaveletId("beta.example", "user+bob@beta.example"))


class ParticipantIdTests(SynchronousTestCase):

    def test_address_is_lower_cased(self):
        self.assertEqual(ParticipantId("Bob@Example.COM").address, "bob@example.com")

    def test_equal_when_spelled_in_other_case(self):
        self.assertEqual(ParticipantId("bob@example.com"), ParticipantId("BOB@example.com"))

    def test_name_and_domain(self):
        p = ParticipantId("bob@example.com")
        self.assertEqual((p.name, p.domain), ("bob", "example.com"))

    def test_missing_at_is_refused(self):
        e = self.assertRaises(InvalidParticipantId, ParticipantId, "bob.example.com")
        self.assertIn("no '@'", str(e))

    def test_two_ats_are_refused(self):
        e = self.assertRaises(InvalidParticipantId, ParticipantId, "bob@x@example.com")
        self.assertIn("more than one '@'", str(e))

    def test_missing_domain_is_refused(self):
        e = self.assertRaises(InvalidParticipantId, ParticipantId, "bob@")
        self.assertIn("no domain", str(e))

    def test_space_in_name_is_refused(self):
        e = self.assertRaises(InvalidParticipantId, ParticipantId, "b ob@example.com")
        self.assertIn("index 1", str(e))

    def test_bad_domain_is_refused(self):
        self.assertRaises(InvalidParticipantId, ParticipantId, "bob@exa mple.com")

    def test_domain_participant_is_allowed(self):
        self.assertEqual(ParticipantId("@example.com").domain, "example.com")

    def test_invalid_participant_is_an_invalid_id(self):
        self.assertRaises(InvalidId, ParticipantId, 42)


class ParticipantAddressTests(SynchronousTestCase):
    """
    Issue 9, finding 7: an address is a user name of allowed characters and
    bounded length at a domain that is a valid IDNA host name.  Each refusal
    is one line that says what is wrong.
    """

    def refused(self, address, reason, make=ParticipantId):
        e = self.assertRaises(InvalidParticipantId, make, address)
        self.assertIn(reason, str(e))
        self.assertNotIn("\n", str(e))
        return str(e)

    def test_a_person_needs_a_user_name(self):
        self.refused("@b.test", "has no user name before the '@'", ParticipantId.user)

    def test_markup_characters_are_refused(self):
        for ch in '<>"&\'':
            self.refused("%sx@a.test" % (ch,), "the user name has %r at index 0" % (ch,))

    def test_a_right_to_left_override_is_refused_by_name(self):
        self.refused("\u202ebob@a.test", "bidi control character U+202E at index 0")
        self.refused("bob@\u202ea.test", "the domain has a bidi control character U+202E")

    def test_other_bidi_and_invisible_characters_are_refused(self):
        for ch in "\u200e\u200f\u2066\u2069\u061c":
            self.refused("b%sob@a.test" % (ch,), "bidi control character")
        self.refused("b\u200bob@a.test", "invisible format character U+200B")

    def test_control_characters_and_spaces_are_refused(self):
        self.refused("b\x07ob@a.test", "control character U+0007 at index 1")
        self.refused("b\u00a0ob@a.test", "a space U+00A0 at index 1")
        self.refused("b\u2028ob@a.test", "line separator U+2028")

    def test_a_5000_character_user_name_is_refused_and_not_echoed_whole(self):
        message = self.refused("x" * 5000 + "@a.test", "the user name is longer than 64 bytes")
        self.assertLess(len(message), 200)
        self.assertIn("(5007 characters)", message)

    def test_64_bytes_of_user_name_are_enough(self):
        self.assertEqual(ParticipantId("x" * 64 + "@a.test").name, "x" * 64)
        self.refused("\u00e9" * 33 + "@a.test", "longer than 64 bytes")

    def test_an_ip_address_is_not_a_domain(self):
        self.refused("bob@127.0.0.1", "an IP address is not a domain")
        self.refused("bob@[::1]", "the domain has '['")

    def test_an_invalid_a_label_is_refused(self):
        self.refused("bob@xn--zz.test", "'xn--zz' is not a valid A-label")

    def test_a_unicode_domain_is_kept_as_its_a_labels(self):
        self.assertEqual(ParticipantId("Bob@B\u00fccher.TEST").address,
                         "bob@xn--bcher-kva.test")
        self.assertEqual(ParticipantId("bob@xn--bcher-kva.test").domain, "xn--bcher-kva.test")

    def test_a_unicode_domain_that_idna_forbids_is_refused(self):
        self.refused("bob@\u2603\u00ad.test", "not a valid IDNA host name")

    def test_host_name_rules(self):
        self.refused("bob@a_b.test", "the domain has '_'")
        self.refused("bob@a.test:5269", "the domain has ':'")
        self.refused("bob@-a.test", "begins or ends with '-'")
        self.refused("bob@a..test", "empty label")
        self.refused("bob@" + "a" * 64 + ".test", "label longer than 63")
        self.refused("bob@" + "a." * 127 + "test", "longer than 253")

    def test_ordinary_addresses_stay_valid(self):
        for address in ("bob@a.test", "k@x", "first.last+tag@mail.example.com",
                        "caf\u00e9@a.test", "o'brien@a.test".replace("'", "-"),
                        "user_1@a-b.test", "x@localhost"):
            self.assertEqual(ParticipantId(address).address, address.lower())


class TokenTests(SynchronousTestCase):
    """The web64_counter_token vectors of section 9."""

    def test_web64_zero_is_A(self):
        self.assertEqual(web64_counter_token(0), "A")

    def test_web64_one_is_B(self):
        self.assertEqual(web64_counter_token(1), "B")

    def test_web64_63_is_underscore(self):
        self.assertEqual(web64_counter_token(63), "_")

    def test_web64_64_is_BA(self):
        self.assertEqual(web64_counter_token(64), "BA")

    def test_web64_4095_is_two_underscores(self):
        self.assertEqual(web64_counter_token(4095), "__")

    def test_web64_4096_is_BAA(self):
        self.assertEqual(web64_counter_token(4096), "BAA")

    def test_random_token_has_bits_over_six_characters(self):
        rng = random.Random(7)
        token = random_token(72, rng.getrandbits)
        self.assertEqual(len(token), 12)
        self.assertTrue(set(token) <= set(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))

    def test_generator_makes_wave_conv_root_and_blip_ids(self):
        gen = IdGenerator("a.test", seed="S")
        self.assertEqual(gen.new_wave_id(), WaveId("a.test", "w+SA"))
        self.assertEqual(gen.new_blip_id(), "b+SB")
        root = gen.new_conversation_root()
        self.assertEqual(root.uri, "wave://a.test/w+SC/conv+root")

    def test_generators_with_random_seeds_differ(self):
        self.assertNotEqual(IdGenerator("a.test").new_wave_id(),
                            IdGenerator("a.test").new_wave_id())


# Local ids: anything but lone surrogates, U+FFFD and the space (which the
# Java encoder does not round-trip); wave ids additionally escape '!'.
_local_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="\ufffd ")
_local_ids = st.text(_local_chars, min_size=1, max_size=24)
_wave_local_ids = _local_ids.map(lambda s: s.replace("~", "~~").replace("!", "~!"))
_labels = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
_domains = st.lists(_labels, min_size=1, max_size=3).map(".".join)


class UriPropertyTests(SynchronousTestCase):

    @settings(max_examples=EXAMPLES, deadline=None)
    @given(_domains, _wave_local_ids, _domains, _local_ids)
    def test_uri_round_trips_for_random_ids(self, wave_domain, wave_id, wavelet_domain, wavelet_id):
        original = name((wave_domain, wave_id), (wavelet_domain, wavelet_id))
        uri = original.uri
        self.assertEqual(WaveletName.from_uri(uri), original)
        # The URI is plain ASCII whatever the ids hold.
        uri.encode("ascii")

    @settings(max_examples=EXAMPLES, deadline=None)
    @given(_local_ids)
    def test_local_id_encoding_round_trips(self, local_id):
        self.assertEqual(decode_local_id(encode_local_id(local_id)), local_id)


class ParsingFuzzTests(SynchronousTestCase):
    """Whatever the text, id parsing raises InvalidId or returns a value; nothing else."""

    @settings(max_examples=EXAMPLES, deadline=None)
    @given(st.text(max_size=60).map(lambda s: "wave://" + s) | st.text(max_size=60))
    def test_random_uris_raise_only_invalid_id(self, text):
        try:
            WaveletName.from_uri(text)
        except InvalidId:
            pass

    @settings(max_examples=EXAMPLES, deadline=None)
    @given(st.text(max_size=40))
    def test_random_addresses_raise_only_invalid_participant_id(self, text):
        try:
            ParticipantId(text)
        except InvalidParticipantId:
            pass
