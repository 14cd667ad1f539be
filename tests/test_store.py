"""
The store: one contract (IWaveletStore) pinned against every engine, and what
only the SQLite engine promises (persistence, group commit, surviving SIGKILL).
"""

import os
import signal
import sqlite3
import sys
import threading

from twisted.internet import defer, error, protocol, reactor
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from wavebox import cli, config
from wavebox.store import (
    AccountExists, IWaveletStore, StoreClosed, StoreConflict, StoredDelta, StoreError,
    StoreURLError, UnknownAccount, UnknownVersion, accounts, open_store, parse_store_url)
from wavebox.store import backup
from wavebox.store import sqlite as sqlite_engine
from wavebox.store.memory import MemoryStore
from wavebox.store.sqlite import SqliteStore
from wavebox.store import postgresql as postgresql_engine
from wavebox.store.postgresql import PostgresStore

from tests import store_crash_child
from tests.postgres import fresh_database, shared_cluster

W1 = "wave://a.test/w+abc/conv+root"
W2 = "wave://a.test/w+def/conv+root"
W3 = "wave://b.test/w+ghi/conv+root"


def delta(applied_at, resulting=None, payload=None, author="alice@a.test", ts=1000):
    resulting = applied_at + 1 if resulting is None else resulting
    payload = b"delta %d-%d" % (applied_at, resulting) if payload is None else payload
    return StoredDelta(applied_at, resulting, b"hash%d" % resulting, payload, author, ts)


class StoredDeltaTests(unittest.SynchronousTestCase):

    def test_resulting_version_must_pass_applied_version(self):
        self.assertRaises(ValueError, StoredDelta, 3, 3, b"h", b"d", "a@a.test", 0)

    def test_delta_bytes_must_be_bytes(self):
        self.assertRaises(TypeError, StoredDelta, 0, 1, b"h", "text", "a@a.test", 0)
        self.assertRaises(TypeError, StoredDelta, 0, 1, bytearray(b"h"), b"d", "a@a.test", 0)

    def test_negative_version_is_refused(self):
        self.assertRaises(ValueError, StoredDelta, -1, 1, b"h", b"d", "a@a.test", 0)


class StoreContract:
    """The behaviour every engine owes; subclasses say how to make a store."""

    def make_store(self):
        raise NotImplementedError

    def setUp(self):
        self.store = self.make_store()

    @defer.inlineCallbacks
    def append_chain(self, name, count, start=0, **kwargs):
        version = start
        for _ in range(count):
            d = delta(version, version + 2, **kwargs)
            yield self.store.append_delta(name, d)
            version = d.resulting_version
        return version

    def test_provides_the_interface(self):
        self.assertTrue(verifyObject(IWaveletStore, self.store))

    # -- contiguity and conflict --

    @defer.inlineCallbacks
    def test_contiguous_deltas_come_back_in_version_order(self):
        yield self.store.append_delta(W1, delta(0, 3))
        yield self.store.append_delta(W1, delta(3, 4))
        yield self.store.append_delta(W1, delta(4, 9))
        found = yield self.store.deltas(W1)
        self.assertEqual([(d.applied_at_version, d.resulting_version) for d in found],
                         [(0, 3), (3, 4), (4, 9)])

    @defer.inlineCallbacks
    def test_first_delta_must_be_applied_at_version_zero(self):
        e = yield self.assertFailure(self.store.append_delta(W1, delta(1, 2)), StoreConflict)
        self.assertEqual((e.applied_at_version, e.current_version), (1, 0))
        self.assertIsNone((yield self.store.current_version(W1)))
        self.assertEqual((yield self.store.deltas(W1)), [])

    @defer.inlineCallbacks
    def test_gap_is_a_conflict_and_stores_nothing(self):
        yield self.store.append_delta(W1, delta(0, 2))
        e = yield self.assertFailure(self.store.append_delta(W1, delta(3, 4)), StoreConflict)
        self.assertEqual(e.current_version, 2)
        self.assertEqual(e.wavelet_name, W1)
        self.assertEqual(len((yield self.store.deltas(W1))), 1)
        self.assertEqual((yield self.store.current_version(W1)), (2, b"hash2"))

    @defer.inlineCallbacks
    def test_duplicate_version_is_a_conflict(self):
        yield self.store.append_delta(W1, delta(0, 2, payload=b"first"))
        e = yield self.assertFailure(
            self.store.append_delta(W1, delta(0, 2, payload=b"second")), StoreConflict)
        self.assertEqual((e.applied_at_version, e.current_version), (0, 2))
        found = yield self.store.deltas(W1)
        self.assertEqual([d.applied_delta for d in found], [b"first"])

    @defer.inlineCallbacks
    def test_append_on_top_of_another_history_hash_is_a_conflict(self):
        # Another writer's delta ends at the same version with another hash:
        # a delta made on top of ours (refused) must not land on top of it.
        yield self.store.append_delta(W1, delta(0, 2))
        theirs = StoredDelta(2, 3, b"their hash", b"theirs", "bob@a.test", 1000)
        yield self.store.append_delta(W1, theirs, applied_at_hash=b"hash2")
        e = yield self.assertFailure(
            self.store.append_delta(W1, delta(3, 4), applied_at_hash=b"hash3"), StoreConflict)
        self.assertEqual((e.applied_at_version, e.current_version), (3, 3))
        yield self.store.append_delta(W1, delta(3, 4), applied_at_hash=b"their hash")
        found = yield self.store.deltas(W1)
        self.assertEqual([d.resulting_version for d in found], [2, 3, 4])

    @defer.inlineCallbacks
    def test_stale_append_after_newer_ones_is_a_conflict(self):
        yield self.append_chain(W1, 3)
        yield self.assertFailure(self.store.append_delta(W1, delta(2, 4)), StoreConflict)
        self.assertEqual((yield self.store.current_version(W1)), (6, b"hash6"))

    @defer.inlineCallbacks
    def test_conflict_leaves_metadata_and_outbox_untouched(self):
        yield self.store.append_delta(W1, delta(0, 1, ts=50), participants=["a@a.test"])
        yield self.assertFailure(
            self.store.append_delta(W1, delta(0, 1, ts=99), participants=["b@b.test"],
                                    outbox=[("b.test", b"update")]),
            StoreConflict)
        info = yield self.store.wavelet_info(W1)
        self.assertEqual((info.participants, info.last_modified_ms), (("a@a.test",), 50))
        self.assertEqual((yield self.store.outbox_backlog()), {})

    @defer.inlineCallbacks
    def test_wavelets_have_separate_histories(self):
        yield self.store.append_delta(W1, delta(0, 5))
        yield self.store.append_delta(W2, delta(0, 1))
        self.assertEqual((yield self.store.current_version(W1)), (5, b"hash5"))
        self.assertEqual((yield self.store.current_version(W2)), (1, b"hash1"))

    @defer.inlineCallbacks
    def test_bytes_come_back_exactly(self):
        payload = bytes(range(256)) * 3 + b"\x00\x00" + b"\xff" * 1000
        h = bytes(range(255, 235, -1))
        d0 = StoredDelta(0, 7, h, payload, "\u00e9l\u00e8ve@a.test", 2 ** 41)
        yield self.store.append_delta(W1, d0)
        d1 = StoredDelta(7, 8, b"\x00" * 20, b"", "bob@a.test", 0)
        yield self.store.append_delta(W1, d1)
        found = yield self.store.deltas(W1)
        self.assertEqual(found, [d0, d1])
        self.assertIsInstance(found[0].applied_delta, bytes)
        self.assertIsInstance(found[0].resulting_hash, bytes)
        self.assertEqual((yield self.store.current_version(W1)), (8, b"\x00" * 20))

    @defer.inlineCallbacks
    def test_append_refuses_what_is_not_a_stored_delta(self):
        yield self.assertFailure(self.store.append_delta(W1, (0, 1, b"h", b"d")), TypeError)

    # -- ranges and lookups --

    @defer.inlineCallbacks
    def test_deltas_range_is_start_inclusive_end_exclusive(self):
        yield self.append_chain(W1, 5)     # boundaries 0 2 4 6 8 10
        found = yield self.store.deltas(W1, 2, 8)
        self.assertEqual([d.applied_at_version for d in found], [2, 4, 6])
        found = yield self.store.deltas(W1, 4)
        self.assertEqual([d.applied_at_version for d in found], [4, 6, 8])
        self.assertEqual((yield self.store.deltas(W1, 10)), [])
        self.assertEqual((yield self.store.deltas(W1, 4, 4)), [])

    @defer.inlineCallbacks
    def test_deltas_come_back_whole_when_range_is_not_on_boundaries(self):
        yield self.append_chain(W1, 3)     # 0-2, 2-4, 4-6
        found = yield self.store.deltas(W1, 1, 5)
        self.assertEqual([(d.applied_at_version, d.resulting_version) for d in found],
                         [(2, 4), (4, 6)])

    @defer.inlineCallbacks
    def test_deltas_limit_cuts_the_list(self):
        yield self.append_chain(W1, 5)
        found = yield self.store.deltas(W1, 2, None, limit=2)
        self.assertEqual([d.applied_at_version for d in found], [2, 4])

    @defer.inlineCallbacks
    def test_unknown_wavelet_has_no_deltas_and_no_version(self):
        self.assertEqual((yield self.store.deltas(W3)), [])
        self.assertIsNone((yield self.store.current_version(W3)))
        self.assertIsNone((yield self.store.delta_ending_at(W3, 1)))
        self.assertIsNone((yield self.store.wavelet_info(W3)))

    @defer.inlineCallbacks
    def test_delta_ending_and_starting_at_a_version(self):
        yield self.append_chain(W1, 3)     # 0-2, 2-4, 4-6
        ending = yield self.store.delta_ending_at(W1, 4)
        self.assertEqual((ending.applied_at_version, ending.resulting_version), (2, 4))
        starting = yield self.store.delta_starting_at(W1, 4)
        self.assertEqual((starting.applied_at_version, starting.resulting_version), (4, 6))
        self.assertIsNone((yield self.store.delta_ending_at(W1, 3)))
        self.assertIsNone((yield self.store.delta_starting_at(W1, 6)))

    @defer.inlineCallbacks
    def test_delta_boundaries(self):
        yield self.append_chain(W1, 2)     # 0-2, 2-4
        answers = []
        for v in (0, 1, 2, 3, 4, 5):
            answers.append((yield self.store.is_delta_boundary(W1, v)))
        self.assertEqual(answers, [True, False, True, False, True, False])

    # -- snapshots --

    @defer.inlineCallbacks
    def test_no_snapshot_until_one_is_put(self):
        yield self.append_chain(W1, 1)
        self.assertIsNone((yield self.store.latest_snapshot(W1)))

    @defer.inlineCallbacks
    def test_latest_snapshot_wins_and_older_one_is_ignored(self):
        yield self.append_chain(W1, 4)     # 0 2 4 6 8
        yield self.store.put_snapshot(W1, 4, b"state at 4\x00")
        self.assertEqual((yield self.store.latest_snapshot(W1)), (4, b"state at 4\x00"))
        yield self.store.put_snapshot(W1, 8, b"state at 8")
        yield self.store.put_snapshot(W1, 2, b"state at 2")
        self.assertEqual((yield self.store.latest_snapshot(W1)), (8, b"state at 8"))

    @defer.inlineCallbacks
    def test_snapshot_must_be_at_a_delta_boundary(self):
        yield self.append_chain(W1, 2)
        yield self.assertFailure(self.store.put_snapshot(W1, 3, b"x"), UnknownVersion)
        yield self.assertFailure(self.store.put_snapshot(W1, 6, b"x"), UnknownVersion)
        yield self.assertFailure(self.store.put_snapshot(W3, 2, b"x"), UnknownVersion)
        self.assertIsNone((yield self.store.latest_snapshot(W1)))

    # -- wavelet metadata and the inbox --

    @defer.inlineCallbacks
    def test_append_with_participants_puts_wavelet_in_their_inboxes(self):
        yield self.store.append_delta(W1, delta(0, 2, ts=500),
                                      participants=["alice@a.test", "bob@b.test"], hosted=True)
        inbox = yield self.store.wavelets_of("bob@b.test")
        self.assertEqual(len(inbox), 1)
        info = inbox[0]
        self.assertEqual((info.name, info.participants, info.last_modified_ms, info.version,
                          info.hosted),
                         (W1, ("alice@a.test", "bob@b.test"), 500, 2, True))
        self.assertEqual((yield self.store.wavelets_of("carol@a.test")), [])

    @defer.inlineCallbacks
    def test_append_moves_last_activity_forward_only(self):
        yield self.store.append_delta(W1, delta(0, 1, ts=500), participants=["a@a.test"])
        yield self.store.append_delta(W1, delta(1, 2, ts=400))
        info = yield self.store.wavelet_info(W1)
        self.assertEqual((info.last_modified_ms, info.version), (500, 2))
        yield self.store.append_delta(W1, delta(2, 3, ts=900))
        self.assertEqual((yield self.store.wavelet_info(W1)).last_modified_ms, 900)

    @defer.inlineCallbacks
    def test_removed_participant_leaves_the_inbox(self):
        yield self.store.append_delta(W1, delta(0, 1), participants=["a@a.test", "b@a.test"])
        yield self.store.append_delta(W1, delta(1, 2), participants=["a@a.test"])
        self.assertEqual((yield self.store.wavelets_of("b@a.test")), [])
        self.assertEqual(len((yield self.store.wavelets_of("a@a.test"))), 1)

    @defer.inlineCallbacks
    def test_inbox_is_newest_activity_first(self):
        yield self.store.set_wavelet_info(W1, ["a@a.test"], 100, True)
        yield self.store.set_wavelet_info(W2, ["a@a.test", "b@a.test"], 300, True)
        yield self.store.set_wavelet_info(W3, ["a@a.test"], 200, False)
        inbox = yield self.store.wavelets_of("a@a.test")
        self.assertEqual([i.name for i in inbox], [W2, W3, W1])
        self.assertEqual(inbox[0].participants, ("a@a.test", "b@a.test"))
        yield self.store.append_delta(W1, delta(0, 1, ts=400))
        inbox = yield self.store.wavelets_of("a@a.test", limit=2)
        self.assertEqual([i.name for i in inbox], [W1, W2])

    @defer.inlineCallbacks
    def test_read_marks_come_with_the_inbox(self):
        yield self.store.append_delta(W1, delta(0, 3), participants=["a@a.test", "b@a.test"])
        yield self.store.append_delta(W2, delta(0, 1, ts=2000), participants=["a@a.test"])
        yield self.store.mark_read("a@a.test", W1, 3)
        inbox = {i.name: i for i in (yield self.store.wavelets_of("a@a.test"))}
        self.assertEqual((inbox[W1].read_version, inbox[W1].unread), (3, False))
        self.assertEqual((inbox[W2].read_version, inbox[W2].unread), (None, True))
        # b's mark is b's own.
        [b_view] = yield self.store.wavelets_of("b@a.test")
        self.assertEqual((b_view.read_version, b_view.unread), (None, True))
        # A new delta makes it unread again.
        yield self.store.append_delta(W1, delta(3, 4))
        inbox = {i.name: i for i in (yield self.store.wavelets_of("a@a.test"))}
        self.assertTrue(inbox[W1].unread)

    @defer.inlineCallbacks
    def test_set_wavelet_info_replaces_participants(self):
        yield self.store.set_wavelet_info(W1, ["a@a.test", "b@a.test"], 10, False)
        yield self.store.set_wavelet_info(W1, ["c@a.test"], 20, True)
        info = yield self.store.wavelet_info(W1)
        self.assertEqual((info.participants, info.last_modified_ms, info.hosted, info.version),
                         (("c@a.test",), 20, True, 0))
        self.assertIsNone((yield self.store.current_version(W1)))

    @defer.inlineCallbacks
    def test_all_wavelets_by_name_and_by_hosting(self):
        yield self.store.set_wavelet_info(W3, ["a@b.test"], 1, False)
        yield self.store.set_wavelet_info(W2, ["a@a.test"], 2, True)
        yield self.store.append_delta(W1, delta(0, 4), participants=["a@a.test"], hosted=True)
        everything = yield self.store.all_wavelets()
        self.assertEqual([(i.name, i.version) for i in everything], [(W1, 4), (W2, 0), (W3, 0)])
        self.assertEqual([i.name for i in (yield self.store.all_wavelets(hosted=True))],
                         [W1, W2])
        self.assertEqual([i.name for i in (yield self.store.all_wavelets(hosted=False))], [W3])

    @defer.inlineCallbacks
    def test_participants_must_be_a_list_not_a_string(self):
        yield self.assertFailure(
            self.store.set_wavelet_info(W1, "alice@a.test", 1, True), TypeError)

    # -- accounts --

    @defer.inlineCallbacks
    def test_account_is_kept_and_found(self):
        self.assertIsNone((yield self.store.get_account("alice@a.test")))
        yield self.store.add_account("alice@a.test", "scrypt$...")
        account = yield self.store.get_account("alice@a.test")
        self.assertEqual((account.address, account.password_hash),
                         ("alice@a.test", "scrypt$..."))

    @defer.inlineCallbacks
    def test_second_account_with_same_address_is_refused(self):
        yield self.store.add_account("alice@a.test", "one")
        yield self.assertFailure(self.store.add_account("alice@a.test", "two"), AccountExists)
        self.assertEqual((yield self.store.get_account("alice@a.test")).password_hash, "one")

    @defer.inlineCallbacks
    def test_password_can_be_changed_only_for_an_account(self):
        yield self.assertFailure(self.store.set_password("bob@a.test", "x"), UnknownAccount)
        yield self.store.add_account("bob@a.test", "old")
        yield self.store.set_password("bob@a.test", "new")
        self.assertEqual((yield self.store.get_account("bob@a.test")).password_hash, "new")

    @defer.inlineCallbacks
    def test_accounts_are_listed_and_deleted(self):
        self.assertEqual((yield self.store.accounts()), [])
        for address in ("carol@a.test", "alice@a.test", "bob@b.test"):
            yield self.store.add_account(address, "h")
        self.assertEqual((yield self.store.accounts()),
                         ["alice@a.test", "bob@b.test", "carol@a.test"])
        yield self.store.delete_account("bob@b.test")
        self.assertIsNone((yield self.store.get_account("bob@b.test")))
        self.assertEqual((yield self.store.accounts()), ["alice@a.test", "carol@a.test"])
        yield self.assertFailure(self.store.delete_account("bob@b.test"), UnknownAccount)

    # -- signer infos --

    @defer.inlineCallbacks
    def test_signer_info_is_found_by_its_id(self):
        sid = bytes(range(32))
        self.assertIsNone((yield self.store.get_signer_info(sid)))
        yield self.store.put_signer_info(sid, "b.test", b"\x0a\x00chain")
        info = yield self.store.get_signer_info(sid)
        self.assertEqual((info.signer_id, info.domain, info.blob),
                         (sid, "b.test", b"\x0a\x00chain"))
        yield self.store.put_signer_info(sid, "b.test", b"renewed")
        self.assertEqual((yield self.store.get_signer_info(sid)).blob, b"renewed")
        self.assertIsNone((yield self.store.get_signer_info(b"\x00" * 32)))

    # -- the outbox --

    @defer.inlineCallbacks
    def test_outbox_keeps_order_per_destination(self):
        ids = []
        for i, dest in enumerate(["b.test", "c.test", "b.test", "b.test"]):
            ids.append((yield self.store.outbox_enqueue(dest, b"payload %d" % i)))
        self.assertEqual(sorted(ids), ids)
        pending = yield self.store.outbox_pending("b.test")
        self.assertEqual([p.payload for p in pending], [b"payload 0", b"payload 2", b"payload 3"])
        self.assertEqual([p.id for p in pending], [ids[0], ids[2], ids[3]])
        self.assertEqual({p.destination for p in pending}, {"b.test"})
        self.assertEqual([p.payload for p in (yield self.store.outbox_pending("c.test"))],
                         [b"payload 1"])

    @defer.inlineCallbacks
    def test_outbox_pending_limit_and_after(self):
        ids = []
        for i in range(5):
            ids.append((yield self.store.outbox_enqueue("b.test", b"%d" % i)))
        self.assertEqual([p.payload for p in (yield self.store.outbox_pending("b.test", 2))],
                         [b"0", b"1"])
        after = yield self.store.outbox_pending("b.test", limit=2, after=ids[1])
        self.assertEqual([p.payload for p in after], [b"2", b"3"])

    @defer.inlineCallbacks
    def test_acknowledged_item_leaves_the_outbox(self):
        first = yield self.store.outbox_enqueue("b.test", b"one")
        yield self.store.outbox_enqueue("b.test", b"two")
        yield self.store.outbox_ack("b.test", first)
        self.assertEqual([p.payload for p in (yield self.store.outbox_pending("b.test"))],
                         [b"two"])
        yield self.store.outbox_ack("b.test", first)        # again: nothing happens
        yield self.store.outbox_ack("c.test", first + 1)    # wrong destination: nothing
        self.assertEqual((yield self.store.outbox_backlog()), {"b.test": 1})

    @defer.inlineCallbacks
    def test_outbox_ids_are_never_reused(self):
        first = yield self.store.outbox_enqueue("b.test", b"one")
        yield self.store.outbox_ack("b.test", first)
        second = yield self.store.outbox_enqueue("b.test", b"two")
        self.assertGreater(second, first)

    @defer.inlineCallbacks
    def test_outbox_destinations_and_backlog(self):
        self.assertEqual((yield self.store.outbox_destinations()), [])
        self.assertEqual((yield self.store.outbox_backlog()), {})
        for dest in ["d.test", "b.test", "d.test"]:
            yield self.store.outbox_enqueue(dest, b"x")
        c = yield self.store.outbox_enqueue("c.test", b"x")
        yield self.store.outbox_ack("c.test", c)
        self.assertEqual((yield self.store.outbox_destinations()), ["b.test", "d.test"])
        self.assertEqual((yield self.store.outbox_backlog()), {"b.test": 1, "d.test": 2})

    @defer.inlineCallbacks
    def test_outbox_retry_state_is_kept_and_cleared(self):
        self.assertIsNone((yield self.store.outbox_get_retry("b.test")))
        yield self.store.outbox_set_retry("b.test", 3, 1700000060000, 1699999000000)
        state = yield self.store.outbox_get_retry("b.test")
        self.assertEqual((state.failures, state.next_attempt_ms, state.since_ms),
                         (3, 1700000060000, 1699999000000))
        yield self.store.outbox_set_retry("b.test", 4, 1700000120000, 1699999000000)
        self.assertEqual((yield self.store.outbox_get_retry("b.test")).failures, 4)
        self.assertIsNone((yield self.store.outbox_get_retry("c.test")))
        yield self.store.outbox_set_retry("b.test", 0, 0)
        self.assertIsNone((yield self.store.outbox_get_retry("b.test")))

    @defer.inlineCallbacks
    def test_outbox_drop_forgets_one_destination_and_its_retry_state(self):
        for dest in ["b.test", "c.test", "b.test"]:
            yield self.store.outbox_enqueue(dest, b"x")
        yield self.store.outbox_set_retry("b.test", 4, 1700000060000)
        self.assertEqual((yield self.store.outbox_drop("b.test")), 2)
        self.assertEqual((yield self.store.outbox_backlog()), {"c.test": 1})
        self.assertIsNone((yield self.store.outbox_get_retry("b.test")))
        self.assertEqual((yield self.store.outbox_drop("b.test")), 0)
        later = yield self.store.outbox_enqueue("b.test", b"y")
        self.assertEqual([p.id for p in (yield self.store.outbox_pending("b.test"))], [later])

    @defer.inlineCallbacks
    def test_append_queues_outbox_items_with_the_delta(self):
        ids = yield self.store.append_delta(
            W1, delta(0, 1), outbox=[("b.test", b"update 1"), ("c.test", b"update 1c")])
        self.assertEqual(len(ids), 2)
        pending = yield self.store.outbox_pending("b.test")
        self.assertEqual([(p.id, p.payload) for p in pending], [(ids[0], b"update 1")])
        self.assertEqual((yield self.store.append_delta(W1, delta(1, 2))), ())

    @defer.inlineCallbacks
    def test_outbox_payload_must_be_bytes(self):
        yield self.assertFailure(self.store.outbox_enqueue("b.test", "text"), TypeError)
        yield self.assertFailure(
            self.store.append_delta(W1, delta(0, 1), outbox=[("b.test", "text")]), TypeError)
        self.assertIsNone((yield self.store.current_version(W1)))

    @defer.inlineCallbacks
    def test_a_store_of_its_own_delivers_every_destination(self):
        self.assertTrue((yield self.store.outbox_claim("b.test")))
        self.assertTrue((yield self.store.outbox_claim("b.test")))
        yield self.store.outbox_release("b.test")
        self.assertTrue((yield self.store.outbox_claim("b.test")))
        yield self.store.broadcast("receipt", "wave.b.test wbx.1.1")

    # -- life cycle --

    @defer.inlineCallbacks
    def test_closed_store_refuses_requests(self):
        yield self.store.close()
        yield self.assertFailure(self.store.append_delta(W1, delta(0, 1)), StoreClosed)
        yield self.assertFailure(self.store.deltas(W1), StoreClosed)
        yield self.store.close()


class MemoryStoreTests(StoreContract, unittest.TestCase):

    def make_store(self):
        return MemoryStore()


class SqliteStoreTests(StoreContract, unittest.TestCase):

    def make_store(self, path=None):
        self.path = path or os.path.join(os.path.abspath(self.mktemp()), "wavebox.sqlite3")
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        store = SqliteStore(self.path)
        self.addCleanup(store.close)
        return store

    @defer.inlineCallbacks
    def test_everything_survives_close_and_reopen(self):
        yield self.store.append_delta(W1, delta(0, 2, payload=b"\x00one"),
                                      participants=["a@a.test"], hosted=True)
        yield self.store.append_delta(W1, delta(2, 5, payload=b"two\xff"))
        yield self.store.put_snapshot(W1, 2, b"snap")
        yield self.store.mark_read("a@a.test", W1, 2)
        yield self.store.add_account("a@a.test", "hash")
        yield self.store.put_signer_info(b"sid", "a.test", b"chain")
        item = yield self.store.outbox_enqueue("b.test", b"queued")
        yield self.store.outbox_set_retry("b.test", 2, 12345)
        yield self.store.close()

        store = self.make_store(self.path)
        found = yield store.deltas(W1)
        self.assertEqual([d.applied_delta for d in found], [b"\x00one", b"two\xff"])
        self.assertEqual((yield store.current_version(W1)), (5, b"hash5"))
        self.assertEqual((yield store.latest_snapshot(W1)), (2, b"snap"))
        [info] = yield store.wavelets_of("a@a.test")
        self.assertEqual((info.version, info.read_version, info.hosted), (5, 2, True))
        self.assertEqual((yield store.get_account("a@a.test")).password_hash, "hash")
        self.assertEqual((yield store.get_signer_info(b"sid")).blob, b"chain")
        self.assertEqual([(p.id, p.payload) for p in (yield store.outbox_pending("b.test"))],
                         [(item, b"queued")])
        self.assertEqual((yield store.outbox_get_retry("b.test")).failures, 2)
        yield store.append_delta(W1, delta(5, 6))
        yield self.assertFailure(store.append_delta(W1, delta(2, 3)), StoreConflict)

    @defer.inlineCallbacks
    def test_database_is_in_wal_mode_with_full_sync(self):
        journal = yield self.store._writer.submit(
            lambda conn: conn.execute("PRAGMA journal_mode").fetchone()[0])
        synchronous = yield self.store._writer.submit(
            lambda conn: conn.execute("PRAGMA synchronous").fetchone()[0])
        self.assertEqual((journal, synchronous), ("wal", 2))   # 2 is FULL

    def test_schema_version_is_recorded(self):
        conn = sqlite3.connect(self.path)
        self.addCleanup(conn.close)
        self.assertEqual(conn.execute("PRAGMA user_version").fetchone()[0],
                         sqlite_engine.SCHEMA_VERSION)

    @defer.inlineCallbacks
    def test_a_version_1_store_is_migrated_keeping_its_retry_state(self):
        path = os.path.abspath(self.mktemp())
        conn = sqlite3.connect(path, isolation_level=None)
        sqlite_engine.migrate(conn, path, upto=1)
        self.assertEqual(conn.execute("PRAGMA user_version").fetchone()[0], 1)
        conn.execute("INSERT INTO outbox_retry (destination, failures, next_attempt_ms) "
                     "VALUES ('b.test', 3, 1700000060000)")
        conn.close()
        store = SqliteStore(path)
        self.addCleanup(store.close)
        retry = yield store.outbox_get_retry("b.test")
        self.assertEqual((retry.failures, retry.next_attempt_ms, retry.since_ms),
                         (3, 1700000060000, 0))
        yield store.outbox_set_retry("b.test", 4, 1700000120000, 1699990000000)
        self.assertEqual((yield store.outbox_get_retry("b.test")).since_ms, 1699990000000)

    def test_database_from_a_newer_wavebox_is_refused(self):
        path = os.path.abspath(self.mktemp())
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA user_version=%d" % (sqlite_engine.SCHEMA_VERSION + 1,))
        conn.close()
        e = self.assertRaises(StoreError, SqliteStore, path)
        self.assertIn("newer wavebox", str(e))

    def test_file_that_is_not_a_database_is_refused(self):
        path = os.path.abspath(self.mktemp())
        with open(path, "wb") as f:
            f.write(b"this is not a database, just text" * 100)
        e = self.assertRaises(StoreError, SqliteStore, path)
        self.assertIn(path, str(e))

    def hold_writer(self):
        """Block the writer thread until the returned event is set."""
        started, release = threading.Event(), threading.Event()

        def hold(conn):
            started.set()
            release.wait(30)
        held = self.store._writer.submit(hold)
        self.assertTrue(started.wait(30))
        return held, release

    @defer.inlineCallbacks
    def test_appends_waiting_for_a_commit_share_the_next_transaction(self):
        held, release = self.hold_writer()
        fired_at = []
        appends = []
        for i in range(20):
            d = self.store.append_delta("wave://a.test/w+%d/conv+root" % i, delta(0, 1))
            d.addCallback(lambda _: fired_at.append(self.store.commit_count))
            appends.append(d)
        # While the writer is busy nothing is durable, so nothing is acknowledged.
        self.assertEqual(fired_at, [])
        release.set()
        yield held
        yield defer.gatherResults(appends)
        # One transaction for the holding request, one for all twenty appends;
        # each append was acknowledged only after that commit was counted.
        self.assertEqual(self.store.commit_count, 2)
        self.assertEqual(fired_at, [2] * 20)
        self.assertEqual(len((yield self.store.all_wavelets())), 20)

    @defer.inlineCallbacks
    def test_conflict_in_a_batch_fails_alone(self):
        yield self.store.append_delta(W1, delta(0, 1))
        held, release = self.hold_writer()
        good1 = self.store.append_delta(W2, delta(0, 1))
        bad = self.store.append_delta(W1, delta(0, 1, payload=b"loser"))
        good2 = self.store.append_delta(W1, delta(1, 2))
        release.set()
        yield held
        yield good1
        yield self.assertFailure(bad, StoreConflict)
        yield good2
        self.assertEqual(self.store.commit_count, 3)
        found = yield self.store.deltas(W1)
        self.assertEqual([d.resulting_version for d in found], [1, 2])
        self.assertNotIn(b"loser", [d.applied_delta for d in found])

    @defer.inlineCallbacks
    def test_lost_transaction_fails_every_request_of_its_batch(self):
        # If SQLite rolls the whole transaction back (disk full, I/O error),
        # requests that had succeeded inside it must not be acknowledged.
        held, release = self.hold_writer()

        def lose_transaction(conn):
            conn.execute("ROLLBACK")
            raise sqlite3.OperationalError("database or disk is full")
        before = self.store.append_delta(W1, delta(0, 1))
        lost = self.store._writer.submit(lose_transaction)
        after = self.store.append_delta(W2, delta(0, 1))
        release.set()
        yield held
        for d in (before, lost, after):
            e = yield self.assertFailure(d, StoreError)
            self.assertIn("disk is full", str(e))
        self.assertEqual((yield self.store.all_wavelets()), [])
        yield self.store.append_delta(W1, delta(0, 1))
        self.assertEqual((yield self.store.current_version(W1)), (1, b"hash1"))

    @defer.inlineCallbacks
    def test_close_finishes_the_requests_already_made(self):
        appends = [self.store.append_delta(W1, delta(v, v + 1)) for v in range(10)]
        yield self.store.close()
        self.assertTrue(all(d.called for d in appends))
        yield defer.gatherResults(appends)
        store = self.make_store(self.path)
        self.assertEqual((yield store.current_version(W1)), (10, b"hash10"))

    @defer.inlineCallbacks
    def test_acknowledged_append_is_seen_by_the_next_read(self):
        for v in range(30):
            yield self.store.append_delta(W1, delta(v, v + 1))
            self.assertEqual((yield self.store.current_version(W1))[0], v + 1)

    @defer.inlineCallbacks
    def test_two_stores_on_one_file_cannot_both_append_a_version(self):
        # Stands for two processes sharing a database: the database, not a
        # lock in either process, decides which append is the delta at 0.
        other = SqliteStore(self.path)
        self.addCleanup(other.close)
        yield self.store.append_delta(W1, delta(0, 1, payload=b"winner"))
        e = yield self.assertFailure(other.append_delta(W1, delta(0, 1, payload=b"loser")),
                                     StoreConflict)
        self.assertEqual(e.current_version, 1)
        self.assertEqual([d.applied_delta for d in (yield other.deltas(W1))], [b"winner"])


class PostgresStoreTests(StoreContract, unittest.TestCase):
    """The contract on a real PostgreSQL (tests/postgres.py), and what sharing it means."""

    def make_store(self, url=None):
        self.url = url or getattr(self, "url", None) or fresh_database(self)
        store = PostgresStore(self.url)
        self.addCleanup(store.close)
        return store

    def psql(self, sql):
        return shared_cluster().psql(sql, self.url.rpartition("/")[2])

    @defer.inlineCallbacks
    def test_everything_survives_close_and_reopen(self):
        yield self.store.append_delta(W1, delta(0, 2, payload=b"\x00one"),
                                      participants=["a@a.test"], hosted=True)
        yield self.store.put_snapshot(W1, 2, b"snap")
        yield self.store.mark_read("a@a.test", W1, 2)
        yield self.store.put_signer_info(b"sid", "a.test", b"chain")
        item = yield self.store.outbox_enqueue("b.test", b"queued")
        yield self.store.close()
        store = self.make_store(self.url)
        self.assertEqual([d.applied_delta for d in (yield store.deltas(W1))], [b"\x00one"])
        self.assertEqual((yield store.latest_snapshot(W1)), (2, b"snap"))
        [info] = yield store.wavelets_of("a@a.test")
        self.assertEqual((info.version, info.read_version, info.hosted), (2, 2, True))
        self.assertEqual((yield store.get_signer_info(b"sid")).blob, b"chain")
        self.assertEqual([p.id for p in (yield store.outbox_pending("b.test"))], [item])

    def test_schema_version_is_recorded(self):
        self.assertEqual(self.psql("SELECT version FROM schema_version"),
                         str(postgresql_engine.SCHEMA_VERSION))

    @defer.inlineCallbacks
    def test_a_version_1_store_is_migrated_keeping_its_retry_state(self):
        url = fresh_database(self)
        self.assertEqual(postgresql_engine.prepare_database(url, upto=1), 1)
        shared_cluster().psql("INSERT INTO outbox_retry (destination, failures, "
                              "next_attempt_ms) VALUES ('b.test', 3, 1700000060000)",
                              url.rpartition("/")[2])
        store = self.make_store(url)
        retry = yield store.outbox_get_retry("b.test")
        self.assertEqual((retry.failures, retry.next_attempt_ms, retry.since_ms),
                         (3, 1700000060000, 0))
        self.assertEqual(shared_cluster().psql("SELECT version FROM schema_version",
                                               url.rpartition("/")[2]),
                         str(postgresql_engine.SCHEMA_VERSION))

    def test_database_from_a_newer_wavebox_is_refused(self):
        self.psql("UPDATE schema_version SET version = version + 1")
        e = self.assertRaises(StoreError, PostgresStore, self.url)
        self.assertIn("newer wavebox", str(e))

    def test_unreachable_database_is_refused_naming_it(self):
        url = "postgresql://wave@127.0.0.1:1/nothing"
        e = self.assertRaises(StoreError, PostgresStore, url)
        self.assertIn(url, str(e))

    @defer.inlineCallbacks
    def test_two_stores_on_one_database_cannot_both_append_a_version(self):
        # Two processes sharing the database: it, not a lock in either
        # process, decides which append is the delta at 0.
        other = self.make_store(self.url)
        yield self.store.append_delta(W1, delta(0, 1, payload=b"winner"))
        e = yield self.assertFailure(other.append_delta(W1, delta(0, 1, payload=b"loser")),
                                     StoreConflict)
        self.assertEqual(e.current_version, 1)
        self.assertEqual([d.applied_delta for d in (yield other.deltas(W1))], [b"winner"])

    @defer.inlineCallbacks
    def test_racing_appends_from_two_stores_make_one_history(self):
        # Both stores append at the same versions at the same moment, in
        # their own threads and transactions: every version is won once.
        other = self.make_store(self.url)
        outcomes = []
        for v in range(20):
            ds = [s.append_delta(W1, delta(v, v + 1, payload=b"%s %d" % (who, v)))
                  for s, who in ((self.store, b"one"), (other, b"two"))]
            results = yield defer.DeferredList(ds, consumeErrors=True)
            won = [ok for ok, _ in results]
            for ok, value in results:
                if not ok:
                    value.trap(StoreConflict)
            outcomes.append(won)
        self.assertTrue(all(sorted(w) == [False, True] for w in outcomes), outcomes)
        stored = yield self.store.deltas(W1)
        self.assertEqual([d.applied_at_version for d in stored], list(range(20)))

    @defer.inlineCallbacks
    def test_every_store_hears_of_every_committed_delta(self):
        other = self.make_store(self.url)
        heard = []
        got_two = defer.Deferred()

        def changed(name, version):
            heard.append((name, version))
            if len(heard) == 2:
                got_two.callback(None)
        other.change_observers.append(changed)
        yield self._listening(other)
        yield self.store.append_delta(W1, delta(0, 3))
        yield self.assertFailure(self.store.append_delta(W1, delta(0, 1)), StoreConflict)
        yield self.store.append_delta(W2, delta(0, 2))
        yield got_two
        self.assertEqual(heard, [(W1, 3), (W2, 2)])

    @defer.inlineCallbacks
    def test_one_store_at_a_time_delivers_a_destination_until_it_ends(self):
        other = self.make_store(self.url)
        self.assertTrue((yield self.store.outbox_claim("b.test")))
        self.assertFalse((yield other.outbox_claim("b.test")))
        self.assertTrue((yield other.outbox_claim("c.test")))     # each destination its own
        self.assertTrue((yield self.store.outbox_claim("b.test")))
        yield self.store.outbox_release("b.test")
        self.assertTrue((yield other.outbox_claim("b.test")))
        self.assertFalse((yield self.store.outbox_claim("b.test")))
        # The holder's end (its connections close, as when its process dies)
        # lets the next one take the queue over.
        yield other.close()
        self.assertTrue((yield self.store.outbox_claim("b.test")))
        self.assertTrue((yield self.store.outbox_claim("c.test")))

    @defer.inlineCallbacks
    def test_a_broadcast_reaches_the_other_stores_only(self):
        other = self.make_store(self.url)
        heard = {self.store: [], other: []}
        arrived = {self.store: defer.Deferred(), other: defer.Deferred()}
        for store in (self.store, other):
            store.broadcast_observers.append(
                lambda *a, store=store: (heard[store].append(a), arrived[store].callback(None)))
            yield self._listening(store)
        yield self.store.broadcast("receipt", "wave.b.test wbx.3.7")
        yield arrived[other]
        # Said after the first, so heard after it: the first never came back here.
        yield other.broadcast("receipt", "wave.b.test wbx.8.8")
        yield arrived[self.store]
        self.assertEqual(heard, {other: [("receipt", "wave.b.test wbx.3.7")],
                                 self.store: [("receipt", "wave.b.test wbx.8.8")]})

    def _listening(self, store):
        from twisted.internet import threads
        return threads.deferToThread(store._listener.listening.wait, 30)

    @defer.inlineCallbacks
    def test_a_deadlock_between_two_stores_is_run_again(self):
        # Two batches that take the same two wavelets' rows in opposite
        # orders deadlock in PostgreSQL; the aborted one runs again and
        # every append lands.
        other = self.make_store(self.url)
        yield self.store.append_delta(W1, delta(0, 1))
        yield self.store.append_delta(W2, delta(0, 1))
        barrier = threading.Barrier(2, timeout=30)

        def take(first):
            def job(conn):
                conn.execute("UPDATE wavelet SET last_modified_ms = 1 WHERE name = ?", (first,))
                try:
                    barrier.wait()
                except threading.BrokenBarrierError:
                    pass
                return True
            return job
        a = self.store._writer.submit(take(W1))
        a2 = self.store.append_delta(W2, delta(1, 2, payload=b"one"))
        b = other._writer.submit(take(W2))
        b2 = other.append_delta(W1, delta(1, 2, payload=b"two"))
        results = yield defer.DeferredList([a, a2, b, b2], consumeErrors=True)
        self.assertEqual([ok for ok, _ in results], [True, True, True, True], results)
        self.assertEqual([d.applied_delta for d in (yield self.store.deltas(W1, 1))], [b"two"])
        self.assertEqual([d.applied_delta for d in (yield self.store.deltas(W2, 1))], [b"one"])


class _ChildOutput(protocol.ProcessProtocol):
    """Collects the child's acknowledgements and kills it after ``kill_after`` of them."""

    def __init__(self, kill_after):
        self.kill_after = kill_after
        self.buffer = b""
        self.acknowledged = []
        self.stderr = b""
        self.killed = False
        self.ended = defer.Deferred()

    def outReceived(self, data):
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            wavelet, version = line.split()
            self.acknowledged.append((int(wavelet), int(version)))
        if len(self.acknowledged) >= self.kill_after and not self.killed:
            self.killed = True
            self.transport.signalProcess("KILL")

    def errReceived(self, data):
        self.stderr += data

    def processEnded(self, reason):
        self.ended.callback(reason.value)


class SqliteCrashTests(unittest.TestCase):

    WAVELETS = 4

    @defer.inlineCallbacks
    def test_every_acknowledged_delta_survives_sigkill(self):
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        path = os.path.join(directory, "wavebox.sqlite3")
        root = os.path.dirname(os.path.dirname(os.path.abspath(store_crash_child.__file__)))
        env = dict(os.environ, PYTHONPATH=root)
        child = _ChildOutput(kill_after=150)
        process = reactor.spawnProcess(
            child, sys.executable,
            [sys.executable, "-m", "tests.store_crash_child", path, str(self.WAVELETS)],
            env=env, path=directory)

        def kill_if_running():
            if process.pid is not None:
                process.signalProcess("KILL")
                return child.ended
        self.addCleanup(kill_if_running)
        ended = yield child.ended
        self.assertTrue(child.killed, "the child ended by itself: %r\n%s"
                        % (ended, child.stderr.decode(errors="replace")))
        self.assertIsInstance(ended, error.ProcessTerminated)
        self.assertEqual(ended.signal, signal.SIGKILL)
        self.assertGreaterEqual(len(child.acknowledged), 150)

        store = SqliteStore(path)
        self.addCleanup(store.close)
        acknowledged = {}
        for wavelet, version in child.acknowledged:
            acknowledged[wavelet] = max(acknowledged.get(wavelet, 0), version)
        for wavelet in range(self.WAVELETS):
            name = store_crash_child.WAVELET % (wavelet,)
            stored = yield store.deltas(name)
            # Every stored delta (acknowledged or not) is whole and exactly
            # what the child wrote, and the history has no hole.
            version = 0
            for d in stored:
                self.assertEqual(d, store_crash_child.expected_delta(wavelet, version))
                version = d.resulting_version
            self.assertGreaterEqual(version, acknowledged.get(wavelet, 0),
                                    "wavelet %d lost acknowledged deltas" % (wavelet,))
            for v in [v for w, v in child.acknowledged if w == wavelet]:
                self.assertTrue((yield store.is_delta_boundary(name, v)))


class OpenStoreTests(unittest.TestCase):

    @defer.inlineCallbacks
    def test_relative_sqlite_path_is_under_the_data_dir(self):
        data_dir = os.path.abspath(self.mktemp())
        store = open_store("sqlite:sub/my.sqlite3", data_dir)
        self.addCleanup(store.close)
        self.assertIsInstance(store, SqliteStore)
        yield store.append_delta(W1, delta(0, 1))
        self.assertTrue(os.path.isfile(os.path.join(data_dir, "sub", "my.sqlite3")))

    @defer.inlineCallbacks
    def test_new_store_files_are_readable_by_their_owner_only(self):
        data_dir = os.path.abspath(self.mktemp())
        os.makedirs(data_dir, mode=0o755)
        old = os.umask(0o022)
        self.addCleanup(os.umask, old)
        store = open_store("sqlite:wavebox.sqlite3", data_dir)
        yield store.append_delta(W1, delta(0, 1))
        for name in ("wavebox.sqlite3", "wavebox.sqlite3-wal"):
            self.assertEqual(os.stat(os.path.join(data_dir, name)).st_mode & 0o777, 0o600, name)
        yield store.close()

    @defer.inlineCallbacks
    def test_absolute_sqlite_path_is_kept(self):
        path = os.path.join(os.path.abspath(self.mktemp()), "abs.sqlite3")
        store = open_store("sqlite:" + path, "/nonexistent-data-dir")
        yield store.close()
        self.assertTrue(os.path.isfile(path))

    def test_default_url_is_the_sqlite_file_in_the_data_dir(self):
        data_dir = os.path.abspath(self.mktemp())
        store = open_store(data_dir=data_dir)
        self.addCleanup(store.close)
        self.assertEqual(store.path, os.path.join(data_dir, "wavebox.sqlite3"))

    @defer.inlineCallbacks
    def test_postgresql_url_opens_the_postgresql_engine_on_that_database(self):
        url = fresh_database(self)
        store = open_store(url, "/nonexistent")
        self.addCleanup(store.close)
        self.assertIsInstance(store, PostgresStore)
        yield store.append_delta(W1, delta(0, 1))
        self.assertEqual(shared_cluster().psql("SELECT count(*) FROM delta",
                                               url.rpartition("/")[2]), "1")
        self.assertEqual(parse_store_url(url), ("postgresql", url))
        o = config.Options()
        o.parseOptions(["--domain", "a.test", "--store", url])
        self.assertEqual(o.config().store, url)

    def test_memory_url_opens_the_memory_engine(self):
        self.assertIsInstance(open_store("memory:", "/nonexistent"), MemoryStore)

    def test_bad_url_names_the_store_option(self):
        for url in ("mysql://x", "wavebox.sqlite3", "sqlite:", "memory:x",
                    "postgresql://db/wave"):
            e = self.assertRaises(StoreURLError, open_store, url, ".")
            self.assertTrue(str(e).startswith("--store: "), str(e))

    def test_url_parts(self):
        self.assertEqual(parse_store_url("sqlite:a/b.db"), ("sqlite", "a/b.db"))
        self.assertEqual(parse_store_url("memory:"), ("memory", ""))

    def test_store_options_defaults_and_validation(self):
        o = config.Options()
        o.parseOptions(["--domain", "a.test"])
        c = o.config()
        self.assertEqual((c.store, c.snapshot_interval), ("sqlite:wavebox.sqlite3", 100))
        o = config.Options()
        o.parseOptions(["--domain", "a.test", "--store", "memory:",
                        "--snapshot-interval", "7"])
        c = o.config()
        self.assertEqual((c.store, c.snapshot_interval), ("memory:", 7))
        for args, name in ((["--store", "oracle:x"], "--store"),
                           (["--snapshot-interval", "0"], "--snapshot-interval")):
            o = config.Options()
            o.parseOptions(["--domain", "a.test"] + args)
            e = self.assertRaises(config.ConfigError, o.config)
            self.assertTrue(str(e).startswith(name + ": "), str(e))


class AccountHashTests(unittest.TestCase):

    # Cheap parameters keep the tests fast; one test uses the defaults.
    CHEAP = dict(n=2 ** 4, r=8, p=1)

    def test_right_password_verifies(self):
        stored = accounts.hash_password("correct horse", **self.CHEAP)
        self.assertTrue(accounts.verify_password("correct horse", stored))

    def test_wrong_password_does_not_verify(self):
        stored = accounts.hash_password("correct horse", **self.CHEAP)
        self.assertFalse(accounts.verify_password("correct hors", stored))
        self.assertFalse(accounts.verify_password("", stored))

    def test_default_parameters_are_in_the_stored_string(self):
        stored = accounts.hash_password("s3cret")
        scheme, n, r, p, salt, digest = stored.split("$")
        self.assertEqual((scheme, int(n), int(r), int(p)),
                         ("scrypt", accounts.DEFAULT_N, accounts.DEFAULT_R, accounts.DEFAULT_P))
        self.assertTrue(accounts.verify_password("s3cret", stored))
        self.assertFalse(accounts.needs_rehash(stored))

    def test_each_hash_has_its_own_salt(self):
        one = accounts.hash_password("same", **self.CHEAP)
        two = accounts.hash_password("same", **self.CHEAP)
        self.assertNotEqual(one, two)
        self.assertTrue(accounts.verify_password("same", one))
        self.assertTrue(accounts.verify_password("same", two))

    def test_non_ascii_password(self):
        stored = accounts.hash_password("p\u00e4ss\u20ac", **self.CHEAP)
        self.assertTrue(accounts.verify_password("p\u00e4ss\u20ac", stored))
        self.assertFalse(accounts.verify_password("pass\u20ac", stored))

    def test_malformed_stored_hash_never_verifies(self):
        for stored in ("", "plain", "scrypt$16$8$1$!!$!!", "md5$1$2$3$YQ$YQ",
                       "scrypt$15$8$1$YWJj$YWJj", "scrypt$1073741824$8$1$YWJj$YWJj", None):
            self.assertFalse(accounts.verify_password("anything", stored), stored)

    def test_weaker_parameters_need_rehash(self):
        self.assertTrue(accounts.needs_rehash(accounts.hash_password("x", **self.CHEAP)))
        self.assertTrue(accounts.needs_rehash("garbage"))

    def test_empty_password_cannot_be_hashed(self):
        self.assertRaises(ValueError, accounts.hash_password, "")

    @defer.inlineCallbacks
    def test_verify_in_thread(self):
        stored = accounts.hash_password("pw", **self.CHEAP)
        self.assertTrue((yield accounts.verify_password_in_thread("pw", stored)))
        self.assertFalse((yield accounts.verify_password_in_thread("PW", stored)))


class BackupTests(unittest.TestCase):

    def setUp(self):
        self.directory = os.path.abspath(self.mktemp())
        self.store = open_store("sqlite:live.sqlite3", self.directory)
        self.addCleanup(self.store.close)

    @defer.inlineCallbacks
    def test_backup_of_a_running_store_has_every_acknowledged_delta(self):
        for v in range(5):
            yield self.store.append_delta(W1, delta(v, v + 1, payload=b"\x00%d" % v))
        destination = os.path.join(self.directory, "copy.sqlite3")
        # The store is open and its latest commits are still in the WAL.
        self.assertEqual(backup.backup(self.store.path, destination),
                         sqlite_engine.SCHEMA_VERSION)
        self.assertFalse(os.path.exists(destination + "-wal"))
        conn = sqlite3.connect(destination)
        self.assertEqual(conn.execute("PRAGMA journal_mode").fetchone()[0], "delete")
        conn.close()
        copy = SqliteStore(destination)
        self.addCleanup(copy.close)
        self.assertEqual((yield copy.deltas(W1)), (yield self.store.deltas(W1)))

    def test_backup_is_readable_by_its_owner_only(self):
        destination = os.path.join(self.directory, "private.sqlite3")
        old = os.umask(0o022)
        self.addCleanup(os.umask, old)
        backup.backup(self.store.path, destination)
        self.assertEqual(os.stat(destination).st_mode & 0o777, 0o600)

    def test_backup_never_overwrites(self):
        destination = os.path.join(self.directory, "exists")
        with open(destination, "wb") as f:
            f.write(b"keep me")
        self.assertRaises(OSError, backup.backup, self.store.path, destination)
        with open(destination, "rb") as f:
            self.assertEqual(f.read(), b"keep me")

    @defer.inlineCallbacks
    def test_backup_command_finds_the_store_through_the_config_file(self):
        yield self.store.append_delta(W1, delta(0, 1))
        conf = os.path.join(self.directory, "wavebox.conf")
        with open(conf, "w") as f:
            f.write("[wavebox]\ndomain = a.test\ndata_dir = %s\nstore = sqlite:live.sqlite3\n"
                    % (self.directory,))
        destination = os.path.abspath(self.mktemp())
        self.assertEqual(cli.main(["backup", "-c", conf, destination]), 0)
        conn = sqlite3.connect(os.path.join(destination, "data", "live.sqlite3"))
        self.addCleanup(conn.close)
        self.assertEqual(conn.execute("SELECT count(*) FROM delta").fetchone()[0], 1)

    def test_backup_command_refuses_a_memory_store(self):
        destination = os.path.join(self.directory, "never.sqlite3")
        self.assertEqual(cli.main(["backup", "--store", "memory:", destination]), 1)
        self.assertFalse(os.path.exists(destination))
