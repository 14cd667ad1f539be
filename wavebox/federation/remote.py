"""
The federation remote: wavelets hosted elsewhere that have our participants
(wave protocol §7(b), §7(c), §7(d), §7(e); §1.3-1.7 for the stanzas).

* Our users' deltas to such a wavelet are signed here and submitted to its
  host, after our signer info was posted there once (§5: the host must know
  our chain to verify, and keeps it for third servers).  Our copy does not
  change when the submit is answered, only when the host's update comes back
  (§7(b)6).
* Updates are accepted only from a sender that speaks for the wavelet's
  domain.  Every applied delta's signatures are checked (unknown signers
  fetched from the host first), then the server core checks the hash chain,
  re-runs the transform (§6.6: the applied delta carries the original
  operations) and stores it.  The receipt goes out only after that: a
  receipt from us means "stored", not merely "delivered".
* A gap, or a first sight of a wavelet at a version above 0, or a commit
  notice beyond what we hold, makes us ask the host for the missing history,
  again and again until we have caught up (a WIAB host returns one delta
  per request, §1.5).
"""

import itertools
import os

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from wavebox.federation import stanzas
from wavebox.federation.errors import as_federation_error, as_remote_host_error
from wavebox.federation.host import send_request, signer_info_from_payload, wavelet_name
from wavebox.federation.stanzas import FederationError, MalformedStanza
from wavebox.federation.trust import NotTrusted, jid_domain, speaks_for
from wavebox.model.delta import HashedVersion
from wavebox.model.errors import ModelError
from wavebox.server.interfaces import IRemoteSubmitter, SubmitResult
from wavebox.wire import convert

log = Logger()

DEFAULT_REQUEST_TIMEOUT = 30.0   # the Java side's 30 s (§1.2)
#: History rounds for one gap before we give up (a WIAB host gives one delta a round).
MAX_HISTORY_ROUNDS = 100000


class _Peer:
    """Where to ask about one update: the host's JID (the sender) and ours."""

    def __init__(self, our_jid, host_jid):
        self.our_jid = our_jid
        self.host_jid = host_jid


@implementer(IRemoteSubmitter)
class _AllDurable:
    """Several AcceptedDeltas in order; ``durable()`` fires with the last one's result."""

    def __init__(self, accepted):
        self.accepted = accepted

    @defer.inlineCallbacks
    def durable(self):
        result = None
        for accepted in self.accepted:
            result = yield accepted.durable()
        return result


class FederationRemote:
    """
    ``transport`` gives ``request(iq, timeout) -> Deferred[response]`` and
    ``discover(domain) -> Deferred[JID]``; ``service_jid(domain)`` is our
    wave service JID for a hosted domain.
    """

    def __init__(self, server, signers, transport, service_jid,
                 request_timeout=DEFAULT_REQUEST_TIMEOUT, history_limit=None):
        self.server = server
        self.signers = signers
        self.transport = transport
        self.service_jid = service_jid
        self.request_timeout = request_timeout
        self.history_limit = history_limit
        self._locks = {}                 # uri -> DeferredLock
        self._waiting = {}               # uri -> {applied_at version: HashedVersion}
        self._posted = set()             # host domains that have our signer info
        self._ids = itertools.count(1)
        self._id_prefix = "wbx-%s-" % (os.urandom(4).hex(),)
        self.history_requests = 0

    def new_id(self):
        return "%s%d" % (self._id_prefix, next(self._ids))

    def _request(self, iq):
        """Send an iq and fire with its result; any failure is a FederationError."""
        return send_request(self.transport, iq, self.request_timeout)

    # -- submitting our users' deltas (§7(b)) ---------------------------------

    def submit(self, name, signed_delta):
        """
        IRemoteSubmitter: fires with the host's SubmitResult.  A host that
        cannot be reached or refuses is one log line and a
        :class:`~wavebox.server.errors.RemoteHostError` for the user.
        """
        host = name.wavelet_id.domain

        def failed(failure):
            failure.trap(FederationError)
            error = as_remote_host_error(host, failure.value)
            log.info("a submit to {uri} was not taken: {error} ({condition} {text})",
                     uri=name.uri, error=error, condition=failure.value.condition,
                     text=failure.value.text or "")
            raise error
        return self._submit(name, signed_delta).addErrback(failed)

    @defer.inlineCallbacks
    def _submit(self, name, signed_delta):
        signed = convert.parse_signed_delta(signed_delta)
        author = signed.delta.author
        from_jid = self.service_jid(author.domain)
        host = name.wavelet_id.domain
        try:
            host_jid = yield self.transport.discover(host)
        except Exception as e:
            raise FederationError("remote-server-not-found",
                                  "no wave service found for %s: %s" % (host, e))
        host_jid = str(host_jid)
        if host not in self._posted:
            yield self._post_signer(author.domain, from_jid, host_jid, host)
        iq = stanzas.build_submit_request(from_jid, host_jid, self.new_id(),
                                          stanzas.SubmitRequest(name.uri, bytes(signed_delta)))
        try:
            response = yield self._request(iq)
        except FederationError as e:
            if not e.unknown_signer:
                raise
            # The host has lost our chain (or never took it): post it again, once.
            log.info("{host} does not know our signer; posting it again", host=host)
            self._posted.discard(host)
            yield self._post_signer(author.domain, from_jid, host_jid, host)
            iq["id"] = self.new_id()
            response = yield self._request(iq)
        r = stanzas.parse_submit_response(response)
        return SubmitResult(r.operations_applied, HashedVersion(r.version, r.history_hash),
                            r.application_timestamp)

    @defer.inlineCallbacks
    def _post_signer(self, domain, from_jid, host_jid, host):
        """Post our signer info; a failure is logged and the submit goes on (§5)."""
        signer = self.server.signers.get(domain)
        if signer is None:
            return
        info = signer.signer_info
        iq = stanzas.build_signer_post(from_jid, host_jid, self.new_id(), stanzas.SignerInfoPayload(
            info.domain, info.hash_algorithm, tuple(info.certificates)))
        try:
            response = yield self._request(iq)
            stanzas.parse_signer_post_response(response)
        except FederationError as e:
            log.warn("posting our signer info to {host} failed: {condition} {text}",
                     host=host, condition=e.condition, text=e.text or "")
        else:
            self._posted.add(host)

    # -- receiving updates (§7(c)) --------------------------------------------

    def _lock(self, uri):
        lock = self._locks.get(uri)
        if lock is None:
            lock = self._locks[uri] = defer.DeferredLock()
        return lock

    @defer.inlineCallbacks
    def handle_update(self, message):
        """
        Take every wavelet update of a message.  Fires once all are stored;
        fails with the first FederationError (the others are still taken).
        """
        updates = stanzas.parse_update_message(message)
        peer = _Peer(message.getAttribute("to"), message.getAttribute("from"))
        first_error = None
        taken = []
        for update in updates:
            try:
                # Taken in order under the wavelet's lock; the disk is waited
                # for outside it, so that the host's next update of the
                # wavelet (in this message or the next) is worked on
                # meanwhile and shares the sync.  The receipt still waits
                # until every update of the message is durable.
                accepted = yield self._lock(update.wavelet_name).run(
                    self._take_update, update, peer)
                taken.append(accepted)
            except Exception as e:
                error = as_federation_error(e)
                if first_error is None:
                    first_error = error
        for accepted in taken:
            try:
                yield accepted.durable()
            except Exception as e:
                error = as_federation_error(e)
                if first_error is None:
                    first_error = error
        if first_error is not None:
            raise first_error

    @defer.inlineCallbacks
    def _take_update(self, update, peer):
        sender = jid_domain(peer.host_jid)
        name = wavelet_name(update.wavelet_name)
        host = name.wavelet_id.domain
        ok = yield speaks_for(sender, host, self.transport.discover)
        if not ok:
            log.warn("refused update of {uri} from {sender}: that wavelet is hosted at {host}",
                     uri=name.uri, sender=sender, host=host)
            raise NotTrusted("%s may not send updates for wavelets of %s" % (sender, host))
        if self.server.is_local(name):
            log.warn("refused update of our own wavelet {uri} from {sender}", uri=name.uri,
                     sender=sender)
            raise FederationError("bad-request", "Received update to local wavelet")
        applied = [self._parse_applied(data) for data in update.applied_deltas]
        yield self._verify_all(name, applied, peer)
        wanted = None
        if update.commit_notice is not None:
            wanted = HashedVersion(update.commit_notice.version,
                                   update.commit_notice.history_hash)
        accepted = yield self._accept(name, applied, peer, wanted)
        return accepted

    def _parse_applied(self, data):
        try:
            return convert.parse_applied_delta(data)
        except ModelError as e:
            raise MalformedStanza("bad applied delta: %s" % (e,))

    @defer.inlineCallbacks
    def _verify_all(self, name, applied, peer):
        for a in applied:
            try:
                yield self.signers.verify(
                    a.signed_delta,
                    fetch=lambda sid, a=a: self._fetch_signer(name, a.resulting_version, sid, peer))
            except Exception as e:
                error = as_federation_error(e)
                log.warn("delta of {uri} at version {v} from {host} does not verify: {error}",
                         uri=name.uri, v=a.applied_at.version, host=peer.host_jid,
                         error=error.text)
                raise error

    @defer.inlineCallbacks
    def _fetch_signer(self, name, resulting, signer_id, peer):
        """Ask the host for the chain of a signer of the delta ending at ``resulting`` (§1.6)."""
        iq = stanzas.build_signer_request(peer.our_jid, peer.host_jid, self.new_id(),
                                          stanzas.SignerRequest(name.uri, signer_id,
                                                                resulting.version,
                                                                resulting.history_hash))
        try:
            response = yield self._request(iq)
            return signer_info_from_payload(stanzas.parse_signer_response(response))
        except FederationError as e:
            log.warn("signer info {sid} from {host}: {condition} {text}", sid=signer_id.hex()[:16],
                     host=peer.host_jid, condition=e.condition, text=e.text or "")
            return None

    @defer.inlineCallbacks
    def _apply(self, name, applied, peer, wanted=None):
        """:meth:`_accept`, then wait until the disk has it all; fires with the last result."""
        accepted = yield self._accept(name, applied, peer, wanted)
        result = yield accepted.durable()
        return result

    @defer.inlineCallbacks
    def _accept(self, name, applied, peer, wanted=None):
        """
        Hand the deltas to the core; while some wait ahead of a gap, or the
        host has committed more than we hold, fetch the history in between.
        Fires once all are in the wavelet's order, with an object whose
        ``durable()`` fires with the last RemoteApplyResult once all are
        durable.
        """
        waiting = self._waiting.setdefault(name.uri, {})
        for a in applied:
            waiting[a.applied_at.version] = a.applied_at
        taken = []
        try:
            result = yield self.server.accept_remote_deltas(name, applied)
            taken.append(result)
            result = yield self._fill_gaps(name, result, waiting, peer, wanted, taken)
        except BaseException:
            # Whatever was taken before the failure is still written: wait
            # for it (its failure, if any, is the store's, already logged).
            for accepted in taken:
                accepted.durable().addErrback(lambda _: None)
            raise
        if not waiting:
            self._waiting.pop(name.uri, None)
        return _AllDurable(taken)

    @defer.inlineCallbacks
    def _fill_gaps(self, name, result, waiting, peer, wanted, taken):
        rounds = 0
        while True:
            current = result.current
            for v in [v for v in waiting if v < current.version]:
                del waiting[v]
            end = None
            if result.missing is not None:
                end = waiting.get(result.missing[1])
            elif wanted is not None and wanted.version > current.version:
                end = wanted
            if end is None:
                break
            rounds += 1
            if rounds > MAX_HISTORY_ROUNDS:
                raise FederationError("internal-server-error", "history never caught up")
            deltas = yield self._fetch_history(name, current, end, peer)
            if not deltas:
                raise FederationError("internal-server-error",
                                      "the host sent no history from version %d"
                                      % (current.version,))
            yield self._verify_all(name, deltas, peer)
            result = yield self.server.accept_remote_deltas(name, deltas)
            taken.append(result)
            if result.current.version <= current.version:
                raise FederationError("bad-request", "the history from version %d did not "
                                      "extend our copy" % (current.version,))
        return result

    # -- after our restart ------------------------------------------------------

    @defer.inlineCallbacks
    def catch_up(self, name, our_domain):
        """
        Ask the host of ``name`` (a wavelet we replicate) for the history
        from the hashed version we hold.  A history request must end at a
        version whose hash the host checks, and we know no later one than
        our own, so the range asked for is empty: the answer proves that our
        copy is still a prefix of the host's, and the request, a stanza
        from us, tells the host we are back, so that its outbox sends what
        it holds for us at once instead of at its next retry.  Those updates
        then take the usual path (gaps filled, again and again until caught
        up).  Should a host send deltas anyway, they are taken the same way.

        Fires with the number of deltas the answer carried; fails with a
        FederationError (``remote-server-not-found`` when the host cannot
        be found).
        """
        host = name.wavelet_id.domain
        try:
            host_jid = yield self.transport.discover(host)
        except Exception as e:
            raise FederationError("remote-server-not-found",
                                  "no wave service found for %s: %s" % (host, e))
        peer = _Peer(self.service_jid(our_domain), str(host_jid))
        stored = yield self.server.store.current_version(name.uri)
        current = (HashedVersion.zero(name) if stored is None
                   else HashedVersion(stored[0], stored[1]))
        deltas = yield self._fetch_history(name, current, current, peer)
        if deltas:
            yield self._verify_all(name, deltas, peer)
            yield self._lock(name.uri).run(self._apply, name, deltas, peer)
        return len(deltas)

    @defer.inlineCallbacks
    def _fetch_history(self, name, start, end, peer):
        self.history_requests += 1
        log.debug("asking {host} for {uri} history [{s}, {e})", host=peer.host_jid,
                  uri=name.uri, s=start.version, e=end.version)
        iq = stanzas.build_history_request(
            peer.our_jid, peer.host_jid, self.new_id(), stanzas.HistoryRequest(
                name.uri, start.version, start.history_hash, end.version, end.history_hash,
                self.history_limit))
        response = yield self._request(iq)
        history = stanzas.parse_history_response(response)
        return [self._parse_applied(d) for d in history.applied_deltas]
