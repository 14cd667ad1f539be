"""
Server Dialback (XEP-0220): keys (XEP-0185) and the three roles, each over
in-memory streams.
"""

import os
import stat

from twisted.trial import unittest
from twisted.words.xish import domish

from tests import xmpp_fakes as fx
from wavebox.xmpp import dialback


def message(sender, to, body="hi"):
    m = domish.Element((None, "message"))
    m["from"], m["to"] = sender, to
    m.addElement("body", content=body)
    return m


class KeyTests(unittest.SynchronousTestCase):

    def test_key_matches_the_xep_0185_test_vector(self):
        # XEP-0185 section 3: secret, Receiving Server, Originating Server, stream id.
        self.assertEqual(
            dialback.dialback_key("s3cr3tf0rd14lb4ck", "xmpp.example.com",
                                  "example.org", "D60000229F"),
            "37c69b1cf07a3f67c04a5ef5902fa5114f2c76fe4a2686482ba5b89323075643")

    def test_key_is_bound_to_the_stream_id_and_the_direction(self):
        key = dialback.dialback_key("s", "b.test", "a.test", "id1")
        self.assertNotEqual(key, dialback.dialback_key("s", "b.test", "a.test", "id2"))
        self.assertNotEqual(key, dialback.dialback_key("s", "a.test", "b.test", "id1"))
        self.assertTrue(dialback.key_is_valid("s", "b.test", "a.test", "id1", key))
        self.assertFalse(dialback.key_is_valid("t", "b.test", "a.test", "id1", key))

    def test_secret_is_made_once_and_readable_by_its_owner_only(self):
        directory = self.mktemp()
        first = dialback.load_secret(directory)
        mode = stat.S_IMODE(os.stat(os.path.join(directory, dialback.SECRET_FILE)).st_mode)
        self.assertEqual(mode, 0o600)
        self.assertGreaterEqual(len(first), 32)
        self.assertEqual(dialback.load_secret(directory), first)

    def test_secret_from_the_config_wins_and_nothing_is_written(self):
        from wavebox.config import load
        directory = self.mktemp()
        config = load({"domain": ["a.test"], "data_dir": directory,
                       "dialback_secret": "from the config file"})
        self.assertEqual(dialback.secret_from_config(config), "from the config file")
        self.assertFalse(os.path.exists(os.path.join(directory, dialback.SECRET_FILE)))

    def test_without_a_configured_secret_the_data_dir_keeps_one(self):
        from wavebox.config import load
        directory = self.mktemp()
        config = load({"domain": ["a.test"], "data_dir": directory})
        secret = dialback.secret_from_config(config)
        with open(os.path.join(directory, dialback.SECRET_FILE)) as f:
            self.assertEqual(f.read().strip(), secret)
        # A restart (a new configuration, the same data dir) keys with it again.
        self.assertEqual(dialback.secret_from_config(load({"domain": ["a.test"],
                                                           "data_dir": directory})), secret)

    def test_bytes_secret_is_refused(self):
        # wokkel's bug: a bytes secret broke key generation silently.
        self.assertRaises(ValueError, dialback.Dialback, b"secret", None)


class OriginatingServerTests(unittest.SynchronousTestCase):
    """We send db:result on our outgoing stream and wait for the verdict."""

    def setUp(self):
        self.service, self.network, _, self.clock = fx.make_service(
            table={"b.test": [("127.0.0.3", 5269)]})
        self.addCleanup(self.service.stopService)

    def test_db_result_carries_the_key_for_the_post_tls_stream_id(self):
        self.service.send(message("a.test", "bob@b.test"))
        peer = fx.answer_outgoing(self.network)
        _, sent = peer.take()
        result = [e for e in sent if e.name == "result"][0]
        self.assertEqual((result["from"], result["to"]), ("a.test", "b.test"))
        self.assertEqual(str(result), dialback.dialback_key(
            "s3cret", "b.test", "a.test", "post-tls-1"))
        self.assertEqual(peer.sid, "post-tls-1")

    def test_stanzas_wait_until_the_receiving_server_says_valid(self):
        self.service.send(message("a.test", "bob@b.test", "one"))
        self.service.send(message("a.test", "bob@b.test", "two"))
        peer = fx.answer_outgoing(self.network)
        _, sent = peer.take()
        self.assertEqual([e.name for e in sent if e.name == "message"], [])
        peer.feed("<db:result from='b.test' to='a.test' type='valid'/>")
        _, sent = peer.take()
        self.assertEqual([str(e.body) for e in sent if e.name == "message"], ["one", "two"])

    def test_invalid_verdict_bounces_the_waiting_stanzas(self):
        bounced = []
        self.service.local.xmlstream.addObserver("/message[@type='error']", bounced.append)
        self.service.send(message("a.test", "bob@b.test"))
        peer = fx.answer_outgoing(self.network)
        peer.feed("<db:result from='b.test' to='a.test' type='invalid'/>")
        self.assertEqual(len(bounced), 1)
        self.assertEqual(bounced[0]["to"], "a.test")
        self.assertEqual(bounced[0].error.firstChildElement().name, "remote-server-timeout")


class ReceivingServerTests(unittest.SynchronousTestCase):
    """A peer claims a domain on a stream it opened to us; we ask its Authoritative Server."""

    def setUp(self):
        self.service, self.network, self.resolver, self.clock = fx.make_service(
            table={"b.test": [("127.0.0.3", 5269)]})
        self.addCleanup(self.service.stopService)
        self.delivered = []
        self.service.local.xmlstream.addObserver("/message", self.delivered.append)

    def claim(self, peer, key="k3y"):
        peer.feed("<db:result from='b.test' to='a.test'>%s</db:result>" % (key,))

    def test_key_is_checked_with_the_authoritative_server(self):
        peer = fx.open_incoming(self.service)
        self.claim(peer)
        self.assertEqual(self.resolver.queries, ["b.test"])
        authoritative = fx.answer_outgoing(self.network)
        _, sent = authoritative.take()
        verify = [e for e in sent if e.name == "verify"][0]
        self.assertEqual((verify["from"], verify["to"], verify["id"], str(verify)),
                         ("a.test", "b.test", peer.sid, "k3y"))
        authoritative.feed("<db:verify from='b.test' to='a.test' id='%s' type='valid'/>"
                           % (peer.sid,))
        _, answer = peer.take()
        self.assertEqual([(e.name, e["type"], e["from"], e["to"]) for e in answer],
                         [("result", "valid", "a.test", "b.test")])
        peer.feed("<message from='bob@b.test' to='alice@a.test'><body>hi</body></message>")
        self.assertEqual(len(self.delivered), 1)

    def test_invalid_key_is_answered_invalid_and_stanzas_stay_refused(self):
        peer = fx.open_incoming(self.service)
        self.claim(peer)
        authoritative = fx.answer_outgoing(self.network)
        authoritative.feed("<db:verify from='b.test' to='a.test' id='%s' type='invalid'/>"
                           % (peer.sid,))
        _, answer = peer.take()
        self.assertEqual([e.getAttribute("type") for e in answer], ["invalid"])
        peer.feed("<message from='bob@b.test' to='alice@a.test'/>")
        _, sent = peer.take()
        self.assertEqual(fx.stream_error(sent), "not-authorized")
        self.assertEqual(self.delivered, [])

    def test_unreachable_authoritative_server_is_a_dialback_error(self):
        peer = fx.open_incoming(self.service)
        self.claim(peer)
        self.network.refuse(self.network.attempts[0])
        _, answer = peer.take()
        self.assertEqual(answer[0].getAttribute("type"), "error")
        self.assertEqual(answer[0].error.firstChildElement().name, "remote-server-timeout")
        # The reason goes with it, so the originating operator reads it in
        # their own log (DialbackFailed quotes it).
        condition, text = dialback._error_details(answer[0])
        self.assertEqual(condition, "remote-server-timeout")
        self.assertTrue(text.startswith("cannot verify b.test -> a.test: "), text)
        self.assertIn("connection refused", text)

    def test_certificate_that_proves_the_domain_needs_no_verify(self):
        self.service.tls.proves.add("b.test")
        peer = fx.open_incoming(self.service)
        self.claim(peer)
        _, answer = peer.take()
        self.assertEqual([e.getAttribute("type") for e in answer], ["valid"])
        self.assertEqual(self.network.attempts, [])

    def test_db_result_before_starttls_is_a_policy_violation(self):
        peer = fx.open_incoming(self.service, tls=False)
        self.claim(peer)
        _, sent = peer.take()
        self.assertEqual(fx.stream_error(sent), "policy-violation")
        self.assertEqual(self.network.attempts, [])

    def test_db_result_for_a_domain_we_do_not_host_is_item_not_found(self):
        peer = fx.open_incoming(self.service)
        peer.feed("<db:result from='b.test' to='c.test'>k</db:result>")
        _, answer = peer.take()
        self.assertEqual(answer[0]["type"], "error")
        self.assertEqual(answer[0].error.firstChildElement().name, "item-not-found")

    def test_verify_goes_over_our_pending_outgoing_stream_without_waiting(self):
        # Prosody's order: we claim a.test on our stream; before answering, it
        # connects to us and claims b.test, and holds its db:verify for our key
        # until we have verified its own.  We must verify over our still
        # unauthenticated stream, not wait for it.
        self.service.send(message("a.test", "bob@b.test"))
        ours = fx.answer_outgoing(self.network)
        ours.take()
        theirs = fx.open_incoming(self.service)
        self.claim(theirs, "their-key")
        self.assertEqual(len(self.network.attempts), 1)
        _, sent = ours.take()
        self.assertEqual([(e.name, str(e)) for e in sent], [("verify", "their-key")])
        ours.feed("<db:verify from='b.test' to='a.test' id='%s' type='valid'/>" % (theirs.sid,))
        _, answer = theirs.take()
        self.assertEqual(answer[0]["type"], "valid")
        # Now it verifies our key, on its stream, and says valid on ours.
        key = dialback.dialback_key("s3cret", "b.test", "a.test", ours.sid)
        theirs.feed("<db:verify from='b.test' to='a.test' id='%s'>%s</db:verify>"
                    % (ours.sid, key))
        _, answer = theirs.take()
        self.assertEqual(answer[0]["type"], "valid")
        ours.feed("<db:result from='b.test' to='a.test' type='valid'/>")
        _, sent = ours.take()
        self.assertEqual([e.name for e in sent], ["message"])

    def test_verify_for_another_of_our_domains_also_reuses_the_pending_stream(self):
        # A db:verify may go on any stream to the Authoritative Server, even
        # one whose own dialback is pending: no new connection.
        self.service.send(message("a.test", "bob@b.test"))
        ours = fx.answer_outgoing(self.network)
        ours.take()
        theirs = fx.open_incoming(self.service, to="wave.a.test")
        theirs.feed("<db:result from='b.test' to='wave.a.test'>their-key</db:result>")
        self.assertEqual(len(self.network.attempts), 1)
        _, sent = ours.take()
        self.assertEqual([(e.name, e["from"], e["to"], str(e)) for e in sent],
                         [("verify", "wave.a.test", "b.test", "their-key")])


class AuthoritativeServerTests(unittest.SynchronousTestCase):
    """A Receiving Server asks us whether a key we handed out is genuine."""

    def setUp(self):
        self.service, self.network, _, _ = fx.make_service()
        self.addCleanup(self.service.stopService)
        self.peer = fx.open_incoming(self.service)

    def ask(self, key, to="a.test"):
        self.peer.feed("<db:verify from='b.test' to='%s' id='s1'>%s</db:verify>" % (to, key))
        _, answer = self.peer.take()
        return answer[0]

    def test_genuine_key_is_valid(self):
        answer = self.ask(dialback.dialback_key("s3cret", "b.test", "a.test", "s1"))
        self.assertEqual((answer["type"], answer["from"], answer["to"], answer["id"]),
                         ("valid", "a.test", "b.test", "s1"))

    def test_forged_key_is_invalid(self):
        self.assertEqual(self.ask("00" * 32)["type"], "invalid")

    def test_key_for_a_domain_we_do_not_host_is_an_error(self):
        answer = self.ask("k", to="c.test")
        self.assertEqual(answer["type"], "error")
        self.assertEqual(answer.error.firstChildElement().name, "item-not-found")

    def test_verify_answers_need_no_authentication_and_open_no_connection(self):
        self.ask(dialback.dialback_key("s3cret", "b.test", "wave.a.test", "s1"), "wave.a.test")
        self.assertEqual(self.network.attempts, [])


class DialbackFailedTextTests(unittest.SynchronousTestCase):

    def test_a_dialback_error_without_a_reason_says_what_to_check_here(self):
        # Not "its log says why": the peer's log is not ours to read.
        text = str(dialback.DialbackFailed("error", "remote-server-timeout", peer="b.test"))
        self.assertTrue(text.startswith("dialback error (remote-server-timeout): b.test could "
                                        "not verify our key: to check it, it connects back"),
                        text)
        self.assertIn("wavebox check --self", text)
        self.assertNotIn("log", text)

    def test_a_dialback_error_with_a_reason_quotes_it(self):
        text = str(dialback.DialbackFailed("error", "remote-server-timeout", "its CA is unknown",
                                           peer="b.test"))
        self.assertEqual(text, "dialback error (remote-server-timeout): b.test could not verify "
                               "our key; it says: its CA is unknown")

    def test_invalid_is_said_plainly(self):
        self.assertEqual(str(dialback.DialbackFailed("invalid")), "dialback invalid")
