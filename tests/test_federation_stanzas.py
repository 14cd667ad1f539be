"""
Every stanza of wave protocol §1 and §8.3: what we build matches the examples
element for element (names, namespaces as inherited, attributes, <item>
wrappers), what we parse gives the payload back, and malformed input is a
bad-request with a text.
"""

import base64

from twisted.trial.unittest import SynchronousTestCase
from twisted.words.xish import domish

from wavebox.federation import stanzas as S

NAME = "wave://alpha.example/w+Zx81/conv+root"
A, B = "wave.alpha.example", "wave.beta.example"
DELTA1 = b"\x0a\x22\x0a\x20first applied delta bytes \x00\xff"
DELTA2 = b"second \x01\x02 applied delta"
HASH = bytes(range(20))
SIGNER = base64.b64decode("zBYbw+lLkXGao+LfNWbv/faS+yAlsAmUfCNqXBxeFtI=")
CERT1, CERT2 = b"\x30\x82leaf DER", b"\x30\x82intermediate DER"


def b64(data):
    return base64.b64encode(data).decode()


def xml(text):
    return S.element_from_xml(text)


def canonical(element):
    """(namespace, name, attributes, text, children): what the wire means."""
    attrs = tuple(sorted((k if isinstance(k, str) else "{%s}%s" % k, v)
                         for k, v in element.attributes.items()))
    text = "".join(c for c in element.children if isinstance(c, str)).strip()
    return (element.uri or "", element.name, attrs, text,
            tuple(canonical(c) for c in element.elements()))


def roundtrip(element):
    """Serialize and parse again, as the peer sees it."""
    return xml(element.toXml())


class WireShapeMixin:
    def assertSameWire(self, built, example_text):
        self.assertEqual(canonical(roundtrip(built)), canonical(xml(example_text)))


class WaveletUpdateTests(WireShapeMixin, SynchronousTestCase):
    DELTA_EXAMPLE = """
<message type="normal" id="Qm9vdHN0cmFw-17" from="wave.alpha.example" to="wave.beta.example">
  <request xmlns="urn:xmpp:receipts"/>
  <event xmlns="http://jabber.org/protocol/pubsub#event">
    <items>
      <item>
        <wavelet-update xmlns="http://waveprotocol.org/protocol/0.2/waveserver"
            wavelet-name="wave://alpha.example/w+Zx81/conv+root">
          <applied-delta><![CDATA[%s]]></applied-delta>
        </wavelet-update>
      </item>
    </items>
  </event>
</message>""" % (b64(DELTA1),)

    COMMIT_EXAMPLE = """
<message type="normal" id="c-0042" from="wave.alpha.example" to="wave.beta.example">
  <request xmlns="urn:xmpp:receipts"/>
  <event xmlns="http://jabber.org/protocol/pubsub#event"><items><item>
    <wavelet-update xmlns="http://waveprotocol.org/protocol/0.2/waveserver"
        wavelet-name="wave://alpha.example/w+Zx81/conv+root">
      <commit-notice version="7" history-hash="%s"/>
    </wavelet-update>
  </item></items></event>
</message>""" % (b64(HASH),)

    def test_delta_update_matches_the_example(self):
        built = S.build_update_message(A, B, "Qm9vdHN0cmFw-17",
                                       [S.WaveletUpdate(NAME, (DELTA1,))])
        self.assertSameWire(built, self.DELTA_EXAMPLE)

    def test_commit_notice_update_matches_the_example_with_history_hash(self):
        built = S.build_update_message(A, B, "c-0042", [
            S.WaveletUpdate(NAME, (), S.CommitNotice(7, HASH))])
        self.assertSameWire(built, self.COMMIT_EXAMPLE)

    def test_delta_and_commit_notice_share_one_wavelet_update_per_item(self):
        built = roundtrip(S.build_update_message(A, B, "x", [
            S.WaveletUpdate(NAME, (DELTA1, DELTA2), S.CommitNotice(9, HASH))]))
        items = list(built.event.items.elements())
        self.assertEqual(len(items), 1)
        self.assertEqual([e.name for e in items[0].elements()], ["wavelet-update"])
        wu = next(items[0].elements())
        self.assertEqual([(e.uri, e.name) for e in wu.elements()],
                         [(S.NS_WAVE, "applied-delta")] * 2 + [(S.NS_WAVE, "commit-notice")])

    def test_each_update_gets_its_own_item(self):
        built = roundtrip(S.build_update_message(A, B, "x", [
            S.WaveletUpdate(NAME, (DELTA1,)),
            S.WaveletUpdate(NAME, (), S.CommitNotice(3, HASH))]))
        items = list(built.event.items.elements())
        self.assertEqual(len(items), 2)
        for item in items:
            self.assertEqual(len(list(item.elements())), 1)

    def test_commit_notice_without_hash_is_refused_when_building(self):
        self.assertRaises(ValueError, S.wavelet_update_element,
                          S.WaveletUpdate(NAME, (), S.CommitNotice(7)))

    def test_parse_example_gives_the_delta_bytes(self):
        msg = xml(self.DELTA_EXAMPLE)
        self.assertEqual(S.classify_message(msg), S.UPDATE)
        self.assertTrue(S.wants_receipt(msg))
        self.assertEqual(S.parse_update_message(msg), [S.WaveletUpdate(NAME, (DELTA1,))])

    def test_parse_commit_notice_keeps_version_and_hash(self):
        [update] = S.parse_update_message(xml(self.COMMIT_EXAMPLE))
        self.assertEqual(update.commit_notice, S.CommitNotice(7, HASH))
        self.assertEqual(update.applied_deltas, ())

    def test_parse_accepts_several_wavelet_updates_in_one_item(self):
        msg = xml("""<message type="normal" id="1"><event xmlns="%s"><items><item>
            <wavelet-update xmlns="%s" wavelet-name="%s"><applied-delta>%s</applied-delta></wavelet-update>
            <wavelet-update xmlns="%s" wavelet-name="%s"><commit-notice version="4" history-hash="%s"/></wavelet-update>
            </item></items></event></message>""" % (
            S.NS_PUBSUB_EVENT, S.NS_WAVE, NAME, b64(DELTA2), S.NS_WAVE, NAME, b64(HASH)))
        self.assertEqual(S.parse_update_message(msg), [
            S.WaveletUpdate(NAME, (DELTA2,)),
            S.WaveletUpdate(NAME, (), S.CommitNotice(4, HASH))])

    def test_parse_joins_split_character_data(self):
        wu = domish.Element((S.NS_WAVE, "wavelet-update"))
        wu["wavelet-name"] = NAME
        ad = wu.addElement("applied-delta")
        text = b64(DELTA1)
        ad.addContent(text[:5])
        ad.addContent("\n " + text[5:] + "\n")
        self.assertEqual(S.parse_wavelet_update(wu).applied_deltas, (DELTA1,))

    def test_outbox_element_survives_text_roundtrip(self):
        update = S.WaveletUpdate(NAME, (DELTA1,), S.CommitNotice(2, HASH))
        text = S.wavelet_update_element(update).toXml()
        self.assertEqual(S.parse_wavelet_update(xml(text)), update)

    def test_receipt_echoes_id_and_swaps_addresses(self):
        receipt = S.build_receipt(xml(self.DELTA_EXAMPLE))
        self.assertSameWire(receipt, """<message id="Qm9vdHN0cmFw-17"
            from="wave.beta.example" to="wave.alpha.example">
            <received xmlns="urn:xmpp:receipts"/></message>""")
        self.assertEqual(S.classify_message(roundtrip(receipt)), S.RECEIPT)

    def _bad(self, text):
        e = self.assertRaises(S.MalformedStanza, S.parse_update_message, xml(text))
        self.assertEqual(e.condition, "bad-request")
        self.assertTrue(e.text)
        return e

    def test_update_without_items_is_bad_request(self):
        self._bad('<message><event xmlns="%s"/></message>' % S.NS_PUBSUB_EVENT)

    def test_update_with_zero_items_is_bad_request(self):
        self._bad('<message><event xmlns="%s"><items/></event></message>' % S.NS_PUBSUB_EVENT)

    def test_update_item_in_wrong_namespace_is_bad_request(self):
        self._bad('<message><event xmlns="%s"><items><item xmlns="%s"><wavelet-update '
                  'xmlns="%s" wavelet-name="%s"><applied-delta>QUJD</applied-delta>'
                  '</wavelet-update></item></items></event></message>' % (
                      S.NS_PUBSUB_EVENT, S.NS_PUBSUB, S.NS_WAVE, NAME))

    def test_update_without_wavelet_name_is_bad_request(self):
        self._bad('<message><event xmlns="%s"><items><item><wavelet-update xmlns="%s">'
                  '<applied-delta>QUJD</applied-delta></wavelet-update></item></items>'
                  '</event></message>' % (S.NS_PUBSUB_EVENT, S.NS_WAVE))

    def test_applied_delta_not_base64_is_bad_request(self):
        e = self._bad('<message><event xmlns="%s"><items><item><wavelet-update xmlns="%s" '
                      'wavelet-name="%s"><applied-delta>not*base64!</applied-delta>'
                      '</wavelet-update></item></items></event></message>' % (
                          S.NS_PUBSUB_EVENT, S.NS_WAVE, NAME))
        self.assertIn("base64", e.text)

    def test_commit_notice_without_history_hash_is_bad_request(self):
        self._bad('<message><event xmlns="%s"><items><item><wavelet-update xmlns="%s" '
                  'wavelet-name="%s"><commit-notice version="3"/></wavelet-update></item>'
                  '</items></event></message>' % (S.NS_PUBSUB_EVENT, S.NS_WAVE, NAME))

    def test_commit_notice_version_not_decimal_is_bad_request(self):
        self._bad('<message><event xmlns="%s"><items><item><wavelet-update xmlns="%s" '
                  'wavelet-name="%s"><commit-notice version="0x3" history-hash="%s"/>'
                  '</wavelet-update></item></items></event></message>' % (
                      S.NS_PUBSUB_EVENT, S.NS_WAVE, NAME, b64(HASH)))

    def test_empty_wavelet_update_is_bad_request(self):
        self._bad('<message><event xmlns="%s"><items><item><wavelet-update xmlns="%s" '
                  'wavelet-name="%s"/></item></items></event></message>' % (
                      S.NS_PUBSUB_EVENT, S.NS_WAVE, NAME))


class PingTests(WireShapeMixin, SynchronousTestCase):
    def test_ping_matches_the_example(self):
        self.assertSameWire(S.build_ping(B, A, "ping-1"), """
<message type="normal" id="ping-1" from="wave.beta.example" to="wave.alpha.example">
  <ping xmlns="http://waveprotocol.org/protocol/0.2/waveserver"/>
  <request xmlns="urn:xmpp:receipts"/>
</message>""")

    def test_ping_is_classified_and_wants_a_receipt(self):
        ping = roundtrip(S.build_ping(B, A, "ping-1"))
        self.assertEqual(S.classify_message(ping), S.PING)
        self.assertTrue(S.wants_receipt(ping))

    def test_error_message_is_classified_before_anything_else(self):
        msg = xml('<message type="error" id="1"><received xmlns="urn:xmpp:receipts"/>'
                  '<error type="cancel"><remote-server-not-found xmlns="%s"/></error>'
                  '</message>' % S.NS_STANZAS)
        self.assertEqual(S.classify_message(msg), S.ERROR)

    def test_unknown_message_is_bad_request(self):
        self.assertRaises(S.MalformedStanza, S.classify_message,
                          xml('<message><body>hi</body></message>'))


class SubmitTests(WireShapeMixin, SynchronousTestCase):
    REQUEST = """
<iq type="set" id="s-91" from="wave.beta.example" to="wave.alpha.example">
  <pubsub xmlns="http://jabber.org/protocol/pubsub">
    <publish node="wavelet">
      <item>
        <submit-request xmlns="http://waveprotocol.org/protocol/0.2/waveserver">
          <delta wavelet-name="wave://alpha.example/w+Zx81/conv+root"><![CDATA[%s]]></delta>
        </submit-request>
      </item>
    </publish>
  </pubsub>
</iq>""" % (b64(DELTA1),)

    RESPONSE = """
<iq type="result" id="s-91" from="wave.alpha.example" to="wave.beta.example">
  <pubsub xmlns="http://jabber.org/protocol/pubsub">
    <publish>
      <item>
        <submit-response xmlns="http://waveprotocol.org/protocol/0.2/waveserver"
            application-timestamp="1700000000123" operations-applied="1">
          <hashed-version version="8" history-hash="%s"/>
        </submit-response>
      </item>
    </publish>
  </pubsub>
</iq>""" % (b64(HASH),)

    def test_request_matches_the_example(self):
        self.assertSameWire(S.build_submit_request(B, A, "s-91", S.SubmitRequest(NAME, DELTA1)),
                            self.REQUEST)

    def test_request_parses_and_classifies(self):
        iq = xml(self.REQUEST)
        self.assertEqual(S.classify_iq(iq), S.SUBMIT)
        self.assertEqual(S.parse_submit_request(iq), S.SubmitRequest(NAME, DELTA1))

    def test_response_matches_the_example(self):
        built = S.build_submit_response(xml(self.REQUEST), S.SubmitResponse(
            operations_applied=1, application_timestamp=1700000000123,
            version=8, history_hash=HASH))
        self.assertSameWire(built, self.RESPONSE)

    def test_response_parses(self):
        self.assertEqual(S.parse_submit_response(xml(self.RESPONSE)), S.SubmitResponse(
            1, 1700000000123, 8, HASH))

    def test_response_without_hashed_version_is_bad_request(self):
        self.assertRaises(S.MalformedStanza, S.parse_submit_response, xml(
            '<iq type="result"><pubsub xmlns="%s"><publish><item><submit-response xmlns="%s" '
            'application-timestamp="1" operations-applied="1"/></item></publish></pubsub></iq>'
            % (S.NS_PUBSUB, S.NS_WAVE)))

    def test_response_without_operations_applied_is_bad_request(self):
        self.assertRaises(S.MalformedStanza, S.parse_submit_response, xml(
            '<iq type="result"><pubsub xmlns="%s"><publish><item><submit-response xmlns="%s" '
            'application-timestamp="1"><hashed-version version="1" history-hash="%s"/>'
            '</submit-response></item></publish></pubsub></iq>'
            % (S.NS_PUBSUB, S.NS_WAVE, b64(HASH))))

    def _bad_request(self, text):
        e = self.assertRaises(S.MalformedStanza, S.parse_submit_request, xml(text))
        self.assertEqual(e.condition, "bad-request")
        self.assertIn("Malformed submit request", e.text)

    def test_request_without_item_is_bad_request(self):
        self._bad_request('<iq type="set"><pubsub xmlns="%s"><publish node="wavelet">'
                          '<submit-request xmlns="%s"><delta wavelet-name="%s">QUJD</delta>'
                          '</submit-request></publish></pubsub></iq>' % (S.NS_PUBSUB, S.NS_WAVE, NAME))

    def test_request_without_delta_text_is_bad_request(self):
        self._bad_request('<iq type="set"><pubsub xmlns="%s"><publish node="wavelet"><item>'
                          '<submit-request xmlns="%s"><delta wavelet-name="%s"/></submit-request>'
                          '</item></publish></pubsub></iq>' % (S.NS_PUBSUB, S.NS_WAVE, NAME))

    def test_request_without_wavelet_name_is_bad_request(self):
        self._bad_request('<iq type="set"><pubsub xmlns="%s"><publish node="wavelet"><item>'
                          '<submit-request xmlns="%s"><delta>QUJD</delta></submit-request>'
                          '</item></publish></pubsub></iq>' % (S.NS_PUBSUB, S.NS_WAVE))

    def test_request_payload_in_wrong_namespace_is_bad_request(self):
        self._bad_request('<iq type="set"><pubsub xmlns="%s"><publish node="wavelet"><item>'
                          '<submit-request><delta wavelet-name="%s">QUJD</delta></submit-request>'
                          '</item></publish></pubsub></iq>' % (S.NS_PUBSUB, NAME))


class HistoryTests(WireShapeMixin, SynchronousTestCase):
    START_HASH = NAME.encode()
    REQUEST = """
<iq type="get" id="h-3" from="wave.beta.example" to="wave.alpha.example">
  <pubsub xmlns="http://jabber.org/protocol/pubsub">
    <items node="wavelet">
      <delta-history xmlns="http://waveprotocol.org/protocol/0.2/waveserver"
          wavelet-name="wave://alpha.example/w+Zx81/conv+root"
          start-version="0" start-version-hash="d2F2ZTovL2FscGhhLmV4YW1wbGUvdytaeDgxL2NvbnYrcm9vdA=="
          end-version="5" end-version-hash="%s"
          response-length-limit="300000"/>
    </items>
  </pubsub>
</iq>""" % (b64(HASH),)

    RESPONSE = """
<iq type="result" id="h-3" from="wave.alpha.example" to="wave.beta.example">
  <pubsub xmlns="http://jabber.org/protocol/pubsub">
    <items>
      <item><applied-delta xmlns="http://waveprotocol.org/protocol/0.2/waveserver"><![CDATA[%s]]></applied-delta></item>
      <item><applied-delta xmlns="http://waveprotocol.org/protocol/0.2/waveserver"><![CDATA[%s]]></applied-delta></item>
      <item><commit-notice xmlns="http://waveprotocol.org/protocol/0.2/waveserver" version="5"/></item>
    </items>
  </pubsub>
</iq>""" % (b64(DELTA1), b64(DELTA2))

    def request(self, limit=300000):
        return S.HistoryRequest(NAME, 0, self.START_HASH, 5, HASH, limit)

    def test_request_matches_the_example(self):
        self.assertSameWire(S.build_history_request(B, A, "h-3", self.request()), self.REQUEST)

    def test_request_parses_and_classifies(self):
        iq = xml(self.REQUEST)
        self.assertEqual(S.classify_iq(iq), S.HISTORY)
        self.assertEqual(S.parse_history_request(iq), self.request())

    def test_request_omits_a_limit_that_is_not_positive(self):
        built = S.build_history_request(B, A, "h", self.request(limit=-1))
        self.assertNotIn("response-length-limit", built.pubsub.items.firstChildElement().attributes)
        self.assertIsNone(S.parse_history_request(roundtrip(built)).length_limit)

    def test_response_matches_the_example(self):
        built = S.build_history_response(xml(self.REQUEST), S.HistoryResponse(
            (DELTA1, DELTA2), commit_notice_version=5))
        self.assertSameWire(built, self.RESPONSE)

    def test_response_parses(self):
        self.assertEqual(S.parse_history_response(xml(self.RESPONSE)),
                         S.HistoryResponse((DELTA1, DELTA2), 5, None))

    def test_truncated_response_carries_history_truncated_item(self):
        built = roundtrip(S.build_history_response(xml(self.REQUEST), S.HistoryResponse(
            (DELTA1,), commit_notice_version=5, truncated_version=2)))
        last = list(built.pubsub.items.elements())[-1]
        self.assertEqual(canonical(last.firstChildElement()),
                         (S.NS_WAVE, "history-truncated", (("version", "2"),), "", ()))
        self.assertEqual(S.parse_history_response(built), S.HistoryResponse((DELTA1,), 5, 2))

    def test_response_with_unknown_item_is_bad_request(self):
        self.assertRaises(S.MalformedStanza, S.parse_history_response, xml(
            '<iq type="result"><pubsub xmlns="%s"><items><item><surprise xmlns="%s"/></item>'
            '</items></pubsub></iq>' % (S.NS_PUBSUB, S.NS_WAVE)))

    def _bad_request(self, **replace):
        attrs = {"wavelet-name": NAME, "start-version": "0",
                 "start-version-hash": b64(self.START_HASH), "end-version": "5",
                 "end-version-hash": b64(HASH)}
        attrs.update(replace)
        text = " ".join('%s="%s"' % kv for kv in attrs.items() if kv[1] is not None)
        iq = xml('<iq type="get"><pubsub xmlns="%s"><items node="wavelet"><delta-history '
                 'xmlns="%s" %s/></items></pubsub></iq>' % (S.NS_PUBSUB, S.NS_WAVE, text))
        e = self.assertRaises(S.MalformedStanza, S.parse_history_request, iq)
        self.assertEqual(e.condition, "bad-request")

    def test_request_without_end_version_is_bad_request(self):
        self._bad_request(**{"end-version": None})

    def test_request_without_start_hash_is_bad_request(self):
        self._bad_request(**{"start-version-hash": None})

    def test_request_with_non_numeric_version_is_bad_request(self):
        self._bad_request(**{"start-version": "zero"})

    def test_request_with_negative_version_is_bad_request(self):
        self._bad_request(**{"end-version": "-5"})

    def test_request_with_huge_version_is_bad_request(self):
        self._bad_request(**{"end-version": str(2 ** 64)})

    def test_history_wrapped_in_item_is_bad_request(self):
        iq = xml('<iq type="get"><pubsub xmlns="%s"><items node="wavelet"><item><delta-history '
                 'xmlns="%s" wavelet-name="%s" start-version="0" start-version-hash="%s" '
                 'end-version="5" end-version-hash="%s"/></item></items></pubsub></iq>' % (
                     S.NS_PUBSUB, S.NS_WAVE, NAME, b64(self.START_HASH), b64(HASH)))
        self.assertRaises(S.MalformedStanza, S.parse_history_request, iq)


class SignerTests(WireShapeMixin, SynchronousTestCase):
    GET = """
<iq type="get" id="g-5" from="wave.beta.example" to="wave.alpha.example">
  <pubsub xmlns="http://jabber.org/protocol/pubsub">
    <items node="signer">
      <signer-request xmlns="http://waveprotocol.org/protocol/0.2/waveserver"
          signer-id="zBYbw+lLkXGao+LfNWbv/faS+yAlsAmUfCNqXBxeFtI="
          wavelet-name="wave://alpha.example/w+Zx81/conv+root"
          version="2" history-hash="%s"/>
    </items>
  </pubsub>
</iq>""" % (b64(HASH),)

    GET_RESPONSE = """
<iq type="result" id="g-5" from="wave.alpha.example" to="wave.beta.example">
  <pubsub xmlns="http://jabber.org/protocol/pubsub">
    <items>
      <signature xmlns="http://waveprotocol.org/protocol/0.2/waveserver" domain="alpha.example" algorithm="SHA256">
        <certificate><![CDATA[%s]]></certificate>
        <certificate><![CDATA[%s]]></certificate>
      </signature>
    </items>
  </pubsub>
</iq>""" % (b64(CERT1), b64(CERT2))

    POST = """
<iq type="set" id="p-6" from="wave.beta.example" to="wave.alpha.example">
  <pubsub xmlns="http://jabber.org/protocol/pubsub">
    <publish node="signer">
      <item>
        <signature xmlns="http://waveprotocol.org/protocol/0.2/waveserver" domain="beta.example" algorithm="SHA256">
          <certificate>%s</certificate>
        </signature>
      </item>
    </publish>
  </pubsub>
</iq>""" % (b64(CERT1),)

    POST_RESPONSE = """
<iq type="result" id="p-6" from="wave.alpha.example" to="wave.beta.example">
  <pubsub xmlns="http://jabber.org/protocol/pubsub">
    <publish>
      <item node="signer">
        <signature-response xmlns="http://waveprotocol.org/protocol/0.2/waveserver"/>
      </item>
    </publish>
  </pubsub>
</iq>"""

    def test_get_matches_the_example(self):
        self.assertSameWire(S.build_signer_request(B, A, "g-5", S.SignerRequest(
            NAME, SIGNER, 2, HASH)), self.GET)

    def test_get_parses_and_classifies(self):
        iq = xml(self.GET)
        self.assertEqual(S.classify_iq(iq), S.SIGNER_GET)
        self.assertEqual(S.parse_signer_request(iq), S.SignerRequest(NAME, SIGNER, 2, HASH))

    def test_get_without_signer_id_is_bad_request(self):
        self.assertRaises(S.MalformedStanza, S.parse_signer_request, xml(
            '<iq type="get"><pubsub xmlns="%s"><items node="signer"><signer-request xmlns="%s" '
            'wavelet-name="%s" version="2" history-hash="%s"/></items></pubsub></iq>' % (
                S.NS_PUBSUB, S.NS_WAVE, NAME, b64(HASH))))

    def test_get_response_has_no_item_wrapper(self):
        info = S.SignerInfoPayload("alpha.example", "SHA256", (CERT1, CERT2))
        self.assertSameWire(S.build_signer_response(xml(self.GET), info), self.GET_RESPONSE)

    def test_get_response_parses_certificates_leaf_first(self):
        self.assertEqual(S.parse_signer_response(xml(self.GET_RESPONSE)),
                         S.SignerInfoPayload("alpha.example", "SHA256", (CERT1, CERT2)))

    def test_post_matches_the_example(self):
        info = S.SignerInfoPayload("beta.example", "SHA256", (CERT1,))
        self.assertSameWire(S.build_signer_post(B, A, "p-6", info), self.POST)

    def test_post_parses_and_classifies(self):
        iq = xml(self.POST)
        self.assertEqual(S.classify_iq(iq), S.SIGNER_POST)
        self.assertEqual(S.parse_signer_post(iq),
                         S.SignerInfoPayload("beta.example", "SHA256", (CERT1,)))

    def test_post_response_has_node_on_its_item(self):
        self.assertSameWire(S.build_signer_post_response(xml(self.POST)), self.POST_RESPONSE)
        self.assertTrue(S.parse_signer_post_response(xml(self.POST_RESPONSE)))

    def test_algorithm_is_upper_cased(self):
        info = S.parse_signer_post(xml(self.POST.replace('"SHA256"', '"sha512"')))
        self.assertEqual(info.algorithm, "SHA512")

    def test_unknown_algorithm_is_bad_request(self):
        e = self.assertRaises(S.MalformedStanza, S.parse_signer_post,
                              xml(self.POST.replace('"SHA256"', '"MD5"')))
        self.assertIn("signer algorithm", e.text)

    def test_post_without_certificate_is_bad_request(self):
        text = self.POST.replace("<certificate>%s</certificate>" % b64(CERT1), "")
        self.assertRaises(S.MalformedStanza, S.parse_signer_post, xml(text))

    def test_post_without_domain_is_bad_request(self):
        text = self.POST.replace('domain="beta.example"', "")
        self.assertRaises(S.MalformedStanza, S.parse_signer_post, xml(text))


class DispatchTests(SynchronousTestCase):
    def _iq(self, stype, child, node):
        return xml('<iq type="%s"><pubsub xmlns="%s"><%s node="%s"/></pubsub></iq>' % (
            stype, S.NS_PUBSUB, child, node))

    def test_unknown_node_is_bad_request(self):
        self.assertRaises(S.MalformedStanza, S.classify_iq, self._iq("get", "items", "other"))

    def test_set_with_items_is_bad_request(self):
        self.assertRaises(S.MalformedStanza, S.classify_iq, self._iq("set", "items", "wavelet"))

    def test_result_iq_is_not_a_request(self):
        self.assertRaises(S.MalformedStanza, S.classify_iq, self._iq("result", "items", "wavelet"))

    def test_non_pubsub_iq_is_bad_request(self):
        self.assertRaises(S.MalformedStanza, S.classify_iq, xml(
            '<iq type="get"><query xmlns="jabber:iq:version"/></iq>'))


class ErrorTests(WireShapeMixin, SynchronousTestCase):
    def test_error_reply_matches_the_example_and_drops_the_payload(self):
        request = xml(SubmitTests.REQUEST)
        reply = S.build_error_reply(request, S.FederationError(
            "bad-request", "Remote verification failed"))
        self.assertSameWire(reply, """
<iq type="error" id="s-91" from="wave.alpha.example" to="wave.beta.example">
  <error type="modify">
    <bad-request xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/>
    <text xmlns="urn:ietf:params:xml:ns:xmpp-stanzas" xml:lang="en">Remote verification failed</text>
  </error>
</iq>""")

    def test_condition_types_follow_rfc3920_defaults(self):
        request = xml(SubmitTests.REQUEST)
        types = {c: S.build_error_reply(request, S.FederationError(c)).error["type"]
                 for c in ("bad-request", "item-not-found", "not-authorized",
                           "resource-constraint", "remote-server-timeout",
                           "internal-server-error", "not-acceptable")}
        self.assertEqual(types, {
            "bad-request": "modify", "item-not-found": "cancel", "not-authorized": "auth",
            "resource-constraint": "wait", "remote-server-timeout": "wait",
            "internal-server-error": "wait", "not-acceptable": "modify"})

    def test_parse_error_reads_condition_and_text(self):
        reply = roundtrip(S.build_error_reply(xml(SubmitTests.REQUEST), S.FederationError(
            "not-authorized", "Not authorised to get signer info")))
        e = S.parse_error(reply)
        self.assertEqual((e.condition, e.text, e.federation_code),
                         ("not-authorized", "Not authorised to get signer info", "NOT_AUTHORIZED"))

    def test_unknown_condition_maps_to_undefined_condition(self):
        e = S.parse_error(xml('<iq type="error"><error type="cancel"><gone xmlns="%s"/>'
                              '</error></iq>' % S.NS_STANZAS))
        self.assertEqual((e.condition, e.federation_code), ("gone", "UNDEFINED_CONDITION"))

    def test_unknown_signer_is_our_application_condition_and_is_read_back(self):
        reply = roundtrip(S.build_error_reply(xml(SubmitTests.REQUEST), S.FederationError(
            "internal-server-error", "Unknown signer: ab12", application=S.UNKNOWN_SIGNER)))
        self.assertEqual([c.name for c in reply.error.elements() if c.uri == S.NS_WAVEBOX_ERRORS],
                         [S.UNKNOWN_SIGNER])
        e = S.parse_error(reply)
        self.assertEqual((e.condition, e.application, e.unknown_signer),
                         ("internal-server-error", S.UNKNOWN_SIGNER, True))

    def test_other_servers_say_unknown_signer_in_the_text_only(self):
        for condition, text, unknown in (
                ("internal-server-error", "Unknown signer 3f9a", True),    # Wave in a Box
                ("bad-request", "unknown signer", True),                  # FedOne
                ("bad-request", "Wavelet does not exist", False),
                ("not-authorized", "signer not allowed", False)):
            e = S.parse_error(xml(
                '<iq type="error"><error type="cancel"><%s xmlns="%s"/><text xmlns="%s">%s'
                '</text></error></iq>' % (condition, S.NS_STANZAS, S.NS_STANZAS, text)))
            self.assertEqual(e.unknown_signer, unknown, (condition, text))

    def test_our_application_condition_decides_over_the_text(self):
        e = S.FederationError("internal-server-error", "signer of something", application="x")
        self.assertFalse(e.unknown_signer)

    def test_error_without_condition_is_undefined_condition(self):
        e = S.parse_error(xml('<iq type="error"/>'))
        self.assertEqual(e.condition, "undefined-condition")


class XmlTextTests(SynchronousTestCase):
    def test_garbage_is_bad_request(self):
        self.assertRaises(S.MalformedStanza, S.element_from_xml, "<a><b></a>")

    def test_two_elements_are_refused(self):
        self.assertRaises(S.MalformedStanza, S.element_from_xml, "<a/><b/>")

    def test_base64_without_padding_is_accepted(self):
        self.assertEqual(S.b64decode("QUI", "x"), b"AB")
