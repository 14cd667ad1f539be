"""
The federation host: the wavelets we host, as the rest of the world sees them
(wave protocol §7(a), §7(b), §7(g); §1.3-1.7 for the stanzas).

* Every durable delta of a hosted wavelet goes to each remote domain with a
  participant (after the delta, or removed by it): one ``<wavelet-update>``
  carrying the applied delta and a commit notice with its history hash.  The
  payload is written to the outbox in the same transaction as the delta
  (``IOutboxSource``), so no update is lost between the two.  A domain that
  the delta adds gets the history before it in the same update when we still
  have it in memory; otherwise it asks for it (§7(d)), as FedOne/WIAB do.
* A remote server's submit is checked (the sender speaks for the author's
  domain, the signatures verify against a known chain) and then goes through
  the same pipeline as a local user's delta.  A signer we do not know is
  fetched from the submitting server with a signer get (§1.6 shape, issue 5)
  and kept once its chain validates; a submitter that cannot answer that
  (FedOne/WIAB: "Non-local wavelet") is told ``internal-server-error`` (wait)
  as before, posts its signer info (§1.7, §7(b)2) and submits again.
* History and signer info are served only to a domain with a participant on
  the wavelet (§7(g): WIAB forgot this check), and only between delta
  boundaries whose hashes match ours.  The one exception is our own signer
  info, public anyway: it is given to the host of any wavelet, hosted here or
  not, so that a host can fetch the chain of our submits.
"""

import itertools
import os
from collections import OrderedDict

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.words.protocols.jabber.error import StanzaError
from zope.interface import implementer

from wavebox import crypto
from wavebox.federation import stanzas
from wavebox.federation.errors import as_federation_error
from wavebox.federation.outbox import encode_payload
from wavebox.federation.stanzas import CommitNotice, FederationError, MalformedStanza
from wavebox.federation.trust import NotTrusted, jid_domain, speaks_for, speaks_for_any
from wavebox.model.delta import HashedVersion
from wavebox.model.errors import ModelError
from wavebox.model.ids import ParticipantId, WaveletName
from wavebox.server.interfaces import IOutboxSource, IWaveletListener
from wavebox.wire import convert

log = Logger()

#: A wavelet's early history is kept in memory (for a newly added domain)
#: while it is at most this long...
EARLY_HISTORY_BYTES = 64 * 1024
#: ...for at most this many wavelets (least recently changed dropped first).
EARLY_HISTORY_WAVELETS = 1024
#: The most delta bytes one history response carries, whatever the requester
#: allows: a longer history is sent truncated (§1.5, <history-truncated>) and
#: the requester asks again from there, so a request for 100,000 deltas is
#: answered in pieces and never held in memory whole.
HISTORY_RESPONSE_BYTES = 1024 * 1024
#: How long a request to a peer may take (the Java side's 30 s, §1.2).
DEFAULT_REQUEST_TIMEOUT = 30.0


def wavelet_name(uri):
    try:
        return WaveletName.from_uri(uri)
    except ModelError as e:
        raise MalformedStanza("bad wavelet name %r: %s" % (uri[:200], e))


def participant_domains(participants):
    return {ParticipantId(p).domain for p in participants}


@implementer(IOutboxSource, IWaveletListener)
class FederationHost:
    """
    ``server`` is the WaveServer; ``outbox`` the Outbox; ``signers`` the
    SignerInfos; ``service_jid(domain)`` our wave service JID for a hosted
    domain; ``discover(domain)`` a peer's (for the trust checks).
    ``transport`` (``request(iq, timeout)``) lets us fetch an unknown
    submitter's signer info; without it we only know what was posted.  The
    fetch waits at most half of ``request_timeout``, so that its failure
    (``internal-server-error``, wait) still reaches a submitter that waits
    ``request_timeout`` for our answer, as FedOne, WIAB and our remote do.
    """

    def __init__(self, server, outbox, signers, service_jid, discover=None, transport=None,
                 request_timeout=DEFAULT_REQUEST_TIMEOUT):
        self.server = server
        self.outbox = outbox
        self.signers = signers
        self.service_jid = service_jid
        self.discover = discover
        self.transport = transport
        self.signer_fetch_timeout = request_timeout / 2.0
        self._early = OrderedDict()     # uri -> [(applied_at, resulting, bytes)]
        self._queued = {}               # (uri, applied_at version) -> [(dest, payload)]
        self._fetching = {}             # (signer id, domain) -> [Deferred] waiting for it
        self._ids = itertools.count(1)
        self._id_prefix = "wbx-h%s-" % (os.urandom(4).hex(),)
        self.pushed = 0
        self.signer_fetches = 0

    # -- pushing updates (§7(a)4-5) -------------------------------------------

    def _remember(self, update):
        """Keep the wavelet's early history while it is short and complete from version 0."""
        uri = update.wavelet_name.uri
        applied = update.applied
        entries = self._early.get(uri)
        if entries is None:
            if applied.applied_at.version != 0:
                return None
            entries = []
        else:
            self._early.move_to_end(uri)
            # A delta whose store write failed is replaced by the one that follows it.
            while entries and entries[-1][0].version >= applied.applied_at.version:
                entries.pop()
            if entries and entries[-1][1] != applied.applied_at:
                del self._early[uri]
                return None
        before = list(entries)
        entries.append((applied.applied_at, update.resulting_version, applied.applied_delta_bytes))
        if sum(len(e[2]) for e in entries) > EARLY_HISTORY_BYTES:
            self._early.pop(uri, None)
        else:
            self._early[uri] = entries
            while len(self._early) > EARLY_HISTORY_WAVELETS:
                self._early.popitem(last=False)
        return before

    def outbox_for(self, update):
        """IOutboxSource: the wavelet-update payload for every remote domain."""
        if not update.hosted:
            return []
        earlier = self._remember(update)
        name = update.wavelet_name
        destinations = update.remote_domains(self.server.domains)
        if not destinations:
            return []
        applied = update.applied
        resulting = update.resulting_version
        notice = CommitNotice(resulting.version, resulting.history_hash)
        from_jid = self.service_jid(name.wavelet_id.domain)
        old_domains = {p.domain for p in update.participants_before}
        out = []
        for destination in destinations:
            deltas = (applied.applied_delta_bytes,)
            if (destination not in old_domains and applied.applied_at.version > 0
                    and earlier is not None):
                deltas = tuple(e[2] for e in earlier) + deltas
            out.append((destination, encode_payload(from_jid, [
                stanzas.WaveletUpdate(name.uri, deltas, notice)])))
        self._queued[(name.uri, applied.applied_at.version)] = out
        return out

    def wavelet_updated(self, update):
        """IWaveletListener: the delta and its outbox items are durable; deliver them."""
        if not update.hosted:
            return
        out = self._queued.pop((update.wavelet_name.uri, update.applied.applied_at.version), [])
        for item_id, (destination, payload) in zip(update.outbox_ids, out):
            self.pushed += 1
            self.outbox.queued(destination, item_id, payload)

    # -- common checks --------------------------------------------------------

    def _local_name(self, uri):
        name = wavelet_name(uri)
        if not self.server.is_local(name):
            raise FederationError("bad-request", "Non-local wavelet: %s" % (uri[:200],))
        return name

    @defer.inlineCallbacks
    def _existing(self, name):
        info = yield self.server.store.wavelet_info(name.uri)
        if info is None or not info.version:
            raise FederationError("bad-request", "Wavelet does not exist: %s" % (name.uri,))
        return info

    @defer.inlineCallbacks
    def _check_participant_domain(self, sender, info, what):
        """A history or signer request must come from a domain with a participant."""
        ok = yield speaks_for_any(sender, participant_domains(info.participants), self.discover)
        if not ok:
            log.warn("refused {what} for {uri} from {sender}: no participant of that domain",
                     what=what, uri=info.name, sender=sender)
            raise NotTrusted("%s has no participant on %s" % (sender, info.name))

    # -- submit (§1.4, §7(b)3) ------------------------------------------------

    @defer.inlineCallbacks
    def handle_submit(self, iq):
        """Fires with the submit-response iq, or fails with a FederationError."""
        sender = jid_domain(iq.getAttribute("from"))
        request = stanzas.parse_submit_request(iq)
        name = self._local_name(request.wavelet_name)
        try:
            signed = convert.parse_signed_delta(request.signed_delta)
        except ModelError as e:
            raise MalformedStanza("Malformed submit request: %s" % (e,))
        author = signed.delta.author
        ok = yield speaks_for(sender, author.domain, self.discover)
        if not ok:
            log.warn("refused submit to {uri} from {sender}: author {author} is not of "
                     "that domain", uri=name.uri, sender=sender, author=author.address)
            raise NotTrusted("%s may not submit for %s" % (sender, author.address))
        fetch = None
        if self.transport is not None:
            submitter = iq.getAttribute("from")

            def fetch(signer_id):
                return self._fetch_submitter_signer(signer_id, name, signed, submitter)
        try:
            yield self.signers.verify(signed, fetch=fetch)
        except Exception as e:
            error = as_federation_error(e)
            log.warn("refused submit to {uri} from {sender}: {error}", uri=name.uri,
                     sender=sender, error=error.text)
            raise error
        try:
            result = yield self.server.submit_signed(name, signed, remote_domain=author.domain)
        except Exception as e:
            error = as_federation_error(e)
            log.info("submit to {uri} from {sender} refused: {error}", uri=name.uri,
                     sender=sender, error=error.text)
            raise error
        return stanzas.build_submit_response(iq, stanzas.SubmitResponse(
            operations_applied=result.operations_applied,
            application_timestamp=result.timestamp_ms,
            version=result.hashed_version_after.version,
            history_hash=result.hashed_version_after.history_hash))

    def _fetch_submitter_signer(self, signer_id, name, signed, submitter):
        """
        The chain of ``signer_id``, asked of the submitting server: fires with
        the SignerInfo, validated and kept, or None when the submitter did not
        give it (it must post it, §7(b)2); fails with a crypto.SignatureError
        when what it gave does not validate.  Submits that wait for the same
        (signer, domain) share one request.
        """
        domain = signed.delta.author.domain
        key = (bytes(signer_id), domain.lower())
        mine = defer.Deferred()
        waiting = self._fetching.get(key)
        if waiting is not None:
            waiting.append(mine)
            return mine
        waiting = self._fetching[key] = [mine]

        def done(result):
            del self._fetching[key]
            for d in waiting:
                if isinstance(result, Failure):
                    d.errback(result)
                else:
                    d.callback(result)

        defer.maybeDeferred(self._ask_submitter, bytes(signer_id), domain, name,
                            signed.delta.hashed_version, submitter).addBoth(done)
        return mine

    @defer.inlineCallbacks
    def _ask_submitter(self, signer_id, domain, name, target, submitter):
        self.signer_fetches += 1
        iq = stanzas.build_signer_request(
            self.service_jid(name.wavelet_id.domain), submitter,
            "%s%d" % (self._id_prefix, next(self._ids)),
            stanzas.SignerRequest(name.uri, signer_id, target.version, target.history_hash))
        try:
            response = yield send_request(self.transport, iq, self.signer_fetch_timeout)
            info = signer_info_from_payload(stanzas.parse_signer_response(response))
        except FederationError as e:
            log.info("signer info {sid} of {domain} not given by {submitter} ({condition} "
                     "{text}); it must post it", sid=signer_id.hex()[:16], domain=domain,
                     submitter=submitter, condition=e.condition, text=e.text or "")
            return None
        if info.signer_id != signer_id:
            log.warn("{submitter} answered a signer get for {sid} with the chain of another "
                     "signer", submitter=submitter, sid=signer_id.hex()[:16])
            return None
        try:
            yield self.signers.accept(info, for_domain=domain)
        except crypto.SignatureError as e:
            log.warn("signer info {sid} fetched from {submitter} does not validate for "
                     "{domain}: {error}", sid=signer_id.hex()[:16], submitter=submitter,
                     domain=domain, error=e)
            raise
        log.info("signer info {sid} of {domain} fetched from {submitter} and kept",
                 sid=signer_id.hex()[:16], domain=domain, submitter=submitter)
        return info

    # -- history (§1.5, §7(g)) ------------------------------------------------

    @defer.inlineCallbacks
    def handle_history(self, iq):
        sender = jid_domain(iq.getAttribute("from"))
        request = stanzas.parse_history_request(iq)
        name = self._local_name(request.wavelet_name)
        info = yield self._existing(name)
        yield self._check_participant_domain(sender, info, "history")
        try:
            start = HashedVersion(request.start_version, request.start_hash)
            end = HashedVersion(request.end_version, request.end_hash)
            budget = HISTORY_RESPONSE_BYTES
            if request.length_limit is not None:
                budget = min(budget, request.length_limit)
            deltas = yield self.server.history(name, start, end, max_bytes=budget)
        except Exception as e:
            error = as_federation_error(e)
            log.warn("refused history of {uri} [{s}, {e}) to {sender}: {error}", uri=name.uri,
                     s=request.start_version, e=request.end_version, sender=sender,
                     error=error.text)
            raise error
        truncated = None
        if deltas:
            last = convert.parse_applied_delta(deltas[-1]).resulting_version
            if last.version < request.end_version:
                truncated = last.version
        return stanzas.build_history_response(iq, stanzas.HistoryResponse(
            tuple(deltas), commit_notice_version=request.end_version,
            truncated_version=truncated))

    # -- signer info (§1.6, §1.7) ---------------------------------------------

    @defer.inlineCallbacks
    def handle_signer_get(self, iq):
        sender = jid_domain(iq.getAttribute("from"))
        request = stanzas.parse_signer_request(iq)
        name = wavelet_name(request.wavelet_name)
        if not self.server.is_local(name):
            response = yield self._own_signer_for_host(iq, sender, name, request)
            return response
        info = yield self._existing(name)
        yield self._check_participant_domain(sender, info, "signer info")
        stored = yield self.server.store.delta_ending_at(name.uri, request.version)
        allowed = False
        if stored is not None and stored.resulting_hash == request.history_hash:
            applied = convert.parse_applied_delta(stored.applied_delta)
            allowed = any(bytes(s.signer_id) == request.signer_id
                          for s in applied.signed_delta.signatures)
        if not allowed:
            log.warn("refused signer info {sid} of {uri} at version {v} to {sender}: no such "
                     "signature there", sid=request.signer_id.hex(), uri=name.uri,
                     v=request.version, sender=sender)
            raise FederationError("bad-request", "Not authorised to get signer info")
        signer = yield self.signers.get(request.signer_id)
        if signer is None:
            raise FederationError("item-not-found", "Signer info not known here")
        return stanzas.build_signer_response(iq, stanzas.SignerInfoPayload(
            signer.domain, signer.hash_algorithm, tuple(signer.certificates)))

    @defer.inlineCallbacks
    def _own_signer_for_host(self, iq, sender, name, request):
        """
        A signer get for a wavelet hosted elsewhere: the host fetching the
        chain of a delta we submit (issue 5).  Our own chains are public (we
        post them to every host), so they go to the wavelet's host; anything
        else is refused as FedOne/WIAB refuse it.
        """
        own = self.signers.own.get(request.signer_id)
        if own is None:
            raise FederationError("bad-request", "Non-local wavelet: %s" % (name.uri,))
        ok = yield speaks_for(sender, name.wavelet_id.domain, self.discover)
        if not ok:
            log.warn("refused our signer info {sid} to {sender}: it does not host {uri}",
                     sid=request.signer_id.hex()[:16], sender=sender, uri=name.uri)
            raise NotTrusted("%s does not host %s" % (sender, name.uri))
        return stanzas.build_signer_response(iq, stanzas.SignerInfoPayload(
            own.domain, own.hash_algorithm, tuple(own.certificates)))

    @defer.inlineCallbacks
    def handle_signer_post(self, iq):
        sender = jid_domain(iq.getAttribute("from"))
        payload = stanzas.parse_signer_post(iq)
        try:
            signer = signer_info_from_payload(payload)
            signer_id = yield self.signers.accept(signer)
        except Exception as e:
            error = as_federation_error(e)
            log.warn("refused signer info for {domain} posted by {sender}: {error}",
                     domain=payload.domain, sender=sender, error=error.text)
            raise FederationError("bad-request", "verification failure from domain %s: %s"
                                  % (payload.domain, error.text))
        log.info("signer info {sid} of {domain} posted by {sender} kept",
                 sid=signer_id.hex()[:16], domain=payload.domain, sender=sender)
        return stanzas.build_signer_post_response(iq)


@defer.inlineCallbacks
def send_request(transport, iq, timeout):
    """
    Send an iq over ``transport`` and fire with its result; any failure
    (an error answer, no answer within ``timeout``, no route) is a FederationError.
    """
    try:
        response = yield transport.request(iq, timeout)
    except FederationError:
        raise
    except StanzaError as e:
        raise FederationError(e.condition or "undefined-condition", e.text)
    except defer.TimeoutError:
        raise FederationError("remote-server-timeout", "no answer from %s" % (iq["to"],))
    except Exception as e:
        raise FederationError("remote-server-not-found", "%s: %s" % (e.__class__.__name__, e))
    if response.getAttribute("type") == "error":
        raise stanzas.parse_error(response)
    return response


def signer_info_from_payload(payload):
    """A ``<signature>`` element's content as a crypto SignerInfo."""
    try:
        return crypto.SignerInfo(payload.domain, tuple(payload.certificates), payload.algorithm)
    except (ModelError, crypto.SignatureError) as e:
        raise MalformedStanza("bad signer info: %s" % (e,))
